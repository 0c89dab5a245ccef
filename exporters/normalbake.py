"""Tangent-space normal maps baked from the full-resolution mesh onto a decimated LOD (glTF normalTexture).

A decimated LOD loses the small curvature of the source (nose, lips, ears, eyelids). The standard
fix is a normal map: per texel, the source's shading normal written in the LOD's own tangent frame,
so that a renderer rebuilds the source normal on the low-poly surface.

Correspondence is found in UV space, not by ray casting: a LOD's UVs were transferred from the
source atlas (exporters/lod.py), so one texel names (nearly) the same surface point on both meshes,
and the shading detail lines up with the shared albedo. Rasterising the source in UV space gives,
per texel, a source face and barycentrics; UV seams need no special care there, because each
seam copy of a vertex carries its own UV while the normals are accumulated over the welded surface.
Where the LOD covers a texel that the source does not (chart borders, which decimation moves by a
texel or two) or where the two points are far apart in 3D (a LOD triangle overlapping another chart in
UV space), the closest source point in 3D is used instead.

The frame is the one a glTF renderer builds from the GLB (glTF 2.0 spec, normalTexture; the Khronos
sample viewer): per vertex N (NORMAL), T (TANGENT.xyz), B = w * cross(N, T); each interpolated over the
triangle and normalised per fragment; the shading normal is

    n = normalize(T x + B y + N z),    (x, y, z) = 2 * rgb - 1

so the baked texel is (x, y, z) = normalize(M^-1 n_src) with M = [T B N] (columns), and an undecimated
LOD (n_src = N) bakes to the flat (0, 0, 1). 8-bit texels bound the accuracy at about 0.3 degrees (even
the flat (128, 128, 255) decodes 0.32 degrees off +Z); decimation errors are degrees (tests measure both).
"""

from __future__ import annotations

import numpy as np

from exporters.geometry import vertex_normals, vertex_tangents
from exporters.lod import LodMesh, SurfaceLookup
from exporters.raster import rasterize, sample_texture, texel_uv, uv_to_pixels

FLAT_RGB = (128, 128, 255)
# A UV-space match farther than this fraction of the LOD face's longest edge is treated as a wrong chart.
MAX_UV_MATCH_DISTANCE = 0.5


def shading_frames(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex NORMAL (N, 3) and TANGENT (N, 4), exactly as the exporter writes them to the GLB."""
    normals = vertex_normals(vertices, faces)
    return normals, vertex_tangents(vertices, faces, uv, normals)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return x / np.maximum(norm, 1e-20)


def _interpolate(values: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Per-vertex values (V, D) at barycentric points: corners (Q, 3) vertex ids, bary (Q, 3)."""
    out = bary[:, 0:1] * values[corners[:, 0]]
    out += bary[:, 1:2] * values[corners[:, 1]]
    out += bary[:, 2:3] * values[corners[:, 2]]
    return out


def _tbn(normals: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """Per-vertex frame [T | B | N] (V, 9) float32, with B = w * cross(N, T) (glTF)."""
    n = np.asarray(normals, np.float32)
    t = np.asarray(tangents, np.float32)
    return np.concatenate([t[:, :3], t[:, 3:4] * np.cross(n, t[:, :3]), n], axis=1)


def _split_frame(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolated [T | B | N] (Q, 9) -> T, B, N each normalised (what a fragment shader sees)."""
    return _unit(frame[:, 0:3]), _unit(frame[:, 3:6]), _unit(frame[:, 6:9])


def decode_normals(rgb: np.ndarray) -> np.ndarray:
    """glTF normalTexture texels (uint8) -> unit tangent-space vectors, n = 2 * rgb / 255 - 1."""
    return _unit(np.asarray(rgb, np.float64) / 255.0 * 2.0 - 1.0)


def encode_normals(n: np.ndarray) -> np.ndarray:
    """Unit tangent-space vectors -> uint8 texels, rgb = round(255 * (n + 1) / 2)."""
    return np.clip(np.round((np.asarray(n, np.float32) * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


class NormalBaker:
    """The source side of a bake, computed once and shared by every LOD of one export.

    source_normal_map: the HeadMesh's own tangent-space map (glTF convention), if it has one: the
    baked target is then the source's *normal-mapped* shading normal, so its detail carries over.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        uv: np.ndarray,
        size: int,
        source_normal_map: np.ndarray | None = None,
        lookup: SurfaceLookup | None = None,
    ) -> None:
        self.vertices = np.asarray(vertices, np.float32)
        self.faces = np.asarray(faces, np.int64)
        self.uv = np.asarray(uv, np.float32)
        self.size = int(size)
        self.source_normal_map = source_normal_map
        normals, tangents = shading_frames(self.vertices, self.faces, self.uv)
        # Per vertex: position, normal and, to apply the source's own map, its [T | B | N] frame.
        extra = [] if source_normal_map is None else [_tbn(normals, tangents)]
        self.attributes = np.concatenate([self.vertices, normals, *extra], axis=1)
        # the closest-point index of this source; bakers of other sizes can share it (it is size-free)
        self._lookup: SurfaceLookup | None = lookup

        face_id, bary = rasterize(uv_to_pixels(self.uv, size), np.zeros(len(self.uv)), self.faces, size, size)
        face_id = face_id.reshape(-1)
        self.covered = face_id >= 0
        texels = np.flatnonzero(self.covered)
        at = _interpolate(self.attributes, self.faces[face_id[texels]], bary.reshape(-1, 3)[texels])
        self.points = np.zeros((size * size, 3), np.float32)
        self.points[texels] = at[:, :3]
        self.shading = np.zeros((size * size, 3), np.float32)
        self.shading[texels] = self._shading(at, texel_uv(size)[texels])

    def _shading(self, at: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """The source's unit shading normal (world space) from interpolated attributes and the UV there."""
        if self.source_normal_map is None or len(at) == 0:
            return _unit(at[:, 3:6])
        x, y, z = decode_normals(sample_texture(self.source_normal_map, uv) * 255.0).T[..., None]
        t, b, n = _split_frame(at[:, 6:15])
        return _unit(t * x + b * y + n * z)

    @property
    def lookup(self) -> SurfaceLookup:
        """The source's closest-point index, built on first use (pass it to a baker of another size)."""
        if self._lookup is None:
            self._lookup = SurfaceLookup(self.vertices, self.faces, self.uv)
        return self._lookup

    def closest_normals(self, points: np.ndarray) -> np.ndarray:
        """Shading normal at the closest source surface point in 3D (any chart: normals are welded)."""
        face, bary = self.lookup.closest(points)
        at = _interpolate(self.attributes, self.faces[face], bary.astype(np.float32))
        return self._shading(at, self.lookup.uv_at(face, bary))

    def bake(self, lod: LodMesh, padding: int | None = None) -> np.ndarray:
        """The LOD's normal map (size, size, 3) uint8; see the module docstring.

        Texels outside every chart take the value of the nearest covered texel up to `padding`
        texels away (edge padding for bilinear and mip-mapped lookups), flat (128, 128, 255) beyond.
        """
        from scipy.ndimage import distance_transform_edt

        size = self.size
        padding = max(4, size // 64) if padding is None else padding
        vertices = np.asarray(lod.vertices, np.float32)
        faces = np.asarray(lod.faces, np.int64)
        normals, tangents = shading_frames(vertices, faces, lod.uv)
        attributes = np.concatenate([vertices, _tbn(normals, tangents)], axis=1)
        face_id, bary = rasterize(uv_to_pixels(lod.uv, size), np.zeros(len(lod.uv)), faces, size, size)
        face_id = face_id.reshape(-1)
        texels = np.flatnonzero(face_id >= 0)
        face = face_id[texels]
        at = _interpolate(attributes, faces[face], bary.reshape(-1, 3)[texels])
        points = at[:, :3]

        # Source normal at the same texel, or at the closest source point where the UV match is missing or far.
        tri = vertices[faces]
        reach = MAX_UV_MATCH_DISTANCE * np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
        gap = self.points[texels] - points
        matched = self.covered[texels] & (np.einsum("qi,qi->q", gap, gap) <= reach[face] ** 2)
        n_src = self.shading[texels]
        if not matched.all():
            n_src[~matched] = self.closest_normals(points[~matched])

        # x = M^-1 n_src with M = [T B N] (columns) as the fragment shader builds it; Cramer's rule:
        #   x = (n . (B x N), n . (N x T), n . (T x B)) / (T . (B x N))
        t, bt, n = _split_frame(at[:, 3:12])
        cof = (np.cross(bt, n), np.cross(n, t), np.cross(t, bt))
        det = np.einsum("qi,qi->q", t, cof[0])
        x = np.stack([np.einsum("qi,qi->q", c, n_src) for c in cof], axis=1)
        ok = np.abs(det) > 1e-6
        x[ok] /= det[ok, None]
        # A degenerate frame (T, B, N nearly coplanar) falls back to the transpose, M^T n_src.
        bad = ~ok
        x[bad] = np.stack([np.einsum("qi,qi->q", a[bad], n_src[bad]) for a in (t, bt, n)], axis=1)
        x = _unit(x)

        image = np.zeros((size, size, 3), np.float32)
        image[..., 2] = 1.0
        filled = face_id.reshape(size, size) >= 0
        image[filled] = x
        if texels.size and not filled.all():
            dist, (ii, jj) = distance_transform_edt(~filled, return_indices=True)
            near = (dist > 0) & (dist <= padding)
            image[near] = image[ii[near], jj[near]]
        return encode_normals(image)


def bake_normal_map(
    source_vertices: np.ndarray,
    source_faces: np.ndarray,
    source_uv: np.ndarray,
    lod: LodMesh,
    size: int,
    source_normal_map: np.ndarray | None = None,
) -> np.ndarray:
    """Bake one LOD's tangent-space normal map (size, size, 3) uint8 from the full-resolution source.

    For several LODs of one source, build one NormalBaker and call .bake per LOD (the source
    rasterisation is then done once).
    """
    return NormalBaker(source_vertices, source_faces, source_uv, size, source_normal_map).bake(lod)
