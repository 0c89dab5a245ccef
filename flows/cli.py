"""The `spin-to-mesh` command line.

Each stage package contributes its own sub-commands through a `register(subparsers)` function in
its `cli` module; this module only assembles them, runs the chosen one, and turns the packages'
exceptions into one clear line on stderr and the error's documented exit code
(`spin_io.errors.EXIT_CODES`; 1 is left for unexpected crashes, 130 for Ctrl-C).
Heavy imports (torch, diffusers, prefect) happen inside the handlers, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flows.errors import user_error_types
from spin_io.errors import EXIT_INTERRUPTED, exit_code_of

# Modules that provide `register(subparsers)`; order = order in --help.
_COMMAND_MODULES = (
    "smr_core.align.cli",
    "smr_core.views_cli",
    "smr_core.cli",
    "recon.cli",
    "smr_core.train_cli",
    "exporters.cli",
    "flows.run_cli",
    "flows.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from every stage package that is importable."""
    parser = argparse.ArgumentParser(
        prog="spin-to-mesh",
        description="One face photo in, a game-ready textured 3D head (GLB) out.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that stage is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except user_error_types() as exc:
        print(f"spin-to-mesh {args.command}: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        print(f"spin-to-mesh {args.command}: interrupted; finished outputs are intact", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
