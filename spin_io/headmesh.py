"""HeadMesh contract (docs/DESIGN.md §2): the textured head that `recon` writes and `exporters` reads.

Folder layout::

    mesh/
      head.npz        vertices (N,3) float32 metres in glTF axes (+Y up, face toward +Z),
                      faces (M,3) int32 (counter-clockwise seen from outside),
                      uv (N,2) float32 in [0,1], v measured UP from the bottom row of the
                      texture (the OpenGL/OBJ/trimesh convention; glTF's top-left origin is
                      applied by the exporter)
      albedo.png      baseColor texture, RGB uint8
      normal_map.png  optional tangent-space normal map (glTF convention, +Y = +V)
      mesh.json       schema_version, units, axes, uv_origin, free-form metadata
      metrics.json    optional, written by recon (reprojection errors, coverage, timings)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spin_io.atomic import atomic_path, atomic_write_json, atomic_write_png
from spin_io.errors import ContractError

SCHEMA_VERSION = 1


@dataclass
class HeadMesh:
    """A textured triangle mesh in metres and glTF axes, with per-vertex UVs."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    albedo: np.ndarray
    normal_map: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def write_headmesh(mesh_dir: str | Path, mesh: HeadMesh, metrics: dict[str, Any] | None = None) -> Path:
    """Write `mesh` into `mesh_dir` (every file atomically; mesh.json last, so it marks completion)."""
    mesh_dir = Path(mesh_dir)
    mesh_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(mesh_dir / "head.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                vertices=np.asarray(mesh.vertices, np.float32),
                faces=np.asarray(mesh.faces, np.int32),
                uv=np.asarray(mesh.uv, np.float32),
            )
    atomic_write_png(mesh_dir / "albedo.png", np.asarray(mesh.albedo, np.uint8))
    if mesh.normal_map is not None:
        atomic_write_png(mesh_dir / "normal_map.png", np.asarray(mesh.normal_map, np.uint8))
    if metrics is not None:
        atomic_write_json(mesh_dir / "metrics.json", metrics)
    atomic_write_json(
        mesh_dir / "mesh.json",
        {
            "schema_version": SCHEMA_VERSION,
            "units": "m",
            "axes": "gltf (+Y up, face toward +Z)",
            "uv_origin": "bottom-left",
            "has_normal_map": mesh.normal_map is not None,
            "metadata": mesh.metadata,
        },
    )
    return mesh_dir


def _load_image(path: Path, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ContractError(f"{path}: the {what} is not a readable image ({exc}); re-run recon") from exc


def read_headmesh(mesh_dir: str | Path) -> HeadMesh:
    """Read a HeadMesh folder; a missing or malformed file raises ContractError naming it.

    Geometric validation (NaN, index range, UV range) is the consumer's job (the exporter checks
    and explains every problem); this only checks that the files exist and have the right arrays.
    """
    mesh_dir = Path(mesh_dir)
    if not mesh_dir.is_dir():
        raise ContractError(
            f"{mesh_dir}: no such mesh folder (expected head.npz + albedo.png from `spin-to-mesh recon`)"
        )
    npz_path = mesh_dir / "head.npz"
    if not npz_path.is_file():
        raise ContractError(f"{npz_path}: missing; a HeadMesh folder needs head.npz and albedo.png")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ContractError(f"{npz_path}: not a readable .npz file ({exc})") from exc
    for key in ("vertices", "faces", "uv"):
        if key not in arrays:
            raise ContractError(f"{npz_path}: has no '{key}' array (found: {sorted(arrays)})")
    albedo_path = mesh_dir / "albedo.png"
    if not albedo_path.is_file():
        raise ContractError(f"{albedo_path}: missing; the baseColor texture is required")
    albedo = _load_image(albedo_path, "albedo texture")
    normal_path = mesh_dir / "normal_map.png"
    normal_map = _load_image(normal_path, "normal map") if normal_path.is_file() else None
    metadata: dict[str, Any] = {}
    meta_path = mesh_dir / "mesh.json"
    if meta_path.is_file():
        try:
            info = json.loads(meta_path.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise ContractError(f"{meta_path}: invalid JSON ({exc})") from exc
        if info.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
            raise ContractError(
                f"{meta_path}: schema_version {info['schema_version']} is newer than this spin-to-mesh "
                f"understands ({SCHEMA_VERSION}); upgrade spin-to-mesh"
            )
        metadata = dict(info.get("metadata", {}))
    return HeadMesh(
        vertices=arrays["vertices"],
        faces=arrays["faces"],
        uv=arrays["uv"],
        albedo=albedo,
        normal_map=normal_map,
        metadata=metadata,
    )
