"""The `spin-to-mesh` command line.

Each stage package contributes its own sub-commands through a `register(subparsers)` function in
its `cli` module; this module only assembles them, runs the chosen one, and turns the packages'
exceptions into one clear line on stderr and the error's documented exit code
(`spin_io.errors.EXIT_CODES`; 1 is left for unexpected crashes, 130 for Ctrl-C).
Heavy imports (torch, diffusers, prefect) happen inside the handlers, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from flows.errors import user_error_types
from spin_io.errors import EXIT_CODES, EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_USAGE, EXIT_WEIGHTS, exit_code_of

# Modules that provide `register(subparsers)`; order = order in --help.
_COMMAND_MODULES = (
    "align.cli",
    "flows.views_cli",
    "smr_core.cli",
    "recon.cli",
    "smr_core.train_cli",
    "flows.filter_cli",
    "exporters.cli",
    "flows.run_cli",
    "flows.doctor",
)
# Command modules outside a stage package, and the stage packages they need (skipped when one is absent).
_STAGES_NEEDED = {"flows.views_cli": ("align", "smr_core"), "flows.filter_cli": ("align", "smr_core")}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is ONE line that says where the help is (exit 2, as argparse).

    Sub-command parsers inherit the class (argparse creates them with the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        """Print `PROG: error: MESSAGE (see PROG --help)` and exit with EXIT_USAGE."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def exit_codes_epilog() -> str:
    """The documented exit codes, for `spin-to-mesh --help` (same table as the README)."""
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes:\n{rows}"


def build_parser() -> argparse.ArgumentParser:
    """Assemble the parser from every stage package that is importable."""
    parser = OneLineParser(
        prog="spin-to-mesh",
        description="One face photo in, a game-ready textured 3D head (GLB) out.",
        epilog=exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name.startswith(exc.name) or exc.name in _STAGES_NEEDED.get(module_name, ())):
                continue  # that stage is not part of this build
            raise
        module.register(sub)
    return parser


_OUTPUT_ARGS = ("output", "out", "output_dir")
_WEIGHTS_ARGS = ("weights",)
_USER_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EROFS)
_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _path_args(args: argparse.Namespace) -> Iterator[tuple[str, Path]]:
    """(argument name, absolute path) of every string or path the user gave."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, str | os.PathLike) and name not in ("command", "func") and str(item):
                yield name, Path(os.path.abspath(Path(item).expanduser()))


def user_os_error(exc: OSError, args: argparse.Namespace) -> tuple[str, int] | None:
    """(one-line message, exit code) when `exc` is about a path the user gave; None for anything else.

    A permission, missing-file or full-disk error on the user's own input or output is theirs to fix;
    the same error on a file inside the package is a bug, and keeps its traceback.
    """
    named = isinstance(exc.filename, str | bytes | os.PathLike)
    if exc.errno in _FULL_ERRNOS:  # never a bug, and write() errors carry no file name
        where = f" writing {os.fsdecode(exc.filename)}" if named else ""
        reason = (exc.strerror or "").lower()
        return f"the disk is full{where} ({reason}): free space or choose another -o/--output", EXIT_OUTPUT
    if exc.errno not in _USER_ERRNOS or not named:
        return None
    target = Path(os.path.abspath(os.fsdecode(exc.filename)))
    matches = [(len(given.parts), n) for n, given in _path_args(args) if target == given or given in target.parents]
    if not matches:
        return None
    name = max(matches)[1]  # the most specific: an input inside `-o .` is still an input
    reason = (exc.strerror or type(exc).__name__).lower()
    if name in _OUTPUT_ARGS:
        return f"cannot write {target} ({reason}): choose another -o/--output or fix its permissions", EXIT_OUTPUT
    code = EXIT_WEIGHTS if name in _WEIGHTS_ARGS else EXIT_USAGE
    hint = "check the path" if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR) else "check its permissions"
    return f"cannot read {target} ({reason}): {hint}", code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except user_error_types() as exc:
        print(f"spin-to-mesh {args.command}: error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except OSError as exc:
        found = user_os_error(exc, args)
        if found is None:
            raise  # not about the user's paths: a bug, whose traceback is worth reporting
        print(f"spin-to-mesh {args.command}: error: {found[0]}", file=sys.stderr)
        return found[1]
    except KeyboardInterrupt:
        print(f"spin-to-mesh {args.command}: interrupted; finished outputs are intact", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
