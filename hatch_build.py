"""Build the optional C reader `tokentrail.adapters._fastread`, if this machine can.

Two ways in:

* hatchling's custom build hook (`[tool.hatch.build.hooks.custom]` in pyproject.toml). An editable
  install (`pip install -e .`) compiles the module in place, next to `_fastread.c`, where the editable
  path finds it. A wheel build compiles it into a temporary directory and puts it in the wheel, which then
  carries a platform tag. When compiling fails (no compiler, no Python headers, a compiler error) a
  warning is printed and the build goes on: the package is then pure Python and reads the same.
  `TOKENTRAIL_NO_EXTENSION=1` skips compiling. An sdist is left as it is (it ships the `.c`).
* `python hatch_build.py`: the same compile in place, for the Makefile's rule after editing the `.c`.
  It exits non-zero with the compiler's message when it fails. Needs no hatchling.

The compiler and its flags are the running interpreter's (sysconfig's CC, CFLAGS, CCSHARED, LDSHARED,
EXT_SUFFIX); CC, CFLAGS, CPPFLAGS, LDSHARED and LDFLAGS in the environment override or add to them, as
for setuptools. No `-Werror`: a newer compiler's new warning must not stop an install.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py` in an environment without hatchling
    BuildHookInterface = object  # type: ignore

ROOT = Path(__file__).resolve().parent
SOURCE = Path("src/tokentrail/adapters/_fastread.c")
MODULE = "tokentrail.adapters._fastread"
NO_EXTENSION_ENV = "TOKENTRAIL_NO_EXTENSION"
EXTRA_CFLAGS = ["-O2", "-Wall", "-Wextra", "-fno-strict-aliasing"]
COMPILE_TIMEOUT_S = 300


class CompileError(Exception):
    """The extension could not be built; the message says why (with the compiler's output)."""


def extension_disabled() -> bool:
    # The same values as tokentrail.adapters._fast reads at run time.
    return os.environ.get(NO_EXTENSION_ENV, "").strip().lower() in {"1", "true", "yes"}


def ext_suffix() -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not suffix:
        raise CompileError("this interpreter's sysconfig has no EXT_SUFFIX")
    return str(suffix)


def _config_words(name: str) -> list[str]:
    return shlex.split(str(sysconfig.get_config_var(name) or ""))


def _without_werror(words: list[str]) -> list[str]:
    # The interpreter's own CFLAGS may carry -Werror or -Werror=...: an install must not fail on a warning.
    return [w for w in words if w != "-Werror" and not w.startswith("-Werror=")]


def _commands(source: Path, obj: Path, out: Path) -> tuple[list[str], list[str]]:
    """The compile and the link command, as setuptools would build them for this interpreter."""
    config_cc = _config_words("CC")
    env_cc = shlex.split(os.environ.get("CC", ""))
    cc = env_cc or config_cc
    if not cc:
        raise CompileError("this interpreter's sysconfig names no C compiler (CC); set CC to build it")
    ldshared = shlex.split(os.environ.get("LDSHARED", "")) or _config_words("LDSHARED")
    if not ldshared:
        raise CompileError("this interpreter's sysconfig has no LDSHARED; set LDSHARED to build it")
    if env_cc and "LDSHARED" not in os.environ and config_cc and ldshared[: len(config_cc)] == config_cc:
        ldshared = env_cc + ldshared[len(config_cc) :]  # CC=clang links with clang too

    includes: list[str] = []
    for directory in (
        sysconfig.get_paths().get("include"),
        sysconfig.get_paths().get("platinclude"),
        sysconfig.get_config_var("INCLUDEPY"),
    ):
        if directory and f"-I{directory}" not in includes:
            includes.append(f"-I{directory}")
    if not any(Path(flag[2:], "Python.h").is_file() for flag in includes):
        looked = ", ".join(flag[2:] for flag in includes) or "nowhere (sysconfig names no include dir)"
        raise CompileError(f"Python.h not found (looked in {looked}): install the Python development headers")

    cflags = (
        _without_werror(_config_words("CFLAGS"))
        + _config_words("CCSHARED")
        + EXTRA_CFLAGS
        + shlex.split(os.environ.get("CPPFLAGS", ""))
        + shlex.split(os.environ.get("CFLAGS", ""))
    )
    compile_cmd = [*cc, *cflags, *includes, "-c", str(source), "-o", str(obj)]
    link_cmd = [*ldshared, str(obj), *shlex.split(os.environ.get("LDFLAGS", "")), "-o", str(out)]
    return compile_cmd, link_cmd


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise CompileError(f"compiler not found: {cmd[0]!r} (install a C compiler, or set CC)") from None
    except subprocess.TimeoutExpired:
        raise CompileError(f"{cmd[0]} did not finish within {COMPILE_TIMEOUT_S} s") from None
    except OSError as exc:
        raise CompileError(f"could not run {cmd[0]!r}: {exc}") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise CompileError(f"{shlex.join(cmd)}\nexited {done.returncode}:\n{output}")
    return output


def compile_extension(source: Path, out: Path) -> str:
    """Compile `source` into the extension module file `out` (written whole, or not at all).

    Returns the compiler's warnings (empty when there were none); raises CompileError."""
    if not source.is_file():
        raise CompileError(f"{source} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tokentrail-fastread-") as tmp:
        obj = Path(tmp, source.stem + ".o")
        built = Path(tmp, out.name)
        compile_cmd, link_cmd = _commands(source, obj, built)
        warnings = _run(compile_cmd)
        warnings = "\n".join(filter(None, [warnings, _run(link_cmd)]))
        # Copied next to the target, then renamed over it: an importer never sees half a file.
        staged = out.with_name(f".{out.name}.tmp{os.getpid()}")
        try:
            shutil.copyfile(built, staged)
            os.chmod(staged, 0o755)
            os.replace(staged, out)
        finally:
            staged.unlink(missing_ok=True)
    return warnings


def in_place_target(root: Path = ROOT) -> Path:
    source = root / SOURCE
    return source.with_name(source.stem + ext_suffix())


def remove_stale(root: Path = ROOT) -> None:
    """An in-place module that no longer matches the source would still be imported: remove it."""
    with contextlib.suppress(CompileError, FileNotFoundError):
        in_place_target(root).unlink()


class CustomBuildHook(BuildHookInterface):  # type: ignore
    """hatchling: compile `_fastread` for editable installs (in place) and wheels (into the wheel)."""

    PLUGIN_NAME = "custom"
    _tmp: str | None = None  # a wheel build's compile directory, removed in finalize()

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist ships the source, not a compiled module
        root = Path(self.root)
        editable = version == "editable"
        if extension_disabled():
            self._warn(f"{NO_EXTENSION_ENV} is set: {MODULE} is not compiled; tokentrail runs pure Python")
            if editable:
                remove_stale(root)
            return
        try:
            suffix = ext_suffix()
            if editable:
                target = in_place_target(root)
            else:
                self._tmp = tempfile.mkdtemp(prefix="tokentrail-wheel-ext-")
                target = Path(self._tmp, "_fastread" + suffix)
            warnings = compile_extension(root / SOURCE, target)
        except CompileError as exc:
            if editable:
                remove_stale(root)
            self._warn(
                f"could not compile the optional C module {MODULE}; tokentrail will run pure Python "
                f"(same results, slower reading). Reason: {exc}"
            )
            return
        if warnings:
            self.app.display_warning(f"compiler warnings for {SOURCE}:\n{warnings}")
        self.app.display_info(f"compiled {MODULE} -> {target}")
        if not editable:
            build_data["force_include"][str(target)] = f"tokentrail/adapters/{target.name}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _warn(self, message: str) -> None:
        # On stderr; pip shows a build backend's output with -v (or when the build fails).
        self.app.display_warning(f"tokentrail build: WARNING: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Compile {MODULE} in place (as `pip install -e .` does).")
    parser.add_argument(
        "--source", type=Path, default=ROOT / SOURCE, help="the C file (default: %(default)s)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="where to write the module (default: beside the source)"
    )
    args = parser.parse_args(argv)
    source: Path = args.source
    try:
        target = (args.output_dir or source.parent) / (source.stem + ext_suffix())
        warnings = compile_extension(source, target)
    except CompileError as exc:
        if args.output_dir is None and source.resolve() == (ROOT / SOURCE).resolve():
            remove_stale()  # no module older than the source is left to be imported
        print(f"hatch_build.py: could not compile {source}: {exc}", file=sys.stderr)
        return 1
    if warnings:
        print(warnings, file=sys.stderr)
    print(f"compiled {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
