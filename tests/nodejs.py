"""Run the real JavaScript clients in tests/node (Node openai, the Vercel AI SDK, the OTel JS exporter,
axe-core) with the machine's Node, as installed by `make node` from tests/node/package-lock.json.

    result = run_node("gateway_openai.mjs", "--base-url", url, env={"OPENAI_API_KEY": "sk-test"})
    data = json.loads(result.stdout)

Scripts live in tests/node/ so Node resolves their imports from tests/node/node_modules. A missing
Node or missing packages skip loudly on a developer's machine and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import skip_or_fail

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_binary() -> str:
    """The `node` to run, or `skip_or_fail` when the machine has none or the packages are missing."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("Node.js", "no `node` on PATH", "install Node.js 20+ (Debian: apt-get install nodejs)")
    if not (NODE_DIR / "node_modules" / ".installed").exists():
        skip_or_fail(
            "Node packages",
            f"{NODE_DIR / 'node_modules'} is not installed",
            "make node (npm ci from tests/node/package-lock.json)",
        )
    return node


def run_node(
    script: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run tests/node/`script` with `args`; raises AssertionError with its output when it fails."""
    node = node_binary()
    path = NODE_DIR / script
    assert path.exists(), f"no such script: {path}"
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    result = subprocess.run(
        [node, str(path), *args],
        cwd=NODE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"node {script} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result
