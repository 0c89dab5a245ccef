"""Volumetric fusion of the views' depth maps inside the visual hull: concavities and thin parts.

A silhouette only removes space outside some view's mask, so the visual hull keeps every
concavity filled: the gap behind an ear, eye sockets, nostrils, nasal folds, the space between a
ponytail and the neck. Each view's normals, integrated to a depth map D_i (recon.depth), say
where the ray through a pixel meets the head; with the sweep on (`SweepConfig.enabled`, the default), a
patch integration left on the hull's lid is moved back where the other views' normals agree (recon.sweep) and
the view is integrated again. By default (`VolumeConfig.reanchor`) the views are then integrated and fused once
more, anchored on the first fused shape where the hull is not tangent to it (weakly: it sets a patch's offset, the
normals its shape), and hull anchors more than 2 mm off that shape (a lid) are dropped. Those are fused as a
truncated signed distance (Curless & Levoy 1996) on the hull's grid. For a voxel centre x seen by view i at pixel p,

    m_i(x) = D_i(p) - delta_i(x)                     (> 0: x lies in front of what view i sees)
    w_i(x) = confidence_i(p)                         (cos of the viewing angle x integration support)
    F(x)   = sum_i w_i clamp(m_i, -tau, tau) / sum_i w_i     over the views with m_i > -tau

Views that see x far behind their surface (m_i <= -tau) say nothing about it: x is occluded for
them. By default F is not that weighted mean but a robust location of the same votes (a weighted
median refined by Cauchy weights, `robust_location`): a view whose integrated patch drifted (an ear
plate seen from behind, cut off from its anchors by its rim) would otherwise carve a thin part that
most views see. The surface is F = 0, intersected with the hull (fusion never adds volume the silhouettes
exclude); voxels no view votes on keep the hull's value (deep inside, or seen by no view).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import torch

from recon.cameras import Cameras
from recon.depth import DepthConfig, ViewDepth, integrate_normals
from recon.hull import HullGrid
from recon.mesh_ops import face_normals
from recon.raster import TorchRasterizer, rasterize_views
from recon.sweep import SweepConfig, accepted_offsets, confirmed, sweep_costs


@dataclass
class VolumeConfig:
    """Depth fusion settings; lengths in ViewSet units (0.4 m each by default)."""

    enabled: bool = True
    truncation: float = 0.02  # tau: 8 mm at 0.4 m/unit (thin ears survive a few mm of view disagreement)
    min_confidence: float = 0.3  # pixels below this vote nothing
    min_weight: float = 0.5  # a voxel needs this much summed confidence to leave the hull's value
    # views larger than this are integrated at this size; 512 = the generator's own: integrated at 256 px, the
    # area average blends an ear's rim with the skull behind it (NC up to 0.0066 lower, bench/RECON_EVAL.md session 15)
    max_size: int = 512
    aggregate: str = "robust"  # "robust" (weighted median, then Cauchy IRLS) | "mean" (Curless & Levoy)
    robust_scale: float = 0.005  # s: 2 mm at 0.4 m/unit
    robust_iterations: int = 2
    workers: int = 0  # threads integrating views at once; 0: one per CPU core (at most one per view)
    # integrate and fuse once more, anchored on the fused shape where the hull is not tangent (bench/RECON_EVAL.md,
    # session 22): a patch the hull's lid held in front of a pocket, or that no anchor held at all, is placed
    reanchor: bool = True
    reanchor_weight: float = 0.1  # per pixel, x cos; the hull's own anchors weigh 1: the fused shape sets a patch's
    # offset, the normals its shape
    reanchor_lid: float = 0.00185  # log depth (2 mm at 1.1 m): a hull anchor this far from the fused shape is a lid's
    depth: DepthConfig = field(default_factory=DepthConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def view_depths(
    cameras: Cameras,
    hull_vertices: np.ndarray,
    hull_faces: np.ndarray,
    normals: torch.Tensor,
    masks: np.ndarray,
    cfg: VolumeConfig,
    progress: Callable[[int], None] | None = None,
    anchor_surface: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Cameras, list[ViewDepth]]:
    """Integrate every view's normals to depth, anchored to the hull (at most `max_size` pixels a side).

    `anchor_surface` (vertices, faces), when given, is an earlier fused shape of the same head: hull anchors more
    than `cfg.reanchor_lid` off it are dropped, and pixels without a hull anchor are anchored on it with
    `cfg.reanchor_weight` (`recon.depth.integrate_normals`); the hull still bounds the maps.
    Returns the cameras of the (possibly downsampled) depth maps and the maps; `progress(k)` as the (k + 1)-th view
    is done. The views are independent of each other, so they run on `cfg.workers` threads (SuperLU's solves
    release the GIL): the same maps, in view order, however many threads ran them.
    """
    cams, normals_s, masks_s = _downsampled(cameras, normals, masks, cfg.max_size)
    dev = cams.device
    v = torch.tensor(hull_vertices, dtype=torch.float32, device=dev)
    f = torch.tensor(hull_faces, dtype=torch.long, device=dev)
    frags = rasterize_views(TorchRasterizer(), cams, v, f)
    fn = face_normals(v, f)
    surface_frags, surface_fn = None, None
    if anchor_surface is not None:
        sv = torch.tensor(anchor_surface[0], dtype=torch.float32, device=dev)
        sf = torch.tensor(anchor_surface[1], dtype=torch.long, device=dev)
        surface_frags, surface_fn = rasterize_views(TorchRasterizer(), cams, sv, sf), face_normals(sv, sf)
    fx, fy, cx, cy = (t.double().cpu().numpy() for t in (cams.fx, cams.fy, cams.cx, cams.cy))

    def one_view(i: int) -> ViewDepth:
        fr = frags[i]
        R = cams.c2w[i, :3, :3].double().cpu().numpy()
        n_cam = normals_s[i].double().cpu().numpy() @ R
        hull_depth, hull_n = _seen_surface(fr, fn, R)
        intr = (fx[i], fy[i], cx[i], cy[i])
        surface: dict[str, np.ndarray | float] = {}
        if surface_frags is not None:
            surface_depth, surface_n = _seen_surface(surface_frags[i], surface_fn, R)
            surface = {"surface_depth": surface_depth, "surface_normal_cam": surface_n,
                       "surface_weight": cfg.reanchor_weight, "surface_tolerance": cfg.reanchor_lid}
        vd = integrate_normals(n_cam, masks_s[i], intr, hull_depth, hull_n, cfg.depth, **surface)
        if cfg.sweep.enabled and len(cams) > 2:
            # patches no anchor placed: their depth from the other views' normals, then integrated again
            sweep = sweep_costs(i, cams, normals_s, masks_s, vd.depth, cfg.sweep)
            offset = accepted_offsets(sweep, cfg.sweep)
            if np.isfinite(offset).any():
                anchor = vd.depth + offset
                if cfg.sweep.stay_anchors:  # what the other views confirm stays where it is
                    anchor = np.where(confirmed(sweep, cfg.sweep) & np.isnan(offset), vd.depth, anchor)
                vd = integrate_normals(n_cam, masks_s[i], intr, hull_depth, hull_n, cfg.depth,
                                       anchor_depth=anchor, anchor_weight=cfg.sweep.anchor_weight, **surface)
                vd.moved = int(np.isfinite(offset).sum()) * cfg.sweep.stride**2
        return vd

    workers = max(1, min(cfg.workers or _cores(), len(frags)))
    out: list[ViewDepth | None] = [None] * len(frags)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="depth") as pool:
        jobs = {pool.submit(one_view, i): i for i in range(len(frags))}
        try:
            for done, job in enumerate(as_completed(jobs)):
                out[jobs[job]] = job.result()
                if progress is not None:
                    progress(done)
        except BaseException:  # an error or an interrupt: the views not started yet are not started
            pool.shutdown(cancel_futures=True)
            raise
    return cams, [vd for vd in out if vd is not None]


def _seen_surface(frag, face_normal: torch.Tensor, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A rasterised mesh's depth (inf where missed) and outward normal in the view's camera axes (0 where missed)."""
    normal = np.zeros(frag.depth.shape + (3,))
    covered = frag.covered.cpu().numpy()
    normal[covered] = face_normal[frag.face_id[frag.covered]].double().cpu().numpy() @ R
    return frag.depth.double().cpu().numpy(), normal


def _cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    ms, ws = [], []
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
        if cfg.aggregate == "robust":
            ms.append(torch.where(vote, m.clamp(-tau, tau), torch.zeros_like(m)))
            ws.append(w)
    F = fsum / wsum.clamp(min=1e-12)
    if cfg.aggregate == "robust":
        F = robust_location(torch.stack(ms), torch.stack(ws), cfg.robust_scale, cfg.robust_iterations)
    # the same scale as the hull's field (occupancy - 0.5): half a unit per voxel
    fused = (-F / grid.voxel * 0.5).cpu().numpy()
    out = grid.field.reshape(-1).copy()
    has = (wsum >= cfg.min_weight).cpu().numpy()
    out[idx[has]] = np.minimum(out[idx[has]], fused[has])
    return out.reshape(grid.field.shape)


def weighted_median(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per column of (V, N) values m with weights w >= 0: the smallest m with half the weight at or below it."""
    order = torch.argsort(m, dim=0)
    m_sorted = torch.gather(m, 0, order)
    c = torch.cumsum(torch.gather(w, 0, order), dim=0)
    k = (c < 0.5 * c[-1:]).sum(0, keepdim=True).clamp(max=m.shape[0] - 1)
    return torch.gather(m_sorted, 0, k)[0]


def robust_location(m: torch.Tensor, w: torch.Tensor, s: float, iterations: int) -> torch.Tensor:
    """Robust signed distance per voxel from the views' truncated votes (V, N).

    A thin part (an ear plate) is seen correctly by most views, but a few views whose integrated depth
    drifted say "free space" by several millimetres; a weighted mean lets them carve it. Start from the
    weighted median and refine with Cauchy weights of scale s:

        F_0     = median_w(m_i)
        r_i     = m_i - F_k
        u_i     = w_i / (1 + (r_i / s)^2)
        F_(k+1) = sum_i u_i m_i / sum_i u_i
    """
    F = weighted_median(m, w)
    for _ in range(iterations):
        r = m - F
        u = w / (1.0 + (r / s) ** 2)
        F = (u * m).sum(0) / u.sum(0).clamp(min=1e-12)
    return F

