"""The face recogniser other stages measure identity with: antelopev2's detector + ArcFace, from the weights folder.

The views stage reports how well each generated view keeps the input's identity, and `filter-data` drops
training subjects whose views do not; both run this stage's recogniser. They get it from here through their
caller (flows), so smr_core never imports align (docs/DESIGN.md §1).
"""

from __future__ import annotations

import os
from typing import Any


def load_recogniser(weights_dir: str | os.PathLike[str] | None) -> tuple[Any | None, str]:
    """The antelopev2 detector + ArcFace from the weights folder (or $SMR_WEIGHTS), or (None, why not).

    The recogniser has `embed(rgb) -> L2-normalised (512,) embedding of the largest face, or None`.
    """
    from model_fetch.layout import find_align_weights, resolve_weights_dir

    root = resolve_weights_dir(weights_dir)
    if root is None:
        return None, "no weights folder given (--weights DIR or SMR_WEIGHTS), so no antelopev2 ArcFace model"
    found = find_align_weights(root)
    if found.detector is None or found.recognition is None:
        missing = [line for line in found.missing() if "79999_iter" not in line]
        return None, "the antelopev2 ArcFace model is missing: " + "; ".join(missing)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime), so antelopev2 cannot run"
    try:
        from align.antelope import AntelopeBackend

        return AntelopeBackend(found.detector, found.recognition), ""
    except Exception as exc:  # a corrupt or foreign ONNX file: report it, the views are still useful
        return None, f"the antelopev2 models in {root} could not be loaded ({type(exc).__name__}: {exc})"
