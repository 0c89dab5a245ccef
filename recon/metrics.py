"""Accuracy metrics against ground truth, in millimetres (issue 5, item 7; issue 12).

`evaluate_surface` (the honest one, used by bench/recon_eval.py): the WHOLE ground-truth head down to
where the views show it is compared, never cropped at recon's own neck plane.

* GT samples (area-uniform) count when they project inside the image, in front of the camera, of at
  least one view, minus the GT's own flat bottom cap (where a synthetic body ends), and (crop "shown",
  the default) when they lie no lower than the lowest GT point some view actually shows (facing it,
  not occluded) on their side of the head: the head is cut into 16 sectors of azimuth around its
  vertical axis, and each sector ends where the views stop showing it. Above that line every GT
  point counts, seen or not (the gap behind an ear, the floor of a nostril): only the neck's end is
  decided by visibility. Crop "framed" (stricter, reported beside it) drops the visibility test: the
  back of a long neck that only a view looking past the front of the neck frames counts too.
* Recon samples count except recon's flat neck cap (faces within 10 deg of -Y within 2 mm of recon's
  lowest point) and anything below the same line: a neck cut too high loses completeness, surface
  below what the views show is not penalised.
* Distances are exact point-to-triangle distances to the other mesh (recon minus its cap for
  completeness, the whole GT for accuracy). Chamfer-L1 = (mean accuracy + mean completeness) / 2;
  F@tau = harmonic mean of precision (recon samples within tau of GT) and recall (visible GT samples
  within tau of recon); normal consistency = mean of |<n, n_closest face>| over both sample sets, averaged;
  signed offset = mean over recon samples of the distance to GT signed by the GT face normal (> 0: inflated).
* Every metric also per region (REGIONS) from the GT head's labeller; recon samples take the label of
  their nearest GT sample.

`surface_metrics` (the earlier one, kept for its callers): both surfaces above the plane y = y_cut,
distances to the tangent plane of the nearest sample of a 4x denser sampling of the other surface,
regions face/back/crown/neck by height and depth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

REGIONS = ("face", "ears", "back", "crown", "neck")  # evaluate_surface; same order as recon.synth.heads.REGIONS
NECK_PLANE_REGIONS = ("face", "back", "crown", "neck")  # surface_metrics / region_labels


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples (count, 3) with their face normals."""
    pts, normals, _ = _sample_faces(vertices, faces, count, seed)
    return pts, normals


def region_labels(points: np.ndarray, y_min: float, y_max: float) -> np.ndarray:
    """Region index per point (NECK_PLANE_REGIONS order) from height and depth in head axes (+Y up, face +Z).

    crown: top 20 % of the height; neck: bottom 20 %; between them, face where z > 0, back otherwise.
    """
    h = y_max - y_min
    y = points[:, 1]
    labels = np.where(points[:, 2] > 0, 0, 1)
    labels = np.where(y > y_max - 0.2 * h, 2, labels)
    labels = np.where(y < y_min + 0.2 * h, 3, labels)
    return labels


def _scores(
    d_rg: np.ndarray, d_gr: np.ndarray, nc_rg: np.ndarray, nc_gr: np.ndarray, thresholds_mm: tuple[float, ...]
) -> dict:
    """Chamfer, accuracy, completeness, normal consistency and precision/recall/F per threshold from
    recon->GT distances d_rg and GT->recon distances d_gr (mm) and the matching |<n, n'>| values."""
    out = {
        "chamfer_l1_mm": float(0.5 * (d_rg.mean() + d_gr.mean())),
        "chamfer_l2_mm2": float(0.5 * ((d_rg**2).mean() + (d_gr**2).mean())),
        "accuracy_mm": float(d_rg.mean()),
        "completeness_mm": float(d_gr.mean()),
        "normal_consistency": float(0.5 * (nc_rg.mean() + nc_gr.mean())),
    }
    for t in thresholds_mm:
        prec, rec = float((d_rg < t).mean()), float((d_gr < t).mean())
        out[f"precision@{t:g}mm"] = prec
        out[f"recall@{t:g}mm"] = rec
        out[f"fscore@{t:g}mm"] = _fscore(prec, rec)
    return out


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
        out = _scores(d_rg[mr], d_gr[mg], nc_rg[mr], nc_gr[mg], thresholds_mm)
        return {k: v for k, v in out.items() if not k.startswith(("precision@", "recall@"))}

    result = block(np.ones(len(rp), bool), np.ones(len(gp), bool))
    result["regions"] = {name: block(labels_r == k, labels_g == k) for k, name in enumerate(NECK_PLANE_REGIONS)}
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


@dataclass(frozen=True)
class CameraView:
    """A pinhole view as the ViewSet contract defines it: OpenGL camera-to-world, pixel intrinsics."""

    c2w: np.ndarray  # (4, 4)
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


def camera_views(frames: Sequence) -> list[CameraView]:
    """CameraViews from ViewFrames (or anything with c2w, fl_x, fl_y, cx, cy, width, height), or CameraViews."""
    out = []
    for f in getattr(frames, "frames", frames):
        if isinstance(f, CameraView):
            out.append(f)
        else:
            out.append(CameraView(np.asarray(f.c2w, np.float64), float(f.fl_x), float(f.fl_y), float(f.cx),
                                  float(f.cy), int(f.width), int(f.height)))
    return out


def visible_mask(points: np.ndarray, views: Sequence, normals: np.ndarray | None = None, cell_px: float = 3.0,
                 tolerance_mm: float = 3.0, mm_per_unit: float = 400.0) -> np.ndarray:
    """True where a point lies in front of, and projects inside the image of, at least one view.

    Without normals (the metric's definition): no occlusion test; "visible" means the views frame it, which
    is what decides how far down the neck a reconstruction can be asked to go. With the points' outward
    normals (a diagnostic, "seen"): the point must also face the camera and lie within tolerance_mm (plus
    what its slope spans over one cell) of the nearest of `points` in its cell of cell_px x cell_px pixels;
    `points` must then be a dense sample of the whole closed surface.
    """
    pts = np.asarray(points, np.float64)
    seen = np.zeros(len(pts), bool)
    for v in camera_views(views):
        R, t = v.c2w[:3, :3], v.c2w[:3, 3]
        pc = (pts - t) @ R  # camera axes: +X right, +Y up, looking along -Z
        depth = -pc[:, 2]
        front = depth > 1e-9
        z = np.where(front, depth, 1.0)
        u = v.cx + v.fx * pc[:, 0] / z
        w = v.cy - v.fy * pc[:, 1] / z
        framed = front & (u >= 0) & (u <= v.width) & (w >= 0) & (w <= v.height)
        if normals is not None:
            ray = t - pts
            dist = np.linalg.norm(ray, axis=1)
            cos = np.einsum("ij,ij->i", np.asarray(normals, np.float64), ray) / np.maximum(dist, 1e-12)
            framed &= cos > 0.05
            nx = int(np.ceil(v.width / cell_px)) + 1
            cell = np.floor(w / cell_px).astype(np.int64) * nx + np.floor(u / cell_px).astype(np.int64)
            cell = np.where(framed, cell, -1)
            nearest = np.full(nx * (int(np.ceil(v.height / cell_px)) + 1), np.inf)
            np.minimum.at(nearest, cell[framed], depth[framed])
            cell_size = cell_px * z / v.fx  # the cell's width at the point's depth
            slope = np.sqrt(np.maximum(1.0 - cos**2, 0.0)) / np.maximum(cos, 0.05)
            framed &= depth <= nearest[np.maximum(cell, 0)] + tolerance_mm / mm_per_unit + cell_size * slope
        seen |= framed
    return seen


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p, all (N, 3) (Voronoi-region case analysis)."""
    ab, ac, ap = b - a, c - a, p - a

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", x, y)

    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = p - b
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = p - c
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    safe = np.where(np.abs(denom) > 1e-30, denom, 1.0)
    v_in = vb / safe
    w_in = vc / safe
    out = a + v_in[:, None] * ab + w_in[:, None] * ac  # interior by default
    # edges (checked after the interior so that vertex cases below take precedence)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    on_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    out = np.where(on_bc[:, None], b + np.nan_to_num(t_bc)[:, None] * (c - b), out)
    on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out = np.where(on_ac[:, None], a + np.nan_to_num(t_ac)[:, None] * ac, out)
    on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out = np.where(on_ab[:, None], a + np.nan_to_num(t_ab)[:, None] * ab, out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    return np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)


def _split_long(vertices: np.ndarray, faces: np.ndarray, max_edge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle soup with every edge <= max_edge (1 -> 4 splits), plus each piece's source face."""
    tri = vertices[faces]
    src = np.arange(len(faces))
    done_t, done_s = [], []
    for _ in range(12):
        e = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(1)
        big = e > max_edge
        done_t.append(tri[~big])
        done_s.append(src[~big])
        if not big.any():
            break
        t, s = tri[big], src[big]
        m01, m12, m20 = (t[:, 0] + t[:, 1]) / 2, (t[:, 1] + t[:, 2]) / 2, (t[:, 2] + t[:, 0]) / 2
        tri = np.concatenate([np.stack(x, 1) for x in ((t[:, 0], m01, m20), (m01, t[:, 1], m12),
                                                       (m20, m12, t[:, 2]), (m01, m12, m20))])
        src = np.tile(s, 4)
    else:
        done_t.append(tri)
        done_s.append(src)
    return np.concatenate(done_t), np.concatenate(done_s), tri


class MeshDistance:
    """Exact point-to-triangle distances to one mesh (candidates: the k triangles with nearest centroids).

    Long triangles are split for the candidate search only (so big flat faces are found), so results are
    exact for points within a few edge lengths of the surface, and an upper bound beyond.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, max_edge: float, k: int = 12) -> None:
        from scipy.spatial import cKDTree

        v = np.asarray(vertices, np.float64)
        f = np.asarray(faces, np.int64)
        self.tri, self.src, _ = _split_long(v, f, max_edge)
        n = np.cross(self.tri[:, 1] - self.tri[:, 0], self.tri[:, 2] - self.tri[:, 0])
        self.normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        self.tree = cKDTree(self.tri.mean(1))
        self.k = min(k, len(self.tri))

    def query(self, points: np.ndarray, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distance, closest point, index of the closest piece's normal in self.normals) per point."""
        pts = np.asarray(points, np.float64)
        dist = np.empty(len(pts))
        closest = np.empty_like(pts)
        piece = np.empty(len(pts), np.int64)
        for s in range(0, len(pts), chunk):
            p = pts[s : s + chunk]
            _, cand = self.tree.query(p, k=self.k)
            cand = cand.reshape(len(p), -1)
            pr = np.repeat(p, cand.shape[1], axis=0)
            t = self.tri[cand.ravel()]
            c = _closest_on_triangles(pr, t[:, 0], t[:, 1], t[:, 2])
            d = np.linalg.norm(pr - c, axis=1).reshape(len(p), -1)
            j = d.argmin(1)
            rows = np.arange(len(p))
            dist[s : s + chunk] = d[rows, j]
            closest[s : s + chunk] = c.reshape(len(p), -1, 3)[rows, j]
            piece[s : s + chunk] = cand[rows, j]
        return dist, closest, piece


def flat_cap_faces(vertices: np.ndarray, faces: np.ndarray, band: float, angle_deg: float = 10.0) -> np.ndarray:
    """Faces of a flat bottom cap: normal within angle_deg of -Y and centroid within `band` of the lowest point."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    down = -n[:, 1] >= np.cos(np.radians(angle_deg))
    return down & (tri[:, :, 1].mean(1) < vertices[:, 1].min() + band)


def _sample_faces(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, ...]:
    """Area-uniform samples with their face normals and face indices."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    fidx = rng.choice(len(faces), size=count, p=area / area.sum())
    r1 = np.sqrt(rng.random(count))
    r2 = rng.random(count)
    t = tri[fidx]
    pts = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    return pts, cross[fidx] / np.maximum(area[fidx], 1e-30)[:, None], fidx


def _sector_floor(points: np.ndarray, shown: np.ndarray, sectors: int) -> Callable[[np.ndarray], np.ndarray]:
    """Per azimuth sector around the vertical axis through the shown points: the lowest shown height."""
    shown_pts = points[shown]
    if len(shown_pts) == 0:
        return lambda p: np.full(len(p), np.inf)
    cx, cz = np.median(shown_pts[:, 0]), np.median(shown_pts[:, 2])

    def sector(p: np.ndarray) -> np.ndarray:
        a = np.arctan2(p[:, 0] - cx, p[:, 2] - cz)
        return np.minimum(((a + np.pi) / (2 * np.pi) * sectors).astype(np.int64), sectors - 1)

    lowest = np.full(sectors, np.inf)
    np.minimum.at(lowest, sector(shown_pts), shown_pts[:, 1])
    lowest[~np.isfinite(lowest)] = shown_pts[:, 1].min()
    return lambda p: lowest[sector(p)]


def evaluate_surface(
    rec_vertices: np.ndarray,
    rec_faces: np.ndarray,
    gt_vertices: np.ndarray,
    gt_faces: np.ndarray,
    views: Sequence,
    mm_per_unit: float,
    labeller: Callable[[np.ndarray], np.ndarray] | None = None,
    count: int = 100_000,
    thresholds_mm: tuple[float, ...] = (2.5, 5.0, 10.0),
    seed: int = 0,
    cap_angle_deg: float = 10.0,
    cap_band_mm: float = 2.0,
    drop_gt_cap: bool = True,
    report_seen: bool = True,
    crop: str = "shown",
    sectors: int = 16,
) -> dict:
    """Chamfer-L1/L2, accuracy, completeness, normal consistency, F-scores, signed offset: overall and per
    region, over the GT the views show (see the module docstring). `views`: a ViewSet, ViewFrames or
    CameraViews; `labeller`: points (ViewSet units) -> REGIONS index (None: recon.synth's geometric fallback).
    Lengths in the meshes' units; results in mm.
    """
    from scipy.spatial import cKDTree

    rv, rf = np.asarray(rec_vertices, np.float64), np.asarray(rec_faces, np.int64)
    gv, gf = np.asarray(gt_vertices, np.float64), np.asarray(gt_faces, np.int64)
    if labeller is None:
        from recon.synth.heads import geometric_regions

        def labeller(p: np.ndarray) -> np.ndarray:
            return geometric_regions(p, gv)

    band = cap_band_mm / mm_per_unit
    max_edge = 3.0 / mm_per_unit
    # GT: visible samples, minus its own flat bottom cap
    gp, gn, gfi = _sample_faces(gv, gf, count, seed)
    gt_cap = flat_cap_faces(gv, gf, band, cap_angle_deg) if drop_gt_cap else np.zeros(len(gf), bool)
    if crop not in ("shown", "framed"):
        raise ValueError(f"crop must be 'shown' or 'framed', got {crop!r}")
    vis = visible_mask(gp, views)
    seen = visible_mask(gp, views, normals=gn, mm_per_unit=mm_per_unit) if (report_seen or crop == "shown") else None
    if crop == "shown":
        floor = _sector_floor(gp, seen & vis, sectors)
    else:
        y_framed = float(gp[vis, 1].min()) if vis.any() else np.inf

        def floor(p: np.ndarray) -> np.ndarray:
            return np.full(len(p), y_framed)

    vis = vis & (gp[:, 1] >= floor(gp))
    keep_g = vis & ~gt_cap[gfi]
    if not keep_g.any():
        raise ValueError("no ground-truth surface is inside any view")
    y_vis = float(gp[vis, 1].min())
    labels_all = np.asarray(labeller(gp), np.int64)
    # recon: drop its flat neck cap and what lies below where the views stop showing the GT
    rec_cap = flat_cap_faces(rv, rf, band, cap_angle_deg)
    rp, rn, rfi = _sample_faces(rv, rf, count, seed + 1)
    below = rp[:, 1] < floor(rp)
    keep_r = ~rec_cap[rfi] & ~below
    if not keep_r.any():
        raise ValueError("no reconstructed surface above the lowest visible ground truth")
    gp_k, gn_k, lab_g = gp[keep_g], gn[keep_g], labels_all[keep_g]
    rp_k, rn_k = rp[keep_r], rn[keep_r]
    # accuracy: recon -> the whole GT; completeness: visible GT -> recon without its cap
    to_gt = MeshDistance(gv, gf, max_edge)
    d_rg, c_rg, j_rg = to_gt.query(rp_k)
    rec_body = rf[~rec_cap] if (~rec_cap).any() else rf
    to_rec = MeshDistance(rv, rec_body, max_edge)
    d_gr, _, j_gr = to_rec.query(gp_k)
    signed = np.sign(((rp_k - c_rg) * to_gt.normals[j_rg]).sum(1)) * d_rg * mm_per_unit
    d_rg = d_rg * mm_per_unit
    d_gr = d_gr * mm_per_unit
    nc_rg = np.abs((rn_k * to_gt.normals[j_rg]).sum(1))
    nc_gr = np.abs((gn_k * to_rec.normals[j_gr]).sum(1))
    _, nearest = cKDTree(gp).query(rp_k)
    lab_r = labels_all[nearest]

    def block(mr: np.ndarray, mg: np.ndarray) -> dict:
        if not mr.any() or not mg.any():
            return {"gt_samples": int(mg.sum()), "rec_samples": int(mr.sum())}
        return {
            **_scores(d_rg[mr], d_gr[mg], nc_rg[mr], nc_gr[mg], thresholds_mm),
            "signed_offset_mm": float(signed[mr].mean()),
            "gt_samples": int(mg.sum()),
            "rec_samples": int(mr.sum()),
        }

    result = block(np.ones(len(rp_k), bool), np.ones(len(gp_k), bool))
    result["regions"] = {name: block(lab_r == k, lab_g == k) for k, name in enumerate(REGIONS)}
    result["visible_y_min"] = y_vis
    result["crop"] = crop
    if seen is not None:  # diagnostic: the same scores over the GT some camera actually sees (occlusion-tested)
        ms = seen[keep_g]
        if ms.any():
            y_seen = float(gp[seen, 1].min())
            result["seen"] = {"y_min": y_seen, "gt_fraction": float(seen.mean()), **block(rp_k[:, 1] >= y_seen, ms)}
    result["gt_visible_fraction"] = float(vis.mean())
    result["gt_cap_dropped"] = int((vis & gt_cap[gfi]).sum())
    result["rec_cap_dropped"] = int(rec_cap[rfi].sum())
    result["rec_below_dropped"] = int((below & ~rec_cap[rfi]).sum())
    return result


def signed_offset_mm(
    rec_vertices: np.ndarray, rec_faces: np.ndarray, gt_vertices: np.ndarray, gt_faces: np.ndarray,
    mm_per_unit: float, count: int = 50_000, seed: int = 0,
) -> float:
    """Mean signed distance (mm) of recon surface samples from the GT surface (> 0: the recon is inflated)."""
    rp, _, _ = _sample_faces(np.asarray(rec_vertices, np.float64), np.asarray(rec_faces, np.int64), count, seed)
    to_gt = MeshDistance(gt_vertices, gt_faces, 3.0 / mm_per_unit)
    d, c, j = to_gt.query(rp)
    return float((np.sign(((rp - c) * to_gt.normals[j]).sum(1)) * d).mean() * mm_per_unit)
