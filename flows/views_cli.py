"""`spin-to-mesh views PHOTO -o DIR`: photo -> DIR/aligned/ (align) -> DIR/views/ (smr_core, a ViewSet).

The one command that chains two stages by hand, so it lives with the orchestration, not in either stage
(smr_core does not import align). Provides `register(subparsers)`; torch, diffusers and the pipeline are
imported inside the handler.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from smr_core.attention_backends import ATTENTION_BACKENDS
from spin_io.cliargs import hidden_alias

TINY_RANDOM_STEPS = 2  # --tiny-random without --steps: the views are noise anyway, keep the CPU run short
BANNER = "*** --tiny-random: tiny UNTRAINED networks; the views are MEANINGLESS and labelled so in transforms.json ***"


def _pitch(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--pitch takes comma-separated degrees such as 20,-15 (or none): {exc}"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `views` sub-command."""
    p = subparsers.add_parser(
        "views",
        help="photo -> views all around the head (RGB, normals, masks, cameras) with SpinMeRound",
        description="Align the photo (or take --aligned DIR), retrieve the input's normals, and generate a ring of "
        "views plus pitched rings with the SpinMeRound model; more than 16 views are generated in further passes "
        "conditioned on the input and the nearest generated views. Writes DIR/aligned/ and DIR/views/ "
        "(transforms.json readable by nerfstudio, rgb/, normal/, mask/, report.json).",
    )
    p.add_argument("photo", nargs="?", default=None, help="face photo (omit with --aligned or --arcface)")
    out = p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                         help="output folder (aligned/ and views/ go inside)")
    hidden_alias(p, out, "--out")
    p.add_argument("--aligned", type=Path, default=None, help="use this AlignedFace folder instead of a photo")
    p.add_argument("--arcface", type=Path, default=None, help="identity-only: a 512-float ArcFace .npy, no photo")
    p.add_argument(
        "--identity-only", action="store_true", help="use the photo only for its identity: generate every view"
    )
    p.add_argument("--views", type=int, default=8, help="views per ring, input included (default 8)")
    p.add_argument(
        "--pitch",
        type=_pitch,
        default=(20.0, -15.0),
        help="elevations of extra rings in degrees, comma-separated, > 0 from above (default 20,-15; 'none' for the "
        "eye-level ring only)",
    )
    p.add_argument("--seed", type=int, default=42, help="seed of every random draw (default 42, as the release)")
    p.add_argument("--weights", default=None, metavar="DIR",
                   help="weights folder (default $SMR_WEIGHTS, else the per-user cache); missing files are fetched")
    p.add_argument("--offline", action="store_true",
                   help="never download weights (as HF_HUB_OFFLINE=1); a missing file is one error")
    cfg = p.add_argument("--cfg-scale", type=float, default=3.5, help="classifier-free guidance scale (default 3.5)")
    hidden_alias(p, cfg, "--cfg")
    p.add_argument("--steps", type=int, default=None, help=f"sampler steps (default 50; {TINY_RANDOM_STEPS} with "
                   "--tiny-random)")
    p.add_argument("--normals-steps", type=int, default=None, help="steps of the normals run (default as --steps)")
    p.add_argument("--independent-noise", action="store_true", help="independent initial noise per view (the "
                   "release shares one noise tensor)")
    p.add_argument("--encode", choices=("sample", "mean"), default="sample", help="VAE posterior sample (release) "
                   "or mean")
    p.add_argument("--camera-encoding", choices=("angles", "rays"), default="angles",
                   help="how cameras are told to the model (see smr_core/cameras.py)")
    p.add_argument("--normal-frame", choices=("camera", "world"), default="camera",
                   help="declared frame of the generated normals (unverified without weights)")
    p.add_argument("--max-frames", type=int, default=16, help="frames per joint pass (<= 16)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="multi-view UNet precision (auto: fp16 autocast on CUDA as the release, fp32 on CPU; "
                   "--fast uses bf16 unless fp16 is chosen)")
    p.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default="auto",
                   help="SDPA kernel tried first (auto: torch chooses; others fall back where it cannot run); "
                   "bench/gpu_checks.sh measures which is fastest on a GPU")
    p.add_argument("--fast", action="store_true", help="CUDA fast path: bf16 UNet copies with torch.compile and "
                   "CUDA graphs (first run compiles for ~1 min); see smr_core/speed.py")
    p.add_argument("--face-index", type=int, default=None, help="which face when there are several (0 = largest)")
    p.add_argument("--tiny-random", action="store_true",
                   help="exercise the whole path WITHOUT weights: tiny untrained networks, meaningless images")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from tqdm.auto import tqdm

    from align.image import check_photo_path
    from align.recogniser import load_recogniser
    from smr_core.errors import InputError
    from smr_core.pipeline import ViewsConfig
    from smr_core.viewset_out import generate_viewset
    from spin_io.preflight import check_output_writable, resolve_device

    sources = [name for name, v in (("PHOTO", args.photo), ("--aligned", args.aligned)) if v is not None]
    if len(sources) > 1:
        raise InputError("give either a PHOTO or --aligned DIR, not both")
    if not sources and args.arcface is None and not args.tiny_random:
        raise InputError("nothing to generate from: give a PHOTO, --aligned DIR, or --arcface FILE.npy (identity only)")
    steps = args.steps if args.steps is not None else (TINY_RANDOM_STEPS if args.tiny_random else 50)
    try:
        config = ViewsConfig(
            num_views=args.views,
            pitch_rings_deg=(0.0, *args.pitch),
            seed=args.seed,
            cfg_scale=args.cfg_scale,
            steps=steps,
            normals_steps=args.normals_steps if args.normals_steps is not None else steps,
            same_noise=not args.independent_noise,
            encode=args.encode,
            max_frames=args.max_frames,
            camera_encoding=args.camera_encoding,
            normal_frame=args.normal_frame,
            condition_on_photo=not (args.identity_only or (not sources)),
            precision=args.precision,
            attention_backend=args.attention_backend,
            fast=args.fast,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid view settings: {problems}") from None
    if args.photo is not None:
        check_photo_path(args.photo, "views")
    check_output_writable(args.output, create=False)  # nothing is written on a user error
    device = resolve_device(args.device)  # before any model is loaded or moved
    if args.tiny_random:
        print(BANNER, file=sys.stderr)
    else:
        from model_fetch import ensure_weights
        from smr_core.weights import find_weights

        # fetch (and verify) what is missing on first use, or one error listing it, before any work
        # from an aligned folder the face detector is not needed (its arcface.npy, or its absence, is checked later)
        diffusion_only = ["spmr", "encoder-config", "encoder"] if args.photo is None else None
        root = ensure_weights(["views"], args.weights, offline=args.offline or None, names=diffusion_only)
        args.weights = str(root)
        find_weights(args.weights)

    aligned_dir = args.aligned
    if args.photo is not None:
        aligned_dir = align_for_views(
            args.photo, args.output / "aligned", weights_dir=args.weights, tiny_random=args.tiny_random,
            face_index=args.face_index,
        )
        print(f"aligned -> {aligned_dir}", file=sys.stderr)

    bar = tqdm(total=1, desc="views", unit="step", file=sys.stderr)

    def progress(stage: str, done: int, total: int) -> None:
        bar.total = total
        bar.set_description(stage)
        bar.update(done - bar.n)

    try:
        views_dir = generate_viewset(
            aligned_dir, args.output / "views", config, weights_dir=args.weights, tiny_random=args.tiny_random,
            device=device, progress=progress, identity=args.arcface, recogniser_loader=load_recogniser,
        )
    finally:
        bar.close()
    _summary(views_dir, args.tiny_random)
    return 0


def align_for_views(
    photo: str | os.PathLike[str],
    out_dir: Path,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    tiny_random: bool = False,
    face_index: int | None = None,
) -> Path:
    """Align a photo for view generation and write the AlignedFace folder; nothing is written on error.

    The real model needs the ArcFace identity, so without tiny_random the antelopev2 backend is required
    (its error lists the missing files); tiny_random takes whatever backend is available (offline: dlib).
    """
    from align import align_photo
    from smr_core.errors import WeightsNotFoundError
    from smr_core.viewset_out import IDENTITY_NEEDED
    from spin_io.aligned import write_aligned

    face = align_photo(
        photo, None, backend="auto" if tiny_random else "antelopev2", weights_dir=weights_dir, face_index=face_index
    )
    if face.arcface is None and not tiny_random:
        raise WeightsNotFoundError(f"the photo was aligned without an ArcFace embedding. {IDENTITY_NEEDED}")
    write_aligned(out_dir, face)
    return Path(out_dir)


def _summary(views_dir: Path, tiny_random: bool) -> None:
    import json

    meta = json.loads((views_dir / "transforms.json").read_text("utf-8"))
    gen = meta["generation"]
    report = gen["identity_report"]
    print(f"{len(meta['frames'])} views in {len(gen['passes'])} pass(es) -> {views_dir}")
    if report["available"]:
        at45 = report.get("at_45_deg_yaw")
        print(f"identity (ArcFace cosine to the input): mean {report['mean']}, at 45 deg yaw {at45}")
    else:
        print("identity similarity not measured (no antelopev2 ArcFace model); see report.json")
    if tiny_random:
        print(BANNER)
