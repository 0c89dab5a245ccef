"""Sample HeadMesh data for demos, smoke tests and benchmarks (no reconstruction needed).

Two surfaces: a procedural head (an ellipsoid with a nose, open at the neck, one UV chart cut
at the back: a seam where the chart meets itself) and, when `mne` is installed, the fsaverage
scalp surface (a real 360° head, metres) unwrapped with xatlas into many charts. Both textures
are baked from a smooth colour field of 3D position, so a correct UV mapping of *any* LOD shows
field(p) at every surface point p: tests can measure texture agreement without a reference render.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporters.errors import ExportError
from exporters.raster import dilate_texture, rasterize, uv_to_pixels
from spin_io.headmesh import HeadMesh

FIELD_WAVELENGTH_M = 0.08


def colour_field(points: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in [0.1, 0.9] that varies on a 8 cm scale in every direction."""
    p = np.asarray(points, np.float64)
    directions = np.array([[1.0, 0.3, 0.2], [-0.2, 1.0, 0.4], [0.3, -0.4, 1.0]])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    phase = 2.0 * np.pi * (p @ directions.T) / FIELD_WAVELENGTH_M
    return 0.5 + 0.4 * np.sin(phase + np.array([0.0, 1.0, 2.0]))


def bake_texture(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, size: int, field=colour_field) -> np.ndarray:
    """Texture whose texel at UV (u, v) holds field(P(u, v)); empty texels get edge padding."""
    face_id, bary = rasterize(uv_to_pixels(uv, size), np.zeros(len(uv)), faces, size, size)
    filled = face_id >= 0
    points = np.einsum(
        "qc,qcd->qd", bary[filled].astype(np.float64), np.asarray(vertices, np.float64)[faces[face_id[filled]]]
    )
    image = np.zeros((size, size, 3), np.float32)
    image[filled] = field(points)
    image = dilate_texture(image, filled, iterations=max(4, size // 64))
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def bumpy_normal_map(size: int, cells: int = 8, strength: float = 0.35) -> np.ndarray:
    """A tangent-space normal map (glTF convention, +Y up the image) of a smooth egg-crate relief."""
    t = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(t, 1.0 - t)  # v up: row 0 is the top of the image
    k = 2.0 * np.pi * cells
    n = np.stack(
        [-strength * np.cos(k * u) * np.sin(k * v), -strength * np.sin(k * u) * np.cos(k * v), np.ones_like(u)], -1
    )
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return ((n * 0.5 + 0.5) * 255.0 + 0.5).astype(np.uint8)


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    p = np.asarray(vertices, np.float64)
    centre = p.mean(axis=0)
    tri = p[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.sum(n * (tri.mean(axis=1) - centre), axis=1).sum()
    return faces if outward >= 0 else faces[:, ::-1].copy()


def procedural_head(n_lat: int = 32, n_lon: int = 64, texture_size: int = 256, normal_map: bool = False) -> HeadMesh:
    """An ellipsoidal head with a nose (face toward +Z, +Y up, metres), open at the neck.

    UVs are longitude/latitude: one chart cut at the back of the head, so the chart meets itself
    along that seam; the crown is a fan of pole copies (one per segment, each with its own UV).
    """
    theta_min = -np.pi / 2 + 0.6
    thetas = np.linspace(theta_min, np.pi / 2, n_lat + 1)[:-1]
    phis = np.linspace(-np.pi, np.pi, n_lon + 1)

    def surface(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
        nose = 0.22 * np.exp(-((phi / 0.22) ** 2) - ((theta + 0.02) / 0.18) ** 2)
        r = 1.0 + nose
        return np.stack(
            [0.075 * r * np.cos(theta) * np.sin(phi), 0.105 * np.sin(theta), 0.095 * r * np.cos(theta) * np.cos(phi)],
            -1,
        )

    th, ph = np.meshgrid(thetas, phis, indexing="ij")
    grid = surface(th, ph).reshape(-1, 3)
    grid_uv = np.stack([(ph + np.pi) / (2 * np.pi), (th - theta_min) / (np.pi / 2 - theta_min)], -1).reshape(-1, 2)
    pole = np.tile([[0.0, 0.105, 0.0]], (n_lon, 1))
    pole_uv = np.stack([(np.arange(n_lon) + 0.5) / n_lon, np.ones(n_lon)], -1)
    vertices = np.concatenate([grid, pole]).astype(np.float32)
    uv = np.concatenate([grid_uv, pole_uv]).astype(np.float32)

    row = n_lon + 1
    i, j = np.meshgrid(np.arange(n_lat - 1), np.arange(n_lon), indexing="ij")
    a, b = i * row + j, i * row + j + 1
    c, d = (i + 1) * row + j + 1, (i + 1) * row + j
    quads = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    top = (n_lat - 1) * row + np.arange(n_lon)
    cap = np.stack([top, top + 1, len(grid) + np.arange(n_lon)], -1)
    faces = _orient_outward(vertices, np.concatenate([quads, cap]).astype(np.int32))
    return HeadMesh(
        vertices=vertices,
        faces=faces,
        uv=uv,
        albedo=bake_texture(vertices, faces, uv, texture_size),
        normal_map=bumpy_normal_map(texture_size) if normal_map else None,
        metadata={"sample": "procedural_head", "n_lat": n_lat, "n_lon": n_lon},
    )


def fsaverage_head(subdivisions: int = 0, texture_size: int = 512, normal_map: bool = False) -> HeadMesh:
    """The fsaverage scalp (mne's bundled BEM surface) in glTF axes, Loop-subdivided, unwrapped with xatlas.

    fsaverage is RAS (x right, y anterior, z up); glTF wants +Y up and the face toward +Z, so
    (x, y, z)_gltf = (-x, z, y)_RAS: a proper rotation (det +1), so the winding stays outward.
    """
    try:
        import mne
    except ImportError as exc:
        raise ExportError("the fsaverage sample head needs `mne` (pip install mne); use procedural_head()") from exc
    import trimesh
    import xatlas

    path = Path(mne.__file__).parent / "data" / "fsaverage" / "fsaverage-head.fif"
    surface = mne.read_bem_surfaces(str(path), verbose=False)[0]
    ras = np.asarray(surface["rr"], np.float64)
    vertices = np.stack([-ras[:, 0], ras[:, 2], ras[:, 1]], axis=1)
    vertices -= 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    mesh = trimesh.Trimesh(vertices, np.asarray(surface["tris"]), process=False)
    if subdivisions:
        mesh = mesh.subdivide_loop(iterations=subdivisions)
    faces = _orient_outward(mesh.vertices, np.asarray(mesh.faces))
    vmapping, indices, uv = xatlas.parametrize(np.asarray(mesh.vertices, np.float32), faces.astype(np.uint32))
    vertices = np.asarray(mesh.vertices, np.float32)[vmapping]
    faces = indices.astype(np.int32)
    return HeadMesh(
        vertices=vertices,
        faces=faces,
        uv=uv.astype(np.float32),
        albedo=bake_texture(vertices, faces, uv, texture_size),
        normal_map=bumpy_normal_map(texture_size) if normal_map else None,
        metadata={"sample": "fsaverage_head", "subdivisions": subdivisions},
    )
