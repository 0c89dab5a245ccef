"""Set-up must be reproducible: the validator install is pinned by a committed lockfile."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_lock_is_committed_and_matches_package_json() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    deps = json.loads((ROOT / "package.json").read_text())["dependencies"]
    assert lock["packages"][""]["dependencies"] == deps
    for name, version in deps.items():
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] == version
        assert entry["integrity"].startswith("sha512-")
    if (ROOT / ".git").exists():
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "package-lock.json"], cwd=ROOT, capture_output=True
        )
        assert tracked.returncode == 0, "package-lock.json must be committed"


def test_setup_installs_from_the_lockfile() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    commands = [line.strip() for line in setup.splitlines() if line.strip().startswith("npm ")]
    assert commands and all(c.startswith("npm ci ") for c in commands), commands
