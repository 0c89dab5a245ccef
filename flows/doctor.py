"""`spin-to-mesh doctor`: what is installed, which weights are where, and what to do next.

Every check produces a line with a status (ok / missing / warn) and, when something is missing,
the action that fixes it. Every weight file is listed: present or missing, size, checksum, licence.

Exit status: 0 when the main job (`spin-to-mesh run PHOTO -o OUT`) can run; 3 (EXIT_WEIGHTS) when
weights it needs are missing or fail verification (the last line names `spin-to-mesh weights
fetch` and the weights-free demo); 1 when a core package is missing (the installation is broken).
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

SETUP = "bash scripts/setup.sh"
DEMO = "spin-to-mesh run PHOTO -o OUT --views-backend synthetic"
FETCH = "spin-to-mesh weights fetch"


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


# Optional distributions -> the extra of pyproject.toml that installs them (and why you would want it).
OPTIONAL = {
    "dlib-bin": ("align", "offline face alignment (dlib)"),
    "face-recognition-models": ("align", "dlib's landmark models"),
    "opencv-python-headless": ("align", "warps and GrabCut matting"),
    "onnxruntime": ("align", "the authors' antelopev2 face models on CPU"),
    "onnxruntime-gpu": ("gpu", "the antelopev2 face models on CUDA (instead of 'align')"),
    "prefect": ("flows", "the Prefect flow, `spin-to-mesh run`"),
    "mne": ("synth", "synthetic ground-truth heads"),
    "accelerate": ("train", "training"),
    "pytest": ("dev", "the test suite"),
}


def check_packages() -> list[Check]:
    """Core and optional Python packages, with the extra of pyproject.toml that provides each optional one."""
    core = ["torch", "diffusers", "transformers", "huggingface_hub", "numpy", "trimesh", "xatlas",
            "fast-simplification", "pygltflib", "gdown", "filelock"]
    checks = []
    for dist in core:
        v = _version(dist)
        checks.append(Check(dist, "ok" if v else "missing", v or "not installed",
                            "" if v else f"reinstall: {SETUP} (or pip install -e . in this repository)"))
    gpu_host = bool(_version("onnxruntime-gpu"))
    for dist, (extra, why) in OPTIONAL.items():
        v = _version(dist)
        if v:
            checks.append(Check(dist, "ok", v))
            continue
        if dist == "onnxruntime-gpu" or (dist == "onnxruntime" and gpu_host):
            continue  # the alternative of the other; the onnxruntime line covers both
        fix = f"pip install -e '.[{extra}]' (or EXTRAS=...,{extra} {SETUP})"
        if dist == "onnxruntime":
            fix = f"pip install -e '.[align]' on CPU, or '.[gpu]' on a CUDA host (never both; {SETUP} takes EXTRAS)"
        checks.append(Check(dist, "warn", f"not installed (extra '{extra}': {why})", fix))
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
        checks.append(Check("cuda", "missing", "torch not importable",
                            f"{SETUP} installs torch first (TORCH_SPEC=... picks a CUDA build)"))
    checks.append(check_cpus())
    try:
        ort = importlib.import_module("onnxruntime")
        checks.append(Check("onnxruntime providers", "ok", ", ".join(ort.get_available_providers())))
    except ImportError:
        checks.append(Check("onnxruntime providers", "warn", "onnxruntime not installed",
                            "pip install -e '.[align]' (CPU) or '.[gpu]' (CUDA), never both: the antelopev2 models"))
    return checks


def check_cpus() -> Check:
    """The CPU cores this process may use and torch's thread count.

    torch sizes its thread pool by the cores the process may use (taskset, a container's limit), and recon runs
    one view per such core. More threads than cores, or several workers each taking every core of one host, make
    the threads wait on each other: two runs sharing two cores took 20 s instead of 0.5-1.5 s for normal fusion.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    host = os.cpu_count() or usable
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        return Check("cpu", "ok", f"{usable} of {host} cores for this process")
    detail = f"{usable} of {host} cores for this process; torch uses {threads} thread(s)"
    if threads > usable:
        return Check("cpu", "warn", detail, f"more threads than cores: unset OMP_NUM_THREADS or set it to {usable}")
    if usable == host and host > 1 and torch.cuda.device_count() > 0:  # a GPU host runs one worker per GPU
        detail += " (all of the host's: give each worker of a shared host its own, taskset -c; docs/PREFECT.md)"
    return Check("cpu", "ok", detail)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def check_weights(weights_dir: str | None, verify: bool = False) -> tuple[list[Check], bool]:
    """Every weight file (present or missing, size, checksum, licence); and whether the main job can run."""
    try:
        from model_fetch import status, weights_root
        from model_fetch.manifest import stages_of
        from smr_core.weights import inspect_weights
    except ImportError as exc:  # smr_core broken or partially installed
        return [Check("weights", "missing", f"smr_core not importable ({exc})", f"reinstall: {SETUP}")], False
    root = weights_root(weights_dir)
    run = stages_of(["run"])
    converted = root.is_dir() and inspect_weights(root).kind == "converted"
    checks: list[Check] = []
    runnable = True
    for st in status(root, verify=verify):
        wf = st.file
        licence = wf.licence + ("" if wf.commercial else " (NON-COMMERCIAL)")
        needed = wf.is_required(run) and not (converted and wf.needed_for == frozenset({"views"}))
        role = "required for run" if needed else "optional: a fallback exists"
        if st.present and st.verified is not False:
            how = (st.record or {}).get("verified_by") or ("pinned" if wf.pinned else "not recorded")
            digest = f"sha256 {st.sha256[:12]}" if st.sha256 else "no checksum recorded"
            state = "verified now" if st.verified else how
            fix = "" if st.sha256 else f"{FETCH} --only {wf.name} records it"
            checks.append(Check(wf.relpath, "ok", f"{_size(st.size)}  {digest} ({state})  {licence}", fix))
        elif st.present:
            runnable &= not needed
            checks.append(Check(wf.relpath, "missing" if needed else "warn",
                                f"{_size(st.size)}  FAILS VERIFICATION: {st.problem}  {licence}",
                                f"delete it, then {FETCH} --only {wf.name}"))
        else:
            runnable &= not needed
            checks.append(Check(wf.relpath, "missing" if needed else "warn", f"missing ({role})  {licence}",
                                f"{FETCH} --only {wf.name}   (source: {wf.source_text()})"))
    if converted:
        layout = inspect_weights(root)
        checks.insert(0, Check("converted layout", "ok" if layout.diffusion_complete else "missing",
                               "diffusers folders (unet/, vae/, text_encoder/) stand in for spmr.ckpt + encoder",
                               "" if layout.diffusion_complete else "re-run `spin-to-mesh weights convert`"))
        runnable &= layout.diffusion_complete
    return checks, runnable


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
    """Print every check; exit 3 when the main job cannot run for lack of weights, 1 when a core package is missing."""
    from model_fetch import is_offline, weights_root
    from model_fetch.api import mirror_url
    from spin_io.errors import EXIT_OK, EXIT_WEIGHTS

    root = weights_root(args.weights)
    weight_checks, runnable = check_weights(args.weights, verify=args.verify)
    where = "--weights" if args.weights else ("$SMR_WEIGHTS" if os.environ.get("SMR_WEIGHTS") else "per-user cache")
    extras = [f"mirror {mirror_url()}" if mirror_url() else "", "offline" if is_offline() else ""]
    title = f"weights in {root} ({', '.join(x for x in [where, *extras] if x)})"
    sections = {
        "packages": check_packages(),
        "devices": check_devices(),
        title: weight_checks,
        "tools": check_tools(),
    }
    width = max(len(c.name) for checks in sections.values() for c in checks)
    marks = {"ok": "ok  ", "warn": "WARN", "missing": "MISS"}
    broken = False
    for name, checks in sections.items():
        print(f"\n{name}")
        for c in checks:
            print(f"  [{marks[c.status]}] {c.name.ljust(width)}  {c.detail}")
            if c.fix:
                print(f"         {''.ljust(width)}  -> {c.fix}")
            broken |= c.status == "missing" and name == "packages"
    print(f"\nrepo: {Path(__file__).resolve().parents[1]}")
    if broken:
        print(f"the installation is incomplete: {SETUP}")
        return 1
    if not runnable:
        target = f" --weights {args.weights}" if args.weights else ""
        print(f"the main job (spin-to-mesh run PHOTO -o OUT) cannot run: weights are missing. "
              f"Fix: {FETCH}{target}   or try the weights-free demo: {DEMO}")
        return EXIT_WEIGHTS
    print("the main job can run: spin-to-mesh run PHOTO -o OUT")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `doctor` sub-command."""
    p = subparsers.add_parser("doctor", help="check the installation, devices, weights and tools")
    p.add_argument("--weights", metavar="DIR",
                   help="weights folder to check (default: $SMR_WEIGHTS, else ~/.cache/spin-to-mesh/weights)")
    p.add_argument("--verify", action="store_true", help="also hash every weight file against its checksum")
    p.set_defaults(func=run_doctor)
