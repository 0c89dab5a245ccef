"""Views -> ViewSet folder: the smr_core side of writing a generation run to disk.

`generate_viewset` reads an AlignedFace folder (spin_io.aligned), picks the identity, runs the model
pipeline (smr_core.pipeline), measures the identity report, and writes the ViewSet folder atomically
through the on-disk contract (spin_io.viewset); `build_viewset` assembles the ViewSet of one result
(real cameras, masks, unit normals) and `_generation_record` its provenance (transforms.json).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from smr_core.cameras import FOV_DEG, RADIUS, YAW_DIRECTION, YAW_DIRECTION_NOTE, ViewCamera, pixel_intrinsics
from smr_core.errors import InputError, WeightsNotFoundError
from smr_core.identity_report import RecogniserLoader
from smr_core.pipeline import Progress, ProgressCounter, SpinMeRoundPipeline, ViewsConfig, ViewsResult
from smr_core.views import plan_passes, unit_normals, white_background_mask
from spin_io.aligned import warning_list
from spin_io.atomic import make_temp_dir, replace_dir

TINY_RANDOM_WARNING = (
    "TINY RANDOM WEIGHTS: these views come from an untrained, randomly initialised toy network and are "
    "MEANINGLESS; they only exercise the pipeline. Use the released weights for real views."
)
NORMAL_FRAME_NOTE = {
    "camera": "assumed: normals in each view's OpenGL camera axes (+X right, +Y up, +Z towards the camera; a surface "
    "facing the camera is blue). For the input view camera and world axes coincide. The training normal encoding "
    "is not published (SPINMEROUND.md §9.8): unverified without real weights; recon checks it on the data.",
    "world": "assumed: normals in the ViewSet's world axes (= the input view's camera axes). The training normal "
    "encoding is not published (SPINMEROUND.md §9.8): unverified without real weights; recon checks it on the data.",
}
IDENTITY_NEEDED = (
    "SpinMeRound is conditioned on the ArcFace identity of the face, which only the antelopev2 recognition model "
    "provides. Put the antelopev2 models in WEIGHTS/models/antelopev2/ and align with them (`spin-to-mesh views "
    "PHOTO --weights WEIGHTS`, or `spin-to-mesh align PHOTO -o DIR --backend antelopev2 --weights WEIGHTS`), or "
    "pass --tiny-random to exercise the pipeline with a random identity"
)


def random_identity(seed: int) -> np.ndarray:
    """A random L2-normalised 512-d vector (tiny-random mode only: it is no one's identity)."""
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def build_viewset(
    result: ViewsResult,
    config: ViewsConfig,
    *,
    input_mask: np.ndarray | None = None,
    generation: dict[str, Any] | None = None,
) -> Any:
    """ViewSet (spin_io.viewset) of a result: real cameras, masks (input: the aligned mask), unit normals."""
    from spin_io.viewset import ViewFrame, ViewSet

    fl_x, fl_y, cx, cy = pixel_intrinsics()
    frames = []
    for i, cam in enumerate(result.cameras):
        if cam.is_input and input_mask is not None:
            mask = np.asarray(input_mask) > 127
        else:
            mask = white_background_mask(result.rgb[i], config.mask_threshold)
        frames.append(
            ViewFrame(
                rgb=result.rgb[i],
                mask=mask,
                c2w=cam.c2w(RADIUS),
                fl_x=fl_x,
                fl_y=fl_y,
                cx=cx,
                cy=cy,
                azimuth_deg=cam.azimuth_deg,
                elevation_deg=cam.elevation_deg,
                normal=unit_normals(result.normals[i], mask),
                normal_frame=config.normal_frame,
                is_input=cam.is_input,
            )
        )
    return ViewSet(frames=frames, yaw_direction=YAW_DIRECTION, generation=dict(generation or {}))


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "transforms.json")
                                                       .is_file())):
        raise InputError(
            f"{out_dir} exists and is not a ViewSet folder; refusing to replace it. Choose an empty or new folder"
        )


def _load_identity(identity: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    if isinstance(identity, np.ndarray):
        emb = identity
    else:
        try:
            emb = np.load(Path(identity), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the ArcFace embedding {identity}: {exc}; pass a 512-float .npy") from exc
    emb = np.asarray(emb, np.float32).reshape(-1)
    norm = float(np.linalg.norm(emb)) if emb.size else 0.0
    if emb.shape != (512,) or not np.isfinite(norm) or norm == 0.0:
        raise InputError(f"an ArcFace embedding must be 512 finite floats, not all zero; got shape {emb.shape}")
    return (emb / norm).astype(np.float32)


def generate_viewset(
    aligned_dir: Path | None,
    out_dir: Path,
    config: ViewsConfig,
    *,
    weights_dir: Path | None = None,
    tiny_random: bool = False,
    device: str | None = None,
    progress: Progress | None = None,
    identity: str | os.PathLike[str] | np.ndarray | None = None,
    pipeline: SpinMeRoundPipeline | None = None,
    recogniser_loader: RecogniserLoader | None = None,
) -> Path:
    """AlignedFace folder -> ViewSet folder `out_dir` (written atomically: complete or absent). Returns out_dir.

    recogniser_loader: weights folder -> (face recogniser or None, why not), for the identity report
    (report.json); flows passes align.recogniser.load_recogniser. Without one the report says it was not measured.

    pipeline: an already loaded SpinMeRoundPipeline (a batch worker loads the weights, and compiles the fast
    path, once); `weights_dir` must then name the folder it was loaded from (it is recorded in the ViewSet).

    aligned_dir None (or config.condition_on_photo False) is identity-only generation; the identity is then
    `identity` (an arcface.npy path or array) or, in tiny_random mode only, a random unit vector. tiny_random
    runs tiny untrained networks written to a temporary folder: the views are meaningless and labelled so.
    progress(stage, done, total) reports one stream over the whole run.
    Raises InputError / WeightsNotFoundError / ContractError before anything is written.
    """
    import torch

    from spin_io.aligned import read_aligned

    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    face = read_aligned(aligned_dir) if aligned_dir is not None else None
    if identity is not None:
        id_emb, id_source = _load_identity(identity), "given ArcFace embedding"
    elif face is not None and face.arcface is not None:
        id_emb, id_source = face.arcface, "arcface.npy of the aligned photo (antelopev2 ArcFace)"
    elif tiny_random:
        id_emb = random_identity(config.seed)
        id_source = "RANDOM unit vector (tiny-random mode; no ArcFace embedding was available)"
    elif face is not None:
        raise WeightsNotFoundError(f"{aligned_dir} has no ArcFace embedding ({face.identity_note}). {IDENTITY_NEEDED}")
    else:
        raise InputError("identity-only generation needs an ArcFace embedding: pass identity= (an arcface.npy) or an "
                         "aligned folder")
    image = face.crop if (face is not None and config.condition_on_photo) else None
    cameras = config.cameras(with_input=image is not None)
    plan_passes(cameras, config.max_frames)  # fail on a bad schedule before loading anything

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="smr-tiny-") as tiny_dir:  # tiny weights live only for this run
        t0 = time.perf_counter()
        if pipeline is not None:
            pipe = pipeline
        elif tiny_random:
            from smr_core.tiny import write_tiny_weights

            pipe = SpinMeRoundPipeline.from_pretrained(write_tiny_weights(Path(tiny_dir) / "weights"), device=device)
            pipe.weights_info = {**pipe.weights_info, "tiny_random": True}
        else:
            pipe = SpinMeRoundPipeline.from_pretrained(weights_dir, device=device)
        load_s = time.perf_counter() - t0
        return _generate_and_write(
            pipe, face, image, id_emb, id_source, cameras, out_dir, config,
            weights_dir=weights_dir, tiny_random=tiny_random, device=device, progress=progress, load_s=load_s,
            recogniser_loader=recogniser_loader,
        )


def _generate_and_write(
    pipe: SpinMeRoundPipeline,
    face: Any,
    image: np.ndarray | None,
    id_emb: np.ndarray,
    id_source: str,
    cameras: list[ViewCamera],
    out_dir: Path,
    config: ViewsConfig,
    *,
    weights_dir: Path | None,
    tiny_random: bool,
    device: str,
    progress: Progress | None,
    load_s: float,
    recogniser_loader: RecogniserLoader | None,
) -> Path:
    from smr_core.identity_report import NO_RECOGNISER, identity_report
    from spin_io.atomic import atomic_write_json
    from spin_io.viewset import validate_viewset, write_viewset

    recogniser, unavailable = recogniser_loader(weights_dir) if recogniser_loader else (None, NO_RECOGNISER)
    units = pipe.work_units(cameras, config, image is not None)
    total = units + (len(cameras) if recogniser is not None else 0)
    result = pipe.generate(image, id_emb, cameras, config, progress=progress, progress_total=total)
    result.timings_s["load"] = load_s

    counter = ProgressCounter(total, progress, offset=units)
    report = identity_report(
        result.rgb, cameras, id_emb, recogniser, unavailable,
        reference_note=id_source, step=lambda: counter("identity report"),
    )
    generation = _generation_record(config, pipe, result, face, id_source, report, tiny_random, device)
    generation["licences"] = _licences_used(weights_dir, face, tiny_random, recogniser is not None)
    warnings = warning_list((getattr(face, "backend", None) or {}).get("warnings"))
    if warnings:  # what the alignment lost (GrabCut matte, hair cut by the frame)
        generation["alignment_warnings"] = warnings
    vs = build_viewset(result, config, input_mask=face.mask if image is not None else None, generation=generation)
    validate_viewset(vs, str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir)
    try:
        atomic_write_json(tmp / "report.json", report)
        write_viewset(tmp, vs)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _licences_used(weights_dir: Path | None, face: Any, tiny_random: bool, arcface: bool) -> list[dict[str, Any]]:
    """Licence records of the weights these views came from, plus the alignment's (face.json), for the outputs."""
    from model_fetch import weights_licences

    names = [] if tiny_random else ["spmr", "encoder-config", "encoder"]
    records = weights_licences(weights_dir, names=names + (["arcface"] if arcface else []))
    backend = getattr(face, "backend", None) or {}
    seen = {r["name"] for r in records}
    records += [r for r in backend.get("licences", []) if isinstance(r, dict) and r.get("name") not in seen]
    return records


def _generation_record(
    config: ViewsConfig,
    pipe: SpinMeRoundPipeline,
    result: ViewsResult,
    face: Any,
    id_source: str,
    report: dict[str, Any],
    tiny_random: bool,
    device: str,
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if tiny_random:
        record["warning"] = TINY_RANDOM_WARNING
    record.update(
        {
            "generator": "spin-to-mesh smr_core.pipeline (SpinMeRound re-implementation)",
            "tiny_random": bool(tiny_random),
            "weights": pipe.weights_info,
            "weights_id": pipe.weights_info.get("weights_id"),
            "seed": config.seed,
            "steps": config.steps,
            "cfg": config.cfg_scale,
            "sampler": "euler_edm (S_churn 0) + SpinMeRound CFG; EDM sigmas (sigma_max 700, sigma_min 0.002, rho 7)",
            "normals": {
                "steps": config.normals_steps,
                "sampler": "euler_edm + masked-L2 guidance on the RGB latent; legacy DDPM sigmas; fp32",
                "guidance_weight": config.normals_guidance,
            },
            "config": config.model_dump(mode="json"),
            "device": str(device),
            "camera_radius": RADIUS,
            "fov_deg": FOV_DEG,
            "camera_encoding": config.camera_encoding,
            "yaw_direction_note": YAW_DIRECTION_NOTE,
            "normal_frame_note": NORMAL_FRAME_NOTE[config.normal_frame],
            "model_angles_deg": [list(a) for a in result.model_angles],
            "passes": [
                {"round": p.round, "conditioning": list(p.conditioning), "targets": list(p.targets)}
                for p in result.passes
            ],
            "mask": {
                "generated_views": f"background = every channel >= {config.mask_threshold}; largest region, holes "
                "filled",
                "input_view": "the aligned mask.png",
            },
            "normals_storage": "unit normals inside the mask, 0 outside; stored as (n + 1) / 2",
            "identity": {"source": id_source},
            "identity_report": {"file": "report.json", **report["summary"], "available": report["available"]},
            "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
        }
    )
    if face is not None:
        record["aligned"] = {"source_sha256": face.source_sha256, "backend": face.backend.get("name")}
    return record
