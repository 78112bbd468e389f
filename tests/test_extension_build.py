"""Packaging of the optional C reader `tokentrail.adapters._fastread` (hatch_build.py, the hatchling hook).

Real builds through hatchling's PEP 517 entry points (what pip calls), from this repository: a wheel
compiled for this interpreter, a pure wheel without it (TOKENTRAIL_NO_EXTENSION=1, or no compiler), an
sdist that ships the C source and builds a compiled wheel again, and `python hatch_build.py` itself.
Nothing is written into the source tree: wheels compile into a temporary directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
MODULE_IN_WHEEL = f"tokentrail/adapters/_fastread{EXT_SUFFIX}"
PURE_TAG = "py3-none-any"
BUILD_TIMEOUT_S = 180


def _compiler_or_skip() -> None:
    cc = (os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "")).split()
    if not cc or shutil.which(cc[0]) is None:
        skip_or_fail(
            "C compiler", f"{cc[0] if cc else 'sysconfig CC'} not found on PATH", "apt-get install gcc"
        )


@pytest.fixture(scope="module")
def backend_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH entry under which hatchling imports ('' when this environment has it already).

    .venv does not install hatchling (pip builds in an isolated environment): it is installed once into a
    temporary directory, from the same index pip's isolated builds use."""
    if importlib.util.find_spec("hatchling") is not None:
        return ""
    target = tmp_path_factory.mktemp("hatchling")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-warn-conflicts"]
    done = subprocess.run(
        [*pip, "--target", str(target), "hatchling>=1.25"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        skip_or_fail(
            "hatchling (the build backend)",
            f"pip install --target {target} hatchling failed: {done.stderr.strip()[-800:]}",
            "pip install hatchling (needs the package index)",
        )
    return str(target)


def build(backend_path: str, kind: str, out: Path, *, cwd: Path = ROOT, **env_vars: str) -> tuple[Path, str]:
    """Build a `wheel` or an `sdist` of the project in `cwd` into `out`: (the file, the backend's output)."""
    env = {k: v for k, v in os.environ.items() if k != "TOKENTRAIL_NO_EXTENSION"}
    env.update(env_vars)
    if backend_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [backend_path, env.get("PYTHONPATH")]))
    out.mkdir(parents=True, exist_ok=True)
    code = f"import sys, hatchling.build as b; print(b.build_{kind}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"build_{kind} failed:\n{output}"
    return out / done.stdout.strip().splitlines()[-1], output


def wheel_tag(wheel: Path) -> str:
    return "-".join(wheel.stem.split("-")[2:])


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def wheel_file(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(suffix)]
        return zf.read(name).decode()


def compiled_modules(names: list[str]) -> list[str]:
    return [n for n in names if "_fastread" in n and n.endswith((".so", ".pyd"))]


def assert_compiled_wheel(wheel: Path, tmp_path: Path) -> None:
    tag = wheel_tag(wheel)
    assert tag != PURE_TAG
    assert tag in {str(t) for t in sys_tags()}, f"{tag} does not install on this interpreter"
    assert "Root-Is-Purelib: false" in wheel_file(wheel, ".dist-info/WHEEL")
    names = wheel_names(wheel)
    assert compiled_modules(names) == [MODULE_IN_WHEEL]
    # The module in the wheel imports, from the unpacked wheel (not from the editable source tree).
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    probe = "import tokentrail.adapters._fastread as m; print(m.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == unpacked / MODULE_IN_WHEEL


def assert_pure_wheel(wheel: Path) -> None:
    assert wheel_tag(wheel) == PURE_TAG
    assert "Root-Is-Purelib: true" in wheel_file(wheel, ".dist-info/WHEEL")
    assert compiled_modules(wheel_names(wheel)) == []


def test_wheel_carries_the_compiled_reader_and_a_platform_tag(backend_path: str, tmp_path: Path) -> None:
    _compiler_or_skip()
    wheel, _ = build(backend_path, "wheel", tmp_path / "dist")
    assert_compiled_wheel(wheel, tmp_path)


def test_no_extension_env_builds_a_pure_wheel(backend_path: str, tmp_path: Path) -> None:
    # A module compiled in place (by `pip install -e .` or make) lies in src/ and is not swept in either.
    wheel, output = build(backend_path, "wheel", tmp_path / "dist", TOKENTRAIL_NO_EXTENSION="1")
    assert_pure_wheel(wheel)
    assert "TOKENTRAIL_NO_EXTENSION is set" in output


def test_without_a_compiler_the_build_warns_and_goes_on_pure(backend_path: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-cc")
    wheel, output = build(backend_path, "wheel", tmp_path / "dist", CC=missing, LDSHARED=missing)
    assert_pure_wheel(wheel)
    assert "could not compile the optional C module tokentrail.adapters._fastread" in output
    assert "compiler not found" in output


def test_sdist_ships_the_source_and_builds_a_compiled_wheel(backend_path: str, tmp_path: Path) -> None:
    _compiler_or_skip()
    sdist, _ = build(backend_path, "sdist", tmp_path / "sdist")
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tf:
        names = tf.getnames()
        tf.extractall(tmp_path / "unpacked-sdist", filter="data")
    assert f"{top}/src/tokentrail/adapters/_fastread.c" in names
    assert f"{top}/hatch_build.py" in names
    assert compiled_modules(names) == []
    wheel, _ = build(backend_path, "wheel", tmp_path / "dist", cwd=tmp_path / "unpacked-sdist" / top)
    assert_compiled_wheel(wheel, tmp_path)


def test_command_line_compiles_and_reports_a_compiler_error(tmp_path: Path) -> None:
    _compiler_or_skip()
    script = str(ROOT / "hatch_build.py")
    done = subprocess.run(
        [sys.executable, script, "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"_fastread{EXT_SUFFIX}").is_file()

    broken = tmp_path / "broken" / "_fastread.c"
    broken.parent.mkdir()
    broken.write_text("int tokentrail_broken = ;\n")
    done = subprocess.run(
        [sys.executable, script, "--source", str(broken)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode != 0
    assert "could not compile" in done.stderr
    assert "tokentrail_broken" in done.stderr or "error" in done.stderr  # the compiler's own message
    assert not (broken.parent / f"_fastread{EXT_SUFFIX}").exists()
