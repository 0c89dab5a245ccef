"""Training errors: part of smr_core's one hierarchy (SMRError), so the CLI prints them as user errors."""

from smr_core.errors import SMRError


class TrainingError(SMRError):
    """A training run cannot start or continue; the message says what to change."""


class DataError(TrainingError):
    """The training data folder does not follow the dataset format (docs/TRAINING.md)."""
