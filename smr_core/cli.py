"""`spin-to-mesh weights ...`: fetch, check and convert SpinMeRound weights.

Heavy imports (torch, diffusers, transformers) happen inside the handlers so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` command group to the top-level parser."""
    weights = subparsers.add_parser(
        "weights",
        help="fetch, check or convert the model weights",
        description="Fetch the weights (per-user cache by default; --weights DIR or SMR_WEIGHTS elsewhere), "
        "check a weights folder (official release layout or converted), or convert it to "
        "diffusers/transformers folders with safetensors.",
    )
    sub = weights.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    fetch = sub.add_parser(
        "fetch",
        help="download the missing weights and verify the present ones",
        description="Download every weight file that is missing and verify each file's checksum (pinned in the "
        "code, reported by the Hugging Face hub, or recorded on first download). Resumes killed downloads; "
        "SMR_WEIGHTS_MIRROR=URL fetches everything from a studio mirror laid out like the weights folder.",
    )
    fetch.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these files (names: see --list)")
    fetch.add_argument("--weights", metavar="DIR", default=None,
                       help="weights folder (default: $SMR_WEIGHTS, else ~/.cache/spin-to-mesh/weights)")
    fetch.add_argument("--offline", action="store_true", default=None,
                       help="download nothing (as HF_HUB_OFFLINE=1): only report what is missing")
    fetch.add_argument("--list", action="store_true", help="list the files, their sources and licences, then exit")
    fetch.set_defaults(func=_fetch)

    check = sub.add_parser("check", help="show what is found where and what is missing")
    check.add_argument("dir", nargs="?", default=None,
                       help="weights folder (default: $SMR_WEIGHTS, else ~/.cache/spin-to-mesh/weights)")
    check.add_argument("--load", action="store_true", help="also load every tensor strictly (slow on full weights)")
    check.set_defaults(func=_check)

    convert = sub.add_parser("convert", help="write a diffusers-style folder (unet/, vae/, text_encoder/)")
    convert.add_argument("src", help="weights folder in the official layout (or a converted one)")
    convert.add_argument("-o", "--output", required=True, help="destination folder")
    convert.add_argument("--ema", action="store_true", help="take the EMA UNet weights (model_ema.*)")
    convert.add_argument("--force", action="store_true", help="replace the destination if it exists")
    convert.add_argument(
        "--no-alignment", action="store_true", help="do not copy antelopev2/ and the BiSeNet weights along"
    )
    convert.set_defaults(func=_convert)


def _fetch(args: argparse.Namespace) -> int:
    from model_fetch import fetch_weights
    from model_fetch.manifest import MANIFEST

    if args.list:
        for wf in MANIFEST:
            use = "commercial use allowed" if wf.commercial else "NON-COMMERCIAL"
            optional = "" if wf.is_required() else ", optional: a fallback exists"
            print(f"{wf.name:<15} {wf.relpath}  ({', '.join(sorted(wf.needed_for))}{optional})")
            print(f"{'':<15} from {wf.source_text()}; licence: {wf.licence} ({use})")
        return 0
    root = fetch_weights(args.weights, only=args.only, offline=args.offline)
    print(f"weights ready in {root}", file=sys.stderr)
    print(root)
    return 0


def _check(args: argparse.Namespace) -> int:
    from model_fetch import weights_root
    from spin_io.errors import EXIT_WEIGHTS

    root = weights_root(args.dir)
    if not root.is_dir():
        print(f"weights folder {root} does not exist: run `spin-to-mesh weights fetch`")
        return EXIT_WEIGHTS
    from smr_core.weights import inspect_weights

    layout = inspect_weights(root)
    print(f"weights folder: {layout.root} ({layout.kind} layout)")
    rows = [
        ("checkpoint", layout.checkpoint),
        ("unet", layout.unet),
        ("vae", layout.vae),
        ("text encoder", layout.encoder),
        ("antelopev2", layout.antelopev2),
        ("BiSeNet", layout.bisenet),
    ]
    if layout.kind == "official":
        rows = [r for r in rows if r[0] not in ("unet", "vae")]
    else:
        rows = [r for r in rows if r[0] != "checkpoint"]
    for name, path in rows:
        print(f"  {name:<13} {path if path is not None else 'MISSING'}")
    if layout.missing:
        print("missing:")
        for missing in layout.missing:
            print(missing.line())
    if not layout.diffusion_complete:
        print("diffusion weights: INCOMPLETE (`spin-to-mesh weights fetch` gets them)")
        return EXIT_WEIGHTS
    if args.load:
        from smr_core.checkpoint import load_spinmeround

        models = load_spinmeround(layout.root)
        print(f"loaded strictly: weights id {models.weights_id}")
    print("diffusion weights: complete" + ("" if layout.alignment_complete else " (face alignment files missing)"))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from smr_core.checkpoint import CONVERT_STAGES, convert_weights

    with tqdm(total=len(CONVERT_STAGES), desc="convert", unit="stage", file=sys.stderr) as bar:

        def progress(stage: str) -> None:
            bar.update(CONVERT_STAGES.index(stage) - bar.n)  # stages before this one are done
            bar.set_postfix_str(stage)

        dst = convert_weights(
            args.src,
            args.output,
            use_ema=True if args.ema else None,
            overwrite=args.force,
            copy_alignment=not args.no_alignment,
            progress=progress,
        )
        bar.update(bar.total - bar.n)
    print(dst)
    return 0
