"""`spin-to-mesh train CONFIG` (`filter-data`, which runs align's face recogniser, is flows/filter_cli.py).

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
    """Add the `train` sub-command."""
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
