"""The four stages as plain functions: call the stage package, write its folder atomically, return a record.

No Prefect and no maths here: `flows.tasks` wraps these in Prefect tasks, and anything that wants
to run a stage without Prefect (a notebook, a test) can call them directly. Each stage writes into
a temporary sibling folder and renames it into place only when the stage package succeeded, so a
failed or interrupted stage never leaves a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.errors import StageUnavailableError
from flows.params import AlignParams, ExportParams, ReconParams, ViewsParams
from flows.records import AlignedRecord, AssetRecord, MeshRecord, PhotoRecord, ViewsRecord, from_uri, to_uri
from spin_io.aligned import warning_list
from spin_io.atomic import atomic_dir
from spin_io.hashing import file_sha256  # noqa: F401  (flows' public name for it)

if TYPE_CHECKING:
    from align import Aligner

SYNTHETIC_NOTE = (
    "SYNTHETIC: a procedural ground-truth head rendered by recon.synth at the requested cameras; "
    "the input photo was not used. For demos and tests without diffusion weights only."
)


def tree_sha256(folder: str | Path) -> str:
    """Content hash of a folder: every file's relative path and bytes, in sorted order."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")):
        h.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0" + file_sha256(path).encode() + b"\0")
    return h.hexdigest()


def staged_dir(final: Path) -> contextlib.AbstractContextManager[Path]:
    """Yield an empty temporary folder next to `final`; on success it replaces `final` (old results removed)."""
    return atomic_dir(final)


@functools.lru_cache(maxsize=1)
def loaded_pipeline(weights: str, device: str) -> Any:
    """The SpinMeRound networks of this worker process, loaded once and reused by every photo it processes.

    One entry: a worker serves one GPU and one weights folder (a change of either reloads). Loading the release
    takes seconds and the fast path compiles for about a minute, which a batch must not pay per photo.
    """
    from smr_core.pipeline import SpinMeRoundPipeline

    return SpinMeRoundPipeline.from_pretrained(weights or None, device=device)


@functools.lru_cache(maxsize=1)
def loaded_aligner(
    backend: str,
    weights: str,
    device: str = "cpu",
    matting: str = "auto",
    refinement: str = "auto",
    landmarks: str = "dlib5",
) -> Aligner:
    """The alignment networks of this worker process (face backend, 3DDFA refiner, BiSeNet), loaded once.

    The key is every choice that changes what gets loaded: backend, weights folder ("" = none), device and the
    AlignConfig fields that pick networks. The config is built here from those plain values, so the key stays
    hashable whatever AlignConfig grows; a stage that exposes another config field adds it as a parameter.
    """
    from align import AlignConfig, Aligner
    from align.offline import OfflineConfig

    config = AlignConfig(
        offline=OfflineConfig(landmarks=landmarks), matting=matting, refinement=refinement, device=device
    )
    return Aligner(backend, weights or None, config)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; a device this machine lacks is a user error.

    spin_io.preflight raises DeviceUnavailableError (never retried) instead of the AssertionError torch
    raises deep inside a stage, which looked transient and was retried.
    """
    from spin_io.preflight import resolve_device as checked

    return checked(device)


def clean_stale_temporaries(work_dir: str | Path) -> list[str]:
    """Remove the `.tmp-*` entries a killed run left directly inside a photo's output folder; returns their names.

    Only the folder's own `.tmp-*` entries (the half-written stage folders of `staged_dir`) are touched: the run
    that owns a photo's folder is the only writer there, so what it finds at its start is debris.
    """
    import shutil

    folder = Path(work_dir)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(".tmp-"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry.name)
    return removed


# In-process listeners of what the flow is doing: `spin-to-mesh run` registers its progress display here.
# A deployment's worker registers none, and a listener can never fail a run.
_LISTENERS: list[Any] = []


def add_listener(listener: Any) -> None:
    """Register `listener(event, **info)`; `listener.bars` (optional) asks recon for its tqdm bars."""
    _LISTENERS.append(listener)


def remove_listener(listener: Any) -> None:
    """Unregister a listener added with add_listener (no error when it is not there)."""
    with contextlib.suppress(ValueError):
        _LISTENERS.remove(listener)


def notify(event: str, **info: Any) -> None:
    """Tell every listener about `event` (run, photo, stage_start, stage_end, message); errors are swallowed."""
    for listener in list(_LISTENERS):
        with contextlib.suppress(Exception):
            listener(event, **info)


def show_bars() -> bool:
    """Whether a listener wants the stages' own tqdm bars (a terminal is watching, not a pipe or a worker)."""
    return any(getattr(listener, "bars", False) for listener in _LISTENERS)


def ensure_run_weights(
    weights: str | None, align: AlignParams, views: ViewsParams, offline: bool | None = None
) -> str | None:
    """The weights folder a run will use, with what its stages need fetched first (issue 14: on first use).

    Diffusion from a photo needs the SpinMeRound files and the ArcFace models: missing ones are fetched,
    or (offline, or a failed download) one WeightsMissingError (exit 3) lists them with the demo command.
    The alignment models all have fallbacks, so they are fetched when possible but never required.
    Returns None when nothing points anywhere and the per-user cache does not exist yet.
    """
    from model_fetch import ensure_weights

    if views.backend == "spinmeround" and not views.tiny_random:
        stages = ["run"]
    elif align.backend != "offline":
        stages = ["align"]
    else:
        _ensure_align_models(offline)
        return weights
    root = ensure_weights(stages, weights or None, offline=offline)
    if align.backend != "antelopev2":
        _ensure_align_models(offline)
    return str(root) if weights or root.is_dir() else None


def _ensure_align_models(offline: bool | None) -> None:
    """MediaPipe's face mesh and selfie models (Apache-2.0, from PyPI), fetched once; without them align falls back."""
    import logging

    from align.errors import AlignError
    from align.mediapipe_models import ensure_models, litert_available
    from model_fetch.api import is_offline

    if is_offline(offline) or not litert_available():
        return
    try:
        ensure_models()
    except AlignError as exc:
        logging.getLogger("spin_to_mesh").warning("%s; aligning without them", exc)


def folder_fingerprint(weights: str | None) -> str:
    """Identify a weights folder cheaply: file names, sizes and modification times.

    Hashing multi-GB checkpoints on every run would cost more than a cache hit saves; a replaced
    file changes its size or mtime, which is what invalidates the cache here.
    """
    root = weights or os.environ.get("SMR_WEIGHTS")
    if not root or not Path(root).is_dir():
        return "none"
    h = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "files-" + h.hexdigest()[:16]


def views_weights_id(weights: str | None, views: ViewsParams) -> str:
    """The weights id of a views run: part of its cache key and of its record."""
    if views.backend == "synthetic":
        return "synthetic"
    if views.tiny_random:
        return "tiny-random"
    return folder_fingerprint(weights)


def run_align(
    photo: PhotoRecord, params: AlignParams, weights: str | None = None, device: str = "cpu"
) -> AlignedRecord:
    """Photo -> AlignedFace folder `<work>/aligned` (align), with this worker's loaded aligner."""
    from model_fetch.layout import resolve_weights_dir

    root = resolve_weights_dir(weights)  # $SMR_WEIGHTS is part of the key as the folder it names
    # positional, always all six: lru_cache tells f(a, b=1) and f(a, 1) apart
    aligner = loaded_aligner(
        params.backend, str(root) if root is not None else "", resolve_device(device),
        params.matting, params.refinement, params.landmarks,
    )
    work = from_uri(photo.work_uri)
    out = work / "aligned"
    new_folder = not work.exists()
    try:
        with staged_dir(out) as tmp:
            face = aligner.align(from_uri(photo.uri), tmp, face_index=params.face_index)
    except BaseException:
        if new_folder:
            with contextlib.suppress(OSError):
                work.rmdir()  # a photo that failed at its first stage leaves no empty folder (only if empty)
        raise
    return AlignedRecord(
        photo_id=photo.photo_id,
        dir_uri=to_uri(out),
        sha256=tree_sha256(out),
        backend=str(face.backend.get("name", params.backend)),
        has_identity=face.arcface is not None,
        head_pose={k: float(v) for k, v in face.head_pose.items()},
        warnings=warning_list(face.backend.get("warnings")),
    )


def _synthetic_viewset(views_dir: Path, params: ViewsParams, device: str, aligned_dir: Path | None = None) -> int:
    from recon.synth import ViewSpec, procedural_head, render_viewset
    from smr_core.cameras import default_cameras
    from spin_io.viewset import write_viewset

    # a coarser head for small previews keeps the demo fast; the renderer's cost grows with faces
    small = params.image_size < 256
    head = procedural_head(
        params.synthetic_head_seed, voxel_m=0.004 if small else 0.0025, target_faces=6_000 if small else 60_000
    )
    # the cameras the diffusion backend would generate (smr_core's schedule), input view first
    cameras = default_cameras(params.num_views, params.pitch_rings_deg, with_input=True)
    specs = [ViewSpec(c.azimuth_deg, c.elevation_deg, is_input=c.is_input) for c in cameras]
    vs = render_viewset(head, specs, size=params.image_size, normal_frame="camera", seed=params.seed, device=device)
    vs.generation = {
        **vs.generation,
        "backend": "synthetic",
        "synthetic": True,
        "synthetic_head": head.name,
        "note": SYNTHETIC_NOTE,
        "num_views": params.num_views,
        "pitch_rings_deg": list(params.pitch_rings_deg),
        # the photo was aligned for real: its models' licences and warnings still travel to report.json and the GLB
        "licences": _aligned_backend_list(aligned_dir, "licences", dict),
    }
    warnings = warning_list(_aligned_backend_list(aligned_dir, "warnings", str))
    if warnings:
        vs.generation["alignment_warnings"] = warnings
    write_viewset(views_dir, vs)
    return len(specs)


def _aligned_backend_list(aligned_dir: Path | None, key: str, kind: type) -> list[Any]:
    """face.json's backend list `key` (licence records, warnings), its entries of type `kind` ([] when none)."""
    import json

    try:
        face = json.loads((aligned_dir / "face.json").read_text("utf-8")) if aligned_dir is not None else {}
    except (OSError, ValueError):
        return []
    items = (face.get("backend") or {}).get(key) if isinstance(face, dict) else None
    return [r for r in items if isinstance(r, kind)] if isinstance(items, list) else []


def _spinmeround_viewset(
    aligned_dir: Path, views_dir: Path, params: ViewsParams, device: str, weights: str | None
) -> int:
    try:
        from smr_core.pipeline import ViewsConfig
        from smr_core.viewset_out import generate_viewset
    except ImportError as exc:
        raise StageUnavailableError(
            f"the spinmeround views backend is not available in this installation ({exc}); "
            "use views backend 'synthetic' for a weights-free demo"
        ) from exc
    import json

    config = ViewsConfig(
        num_views=params.num_views,
        pitch_rings_deg=tuple(params.pitch_rings_deg),
        seed=params.seed,
        cfg_scale=params.cfg_scale,
        steps=params.steps,
        attention_backend=params.attention_backend,
        fast=params.fast,
    )
    pipeline = None if params.tiny_random else loaded_pipeline(weights or "", device)
    photo_id = aligned_dir.parent.name

    def progress(step: str, done: int, total: int) -> None:
        notify("fraction", photo_id=photo_id, stage="views", step=step, done=done, total=total)

    from align.recogniser import load_recogniser

    generate_viewset(
        aligned_dir, views_dir, config, weights_dir=Path(weights) if weights else None,
        tiny_random=params.tiny_random, device=device, pipeline=pipeline, progress=progress if _LISTENERS else None,
        recogniser_loader=load_recogniser,
    )
    return len(json.loads((views_dir / "transforms.json").read_text("utf-8"))["frames"])


def run_views(
    aligned: AlignedRecord, params: ViewsParams, work_uri: str, device: str = "auto", weights: str | None = None
) -> ViewsRecord:
    """AlignedFace -> ViewSet folder `<work>/views` (the diffusion model, or the labelled synthetic stand-in)."""
    out = from_uri(work_uri) / "views"
    dev = resolve_device(device)
    with staged_dir(out) as tmp:
        if params.backend == "synthetic":
            n = _synthetic_viewset(tmp, params, dev, from_uri(aligned.dir_uri))
        else:
            n = _spinmeround_viewset(from_uri(aligned.dir_uri), tmp, params, dev, weights)
    return ViewsRecord(
        photo_id=aligned.photo_id,
        dir_uri=to_uri(out),
        sha256=tree_sha256(out),
        backend=params.backend,
        synthetic=params.backend == "synthetic",
        n_views=n,
        weights_id=views_weights_id(weights, params),
    )


def _scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested metrics to scalars (the record stays small; per-view lists are in metrics.json)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_scalar_metrics(value, name + "."))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            flat[name] = value
    return flat


# recon settings per preset: 'preview' trades accuracy for speed (a coarser hull, fewer faces and
# normal-fusion rounds, one depth integration); 'standard' is recon's own defaults.
RECON_PRESETS: dict[str, dict[str, Any]] = {
    "preview": {"hull_voxel": 0.012, "target_faces": 6_000, "rounds": 2, "reanchor": False},
    "standard": {},
}


def recon_config(params: ReconParams, device: str) -> Any:
    """recon's ReconConfig for the flow's parameters."""
    from dataclasses import replace

    from recon.camera_align import CameraAlignConfig
    from recon.fusion import FusionConfig
    from recon.pipeline import ReconConfig
    from recon.sweep import SweepConfig
    from recon.volume import VolumeConfig

    preset = RECON_PRESETS[params.preset]
    config = ReconConfig(device=device)
    config = replace(
        config,
        texture=replace(config.texture, size=params.texture_size),  # recon's texture settings: de-lighting on
        volume=VolumeConfig(max_size=params.depth_size, sweep=SweepConfig(enabled=params.open_pockets)),
        camera_align=CameraAlignConfig.for_choices(params.trust_cameras, params.fit_masks),
    )
    if "hull_voxel" in preset:
        config.hull_voxel = preset["hull_voxel"]
    if "target_faces" in preset:
        config.target_faces = preset["target_faces"]
    if "rounds" in preset:
        config.fusion = FusionConfig(rounds=preset["rounds"])
    if "reanchor" in preset:  # the second depth integration (recon.volume): a third of recon's time
        config.volume = replace(config.volume, reanchor=preset["reanchor"])
    return config


def run_recon(
    views: ViewsRecord,
    params: ReconParams,
    work_uri: str,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> MeshRecord:
    """ViewSet -> HeadMesh folder `<work>/mesh` (recon); `progress` shows recon's tqdm bars on stderr."""
    try:
        from recon.pipeline import run_recon as recon_run
    except ImportError as exc:
        raise StageUnavailableError(f"recon's pipeline is not available in this installation ({exc})") from exc
    import json

    out = from_uri(work_uri) / "mesh"
    with staged_dir(out) as tmp:
        recon_run(from_uri(views.dir_uri), tmp, recon_config(params, resolve_device(device)), log=log,
                  progress=progress)
    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text("utf-8")) if metrics_path.is_file() else {}
    return MeshRecord(photo_id=views.photo_id, dir_uri=to_uri(out), sha256=tree_sha256(out),
                      metrics=_scalar_metrics({k: v for k, v in metrics.items() if k not in ("config", "generation")}))


def validation_note(validation: dict[str, Any], asked: bool) -> str:
    """What report.json's 'validation' says in one phrase: 'passed', 'failed: ...', 'not validated: <why>'.

    A worker without Node.js or the gltf-validator package used to record validation_passed = null and
    nothing else, which read like success; the note makes the skipped check visible in the run.
    """
    if not asked:
        return "not asked (export.validate_gltf off)"
    if not validation.get("ran"):
        return f"not validated: {validation.get('reason') or 'the exporter did not run the glTF validator'}"
    if validation.get("passed"):
        return "passed"
    return f"failed: {validation.get('errors', '?')} error(s), {validation.get('warnings', '?')} warning(s)"


def run_export(mesh: MeshRecord, params: ExportParams, work_uri: str) -> AssetRecord:
    """HeadMesh -> Asset folder `<work>/asset` (exporters): LOD GLBs, preview.png, report.json."""
    from exporters import ExportConfig, export_asset

    out = from_uri(work_uri) / "asset"
    config = ExportConfig(
        roughness=params.roughness,
        lod_budgets=tuple(params.lod_budgets),
        texture_size=params.max_texture_size,  # LOD0's cap: the name every ExportConfig version accepts
        normal_maps=params.normal_maps,
        preview=params.preview,
        validate=params.validate_gltf,
        format=params.format,
        usda=params.usda,
        lit_texture=params.lit_texture,
        overwrite=True,
    )
    with staged_dir(out) as tmp:
        result = export_asset(from_uri(mesh.dir_uri), tmp, config)
    files = {role: out / Path(p).name for role, p in result.files.items()}
    glb = files.get("lod0", out / "head.glb")
    report = result.report
    summary: dict[str, Any] = {
        "triangles": [lod.get("triangles") for lod in report.get("lods", []) if isinstance(lod, dict)],
        "validation_passed": report.get("validation", {}).get("passed"),
        "validation": validation_note(report.get("validation", {}), params.validate_gltf),
        "glb_bytes": glb.stat().st_size,
    }
    return AssetRecord(
        photo_id=mesh.photo_id,
        dir_uri=to_uri(out),
        glb_uri=to_uri(glb),
        glb_sha256=file_sha256(glb),
        preview_uri=to_uri(files["preview"]) if "preview" in files else None,
        files={role: to_uri(p) for role, p in files.items()},
        summary=summary,
    )
