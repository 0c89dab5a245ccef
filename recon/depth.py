"""Per-view depth from normals: perspective normal integration anchored where the hull is tight.

A view's normals fix its depth map up to one scale per connected surface patch. With pixel
(u, v), camera-frame normal n = (n_x, n_y, n_z) (OpenGL axes, +Z toward the camera) and the ray
q = ((u - c_x) / f_x, -(v - c_y) / f_y, -1), a surface point is P = d q, and n is orthogonal to
dP/du and dP/dv. For z = log d that gives (Queau et al., "Normal integration: a survey", 2018):

    s     = <n, q>                                   (< 0 on surfaces facing the camera)
    dz/du = -n_x / (f_x s)
    dz/dv =  n_y / (f_y s)

The depth map minimises, over the pixels of the mask,

    E(z) = sum_(p,p') w_pp' (z_p' - z_p - g_pp')^2           (g: the mean of both pixels' gradients)
         + sum_p a_p (z_p - log d_anchor,p)^2                 (anchors: d_hull where the visual hull is tight;
                                                                elsewhere, weakly, an earlier fused shape where it
                                                                is tangent; where other views placed the pixel
                                                                (recon.sweep), their depth)
         + sum_p b_p (z_p - log d_entry,p + tol)^2            (only where the surface would leave the hull)

solved by iteratively reweighted least squares:

* w_pp' = cos^2 of both pixels' viewing angles, times exp(-(r / pair_scale)^2) of the pair's
  residual r, so grazing pixels and depth discontinuities (an ear in front of the skull, the
  nostril wings over the lip, the chin over the neck) stop tying the two sides together;
* a_p is on where the hull's own normal agrees with the observed one within a few degrees (the
  object touches its hull there, as on every silhouette rim). Only after the discontinuities are
  cut do anchors get a Cauchy weight of their residual, so an anchor that happens to lie on a
  bridged concavity (an eye socket, the gap behind an ear) is outvoted by the integrated shape
  around it, while a patch cut off by a discontinuity (the nose seen from the front) keeps the
  anchors that place it;
* where an earlier fused shape is given (recon.volume's second integration), hull anchors more than a
  tolerance from it are dropped (a lid whose normal happens to agree with the skin under it: eight such
  pixels held a 800-pixel patch under a hair edge 13 mm in front, bench/RECON_EVAL.md session 22), and
  where no hull anchor remains, a_p is on, at a tenth of the weight and at that shape's depth, where its
  normal agrees with the observed one: a patch gets its offset from the views' first agreement, while its
  shape stays the normals';
* b_p switches on for pixels whose depth came out more than a tolerance in front of the hull's
  entry depth: the object lies inside its hull (the tolerance absorbs the voxelised hull's dents).

A pixel's confidence is its cos times the share of its pair weight that survived the cuts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DepthConfig:
    """Normal-integration settings; residual scales are in log-depth (1e-3 ~ 1 mm at 2.7 units)."""

    iterations: int = 6
    robust_anchor_iterations: int = 2  # the last iterations that may down-weight anchors
    anchor_weight: float = 1.0
    anchor_angle_deg: float = 5.0
    anchor_scale: float = 1.5e-3
    pair_scale: float = 1.5e-3
    inside_weight: float = 10.0
    inside_tolerance: float = 1e-3  # the hull is a voxelised mesh: its dents must not push the map back
    min_cos: float = 0.05
    regulariser: float = 1e-8


@dataclass
class ViewDepth:
    """One view's integrated depth (inf outside the mask) and a per-pixel confidence in [0, 1]."""

    depth: np.ndarray  # (H, W) float64, distance along the view axis
    confidence: np.ndarray  # (H, W) float32
    moved: int = 0  # pixels whose depth the other views' normals moved back (recon.sweep)


def camera_rays(height: int, width: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(H, W, 3) rays q with q_z = -1 in OpenGL camera axes through every pixel centre."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], axis=-1)


def log_depth_gradients(
    normal_cam: np.ndarray, rays: np.ndarray, fx: float, fy: float, min_cos: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel (dz/du, dz/dv) of z = log depth, and cos of the viewing angle (0 where unusable)."""
    s = (normal_cam * rays).sum(-1)
    q_len = np.linalg.norm(rays, axis=-1)
    n_len = np.linalg.norm(normal_cam, axis=-1)
    cos = np.where(n_len > 0.5, -s / np.maximum(q_len * n_len, 1e-12), 0.0)
    usable = cos > min_cos
    s_safe = np.where(usable, s, -1.0)
    dz_du = np.where(usable, -normal_cam[..., 0] / (fx * s_safe), 0.0)
    dz_dv = np.where(usable, normal_cam[..., 1] / (fy * s_safe), 0.0)
    return dz_du, dz_dv, np.clip(cos, 0.0, 1.0)


def _difference_operator(pix: np.ndarray, index: np.ndarray, gu: np.ndarray, gv: np.ndarray, c2: np.ndarray):
    """Sparse D (pairs x pixels) over right/down neighbours inside `pix`, their targets g and weights."""
    from scipy import sparse

    H, W = pix.shape
    ia, ib, g, w = [], [], [], []
    for di, dj, grad in ((0, 1, gu), (1, 0, gv)):
        both = pix[: H - di, : W - dj] & pix[di:, dj:]
        ia.append(index[: H - di, : W - dj][both])
        ib.append(index[di:, dj:][both])
        g.append(0.5 * (grad[: H - di, : W - dj][both] + grad[di:, dj:][both]))
        w.append(np.minimum(c2[: H - di, : W - dj][both], c2[di:, dj:][both]))
    ia, ib = np.concatenate(ia), np.concatenate(ib)
    m = len(ia)
    rows = np.arange(m)
    D = sparse.csr_matrix(
        (np.concatenate([-np.ones(m), np.ones(m)]), (np.concatenate([rows, rows]), np.concatenate([ia, ib]))),
        shape=(m, int(pix.sum())),
    )
    return D, np.concatenate(g), np.concatenate(w)


def _tangent(n_obs: np.ndarray, n_surface: np.ndarray, max_deg: float) -> np.ndarray:
    """Where a surface's normal agrees with the observed one within `max_deg` (the object may touch it there)."""
    lengths = np.linalg.norm(n_obs, axis=-1) * np.linalg.norm(n_surface, axis=-1)
    return (n_obs * n_surface).sum(-1) / np.maximum(lengths, 1e-12) > np.cos(np.radians(max_deg))


def integrate_normals(
    normal_cam: np.ndarray,
    mask: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    hull_depth: np.ndarray,
    hull_normal_cam: np.ndarray,
    cfg: DepthConfig | None = None,
    anchor_depth: np.ndarray | None = None,
    anchor_weight: float = 1.0,
    surface_depth: np.ndarray | None = None,
    surface_normal_cam: np.ndarray | None = None,
    surface_weight: float = 0.1,
    surface_tolerance: float | None = None,
) -> ViewDepth:
    """Depth map of one view from its camera-frame normals, anchored to the hull (module docstring).

    `hull_depth` is the depth at which each ray enters the visual hull (inf where it misses it);
    `hull_normal_cam` the hull's outward normal there, in the same camera axes as `normal_cam`.
    `surface_depth` and `surface_normal_cam` (inf / 0 where the ray misses it), when given, are a surface closer
    to the head than the hull (the views' fused shape): hull anchors farther than `surface_tolerance` (log depth)
    from it are dropped, and pixels without a hull anchor are anchored where its normal agrees with the observed
    one, at its depth, with `surface_weight` x cos; the hull still bounds the map (the inside term).
    `anchor_depth` (finite where known, else nan) adds anchors that replace those at their pixels:
    depths other views place (recon.sweep), weighted `anchor_weight` x cos and robust like the hull's.
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    cfg = cfg or DepthConfig()
    H, W = mask.shape
    fx, fy, cx, cy = intrinsics
    gu, gv, cos = log_depth_gradients(normal_cam, camera_rays(H, W, fx, fy, cx, cy), fx, fy, cfg.min_cos)
    pix = mask & np.isfinite(hull_depth)
    n = int(pix.sum())
    depth = np.full((H, W), np.inf)
    confidence = np.zeros((H, W), np.float32)
    if n == 0:
        return ViewDepth(depth, confidence)
    index = np.full((H, W), -1, np.int64)
    index[pix] = np.arange(n)
    D, g, w_pair0 = _difference_operator(pix, index, gu, gv, cos**2)

    z_hull = np.log(hull_depth[pix])
    z_anchor = z_hull.copy()
    n_obs = normal_cam[pix]
    a0 = np.where(_tangent(n_obs, hull_normal_cam[pix], cfg.anchor_angle_deg), cfg.anchor_weight, 0.0) * cos[pix]
    if surface_depth is not None and surface_normal_cam is not None:  # where the hull is tangent, the hull's
        d_surface = surface_depth[pix]
        seen = np.isfinite(d_surface) & (d_surface > 0)
        if surface_tolerance is not None:  # unless the surface lies clearly behind it there: a lid over a concavity
            lid = np.zeros(n, bool)
            lid[seen] = np.abs(np.log(d_surface[seen] / hull_depth[pix][seen])) > surface_tolerance
            a0[lid] = 0.0
        on_surface = seen & (a0 == 0)
        take = on_surface & _tangent(n_obs, surface_normal_cam[pix], cfg.anchor_angle_deg)
        z_anchor[take] = np.log(d_surface[take])
        a0[take] = surface_weight * cos[pix][take]
    if anchor_depth is not None:
        known = np.isfinite(anchor_depth[pix]) & (anchor_depth[pix] > 0)
        z_anchor[known] = np.log(anchor_depth[pix][known])
        a0[known] = anchor_weight * cos[pix][known]
    a, w_pair, b = a0.copy(), w_pair0.copy(), np.zeros(n)
    for it in range(cfg.iterations):
        diag = a + b + cfg.regulariser
        lhs = (D.T @ sparse.diags(w_pair) @ D + sparse.diags(diag)).tocsc()
        rhs = D.T @ (w_pair * g) + a * z_anchor + cfg.regulariser * z_hull + b * (z_hull - cfg.inside_tolerance)
        z = spsolve(lhs, rhs, permc_spec="MMD_AT_PLUS_A")  # lhs is symmetric: a symmetric ordering, half the fill
        w_pair = w_pair0 * np.exp(-(((D @ z - g) / cfg.pair_scale) ** 2))
        if it >= cfg.iterations - 1 - cfg.robust_anchor_iterations:
            a = a0 / (1.0 + ((z - z_anchor) / cfg.anchor_scale) ** 2)
        b = np.where(z < z_hull - cfg.inside_tolerance, cfg.inside_weight, 0.0)
    depth[pix] = np.exp(z)
    reach = abs(D.T)
    confidence[pix] = cos[pix] * (reach @ w_pair) / np.maximum(reach @ w_pair0, 1e-12)
    return ViewDepth(depth, confidence)
