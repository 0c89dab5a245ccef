"""Data filtering by identity consistency: drop subjects whose views do not look like their frontal view.

The paper's filtering lifted ArcFace similarity at 45 degrees from 0.651 to 0.72 (SPINMEROUND.md §6);
its criterion is not published (§9.3). Ours: embed each view with ArcFace (antelopev2, as the pipeline's
identity report), score a subject by the mean cosine similarity to its frontal view over the views
within `max_angle_deg` of it (faces further round are not reliably detected), and drop

* subjects whose frontal view has no detectable face,
* subjects with fewer than `min_views` scored views (faces not found where they should be),
* subjects whose score is below `threshold`,
* optionally (`mad_k`), subjects whose score is an outlier of the dataset: below median - mad_k * MAD.

Every decision is written to a report with its reason; the kept names go to a subjects file that a
training config reads (data.subjects_file).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from smr_core.cameras import ViewCamera, angular_distance_deg
from smr_core.train.data import ARCFACE_FILE, find_views_dir, list_subject_dirs, read_transforms
from smr_core.train.errors import DataError
from spin_io.atomic import atomic_write_bytes, atomic_write_json

REPORT_VERSION = 1


class Recogniser(Protocol):
    """An L2-normalised ArcFace embedding of the largest face in an RGB uint8 image, or None if none is found."""

    def embed(self, rgb: np.ndarray) -> np.ndarray | None: ...


@dataclass(frozen=True)
class FilterConfig:
    threshold: float = 0.5
    max_angle_deg: float = 60.0
    min_views: int = 2
    mad_k: float | None = None


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path}: missing image; regenerate the subject's ViewSet")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def score_subject(subject_dir: Path, recogniser: Recogniser, config: FilterConfig) -> dict[str, Any]:
    """Per-view similarities to the frontal view and the subject's score (None when no frontal face)."""
    views_dir = find_views_dir(subject_dir)
    if views_dir is None:
        raise DataError(f"{subject_dir}: no views/transforms.json")
    frames = read_transforms(views_dir)
    cameras = [f.camera() for f in frames]
    front = next((i for i, f in enumerate(frames) if f.is_input), None)
    if front is None:
        front = int(np.argmin([angular_distance_deg(c, ViewCamera(0.0, 0.0)) for c in cameras]))
    front_emb = recogniser.embed(_read_rgb(frames[front].rgb))
    entry: dict[str, Any] = {"subject": subject_dir.name, "frontal_view": front, "views": []}
    if front_emb is None:
        entry.update(score=None, scored_views=0, frontal_embedding=None)
        return entry
    entry["frontal_embedding"] = np.asarray(front_emb, np.float32)
    sims = []
    for i, (frame, cam) in enumerate(zip(frames, cameras, strict=True)):
        if i == front:
            continue
        angle = angular_distance_deg(cam, cameras[front])
        view: dict[str, Any] = {"view": i, "angle_deg": round(angle, 2), "similarity": None}
        if angle <= config.max_angle_deg:
            emb = recogniser.embed(_read_rgb(frame.rgb))
            if emb is not None:
                view["similarity"] = float(np.dot(emb, front_emb))
                sims.append(view["similarity"])
            else:
                view["note"] = "no face found"
        else:
            view["note"] = f"beyond max_angle_deg {config.max_angle_deg:g}: not scored"
        entry["views"].append(view)
    entry["scored_views"] = len(sims)
    entry["score"] = float(np.mean(sims)) if sims else None
    return entry


def decide(entries: list[dict[str, Any]], config: FilterConfig) -> None:
    """Set entry["keep"] and entry["reason"] for every subject (in place)."""
    scores = np.array([e["score"] for e in entries if e.get("score") is not None], np.float64)
    outlier_floor = -math.inf
    if config.mad_k is not None and len(scores) >= 3:
        median = float(np.median(scores))
        mad = float(np.median(np.abs(scores - median)))
        outlier_floor = median - config.mad_k * 1.4826 * mad
    for e in entries:
        if e.get("frontal_embedding") is None:
            e["keep"], e["reason"] = False, "no face found in the frontal view"
        elif e["scored_views"] < config.min_views:
            e["keep"], e["reason"] = False, (
                f"only {e['scored_views']} view(s) within {config.max_angle_deg:g} deg have a face (min_views "
                f"{config.min_views})"
            )
        elif e["score"] < config.threshold:
            e["keep"], e["reason"] = False, f"mean similarity {e['score']:.3f} < threshold {config.threshold:g}"
        elif e["score"] < outlier_floor:
            e["keep"], e["reason"] = False, (
                f"mean similarity {e['score']:.3f} is an outlier "
                f"(< median - {config.mad_k:g} MAD = {outlier_floor:.3f})"
            )
        else:
            e["keep"], e["reason"] = True, f"mean similarity {e['score']:.3f} over {e['scored_views']} view(s)"


def filter_dataset(
    root: Path,
    recogniser: Recogniser,
    config: FilterConfig,
    out_dir: Path,
    write_arcface: bool = False,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score every subject of `root`, decide, write out_dir/filter_report.json and out_dir/kept.txt.

    write_arcface: store the frontal embedding as SUBJECT/arcface.npy where it is missing (kept subjects only).
    Returns the report (also written). Nothing is written until every subject has been scored.
    """
    entries = []
    for d in list_subject_dirs(Path(root)):
        entries.append(score_subject(d, recogniser, config))
        if step is not None:
            step(d.name)
    decide(entries, config)
    kept = [e["subject"] for e in entries if e["keep"]]
    if write_arcface:
        for e in entries:
            target = Path(root) / e["subject"] / ARCFACE_FILE
            if e["keep"] and not target.is_file():
                import io

                buffer = io.BytesIO()
                np.save(buffer, e["frontal_embedding"].astype(np.float32))
                atomic_write_bytes(target, buffer.getvalue())
    for e in entries:
        e.pop("frontal_embedding", None)
    report = {
        "report_version": REPORT_VERSION,
        "root": str(root),
        "config": {"threshold": config.threshold, "max_angle_deg": config.max_angle_deg,
                   "min_views": config.min_views, "mad_k": config.mad_k},
        "kept": len(kept),
        "dropped": len(entries) - len(kept),
        "subjects": entries,
    }
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "filter_report.json", report)
    atomic_write_bytes(out_dir / "kept.txt", "".join(name + "\n" for name in kept).encode("utf-8"))
    return report
