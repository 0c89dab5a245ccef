"""The exception hierarchy of `smr_core`: every error a user can act on derives from SMRError.

Each class carries the documented exit code (`spin_io.errors.EXIT_CODES`) that `spin-to-mesh`
exits with, so scripts can tell a missing model from a bad photo without parsing the message.
"""

from spin_io.errors import EXIT_USAGE, EXIT_WEIGHTS


class SMRError(RuntimeError):
    """Base class of smr_core errors; the message says what to do next."""

    exit_code = EXIT_USAGE


class WeightsNotFoundError(SMRError):
    """Required weight files are missing; the message lists each one and where to get it."""

    exit_code = EXIT_WEIGHTS


class CheckpointError(SMRError):
    """A checkpoint does not match the model (missing/unexpected keys, wrong shapes, bad file).

    EXIT_USAGE for now: `weights convert` also raises it for "destination exists" (smr_core/checkpoint.py),
    which is not a weights problem.
    """

    exit_code = EXIT_USAGE


class InputError(SMRError):
    """An input (image, embedding, camera list, parameter) is invalid."""

    exit_code = EXIT_USAGE
