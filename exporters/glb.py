"""Write a GLB (binary glTF 2.0) by hand: one node, one mesh, one material, N primitives.

Building the JSON ourselves keeps full control over what the validator checks: accessor
min/max computed from the exact float32 data, 4-byte aligned buffer views with targets, uint16
indices, unit normals and tangents, and the V flip (glTF's UV origin is the image's top-left
corner; the HeadMesh stores v up, so TEXCOORD_0 = (u, 1 - v) and the image is stored unchanged).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GLB_MAGIC = 0x46546C67  # b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
FLOAT = 5126
UNSIGNED_SHORT = 5123
UNSIGNED_INT = 5125
LINEAR = 9729
LINEAR_MIPMAP_LINEAR = 9987
CLAMP_TO_EDGE = 33071


@dataclass
class Primitive:
    """Vertex data of one primitive, already in glTF conventions (UV origin top-left)."""

    positions: np.ndarray  # (n, 3) float32
    normals: np.ndarray  # (n, 3) float32, unit
    texcoords: np.ndarray  # (n, 2) float32, glTF convention
    indices: np.ndarray  # (m * 3,) integer
    tangents: np.ndarray | None = None  # (n, 4) float32


@dataclass
class Material:
    """A metallic-roughness PBR material with an embedded PNG baseColor, optional normal map and optional
    metallicRoughness texture (G roughness, B metallic); with the texture the factors are 1 (roughness) and
    `metallic`, so the texture rules (glTF multiplies factor and texel)."""

    base_color_png: bytes
    roughness: float
    normal_png: bytes | None = None
    name: str = "head"
    metallic: float = 0.0
    metallic_roughness_png: bytes | None = None


@dataclass
class _BinaryBuffer:
    data: bytearray = field(default_factory=bytearray)
    views: list[dict[str, Any]] = field(default_factory=list)

    def add(self, payload: bytes, target: int | None = None) -> int:
        """Append payload as a new buffer view (4-byte aligned) and return its index."""
        self.data.extend(b"\x00" * (-len(self.data) % 4))
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(payload)}
        if target is not None:
            view["target"] = target
        self.data.extend(payload)
        self.views.append(view)
        return len(self.views) - 1


def uv_to_gltf(uv: np.ndarray) -> np.ndarray:
    """HeadMesh UVs (v up, origin bottom-left) -> glTF TEXCOORD_0 (origin top-left)."""
    uv = np.asarray(uv, np.float32)
    return np.stack([uv[:, 0], np.float32(1.0) - uv[:, 1]], axis=1)


def build_glb(
    primitives: list[Primitive],
    material: Material,
    mesh_name: str = "head",
    asset_extras: dict[str, Any] | None = None,
    node_extras: dict[str, Any] | None = None,
    generator: str = "spin-to-mesh",
) -> bytes:
    """Assemble the GLB bytes; node transforms are identity (no matrix/TRS), all data embedded."""
    if not primitives:
        raise ValueError("a mesh needs at least one primitive")
    buf = _BinaryBuffer()
    accessors: list[dict[str, Any]] = []

    def add_accessor(array: np.ndarray, kind: str, target: int, with_bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        if array.dtype == np.float32:
            component = FLOAT
        elif array.dtype == np.uint16:
            component = UNSIGNED_SHORT
        elif array.dtype == np.uint32:
            component = UNSIGNED_INT
        else:
            raise TypeError(f"unsupported accessor dtype {array.dtype}")
        view = buf.add(array.tobytes(), target)
        accessor: dict[str, Any] = {
            "bufferView": view,
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if with_bounds:
            accessor["min"] = [float(x) for x in array.min(axis=0)]
            accessor["max"] = [float(x) for x in array.max(axis=0)]
        accessors.append(accessor)
        return len(accessors) - 1

    gltf_primitives = []
    for prim in primitives:
        n = len(prim.positions)
        index_dtype = np.uint16 if n <= 65_535 else np.uint32
        attributes = {
            "POSITION": add_accessor(np.asarray(prim.positions, np.float32), "VEC3", ARRAY_BUFFER, with_bounds=True),
            "NORMAL": add_accessor(np.asarray(prim.normals, np.float32), "VEC3", ARRAY_BUFFER),
            "TEXCOORD_0": add_accessor(np.asarray(prim.texcoords, np.float32), "VEC2", ARRAY_BUFFER),
        }
        if prim.tangents is not None:
            attributes["TANGENT"] = add_accessor(np.asarray(prim.tangents, np.float32), "VEC4", ARRAY_BUFFER)
        indices = add_accessor(np.asarray(prim.indices).reshape(-1).astype(index_dtype), "SCALAR", ELEMENT_ARRAY_BUFFER)
        gltf_primitives.append({"attributes": attributes, "indices": indices, "material": 0, "mode": 4})

    images = [{"name": "baseColor", "mimeType": "image/png", "bufferView": buf.add(material.base_color_png)}]
    textures = [{"sampler": 0, "source": 0}]
    gltf_material: dict[str, Any] = {
        "name": material.name,
        "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0},
            "metallicFactor": float(material.metallic),
            "roughnessFactor": float(material.roughness),
        },
    }
    if material.normal_png is not None:
        images.append({"name": "normal", "mimeType": "image/png", "bufferView": buf.add(material.normal_png)})
        textures.append({"sampler": 0, "source": 1})
        gltf_material["normalTexture"] = {"index": len(textures) - 1}
    if material.metallic_roughness_png is not None:
        view = buf.add(material.metallic_roughness_png)
        images.append({"name": "metallicRoughness", "mimeType": "image/png", "bufferView": view})
        textures.append({"sampler": 0, "source": len(images) - 1})
        pbr = gltf_material["pbrMetallicRoughness"]
        pbr["metallicRoughnessTexture"] = {"index": len(textures) - 1}
        pbr["roughnessFactor"] = 1.0
    buf.data.extend(b"\x00" * (-len(buf.data) % 4))

    asset: dict[str, Any] = {"version": "2.0", "generator": generator}
    if asset_extras:
        asset["extras"] = asset_extras
    node: dict[str, Any] = {"name": mesh_name, "mesh": 0}
    if node_extras:
        node["extras"] = node_extras
    document = {
        "asset": asset,
        "scene": 0,
        "scenes": [{"name": "Scene", "nodes": [0]}],
        "nodes": [node],
        "meshes": [{"name": mesh_name, "primitives": gltf_primitives}],
        "materials": [gltf_material],
        "textures": textures,
        "images": images,
        "samplers": [
            {"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}
        ],
        "accessors": accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(buf.data)}],
    }
    json_bytes = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
    json_bytes += b" " * (-len(json_bytes) % 4)
    total = 12 + 8 + len(json_bytes) + 8 + len(buf.data)
    return b"".join(
        [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(json_bytes), CHUNK_JSON),
            json_bytes,
            struct.pack("<II", len(buf.data), CHUNK_BIN),
            bytes(buf.data),
        ]
    )


def read_glb_json(data: bytes) -> dict[str, Any]:
    """The JSON chunk of a GLB (for reports and tests); raises ValueError on a malformed header."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2 or length != len(data):
        raise ValueError("not a complete GLB 2.0 file")
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    if chunk_type != CHUNK_JSON:
        raise ValueError("GLB's first chunk is not JSON")
    return json.loads(data[20 : 20 + chunk_length].decode("utf-8"))
