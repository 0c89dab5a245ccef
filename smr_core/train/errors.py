"""Training errors: part of smr_core's one hierarchy (SMRError), so the CLI prints them as user errors."""

from smr_core.errors import SMRError
from spin_io.errors import EXIT_USAGE


class TrainingError(SMRError):
    """A training run cannot start or continue; the message says what to change."""

    exit_code = EXIT_USAGE  # a config or data folder to fix (SMRError's default, stated where it is read)


class DataError(TrainingError):
    """The training data folder does not follow the dataset format (docs/TRAINING.md)."""
