"""Where the authors' alignment components live, and one error that lists whatever is missing.

Layout (the release's `weights/` folder, SPINMEROUND.md §2.1)::

    WEIGHTS/
      models/antelopev2/scrfd_10g_bnkps.onnx   face detector + 5 keypoints (insightface antelopev2)
      models/antelopev2/glintr100.onnx         ArcFace (or Arc2Face's arcface.onnx in its place)
      79999_iter.pth                           BiSeNet face parsing (zllrunning/face-parsing.PyTorch)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from align.errors import AlignWeightsNotFoundError

DETECTOR_FILES = ("scrfd_10g_bnkps.onnx",)
RECOGNITION_FILES = ("arcface.onnx", "glintr100.onnx")  # Arc2Face's README swaps glintr100 for arcface.onnx
PARSER_FILE = "79999_iter.pth"

FETCH_HINT = "`spin-to-mesh weights fetch` downloads and verifies them (smr_core.fetch)"

WHERE_TO_GET = {
    "antelopev2": "scrfd_10g_bnkps.onnx of insightface's antelopev2 pack (non-commercial; "
    f"{FETCH_HINT}, or unzip it from insightface's v0.7 GitHub release) in WEIGHTS/models/antelopev2/",
    "arcface": "Arc2Face's arcface.onnx (huggingface FoivosPar/Arc2Face; or antelopev2's glintr100.onnx) in "
    f"WEIGHTS/models/antelopev2/; {FETCH_HINT}",
    "parser": "79999_iter.pth of zllrunning/face-parsing.PyTorch (Google Drive link in its README) in WEIGHTS/; "
    f"{FETCH_HINT}",
}


@dataclass(frozen=True)
class AlignWeights:
    """Resolved paths of the production alignment components (None where absent)."""

    root: Path
    detector: Path | None
    recognition: Path | None
    parser: Path | None

    @property
    def complete(self) -> bool:
        return self.detector is not None and self.recognition is not None and self.parser is not None

    def missing(self) -> list[str]:
        """One line per missing component: the path expected and where to get it."""
        pack = self.root / "models" / "antelopev2"
        lines = []
        if self.detector is None:
            lines.append(f"{pack / DETECTOR_FILES[0]}: {WHERE_TO_GET['antelopev2']}")
        if self.recognition is None:
            lines.append(f"{pack / RECOGNITION_FILES[1]} (or {RECOGNITION_FILES[0]}): {WHERE_TO_GET['arcface']}")
        if self.parser is None:
            lines.append(f"{self.root / PARSER_FILE}: {WHERE_TO_GET['parser']}")
        return lines


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None) -> Path | None:
    """The explicit folder, else $SMR_WEIGHTS, else None."""
    if weights_dir is not None:
        return Path(weights_dir)
    env = os.environ.get("SMR_WEIGHTS")
    return Path(env) if env else None


def find_align_weights(root: Path) -> AlignWeights:
    """Look up each component under `root` without raising."""
    pack = root / "models" / "antelopev2"

    def first(names: tuple[str, ...], folder: Path) -> Path | None:
        return next((folder / n for n in names if (folder / n).is_file()), None)

    return AlignWeights(
        root=root,
        detector=first(DETECTOR_FILES, pack),
        recognition=first(RECOGNITION_FILES, pack),
        parser=first((PARSER_FILE,), root),
    )


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
