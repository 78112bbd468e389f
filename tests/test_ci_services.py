"""`skip_or_fail`: a missing PostgreSQL, Redis or Chromium fails the run under CI=true and skips, loudly,
elsewhere. Driven through the real fixtures, in a pytest subprocess pointed where nothing listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parent.parent

NEEDS_ALL_THREE = """
from tests.server.test_browser import chromium  # noqa: F401  (the fixture)

def test_postgres(postgres_server):
    pass

def test_redis(redis_server):
    pass

def test_chromium(chromium):
    pass
"""


def unused_port() -> int:
    """A loopback port nothing listens on (the OS just handed it out and it was released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """pytest on a file needing all three components, each pointed at something absent."""
    test_file = tmp_path / "test_needs_services.py"
    test_file.write_text(NEEDS_ALL_THREE)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env |= {
        "TOKENTRAIL_TEST_POSTGRES": f"postgresql://postgres@127.0.0.1:{unused_port()}/test",
        "TOKENTRAIL_TEST_REDIS": f"redis://127.0.0.1:{unused_port()}/0",
        "TOKENTRAIL_CHROMIUM": str(tmp_path / "no-chromium-here"),
        "PYTHONPATH": str(ROOT),
    }
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    command += ["-rA", "-q", "--rootdir", str(tmp_path), str(test_file)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_under_ci_a_missing_component_fails_the_run_and_says_what_and_how_to_start_it(
    tmp_path: Path,
) -> None:
    result = run_pytest(tmp_path, ci="true")
    out = result.stdout
    assert result.returncode == 1, out
    assert "3 errors" in out and "skipped" not in out, out
    assert "POSTGRES MISSING (CI=true: failing instead of skipping): no answer at postgresql://" in out
    assert "pg_ctlcluster --skip-systemctl-redirect" in out
    assert "REDIS MISSING (CI=true: failing instead of skipping): no answer to PING at redis://" in out
    assert "redis-server --daemonize yes" in out
    assert "CHROMIUM (browser) MISSING (CI=true: failing instead of skipping): no chromium at" in out
    assert "apt-get install -y chromium" in out


def test_outside_ci_a_missing_component_skips_loudly(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=None)
    out = result.stdout
    assert result.returncode == 0, out
    assert "3 skipped" in out, out
    assert "POSTGRES TESTS SKIPPED: no answer at postgresql://" in out
    assert "REDIS TESTS SKIPPED: no answer to PING at redis://" in out
    assert "CHROMIUM (browser) TESTS SKIPPED: no chromium at" in out
    assert out.count("(Under CI=true this fails.)") == 3


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("TRUE", True), ("", False), ("false", False)]
)
def test_ci_is_read_from_the_CI_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
