"""Memory safety of the compiled provider-name reader `tokentrail.adapters._fastread` (a `Reader` per provider
name, from `mapped_readers().named_reader(name)`), and that it answers as its Python reader (`fallback`):

- the module is built: under CI=true its absence fails (with how to build it), elsewhere the C-only tests
  skip saying why;
- `TOKENTRAIL_NO_EXTENSION=1` (read once per process) gives the plain Python reader, with the same results;
- no reference is gained or lost on a body, its dicts and lists, its keys and values, across 5,000 reads
  of usual bodies and of bodies the C code gives up on halfway; no memory is kept across 20,000 reads;
- dict keys whose comparison runs code (mutating the dict or the body, or raising) and subclasses of dict,
  list, int and str give what the Python reader gives; a subclass wherever the C code reads goes to it;
- the whole corpus (`fastread_corpus.py`: the recorded bodies, their mutated variants, the adversarial
  bodies, malformed plans, readers dropped and made again) runs clean under valgrind memcheck.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastread_corpus as corpus  # tests/adapters is on sys.path, as for `from test_mapped_readers import`
import pytest
from tests.conftest import skip_or_fail

from tokentrail.adapters import _fast

HELPER = Path(corpus.__file__).resolve()
ROOT = HELPER.parents[2]
BUILD = (
    "python hatch_build.py (compiles it in place next to _fastread.c), or pip install -e . in the repository"
)
REF_CALLS = 5_000
MEMORY_CALLS = 20_000
MEMORY_SLACK = 16 * 1024  # bytes: a leak of one small object per read would be 20,000 of them
VALGRIND_TIMEOUT_S = 540  # below pytest-timeout's 600 s: the run takes about 50 s on a quiet 2-core machine


def fastread() -> Any:
    """The `_fastread` module; under CI=true a failure when it is missing, elsewhere a skip."""
    module = _fast.extension()
    if module is None:
        disabled = os.environ.get("TOKENTRAIL_NO_EXTENSION", "").strip().lower() in ("1", "true", "yes")
        why = "TOKENTRAIL_NO_EXTENSION is set" if disabled else "the extension is not built (or is stale)"
        skip_or_fail("The C reader tokentrail.adapters._fastread", f"_fast.extension() is None: {why}", BUILD)
    return module


@pytest.fixture(scope="module")
def readers() -> dict[str, Any]:
    """The provider names' Readers, each after `usage_from_response` met a body of each inline shape."""
    module = fastread()
    found: dict[str, Any] = corpus.warm_readers()
    for provider, reader in found.items():
        assert type(reader) is module.Reader, f"{provider}: {reader!r}"
    return found


def test_the_extension_is_built_and_current() -> None:
    module = fastread()
    assert module.VERSION == _fast.VERSION
    assert module.Reader.__module__ == "tokentrail.adapters._fastread"


# -- TOKENTRAIL_NO_EXTENSION ------------------------------------------------------------------------------

SWITCHED_OFF = f"""
import json, sys, types
sys.path.insert(0, {str(HELPER.parent)!r})
import fastread_corpus as corpus
from tokentrail.adapters import _fast

reader = corpus.warm_readers(("openai",))["openai"]
bodies = [body for _, body in corpus.recorded("openai")] + list(corpus.bench_bodies().values())
print(json.dumps({{
    "extension": repr(_fast.extension()),
    "reader": type(reader).__name__,
    "plain function": type(reader) is types.FunctionType,
    "outcomes": [repr(corpus.outcome(reader, body)) for body in bodies],
}}))
"""


def test_tokentrail_no_extension_gives_the_python_reader_and_the_same_usage(readers: dict[str, Any]) -> None:
    env = {**os.environ, "TOKENTRAIL_NO_EXTENSION": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SWITCHED_OFF],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["extension"] == "None"
    assert got["plain function"], f"named_reader('openai') gave a {got['reader']}, not a Python function"

    reader = readers["openai"]
    bodies = [body for _, body in corpus.recorded("openai")] + list(corpus.bench_bodies().values())
    read_in_c = [reader.handles(corpus.copied(body)) for body in bodies]
    assert read_in_c.count(None) < len(bodies) - 3, f"the C code read too few of these bodies: {read_in_c}"
    ours = [repr(corpus.outcome(reader, corpus.copied(body))) for body in bodies]
    assert got["outcomes"] == ours


# -- reference counts and memory --------------------------------------------------------------------------


def _fresh(node: Any) -> Any:
    """A copy of a body whose every dict, list, key and value is an object of its own (not a constant shared
    with code objects), except the singletons: None, bools, small ints, empty and one-character strs."""
    if type(node) is dict:
        return {_fresh(key): _fresh(value) for key, value in node.items()}
    if type(node) is list:
        return [_fresh(item) for item in node]
    if type(node) is str:
        return (node + "\0")[:-1]
    if type(node) is int and not -5 <= node <= 256:
        return int(str(node))
    if type(node) is float:
        return float(repr(node))
    return node


def _shared(value: object) -> bool:
    return (
        value is None
        or type(value) is bool
        or (type(value) is int and -5 <= value <= 256)
        or (type(value) is str and len(value) <= 1)
    )


def _objects(node: Any) -> Iterator[object]:
    """The body, its dicts and lists, keys and values (each once)."""
    yield node
    if type(node) is dict:
        for key, value in node.items():
            yield key
            yield from _objects(value)
    elif type(node) is list:
        for item in node:
            yield from _objects(item)


def _set(body: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out: dict[str, Any] = corpus.copied(body)
    corpus.at(out, path[:-1])[path[-1]] = value
    return out


def _ref_bodies() -> list[tuple[str, str, dict[str, Any]]]:
    """(id, provider, body): the bench bodies, recorded ones, and bodies the C code gives up on halfway (a
    count of another type or out of range after counts already read, a usage that is a list, a details
    object None or a list, a broken subset rule, a billed tool call in the output)."""
    bench = corpus.bench_bodies()
    chat, responses, message = bench["CHAT"], bench["RESPONSES"], bench["MESSAGE"]
    found = [
        ("bench chat", "openai", chat),
        ("bench responses", "openai", responses),
        ("bench message", "anthropic", message),
        ("bench chat, google", "google", chat),
        ("bench message, x-ai", "x-ai", message),
    ]
    for provider, file in (
        ("openai", "chat_gpt4o_cached_prompt.json"),
        ("openai", "responses_code_interpreter_cached_reasoning.json"),
        ("openai", "responses_web_search_preview.json"),
        ("anthropic", "messages_cache_write_5m_and_read.json"),
        ("mistral", "chat_tool_calls.json"),
        ("google", "generate_thinking.json"),
        ("openrouter", "chat_web_search_cost.json"),
    ):
        found.append((f"recorded {provider}/{file}", provider, dict(corpus.recorded(provider))[file]))
    for odd in ("3", True, 1.5, -1, 2**40, 2**70):
        found.append(
            (f"chat completion_tokens={odd!r}", "openai", _set(chat, ("usage", "completion_tokens"), odd))
        )
        details = ("usage", "prompt_tokens_details", "cached_tokens")
        found.append((f"chat cached_tokens={odd!r}", "openai", _set(chat, details, odd)))
        reasoning = ("usage", "output_tokens_details", "reasoning_tokens")
        found.append((f"responses reasoning_tokens={odd!r}", "openai", _set(responses, reasoning, odd)))
        hour = ("usage", "cache_creation", "ephemeral_1h_input_tokens")
        found.append((f"message ephemeral_1h={odd!r}", "anthropic", _set(message, hour, odd)))
    found += [
        ("chat usage a list", "openai", _set(chat, ("usage",), [1, 2])),
        ("chat prompt details None", "openai", _set(chat, ("usage", "prompt_tokens_details"), None)),
        ("chat prompt details a list", "openai", _set(chat, ("usage", "prompt_tokens_details"), [])),
        (
            "chat cached > prompt",
            "openai",
            _set(chat, ("usage", "prompt_tokens_details", "cached_tokens"), 5000),
        ),
        ("responses details None", "openai", _set(responses, ("usage", "input_tokens_details"), None)),
        ("responses billed call", "openai", _set(responses, ("output",), [{"type": "web_search_call"}])),
        ("message cache_creation a str", "anthropic", _set(message, ("usage", "cache_creation"), "x")),
        ("chat, openrouter server tools", "openrouter", _set(chat, ("usage", "server_tool_use"), {})),
    ]
    return found


REF_BODIES = _ref_bodies()


def _call(reader: Any, body: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # the outcome is compared elsewhere; here only what a read keeps
        reader(body)
    reader.handles(body)


@pytest.mark.parametrize(("provider", "body"), [b[1:] for b in REF_BODIES], ids=[b[0] for b in REF_BODIES])
def test_reads_keep_no_reference(readers: dict[str, Any], provider: str, body: dict[str, Any]) -> None:
    reader = readers[provider]
    fresh = _fresh(body)
    objects = list({id(o): o for o in _objects(fresh)}.values())  # each object once
    own = [o for o in objects if not _shared(o)]
    shared = [o for o in objects if _shared(o)] + [None, True, False]
    del objects
    for _ in range(100):
        _call(reader, fresh)
    gc.collect()
    before = [sys.getrefcount(o) for o in own]
    shared_before = [sys.getrefcount(o) for o in shared]
    for _ in range(REF_CALLS):
        _call(reader, fresh)
    gc.collect()
    after = [sys.getrefcount(o) for o in own]
    shared_after = [sys.getrefcount(o) for o in shared]
    changed = [(repr(o)[:60], b, a) for o, b, a in zip(own, before, after, strict=True) if a != b]
    assert not changed, f"references gained or lost over {REF_CALLS} reads (object, before, after): {changed}"
    # None, bools, small ints: shared with everything else, so only a change of a reference per read counts.
    drift = [(repr(o)[:60], b, a) for o, b, a in zip(shared, shared_before, shared_after, strict=True)]
    assert all(abs(a - b) < REF_CALLS // 5 for _, b, a in drift), drift


# The same bodies, with two of the odd counts only (each read is slow under tracemalloc).
MEMORY_BODIES = [b for b in REF_BODIES if "=" not in b[0] or b[0].endswith(("='3'", f"={2**70!r}"))]


@pytest.mark.parametrize(
    ("provider", "body"), [b[1:] for b in MEMORY_BODIES], ids=[b[0] for b in MEMORY_BODIES]
)
def test_reads_keep_no_memory(readers: dict[str, Any], provider: str, body: dict[str, Any]) -> None:
    reader = readers[provider]
    fresh = _fresh(body)
    tracemalloc.start()
    try:
        for _ in range(2_000):
            _call(reader, fresh)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(MEMORY_CALLS):
            _call(reader, fresh)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < MEMORY_SLACK, f"{after - before} bytes kept over {MEMORY_CALLS} reads"


# -- keys that run code, subclasses -----------------------------------------------------------------------


def _listed(wrong: list[str]) -> str:
    return f"{len(wrong)} differ:\n" + "\n".join(wrong[:30])


def test_keys_whose_comparison_runs_code_give_the_python_readers_outcome(readers: dict[str, Any]) -> None:
    """An `Evil` key (hash of a key the reader looks up; its comparison clears the dict or the body, removes
    or replaces entries, empties the output list, removes itself, says equal, or raises) first in the body,
    the usage object, its details or an output item, in a dict of its own size or padded to 40 more
    entries: the Reader's outcome is its fallback's on a fresh identical body. The key holds no reference
    to its dict, so what its comparison drops is freed unless the reader holds it (valgrind then sees a
    read of freed memory: the last test)."""
    counts, wrong = corpus.check_evil(readers)
    assert not wrong, _listed(wrong)
    assert counts["keys compared"] >= 200, counts  # not vacuous: keys the lookups meet


def test_subclasses_anywhere_give_the_python_readers_outcome(readers: dict[str, Any]) -> None:
    """A dict, list, int or str subclass in each position of bench and recorded bodies, and every key a str
    subclass: the Reader's outcome is its fallback's; and where the C code reads the position (a value of
    another type there sends the body to the fallback), the subclass does too (`handles` gives None)."""
    counts, wrong = corpus.check_subclasses(readers)
    assert not wrong, _listed(wrong)
    assert counts["positions read in C"] >= 150, counts


def test_mutated_recorded_corpus_reads_as_the_python_reader(readers: dict[str, Any]) -> None:
    counts, wrong = corpus.check(readers)
    assert not wrong, _listed(wrong)
    assert counts["read in C"] >= 500, counts


def test_malformed_plans_are_refused() -> None:
    counts, wrong = corpus.check_plans(fastread())
    assert not wrong, _listed(wrong)
    assert counts["refused"] == 3 * len(corpus.BAD_PLANS) + 4


# -- valgrind ---------------------------------------------------------------------------------------------


def _suppressions() -> str:
    """CPython 3.11 (and earlier) builds some zero ints (int.from_bytes, int(str), `&`) with their one digit
    left uninitialised (`_PyLong_New(0)`), and `maybe_small_long` computes the small-int pointer from
    0 * that digit, so memcheck flags the comparison and then each use of the pointer: python/cpython#119022,
    fixed in 3.12 (gh-102509, which sets the digit). importlib reads every .pyc's flags (0) with
    int.from_bytes, and urllib.parse's import of ipaddress builds zeros from strings, so on 3.11 those errors
    come from imports only (checked with --track-origins=yes: every origin is `_PyLong_New` under
    `_PyLong_FromByteArray`, `PyLong_FromString` or `long_bitwise`). Suppressed: uninitialised-value errors
    whose innermost frame is in the interpreter itself, raised during an import. Not the C reader's (its
    frames are in its own .so), nor anything outside an import (the corpus is read after the imports, its
    JSON parsed without making such zeros, the objects of the imports frozen out of the collections)."""
    if sys.version_info >= (3, 12):
        return ""
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        interpreter = str(sysconfig.get_config_var("INSTSONAME"))  # libpython3.11.so.1.0
    else:
        interpreter = os.path.basename(os.path.realpath(sys.executable))
    return "".join(
        f"{{\n   cpython-zero-int-digit-during-import-{kind}\n   Memcheck:{kind}\n   obj:*/{interpreter}\n"
        "   ...\n   fun:PyImport_ImportModuleLevelObject\n}\n"
        for kind in ("Cond", "Value8")
    )


def test_the_corpus_runs_clean_under_valgrind_memcheck(tmp_path: Path) -> None:
    fastread()
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        skip_or_fail("valgrind", "valgrind is not on PATH", "apt-get install valgrind")
    suppressions = tmp_path / "cpython.supp"
    suppressions.write_text(_suppressions(), encoding="utf-8")
    command = [
        valgrind,
        "--tool=memcheck",
        "--error-exitcode=99",
        "--exit-on-first-error=yes",  # a memory error fails at once, its stack shown (a corrupted heap can hang)
        "--track-origins=no",
        "--leak-check=no",
        "--num-callers=200",  # deep enough to see the import frame the suppressions need
        f"--suppressions={suppressions}",
        sys.executable,
        str(HELPER),
        "--memcheck",
    ]
    env = {**os.environ, "PYTHONMALLOC": "malloc"}  # every object its own malloc block: memcheck sees it
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=VALGRIND_TIMEOUT_S,
            env=env,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (
            x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr)
        )
        pytest.fail(f"valgrind did not finish within {VALGRIND_TIMEOUT_S} s:\n{out[-2000:]}\n{err[-8000:]}")
    took = time.monotonic() - started
    shown = f"after {took:.0f} s, exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-12000:]}"
    assert "FASTREAD DONE" in done.stdout, shown
    assert "ERROR SUMMARY: 0 errors" in done.stderr, shown
    assert done.returncode == 0, shown
