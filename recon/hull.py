"""Visual hull: carve a voxel grid with the view masks, then extract a closed surface cut at the neck.

Occupancy of a point = the smallest (bilinearly sampled) mask value over the views that see it;
a point below a view's bottom image border gets no vote from that view when its mask touches the
bottom border (a neck leaving the frame stays); any other point outside a view's frame is outside.
The neck is closed by intersecting the occupancy field with the half-space y >= y_cut, so
marching cubes puts a flat cap exactly on that plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.errors import DegenerateResultError


@dataclass
class HullResult:
    vertices: np.ndarray  # (N, 3) float64, ViewSet units
    faces: np.ndarray  # (M, 3) int64, outward CCW
    y_cut: float  # neck plane height
    voxel: float  # voxel edge length used for the surface


def _occupancy(points: torch.Tensor, cameras: Cameras, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min over views of the mask value at each point, and whether every view saw the point in frame."""
    occ = torch.ones(points.shape[0], device=points.device)
    in_all = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    uv, depth = cameras.project(points)
    W, H = cameras.width, cameras.height
    open_bottom = masks[:, -1, :].amax(dim=1) > 0.5
    for v in range(len(cameras)):
        gx = uv[v, :, 0] / W * 2 - 1
        gy = uv[v, :, 1] / H * 2 - 1
        inside = (gx.abs() <= 1) & (gy.abs() <= 1) & (depth[v] > 0)
        below = (gx.abs() <= 1) & (gy > 1) & (depth[v] > 0) & open_bottom[v]
        grid = torch.stack([gx, gy], -1)[None, None]
        val = torch.nn.functional.grid_sample(masks[v][None, None], grid, align_corners=False)[0, 0, 0]
        val = torch.where(inside, val, torch.where(below, torch.ones_like(val), torch.zeros_like(val)))
        occ = torch.minimum(occ, val)
        in_all &= inside
    return occ, in_all


def _grid(lo: np.ndarray, hi: np.ndarray, step: float, device) -> tuple[torch.Tensor, tuple[int, int, int]]:
    n = tuple(int(x) for x in np.ceil((hi - lo) / step).astype(int) + 1)
    axes = [torch.arange(n[i], device=device, dtype=torch.float32) * step + float(lo[i]) for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return pts, n


def visual_hull(
    cameras: Cameras,
    masks: torch.Tensor,
    voxel: float = 0.008,
    neck_margin: float = 0.03,
    y_cut: float | None = None,
    extent: float = 0.8,
) -> HullResult:
    """Carve the hull of `masks` (V, H, W) float in [0, 1], extract it, and close it at the neck plane.

    `y_cut=None` puts the cut `neck_margin` above the lowest hull slice that every view saw in
    frame (or above the hull's bottom when it is entirely in frame).
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    dev = masks.device
    # coarse pass: find the bounding box
    coarse = extent * 2 / 48
    lo = np.full(3, -extent)
    pts, n = _grid(lo, -lo, coarse, dev)
    occ, _ = _occupancy(pts, cameras, masks)
    solid = (occ > 0.5).reshape(n).cpu().numpy()
    if not solid.any():
        raise DegenerateResultError(
            "the visual hull is empty: the masks do not agree on any point; check the cameras and masks of the ViewSet"
        )
    idx = np.argwhere(solid)
    lo_b = lo + (idx.min(0) - 2) * coarse
    hi_b = lo + (idx.max(0) + 2) * coarse
    pts, n = _grid(lo_b, hi_b, voxel, dev)
    occ, in_all = _occupancy(pts, cameras, masks)
    occ_np = occ.reshape(n).cpu().numpy()
    solid = occ_np > 0.5
    labels, count = ndimage.label(solid)
    if count == 0:
        raise DegenerateResultError(
            "the visual hull is empty at the fine resolution; the masks are too thin or disagree"
        )
    sizes = ndimage.sum(solid, labels, index=np.arange(1, count + 1))
    keep = labels == (1 + int(np.argmax(sizes)))
    occ_np = np.where(keep, occ_np, np.minimum(occ_np, 0.0))
    ys = lo_b[1] + voxel * np.arange(n[1])
    if y_cut is None:
        rows = keep.any(axis=(0, 2))
        y_bottom = ys[np.argmax(rows)]
        in_frame = (in_all.reshape(n).cpu().numpy() | ~keep).all(axis=(0, 2))
        framed = np.nonzero(rows & in_frame)[0]
        y_first = ys[framed[0]] if len(framed) else y_bottom
        y_cut = float(max(y_bottom, y_first) + neck_margin)
    field = np.minimum(occ_np - 0.5, (ys[None, :, None] - y_cut) / voxel * 0.5)
    field = np.pad(field, 1, constant_values=-0.5)
    if (field > 0).sum() < 8:
        raise DegenerateResultError(f"the visual hull above the neck cut (y={y_cut:.3f}) is empty")
    verts, faces, _, _ = marching_cubes(field, level=0.0, spacing=(voxel,) * 3)
    verts = verts + (lo_b - voxel)
    faces = faces.astype(np.int64)
    a, b, c = (verts[faces[:, i]] for i in range(3))
    if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0:
        faces = faces[:, ::-1].copy()
    return HullResult(verts.astype(np.float64), faces, float(y_cut), voxel)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about `target_faces` faces (no-op when already smaller).

    Decimation occasionally pinches a non-manifold edge; the target is then nudged and retried,
    and the undecimated surface is returned if every try fails.
    """
    import fast_simplification

    from recon.mesh_ops import edge_manifold_report

    if len(faces) <= target_faces:
        return vertices, faces
    for scale in (1.0, 0.97, 1.03, 0.9, 1.1):
        target = min(len(faces) - 1, int(target_faces * scale))
        v, f = fast_simplification.simplify(
            vertices.astype(np.float32), faces.astype(np.int32), target_reduction=1.0 - target / len(faces)
        )
        used = np.unique(f)
        if len(used) < len(v):  # drop unreferenced vertices
            remap = np.full(len(v), -1, np.int64)
            remap[used] = np.arange(len(used))
            v, f = v[used], remap[f]
        rep = edge_manifold_report(f)
        if rep["boundary_edges"] == rep["nonmanifold_edges"] == rep["misoriented_edges"] == 0:
            return v.astype(np.float64), f.astype(np.int64)
    return vertices, faces
