"""Levels of detail: quadric decimation of the welded surface, then UVs re-derived per chart.

Why this method (of the three the issue allows):
- Locking seam vertices (fast-simplification's preserve_border on the seam-split mesh) keeps
  every seam vertex, and a xatlas atlas of a head has thousands of them: a 2.5k-triangle LOD2
  becomes unreachable.
- Re-unwrapping each LOD with xatlas and re-baking costs seconds per LOD, blurs the texture
  with a second resampling and gives every LOD its own texture (more memory in an engine).
- Decimating the welded positions (no cracks: seam copies move together) and then giving every
  new vertex the UV of its closest point on the source surface, *within the chart of the face
  that uses it*, keeps one shared texture, costs KD-tree queries, and puts a vertex that sits on
  a seam into each adjacent chart at the matching border UV. Faces are assigned to the chart of
  the source surface under their centroid, so no face spans two charts in UV space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from exporters.checks import CleanMesh
from exporters.errors import ExportError
from exporters.geometry import clean_faces, closest_points_on_triangles, compact, weld


@dataclass
class LodMesh:
    """One level of detail: vertices (float32 metres), faces (int64), UVs (float32, v up)."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    budget: int
    decimated: bool


def uv_charts(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Chart id per face: faces sharing a (seam-split) vertex index belong to the same UV chart."""
    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n_vertices, n_vertices))
    _, labels = connected_components(graph, directed=False)
    return labels[faces[:, 0]].astype(np.int64)


class SurfaceLookup:
    """Closest point on the source surface, optionally restricted to one UV chart and one side of a seam.

    Candidates come from a KD-tree over each face's corners and centroid; the exact
    point-triangle distance then picks the face. For chart-restricted queries the tree has extra
    coordinates: chart * gap (gap larger than the mesh, so a query only meets its own chart) and
    the sample's UV scaled to metres (weight uv_weight), so that where a chart meets *itself*
    across a cut (a seam inside one connected chart), a query carrying the UV of its face's
    centre finds the side of the cut that face lies on, not the copy at the other end of the atlas.
    """

    def __init__(
        self, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, k: int = 16, uv_weight: float = 0.25
    ) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.uv = np.asarray(uv, np.float64)
        self.charts = uv_charts(self.faces, len(self.vertices))
        tri = self.vertices[self.faces]
        tri_uv = self.uv[self.faces]
        samples = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2], tri.mean(axis=1)])
        sample_uv = np.concatenate([tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2], tri_uv.mean(axis=1)])
        self.sample_face = np.tile(np.arange(len(self.faces)), 4)
        extent = float(np.ptp(self.vertices, axis=0).max()) if len(self.vertices) else 1.0
        self.gap = 10.0 * extent + 1.0
        area_3d = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        e1, e2 = tri_uv[:, 1] - tri_uv[:, 0], tri_uv[:, 2] - tri_uv[:, 0]
        area_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
        self.uv_scale = uv_weight * float(np.sqrt(area_3d / area_uv)) if area_uv > 0 else 0.0
        self.k = min(k, len(samples))
        self.tree3 = cKDTree(samples)
        self.tree_chart = cKDTree(
            np.concatenate([samples, self.charts[self.sample_face, None] * self.gap, sample_uv * self.uv_scale], axis=1)
        )

    def closest(
        self, points: np.ndarray, charts: np.ndarray | None = None, uv_hint: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (source face (Q,), barycentric coordinates (Q, 3)) of the closest surface point.

        With charts (and uv_hint, a UV near the wanted side of any cut), only faces of that chart count.
        """
        points = np.asarray(points, np.float64)
        if charts is None:
            _, idx = self.tree3.query(points, k=self.k)
        else:
            hint = np.zeros((len(points), 2)) if uv_hint is None else np.asarray(uv_hint, np.float64)
            key = np.concatenate([points, charts[:, None] * self.gap, hint * self.uv_scale], axis=1)
            _, idx = self.tree_chart.query(key, k=self.k)
        idx = idx.reshape(len(points), self.k)
        cand = self.sample_face[np.minimum(idx, len(self.sample_face) - 1)]
        q = np.repeat(points, self.k, axis=0)
        d2, bary = closest_points_on_triangles(q, self.vertices[self.faces[cand.reshape(-1)]])
        d2 = d2.reshape(len(points), self.k)
        if charts is not None:
            d2 = np.where(self.charts[cand] == charts[:, None], d2, np.inf)
        best = np.argmin(d2, axis=1)
        rows = np.arange(len(points))
        return cand[rows, best], bary.reshape(len(points), self.k, 3)[rows, best]

    def uv_at(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Interpolate the source UVs at barycentric points of source faces."""
        return np.einsum("qc,qcd->qd", bary, self.uv[self.faces[face]])


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(faces, np.int64)
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    f = f[keep]
    used = np.zeros(len(vertices), bool)
    used[f.ravel()] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[f]


def decimate(vertices: np.ndarray, faces: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation of the welded surface to at most `budget` triangles."""
    import fast_simplification

    positions, index = weld(vertices)
    welded_faces = index[faces]
    positions, welded_faces = _drop_degenerate(positions, welded_faces)
    if len(welded_faces) <= budget:
        return positions, welded_faces
    target = budget
    for _ in range(8):
        p, f = fast_simplification.simplify(positions, welded_faces, target_count=target)
        p, f = _drop_degenerate(np.asarray(p), np.asarray(f))
        # fast-simplification has no link-condition check: collapsing a thin part (an ear rim, the neck
        # cap's edge) can leave back-to-back face pairs, zero-volume "pillows" that render as spikes.
        p, f = compact(p, f[clean_faces(p, f)])
        if len(f) <= budget:
            return p, f
        target = max(1, target - (len(f) - budget) - 1)
    raise ExportError(
        f"could not decimate {len(faces)} triangles to a budget of {budget} (last try: {len(f)}); "
        "raise the LOD budget (--lod-budgets)"
    )


def transfer_uvs(
    lookup: SurfaceLookup, positions: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give a decimated mesh the source's UVs, one chart per face; seam vertices get one copy per side.

    Each face takes the chart (and the UV) of the source point under its centroid; each corner
    then takes the UV of its closest source point in that chart, on the centroid's side of any
    cut. Corners of one vertex that land on the same UV share an output vertex.
    """
    centre_face, centre_bary = lookup.closest(positions[faces].mean(axis=1))
    face_chart = lookup.charts[centre_face]
    centre_uv = lookup.uv_at(centre_face, centre_bary)
    corner_vertex = faces.reshape(-1)
    hit, bary = lookup.closest(positions[corner_vertex], np.repeat(face_chart, 3), np.repeat(centre_uv, 3, axis=0))
    corner_uv = np.clip(lookup.uv_at(hit, bary), 0.0, 1.0)
    # Corners of one vertex on the same side of a seam find the same source point, hence the same UV;
    # quantising to 2^-24 of the atlas only absorbs rounding.
    key = np.concatenate([corner_vertex[:, None], np.round(corner_uv * (1 << 24)).astype(np.int64)], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return (
        positions[corner_vertex[first]].astype(np.float32),
        inverse.reshape(-1, 3).astype(np.int64),
        corner_uv[first].astype(np.float32),
    )


def clean_lod(lod: LodMesh) -> LodMesh:
    """The LOD without zero-area or back-to-back duplicate faces (by float32 position, as a glTF reader
    sees them) and without unused vertices: the last guard before writing, so the file has exactly the
    triangles the report counts."""
    vertices = np.asarray(lod.vertices, np.float32)
    keep = clean_faces(vertices, lod.faces)
    if len(keep) == len(lod.faces) and np.unique(lod.faces).size == len(vertices):
        return lod
    if len(keep) == 0:
        raise ExportError(
            f"the {lod.budget}-triangle LOD has no faces left after removing degenerate ones; raise its budget"
        )
    vertices, faces, uv = compact(vertices, np.asarray(lod.faces, np.int64)[keep], lod.uv)
    return LodMesh(vertices, faces, uv, lod.budget, lod.decimated)


def build_lods(mesh: CleanMesh, budgets: tuple[int, ...]) -> list[LodMesh]:
    """One LodMesh per budget, each decimated from the full-resolution source (not from the previous LOD)."""
    lods: list[LodMesh] = []
    lookup: SurfaceLookup | None = None
    for budget in budgets:
        if len(mesh.faces) <= budget:
            lods.append(LodMesh(mesh.vertices, mesh.faces, mesh.uv, budget, decimated=False))
            continue
        if lookup is None:
            lookup = SurfaceLookup(mesh.vertices, mesh.faces, mesh.uv)
        positions, faces = decimate(mesh.vertices, mesh.faces, budget)
        vertices, faces, uv = transfer_uvs(lookup, positions, faces)
        lods.append(clean_lod(LodMesh(vertices, faces, uv, budget, decimated=True)))
    return lods
