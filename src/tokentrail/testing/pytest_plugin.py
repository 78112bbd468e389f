"""pytest plugin: the `tokentrail_tracker` fixture (a fresh tracker, installed as the process default
and tracking every openai / anthropic call for the test's duration).

Enabled by the `pytest11` entry point of the tokentrail package, or with `-p tokentrail.testing.pytest_plugin`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tokentrail.tracker import Tracker


@pytest.fixture
def tokentrail_tracker() -> Iterator[Tracker]:
    """A new in-memory Tracker for this test; assert on it with `tokentrail.testing.recording.assert_recorded`."""
    from tokentrail.testing.recording import recording

    with recording(instrument=True) as tracker:
        yield tracker
