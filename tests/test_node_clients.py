"""The JavaScript clients the tests drive are installed exactly as tests/node/package-lock.json locks
them (what `make node` / `make test` does on a clean clone)."""

from __future__ import annotations

import json

from tests.nodejs import NODE_DIR, run_node


def test_installed_versions_are_the_locked_ones() -> None:
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    locked = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
    report = json.loads(run_node("versions.mjs").stdout)
    for name, version in wanted.items():
        assert version[0].isdigit(), f"{name}: pin an exact version, not {version!r}"
        assert locked[f"node_modules/{name}"]["version"] == version
        assert report["installed"][name] == version
    assert int(report["node"].split(".")[0]) >= 20
