"""A head's self-check: how well the mesh explains each view, and which views disagree with the rest.

A pipeline TD filters thousands of heads on a few numbers, so `metrics.json` carries, next to the
per-view reprojection errors, a verdict computed from them:

* silhouette agreement per view: how far the mesh's silhouette lies from the view's mask border,
  in pixels (pixels in one but not the other, over the border's length; IoU is reported too,
  but it depends on the resolution and the head's size in the frame);
* normal agreement per view: mean angle between the mesh's normals and the view's normals;
* a view disagrees with the rest when either number is an outlier among the views (beyond
  median + `k` x 1.4826 MAD, and past an absolute floor so a uniformly excellent set flags nothing),
  or when it misses an absolute bar outright, or when its whole normal map is turned against the
  shape by more than recon.normal_align corrects (a wrong camera or normal frame, not a tilt), or
  its camera sits further from its declared pose than recon.camera_align corrects, or its mask's border
  further from the others' than it moves.
  Generated views that contradict the others are what the reconstruction had to outvote: they say
  where to look first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class SelfCheckConfig:
    """Outlier rule and absolute bars for the per-view agreement."""

    k: float = 3.0
    max_silhouette_offset_px: float = 2.0  # above this a view disagrees whatever the others do
    max_normal_error_deg: float = 15.0  # above this likewise
    offset_floor_px: float = 0.5  # an outlier must also be this far above the median offset
    normal_floor_deg: float = 3.0  # ... or this far above the median normal error


def _robust_high(values: np.ndarray, k: float, floor: float) -> np.ndarray:
    """Which values lie above median + max(k * 1.4826 MAD, floor)."""
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    return values > med + max(k * mad, floor)


def self_check(views: list[dict], cfg: SelfCheckConfig | None = None) -> dict:
    """Summary of per-view agreement (see module docstring) from `per_view_metrics` rows."""
    cfg = cfg or SelfCheckConfig()
    iou = np.array([v["silhouette_iou"] for v in views], np.float64)
    offset = np.array([v["silhouette_offset_px"] for v in views], np.float64)
    nerr = np.array([np.nan if v["normal_error_deg"] is None else v["normal_error_deg"] for v in views])
    nerr_f = np.where(np.isfinite(nerr), nerr, 180.0)
    bad_sil = _robust_high(offset, cfg.k, cfg.offset_floor_px) | (offset > cfg.max_silhouette_offset_px)
    bad_normal = _robust_high(nerr_f, cfg.k, cfg.normal_floor_deg) | (nerr_f > cfg.max_normal_error_deg)
    disagree = []
    for i, v in enumerate(views):
        reasons = []
        if bad_sil[i]:
            reasons.append(f"silhouette off by {offset[i]:.2f} px (median {np.median(offset):.2f} px)")
        if bad_normal[i]:
            reasons.append(f"normal error {nerr_f[i]:.1f} deg (median {np.median(nerr_f):.1f})")
        if v.get("normal_rotation_applied") is False and v.get("normal_rotation_deg"):
            reasons.append(f"normal map turned {v['normal_rotation_deg']:.1f} deg against the shape (not corrected)")
        if v.get("camera_rotation_refused"):
            reasons.append(f"camera {v['camera_rotation_deg']:.1f} deg from its declared pose (not corrected)")
        if v.get("mask_shift_refused"):
            reasons.append(f"mask border {v['mask_shift_px']:+.1f} px from the other views' (not corrected)")
        if reasons:
            disagree.append({"view": int(v["view"]), "azimuth_deg": v["azimuth_deg"],
                             "elevation_deg": v["elevation_deg"], "why": "; ".join(reasons)})
    return {
        "ok": not disagree,
        "silhouette_offset_px": {
            "max": float(offset.max()), "median": float(np.median(offset)), "mean": float(offset.mean())
        },
        "silhouette_iou": {"min": float(iou.min()), "median": float(np.median(iou)), "mean": float(iou.mean())},
        "normal_error_deg": {
            "max": float(nerr_f.max()), "median": float(np.median(nerr_f)), "mean": float(nerr_f.mean())
        },
        "disagreeing_views": [d["view"] for d in disagree],
        "disagreements": disagree,
        "rule": asdict(cfg),
    }
