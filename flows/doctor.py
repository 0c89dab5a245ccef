"""`spin-to-mesh doctor`: what is installed, which weights are found where, and what to do next.

Every check produces a line with a status (ok / missing / warn) and, when something is missing,
the action that fixes it. Exit status 0 means the export/recon path works; weights are reported
but not required (without them only `--tiny-random` diffusion runs).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # "ok" | "missing" | "warn"
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_packages() -> list[Check]:
    """Core and optional Python packages, with the extra that provides each optional one."""
    core = ["torch", "diffusers", "transformers", "numpy", "trimesh", "xatlas", "fast-simplification", "pygltflib"]
    optional = {"prefect": "flows", "mne": "synth", "insightface": "align", "onnxruntime": "align",
                "onnxruntime-gpu": "gpu", "accelerate": "train"}
    checks = []
    for dist in core:
        v = _version(dist)
        checks.append(Check(dist, "ok" if v else "missing", v or "not installed",
                            "" if v else "reinstall: pip install -e . (see README, Set-up)"))
    for dist, extra in optional.items():
        v = _version(dist)
        checks.append(Check(dist, "ok" if v else "warn", v or f"not installed (extra '{extra}')",
                            "" if v else f"pip install -e '.[{extra}]' if you need it"))
    if _version("onnxruntime") and _version("onnxruntime-gpu"):
        checks.append(Check("onnxruntime", "warn", "both onnxruntime and onnxruntime-gpu are installed",
                            "they overwrite each other's module: pip uninstall -y onnxruntime onnxruntime-gpu, "
                            "then install only one (extra 'align' or 'gpu')"))
    return checks


def check_devices() -> list[Check]:
    """CUDA devices for torch and execution providers for onnxruntime."""
    checks = []
    try:
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            checks.append(Check("cuda", "ok", f"{torch.cuda.device_count()} device(s): {names}"))
        else:
            checks.append(Check("cuda", "warn", f"no CUDA device (torch {torch.__version__}); CPU only",
                                "diffusion on CPU is very slow at 512 px; install a CUDA torch build on a GPU host"))
    except ImportError:
        checks.append(Check("cuda", "missing", "torch not importable", "pip install torch==2.13.0 (CPU) first"))
    try:
        ort = importlib.import_module("onnxruntime")
        checks.append(Check("onnxruntime providers", "ok", ", ".join(ort.get_available_providers())))
    except ImportError:
        checks.append(Check("onnxruntime providers", "warn", "onnxruntime not installed",
                            "pip install -e '.[align]' (or '.[gpu]') for the antelopev2 face models"))
    return checks


def check_weights(weights_dir: str | None) -> list[Check]:
    """Which of the release's weight files are found, using smr_core's own discovery code."""
    if not weights_dir:
        return [Check("weights", "warn", "no folder given",
                      "pass --weights DIR or set SMR_WEIGHTS=DIR (README: Weights); "
                      "without weights only --tiny-random diffusion and offline alignment run")]
    try:
        from smr_core.weights import inspect_weights
    except ImportError as exc:  # smr_core broken or partially installed
        return [Check("weights", "missing", f"smr_core not importable ({exc})", "reinstall spin-to-mesh")]
    if not Path(weights_dir).expanduser().is_dir():
        return [Check("weights", "missing", f"{weights_dir}: no such folder",
                      "check --weights / SMR_WEIGHTS; README: Weights shows the layout")]
    layout = inspect_weights(weights_dir)
    found = {
        "checkpoint (spmr.ckpt)": layout.checkpoint,
        "Arc2Face encoder": layout.encoder,
        "UNet (converted)": layout.unet,
        "VAE (converted)": layout.vae,
        "antelopev2": layout.antelopev2,
        "BiSeNet": layout.bisenet,
    }
    if layout.kind == "converted":
        found.pop("checkpoint (spmr.ckpt)")
    else:
        found.pop("UNet (converted)")
        found.pop("VAE (converted)")
    checks = [Check("layout", "ok", f"{layout.kind} ({layout.root})")]
    checks += [Check(name, "ok", str(path)) for name, path in found.items() if path is not None]
    for m in layout.missing:
        status = "missing" if m.needed_for == "diffusion" else "warn"
        checks.append(Check(m.path.name, status, f"{m.path} not found ({m.needed_for})", f"get it from {m.source}"))
    from smr_core.align.weights import find_tddfa_weights

    tddfa = find_tddfa_weights(layout.root)
    if tddfa.complete:
        checks.append(Check("FaceBoxes + 3DDFA", "ok", "all four files found: the crop is refined as the release does"))
    else:
        checks.append(Check("FaceBoxes + 3DDFA", "warn", "incomplete: alignment refines the crop from landmarks",
                            "; ".join(tddfa.missing())))
    return checks


def check_tools() -> list[Check]:
    """External clients: Node's glTF validator (GLB checks) and Blender (import checks)."""
    checks = []
    node = shutil.which("node")
    if node is None:
        checks.append(Check("node", "warn", "not found", "install Node.js + npm, then `npm install` in the repo"))
    else:
        try:
            from exporters.validate import find_validator

            found = find_validator()
            checks.append(Check("gltf-validator", "ok" if found else "warn",
                                str(found) if found else "npm package not found",
                                "" if found else "run `npm install` in the repository root"))
        except ImportError as exc:
            checks.append(Check("gltf-validator", "warn", f"exporters not importable ({exc})"))
    blender = shutil.which("blender")
    if blender:
        try:
            out = subprocess.run([blender, "-b", "--version"], capture_output=True, text=True, timeout=60).stdout
            checks.append(Check("blender", "ok", out.splitlines()[0] if out else blender))
        except (OSError, subprocess.TimeoutExpired) as exc:
            checks.append(Check("blender", "warn", f"found but did not answer ({exc})"))
    else:
        checks.append(Check("blender", "warn", "not found (only used by the tests' import check)",
                            "apt-get install blender"))
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    """Print every check; exit 1 if a core package is missing."""
    weights_dir = args.weights or os.environ.get("SMR_WEIGHTS")
    sections = {
        "packages": check_packages(),
        "devices": check_devices(),
        f"weights ({weights_dir or 'no --weights and no SMR_WEIGHTS set'})": check_weights(weights_dir),
        "tools": check_tools(),
    }
    width = max(len(c.name) for checks in sections.values() for c in checks)
    marks = {"ok": "ok  ", "warn": "WARN", "missing": "MISS"}
    failed = False
    for title, checks in sections.items():
        print(f"\n{title}")
        for c in checks:
            print(f"  [{marks[c.status]}] {c.name.ljust(width)}  {c.detail}")
            if c.fix:
                print(f"         {''.ljust(width)}  -> {c.fix}")
            failed |= c.status == "missing" and title == "packages"
    print(f"\nrepo: {Path(__file__).resolve().parents[1]}")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `doctor` sub-command."""
    p = subparsers.add_parser("doctor", help="check the installation, devices, weights and tools")
    p.add_argument("--weights", metavar="DIR", help="weights folder to check (default: $SMR_WEIGHTS)")
    p.set_defaults(func=run_doctor)
