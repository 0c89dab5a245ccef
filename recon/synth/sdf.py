"""Signed-distance building blocks and a narrow-band mesher for the ground-truth heads.

Distances are in the caller's units (the heads use metres), negative inside. The primitives are exact
or lower bounds near their surfaces, which is all marching cubes and the narrow band need: the band
test only has to be conservative, and a margin covers the smooth operators' overshoot.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SdfFn = Callable[[np.ndarray], np.ndarray]


def rot_x(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


def rot_y(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])


def rot_z(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def _norm(q: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", q, q))


def sphere(p: np.ndarray, c, r: float) -> np.ndarray:
    return _norm(p - np.asarray(c, p.dtype)) - r


def ellipsoid(p: np.ndarray, c, radii, rot: np.ndarray | None = None) -> np.ndarray:
    """Ellipsoid distance bound (k0 (k0 - 1) / k1): exact on the surface, a close bound near it.

    `rot` maps local axes to world (columns are the local axes in world coordinates).
    """
    q = p - np.asarray(c, p.dtype)
    if rot is not None:
        q = q @ np.asarray(rot, p.dtype)
    r = np.asarray(radii, p.dtype)
    q = q / r
    k0 = _norm(q)
    k1 = _norm(q / r)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def capsule(p: np.ndarray, a, b, ra: float, rb: float | None = None) -> np.ndarray:
    """Segment a-b swept by a radius that tapers linearly from ra to rb (a bound for mild tapers)."""
    a = np.asarray(a, p.dtype)
    b = np.asarray(b, p.dtype)
    rb = ra if rb is None else rb
    ab = b - a
    pa = p - a
    t = np.clip((pa @ ab) / max(float(ab @ ab), 1e-20), 0.0, 1.0)
    return _norm(pa - t[:, None] * ab) - (ra + (rb - ra) * t)


def tube(p: np.ndarray, points, radii, k: float = 0.0) -> np.ndarray:
    """A chain of tapered capsules through `points` (a smooth union over k between segments)."""
    d = capsule(p, points[0], points[1], radii[0], radii[1])
    for i in range(1, len(points) - 1):
        d = smin(d, capsule(p, points[i], points[i + 1], radii[i], radii[i + 1]), k)
    return d


def ellipse2d(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Planar ellipse distance bound in its own plane (same k0 (k0 - 1) / k1 form)."""
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def extrude(d2: np.ndarray, w: np.ndarray, half: float) -> np.ndarray:
    """A planar shape (distance d2 in its plane) extruded to |w| <= half, with exact edges."""
    qx = d2
    qy = np.abs(w) - half
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union that blends over a band of width k (k = 0: the plain union)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection (the mirror of smin)."""
    return -smin(-a, -b, k)


def ssub(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth subtraction: a with b carved out, edges rounded over k."""
    return smax(a, -b, k)


def mesh_sdf(
    fn: SdfFn, lo, hi, voxel: float, block: int = 4, margin: float = 0.003
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of fn < 0 on a regular grid, evaluating fn only in a narrow band around the surface.

    Blocks of block^3 voxels whose centre lies further than their half-diagonal + margin from the surface
    are filled with the centre's sign (the surface cannot cross them); the rest are evaluated per voxel.
    Returns (vertices, faces) with faces counter-clockwise seen from outside.
    """
    from skimage.measure import marching_cubes

    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    n = np.ceil((hi - lo) / voxel).astype(int) + 1
    nb = -(-n // block)
    axes_c = [lo[i] + voxel * (block * np.arange(nb[i]) + (block - 1) / 2) for i in range(3)]
    centres = np.stack(np.meshgrid(*axes_c, indexing="ij"), -1).reshape(-1, 3)
    dc = fn(centres.astype(np.float32)).reshape(*nb)
    reach = math.sqrt(3) * block * voxel / 2 + margin
    active = np.abs(dc) < reach
    far = 4.0 * block * voxel
    fill = np.where(dc < 0, -far, far).astype(np.float32)[:, None, :, None, :, None]
    vol = np.broadcast_to(fill, (nb[0], block, nb[1], block, nb[2], block)).reshape(*(nb * block))
    vol = np.ascontiguousarray(vol[: n[0], : n[1], : n[2]])
    mask = np.zeros(vol.shape, bool)
    idx = np.argwhere(active)
    offs = np.stack(np.meshgrid(*(np.arange(block),) * 3, indexing="ij"), -1).reshape(-1, 3)
    chunk = max(1, 400_000 // len(offs))
    for s in range(0, len(idx), chunk):
        ijk = (idx[s : s + chunk, None, :] * block + offs[None]).reshape(-1, 3)
        ijk = ijk[(ijk < n).all(1)]
        vol[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = fn((lo + voxel * ijk).astype(np.float32))
        mask[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    if not (vol[0].min() > 0 and vol[-1].min() > 0 and vol[:, 0].min() > 0 and vol[:, -1].min() > 0
            and vol[:, :, 0].min() > 0 and vol[:, :, -1].min() > 0):
        raise ValueError("the shape touches the grid border: enlarge lo/hi")
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(voxel,) * 3, mask=mask, allow_degenerate=False)
    return verts.astype(np.float64) + lo, faces.astype(np.int64)
