"""The exception hierarchy of `smr_core`: every error a user can act on derives from SMRError."""


class SMRError(RuntimeError):
    """Base class of smr_core errors; the message says what to do next."""


class WeightsNotFoundError(SMRError):
    """Required weight files are missing; the message lists each one and where to get it."""


class CheckpointError(SMRError):
    """A checkpoint does not match the model (missing/unexpected keys, wrong shapes, bad file)."""


class InputError(SMRError):
    """An input (image, embedding, camera list, parameter) is invalid."""
