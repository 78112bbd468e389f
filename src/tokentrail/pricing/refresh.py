"""Opt-in background price refresh for long-running services (`TOKENTRAIL_PRICES_REFRESH=1h`).

Off unless the variable is set; never started at import: the process default catalog starts it when it
is first built. A daemon thread runs `update.update()` at once and then every interval, and when a new
catalog is installed the default catalog switches to it (user prices and aliases kept), and the usage
readers to its extractors. A failure is logged and counted (`failures`, `last_error`), never raised; the
catalog in force stays.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokentrail.pricing.catalog import Catalog
    from tokentrail.pricing.update import UpdateResult

__all__ = ["Refresher", "parse_interval", "start_from_env"]

logger = logging.getLogger("tokentrail.pricing")

MIN_INTERVAL = 60.0
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """Seconds in "90s", "30m", "1h", "1d" or a bare number of seconds; at least `MIN_INTERVAL`."""
    found = _INTERVAL.match(text)
    if found is None:
        raise ValueError(f"not a refresh interval: {text!r} (e.g. 30m, 1h, 1d)")
    seconds = float(found.group(1)) * _SECONDS[(found.group(2) or "s").lower()]
    if seconds < MIN_INTERVAL:
        raise ValueError(f"refresh interval {text!r} is shorter than {MIN_INTERVAL:g} s")
    return seconds


class Refresher:
    """Refreshes `catalog` every `interval` seconds on a daemon thread.

    `clock` (monotonic seconds) and `wait` (sleep up to N seconds; True when asked to stop) are injectable
    so the loop can be driven without real time passing; `update` is `update.update` by default.
    """

    def __init__(
        self,
        catalog: Catalog,
        interval: float,
        *,
        update: Callable[[], UpdateResult] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.catalog = catalog
        self.interval = interval
        self.checks = 0
        self.failures = 0
        self.installed = 0
        self.last_error: str | None = None
        self._update = update or _default_update
        self._clock = clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tokentrail-prices-refresh", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait up to `timeout` seconds for it."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (it ends when stopped, or when `wait` says so)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_check = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_check:
                self.refresh_once()
                next_check = now + self.interval
            if self._wait(max(0.0, next_check - self._clock())):
                return

    def refresh_once(self) -> None:
        """One check; a new catalog is put in force, a failure logged and counted."""
        self.checks += 1
        try:
            result = self._update()
            if result.status == "installed":
                from tokentrail.pricing.catalog import default_if_built
                from tokentrail.pricing.index import PriceIndex
                from tokentrail.pricing.installed import put_in_force, read_installed

                snapshot = read_installed(result.path)
                if snapshot is not None:
                    self.catalog.use_index(PriceIndex(snapshot))
                    if self.catalog is default_if_built():
                        put_in_force(snapshot)  # the usage readers switch with the default catalog
                    self.installed += 1
                    logger.info("tokentrail: prices refreshed to %s", result.version)
            self.last_error = None
        except Exception as exc:  # never into the service: the catalog in force stays
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("tokentrail: price refresh failed (%s); prices unchanged", self.last_error)


def _default_update() -> UpdateResult:
    from tokentrail.pricing.update import update

    return update()


_started: Refresher | None = None
_lock = threading.Lock()


def start_from_env(catalog: Catalog, value: str | None) -> Refresher | None:
    """Start the process's refresher when `value` (TOKENTRAIL_PRICES_REFRESH) asks for one; logs and
    returns None when it is malformed. At most one per process."""
    global _started
    if not value:
        return None
    try:
        interval = parse_interval(value)
    except ValueError as exc:
        logger.warning("tokentrail: TOKENTRAIL_PRICES_REFRESH ignored: %s", exc)
        return None
    with _lock:
        if _started is None:
            _started = Refresher(catalog, interval)
            _started.start()
        _started.catalog = catalog  # the default catalog was rebuilt: refresh the new one
        return _started
