"""Identity report: ArcFace cosine similarity of every generated view to the input's identity.

The release logs 1 - cos(ArcFace(view), id_emb) per output view (SPINMEROUND.md §2.3); the paper reports
identity similarity at 45 degrees of yaw (0.72 with its filtered training data, §6). We measure the same
with the antelopev2 recogniser (re-detect the face on the view, largest face, L2-normalised embedding)
when its ONNX files are present; otherwise the report says so instead of inventing a number. The recogniser
comes from the align stage (align.recogniser), passed in by the caller: smr_core does not import align.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from smr_core.cameras import ViewCamera

REPORT_VERSION = 1
PAPER_YAW_DEG = 45.0
_ANGLE_TOL = 1.0


class Recogniser(Protocol):
    """What the report needs: an L2-normalised embedding of the largest face in a view, or None if none is found."""

    def embed(self, rgb: np.ndarray) -> np.ndarray | None: ...


# The recogniser itself belongs to the align stage (align.recogniser.load_recogniser); callers pass it in.
RecogniserLoader = Callable[[Any], tuple[Recogniser | None, str]]
NO_RECOGNISER = "no face recogniser was given (flows passes align's antelopev2 ArcFace when its weights are present)"


def _at_yaw(cameras: Sequence[ViewCamera], yaw_deg: float) -> list[int]:
    """Generated eye-level views at +-yaw_deg."""
    return [
        i
        for i, c in enumerate(cameras)
        if not c.is_input
        and abs(c.elevation_deg) < _ANGLE_TOL
        and min(abs((c.azimuth_deg - s * yaw_deg + 180.0) % 360.0 - 180.0) for s in (1, -1)) < _ANGLE_TOL
    ]


def identity_report(
    images: Sequence[np.ndarray],
    cameras: Sequence[ViewCamera],
    reference: np.ndarray,
    recogniser: Recogniser | None,
    unavailable_reason: str = "",
    *,
    reference_note: str = "",
    step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """report.json content: per-view cosine (None where no face is found again), and a summary.

    summary.mean / min cover generated views with a face; summary.at_45_deg_yaw is the mean over the
    eye-level views at +-45 degrees (the paper's metric). The input's own entry is a sanity check
    (its re-detected embedding against the reference) and is excluded from the summary.
    """
    views: list[dict[str, Any]] = [
        {
            "frame": i,
            "azimuth_deg": float(c.azimuth_deg),
            "elevation_deg": float(c.elevation_deg),
            "is_input": bool(c.is_input),
            "cosine": None,
        }
        for i, c in enumerate(cameras)
    ]
    summary: dict[str, Any] = {"mean": None, "min": None, "at_45_deg_yaw": None, "faces_found": 0,
                               "views_measured": 0}
    report: dict[str, Any] = {
        "schema_version": REPORT_VERSION,
        "metric": "cosine similarity of ArcFace embeddings (re-detected largest face on each view) to the input's "
        "L2-normalised ArcFace embedding; 1 = same identity",
        "available": recogniser is not None,
        "reference": reference_note,
        "views": views,
        "summary": summary,
    }
    if recogniser is None:
        report["reason"] = "identity similarity NOT measured: " + (unavailable_reason or "no ArcFace model")
        return report
    ref = np.asarray(reference, np.float64).reshape(-1)
    ref = ref / np.linalg.norm(ref)
    for entry, image in zip(views, images, strict=True):
        emb = recogniser.embed(np.asarray(image))
        if emb is not None:
            e = np.asarray(emb, np.float64).reshape(-1)
            entry["cosine"] = float(np.dot(e / np.linalg.norm(e), ref))
        if step is not None:
            step()
    generated = [v for v in views if not v["is_input"]]
    scores = [v["cosine"] for v in generated if v["cosine"] is not None]
    summary["views_measured"] = len(generated)
    summary["faces_found"] = len(scores)
    if scores:
        summary["mean"] = float(np.mean(scores))
        summary["min"] = float(np.min(scores))
    at_45 = [views[i]["cosine"] for i in _at_yaw(cameras, PAPER_YAW_DEG) if views[i]["cosine"] is not None]
    if at_45:
        summary["at_45_deg_yaw"] = float(np.mean(at_45))
    return report
