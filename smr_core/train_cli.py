"""`spin-to-mesh train CONFIG` and `spin-to-mesh filter-data DATA -o DIR`.

Provides `register(subparsers)`; torch, diffusers and accelerate are imported inside the handlers.
Multi-GPU: `accelerate launch -m smr_core.train_cli train CONFIG` runs the same command in every process.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spin_io.cliargs import hidden_alias


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `filter-data` sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune SpinMeRound on multi-view head data (EDM objective of the paper)",
        description="Train from a TOML/YAML/JSON config (see examples/train_tiny.toml and docs/TRAINING.md). "
        "Resumes from the run folder's latest checkpoint unless --no-resume. Writes RUN/checkpoints/, "
        "RUN/metrics.jsonl (loss per sigma bucket) and RUN/weights/ (official layout, raw + EMA).",
    )
    p.add_argument("config", type=Path, help="training config (.toml, .yaml or .json)")
    p.add_argument("--max-steps", type=int, default=None, help="override run.max_steps")
    out = p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                         help="run folder: overrides run.output_dir")
    hidden_alias(p, out, "--output-dir")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N: overrides run.device (default: the config's, else auto)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run folder")
    p.set_defaults(func=_handle_train)

    f = subparsers.add_parser(
        "filter-data",
        help="drop training subjects whose views do not match their frontal identity (ArcFace)",
        description="Score each subject by the ArcFace similarity of its views to its frontal view (antelopev2 from "
        "--weights or $SMR_WEIGHTS) and drop those below --threshold (and, with --mad-k, the dataset's outliers). "
        "Writes DIR/filter_report.json (every subject, its score and the reason it was kept or dropped) and "
        "DIR/kept.txt (set data.subjects_file to it).",
    )
    f.add_argument("data", type=Path, help="dataset folder (one sub-folder per subject with views/)")
    out = f.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                         help="folder for filter_report.json and kept.txt")
    hidden_alias(f, out, "--out")
    f.add_argument("--weights", default=None, metavar="DIR",
                   help="weights folder with models/antelopev2 (default $SMR_WEIGHTS)")
    f.add_argument("--threshold", type=float, default=0.5, help="minimum mean similarity to keep (default 0.5)")
    f.add_argument("--max-angle", type=float, default=60.0, help="views further than this from the frontal one "
                   "are not scored (default 60 degrees)")
    f.add_argument("--min-views", type=int, default=2, help="scored views a subject needs (default 2)")
    f.add_argument("--mad-k", type=float, default=None, help="also drop scores below median - K * MAD")
    f.add_argument("--write-arcface", action="store_true", help="write SUBJECT/arcface.npy (frontal embedding) "
                   "where missing")
    f.set_defaults(func=_handle_filter)


def _handle_train(args: argparse.Namespace) -> int:
    from smr_core.train.config import load_config
    from spin_io.errors import DeviceUnavailableError
    from spin_io.preflight import check_output_writable, resolve_device

    run: dict[str, object] = {}
    if args.max_steps is not None:
        run["max_steps"] = args.max_steps
    if args.output is not None:
        run["output_dir"] = str(args.output.resolve())
    if args.device is not None:
        run["device"] = resolve_device(args.device)  # a missing GPU is one line, not an AssertionError
    config = load_config(args.config, {"run": run} if run else None)
    if args.device is None and config.run.device is not None:  # the config file's choice, checked the same way
        try:
            resolved = resolve_device(config.run.device)
        except DeviceUnavailableError as exc:
            raise DeviceUnavailableError(f"{args.config}: run.device: {exc}") from None
        config = config.model_copy(update={"run": config.run.model_copy(update={"device": resolved})})
    check_output_writable(config.run.output_dir, create=False)  # before the models load

    from smr_core.train.loop import train

    result = train(config, resume=not args.no_resume)
    if result.losses:
        print(f"trained to step {result.step}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
    for label, value in result.bucket_loss.items():
        print(f"  sigma {label:>10}: {'-' if value is None else f'{value:.4f}'}")
    print(f"run folder: {result.run_dir}")
    if result.weights_dir is not None:
        print(f"weights (official layout; load with use_ema=True for the EMA copy): {result.weights_dir}")
    return 0


def _handle_filter(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from smr_core.identity_report import load_recogniser
    from smr_core.train.data import list_subject_dirs
    from smr_core.train.errors import DataError
    from smr_core.train.filtering import FilterConfig, filter_dataset
    from spin_io.preflight import check_output_writable

    if not 0.0 <= args.threshold <= 1.0 or args.max_angle <= 0 or args.min_views < 1:
        raise DataError("--threshold must lie in [0, 1], --max-angle be > 0 and --min-views >= 1")
    check_output_writable(args.output, create=False)  # before scoring every subject
    total = len(list_subject_dirs(args.data))
    recogniser, why = load_recogniser(args.weights)
    if recogniser is None:
        raise DataError(f"filter-data needs the antelopev2 ArcFace model: {why}")
    config = FilterConfig(args.threshold, args.max_angle, args.min_views, args.mad_k)
    with tqdm(total=total, desc="filter-data", unit="subject") as bar:
        report = filter_dataset(
            args.data, recogniser, config, args.output, args.write_arcface, step=lambda _: bar.update()
        )
    for e in report["subjects"]:
        if not e["keep"]:
            print(f"dropped {e['subject']}: {e['reason']}")
    print(f"kept {report['kept']} of {report['kept'] + report['dropped']} subjects; list: {args.output / 'kept.txt'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (for `accelerate launch -m smr_core.train_cli ...`), same errors as spin-to-mesh."""
    from smr_core.errors import SMRError
    from spin_io.errors import ContractError, exit_code_of

    parser = argparse.ArgumentParser(prog="smr_core.train_cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SMRError, ContractError) as exc:  # ContractError: the device and output checks
        print(f"{args.command}: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
