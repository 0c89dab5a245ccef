"""The exception hierarchy of `align`: every error a user can act on derives from AlignError.

Each class carries the documented exit code (`spin_io.errors.EXIT_CODES`) that `spin-to-mesh` exits
with: EXIT_USAGE for a photo (or option) the user must change, EXIT_WEIGHTS for missing alignment
models. The photo refusals (one class per reason, each message naming its threshold) derive from
AlignInputError.
"""

from spin_io.errors import EXIT_USAGE, EXIT_WEIGHTS


class AlignError(RuntimeError):
    """Base class of align errors; the message says what to do next."""

    exit_code = EXIT_USAGE


class AlignInputError(AlignError):
    """An input (photo, backend name, option) is invalid: the user's to change."""

    exit_code = EXIT_USAGE


class AlignWeightsNotFoundError(AlignError):
    """Alignment model files are missing or unfetchable; the message lists each one and where to get it."""

    exit_code = EXIT_WEIGHTS


class AlignCheckpointError(AlignError):
    """An alignment network's weight file does not match the network (wrong keys or shapes, unreadable)."""

    exit_code = EXIT_USAGE


class ImageReadError(AlignInputError):
    """The file is missing, not an image, truncated, or too large to decode."""


class NoFaceError(AlignInputError):
    """No face passed the detector's score and size thresholds (or face_index is out of range)."""


class FaceTooSmallError(AlignInputError):
    """The face is too small in the source image to give a sharp 512 px crop."""


class ExtremePoseError(AlignInputError):
    """The head pose or framing is outside what the crop (and the model) were built for."""


class FaceCutError(ExtremePoseError):
    """Too much of the face's crop lies outside the photo (a head cut by the frame)."""


class SeveralFacesError(NoFaceError):
    """Several faces of similar size and no face index chosen: which one is the user's call."""
