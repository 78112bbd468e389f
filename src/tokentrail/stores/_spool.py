"""A local append-only spool of write batches a ledger server could not take, replayed in order later.

One JSON line per batch, fsync'd before `append` returns; files are created 0600 in a 0700 directory.
Each open store writes its own file (`<ledger>-<start ns>-<pid>.jsonl`) and holds an exclusive `flock`
on it; a file nobody holds (its process died or closed with the server still down) is adopted and
replayed by the next store of the same ledger. Replays are idempotent because every record has an id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Spool", "default_spool_dir"]

_log = logging.getLogger("tokentrail")


def default_spool_dir() -> Path:
    """`$TOKENTRAIL_SPOOL_DIR`, else `$XDG_STATE_HOME/tokentrail/spool`, else `~/.local/state/tokentrail/spool`."""
    given = os.environ.get("TOKENTRAIL_SPOOL_DIR")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "tokentrail" / "spool"


class Spool:
    """The spool files of one ledger (`ledger` names it: a short hash of server, database and schema)."""

    def __init__(self, directory: str | os.PathLike[str], ledger: str) -> None:
        self.directory = Path(directory)
        self.ledger = ledger
        self._lock = threading.Lock()
        self._fd: int | None = None  # our own file, opened on the first append
        self._path: Path | None = None
        self._batches = 0  # batches in our own file
        self.spooled = 0  # batches appended since the store opened
        self.replayed = 0  # batches replayed since the store opened

    # -- writing ----------------------------------------------------------------------------------------

    def append(self, payload: dict[str, Any]) -> None:
        """Write one batch as a JSON line and fsync it (raises OSError when the disk refuses)."""
        line = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            fd = self._own_fd()
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
            os.fsync(fd)
            self._batches += 1
            self.spooled += 1

    def _own_fd(self) -> int:
        if self._fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.directory / f"{self.ledger}-{time.time_ns():020d}-{os.getpid()}.jsonl"
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd, self._path = fd, path
        return self._fd

    # -- replaying --------------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether our own file holds batches not replayed yet."""
        return self._batches > 0

    def orphans(self) -> list[Path]:
        """Spool files of this ledger that another (gone) store left behind, oldest first."""
        if not self.directory.is_dir():
            return []
        found = sorted(self.directory.glob(f"{self.ledger}-*.jsonl"))
        return [path for path in found if path != self._path]

    def replay(self, write: Callable[[dict[str, Any]], None]) -> int:
        """Hand every spooled batch to `write`, in order: our own file, then files left by gone stores.

        Stops at the first batch `write` raises on (the files stay; replaying them again later is safe:
        ids make every insert idempotent). Returns how many batches were written."""
        done = 0
        with self._lock:
            if self._batches and self._path is not None and self._fd is not None:
                for payload in _batches(self._path):
                    write(payload)
                    done += 1
                os.ftruncate(self._fd, 0)
                self._batches = 0
        for path in self.orphans():
            done += self._adopt(path, write)
        self.replayed += done
        return done

    def _adopt(self, path: Path, write: Callable[[dict[str, Any]], None]) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:  # another store adopted it first
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its store is alive
                return 0
            if not path.exists():  # replayed and removed while we waited for the lock
                return 0
            done = 0
            for payload in _batches(path):
                write(payload)
                done += 1
            path.unlink()
            if done:
                _log.info("tokentrail: replayed %d spooled batch(es) from %s", done, path)
            return done
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release our file; remove it when empty (a file with batches stays for the next store)."""
        with self._lock:
            if self._fd is None or self._path is None:
                return
            if self._batches == 0:
                with contextlib.suppress(OSError):
                    self._path.unlink()
            else:
                _log.warning(
                    "tokentrail: %d batch(es) left in spool %s; the next store of this ledger replays them",
                    self._batches,
                    self._path,
                )
            os.close(self._fd)
            self._fd = self._path = None

    def __repr__(self) -> str:
        return f"<Spool {self.directory} {self.ledger} pending={self._batches}>"


def _batches(path: Path) -> Iterator[dict[str, Any]]:
    """The batches of a spool file; a torn last line (a crash mid-write) is skipped with a warning."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except ValueError:
            if number >= len(lines) - 1:
                _log.warning("tokentrail: skipped a torn last line in spool %s", path)
                continue
            raise
        yield payload
