"""Ground-truth head meshes in ViewSet units and axes (+Y up, face toward +Z, centred near the origin).

* fsaverage: the closed scalp surface shipped with `mne` (metres, MNE head coordinates RAS:
  +X right, +Y anterior, +Z up). RAS -> glTF is x' = -x, y' = z, z' = y: a proper rotation
  (det +1), so nothing is mirrored; the subject's left ear ends up on +X.
* procedural: a seeded signed-distance head (cranium, face, jaw, nose, ears that protrude by
  different amounts, a neck, asymmetric hair volume, a left-only cheek bump) -> marching cubes.
* people (recon.synth.people): the issue-12 evaluation heads, with labellers built from their parts.

Every head answers `regions(points)` (REGIONS indices); heads without a labeller use `geometric_regions`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recon.errors import ReconError
from spin_io.viewset import DEFAULT_METRES_PER_UNIT

REGIONS = ("face", "ears", "back", "crown", "neck")


@dataclass
class GroundTruthHead:
    """A closed, outward-oriented triangle mesh in ViewSet units.

    `labeller` (points in ViewSet units -> REGIONS indices) is set by heads that know their parts;
    others get `geometric_regions`. `sdf` (ViewSet units, negative inside) is set by SDF-built heads.
    """

    vertices: np.ndarray  # (N, 3) float64
    faces: np.ndarray  # (M, 3) int64
    name: str = "head"
    info: dict = field(default_factory=dict)
    labeller: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)
    sdf: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def regions(self, points: np.ndarray) -> np.ndarray:
        """Index into REGIONS for each (N, 3) point in ViewSet units (use points on or near the surface)."""
        points = np.asarray(points, np.float64)
        if self.labeller is not None:
            return np.asarray(self.labeller(points), np.int64)
        return geometric_regions(points, self.vertices)


def geometric_regions(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Fallback labels from the head's extent alone, for heads built without named parts.

    neck: the bottom 20 % of the height; crown: the top 20 %; ears: the outer 12 % of the half-width
    within the middle of the height and depth; face: the rest with z > 0; back: the rest behind.
    """
    lo, hi = vertices.min(0), vertices.max(0)
    mid = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    h = hi[1] - lo[1]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    labels = np.where(z > mid[2], 0, 2)
    ears = (np.abs(x - mid[0]) > 0.88 * half[0]) & (np.abs(z - mid[2]) < 0.3 * half[2]) & (
        np.abs(y - (lo[1] + 0.55 * h)) < 0.15 * h
    )
    labels = np.where(ears, 1, labels)
    labels = np.where(y > hi[1] - 0.2 * h, 3, labels)
    return np.where(y < lo[1] + 0.2 * h, 4, labels)


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip all faces if the signed volume is negative (faces must be CCW seen from outside)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    return faces if volume > 0 else faces[:, ::-1].copy()


def fsaverage_head(subdivisions: int = 2, metres_per_unit: float = DEFAULT_METRES_PER_UNIT) -> GroundTruthHead:
    """The mne fsaverage head surface, Loop-subdivided, in ViewSet units with its bounding box centred."""
    try:
        import mne
    except ImportError as exc:
        raise ReconError(
            "the fsaverage ground truth needs the 'mne' package: pip install 'spin-to-mesh[synth]'"
        ) from exc
    import trimesh

    path = os.path.join(os.path.dirname(mne.__file__), "data", "fsaverage", "fsaverage-head.fif")
    surf = mne.read_bem_surfaces(path, verbose=False)[0]
    ras = np.asarray(surf["rr"], np.float64)
    vertices = np.stack([-ras[:, 0], ras[:, 2], ras[:, 1]], axis=1)
    faces = _orient_outward(vertices, np.asarray(surf["tris"], np.int64))
    if subdivisions > 0:
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        mesh = mesh.subdivide_loop(iterations=subdivisions)
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces, np.int64)
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    vertices = (vertices - centre) / metres_per_unit
    info = {"source": "mne fsaverage-head.fif", "subdivisions": subdivisions}
    return GroundTruthHead(vertices, faces, "fsaverage", info)


def _ellipsoid(p: np.ndarray, centre, radii, rot: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (scaled-sphere bound, good near the surface)."""
    q = p - np.asarray(centre)
    if rot is not None:
        q = q @ rot
    r = np.asarray(radii)
    k = np.linalg.norm(q / r, axis=-1)
    return (k - 1.0) * r.min()


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a union that blends over a band of width k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _rot_y(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])


def _rot_x(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


def procedural_sdf(points_m: np.ndarray, params: dict) -> np.ndarray:
    """Signed distance (metres, negative inside) of the parametric head at points in metres."""
    P = params
    d = _ellipsoid(points_m, P["cranium_c"], P["cranium_r"])
    d = _smin(d, _ellipsoid(points_m, P["face_c"], P["face_r"]), 0.02)
    d = _smin(d, _ellipsoid(points_m, P["jaw_c"], P["jaw_r"]), 0.02)
    d = _smin(d, _ellipsoid(points_m, P["nose_c"], P["nose_r"], _rot_x(P["nose_tilt"])), 0.01)
    d = _smin(d, _ellipsoid(points_m, P["hair_c"], P["hair_r"]), 0.03)
    d = _smin(d, _ellipsoid(points_m, P["bump_c"], P["bump_r"]), 0.01)
    for side in (-1, 1):
        c = np.array(P["ear_c"]) * np.array([side, 1, 1])
        c[0] += side * P[f"ear_out_{side}"]
        rot = _rot_y(side * P[f"ear_angle_{side}"])
        d = _smin(d, _ellipsoid(points_m, c, P["ear_r"], rot), 0.006)
    # neck: vertical cylinder, capped flat at the bottom
    q = points_m - np.array(P["neck_c"])
    radial = np.sqrt(q[:, 0] ** 2 / P["neck_r"][0] ** 2 + q[:, 2] ** 2 / P["neck_r"][1] ** 2) - 1.0
    slab = np.maximum(P["neck_bottom"] - points_m[:, 1], points_m[:, 1] + 0.02)
    neck = np.maximum(radial * min(P["neck_r"]), slab)
    return _smin(d, neck, 0.02)


def procedural_params(seed: int) -> dict:
    """Seeded head parameters (metres); ears, hair and a cheek bump differ left/right on purpose."""
    rng = np.random.default_rng(seed)

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    long_face = u(0.9, 1.2)
    return {
        "cranium_c": [0.0, 0.03, -0.015],
        "cranium_r": [0.075 * u(0.92, 1.08), 0.085 * u(0.92, 1.08), 0.097 * u(0.92, 1.08)],
        "face_c": [0.0, -0.025, 0.03],
        "face_r": [0.062 * u(0.9, 1.05), 0.08 * long_face, 0.07 * u(0.9, 1.05)],
        "jaw_c": [0.0, -0.075 * long_face, 0.045],
        "jaw_r": [0.045 * u(0.85, 1.1), 0.035, 0.045],
        "nose_c": [u(-0.004, 0.004), -0.02, 0.098 * u(0.97, 1.03)],
        "nose_r": [0.012, 0.026 * u(0.9, 1.15), 0.02 * u(0.9, 1.2)],
        "nose_tilt": u(-20, -5),
        "hair_c": [u(-0.025, 0.025), 0.055, u(-0.04, -0.01)],
        "hair_r": [0.08 * u(0.95, 1.12), 0.075 * u(0.9, 1.15), 0.095 * u(0.95, 1.1)],
        "bump_c": [0.052, -0.03, 0.05],  # left cheek (+X): exposes mirrored reconstructions
        "bump_r": [0.018, 0.018, 0.018],
        "ear_c": [0.07, -0.005, -0.005],
        "ear_r": [0.006, 0.03 * u(0.9, 1.15), 0.018 * u(0.9, 1.2)],
        "ear_out_-1": u(0.002, 0.02),
        "ear_out_1": u(0.002, 0.02),
        "ear_angle_-1": u(10, 35),
        "ear_angle_1": u(10, 35),
        "neck_c": [0.0, -0.1, -0.01],
        "neck_r": [0.05 * u(0.9, 1.15), 0.055 * u(0.9, 1.1)],
        "neck_bottom": -0.17,
    }


def procedural_head(
    seed: int, voxel_m: float = 0.0025, target_faces: int = 60_000, metres_per_unit: float = DEFAULT_METRES_PER_UNIT
) -> GroundTruthHead:
    """A seeded parametric head (marching cubes of `procedural_sdf`, decimated), in ViewSet units."""
    import fast_simplification
    from skimage.measure import marching_cubes

    params = procedural_params(seed)
    lo = np.array([-0.14, -0.185, -0.15])
    hi = np.array([0.14, 0.16, 0.16])
    n = np.ceil((hi - lo) / voxel_m).astype(int) + 1
    axes = [lo[i] + voxel_m * np.arange(n[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sdf = procedural_sdf(grid, params).reshape(*n)
    verts, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(voxel_m,) * 3)
    verts = verts + lo
    faces = faces.astype(np.int64)
    if target_faces and len(faces) > target_faces:
        verts, faces = fast_simplification.simplify(
            verts.astype(np.float32), faces.astype(np.int32), target_reduction=1 - target_faces / len(faces)
        )
        verts = verts.astype(np.float64)
        faces = faces.astype(np.int64)
    faces = _orient_outward(verts, faces)
    centre = 0.5 * (verts.min(0) + verts.max(0))
    verts = (verts - centre) / metres_per_unit
    info = {"seed": seed, "params": params, "centre_m": centre.tolist()}
    return GroundTruthHead(verts, faces, f"procedural-{seed}", info)


def inside_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Whether points lie inside a closed mesh: ray parity along +X, +Y and +Z, majority vote.

    Independent of any signed-distance function, so tests can check the mesh itself (ear gaps, sockets).
    Triangles are binned on a 2-D grid across each ray direction, so only the few under a ray are tested.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    lo, hi = tri.min(1), tri.max(1)
    cell = 1.5 * float(np.median(np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1))) + 1e-12
    votes = np.zeros(len(pts), np.int64)
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        org = lo[:, [a, b]].min(0)
        i0 = np.floor((lo[:, [a, b]] - org) / cell).astype(np.int64)
        i1 = np.floor((hi[:, [a, b]] - org) / cell).astype(np.int64)
        nb = int(i1[:, 1].max()) + 2
        span = i1 - i0 + 1
        count = span[:, 0] * span[:, 1]
        owner = np.repeat(np.arange(len(tri)), count)
        k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        ca = i0[owner, 0] + k // span[owner, 1]
        cb = i0[owner, 1] + k % span[owner, 1]
        key = ca * nb + cb
        order = np.argsort(key, kind="stable")
        key, owner = key[order], owner[order]
        pc = np.floor((pts[:, [a, b]] - org) / cell).astype(np.int64)
        pkey = pc[:, 0] * nb + pc[:, 1]
        valid = (pc >= 0).all(1) & (pc[:, 1] < nb)
        start = np.searchsorted(key, pkey, "left")
        stop = np.where(valid, np.searchsorted(key, pkey, "right"), start)
        n = stop - start
        pi = np.repeat(np.arange(len(pts)), n)
        ti = owner[np.repeat(start, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
        t, p = tri[ti], pts[pi]
        e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
        det = e1[:, a] * e2[:, b] - e1[:, b] * e2[:, a]
        ok = np.abs(det) > 1e-20
        det = np.where(ok, det, 1.0)
        qa, qb = p[:, a] - t[:, 0, a], p[:, b] - t[:, 0, b]
        u = (qa * e2[:, b] - qb * e2[:, a]) / det
        v = (e1[:, a] * qb - e1[:, b] * qa) / det
        depth = t[:, 0, axis] + u * e1[:, axis] + v * e2[:, axis]
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (depth > p[:, axis])
        votes += np.bincount(pi[hit], minlength=len(pts)) % 2
    return votes >= 2
