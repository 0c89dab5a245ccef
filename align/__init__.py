"""Face alignment: one photo -> the AlignedFace contract (512 px white-background crop + identity).

Entry point: `align_photo(path_or_array, out_dir=None, *, backend="auto"|"antelopev2"|"offline",
weights_dir=None, face_index=None)`; for many photos, `Aligner(backend, weights_dir, config).align(photo)`
loads the networks once. Heavy dependencies (cv2, dlib, onnxruntime, torch) are
imported by the modules that need them.
"""

from align.errors import ExtremePoseError, FaceTooSmallError, ImageReadError, NoFaceError
from align.pipeline import AlignConfig, Aligner, align_photo, make_backend

__all__ = [
    "AlignConfig",
    "Aligner",
    "ExtremePoseError",
    "FaceTooSmallError",
    "ImageReadError",
    "NoFaceError",
    "align_photo",
    "make_backend",
]
