"""Accuracy metrics against ground truth, in millimetres (issue 5, item 7).

Surfaces are compared through area-uniform point samples (distances to the tangent plane of the
nearest sample of a 4x denser sampling of the other surface): Chamfer-L1 (mean of the two mean
nearest-neighbour distances), Chamfer-L2 (same with squared distances, mm^2), normal consistency
(mean |<n_a, n_b>| of nearest neighbours, both directions), F-score at distance thresholds
(harmonic mean of precision = recon points within tau of GT, recall = GT points within tau of
recon). Regions (face, back, crown, neck) are assigned on the GT and carried to recon points
through their nearest GT point. Both surfaces are compared above the neck plane only.
"""

from __future__ import annotations

import numpy as np

REGIONS = ("face", "back", "crown", "neck")


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples (count, 3) with their face normals."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    fidx = rng.choice(len(faces), size=count, p=area / area.sum())
    r1 = np.sqrt(rng.random(count))
    r2 = rng.random(count)
    t = tri[fidx]
    pts = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    normals = cross[fidx] / np.maximum(area[fidx], 1e-20)[:, None]
    return pts, normals


def region_labels(points: np.ndarray, y_min: float, y_max: float) -> np.ndarray:
    """Region index per point (REGIONS order) from height and depth in head axes (+Y up, face +Z).

    crown: top 20 % of the height; neck: bottom 20 %; between them, face where z > 0, back otherwise.
    """
    h = y_max - y_min
    y = points[:, 1]
    labels = np.where(points[:, 2] > 0, 0, 1)
    labels = np.where(y > y_max - 0.2 * h, 2, labels)
    labels = np.where(y < y_min + 0.2 * h, 3, labels)
    return labels


def _fscore(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def surface_metrics(
    rec_vertices: np.ndarray,
    rec_faces: np.ndarray,
    gt_vertices: np.ndarray,
    gt_faces: np.ndarray,
    mm_per_unit: float,
    y_cut: float,
    count: int = 100_000,
    thresholds_mm: tuple[float, ...] = (2.5, 5.0, 10.0),
    seed: int = 0,
) -> dict:
    """Chamfer, normal consistency and F-scores (overall and per region) above the plane y = y_cut."""
    from scipy.spatial import cKDTree

    margin = 0.5 / mm_per_unit * 2  # ignore 1 mm above the cut: the cap is not part of the GT surface
    gp, gn = sample_surface(gt_vertices, gt_faces, count, seed)
    rp, rn = sample_surface(rec_vertices, rec_faces, count, seed + 1)
    keep_g = gp[:, 1] > y_cut + margin
    keep_r = rp[:, 1] > y_cut + margin
    gp, gn, rp, rn = gp[keep_g], gn[keep_g], rp[keep_r], rn[keep_r]
    if len(gp) == 0 or len(rp) == 0:
        raise ValueError("no surface above the neck plane to compare")
    # distances go to a 4x denser sample of the other surface, measured to the tangent plane of
    # the nearest sample: point-to-surface up to curvature, free of the sampling floor of point-to-point
    gd, gdn = sample_surface(gt_vertices, gt_faces, 4 * count, seed + 2)
    rd, rdn = sample_surface(rec_vertices, rec_faces, 4 * count, seed + 3)
    _, j_rg = cKDTree(gd).query(rp)
    _, j_gr = cKDTree(rd).query(gp)
    d_rg = np.abs(((rp - gd[j_rg]) * gdn[j_rg]).sum(1)) * mm_per_unit  # accuracy: recon -> GT
    d_gr = np.abs(((gp - rd[j_gr]) * rdn[j_gr]).sum(1)) * mm_per_unit  # completeness: GT -> recon
    _, i_rg = cKDTree(gp).query(rp)
    _, i_gr = cKDTree(rp).query(gp)
    nc_rg = np.abs((rn * gn[i_rg]).sum(1))
    nc_gr = np.abs((gn * rn[i_gr]).sum(1))
    labels_g = region_labels(gp, y_cut, gp[:, 1].max())
    labels_r = labels_g[i_rg]

    def block(mr: np.ndarray, mg: np.ndarray) -> dict:
        if not mr.any() or not mg.any():
            return {}
        out = {
            "chamfer_l1_mm": float(0.5 * (d_rg[mr].mean() + d_gr[mg].mean())),
            "chamfer_l2_mm2": float(0.5 * ((d_rg[mr] ** 2).mean() + (d_gr[mg] ** 2).mean())),
            "accuracy_mm": float(d_rg[mr].mean()),
            "completeness_mm": float(d_gr[mg].mean()),
            "normal_consistency": float(0.5 * (nc_rg[mr].mean() + nc_gr[mg].mean())),
        }
        for t in thresholds_mm:
            out[f"fscore@{t:g}mm"] = _fscore(float((d_rg[mr] < t).mean()), float((d_gr[mg] < t).mean()))
        return out

    result = block(np.ones(len(rp), bool), np.ones(len(gp), bool))
    result["regions"] = {name: block(labels_r == k, labels_g == k) for k, name in enumerate(REGIONS)}
    result["signed_offset_mm"] = float(_signed_offset(rp, gp, gn, i_rg) * mm_per_unit)
    return result


def _signed_offset(rp: np.ndarray, gp: np.ndarray, gn: np.ndarray, idx: np.ndarray) -> float:
    """Mean signed distance of recon samples along the GT normal: > 0 means the recon is inflated."""
    return float(((rp - gp[idx]) * gn[idx]).sum(1).mean())


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two images in [0, 1] (optionally over a mask)."""
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = diff[mask].mean() if mask is not None else diff.mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))
