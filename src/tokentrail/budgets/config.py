"""Budgets from files, environment variables and presets. Everything is checked when it is loaded.

A TOML file (JSON takes the same shape):

    preset = "production"                 # optional: the preset's budgets come first
    backend = "sqlite:///budgets.db"      # optional: where the counters live
    lease_seconds = 600                   # optional

    [[budgets]]
    name = "researcher-daily"
    limit_usd = "5"
    window = "daily"
    tz = "Europe/Berlin"
    scope = { agent = "researcher" }
    thresholds = [0.5, 0.8, 1.0]
    action = "block"                      # or "warn"

Environment: `TOKENTRAIL_BUDGETS_FILE` (a file as above), `TOKENTRAIL_BUDGETS` (the same as inline JSON:
a list of budgets or an object), `TOKENTRAIL_BUDGET_PRESET` (a preset name) and
`TOKENTRAIL_BUDGET_BACKEND` (a back-end URL).

Presets are just named policy sets; `preset(name, scale=…)` multiplies their dollar limits.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokentrail._money import units_to_decimal
from tokentrail.budgets.policy import Budget, BudgetConfigError, budget_from_mapping

if TYPE_CHECKING:
    from tokentrail.budgets.manager import BudgetManager

__all__ = [
    "PRESETS",
    "BudgetConfig",
    "budget_from_mapping",
    "budgets_from_env",
    "config_from_env",
    "load_budgets",
    "load_config",
    "parse_config",
    "preset",
]

_EXACT = Context(prec=1000)
_TOP_KEYS = ("budgets", "budget", "preset", "preset_scale", "backend", "lease_seconds")


def _development() -> list[Budget]:
    return [
        Budget("10", window="daily", action="warn", name="development/daily"),
        Budget("1", window="call", name="development/per-call"),
    ]


def _production() -> list[Budget]:
    return [
        Budget("100", window="daily", name="production/daily"),
        Budget("25", window="daily", scope={"agent": "*"}, name="production/agent-daily"),
        Budget("5", window="session", name="production/session"),
        Budget("20", window="rolling:1h", action="warn", name="production/spike"),
    ]


def _enterprise() -> list[Budget]:
    return [
        Budget("10000", window="monthly", name="enterprise/monthly"),
        Budget("500", window="daily", scope={"agent": "*"}, name="enterprise/agent-daily"),
        Budget("50", window="monthly", scope={"user": "*"}, name="enterprise/user-monthly"),
        Budget("25", window="session", name="enterprise/session"),
        Budget("200", window="rolling:1h", action="warn", name="enterprise/spike"),
    ]


PRESETS: dict[str, Callable[[], list[Budget]]] = {
    "development": _development,
    "production": _production,
    "enterprise": _enterprise,
}
"""Named policy sets: development (warn at $10/day, block calls over $1), production ($100/day overall,
$25/day per agent, $5 per session, a warning above $20 in any hour) and enterprise ($10k/month overall,
$500/day per agent, $50/month per user, $25 per session, a warning above $200 in any hour)."""


def preset(name: str, *, scale: Decimal | str | int = 1, tz: str | None = None) -> list[Budget]:
    """The budgets of preset `name`, with dollar limits multiplied by `scale` and windows in `tz`."""
    if name not in PRESETS:
        raise BudgetConfigError(f"unknown budget preset {name!r}; use one of {', '.join(PRESETS)}")
    try:
        factor = Decimal(str(scale))
    except ArithmeticError:
        raise BudgetConfigError(f"preset scale must be a number, got {scale!r}") from None
    if not factor.is_finite() or factor <= 0:
        raise BudgetConfigError(f"preset scale must be positive, got {scale!r}")
    budgets = []
    for budget in PRESETS[name]():
        data = budget.definition()
        if budget.limit_units is not None:
            data["limit_usd"] = str(_EXACT.multiply(units_to_decimal(budget.limit_units), factor))
        if tz is not None:
            data["tz"] = tz
        budgets.append(budget_from_mapping(data))
    return budgets


@dataclass
class BudgetConfig:
    """What a budget file (or the environment) asks for: budgets, and optionally a back-end and lease."""

    budgets: list[Budget] = field(default_factory=list)
    backend: str | None = None
    lease_seconds: float | None = None

    def manager(self, **options: Any) -> BudgetManager:
        """A `BudgetManager` for these budgets (keyword options override the file's)."""
        from tokentrail.budgets.manager import BudgetManager

        if self.lease_seconds is not None:
            options.setdefault("lease_seconds", self.lease_seconds)
        options.setdefault("backend", self.backend)
        return BudgetManager(self.budgets, **options)


def parse_config(data: Mapping[str, Any] | list[Any], source: str = "budget config") -> BudgetConfig:
    """A `BudgetConfig` from parsed TOML/JSON: an object as in the module docs, or a list of budgets."""
    if isinstance(data, list):
        data = {"budgets": data}
    if not isinstance(data, Mapping):
        raise BudgetConfigError(f"{source}: expected an object or a list of budgets")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise BudgetConfigError(f"{source}: unknown setting {unknown[0]!r}; use {', '.join(_TOP_KEYS)}")
    config = BudgetConfig()
    if "preset" in data:
        config.budgets.extend(preset(str(data["preset"]), scale=data.get("preset_scale", 1)))
    entries = data.get("budgets", data.get("budget", []))
    if not isinstance(entries, list):
        raise BudgetConfigError(f"{source}: 'budgets' must be a list of tables")
    for position, entry in enumerate(entries):
        config.budgets.append(budget_from_mapping(entry, f"{source}: budgets[{position}]"))
    names = [b.name for b in config.budgets]
    for name in names:
        if names.count(name) > 1:
            raise BudgetConfigError(f"{source}: two budgets are named {name!r}")
    backend = data.get("backend")
    if backend is not None and not isinstance(backend, str):
        raise BudgetConfigError(f"{source}: backend must be a URL string")
    config.backend = backend
    lease = data.get("lease_seconds")
    if lease is not None:
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease <= 0:
            raise BudgetConfigError(f"{source}: lease_seconds must be a positive number")
        config.lease_seconds = float(lease)
    return config


def load_config(path: str | os.PathLike[str]) -> BudgetConfig:
    """Read a `.toml` or `.json` budget file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise BudgetConfigError(f"cannot read budget file {str(file)!r}: {exc}") from None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BudgetConfigError(f"{file}: not valid JSON: {exc}") from None
    else:
        data = _parse_toml(text, str(file))
    return parse_config(data, str(file))


def load_budgets(path: str | os.PathLike[str]) -> list[Budget]:
    """The budgets of a `.toml` or `.json` budget file."""
    return load_config(path).budgets


def config_from_env(environ: Mapping[str, str] | None = None) -> BudgetConfig:
    """Budgets and back-end named by TOKENTRAIL_BUDGET_PRESET, TOKENTRAIL_BUDGETS_FILE, TOKENTRAIL_BUDGETS
    and TOKENTRAIL_BUDGET_BACKEND (in that order; later budgets add to earlier ones)."""
    env = os.environ if environ is None else environ
    config = BudgetConfig()
    if env.get("TOKENTRAIL_BUDGET_PRESET"):
        config.budgets.extend(preset(env["TOKENTRAIL_BUDGET_PRESET"].strip()))
    for part in (_env_file(env), _env_inline(env)):
        if part is not None:
            config.budgets.extend(part.budgets)
            config.backend = part.backend or config.backend
            config.lease_seconds = part.lease_seconds or config.lease_seconds
    if env.get("TOKENTRAIL_BUDGET_BACKEND"):
        config.backend = env["TOKENTRAIL_BUDGET_BACKEND"].strip()
    names = [b.name for b in config.budgets]
    for name in names:
        if names.count(name) > 1:
            raise BudgetConfigError(f"environment budgets: two budgets are named {name!r}")
    return config


def budgets_from_env(environ: Mapping[str, str] | None = None) -> list[Budget]:
    return config_from_env(environ).budgets


def _env_file(env: Mapping[str, str]) -> BudgetConfig | None:
    path = env.get("TOKENTRAIL_BUDGETS_FILE")
    return load_config(path) if path else None


def _env_inline(env: Mapping[str, str]) -> BudgetConfig | None:
    text = env.get("TOKENTRAIL_BUDGETS")
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BudgetConfigError(f"TOKENTRAIL_BUDGETS is not valid JSON: {exc}") from None
    return parse_config(data, "TOKENTRAIL_BUDGETS")


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        parsed: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetConfigError(f"{source}: not valid TOML: {exc}") from None
    return parsed
