"""The compiled provider-name reader (optional): the operations it runs, and loading it.

`_compile.fast_read` writes the reads of a provider's usual body as Python lines; given an `Ops`, it records
the same reads as operations beside them. `_mapped.MappedReaders` hands a provider name's operations (one
list per inline shape: Anthropic message, Responses object, chat completion) to `_fastread.Reader`, a C type
built with the package when a compiler is there (`hatch_build.py`). The Reader runs them on a body and builds
the `Usage`; on anything else (an unusual body, a shape without operations, a value of an unexpected type, a
lookup that raised) it calls the generated Python reader with the body and returns what that returns. So
the two give the same results (`tests/adapters/test_fast_readers.py` compares them body for body), and
without the module, or with `TOKENTRAIL_NO_EXTENSION=1`, the Python reader is used alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("tokentrail")

# What `_fastread.VERSION` must be for the operations below (a stale build is not used).
VERSION = 1

# The operation codes (the same numbers as _fastread.c). c[..] holds objects, r[..] counts (or absent).
OBJ = 1  # c[a] = c[b][key], an exact dict; absent or None reads as empty, unless required (d): bail
COUNT = 2  # r[a] = c[b][key], an exact int in 0..2**30-1, or absent (bail when required, d)
HAS_BAIL = 3  # bail when key is in c[b]
NONZERO_BAIL = 4  # bail when r[a] is present and not 0
MOVE = 5  # r[a] = r[b]
ADD = 6  # r[a] += r[b] when r[b] is present (r[a] = r[b] when r[a] is absent)
DERIVE = 7  # when r[a] is absent and one of regs present: r[a] = their sum; then r[b] += r[a] (b >= 0)
ALL_ABSENT_BAIL = 8  # bail when every one of regs is absent
PART_BAIL = 9  # bail when r[a] is present and not 0, and r[b] is absent or smaller
FIELD = 10  # the Usage count field number a = the sum of the present regs
INT_POSITIVE_BAIL = 11  # bail when c[b][key] is an exact int > 0
SCAN_ITEMS = 12  # c[b][key] an exact list of exact dicts whose "type" is none of extra: else bail

# Registers per kind the Reader takes (_fastread.c MAX_REGS) and registers per list (MAX_LIST).
_MAX_REGS = 64
_MAX_LIST = 32


class Ops:
    """The operations of one block, recorded beside its Python lines, by the Python variable names."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []
        self._objects: dict[str, int] = {"body": 0}
        self._counts: dict[str, int] = {}
        self.usable = True  # False when a line has no operation: the block is then the Python reader's

    def obj(self, name: str) -> int:
        return self._objects.setdefault(name, len(self._objects))

    def count(self, name: str) -> int:
        if name not in self._counts:
            self._counts[name] = len(self._counts)
        return self._counts[name]

    def add(
        self,
        code: int,
        a: int = -1,
        b: int = -1,
        *,
        required: bool = False,
        key: str | None = None,
        extra: tuple[str, ...] | None = None,
        regs: tuple[int, ...] = (),
    ) -> None:
        if len(regs) > _MAX_LIST:
            self.usable = False
        self.ops.append((code, a, b, int(required), key, extra, regs))

    def plan(self) -> tuple[int, int, tuple[tuple[Any, ...], ...]] | None:
        """What `_fastread.Reader` takes for this block, or None (the Python reader reads this shape)."""
        if not self.usable or len(self._objects) > _MAX_REGS or len(self._counts) > _MAX_REGS:
            return None
        return len(self._objects), len(self._counts), tuple(self.ops)


_module: Any = None
_loaded = False


def extension() -> Any:
    """The `_fastread` module, or None: not built, built for other operations, or `TOKENTRAIL_NO_EXTENSION`."""
    global _module, _loaded
    if not _loaded:
        _loaded = True
        if os.environ.get("TOKENTRAIL_NO_EXTENSION", "").strip().lower() in ("1", "true", "yes"):
            return None
        try:
            from tokentrail.adapters import _fastread  # type: ignore[attr-defined]
        except ImportError:
            return None
        if getattr(_fastread, "VERSION", None) == VERSION:
            _module = _fastread
        else:
            logger.warning(
                "tokentrail: the compiled reader is stale (rebuild: make, or pip install); not used"
            )
    return _module


def compiled_reader(
    fallback: Callable[[dict[str, Any]], Any],
    plans: dict[str, tuple[int, int, tuple[tuple[Any, ...], ...]] | None],
) -> Callable[[dict[str, Any]], Any]:
    """`fallback` (a generated provider-name reader) run by `_fastread.Reader` on the shapes with operations
    in `plans` ("anthropic", "responses", "chat"); `fallback` itself without the module or any operation."""
    module = extension()
    if module is None or not any(plans.values()):
        return fallback
    from tokentrail._types import usage_layout

    try:
        reader: Callable[[dict[str, Any]], Any] = module.Reader(
            fallback, usage_layout(), plans.get("anthropic"), plans.get("responses"), plans.get("chat")
        )
    except (TypeError, ValueError, OverflowError):  # operations it does not take: Python reads them all
        logger.warning("tokentrail: the compiled reader refused a plan; reading in Python", exc_info=True)
        return fallback
    return reader


def named_read_of(
    table: dict[str, Any], slow: Callable[[dict[str, Any], str], Any], python: Callable[[object, object], Any]
) -> Callable[[object, object], Any]:
    """`_fastread.named_read`, reading with `table` (provider name → reader) and `slow` (the reader's maker),
    or `python` (the same in Python) without the module."""
    module = extension()
    if module is None:
        return python
    module.set_named(table, slow)
    read: Callable[[object, object], Any] = module.named_read
    return read
