"""tokentrail.testing.recording and the pytest plugin, as users' tests would use them."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import openai
import pytest

import tokentrail as tt
from tokentrail.testing.mock_llm import MockLLMServer
from tokentrail.testing.recording import assert_all_priced, assert_recorded, recorded_calls, recording

PLUGIN = "tokentrail.testing.pytest_plugin"


def test_recording_installs_and_restores_the_default_tracker() -> None:
    before = tt.get_tracker()
    with recording() as tracker:
        assert tt.get_tracker() is tracker
    assert tt.get_tracker() is before


def test_recording_with_instrument_tracks_sdk_calls() -> None:
    with MockLLMServer() as server, recording(instrument=True) as tracker:
        server.queue(input=100, output=10)
        openai.OpenAI(base_url=server.url("openai"), api_key="test").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert_recorded(tracker, calls=1, model="gpt-4o", input_tokens=100, output_tokens=10, cost="0.00035")
    assert len(recorded_calls(tracker, model="gpt-4o")) == 1


def test_assert_recorded_names_every_mismatch() -> None:
    tracker = tt.Tracker()
    tracker.record(tt.Usage(input_tokens=100, output_tokens=10), "gpt-4o", agent="a")
    with pytest.raises(AssertionError) as failure:
        assert_recorded(tracker, agent="a", calls=2, input_tokens=99, cost="1")
    message = str(failure.value)
    assert "agent='a'" in message
    assert "calls: expected 2, recorded 1" in message
    assert "input_tokens: expected 99, recorded 100" in message
    assert "cost: expected $1, recorded $0.00035" in message


def test_assert_recorded_compares_every_unit() -> None:
    tracker = tt.Tracker()
    tracker.record(tt.Usage(100, 10, audio_ms=3_000, input_audio_ms=3_000, storage_searches=2), "gpt-4o")
    assert_recorded(tracker, calls=1, audio_ms=3_000, storage_searches=2, input_audio_ms=3_000)
    with pytest.raises(AssertionError, match="storage_searches: expected 3, recorded 2"):
        assert_recorded(tracker, storage_searches=3)


def test_an_unpriced_call_fails_a_cost_check_instead_of_being_zero() -> None:
    tracker = tt.Tracker()
    tracker.record(tt.Usage(input_tokens=1, output_tokens=1), "no-such-model-xyz")
    with pytest.raises(AssertionError, match="could not be priced"):
        assert_recorded(tracker, cost=0)
    with pytest.raises(AssertionError, match="1 unpriced call"):
        assert_all_priced(tracker)


def test_pytest_plugin_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "import tokentrail as tt\n"
        "from tokentrail.testing.recording import assert_recorded\n"
        "def test_it(tokentrail_tracker):\n"
        "    assert tt.get_tracker() is tokentrail_tracker\n"
        "    tt.get_tracker().record(tt.Usage(input_tokens=1000, output_tokens=0), 'gpt-4o')\n"
        "    assert_recorded(tokentrail_tracker, calls=1, cost='0.0025')\n"
    )
    # once the package declares the pytest11 entry point, pytest loads the plugin by itself
    registered = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *([] if registered else ["-p", PLUGIN]),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
