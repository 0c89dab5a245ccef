"""Face alignment: one photo -> the AlignedFace contract (512 px white-background crop + identity).

Entry point: `align_photo(path_or_array, out_dir=None, *, backend="auto"|"antelopev2"|"offline",
weights_dir=None, face_index=None)`. Heavy dependencies (cv2, dlib, onnxruntime, torch) are
imported by the modules that need them.
"""

from smr_core.align.errors import ExtremePoseError, FaceTooSmallError, ImageReadError, NoFaceError
from smr_core.align.pipeline import AlignConfig, align_photo, make_backend

__all__ = [
    "AlignConfig",
    "ExtremePoseError",
    "FaceTooSmallError",
    "ImageReadError",
    "NoFaceError",
    "align_photo",
    "make_backend",
]
