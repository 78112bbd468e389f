"""Live per-call anomaly detection: an `EventBus` subscriber that scores each recorded call's cost
against the recent calls of the same agent and model, and publishes an `anomaly` event.

    monitor = CallCostMonitor(bus).attach()
    tracker = tt.Tracker(sinks=[EventSink(bus)])

It runs on the bus's worker thread, so the recording call pays nothing. The statistic is the same as
`detect_anomalies`: the modified z-score against the median and MAD of the last `window` priced calls
of the group, once `min_history` of them were seen; a call is added to its baseline after scoring.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from tokentrail.analytics._source import fraction_usd, units_fraction
from tokentrail.analytics._stats import robust_z

if TYPE_CHECKING:
    from collections.abc import Callable

    from tokentrail.events import Event, EventBus

__all__ = ["CallCostMonitor"]


class CallCostMonitor:
    """Scores every `record` event's cost per call; publishes `anomaly` (metric "cost_per_call")."""

    def __init__(
        self,
        bus: EventBus | None = None,
        *,
        window: int = 200,
        min_history: int = 30,
        threshold: float = 3.5,
        max_groups: int = 10_000,
    ) -> None:
        if min_history < 3 or window < min_history:
            raise ValueError("need 3 <= min_history <= window")
        self.bus = bus
        self.window = window
        self.min_history = min_history
        self.threshold = threshold
        self.max_groups = max_groups
        self.found = 0
        self._recent: dict[tuple[str | None, str | None], deque[int]] = {}
        self._lock = threading.Lock()

    def attach(self) -> CallCostMonitor:
        """Subscribe to the bus's `record` events (the process default bus when none was given)."""
        from tokentrail.events import get_bus

        self._unsubscribe: Callable[[], None] = (self.bus or get_bus()).subscribe(self, kinds="record")
        return self

    def detach(self) -> None:
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()

    def __call__(self, event: Event) -> None:
        from tokentrail.events import AnomalyEvent, RecordEvent, get_bus

        if not isinstance(event, RecordEvent):
            return
        record = event.record
        cost_units = record.cost_units
        if cost_units is None:
            return
        key = (record.agent, record.model)
        with self._lock:
            recent = self._recent.get(key)
            if recent is None:
                if len(self._recent) >= self.max_groups:
                    self._recent.clear()  # bounded memory: start the baselines over
                recent = self._recent[key] = deque(maxlen=self.window)
            baseline = list(recent) if len(recent) >= self.min_history else None
            recent.append(cost_units)
        if baseline is None:
            return
        score, center = robust_z(cost_units, baseline)
        if score <= self.threshold:
            return
        self.found += 1
        (self.bus or get_bus()).publish(
            AnomalyEvent(
                metric="cost_per_call",
                group={"agent": record.agent, "model": record.model},
                value=fraction_usd(units_fraction(cost_units)),
                baseline_median=fraction_usd(units_fraction(center)),
                score=score,
                period=record.timestamp,
            )
        )
