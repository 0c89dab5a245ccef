"""Volumetric fusion of the views' depth maps inside the visual hull: concavities and thin parts.

A silhouette only removes space outside some view's mask, so the visual hull keeps every
concavity filled: the gap behind an ear, eye sockets, nostrils, nasal folds, the space between a
ponytail and the neck. Each view's normals, integrated to a depth map D_i (recon.depth), say
where the ray through a pixel meets the head. Those are fused as a truncated signed distance
(Curless & Levoy 1996) on the hull's grid. For a voxel centre x seen by view i at pixel p,

    m_i(x) = D_i(p) - delta_i(x)                     (> 0: x lies in front of what view i sees)
    w_i(x) = confidence_i(p)                         (cos of the viewing angle x integration support)
    F(x)   = sum_i w_i clamp(m_i, -tau, tau) / sum_i w_i     over the views with m_i > -tau

Views that see x far behind their surface (m_i <= -tau) say nothing about it: x is occluded for
them. The surface is F = 0, intersected with the hull (fusion never adds volume the silhouettes
exclude); voxels no view votes on keep the hull's value (deep inside, or seen by no view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from recon.cameras import Cameras
from recon.depth import DepthConfig, ViewDepth, integrate_normals
from recon.hull import HullGrid
from recon.mesh_ops import face_normals
from recon.raster import TorchRasterizer, rasterize_views


@dataclass
class VolumeConfig:
    """Depth fusion settings; lengths in ViewSet units (0.4 m each by default)."""

    enabled: bool = True
    truncation: float = 0.02  # tau: 8 mm at 0.4 m/unit (thin ears survive a few mm of view disagreement)
    min_confidence: float = 0.3  # pixels below this vote nothing
    min_weight: float = 0.5  # a voxel needs this much summed confidence to leave the hull's value
    max_size: int = 256  # views larger than this are integrated at this size
    depth: DepthConfig = field(default_factory=DepthConfig)


def view_depths(
    cameras: Cameras,
    hull_vertices: np.ndarray,
    hull_faces: np.ndarray,
    normals: torch.Tensor,
    masks: np.ndarray,
    cfg: VolumeConfig,
    progress: Callable[[int], None] | None = None,
) -> tuple[Cameras, list[ViewDepth]]:
    """Integrate every view's normals to depth, anchored to the hull (at most `max_size` pixels a side).

    Returns the cameras of the (possibly downsampled) depth maps and the maps; `progress(i)` after each view.
    """
    cams, normals_s, masks_s = _downsampled(cameras, normals, masks, cfg.max_size)
    dev = cams.device
    v = torch.tensor(hull_vertices, dtype=torch.float32, device=dev)
    f = torch.tensor(hull_faces, dtype=torch.long, device=dev)
    frags = rasterize_views(TorchRasterizer(), cams, v, f)
    fn = face_normals(v, f)
    fx, fy, cx, cy = (t.double().cpu().numpy() for t in (cams.fx, cams.fy, cams.cx, cams.cy))
    out = []
    for i, fr in enumerate(frags):
        R = cams.c2w[i, :3, :3].double().cpu().numpy()
        n_cam = normals_s[i].double().cpu().numpy() @ R
        hull_n = np.zeros_like(n_cam)
        cov = fr.covered.cpu().numpy()
        hull_n[cov] = fn[fr.face_id[fr.covered]].double().cpu().numpy() @ R
        hull_depth = fr.depth.double().cpu().numpy()
        out.append(integrate_normals(n_cam, masks_s[i], (fx[i], fy[i], cx[i], cy[i]), hull_depth, hull_n, cfg.depth))
        if progress is not None:
            progress(i)
    return cams, out


def _downsampled(
    cameras: Cameras, normals: torch.Tensor, masks: np.ndarray, max_size: int
) -> tuple[Cameras, torch.Tensor, np.ndarray]:
    """Area-average views down to at most `max_size` pixels a side (normals renormalised)."""
    k = int(np.ceil(max(cameras.width, cameras.height) / max_size))
    if k <= 1:
        return cameras, normals, masks
    H, W = cameras.height // k, cameras.width // k
    m = torch.tensor(masks[:, : H * k, : W * k], dtype=torch.float32)
    m = torch.nn.functional.avg_pool2d(m[:, None], k)[:, 0]
    n = normals[:, : H * k, : W * k].permute(0, 3, 1, 2).cpu()
    n = torch.nn.functional.avg_pool2d(n, k).permute(0, 2, 3, 1)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return cameras.resized(W, H), n.to(normals.device), (m > 0.5).numpy()


def fuse_depths(grid: HullGrid, cameras: Cameras, depths: list[ViewDepth], cfg: VolumeConfig) -> np.ndarray:
    """The hull's field (> 0 inside) with the fused truncated signed distance inside it (module docstring)."""
    dev = cameras.device
    inside = grid.field.reshape(-1) > -0.5
    idx = np.flatnonzero(inside)
    pts = torch.tensor(grid.points()[idx], dtype=torch.float32, device=dev)
    uv, delta = cameras.project(pts)
    W, H = cameras.width, cameras.height
    tau = cfg.truncation
    fsum = torch.zeros(len(idx), device=dev)
    wsum = torch.zeros(len(idx), device=dev)
    for i, vd in enumerate(depths):
        u = uv[i, :, 0].floor().long()
        v = uv[i, :, 1].floor().long()
        in_frame = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (delta[i] > 0)
        uu, vv = u.clamp(0, W - 1), v.clamp(0, H - 1)
        d = torch.tensor(vd.depth, dtype=torch.float32, device=dev)[vv, uu]
        w = torch.tensor(vd.confidence, dtype=torch.float32, device=dev)[vv, uu]
        m = d - delta[i]
        vote = in_frame & torch.isfinite(d) & (w >= cfg.min_confidence) & (m > -tau)
        w = torch.where(vote, w, torch.zeros_like(w))
        fsum += w * torch.where(vote, m.clamp(-tau, tau), torch.zeros_like(m))
        wsum += w
    F = fsum / wsum.clamp(min=1e-12)
    # the same scale as the hull's field (occupancy - 0.5): half a unit per voxel
    fused = (-F / grid.voxel * 0.5).cpu().numpy()
    out = grid.field.reshape(-1).copy()
    has = (wsum >= cfg.min_weight).cpu().numpy()
    out[idx[has]] = np.minimum(out[idx[has]], fused[has])
    return out.reshape(grid.field.shape)
