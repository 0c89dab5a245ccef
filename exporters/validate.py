"""Run the Khronos glTF validator (npm `gltf-validator`, through Node.js) on GLB files.

The package is looked for in $SPIN_TO_MESH_NODE_MODULES, then <repo>/node_modules, then
./node_modules, then $NODE_PATH, then npm's global root. Node is $SPIN_TO_MESH_NODE or `node` on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.errors import ValidatorUnavailableError

PACKAGE = "gltf-validator"
SCRIPT = Path(__file__).with_name("js") / "validate.mjs"


@dataclass(frozen=True)
class ValidatorInfo:
    """Where the validator was found: the node binary, the node_modules folder, the package version."""

    node: str
    module_dir: Path
    version: str

    def __str__(self) -> str:
        return f"{PACKAGE} {self.version} ({self.module_dir / PACKAGE}) via {self.node}"


def _module_dir_candidates() -> list[Path]:
    candidates: list[Path] = []
    env = os.environ.get("SPIN_TO_MESH_NODE_MODULES")
    if env:
        candidates += [Path(env), Path(env) / "node_modules"]
    candidates.append(Path(__file__).resolve().parent.parent / "node_modules")
    candidates.append(Path.cwd() / "node_modules")
    candidates += [Path(p) for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    return candidates


def _npm_global_root() -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        out = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.strip()) if out.strip() else None


def find_validator() -> ValidatorInfo | None:
    """Locate node and the gltf-validator package; None if either is missing."""
    node = os.environ.get("SPIN_TO_MESH_NODE") or shutil.which("node")
    if not node:
        return None
    candidates = _module_dir_candidates()
    for i in range(len(candidates) + 1):
        if i == len(candidates):
            root = _npm_global_root()
            if root is None:
                return None
            directory = root
        else:
            directory = candidates[i]
        manifest = directory / PACKAGE / "package.json"
        if manifest.is_file():
            try:
                version = json.loads(manifest.read_text("utf-8")).get("version", "unknown")
            except (OSError, json.JSONDecodeError):
                continue
            return ValidatorInfo(node=node, module_dir=directory.resolve(), version=version)
    return None


def validate_glbs(paths: list[str | Path], timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Validate several files in one Node process; returns the validator's JSON report per file."""
    info = find_validator()
    if info is None:
        raise ValidatorUnavailableError(
            "the glTF validator is not available: install Node.js and run `npm install` in the spin-to-mesh "
            "repository (or set SPIN_TO_MESH_NODE_MODULES to a node_modules folder holding gltf-validator)"
        )
    files = [str(Path(p).resolve()) for p in paths]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f)
    try:
        proc = subprocess.run(
            [info.node, str(SCRIPT), str(info.module_dir), *files],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidatorUnavailableError(f"the glTF validator did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        raise ValidatorUnavailableError(
            f"the glTF validator failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return json.loads(proc.stdout)


def validate_glb(path: str | Path) -> dict[str, Any]:
    """The Khronos validator's report for one GLB (keys: issues.numErrors, numWarnings, messages, info, ...)."""
    return validate_glbs([path])[0]


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a validator report worth keeping in report.json: counts and the distinct issue codes."""
    issues = report.get("issues", {})
    codes: dict[str, int] = {}
    for message in issues.get("messages", []):
        key = f"{message.get('code')} (severity {message.get('severity')})"
        codes[key] = codes.get(key, 0) + 1
    return {
        "validator_version": report.get("validatorVersion"),
        "errors": issues.get("numErrors", 0),
        "warnings": issues.get("numWarnings", 0),
        "infos": issues.get("numInfos", 0),
        "hints": issues.get("numHints", 0),
        "codes": codes,
    }
