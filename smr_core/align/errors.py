"""Why a photo could not be aligned: one InputError subclass per reason, each naming its threshold.

All exit with EXIT_USAGE (inherited from InputError): the photo is the user's to change.
"""

from smr_core.errors import InputError


class ImageReadError(InputError):
    """The file is missing, not an image, truncated, or too large to decode."""


class NoFaceError(InputError):
    """No face passed the detector's score and size thresholds (or face_index is out of range)."""


class FaceTooSmallError(InputError):
    """The face is too small in the source image to give a sharp 512 px crop."""


class ExtremePoseError(InputError):
    """The head pose or framing is outside what the crop (and the model) were built for."""


class FaceCutError(ExtremePoseError):
    """Too much of the face's crop lies outside the photo (a head cut by the frame)."""


class SeveralFacesError(NoFaceError):
    """Several faces of similar size and no face index chosen: which one is the user's call."""
