"""The bodies `test_fastread_safety.py` runs the compiled provider-name readers (`_fastread.Reader`) over, and
the comparison it makes: each reader's outcome on a body against its Python reader's (`reader.fallback`) on
an identical fresh copy (a `Usage` field by field, None, or the exception's type and message).

- CORPUS: the bodies recorded from real APIs (`tests/fixtures/recorded/<provider>/*.json`) of the provider
  names below, each read by the reader of its own directory's name, and mutated variants of each: every int
  replaced by each odd count (a str, a bool, a float, -1, 2**30, 2**40, 2**70, None), every dict and list
  replaced by None, [] or {}, and "x", every key removed. The bench bodies (benchmarks/bench_read.py) are
  read by every one of the names.
- EVIL KEYS: a key whose hash is that of a key the readers look up, first in each dict of the bench bodies
  (plain, and padded with more entries: a reader may walk a small dict's entries and look a large one up),
  whose comparison with that name clears its dict or the body, removes or replaces entries, empties the
  output list, says equal, or raises.
- SUBCLASSES: a dict, list, int or str subclass in each position, and every key a str subclass; where the C
  code reads the position, the body must go to the fallback.
- PLANS: malformed plans and layouts, refused (a Reader's partly made blocks freed).
Then the readers are dropped (their cycles collected) and made again.

Run as a script (`python tests/adapters/fastread_corpus.py [--limit N] [--corpus-only]`), which the test
does under valgrind memcheck: it prints a line per part and exits 0 when every outcome matches, 1 listing
the bodies that differ, 3 when the extension is not built (or TOKENTRAIL_NO_EXTENSION is set). Only the
standard library and tokentrail are imported, so that the run under valgrind stays short.

The JSON is parsed with `parse_int` returning the constant 0 for "0": CPython 3.11 builds a zero from a
string with its one digit left uninitialised (`_PyLong_New(0)`), and `maybe_small_long` then computes the
small-int address from it (0 * an uninitialised digit), which memcheck reports wherever that pointer is
used, the C reader's reads of the body included (python/cpython#119022). A 0 parsed that way is the same
object as the constant.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests/fixtures/recorded"
BENCH = ROOT / "benchmarks/bench_read.py"
PROVIDERS = ("openai", "anthropic", "google", "groq", "x-ai", "deepseek", "mistral", "openrouter")
ODD_COUNTS: tuple[object, ...] = ("3", True, 1.5, -1, 2**30, 2**40, 2**70, None)
ODD_CONTAINERS: tuple[object, ...] = (None, [], {}, "x")
LIST_ITEMS = 3  # items of a list followed into (SCAN_ITEMS reads them all; the first few are mutated)
_DELETE = object()


def _parse_int(text: str) -> int:
    return 0 if text == "0" else int(text)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_int=_parse_int)


def bench_bodies() -> dict[str, dict[str, Any]]:
    """CHAT, RESPONSES and MESSAGE of benchmarks/bench_read.py, read from its source (importing it would
    import genai-prices)."""
    tree = ast.parse(BENCH.read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("CHAT", "RESPONSES", "MESSAGE"):
                found[name] = ast.literal_eval(node.value)
    assert set(found) == {"CHAT", "RESPONSES", "MESSAGE"}, (
        f"bench bodies not found in {BENCH}: {sorted(found)}"
    )
    return found


def recorded(provider: str) -> list[tuple[str, dict[str, Any]]]:
    """(file name, body) of the bodies recorded under `provider`'s directory."""
    out = []
    for path in sorted((RECORDED / provider).glob("*.json")):
        data = load_json(path)
        assert data["provider"] == provider, path
        out.append((path.name, data["response"]))
    return out


def warm_readers(providers: tuple[str, ...] = PROVIDERS) -> dict[str, Any]:
    """Each provider name's reader (`named_reader`), after `usage_from_response` met a body of each inline
    shape with it (a reader reads inline only the shapes its name has met)."""
    from tokentrail.adapters import usage_from_response
    from tokentrail.adapters._mapped import mapped_readers

    shapes = bench_bodies()
    for provider in providers:
        for body in shapes.values():
            usage_from_response(copied(body), provider)
    readers = mapped_readers()
    return {provider: readers.named_reader(provider) for provider in providers}


def copied(node: Any) -> Any:
    """A fresh copy of a body's dicts and lists (other values shared)."""
    if type(node) is dict:
        return {key: copied(value) for key, value in node.items()}
    if type(node) is list:
        return [copied(item) for item in node]
    return node


def outcome(read: Callable[[Any], Any], body: Any) -> tuple[str, object]:
    try:
        return "value", read(body)
    except Exception as exc:  # the exception is the outcome compared
        return "raised", (type(exc), str(exc))


def same_value(x: object, y: object) -> bool:
    """Equal values; a Usage equal field by field, by repr and by `_rare_units`, and exactly a Usage (never a
    `_UsageFill` left behind)."""
    from tokentrail import Usage

    if isinstance(x, Usage) or isinstance(y, Usage):
        return (
            type(x) is Usage
            and type(y) is Usage
            and x == y
            and repr(x) == repr(y)
            and x._rare_units == y._rare_units  # type: ignore[union-attr]
        )
    return bool(x == y)


def same(a: tuple[str, object], b: tuple[str, object]) -> bool:
    """Equal outcomes (`outcome`): both values or both raised, and `same_value`."""
    return a[0] == b[0] and same_value(a[1], b[1])


def shown(result: tuple[str, object]) -> str:
    return f"{result[0]}: {result[1]!r}"[:400]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (keys and list indices) to a value inside a body, parents before children."""
    if type(node) is dict:
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif type(node) is list:
        for index, item in enumerate(node[:LIST_ITEMS]):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: object) -> dict[str, Any]:
    """A fresh copy of `body` with the value at `path` replaced by `value` (removed when `_DELETE`)."""
    out: dict[str, Any] = copied(body)
    parent = at(out, path[:-1])
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def variants(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """`body`, and its variants (label, body): each int replaced by each odd count, each dict or list by
    each odd container, each key removed."""
    yield "as recorded", body
    for path in paths(body):
        value = at(body, path)
        where = "/".join(map(str, path))
        if type(value) is int:
            for odd in ODD_COUNTS:
                yield f"{where}={odd!r}", replaced(body, path, odd)
        elif type(value) in (dict, list):
            for odd in ODD_CONTAINERS:
                if type(odd) is not type(value):
                    yield f"{where}={odd!r}", replaced(body, path, odd)
        if type(path[-1]) is str:
            yield f"{where} removed", replaced(body, path, _DELETE)


def corpus(limit: int | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(provider name, label, body) of the whole corpus; `limit` keeps the first `limit` variants of each
    recorded body (all of them when None)."""
    bench = bench_bodies()
    for provider in PROVIDERS:
        for name, body in bench.items():
            yield provider, f"bench {name}", body
        for file, body in recorded(provider):
            for n, (label, variant) in enumerate(variants(body)):
                if limit is not None and n >= limit:
                    break
                yield provider, f"{file}: {label}", variant


def check(readers: dict[str, Any], limit: int | None = None) -> tuple[dict[str, int], list[str]]:
    """Every corpus body read by its provider name's reader and by that reader's fallback (each on a fresh
    copy): the counts, and a line per body whose outcomes differ."""
    from tokentrail.adapters import _mapped

    counts = {"bodies": 0, "read in C": 0}
    wrong = []
    for provider, label, body in corpus(limit):
        reader = readers[provider]
        counts["bodies"] += 1
        if reader.handles(copied(body)) is not None:
            counts["read in C"] += 1
        ours = outcome(reader, copied(body))
        theirs = outcome(reader.fallback, copied(body))
        if not same(ours, theirs):
            wrong.append(f"{provider} {label}: reader {shown(ours)} | fallback {shown(theirs)}")
        # usage_from_response's lookup of the kept reader: in C (_fastread.named_read) and in Python
        ours = outcome(lambda b, p=provider: _mapped.named_read(b, p), copied(body))
        theirs = outcome(lambda b, p=provider: _mapped._named_read(b, p), copied(body))
        if not same(ours, theirs):
            wrong.append(f"{provider} {label}: named_read {shown(ours)} | _named_read {shown(theirs)}")
    return counts, wrong


# -- adversarial bodies ---------------------------------------------------------------------------------------

# The keys the compiled readers look up (the dispatch, the usage objects, their details): where an `Evil` key
# goes, besides the keys already in the dict it is put in.
LOOKED_UP = (
    "custom_id",
    "response",
    "recordId",
    "type",
    "object",
    "choices",
    "output",
    "usage",
    "input_tokens",
    "output_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "input_tokens_details",
    "output_tokens_details",
    "cache_creation",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "ephemeral_1h_input_tokens",
    "server_tool_use",
    "server_tool_use_details",
)
ADVERSARIAL_PROVIDERS = ("openai", "anthropic", "google", "openrouter", "x-ai")


class Trap(Exception):
    """What an `Evil` key's comparison raises."""


class Evil:
    """A dict key whose hash is `name`'s: a lookup of `name` in the dict holding it (put first, so that the
    lookup meets it before the real entry) compares it with `name`, which runs `act(self)`: it may mutate
    `home` (that dict, found from the body by its path when needed: the key holds no reference to it, so
    that what the action drops is freed unless the reader holds it) or `body`, return the comparison's
    result, or raise."""

    fired = 0  # comparisons with `name` so far, in every Evil

    def __init__(self, name: str, act: Callable[[Evil], bool], where: tuple[Any, ...]) -> None:
        self.name = name
        self.act = act
        self.where = where
        self.body: Any = {}
        self.armed = False  # inert while the body is built

    @property
    def home(self) -> Any:
        node: Any = self.body
        for step in self.where:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                return {}
        return node if type(node) is dict else {}

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if self.armed and type(other) is str and other == self.name:
            Evil.fired += 1
            self.armed = False  # the action's own lookups of `name` (home[name] = ...) compare False
            try:
                return self.act(self)
            finally:
                self.armed = True
        return False

    def __repr__(self) -> str:
        return f"Evil({self.name!r})"


def _set(value: object) -> Callable[[Evil], bool]:
    def act(evil: Evil) -> bool:
        evil.home[evil.name] = value
        return False

    return act


def _none(_: None) -> bool:
    return False


def _empty_output(evil: Evil) -> bool:
    output = evil.body.get("output")
    if type(output) is list:
        output.clear()  # its items are freed unless the reader holds them
    return False


def _raise(evil: Evil) -> bool:
    raise Trap(f"compared with {evil.name}")


# What comparing an Evil key with its name does (each returns the comparison's result).
ACTIONS: dict[str, Callable[[Evil], bool]] = {
    "clears its dict": lambda e: _none(e.home.clear()),
    "clears the body": lambda e: _none(e.body.clear()),
    "removes the real entry": lambda e: e.home.pop(e.name, None) is e,  # False
    "removes itself": lambda e: e.home.pop(e, None) is e and False,
    "removes the usage": lambda e: e.body.pop("usage", None) is e,
    "replaces the usage": lambda e: _none(e.body.update(usage={"input_tokens": 5, "output_tokens": 6})),
    "replaces the output": lambda e: _none(e.body.update(output=[{"type": "web_search_call"}])),
    "empties the output list": _empty_output,
    "sets the real entry to 'x'": _set("x"),
    "sets the real entry to -1": _set(-1),
    "sets the real entry to 2**70": _set(2**70),
    "sets the real entry to None": _set(None),
    "sets the real entry to {}": _set({}),
    "sets the real entry to 7": _set(7),
    "raises": _raise,
    "is equal": lambda e: True,  # the lookup gives the Evil key's own value
}


def adversarial_bases() -> dict[str, dict[str, Any]]:
    bench = bench_bodies()
    chat_no_total = copied(bench["CHAT"])
    del chat_no_total["usage"]["total_tokens"]  # a chat body google's reader reads in C
    return {**bench, "CHAT without total_tokens": chat_no_total}


def _dicts(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to the dicts of a body (the body first)."""
    if type(node) is dict:
        yield prefix
        for key, value in node.items():
            yield from _dicts(value, (*prefix, key))
    elif type(node) is list:
        for index, item in enumerate(node[:LIST_ITEMS]):
            yield from _dicts(item, (*prefix, index))


# Entries added to the dict holding an Evil key in its "padded" variant: a reader may read a small dict by
# walking its entries and a large one by lookups (which compare an Evil key with its name).
PADDING = 40


def evil_keys(base: dict[str, Any]) -> Iterator[tuple[str, Callable[[Callable[[Evil], bool]], Any]]]:
    """(label, a function of an action making a fresh body) for every dict of `base`, every name, and with
    or without padding: the dict with an Evil key of that name first, which does the action when compared
    with the name, then its own entries (then PADDING more, in the padded variant)."""
    for where in _dicts(base):
        home = at(base, where)
        for name in dict.fromkeys([*home, *LOOKED_UP]):
            real = home.get(name)
            own = {"input_tokens": 3, "prompt_tokens": 3} if type(real) is dict else 7
            for padded in (False, True):

                def make(
                    act: Callable[[Evil], bool],
                    where: tuple[Any, ...] = where,
                    name: str = name,
                    own: Any = own,
                    padded: bool = padded,
                ) -> Any:
                    body = copied(base)
                    evil = Evil(name, act, where)
                    target = at(body, where)
                    items = list(target.items())
                    target.clear()
                    target[evil] = own
                    target.update(items)
                    if padded:
                        target.update((f"zz_pad_{n:02}", n) for n in range(PADDING))
                    evil.body, evil.armed = body, True
                    return body

                pad = f" padded with {PADDING} entries" if padded else ""
                yield f"{'/'.join(map(str, where)) or 'body'}{pad}: Evil({name!r})", make


def _fires(read: Callable[[Any], Any], body: Any) -> tuple[tuple[str, object], bool]:
    before = Evil.fired
    result = outcome(read, body)
    return result, Evil.fired > before


# Left out of the run under valgrind (`--memcheck`), to keep it short: actions that free nothing the others
# do not (a replaced int), and a provider name whose readers read these bodies as openai's do.
LIGHTER = (
    "sets the real entry to -1",
    "sets the real entry to None",
    "sets the real entry to 7",
    "anthropic",
)


def check_evil(readers: dict[str, Any], *, lighter: bool = False) -> tuple[dict[str, int], list[str]]:
    """Every Evil key of every adversarial base, first inert (compared: False); when a reader or its fallback
    compared it with its name, again with every action. Each time the reader on one fresh body, its fallback
    on another, the C code alone (`handles`) on a third. `lighter`: without LIGHTER's actions and name."""
    counts = {"bodies": 0, "keys compared": 0, "read in C after a comparison": 0}
    wrong = []
    actions = [(k, v) for k, v in ACTIONS.items() if not (lighter and k in LIGHTER)]
    providers = [p for p in ADVERSARIAL_PROVIDERS if not (lighter and p in LIGHTER)]
    for name, base in adversarial_bases().items():
        for label, make in evil_keys(base):
            for provider in providers:
                reader = readers[provider]
                for action, act in (("inert", lambda e: False), *actions):
                    ours, fired = _fires(reader, make(act))
                    theirs, fired_too = _fires(reader.fallback, make(act))
                    counts["bodies"] += 1
                    if not same(ours, theirs):
                        wrong.append(
                            f"{provider} {name} {label} {action}: reader {shown(ours)} | fallback {shown(theirs)}"
                        )
                    if action == "inert":
                        if not (fired or fired_too):
                            break  # never compared: no action would run
                        counts["keys compared"] += 1
                    elif fired:
                        before = Evil.fired
                        counts["read in C after a comparison"] += (
                            reader.handles(make(act)) is not None and Evil.fired > before
                        )
    return counts, wrong


class DictSub(dict):  # type: ignore[type-arg]
    pass


class ListSub(list):  # type: ignore[type-arg]
    pass


class IntSub(int):
    pass


class StrSub(str):
    __slots__ = ()


SUBCLASSES: dict[type, type] = {dict: DictSub, list: ListSub, int: IntSub, str: StrSub}
# A value of another type, for a value of each type: the body goes to the fallback exactly when the C code
# reads that position (checks its type).
PROBES: dict[type, object] = {dict: "x", list: "x", int: 1.5, str: 1.5}


def _with(body: dict[str, Any], path: tuple[Any, ...], make: Callable[[Any], Any]) -> Any:
    """A fresh copy of `body` with the value at `path` replaced by `make(a fresh copy of it)`."""
    out = copied(body)
    if not path:
        return make(out)
    parent = at(out, path[:-1])
    parent[path[-1]] = make(parent[path[-1]])
    return out


def _str_keys(node: Any) -> Any:
    """A copy of a body with every key a StrSub."""
    if type(node) is dict:
        return {StrSub(key): _str_keys(value) for key, value in node.items()}
    if type(node) is list:
        return [_str_keys(item) for item in node]
    return node


def subclass_check(reader: Any, body: dict[str, Any]) -> tuple[int, list[str]]:
    """`body` with a subclass of dict, list, int or str in each position (one at a time), and with every key a
    str subclass: each read by the reader as its fallback reads it, and every position the C code reads sends
    the body to the fallback when it holds a subclass. (How many positions the C code read, the problems.)"""
    wrong = []
    read = 0
    handled = reader.handles(copied(body)) is not None
    for path in [(), *paths(body)]:
        value = at(body, path)
        kind = type(value)
        if kind not in SUBCLASSES:
            continue
        sub = SUBCLASSES[kind]
        where = "/".join(map(str, path)) or "body"
        probe = _with(body, path, lambda _old, kind=kind: PROBES[kind])  # type: ignore[misc]
        if handled and reader.handles(probe) is None:
            read += 1
            if reader.handles(_with(body, path, sub)) is not None:
                wrong.append(f"{where} as {sub.__name__}: read in C, not sent to the fallback")
        ours = outcome(reader, _with(body, path, sub))
        theirs = outcome(reader.fallback, _with(body, path, sub))
        if not same(ours, theirs):
            wrong.append(f"{where} as {sub.__name__}: reader {shown(ours)} | fallback {shown(theirs)}")
    ours = outcome(reader, _str_keys(body))
    theirs = outcome(reader.fallback, _str_keys(body))
    if not same(ours, theirs):
        wrong.append(f"every key a StrSub: reader {shown(ours)} | fallback {shown(theirs)}")
    return read, wrong


def subclass_bodies() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(provider, label, body): the adversarial bases for each adversarial provider, and the recorded
    bodies of each."""
    bases = adversarial_bases()
    for provider in ADVERSARIAL_PROVIDERS:
        for name, body in bases.items():
            yield provider, name, body
        for file, body in recorded(provider):
            yield provider, file, body


def check_subclasses(readers: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    counts = {"bodies": 0, "positions read in C": 0}
    wrong: list[str] = []
    for provider, label, body in subclass_bodies():
        read, problems = subclass_check(readers[provider], body)
        counts["bodies"] += 1
        counts["positions read in C"] += read
        wrong.extend(f"{provider} {label}: {problem}" for problem in problems)
    return counts, wrong


# -- plans a Reader refuses ------------------------------------------------------------------------------------

# (code, a, b, d, key, extra, list): c[1] = body["usage"]; r[0] = c[1]["input_tokens"]; field 0 = r[0]
GOOD_PLAN = (
    2,
    1,
    (
        (1, 1, 0, 0, "usage", None, ()),
        (2, 0, 1, 0, "input_tokens", None, ()),
        (10, 0, -1, 0, None, None, (0,)),
    ),
)
_OBJ = (1, 1, 0, 0, "usage", None, ())
BAD_PLANS: dict[str, object] = {
    "not a tuple": [2, 1, ()],
    "two items": (2, 1),
    "c_regs 0": (0, 1, ()),
    "c_regs 65": (65, 1, ()),
    "r_regs a str": (2, "1", ()),
    "ops a list": (2, 1, [_OBJ]),
    "an op of 6": (2, 1, ((1, 1, 0, 0, "usage", None),)),
    "an op a list": (2, 1, ([1, 1, 0, 0, "usage", None, ()],)),
    "code 0": (2, 1, ((0, 1, 0, 0, "usage", None, ()),)),
    "code 13": (2, 1, ((13, 1, 0, 0, "usage", None, ()),)),
    "code 2**70": (2, 1, ((2**70, 1, 0, 0, "usage", None, ()),)),
    "a bool code": (2, 1, ((True, 1, 0, 0, "usage", None, ()),)),
    "object register past c_regs": (2, 1, ((1, 2, 0, 0, "usage", None, ()),)),
    "object register 0": (2, 1, ((1, 0, 0, 0, "usage", None, ()),)),
    "read before written": (3, 1, ((1, 2, 1, 0, "usage", None, ()),)),
    "count register past r_regs": (2, 1, (_OBJ, (2, 1, 1, 0, "input_tokens", None, ()))),
    "no key": (2, 1, ((1, 1, 0, 0, None, None, ()),)),
    "a bytes key": (2, 1, ((1, 1, 0, 0, b"usage", None, ()),)),
    "a str-subclass key": (2, 1, ((1, 1, 0, 0, StrSub("usage"), None, ()),)),
    "d 2": (2, 1, ((1, 1, 0, 2, "usage", None, ()),)),
    "a list of 33": (2, 1, (_OBJ, (10, 0, -1, 0, None, None, (0,) * 33))),
    "a list register past r_regs": (2, 1, (_OBJ, (10, 0, -1, 0, None, None, (1,)))),
    "field past the counts": (2, 1, (_OBJ, (10, 99, -1, 0, None, None, (0,)))),
    "scan with extra None": (2, 1, ((12, -1, 0, 0, "output", None, ()),)),
    "scan with an int in extra": (2, 1, ((12, -1, 0, 0, "output", ("a", 1), ()),)),
    "move past r_regs": (2, 1, ((5, 0, 3, 0, None, None, ()),)),
    "derive past r_regs": (2, 1, ((7, 5, -1, 0, None, None, ()),)),
}


def check_plans(module: Any) -> tuple[dict[str, int], list[str]]:
    """A Reader made of each bad plan (in each shape, after good ones: its partly made blocks are freed)
    raises TypeError, ValueError or OverflowError; one of good plans reads as its fallback, and after its
    plans' tuples are gone (it keeps them: the ops borrow their keys)."""
    from tokentrail import Usage
    from tokentrail._types import usage_layout

    layout = usage_layout()
    wrong = []
    counts = {"refused": 0}

    def fallback(body: Any) -> str:
        return "fallback"

    for label, bad in BAD_PLANS.items():
        for shape in range(3):
            plans = [GOOD_PLAN, GOOD_PLAN, GOOD_PLAN]
            plans[shape] = bad  # type: ignore[call-overload]
            try:
                module.Reader(fallback, layout, *plans)
            except (TypeError, ValueError, OverflowError):
                counts["refused"] += 1
            except Exception as exc:
                wrong.append(f"plan {label!r} in shape {shape}: {type(exc).__name__}: {exc}")
            else:
                wrong.append(f"plan {label!r} in shape {shape}: taken")
    for label, args in {
        "a layout of 6": (fallback, layout[:6], GOOD_PLAN, None, None),
        "a list layout": (fallback, list(layout), GOOD_PLAN, None, None),
        "a fallback not callable": (5, layout, GOOD_PLAN, None, None),
        "slots of another class": (fallback, (int, *layout[1:]), GOOD_PLAN, None, None),
    }.items():
        try:
            module.Reader(*args)
        except (TypeError, ValueError):
            counts["refused"] += 1
        else:
            wrong.append(f"{label}: taken")
    key = "".join(["us", "age"])  # a key no other object holds
    plan = (2, 1, ((1, 1, 0, 0, key, None, ()), *GOOD_PLAN[2][1:]))
    reader = module.Reader(fallback, layout, plan, None, None)
    del plan, key
    message = {"type": "message", "usage": {"input_tokens": 5}}
    expected = ("value", Usage(input_tokens=5))  # field 0 is input_tokens
    if reader.handles(copied(message)) != "anthropic" or not same(outcome(reader, copied(message)), expected):
        wrong.append(f"a Reader of good plans did not read {message}: {outcome(reader, copied(message))}")
    if reader({"object": "chat.completion", "usage": {}}) != "fallback" or reader([]) != "fallback":
        wrong.append("a Reader without a chat block did not hand a chat body (or a list) to its fallback")
    return counts, wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="variants kept per recorded body")
    parser.add_argument("--corpus-only", action="store_true", help="skip the Evil-key and subclass bodies")
    parser.add_argument("--memcheck", action="store_true", help="the lighter Evil-key set (see LIGHTER)")
    args = parser.parse_args()
    started = time.monotonic()
    import gc

    from tokentrail.adapters import _fast
    from tokentrail.adapters._mapped import set_mapped_readers

    module = _fast.extension()
    if module is None:
        print("FASTREAD MISSING: tokentrail.adapters._fast.extension() is None", flush=True)
        return 3
    # The objects made by the imports are left out of later collections: under CPython 3.11 some hold the
    # zero ints memcheck flags (see the module docstring), and the collections below traverse the Readers.
    gc.freeze()
    readers = warm_readers()
    for provider, reader in readers.items():
        if type(reader) is not module.Reader:
            print(f"{provider}: named_reader gave {reader!r}, not a _fastread.Reader", flush=True)
            return 1
    failed = False
    for title in ("CORPUS",) if args.corpus_only else ("CORPUS", "EVIL KEYS", "SUBCLASSES", "PLANS"):
        began = time.monotonic()
        if title == "CORPUS":
            counts, wrong = check(readers, args.limit)
        elif title == "EVIL KEYS":
            counts, wrong = check_evil(readers, lighter=args.memcheck)
        elif title == "SUBCLASSES":
            counts, wrong = check_subclasses(readers)
        else:
            counts, wrong = check_plans(module)
        summary = ", ".join(f"{key} {value}" for key, value in counts.items())
        print(
            f"FASTREAD {title}: {summary}, differing {len(wrong)}, {time.monotonic() - began:.1f} s",
            flush=True,
        )
        for line in wrong[:50]:
            print("DIFFERS:", line, flush=True)
        failed = failed or bool(wrong)
    # The Readers dropped (the readers in force forgotten: their cycles collected, tp_traverse, tp_clear and
    # tp_dealloc run), and made again.
    del readers, reader
    set_mapped_readers(None)
    gc.collect()
    again = warm_readers()
    bench = bench_bodies()
    if any(type(r) is not module.Reader or r(copied(bench["CHAT"])) is None for r in again.values()):
        print("DIFFERS: the readers made again do not read the bench chat body", flush=True)
        failed = True
    print(f"FASTREAD DONE in {time.monotonic() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
