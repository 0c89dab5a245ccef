"""`spin-to-mesh recon VIEWS/ -o MESH/`: fit a textured head to a ViewSet and write a HeadMesh."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `recon` sub-command (heavy imports happen in the handler)."""
    p = subparsers.add_parser(
        "recon",
        help="fit a closed, textured head mesh to a ViewSet (views/ -> mesh/)",
        description="Visual hull, per-view depth from normals fused inside it (ear gaps, eye sockets), explicit "
        "normal fusion, texture baking. Writes head.npz, albedo.png, mesh.json and metrics.json (a self-check with "
        "the views that disagree with the rest, reprojection error per view, coverage, stage times).",
    )
    p.add_argument("views", help="ViewSet folder (transforms.json, rgb/, normal/, mask/)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="HeadMesh folder to write")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--texture-size", type=int, default=2048, metavar="PX",
                   help="side of the baked albedo texture in pixels (default 2048)")
    p.add_argument("--unwrap", choices=("charts", "xatlas"), default="charts",
                   help="UV layout: charts (recon/unwrap.py: a few seconds, the default) or xatlas (about 45 s per "
                   "100k faces on 2 CPU cores, about 1.3x the texels on the head)")
    p.add_argument("--target-faces", type=int, default=100_000,
                   help="faces of the fitted mesh before texturing (default 100000; the exporter's LODs are smaller)")
    p.add_argument("--rounds", type=int, default=8, help="normal-fusion rounds (default 8)")
    p.add_argument("--hull-voxel", type=float, default=0.006, help="visual-hull voxel in ViewSet units (default 0.006)")
    p.add_argument(
        "--no-depth-fusion",
        action="store_true",
        help="start normal fusion from the visual hull alone (faster, but concavities such as the gap behind the "
        "ears and the eye sockets stay filled)",
    )
    p.add_argument(
        "--open-pockets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="move depth-map patches that no anchor of their own view placed (the floor of a pocket behind an ear, "
        "held on the visual hull's lid; an ear plate integrated too deep) to where the other views' normals agree "
        "(recon/sweep.py; on by default since session 12, bench/RECON_EVAL.md; --no-open-pockets: off)",
    )
    p.add_argument(
        "--depth-size",
        type=int,
        default=512,
        metavar="N",
        help="largest side in pixels at which each view's normals are integrated to depth (default 512, the "
        "generator's own size); larger views are averaged down to it. 256 halves the time on 512 px views but blends "
        "ear rims with the skull behind them (bench/RECON_EVAL.md, session 15: over 20 cases at 512 px, NC 0.0015 "
        "lower on average, at most 0.0066)",
    )
    p.add_argument(
        "--trust-cameras",
        action="store_true",
        help="use the declared cameras as they are; by default each view's camera is turned (up to 4 deg) onto the "
        "shape the views agree on, as generated views are drawn from slightly different poses (recon/camera_align.py)",
    )
    p.add_argument(
        "--fit-masks",
        action="store_true",
        help="measure each view's matte against the others' and move out one drawn 0.3-3 px tight, for the geometry "
        "(not the texture): a tight matte carves what the other views show (recon/camera_align.py; bench/"
        "RECON_EVAL.md, session 10: NC +0.0016 on the heads it was tuned on, mixed on held-out ones)",
    )
    p.add_argument(
        "--conventions",
        choices=("correct", "refuse", "trust"),
        default="correct",
        help="when the declared yaw direction / normal frame contradict the data: correct with a warning "
        "(default), refuse, or trust the declaration without checking",
    )
    p.set_defaults(func=_handle)


def config_from_args(args: argparse.Namespace):
    """recon's ReconConfig for the parsed options: its defaults (de-lighting on) with what the user chose."""
    from dataclasses import replace

    from recon.camera_align import CameraAlignConfig
    from recon.fusion import FusionConfig
    from recon.pipeline import ReconConfig
    from recon.sweep import SweepConfig
    from recon.volume import VolumeConfig
    from spin_io.preflight import resolve_device

    base = ReconConfig()
    return replace(
        base,
        device=resolve_device(args.device),
        hull_voxel=args.hull_voxel,
        target_faces=args.target_faces,
        conventions=args.conventions,
        fusion=FusionConfig(rounds=args.rounds),
        volume=VolumeConfig(enabled=not args.no_depth_fusion, max_size=args.depth_size,
                            sweep=SweepConfig(enabled=args.open_pockets)),
        camera_align=CameraAlignConfig.for_choices(args.trust_cameras, args.fit_masks),
        texture=replace(base.texture, size=args.texture_size, unwrap=args.unwrap),
    )


def _handle(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from recon.errors import ReconError, ViewSetInputError
    from recon.pipeline import run_recon
    from spin_io.preflight import check_output_writable

    views = Path(args.views)
    if views.is_file():
        raise ViewSetInputError(
            f"{views} is a file: recon takes a ViewSet folder (written by `spin-to-mesh views`); "
            "for a photo use `spin-to-mesh run`"
        )
    if args.texture_size < 16:
        raise ReconError(f"--texture-size {args.texture_size}: give the albedo side in pixels, e.g. 2048")
    if args.target_faces < 1000:
        raise ReconError(f"--target-faces {args.target_faces}: give the fitted mesh's face budget, at least 1000 "
                         "(default 100000; the exported LODs are decimated from it)")
    if args.depth_size < 32:
        raise ReconError(f"--depth-size {args.depth_size}: give the depth integration's largest side in pixels, at "
                         "least 32 (default 512; 256 is about twice as fast on 512 px views)")
    check_output_writable(args.output, create=False)  # nothing is written on a user error
    cfg = config_from_args(args)
    out = run_recon(
        args.views, args.output, cfg, log=lambda msg: print(f"recon: {msg}", file=sys.stderr), progress=True
    )
    print(out)
    return 0
