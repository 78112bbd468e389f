"""Context-window monitoring: how full each call and each conversation is, and what would help.

`ContextMonitor.check(messages, model, conversation=…)` counts a request before it is sent;
`ContextMonitor.observe(conversation, usage, model)` records what a provider billed after it.
Both return a `ContextReport` with the utilization, a `ContextWarning` for every threshold reached,
and, once a threshold is reached, `Recommendation`s computed from the request itself: the tokens each
would remove from the next prompt and what those tokens cost on this model (`tokentrail.price`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tokentrail._types import Usage
from tokentrail.pricing.catalog import Catalog, default_catalog
from tokentrail.tokens.count import Messages, count
from tokentrail.tokens.limits import model_limits

__all__ = ["ContextMonitor", "ContextReport", "ContextWarning", "ConversationState", "Recommendation"]

_NOT_CHAT = r"audio|realtime|image|tts|transcribe|search|embed|moderation|whisper|dall-e|codex"


@dataclass(frozen=True, slots=True)
class ContextWarning:
    """A threshold of the context window that a prompt reached."""

    threshold: float  # e.g. 0.9
    utilization: float  # prompt (+ reserved output) / window
    tokens: int
    context_window: int
    model: str
    conversation: str | None
    first_time: bool  # the first time this conversation reached this threshold

    def __str__(self) -> str:
        where = f" in {self.conversation!r}" if self.conversation else ""
        return (
            f"{self.model}{where}: {self.utilization:.0%} of the {self.context_window:,}-token window used "
            f"({self.tokens:,} tokens, threshold {self.threshold:.0%})"
        )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One way to relieve the window, with its effect on the next prompt."""

    action: str  # "summarize_older_turns", "drop_tool_outputs", "switch_to_larger_window", "switch_to_cheaper_model"
    tokens_saved: int  # prompt tokens removed from the next call (0 for a model switch with a larger window)
    usd_saved: Decimal | None  # on the next call; negative when it costs more; None when unpriced
    detail: str
    target_model: str | None = None  # for model switches


@dataclass(frozen=True, slots=True)
class ContextReport:
    """Window utilization of one call."""

    model: str
    tokens: int  # prompt tokens (counted or billed)
    exact: bool
    context_window: int | None
    reserved_output_tokens: int
    utilization: float | None  # None when the window is unknown
    conversation: str | None
    warnings: tuple[ContextWarning, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()

    @property
    def headroom(self) -> int | None:
        """Tokens left for the prompt to grow before the window (less reserved output) is full."""
        if self.context_window is None:
            return None
        return self.context_window - self.reserved_output_tokens - self.tokens


@dataclass(slots=True)
class ConversationState:
    """What the monitor has seen of one conversation (a session, an agent, or both joined by a key)."""

    calls: int = 0
    last_tokens: int = 0
    peak_utilization: float = 0.0
    growth_per_call: float = 0.0  # mean increase of the prompt from one call to the next
    warned: set[float] = field(default_factory=set)

    def calls_until_full(self, context_window: int | None) -> int | None:
        """Calls left at the observed growth rate before the prompt exceeds the window."""
        if context_window is None or self.growth_per_call <= 0:
            return None
        return max(0, int((context_window - self.last_tokens) // self.growth_per_call))


class ContextMonitor:
    """Utilization per call and per conversation, threshold warnings and computed recommendations.

    `thresholds` are fractions of the window; `reserve_output_tokens` is counted as used (the room
    the reply needs); `keep_recent_messages` are never proposed for summarizing or dropping;
    `summary_ratio` is the size of a summary relative to what it replaces; `candidates` limits model
    switches to these names (default: chat models of the same provider and family in the catalog).
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (0.75, 0.9),
        *,
        reserve_output_tokens: int = 0,
        keep_recent_messages: int = 4,
        summary_ratio: float = 0.1,
        candidates: Sequence[str] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if not thresholds or any(not 0 < t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be fractions in (0, 1], got {thresholds!r}")
        if not 0 <= summary_ratio < 1:
            raise ValueError(f"summary_ratio must be in [0, 1), got {summary_ratio!r}")
        self.thresholds = tuple(sorted(thresholds))
        self.reserve_output_tokens = reserve_output_tokens
        self.keep_recent_messages = keep_recent_messages
        self.summary_ratio = summary_ratio
        self.candidates = tuple(candidates) if candidates is not None else None
        self._catalog = catalog
        self._conversations: dict[str, ConversationState] = {}
        self._lock = threading.Lock()
        # set by `Tracker.context()`: records the tracker's pending captures before the monitor is read
        self.before_read: Callable[[], object] | None = None

    @property
    def catalog(self) -> Catalog:
        return self._catalog or default_catalog()

    # -- entry points -----------------------------------------------------------------------------

    def check(
        self,
        text_or_messages: str | Messages,
        model: str,
        *,
        conversation: str | None = None,
        provider: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> ContextReport:
        """Count a request before sending it and report how full the window would be."""
        if self.before_read is not None:
            self.before_read()
        counted = count(text_or_messages, model, tools=tools)
        return self._report(
            model, provider, counted.tokens, counted.exact, conversation, text_or_messages, tools
        )

    def observe(
        self, conversation: str | None, usage: Usage, model: str, *, provider: str | None = None
    ) -> ContextReport:
        """Record a call's billed usage; the next prompt will hold this prompt and its reply."""
        tokens = usage.input_tokens + usage.output_tokens - usage.reasoning_tokens
        return self._report(model, provider, tokens, True, conversation, None, None)

    def conversation(self, key: str) -> ConversationState | None:
        if self.before_read is not None:
            self.before_read()
        return self._conversations.get(key)

    def conversations(self) -> dict[str, ConversationState]:
        if self.before_read is not None:
            self.before_read()
        with self._lock:
            return dict(self._conversations)

    def reset(self, conversation: str | None = None) -> None:
        """Forget one conversation, or all of them."""
        with self._lock:
            if conversation is None:
                self._conversations.clear()
            else:
                self._conversations.pop(conversation, None)

    # -- the report ---------------------------------------------------------------------------------

    def _report(
        self,
        model: str,
        provider: str | None,
        tokens: int,
        exact: bool,
        conversation: str | None,
        request: str | Messages | None,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> ContextReport:
        window = model_limits(model, provider, self._catalog).context_window
        used = tokens + self.reserve_output_tokens
        utilization = used / window if window else None
        reached = [t for t in self.thresholds if utilization is not None and utilization >= t]
        first = self._remember(conversation, tokens, utilization, reached)
        warnings = tuple(
            ContextWarning(t, utilization or 0.0, tokens, window or 0, model, conversation, t in first)
            for t in reached
        )
        recommendations: tuple[Recommendation, ...] = ()
        if reached:
            recommendations = self._recommend(model, provider, tokens, window, request, tools)
        return ContextReport(
            model=model,
            tokens=tokens,
            exact=exact,
            context_window=window,
            reserved_output_tokens=self.reserve_output_tokens,
            utilization=utilization,
            conversation=conversation,
            warnings=warnings,
            recommendations=recommendations,
        )

    def _remember(
        self, conversation: str | None, tokens: int, utilization: float | None, reached: list[float]
    ) -> set[float]:
        if conversation is None:
            return set(reached)
        with self._lock:
            state = self._conversations.setdefault(conversation, ConversationState())
            if state.calls:
                growth = tokens - state.last_tokens
                state.growth_per_call += (growth - state.growth_per_call) / state.calls
            state.calls += 1
            state.last_tokens = tokens
            state.peak_utilization = max(state.peak_utilization, utilization or 0.0)
            first = set(reached) - state.warned
            state.warned.update(reached)
        return first

    # -- recommendations -------------------------------------------------------------------------------

    def _recommend(
        self,
        model: str,
        provider: str | None,
        tokens: int,
        window: int | None,
        request: str | Messages | None,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> tuple[Recommendation, ...]:
        found: list[Recommendation] = []
        if request is not None and not isinstance(request, str):
            found += self._trim_recommendations(list(request), model, provider)
        found += self._switch_recommendations(model, provider, tokens, window, request, tools)
        return tuple(found)

    def _trim_recommendations(
        self, messages: list[Mapping[str, Any]], model: str, provider: str | None
    ) -> list[Recommendation]:
        cut = max(0, len(messages) - self.keep_recent_messages)
        older = [m for m in messages[:cut] if _role(m) not in ("system", "developer")]
        found = []
        if older:
            older_tokens = count(older, model).tokens - 3  # without the reply primer
            summary_tokens = round(older_tokens * self.summary_ratio)
            saved = older_tokens - summary_tokens
            found.append(
                Recommendation(
                    "summarize_older_turns",
                    saved,
                    self._usd(saved, model, provider),
                    f"summarize {len(older)} older messages ({older_tokens:,} tokens) into about "
                    f"{summary_tokens:,} tokens",
                )
            )
        tool_outputs = [m for m in messages[:cut] if _role(m) in ("tool", "function")]
        if tool_outputs:
            saved = count(tool_outputs, model).tokens - 3
            found.append(
                Recommendation(
                    "drop_tool_outputs",
                    saved,
                    self._usd(saved, model, provider),
                    f"drop or truncate {len(tool_outputs)} older tool outputs ({saved:,} tokens)",
                )
            )
        return found

    def _switch_recommendations(
        self,
        model: str,
        provider: str | None,
        tokens: int,
        window: int | None,
        request: str | Messages | None,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> list[Recommendation]:
        current_cost = self._usd(tokens, model, provider)
        larger: tuple[Decimal, int, str, str | None, int] | None = None
        cheaper: tuple[Decimal, int, str, str | None, int] | None = None
        for name, candidate_provider in self._candidate_models(model, provider):
            candidate_window = model_limits(name, candidate_provider, self._catalog).context_window
            if candidate_window is None:
                continue
            candidate_tokens = count(request, name, tools=tools).tokens if request is not None else tokens
            needed = candidate_tokens + self.reserve_output_tokens
            cost = self._usd(candidate_tokens, name, candidate_provider)
            if cost is None or needed > candidate_window:
                continue
            entry = (cost, candidate_tokens, name, candidate_provider, candidate_window)
            if (
                window is not None
                and candidate_window > window
                and (larger is None or _price_gap(cost, current_cost) < _price_gap(larger[0], current_cost))
            ):
                larger = entry  # the larger window nearest in price: the least disruptive switch
            if current_cost is not None and cost < current_cost and (cheaper is None or cost < cheaper[0]):
                cheaper = entry
        found = []
        if larger is not None:
            cost, candidate_tokens, name, _, candidate_window = larger
            found.append(
                Recommendation(
                    "switch_to_larger_window",
                    tokens - candidate_tokens,
                    None if current_cost is None else current_cost - cost,
                    f"{name} has a {candidate_window:,}-token window; this prompt would fill "
                    f"{(candidate_tokens + self.reserve_output_tokens) / candidate_window:.0%} of it",
                    name,
                )
            )
        if cheaper is not None and (larger is None or cheaper[2] != larger[2]):
            cost, candidate_tokens, name, _, candidate_window = cheaper
            assert current_cost is not None
            found.append(
                Recommendation(
                    "switch_to_cheaper_model",
                    tokens - candidate_tokens,
                    current_cost - cost,
                    f"{name} prices this prompt at ${cost} instead of ${current_cost} "
                    f"({candidate_window:,}-token window)",
                    name,
                )
            )
        return found

    def _candidate_models(self, model: str, provider: str | None) -> list[tuple[str, str | None]]:
        if self.candidates is not None:
            return [(name, None) for name in self.candidates if name != model]
        match = self.catalog.resolve(model, provider)
        if match is None:
            return []
        provider_id = _provider_id(match)
        model_id = _model_id(match)
        stem = re.split(r"[-_.:/]", model_id.lower(), maxsplit=1)[0]
        return [
            (candidate, provider_id)
            for candidate_provider, candidate, _ in self.catalog.search(stem)
            if candidate_provider == provider_id
            and candidate != model_id
            and candidate.lower().startswith(stem)
            and not re.search(_NOT_CHAT, candidate.lower())
        ]

    def _usd(self, tokens: int, model: str, provider: str | None) -> Decimal | None:
        if tokens <= 0:
            return Decimal(0)
        cost = self.catalog.price(Usage(input_tokens=tokens, output_tokens=1), model, provider)
        if not cost.priced or cost.output <= 0:  # models without an output price are not chat models
            return None
        return self.catalog.price(Usage(input_tokens=tokens), model, provider).total


def _price_gap(cost: Decimal, reference: Decimal | None) -> Decimal:
    return cost if reference is None else abs(cost - reference)


def _role(message: Any) -> str:
    role = message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)
    return role if isinstance(role, str) else ""


def _provider_id(match: object) -> str | None:
    found = getattr(match, "provider_id", None) or getattr(match, "provider", None)
    if isinstance(found, str):
        return found
    identifier = getattr(found, "id", None)
    return identifier if isinstance(identifier, str) else None


def _model_id(match: object) -> str:
    found = getattr(match, "model_id", None) or getattr(match, "model", None)
    if isinstance(found, str):
        return found
    identifier = getattr(found, "id", None)
    return identifier if isinstance(identifier, str) else ""
