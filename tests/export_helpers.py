"""Test data and checks shared by the tests/test_export*.py files."""

from __future__ import annotations

import io

import numpy as np
from _tools import tool_missing

from exporters.raster import sample_texture
from exporters.sample import colour_field
from spin_io.headmesh import HeadMesh

# Quadrant colours of the V-flip texture (image rows top to bottom, HeadMesh v up):
# top-left red, top-right green, bottom-left blue, bottom-right yellow.
QUADRANTS = {
    "top_left": (255, 0, 0),
    "top_right": (0, 255, 0),
    "bottom_left": (0, 0, 255),
    "bottom_right": (255, 255, 0),
}


def quadrant_texture(size: int = 64) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    img[:h, :h] = QUADRANTS["top_left"]
    img[:h, h:] = QUADRANTS["top_right"]
    img[h:, :h] = QUADRANTS["bottom_left"]
    img[h:, h:] = QUADRANTS["bottom_right"]
    return img


def quad_mesh(normal_map: bool = False) -> HeadMesh:
    """A 10 cm square in the XY plane facing +Z, UVs covering [0,1]^2 with v up (+Y)."""
    vertices = np.array([[-0.05, -0.05, 0.0], [0.05, -0.05, 0.0], [0.05, 0.05, 0.0], [-0.05, 0.05, 0.0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    nm = np.full((16, 16, 3), (128, 128, 255), np.uint8) if normal_map else None
    return HeadMesh(vertices, faces, uv, quadrant_texture(), nm, {"test": "quad"})


def grid_mesh(n: int, size_m: float = 0.2) -> HeadMesh:
    """An n x n vertex grid in the XY plane (2 (n-1)^2 triangles), UV = normalised grid position."""
    t = np.linspace(0.0, 1.0, n)
    u, v = np.meshgrid(t, t)
    vertices = np.stack([(u - 0.5) * size_m, (v - 0.5) * size_m, 0.01 * np.sin(6 * u) * np.cos(5 * v)], -1)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return HeadMesh(
        vertices.reshape(-1, 3).astype(np.float32),
        faces.astype(np.int32),
        np.stack([u, v], -1).reshape(-1, 2).astype(np.float32),
        quadrant_texture(32),
        None,
        {"test": "grid"},
    )


def surface_samples(vertices, faces, uv, n: int, seed: int = 0):
    """Area-uniform random points on a mesh: (positions (n, 3), uvs (n, 2))."""
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    fi = rng.choice(len(f), n, p=area / area.sum())
    r = rng.random((n, 2))
    flip = r.sum(1) > 1
    r[flip] = 1 - r[flip]
    bary = np.stack([1 - r.sum(1), r[:, 0], r[:, 1]], 1)
    return np.einsum("qc,qcd->qd", bary, v[f[fi]]), np.einsum("qc,qcd->qd", bary, np.asarray(uv, np.float64)[f[fi]])


def field_error(vertices, faces, uv, texture, n: int = 20_000) -> np.ndarray:
    """Per-sample mean absolute RGB error between the texture at the UV and colour_field at the 3D point."""
    points, uvs = surface_samples(vertices, faces, uv, n)
    return np.abs(sample_texture(texture, uvs) - colour_field(points)).mean(axis=1)


def decode_glb(data: bytes) -> dict:
    """Decode a GLB with pygltflib (an independent reader): per primitive arrays, images, material, extras."""
    import pygltflib
    from PIL import Image

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    dtypes = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}
    widths = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}

    def accessor(index: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        dtype = np.dtype(dtypes[acc.componentType])
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        count = acc.count * widths[acc.type]
        arr = np.frombuffer(blob, dtype, count=count, offset=start)
        return arr.reshape(acc.count, widths[acc.type]) if widths[acc.type] > 1 else arr

    primitives = []
    for prim in gltf.meshes[0].primitives:
        attrs = prim.attributes
        primitives.append(
            {
                "POSITION": accessor(attrs.POSITION),
                "NORMAL": accessor(attrs.NORMAL),
                "TEXCOORD_0": accessor(attrs.TEXCOORD_0),
                "TANGENT": None if attrs.TANGENT is None else accessor(attrs.TANGENT),
                "indices": accessor(prim.indices).astype(np.int64).reshape(-1, 3),
                "index_dtype": dtypes[gltf.accessors[prim.indices].componentType],
                "material": prim.material,
                "position_min": gltf.accessors[attrs.POSITION].min,
                "position_max": gltf.accessors[attrs.POSITION].max,
            }
        )
    images = []
    for image in gltf.images:
        view = gltf.bufferViews[image.bufferView]
        raw = blob[(view.byteOffset or 0) : (view.byteOffset or 0) + view.byteLength]
        images.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
    return {"gltf": gltf, "primitives": primitives, "images": images}


def sample_gltf_texture(image: np.ndarray, texcoord: np.ndarray) -> np.ndarray:
    """Nearest-texel lookup with glTF's convention: (0, 0) is the image's top-left corner."""
    h, w = image.shape[:2]
    x = np.clip((texcoord[:, 0] * w).astype(int), 0, w - 1)
    y = np.clip((texcoord[:, 1] * h).astype(int), 0, h - 1)
    return image[y, x]


def require_validator():
    """The validator info, or skip the test with the reason."""
    from exporters.validate import find_validator

    info = find_validator()
    if info is None:
        tool_missing("glTF validator not found: install Node.js and run `npm install` in the repository root")
    return info
