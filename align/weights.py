"""Alignment weights: the complete set a backend needs, or one error that lists whatever is missing.

Layout (the release's `weights/` folder, SPINMEROUND.md §2.1)::

    WEIGHTS/
      models/antelopev2/scrfd_10g_bnkps.onnx   face detector + 5 keypoints (insightface antelopev2)
      models/antelopev2/glintr100.onnx         ArcFace (or Arc2Face's arcface.onnx in its place)
      79999_iter.pth                           BiSeNet face parsing (zllrunning/face-parsing.PyTorch)

The lookup itself (file names, where to get them, `find_align_weights`) is `model_fetch.layout`, shared
with smr_core; this module adds the refusals (AlignWeightsNotFoundError) and the 3DDFA refinement files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from align.errors import AlignWeightsNotFoundError
from model_fetch.layout import FETCH_HINT, AlignWeights, find_align_weights, resolve_weights_dir


def require_align_weights(weights_dir: str | os.PathLike[str] | None) -> AlignWeights:
    """The complete set for backend='antelopev2', or AlignWeightsNotFoundError listing every missing file."""
    root = resolve_weights_dir(weights_dir)
    if root is None:
        raise AlignWeightsNotFoundError(
            "backend 'antelopev2' needs the authors' alignment weights: pass --weights DIR (or set SMR_WEIGHTS) "
            "pointing at a folder laid out like SpinMeRound's weights/, or use backend 'offline'.\n  "
            + "\n  ".join(find_align_weights(Path("WEIGHTS")).missing())
        )
    found = find_align_weights(root)
    if not found.complete:
        raise AlignWeightsNotFoundError(
            f"alignment weights incomplete in {root}; missing:\n  "
            + "\n  ".join(found.missing())
            + "\nor use backend 'offline' (no downloads, no ArcFace embedding)"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise AlignWeightsNotFoundError(
            "backend 'antelopev2' runs its ONNX models with onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu, never both)"
        ) from exc
    return found


# --------------------------------------------------------------------------------------------
# The release's crop refinement (FaceBoxes + 3DDFA_V2), optional: without it the landmark fit is used.
#
#     WEIGHTS/3ddfa/mb1_120x120.pth                     TDDFA MobileNet-v1 (3DDFA_V2 weights/)
#     WEIGHTS/3ddfa/param_mean_std_62d_120x120.pkl      parameter mean/std (3DDFA_V2 configs/)
#     WEIGHTS/3ddfa/bfm_noneck_v3.pkl                   BFM mean shape (3DDFA_V2 configs/)
#     WEIGHTS/3ddfa/FaceBoxesProd.pth                   FaceBoxes detector (3DDFA_V2 FaceBoxes/weights/)

TDDFA_DIR = "3ddfa"
TDDFA_FILES = {
    "checkpoint": "mb1_120x120.pth",
    "param_stats": "param_mean_std_62d_120x120.pkl",
    "bfm": "bfm_noneck_v3.pkl",
    "faceboxes": "FaceBoxesProd.pth",
}
TDDFA_WHERE_TO_GET = {
    "checkpoint": f"cleardusk/3DDFA_V2's weights/ (the same file as SpinMeRound's); {FETCH_HINT}",
    "param_stats": f"cleardusk/3DDFA_V2's configs/ (git-ignored in SpinMeRound); {FETCH_HINT}",
    "bfm": f"cleardusk/3DDFA_V2's configs/ (academic use only; git-ignored in SpinMeRound); {FETCH_HINT}",
    "faceboxes": f"cleardusk/3DDFA_V2's FaceBoxes/weights/ (the same file as SpinMeRound's); {FETCH_HINT}",
}


@dataclass(frozen=True)
class TddfaWeights:
    """Resolved paths of the FaceBoxes + 3DDFA_V2 refinement files (None where absent)."""

    root: Path
    checkpoint: Path | None
    param_stats: Path | None
    bfm: Path | None
    faceboxes: Path | None

    @property
    def complete(self) -> bool:
        return None not in (self.checkpoint, self.param_stats, self.bfm, self.faceboxes)

    def missing(self) -> list[str]:
        """One line per missing file: the path expected and where to get it."""
        folder = self.root / TDDFA_DIR
        return [
            f"{folder / name}: {TDDFA_WHERE_TO_GET[key]}"
            for key, name in TDDFA_FILES.items()
            if getattr(self, key) is None
        ]


def find_tddfa_weights(root: Path) -> TddfaWeights:
    """Look up each refinement file under `root`/3ddfa without raising."""
    folder = root / TDDFA_DIR
    found = {key: (folder / name if (folder / name).is_file() else None) for key, name in TDDFA_FILES.items()}
    return TddfaWeights(root=root, **found)


def require_tddfa_weights(weights_dir: str | os.PathLike[str] | None) -> TddfaWeights:
    """The complete refinement set, or AlignWeightsNotFoundError naming every missing file."""
    root = resolve_weights_dir(weights_dir)
    if root is None:
        raise AlignWeightsNotFoundError(
            "refinement '3ddfa' needs FaceBoxes + 3DDFA_V2 files: pass --weights DIR (or set SMR_WEIGHTS) with:\n  "
            + "\n  ".join(find_tddfa_weights(Path("WEIGHTS")).missing())
            + "\nor use refinement 'landmark'"
        )
    found = find_tddfa_weights(root)
    if not found.complete:
        raise AlignWeightsNotFoundError(
            f"3DDFA refinement files incomplete in {root}; missing:\n  "
            + "\n  ".join(found.missing())
            + "\nor use refinement 'landmark' (the landmark pose fit, no extra files)"
        )
    return found
