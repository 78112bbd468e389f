"""The fast lines of the compiled readers (`_compile.fast_read`) read the usual body (exact dicts, exact int
counts below 2**30, the subset rules kept) and hand anything else to the full reader. Whenever they give a
result it must be the full reader's: checked for every catalog extractor over its generated bodies and
over those bodies with one or two values replaced by every kind of value that is unusual (absent, null,
negative, too large, a bool, a float, a string, a Decimal, an int subclass, a list, a Mapping that is not
a dict, ...), exceptions included. The same for the generated reader of a provider name
(`named_usage`, the hot path of `usage_from_response`) against `read_named_json`, over the same bodies
and the read-plan corpus, each named by many providers."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from fastread_corpus import (  # dicts and lists copied, other values shared (a mappingproxy cannot be)
    copied,
    same_value,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mapped_readers import GOLDEN
from test_read_plans import CORPUS, NAMES
from tests.conftest import skip_or_fail

import tokentrail as tt
from tokentrail import Usage
from tokentrail._types import TOKEN_FIELDS, usage_builder, usage_fill_source
from tokentrail.adapters import _compile, _fast, _mapped, read_named_json, usage_from_response
from tokentrail.adapters._mapped import mapped_readers, named_usage
from tokentrail.errors import InvalidUsageError


class Count(int):
    """An int subclass: not an exact int, so never read by the fast lines."""


ODD_VALUES: tuple[object, ...] = (
    None,
    0,
    1,
    7,
    2**30 - 1,
    2**30,
    2**63 - 1,
    2**63,
    -1,
    True,
    False,
    1.0,
    2.5,
    float("nan"),
    "3",
    "",
    Decimal("4"),
    Count(5),
    [],
    [1],
    {},
    {"cached_tokens": 3},
    MappingProxyType({"cached_tokens": 2}),
)
_ABSENT = object()  # delete the key
# Keys a reader reads or checks, added where a body has none.
ADDED_KEYS = ("total_tokens", "totalTokens", "totalTokenCount", "image_tokens", "reasoning_tokens")


def outcome(read: Callable[[], object]) -> object:
    """What a read gave, or the exception it raised (its type and message)."""
    try:
        return read()
    except Exception as exc:
        return type(exc), str(exc)


def same(a: object, b: object) -> bool:
    """Equal outcomes, a Usage compared field by field and by type (never a _UsageFill left behind)."""
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2 and isinstance(a[0], Usage):
        return same(a[0], b[0]) and a[1] == b[1]
    return same_value(a, b)


def paths(node: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path into the objects of a body (not into lists)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))


def replaced(body: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any] | None:
    """A deep copy of `body` with the value at `path` replaced (deleted when `_ABSENT`); None when the
    path does not lead through objects."""
    out = copied(body)
    node: Any = out
    for step in path[:-1]:
        node = node.get(step) if type(node) is dict else None
        if type(node) is not dict:
            return None
    if value is _ABSENT:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


def variants(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`body`, and `body` with one value replaced by each odd value, deleted, or one key added."""
    yield body
    found = list(paths(body))
    for path in found:
        for value in (*ODD_VALUES, _ABSENT):
            changed = replaced(body, path, value)
            if changed is not None:
                yield changed
    objects = [()] + [p for p in found if isinstance(_at(body, p), dict)]
    for where in objects:
        for key in ADDED_KEYS:
            for value in (1, 2**30, -1, 1.5, None):
                changed = replaced(body, (*where, key), value)
                if changed is not None:
                    yield changed


def _at(body: dict[str, Any], path: tuple[str, ...]) -> object:
    node: Any = body
    for step in path:
        node = node[step]
    return node


def compiled_readers() -> list[_compile.Compiled]:
    readers = mapped_readers()
    found = [readers.compiled(p, f) for p in readers.providers() for f in readers.flavors(p)]
    return [c for c in found if c is not None]


def golden_bodies() -> list[tuple[str, str, dict[str, Any]]]:
    return [(case.provider, case.flavor, case.body) for case in GOLDEN]


def test_most_readers_have_fast_lines() -> None:
    compiled = compiled_readers()
    fast = [c for c in compiled if c.read is not c.full]
    assert len(compiled) > 90 and len(fast) > 0.8 * len(compiled)
    for provider, flavor in [("openai", "chat"), ("openai", "responses"), ("anthropic", "default")]:
        reader = mapped_readers().compiled(provider, flavor)
        assert reader is not None and reader.read is not reader.full


def test_the_fast_lines_read_what_the_full_reader_reads() -> None:
    readers = mapped_readers()
    compared = read_fast = 0
    for provider, flavor, body in golden_bodies():
        compiled = readers.compiled(provider, flavor)
        assert compiled is not None and compiled.full is not None
        for variant in variants(body):
            for web in (0, 2):
                fast = outcome(lambda v=variant, w=web, c=compiled: c.read(v, w))
                full = outcome(lambda v=variant, w=web, c=compiled: c.full(v, w))  # type: ignore[misc]
                assert same(fast, full), (provider, flavor, variant, web, fast, full)
                compared += 1
                read_fast += isinstance(fast, tuple) and isinstance(fast[0], Usage)
    assert compared > 50_000 and read_fast > 10_000


class FullReaders(_mapped.MappedReaders):
    """The readers with no fast lines: every compiled reader is its full reader."""

    def compiled(self, provider_id: str, flavor: str) -> _compile.Compiled | None:
        found = super().compiled(provider_id, flavor)
        if found is not None and found.full is not None and found.read is not found.full:
            found = self._compiled[(provider_id, flavor)] = found._replace(read=found.full)
        return found


_FULL: list[FullReaders] = []


def named_outcomes(body: dict[str, Any], name: str) -> tuple[object, object]:
    """(the provider name's generated reader's outcome, `read_named_json`'s usage outcome, read by readers
    with no fast lines)."""
    ours = outcome(lambda: named_usage(body, name))
    if not _FULL or _FULL[0].data != mapped_readers().data:
        _FULL[:] = [FullReaders(copy.deepcopy(mapped_readers().data))]
    return ours, outcome(lambda: _FULL[0]._named_slow(body, name))


@pytest.fixture
def fresh_readers() -> Iterator[None]:
    _mapped.set_mapped_readers(None)
    yield
    _mapped.set_mapped_readers(None)


SHAPED = [
    (body, name)
    for _, body, name in CORPUS
    if _mapped.body_shape(body) in ("chat", "responses", "anthropic") and name in NAMES[:16]
]


def test_the_named_reader_reads_what_read_named_json_reads(fresh_readers: None) -> None:
    compared = 0
    for _round in range(2):  # the first reads learn the shapes (the reader is made again), then inline
        for body, name in SHAPED:
            ours, theirs = named_outcomes(body, name)
            assert same(ours, theirs), (name, body, ours, theirs)
            read = outcome(lambda body=body, name=name: read_named_json(body, name))
            if isinstance(read, tuple) and len(read) == 4:  # read_named_json itself (its reader's fast lines)
                read = read[0]
            assert same(ours, read), (name, body, ours, read)
            compared += 1
    assert compared > 5_000


def test_the_named_reader_reads_odd_bodies_as_read_named_json_does(fresh_readers: None) -> None:
    bases = [body for provider, flavor, body in golden_bodies() if (provider, flavor) in _USUAL]
    bases += [body for body, name in SHAPED if name == "openai"][:40]
    compared = usages = 0
    for body in bases:
        for variant in variants(body):
            for name in ("openai", "anthropic", "groq", "azure", "x-ai", "huggingface", "ollama"):
                for _ in range(2):
                    ours, theirs = named_outcomes(variant, name)
                    assert same(ours, theirs), (name, variant, ours, theirs)
                    compared += 1
                    usages += isinstance(ours, Usage)
    assert compared > 50_000 and usages > 10_000


_USUAL = {("openai", "chat"), ("openai", "responses"), ("anthropic", "default"), ("x-ai", "chat")}

# -- the compiled reader (`_fastread`, when built): the generated Python reader's results, body for body ------

LEARN = (  # one body of each inline shape: a provider name's reader is made for all three
    {"object": "chat.completion", "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    {"object": "response", "output": [], "usage": {"input_tokens": 5, "output_tokens": 2}},
    {"type": "message", "usage": {"input_tokens": 5, "output_tokens": 2}},
)


@pytest.fixture
def compiled() -> None:
    """The compiled reader is built: a loud skip without it, a failure under CI=true."""
    if _fast.extension() is None:
        skip_or_fail(
            "The C reader tokentrail.adapters._fastread",
            "_fast.extension() is None (not built, stale, or TOKENTRAIL_NO_EXTENSION set)",
            "python hatch_build.py, or pip install -e .",
        )


compiled_only = pytest.mark.usefixtures("compiled")


def compiled_reader(name: str) -> Any:
    """The provider name's reader, made for the three inline shapes: a `_fastread.Reader` when the name has
    operations for one of them (a name the catalog cannot read, like "ollama", keeps its Python reader)."""
    for body in LEARN:
        usage_from_response(body, name)
    return mapped_readers().named_reader(name)


def compiled_outcomes(reader: Any, body: dict[str, Any]) -> tuple[object, object, bool]:
    """(the compiled reader's outcome, its Python reader's, whether it read the body itself). It reads a
    body itself exactly when the Python reader's inline lines do (a Usage, and no call of `_other`)."""
    if not hasattr(reader, "handles"):
        return outcome(lambda: reader(body)), outcome(lambda: reader(body)), False
    handled = reader.handles(body) is not None
    namespace = reader.fallback.__globals__
    other, left = namespace["_other"], []
    namespace["_other"] = lambda body, shape: (left.append(shape), other(body, shape))[1]
    try:
        theirs = outcome(lambda: reader.fallback(body))
    finally:
        namespace["_other"] = other
    inline = isinstance(theirs, Usage) and not left
    # A "type" or "object" of another type (a Decimal, a str subclass) would be compared by its own `__eq__`:
    # the compiled reader leaves such a body to the Python reader.
    exotic = any(type(body.get(key)) not in _PLAIN for key in ("type", "object"))
    assert handled == inline or (exotic and not handled), (body, handled, theirs, left)
    return outcome(lambda: reader(body)), theirs, handled


_PLAIN = (str, type(None), int, float, bool, list, dict, tuple)
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
NAMED = (
    "openai",
    "anthropic",
    "groq",
    "azure",
    "x-ai",
    "deepseek",
    "google",
    "openrouter",
    "mistral",
    "ollama",
)


@compiled_only
def test_the_compiled_reader_reads_what_the_python_reader_reads(fresh_readers: None) -> None:
    compared = handled = 0
    readers = {name: compiled_reader(name) for name in NAMES[:16]}
    for body, name in SHAPED:
        ours, theirs, read = compiled_outcomes(readers[name], body)
        assert same(ours, theirs), (name, body, ours, theirs)
        compared += 1
        handled += read
    assert compared > 2_500 and handled > 2_000, (compared, handled)


@compiled_only
def test_the_compiled_reader_reads_odd_bodies_as_the_python_reader_does(fresh_readers: None) -> None:
    bases = [body for provider, flavor, body in golden_bodies() if (provider, flavor) in _USUAL]
    bases += [body for body, name in SHAPED if name == "openai"][:40]
    readers = {name: compiled_reader(name) for name in NAMED}
    compared = handled = 0
    for body in bases:
        for variant in variants(body):
            for name, reader in readers.items():
                ours, theirs, read = compiled_outcomes(reader, variant)
                assert same(ours, theirs), (name, variant, ours, theirs)
                compared += 1
                handled += read
    assert compared > 50_000 and handled > 10_000, (compared, handled)


@compiled_only
def recorded(path: str) -> dict[str, Any]:
    """A real response from tests/fixtures/recorded/ (its README names where each was recorded)."""
    body: dict[str, Any] = json.loads((RECORDED / path).read_text())["response"]
    return body


@compiled_only
def test_the_usual_bodies_are_read_by_the_compiled_reader(fresh_readers: None) -> None:
    chat = recorded("openai/chat_gpt4o_cached_prompt.json")
    responses = recorded("openai/responses_code_interpreter_cached_reasoning.json")
    message = recorded("anthropic/messages_cache_write_5m_and_read.json")
    openai, anthropic = compiled_reader("openai"), compiled_reader("anthropic")
    assert type(openai).__name__ == type(anthropic).__name__ == "Reader"
    assert openai.handles(chat) == "chat" and openai(chat) == Usage(3663, 117, cache_read_tokens=3584)
    assert openai.handles(responses) == "responses"
    assert openai(responses) == Usage(2687, 699, cache_read_tokens=1920, reasoning_tokens=448)
    assert anthropic.handles(message) == "anthropic"  # 3 uncached + 418 written + 1111 read
    assert anthropic(message) == Usage(1532, 33, cache_read_tokens=1111, cache_write_tokens=418)
    assert usage_from_response(responses, "openai") == openai(responses)
    assert _mapped.NAMED_READERS["openai"] is openai  # usage_from_response calls it
    web = copy.deepcopy(responses)
    web["output"].append({"type": "web_search_call", "status": "completed"})
    assert openai.handles(web) is None and openai(web).web_searches == 1  # the Python reader's count


@compiled_only
def test_a_plan_the_compiled_reader_refuses_leaves_the_python_reader() -> None:
    def python(body: object) -> str:
        return "python"

    huge = (2, 1, ((_fast.OBJ, 2**70, 0, 1, "usage", None, ()),))  # a register number past any C int
    unknown = (2, 1, ((99, 1, 0, 1, "usage", None, ()),))  # an operation code it does not know
    for plan in (huge, unknown):
        assert _fast.compiled_reader(python, {"chat": plan}) is python
    usual = (2, 0, ((_fast.OBJ, 1, 0, 1, "usage", None, ()),))
    assert _fast.compiled_reader(python, {"chat": usual}) is not python


class Name(str):
    """A str subclass: not a provider name usage_from_response looks up."""


@compiled_only
def test_named_read_in_c_returns_what_the_python_one_returns(fresh_readers: None) -> None:
    compiled, python = _mapped.named_read, _mapped._named_read
    assert compiled is not python and type(compiled).__name__ == "builtin_function_or_method"
    usage_from_response(LEARN[0], "openai")  # the readers in force made (which empties the kept readers)
    _mapped.NAMED_READERS["raises"] = lambda body: 1 / 0
    _mapped.NAMED_READERS["returns"] = lambda body: "what the reader returned"

    def interrupts(body: object) -> object:
        raise KeyboardInterrupt

    _mapped.NAMED_READERS["interrupts"] = interrupts
    cases: list[tuple[object, object]] = [(body, name) for body, name in SHAPED[::7]]
    cases += [(body, name) for body, name in SHAPED[:50] for name in (None, "", 5, Name("openai"), "raises")]
    cases += [(body, "returns") for body, _name in SHAPED[:5]]
    chat = LEARN[0]
    cases += [(None, "openai"), ([chat], "openai"), (MappingProxyType(chat), "openai"), ("{}", "openai")]
    cases += [(copy.deepcopy(chat), "a provider name never seen"), (chat, "ollama"), (chat, "x-ai")]
    for body, name in cases:
        ours = outcome(lambda b=body, n=name: compiled(b, n))
        theirs = outcome(lambda b=body, n=name: python(b, n))
        assert same(ours, theirs), (body, name, ours, theirs)
    assert compiled(chat, "returns") == "what the reader returned"
    with pytest.raises(KeyboardInterrupt):  # what `except Exception` lets through, both let through
        compiled(chat, "interrupts")
    with pytest.raises(KeyboardInterrupt):
        python(chat, "interrupts")


def test_the_readers_kept_for_usage_from_response_follow_the_catalog_in_force(fresh_readers: None) -> None:
    body = LEARN[0]
    assert usage_from_response(body, "openai") == Usage(5, 2)
    kept = _mapped.NAMED_READERS["openai"]
    assert kept is mapped_readers()._named["openai"]
    _mapped.set_mapped_readers(None)
    assert _mapped.NAMED_READERS == {}
    assert usage_from_response(body, "openai") == Usage(5, 2)
    assert _mapped.NAMED_READERS["openai"] is not kept
    from tokentrail.pricing import installed

    installed.put_in_force(None)  # another catalog in force: the kept readers are forgotten at once
    assert _mapped.NAMED_READERS == {}
    assert usage_from_response(body, "openai") == Usage(5, 2)


def _odd_leaf() -> st.SearchStrategy[object]:
    return st.sampled_from((*ODD_VALUES, _ABSENT)) | st.integers(min_value=-3, max_value=2**31)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_bodies_with_several_odd_values_are_read_alike(data: st.DataObject) -> None:
    provider, flavor, body = data.draw(
        st.sampled_from([case for case in golden_bodies() if (case[0], case[1]) in _USUAL]), label="body"
    )
    found = list(paths(body)) + [("usage", key) for key in ADDED_KEYS]
    for path in data.draw(st.lists(st.sampled_from(found), min_size=1, max_size=4), label="paths"):
        changed = replaced(body, path, data.draw(_odd_leaf(), label=".".join(path)))
        if changed is not None:
            body = changed
    compiled = mapped_readers().compiled(provider, flavor)
    assert compiled is not None and compiled.full is not None
    assert same(outcome(lambda: compiled.read(body, 0)), outcome(lambda: compiled.full(body, 0)))  # type: ignore[misc]
    for name in ("openai", "anthropic", "groq", provider):
        for _ in range(2):
            ours, theirs = named_outcomes(body, name)
            assert same(ours, theirs), (name, body, ours, theirs)
        if _fast.extension() is not None:
            ours, theirs, _read = compiled_outcomes(compiled_reader(name), body)
            assert same(ours, theirs), (name, body, ours, theirs)


def test_a_web_search_call_in_a_responses_output_is_counted(fresh_readers: None) -> None:
    body = {
        "object": "response",
        "output": [{"type": "message"}, {"type": "web_search_call", "action": {"type": "search"}}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }
    for _ in range(3):
        assert usage_from_response(body, "openai") == Usage(10, 5, web_searches=1)


def test_file_search_calls_in_a_responses_output_are_storage_searches(fresh_readers: None) -> None:
    # OpenAI bills the file search tool per call (the catalog's `storage_searches`, $2.50 per 1k calls on
    # gpt-4.1); output item shape: https://platform.openai.com/docs/guides/tools-file-search
    from tokentrail.adapters import capture, usage_from_stream

    body = {
        "object": "response",
        "model": "gpt-4.1",
        "output": [
            {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["q"]},
            {"type": "web_search_call", "action": {"type": "open_page", "url": "https://x"}},
            {"type": "file_search_call", "id": "fs_2", "status": "completed", "queries": ["r"]},
            {"type": "message"},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }
    expected = Usage(10, 5, storage_searches=2)
    for name in ("openai", "azure", "groq", None):
        for _ in range(3):
            assert usage_from_response(body, name) == expected
            assert capture(body, name).usage == expected
    completed = {"type": "response.completed", "sequence_number": 1, "response": body}
    assert usage_from_stream([completed], "openai") == expected
    cost = tt.price(expected, "gpt-4.1", "openai", date(2026, 11, 1))
    assert cost.total == Decimal("0.00002") + Decimal("0.00004") + Decimal(
        "0.005"
    )  # 10 in, 5 out, 2 searches


def test_a_grok_body_named_openai_is_read_as_xai_reads_it(fresh_readers: None) -> None:
    from test_stream_usage_classes import OPENAI_REASONING, SUB2API_BODY, SUB2API_EXPECTED

    # reasoning on top of completion (the total says so), less of it than completion: the subset rules
    # alone would not send it to the x-ai reader
    grok = {
        "object": "chat.completion",
        "model": "grok-3-mini",
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 100,
            "total_tokens": 160,
            "completion_tokens_details": {"reasoning_tokens": 50},
        },
    }
    for _ in range(3):
        assert usage_from_response(SUB2API_BODY, "openai") == SUB2API_EXPECTED
        assert usage_from_response(OPENAI_REASONING, "openai") == Usage(1200, 300, reasoning_tokens=256)
        for name in ("openai", "groq", "azure", "deepseek"):
            assert usage_from_response(grok, name) == Usage(10, 150, reasoning_tokens=50)
            ours, theirs = named_outcomes(grok, name)
            assert same(ours, theirs) and ours == Usage(10, 150, reasoning_tokens=50)


def test_provider_names_beyond_the_table_are_read_the_slow_way(
    fresh_readers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_mapped, "_MAX_PLANS", 2)
    body = {"object": "chat.completion", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    for name in ("openai", "groq", "deepseek", "mistral", "x-ai"):
        assert usage_from_response(body, name) == Usage(5, 2)
        assert usage_from_response(body, name) == Usage(5, 2)
    assert len(mapped_readers()._named) == 2


def test_a_provider_names_reader_is_made_again_for_each_new_shape(fresh_readers: None) -> None:
    chat = {"object": "chat.completion", "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    responses = {"object": "response", "output": [], "usage": {"input_tokens": 5, "output_tokens": 2}}
    message = {"type": "message", "usage": {"input_tokens": 5, "output_tokens": 2}}
    readers = mapped_readers()
    assert usage_from_response(chat, "openai") == Usage(5, 2)
    first = readers._named["openai"]
    assert usage_from_response(chat, "openai") == Usage(5, 2)
    assert readers._named["openai"] is first  # the chat shape read inline now
    assert usage_from_response(responses, "openai") == Usage(5, 2)
    assert usage_from_response(message, "openai") == Usage(5, 2)
    assert readers._named_shapes["openai"] == ("chat", "responses", "anthropic")
    named = readers._named["openai"]
    for body in (chat, responses, message):
        assert usage_from_response(body, "openai") == Usage(5, 2)
    assert readers._named["openai"] is named


@settings(max_examples=600, deadline=None)
@given(names=st.lists(st.sampled_from(TOKEN_FIELDS), min_size=1, max_size=12, unique=True), data=st.data())
def test_inline_usage_source_builds_and_refuses_what_the_exact_builder_does(
    names: list[str], data: st.DataObject
) -> None:
    """`usage_fill_source` (its lean subset rules, its fill) against `usage_builder(names, exact_counts=True)`."""
    before, rules, fill, namespace = usage_fill_source(names)
    source = "\n".join(
        [
            f"def build({', '.join(names)}):",
            *(f"    {line}" for line in before),
            f"    if not ({rules}):",
            "        return None",
            *(f"    {line}" for line in fill),
            "    return u",
        ]
    )
    exec(compile(source, "<test>", "exec"), namespace)
    small = st.integers(min_value=0, max_value=6) | st.integers(min_value=0, max_value=2**63 - 1)
    values = [data.draw(small, label=name) for name in names]
    built = namespace["build"](*values)
    try:
        expected: Usage | None = usage_builder(names, exact_counts=True)(*values)
    except InvalidUsageError:
        expected = None
    assert same(built, expected) if expected is not None else built is None
