from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokentrail import tracker as tracker_module
from tokentrail.tracker import Tracker


@pytest.fixture
def tracker() -> Tracker:
    return Tracker()


@pytest.fixture
def fresh_default() -> Iterator[None]:
    """Leave the process default tracker as it was."""
    saved = tracker_module._default
    tracker_module._default = None
    yield
    tracker_module._default = saved
