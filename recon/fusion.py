"""Explicit normal fusion: move mesh vertices so face normals match robust multi-view targets.

Each outer round rasterises the current mesh into every view and fuses, per face, the normals of
the pixels it covers:

    w_ij   = cos^2(theta_ij) * interior_ij                  (grazing pixels and mask borders count less)
    t_f    = normalise(sum_ij w_ij n_ij)                     (weighted mean over pixels j of views i)
    r_ij   = 1 - <n_ij, t_f>                                  residual of each sample
    drop the samples with the largest residuals (a quantile), refuse again -> t_f

Inner steps then minimise

    E = sum_f W_f |n_f(x) - t_f|^2 / sum_f W_f
      + lambda_sil * mean( relu(sdf_i(pi_i(x_v)))^2 )          (stay inside every silhouette)
      + lambda_rim * mean( sdf_i(pi_i(x_v))^2 over rim vertices ) (silhouette rims touch the mask border)
      + lambda_lap * mean |L x|^2 / h^2

with a gradient smoothed along the mesh (a few diffusion steps, in the spirit of Nicolet et al.
2021 "Large Steps in Inverse Rendering") so updates stay low-frequency and the mesh does not
tangle. The neck cap keeps its plane: its faces target -Y and its vertices keep y = y_cut; the collar of faces
that touch it targets its own normal turned level (`square_rim`), so the wall meets the cap square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.mesh_ops import face_normals, laplacian_matrix, transposed, unique_edges
from recon.raster import Rasterizer, TorchRasterizer, rasterize_views, sample_images


@dataclass
class FusionConfig:
    rounds: int = 8
    cg_iterations: int = 80
    drop_fraction: float = 0.2  # share of normal samples with the largest residuals to drop
    cos_power: float = 2.0
    mu: float = 0.01  # damping towards the current mesh (per round); 0.05 left 8 rounds short of converging
    lambda_sil: float = 1e-3  # per squared pixel of silhouette distance
    lambda_lap: float = 0.02
    max_face_weight: float = 4.0
    max_step: float = 1.0  # in mean edge lengths per round
    border_px: float = 2.0  # mask-interior feather for normal samples
    square_rim: bool = True  # faces that touch the neck cap target their own normal turned level: the wall meets the
    # cap square instead of along the one-voxel bevel that marching cubes leaves there


def signed_distance_px(masks: np.ndarray) -> np.ndarray:
    """(V, H, W) masks -> signed pixel distance to the border, positive outside."""
    from scipy import ndimage

    out = np.zeros(masks.shape, np.float32)
    for i, m in enumerate(masks):
        outside = ndimage.distance_transform_edt(~m)
        inside = ndimage.distance_transform_edt(m)
        out[i] = np.where(m, -(inside - 0.5), outside - 0.5)
    return out


def _sample(img: torch.Tensor, uv: torch.Tensor, W: int, H: int) -> torch.Tensor:
    """Bilinear sample (V, H, W) maps at (V, N, 2) pixel coordinates -> (V, N); border-clamped."""
    return sample_images(img[:, None], uv, W, H)[:, 0]


def fuse_targets(
    frags, cameras: Cameras, normals: torch.Tensor, weights_px: torch.Tensor, fn: torch.Tensor, cfg: FusionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust per-face target normals (F, 3) and weights (F,) from rasterised views."""
    F = fn.shape[0]
    dev = fn.device
    fids, ns, ws = [], [], []
    centers = cameras.centers
    _, dirs = _pixel_dirs(cameras)
    for v, fr in enumerate(frags):
        hit = fr.covered & (weights_px[v] > 0)
        f = fr.face_id[hit]
        n = normals[v][hit]
        to_cam = -dirs[v][hit]
        cos = (fn[f] * to_cam).sum(-1).clamp(min=0)
        w = cos**cfg.cos_power * weights_px[v][hit]
        fids.append(f)
        ns.append(n)
        ws.append(w)
    del centers
    f = torch.cat(fids)
    n = torch.cat(ns)
    w = torch.cat(ws)
    target = torch.zeros(F, 3, device=dev).index_add_(0, f, n * w[:, None])
    target = target / target.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    if cfg.drop_fraction > 0 and f.numel() > 10:
        r = 1 - (n * target[f]).sum(-1)
        thresh = torch.quantile(r[w > 0][:: max(1, r.numel() // 200_000)], 1 - cfg.drop_fraction)
        w = torch.where(r > thresh, torch.zeros_like(w), w)
        target = torch.zeros(F, 3, device=dev).index_add_(0, f, n * w[:, None])
        target = target / target.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    weight = torch.zeros(F, device=dev).index_add_(0, f, w)
    return target, weight


def _sample_pairs(img: torch.Tensor, cameras: Cameras, points: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of (V, H, W) maps at the projections of `points` (K, 3) into views `view` (K,)."""
    w2c = cameras.w2c[view]
    pc = torch.einsum("kij,kj->ki", w2c[:, :3, :3], points) + w2c[:, :3, 3]
    depth = (-pc[:, 2]).clamp(min=1e-6)
    u = cameras.fx[view] * pc[:, 0] / depth + cameras.cx[view]
    v = -cameras.fy[view] * pc[:, 1] / depth + cameras.cy[view]
    W, H = cameras.width, cameras.height
    x = (u - 0.5).clamp(0, W - 1.001)
    y = (v - 0.5).clamp(0, H - 1.001)
    x0 = x.floor().long()
    y0 = y.floor().long()
    fx = x - x0
    fy = y - y0
    flat = img.reshape(img.shape[0], -1)
    base = y0 * W + x0

    def at(off: torch.Tensor) -> torch.Tensor:
        return flat[view, off]

    top = at(base) * (1 - fx) + at(base + 1) * fx
    bottom = at(base + W) * (1 - fx) + at(base + W + 1) * fx
    return top * (1 - fy) + bottom * fy


def _pixel_dirs(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    return cameras.pixel_rays()


def rim_vertices(vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """(V, N) bool: vertices on a contour (adjacent to both front- and back-facing faces) per view."""
    fn = face_normals(vertices, faces)
    centroid = vertices[faces].mean(1)
    to_cam = cameras.centers[:, None, :] - centroid[None]
    front = (to_cam * fn[None]).sum(-1) > 0  # (V, F)
    N = vertices.shape[0]
    V = len(cameras)
    has_front = torch.zeros(V, N, dtype=torch.bool, device=vertices.device)
    has_back = torch.zeros(V, N, dtype=torch.bool, device=vertices.device)
    for k in range(3):
        idx = faces[:, k][None].expand(V, -1)
        has_front.scatter_reduce_(1, idx, front, reduce="amax")
        has_back.scatter_reduce_(1, idx, ~front, reduce="amax")
    return has_front & has_back


def _conjugate_gradient(apply_A, b: torch.Tensor, iterations: int, tol: float = 1e-6) -> torch.Tensor:
    """Matrix-free CG for a symmetric positive definite operator."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum()
    stop = tol * tol * rr
    for _ in range(iterations):
        Ap = apply_A(p)
        alpha = rr / (p * Ap).sum().clamp(min=1e-30)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = (r * r).sum()
        if rr_new < stop:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def _normal_system(ia, ib, t_e, w_e, mu, g, pi, lam_s, lam_l, L, Lt, free):
    """The Gauss-Newton operator delta -> A delta of one fusion round (see `refine`); symmetric, as CG needs."""

    def apply_A(d: torch.Tensor) -> torch.Tensor:
        d = d * free
        r = (t_e * (d[ib] - d[ia])).sum(-1, keepdim=True) * w_e[:, None] * t_e
        out = torch.zeros_like(d).index_add_(0, ib, r).index_add_(0, ia, -r)
        out = out + mu * d
        rs = (g * d[pi]).sum(-1, keepdim=True) * g * lam_s
        out = out.index_add_(0, pi, rs)
        if lam_l > 0:
            out = out + lam_l * torch.sparse.mm(Lt, torch.sparse.mm(L, d))
        return out * free

    return apply_A


def refine(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    normals: torch.Tensor,
    masks: np.ndarray,
    y_cut: float,
    cfg: FusionConfig | None = None,
    rasterizer: Rasterizer | None = None,
    progress=None,
    mask_shift_px: np.ndarray | None = None,
) -> torch.Tensor:
    """Run explicit normal fusion; returns the refined vertices (N, 3).

    `mask_shift_px` (V,) moves each mask's border outward by that many pixels (recon.camera_align's estimate of
    a matte drawn too tight or too loose) before the silhouette term reads it.

    Each round linearises the energy of the module docstring around the current mesh and solves
    for the displacement delta with conjugate gradients (a Gauss-Newton step, damped by mu):

        sum_f W_f sum_(a,b) in f <t_f, x_b - x_a + delta_b - delta_a>^2 / h^2   (edges orthogonal to t_f)
      + mu |delta|^2 / h^2
      + lambda_sil sum_(i,v) (s_iv + <g_iv, delta_v>)^2                        (s = signed px distance)
      + lambda_lap |L (x + delta)|^2 / h^2
    """
    cfg = cfg or FusionConfig()
    rasterizer = rasterizer or TorchRasterizer()
    dev = vertices.device
    x = vertices.clone().float()
    N = x.shape[0]
    edges = unique_edges(faces)
    L = laplacian_matrix(N, edges)
    Lt = transposed(L)  # |L x|^2's Hessian is L^T L: the umbrella L (rows normalised) is not symmetric
    h = float((x[edges[:, 0]] - x[edges[:, 1]]).norm(dim=-1).mean())
    cap_v = (x[:, 1] - y_cut).abs() < 0.25 * h
    cap_f = cap_v[faces].all(1)
    collar_f = cap_v[faces].any(1) & ~cap_f if cfg.square_rim else torch.zeros_like(cap_f)
    free = torch.ones(N, 3, device=dev)
    free[cap_v, 1] = 0
    x[cap_v, 1] = y_cut
    sdf = signed_distance_px(masks)
    if mask_shift_px is not None:
        sdf = sdf - np.asarray(mask_shift_px, np.float32)[:, None, None]
    sdf = torch.tensor(sdf, device=dev)
    interior = (-sdf / cfg.border_px).clamp(0, 1)
    nvalid = (normals.norm(dim=-1) > 0.5).float()
    weights_px = interior * nvalid
    W, H = cameras.width, cameras.height
    down = torch.tensor([0.0, -1.0, 0.0], device=dev)
    ia = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2]])
    ib = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0]])
    from scipy import ndimage

    for rnd in range(cfg.rounds):
        frags = rasterize_views(rasterizer, cameras, x, faces)
        fn = face_normals(x, faces)
        target, weight = fuse_targets(frags, cameras, normals, weights_px, fn, cfg)
        has = weight > 0
        weight = weight / weight[has].mean().clamp(min=1e-12) if bool(has.any()) else weight
        weight = weight.clamp(max=cfg.max_face_weight)
        target[cap_f] = down
        weight[cap_f] = 1.0
        if bool(collar_f.any()):
            level = fn[collar_f] * torch.tensor([1.0, 0.0, 1.0], device=dev)
            target[collar_f] = level / level.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            weight[collar_f] = 1.0
        # silhouette pairs: vertices outside a mask, and rim vertices on the outer silhouette
        rim = rim_vertices(x, faces, cameras)
        covered = np.stack([fr.covered.cpu().numpy() for fr in frags])
        outer = torch.tensor(np.stack([ndimage.distance_transform_edt(c) for c in covered]), device=dev).float()
        uv, _ = cameras.project(x)
        rim = rim & (_sample(outer, uv, W, H) < 1.5) & ~cap_v[None]
        d0 = _sample(sdf, uv, W, H)
        pv, pi = torch.nonzero((d0 > 0) | rim, as_tuple=True)
        xp = x[pi].clone().requires_grad_(True)
        s = _sample_pairs(sdf, cameras, xp, pv)
        (g,) = torch.autograd.grad(s.sum(), xp)
        s = s.detach()
        t_e = torch.cat([target, target, target])
        w_e = torch.cat([weight, weight, weight]) / h**2
        lam_s = cfg.lambda_sil
        mu = cfg.mu / h**2
        lam_l = cfg.lambda_lap / h**2

        apply_A = _normal_system(ia, ib, t_e, w_e, mu, g, pi, lam_s, lam_l, L, Lt, free)
        with torch.no_grad():
            e = x[ib] - x[ia]
            r = (t_e * e).sum(-1, keepdim=True) * w_e[:, None] * t_e
            b = -(torch.zeros_like(x).index_add_(0, ib, r).index_add_(0, ia, -r))
            b = b.index_add_(0, pi, -lam_s * s[:, None] * g)
            if lam_l > 0:
                b = b - lam_l * torch.sparse.mm(Lt, torch.sparse.mm(L, x))
            b = b * free
            delta = _conjugate_gradient(apply_A, b, cfg.cg_iterations)
            step = delta.norm(dim=-1)
            limit = cfg.max_step * h
            delta = delta * (limit / step.clamp(min=limit))[:, None]
            x = x + delta * free
        if progress is not None:
            progress(rnd, {"mean_step": float(step.mean() / h), "outside_px": float(s.clamp(min=0).mean())})
    return x
