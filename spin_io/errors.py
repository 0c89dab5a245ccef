"""Errors shared by the stages, and the exit codes the command line documents for them.

Every user-facing error class carries an `exit_code`; `spin-to-mesh` prints the error in one line
and exits with that code (README: "Exit codes"). Codes are stable: scripts and render-farm
wrappers branch on them.
"""

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error: a bug, with a traceback worth reporting
EXIT_USAGE = 2  # bad input or options (argparse uses 2 as well)
EXIT_WEIGHTS = 3  # model weights missing, unverifiable or unfetchable
EXIT_OUTPUT = 4  # the output folder cannot be written
EXIT_DEVICE = 5  # the requested device (e.g. --device cuda) is not available
EXIT_PARTIAL = 6  # a batch finished, but some of its photos failed
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2, as shells do)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_CRASH: "unexpected error (a bug: please report it with the traceback)",
    EXIT_USAGE: "bad input or options (the message says which)",
    EXIT_WEIGHTS: "model weights missing or unverifiable (`spin-to-mesh weights fetch`, or the demo)",
    EXIT_OUTPUT: "the output folder cannot be written",
    EXIT_DEVICE: "the requested device is not available (e.g. --device cuda without CUDA)",
    EXIT_PARTIAL: "a batch finished but some photos failed (the summary names them)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); finished stages are kept",
}


class ContractError(ValueError):
    """A contract folder is missing a file or holds data that breaks the contract.

    The message names the file and says what is wrong, so a user can fix or regenerate it.
    """

    exit_code = EXIT_USAGE


class OutputNotWritableError(ContractError):
    """The output folder cannot be created or written: found before any heavy work starts."""

    exit_code = EXIT_OUTPUT


class DeviceUnavailableError(ContractError):
    """The requested compute device does not exist on this machine."""

    exit_code = EXIT_DEVICE


def exit_code_of(exc: BaseException) -> int:
    """The documented exit code of a user error (EXIT_USAGE when its class names none)."""
    return int(getattr(exc, "exit_code", EXIT_USAGE))
