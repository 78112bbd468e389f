"""Budget policies: what may be spent (USD and/or tokens), by whom (scope) and over which window.

    Budget(limit_usd="5", window="daily", scope={"agent": "researcher"}, tz="Europe/Berlin")
    Budget(limit_tokens=200_000, window="rolling:1h", scope={"session": "*"})   # one budget per session
    Budget(limit_usd="50", window="monthly", scope={"user": "*"}, action="warn")

Windows:
  "call"                        each call on its own: its worst-case cost may not pass the limit
  "hourly" "daily" "weekly" "monthly"
                                calendar-aligned in `tz` (weeks start on Monday); a day is 23 or 25 hours
                                long across a DST change, months end on their last day
  "rolling:30m" "rolling:2h" "rolling:7d"
                                the last N seconds/minutes/hours/days, counted in 20 buckets of N/20: a
                                call's spend leaves the window between N and N + N/20 after it was made
  "session" "run"               one window per value of the call's `session` (`run`) scope; a call without
                                one is not counted by the budget

Bad configuration raises `BudgetConfigError` when the budget is built, never at the first call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tokentrail._money import decimal_to_units, units_to_decimal
from tokentrail.errors import TokentrailError

if TYPE_CHECKING:
    from tokentrail.budgets.events import BudgetBreach

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ROLLING_BUCKETS",
    "SCOPE_KEYS",
    "TOKEN_KINDS",
    "Action",
    "Budget",
    "BudgetConfigError",
    "RequestScope",
    "Window",
]

SCOPE_KEYS: tuple[str, ...] = ("agent", "session", "user", "tool", "tag", "model", "provider", "run")
"""Keys a budget's scope may name. `tag` matches when the call carries that tag."""

TOKEN_KINDS: dict[str, tuple[str, str]] = {
    # kind: (Usage attribute read at settle time, direction bounding it at reserve time)
    "total": ("total_tokens", "both"),
    "input": ("input_tokens", "input"),
    "output": ("output_tokens", "output"),
    "uncached_input": ("uncached_input_tokens", "input"),
    "cache_read": ("cache_read_tokens", "input"),
    "cache_write": ("cache_write_tokens", "input"),
    "reasoning": ("reasoning_tokens", "output"),
}
"""Token kinds a token limit may count; the estimate before a call bounds each by its direction."""

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9, 1.0)
ROLLING_BUCKETS = 20
"""A rolling window is counted in this many buckets: spend leaves it up to 1/20 of the window late."""

Action: TypeAlias = "Literal['block', 'warn'] | Callable[[BudgetBreach], object]"
_ACTIONS = ("block", "warn")
_UNPRICED = ("fail_open", "fail_closed")
_CALENDAR = ("hourly", "daily", "weekly", "monthly")
_ROLLING = re.compile(r"rolling:(\d+)\s*(s|sec|m|min|h|hr|d|day)s?", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400}
_WINDOW_HELP = (
    '"call", "hourly", "daily", "weekly", "monthly", "rolling:<N><s|m|h|d>" (e.g. "rolling:30m"), '
    '"session" or "run"'
)


class BudgetConfigError(TokentrailError, ValueError):
    """A budget, preset or budget file is malformed: raised when it is loaded, before any call."""


# -- windows --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """A parsed window spec. `seconds` is the length of a rolling window, 0 for the others."""

    kind: str  # call | hourly | daily | weekly | monthly | rolling | session | run
    seconds: int = 0

    @classmethod
    def parse(cls, spec: str | Window) -> Window:
        if isinstance(spec, Window):
            return spec
        if not isinstance(spec, str):
            raise BudgetConfigError(f"window must be a string such as 'daily', got {spec!r}")
        text = spec.strip().lower()
        if text in ("call", "session", "run", *_CALENDAR):
            return cls(text)
        found = _ROLLING.fullmatch(text)
        if found:
            seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2).lower()]
            if seconds < 60:
                raise BudgetConfigError(f"window {spec!r}: a rolling window must be at least one minute")
            return cls("rolling", seconds)
        hint = _close_window(text)
        raise BudgetConfigError(
            f"unknown window {spec!r}{hint}; use one of {_WINDOW_HELP}",
        )

    @property
    def spec(self) -> str:
        if self.kind != "rolling":
            return self.kind
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if self.seconds % size == 0:
                return f"rolling:{self.seconds // size}{unit}"
        return f"rolling:{self.seconds}s"  # pragma: no cover - parse() only builds whole minutes

    @property
    def calendar(self) -> bool:
        return self.kind in _CALENDAR

    @property
    def bucket_seconds(self) -> float:
        return self.seconds / ROLLING_BUCKETS

    def span(self, now: float, tz: ZoneInfo) -> tuple[float, float]:
        """Start and end (epoch seconds) of the calendar window holding `now`, aligned in `tz`."""
        local = datetime.fromtimestamp(now, tz)
        kind = self.kind
        if kind == "hourly":
            start = local.replace(minute=0, second=0, microsecond=0)
            start_ts = start.timestamp()
            return start_ts, _next_hour(start_ts, tz)
        if kind == "daily":
            day = local.date()
            return _midnight(day, tz), _midnight(day + timedelta(days=1), tz)
        if kind == "weekly":
            monday = local.date() - timedelta(days=local.weekday())
            return _midnight(monday, tz), _midnight(monday + timedelta(days=7), tz)
        if kind == "monthly":
            first = local.date().replace(day=1)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return _midnight(first, tz), _midnight(following, tz)
        raise ValueError(f"window {self.spec!r} is not a calendar window")

    def __str__(self) -> str:
        return self.spec


def _midnight(day: date, tz: ZoneInfo) -> float:
    # A zone whose clocks jump over midnight starts its day at the first instant that exists.
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _next_hour(start_ts: float, tz: ZoneInfo) -> float:
    # Zones with half-hour DST shifts make some local hours 30 or 90 minutes long: find the next boundary.
    candidate = start_ts + 3600
    local = datetime.fromtimestamp(candidate, tz)
    return candidate - (local.minute * 60 + local.second)


def _close_window(text: str) -> str:
    import difflib

    close = difflib.get_close_matches(text, ["call", "session", "run", *_CALENDAR], n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if text.startswith("rolling"):
        return ' (write the length after a colon, e.g. "rolling:30m")'
    return ""


# -- the request side -------------------------------------------------------------------------------------


class RequestScope:
    """Who a call is for, normalized once per call: single values by key plus the set of tags."""

    __slots__ = ("key", "tags", "values")

    def __init__(self, values: Mapping[str, str], tags: tuple[str, ...]) -> None:
        self.values = values
        self.tags = tags
        self.key = (tuple(sorted(values.items())), tags)

    @classmethod
    def of(
        cls,
        scope: Mapping[str, Any] | None,
        model: str | None = None,
        provider: str | None = None,
    ) -> RequestScope:
        values: dict[str, str] = {}
        tags: tuple[str, ...] = ()
        if scope:
            for name, value in scope.items():
                if value is None:
                    continue
                if name in ("tags", "tag"):
                    tags = _tags(value, tags)
                elif isinstance(value, str):
                    values[name] = value
                else:
                    values[name] = str(value)
        if model is not None and "model" not in values:
            values["model"] = model
        if provider is not None and "provider" not in values:
            values["provider"] = provider
        return cls(values, tags)

    def as_dict(self) -> dict[str, str]:
        shown = dict(self.values)
        if self.tags:
            shown["tags"] = ",".join(self.tags)
        return shown


def _tags(value: object, tags: tuple[str, ...]) -> tuple[str, ...]:
    found = {value} if isinstance(value, str) else {str(v) for v in value}  # type: ignore[attr-defined]
    return tuple(sorted(found.union(tags)))


# -- budgets ------------------------------------------------------------------------------------------------


class Budget:
    """One spending policy: a USD and/or token limit over a window, for the calls its scope matches.

    `scope` maps scope keys (agent, session, user, tool, tag, model, provider, run) to a value, or to
    "*" for one budget per distinct value. `thresholds` are fractions of the limit that raise an alert
    once per window; the limit itself always alerts. `action` at the limit: "block" refuses the call with
    `BudgetExceeded`, "warn" lets it through, a callable is called with a `BudgetBreach` and the call
    goes ahead unless it raises. `on_unpriced` decides what a USD limit does with a model it cannot
    price: "fail_open" counts it as $0 with a warning, "fail_closed" refuses it.
    """

    __slots__ = (
        "_span",
        "action",
        "limit_tokens",
        "limit_units",
        "name",
        "on_unpriced",
        "scope",
        "thresholds",
        "token_kind",
        "tz",
        "tz_name",
        "window",
    )

    def __init__(
        self,
        limit_usd: Decimal | str | int | float | None = None,
        limit_tokens: int | None = None,
        *,
        token_kind: str = "total",
        window: str | Window = "daily",
        scope: Mapping[str, str] | None = None,
        thresholds: Iterable[float | Decimal | str] = DEFAULT_THRESHOLDS,
        action: Action = "block",
        tz: str | ZoneInfo = "UTC",
        name: str | None = None,
        on_unpriced: Literal["fail_open", "fail_closed"] = "fail_open",
    ) -> None:
        self.limit_units = _limit_units(limit_usd)
        self.limit_tokens = _limit_tokens(limit_tokens)
        if self.limit_units is None and self.limit_tokens is None:
            raise BudgetConfigError("a budget needs limit_usd or limit_tokens (or both)")
        if token_kind not in TOKEN_KINDS:
            raise BudgetConfigError(f"unknown token_kind {token_kind!r}; use one of {', '.join(TOKEN_KINDS)}")
        self.token_kind = token_kind
        self.window = Window.parse(window)
        self.scope: tuple[tuple[str, str], ...] = _scope(scope)
        self.thresholds: tuple[Decimal, ...] = _thresholds(thresholds)
        if not (callable(action) or action in _ACTIONS):
            raise BudgetConfigError(f"action must be 'block', 'warn' or a callable, got {action!r}")
        self.action: Action = action
        self.tz, self.tz_name = _zone(tz)
        if on_unpriced not in _UNPRICED:
            raise BudgetConfigError(f"on_unpriced must be 'fail_open' or 'fail_closed', got {on_unpriced!r}")
        self.on_unpriced = on_unpriced
        self.name = _name(name, self.scope, self.window)
        self._span: tuple[float, float, str] = (0.0, 0.0, "")

    # -- derived views ------------------------------------------------------------------------------------

    @property
    def limit_usd(self) -> Decimal | None:
        return None if self.limit_units is None else units_to_decimal(self.limit_units)

    @property
    def blocks(self) -> bool:
        return self.action == "block"

    @property
    def action_name(self) -> str:
        return self.action if isinstance(self.action, str) else "callable"

    @property
    def scope_dict(self) -> dict[str, str]:
        return dict(self.scope)

    def alert_levels(self) -> tuple[Decimal, ...]:
        """The fractions of the limit that alert: the thresholds plus 1 (the limit) when missing."""
        if Decimal(1) in self.thresholds:
            return self.thresholds
        return tuple(sorted((*self.thresholds, Decimal(1))))

    def with_limits(self, limit_units: int | None, limit_tokens: int | None) -> Budget:
        """This budget with other limits (an operator's override), same name, scope and window."""
        twin = object.__new__(Budget)
        for attr in Budget.__slots__:
            object.__setattr__(twin, attr, getattr(self, attr))
        twin.limit_units = limit_units
        twin.limit_tokens = limit_tokens
        return twin

    # -- matching -------------------------------------------------------------------------------------------

    def scope_keys(self, request: RequestScope) -> list[str]:
        """Instance keys of this budget that `request` counts against ([] when it does not apply)."""
        keys = [""]
        for field, wanted in self.scope:
            if field == "tag":
                if wanted != "*":
                    if wanted not in request.tags:
                        return []
                    continue
                if not request.tags:
                    return []
                keys = [_join(k, f"tag={escape(t)}") for k in keys for t in request.tags]
                continue
            have = request.values.get(field)
            if have is None:
                return []
            if wanted == "*":
                keys = [_join(k, f"{field}={escape(have)}") for k in keys]
            elif have != wanted:
                return []
        return keys

    def current_span(self, now: float) -> tuple[float, float, str]:
        """(start, end, key) of the calendar window holding `now`; cached while `now` stays inside it."""
        span = self._span
        if span[0] <= now < span[1]:
            return span
        start, end = self.window.span(now, self.tz)
        key = datetime.fromtimestamp(start, self.tz).isoformat(timespec="minutes")
        span = (start, end, key)
        self._span = span
        return span

    def resets_at(self, now: float) -> datetime | None:
        """When the window holding `now` starts afresh, or for a rolling window when its oldest spend
        next leaves it (None for session, run and call windows)."""
        if self.window.calendar:
            return datetime.fromtimestamp(self.current_span(now)[1], self.tz)
        if self.window.kind == "rolling":  # the oldest bucket's spend leaves at the next bucket boundary
            bucket = self.window.bucket_seconds
            return datetime.fromtimestamp((math.floor(now / bucket) + 1) * bucket, self.tz)
        return None

    # -- serialization --------------------------------------------------------------------------------------

    def definition(self) -> dict[str, Any]:
        """JSON-ready description (what `budget status` shows from a backend; callables become 'callable')."""
        return {
            "name": self.name,
            "limit_usd": None if self.limit_units is None else str(units_to_decimal(self.limit_units)),
            "limit_tokens": self.limit_tokens,
            "token_kind": self.token_kind,
            "window": self.window.spec,
            "scope": dict(self.scope),
            "thresholds": [str(t) for t in self.thresholds],
            "action": self.action_name,
            "tz": self.tz_name,
            "on_unpriced": self.on_unpriced,
        }

    @classmethod
    def from_definition(cls, data: Mapping[str, Any]) -> Budget:
        """The budget a `definition()` (or a config-file entry) describes."""
        return budget_from_mapping(data)

    def __repr__(self) -> str:
        limits = []
        if self.limit_units is not None:
            limits.append(f"limit_usd={units_to_decimal(self.limit_units)}")
        if self.limit_tokens is not None:
            limits.append(f"limit_tokens={self.limit_tokens} ({self.token_kind})")
        scope = f", scope={dict(self.scope)}" if self.scope else ""
        return f"Budget({self.name!r}, {', '.join(limits)}, window={self.window.spec!r}{scope}, action={self.action_name!r})"


# -- validation helpers -------------------------------------------------------------------------------------


def _limit_units(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool):
        raise BudgetConfigError(f"limit_usd must be a number of dollars, got {limit!r}")
    try:
        if isinstance(limit, float):
            amount = Decimal(repr(limit))
        elif isinstance(limit, (Decimal, int, str)):
            amount = Decimal(str(limit).strip().lstrip("$")) if isinstance(limit, str) else Decimal(limit)
        else:
            raise BudgetConfigError(f"limit_usd must be a Decimal, str or int, got {type(limit).__name__}")
    except InvalidOperation:
        raise BudgetConfigError(f"limit_usd {limit!r} is not a number of dollars") from None
    if not amount.is_finite():
        raise BudgetConfigError(f"limit_usd must be finite, got {limit!r}")
    if amount < 0:
        raise BudgetConfigError(f"limit_usd must not be negative, got {limit!r}")
    try:
        return decimal_to_units(amount, what="limit_usd")
    except ValueError:
        raise BudgetConfigError(f"limit_usd {limit!r} has more than 24 decimal places") from None


def _limit_tokens(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise BudgetConfigError(f"limit_tokens must be a whole number of tokens, got {limit!r}")
    if limit < 0:
        raise BudgetConfigError(f"limit_tokens must not be negative, got {limit!r}")
    return int(limit)


def _scope(scope: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if scope is None:
        return ()
    if not isinstance(scope, Mapping):
        raise BudgetConfigError(f"scope must be a mapping such as {{'agent': 'researcher'}}, got {scope!r}")
    pairs = []
    for key, value in scope.items():
        if key == "tags":
            key = "tag"
        if key not in SCOPE_KEYS:
            raise BudgetConfigError(f"unknown scope key {key!r}; use one of {', '.join(SCOPE_KEYS)}")
        if not isinstance(value, str) or not value:
            raise BudgetConfigError(
                f"scope value for {key!r} must be a non-empty string ('*' for each value)"
            )
        pairs.append((key, value))
    return tuple(sorted(pairs))


def _thresholds(thresholds: Iterable[float | Decimal | str]) -> tuple[Decimal, ...]:
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise BudgetConfigError(
            f"thresholds must be a list of fractions such as (0.5, 0.8), got {thresholds!r}"
        )
    found = set()
    for value in thresholds:
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            fraction = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            raise BudgetConfigError(f"threshold {value!r} is not a number") from None
        if not fraction.is_finite() or fraction <= 0:
            raise BudgetConfigError(f"thresholds are fractions of the limit above 0, got {value!r}")
        found.add(fraction)
    return tuple(sorted(found))


def _zone(tz: str | ZoneInfo) -> tuple[ZoneInfo, str]:
    if isinstance(tz, ZoneInfo):
        return tz, tz.key
    if not isinstance(tz, str) or not tz:
        raise BudgetConfigError(f"tz must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz), tz
    except (ZoneInfoNotFoundError, ValueError):
        raise BudgetConfigError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin'"
        ) from None


def _name(name: str | None, scope: tuple[tuple[str, str], ...], window: Window) -> str:
    if name is None:
        where = ",".join(f"{k}={v}" for k, v in scope) or "global"
        return f"{where}/{window.spec}"
    if not isinstance(name, str) or not name.strip():
        raise BudgetConfigError(f"budget name must be a non-empty string, got {name!r}")
    if any(ord(c) < 32 for c in name):
        raise BudgetConfigError(f"budget name {name!r} contains control characters")
    return name


_EXACT = Context(prec=1000)
_ESCAPES = str.maketrans({"%": "%25", "|": "%7C", "&": "%26", "=": "%3D"})


def escape(text: str) -> str:
    """`text` made safe inside a counter key (no '|', '&', '=' of its own)."""
    return text.translate(_ESCAPES)


def _join(key: str, part: str) -> str:
    return f"{key}&{part}" if key else part


def threshold_amounts(limit: int | None, levels: tuple[Decimal, ...]) -> tuple[int, ...]:
    """Absolute amounts (units or tokens) at which each alert level is reached: ceil(limit × level)."""
    if limit is None:
        return ()
    return tuple(
        int(_EXACT.multiply(Decimal(limit), level).to_integral_value(ROUND_CEILING, _EXACT))
        for level in levels
    )


def parse_scope_key(scope_key: str) -> dict[str, str]:
    """The scope values named by an instance key (inverse of `Budget.scope_keys`)."""
    if not scope_key:
        return {}
    found = {}
    for part in scope_key.split("&"):
        field, _, value = part.partition("=")
        found[_unescape(field)] = _unescape(value)
    return found


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return text.replace("%7C", "|").replace("%26", "&").replace("%3D", "=").replace("%25", "%")


_BUDGET_KEYS = (
    "name",
    "limit_usd",
    "limit_tokens",
    "token_kind",
    "window",
    "scope",
    "thresholds",
    "action",
    "tz",
    "on_unpriced",
)


def budget_from_mapping(data: Mapping[str, Any], where: str = "budget") -> Budget:
    """A `Budget` from a config entry; unknown keys and bad values raise `BudgetConfigError`."""
    if not isinstance(data, Mapping):
        raise BudgetConfigError(f"{where}: expected a table/object of budget settings, got {data!r}")
    unknown = sorted(set(data) - set(_BUDGET_KEYS))
    if unknown:
        raise BudgetConfigError(f"{where}: unknown setting {unknown[0]!r}; use {', '.join(_BUDGET_KEYS)}")
    settings = dict(data)
    if settings.get("action") == "callable":
        raise BudgetConfigError(f"{where}: a callable action can only be given in code")
    if isinstance(settings.get("limit_usd"), float):
        settings["limit_usd"] = repr(settings["limit_usd"])
    thresholds = settings.pop("thresholds", None)
    try:
        if thresholds is not None:
            if not isinstance(thresholds, list):
                raise BudgetConfigError(f"thresholds must be a list, got {thresholds!r}")
            settings["thresholds"] = [str(t) if isinstance(t, float) else t for t in thresholds]
        limit_usd = settings.pop("limit_usd", None)
        limit_tokens = settings.pop("limit_tokens", None)
        return Budget(limit_usd, limit_tokens, **settings)
    except BudgetConfigError as exc:
        name = data.get("name")
        raise BudgetConfigError(f"{where}{f' ({name})' if name else ''}: {exc}") from None
    except TypeError as exc:
        raise BudgetConfigError(f"{where}: {exc}") from None
