"""Read and check the exporter's input: every problem is reported before anything is written.

The HeadMesh reader (spin_io) checks that the files exist; geometric validity is checked here,
because the exporter is where a bad value would silently become a broken GLB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.errors import (
    EmptyMeshError,
    FaceIndexError,
    MeshInputError,
    NonFiniteVerticesError,
    TextureError,
    UVError,
)
from exporters.geometry import clean_faces
from spin_io.errors import ContractError
from spin_io.headmesh import HeadMesh, read_headmesh

# UVs written as float32 from a [0, 1] computation can land a rounding step outside the range.
UV_TOLERANCE = 1e-5


@dataclass
class CleanMesh:
    """A checked mesh: finite float32 vertices, int64 faces without repeated corners, UVs in [0, 1]."""

    vertices: np.ndarray  # (N, 3) float32, metres, glTF axes
    faces: np.ndarray  # (M, 3) int64
    uv: np.ndarray  # (N, 2) float32, v up (HeadMesh convention)
    albedo: np.ndarray  # (H, W, 3) uint8
    normal_map: np.ndarray | None
    metadata: dict[str, Any] = field(default_factory=dict)
    dropped_faces: int = 0
    dropped_vertices: int = 0
    dropped_duplicate_faces: int = 0  # zero area by position, or on the same three points as another face


def _check_image_file(path: Path, what: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise TextureError(
            f"{path}: the {what} is not a readable image ({exc}); write it as an RGB PNG or re-run recon"
        ) from exc


def load_mesh_dir(mesh_dir: str | Path) -> HeadMesh:
    """Read a HeadMesh folder; any problem raises an ExportError subclass naming the file."""
    mesh_dir = Path(mesh_dir)
    if not mesh_dir.is_dir():
        raise MeshInputError(
            f"{mesh_dir}: no such mesh folder (expected head.npz + albedo.png, as written by `spin-to-mesh recon`)"
        )
    for name, what in (("albedo.png", "albedo texture"), ("normal_map.png", "normal map")):
        if (mesh_dir / name).is_file():
            _check_image_file(mesh_dir / name, what)
    npz_path = mesh_dir / "head.npz"
    if npz_path.is_file():
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                has_uv = "uv" in data.files
        except (OSError, ValueError) as exc:
            raise MeshInputError(f"{npz_path}: not a readable .npz file ({exc}); re-run recon") from exc
        if not has_uv:
            raise UVError(f"{npz_path}: has no 'uv' array; the exporter needs per-vertex UVs (re-run recon)")
    try:
        return read_headmesh(mesh_dir)
    except ContractError as exc:
        raise MeshInputError(str(exc)) from exc


def _check_texture(image: Any, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TextureError(f"the {what} must be uint8 RGB, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TextureError(f"the {what} must be an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise TextureError(f"the {what} is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr[:, :, :3])


def check_headmesh(mesh: HeadMesh) -> CleanMesh:
    """Check a HeadMesh and return a cleaned copy, or raise the MeshInputError/TextureError that explains it.

    Faces that repeat a corner (zero area by construction), faces on coincident positions or on the same
    three points as another face (exporters.geometry.clean_faces) and vertices no face uses are dropped
    and counted (the report says how many); anything else that is wrong is an error.
    """
    v = np.asarray(mesh.vertices)
    f = np.asarray(mesh.faces)
    uv = None if mesh.uv is None else np.asarray(mesh.uv)
    if v.size == 0 or f.size == 0:
        raise EmptyMeshError(
            f"the mesh is empty ({v.shape[0] if v.ndim else 0} vertices, {f.shape[0] if f.ndim else 0} faces); "
            "reconstruction produced no surface: check the masks/views and re-run recon"
        )
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number):
        raise MeshInputError(f"vertices must be an (N, 3) float array, got shape {v.shape} dtype {v.dtype}")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise MeshInputError(f"faces must be an (M, 3) integer array of triangles, got shape {f.shape} dtype {f.dtype}")
    finite = np.isfinite(v).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise NonFiniteVerticesError(
            f"{bad.size} of {v.shape[0]} vertices have NaN or infinite coordinates (first: vertex {bad[0]}); "
            "the reconstruction diverged: re-run recon"
        )
    f = f.astype(np.int64)
    out_of_range = (f < 0) | (f >= v.shape[0])
    if out_of_range.any():
        bad_face = int(np.flatnonzero(out_of_range.any(axis=1))[0])
        raise FaceIndexError(
            f"{int(out_of_range.any(axis=1).sum())} faces use vertex indices outside [0, {v.shape[0] - 1}] "
            f"(first: face {bad_face} = {f[bad_face].tolist()}); the faces do not belong to these vertices"
        )
    if uv is None or uv.size == 0:
        raise UVError("the mesh has no UVs; the exporter needs per-vertex UVs (unwrap with xatlas in recon)")
    if uv.ndim != 2 or uv.shape != (v.shape[0], 2) or not np.issubdtype(uv.dtype, np.number):
        raise UVError(f"UVs must be an (N, 2) float array with one row per vertex ({v.shape[0]}), got shape {uv.shape}")
    uv_finite = np.isfinite(uv).all(axis=1)
    if not uv_finite.all():
        raise UVError(
            f"{int((~uv_finite).sum())} UVs are NaN or infinite (first: vertex {np.flatnonzero(~uv_finite)[0]})"
        )
    outside = ((uv < -UV_TOLERANCE) | (uv > 1 + UV_TOLERANCE)).any(axis=1)
    if outside.any():
        raise UVError(
            f"{int(outside.sum())} UVs lie outside [0, 1] (range u {uv[:, 0].min():.4g}..{uv[:, 0].max():.4g}, "
            f"v {uv[:, 1].min():.4g}..{uv[:, 1].max():.4g}); the texture atlas must cover [0, 1]^2: re-unwrap"
        )
    albedo = _check_texture(mesh.albedo, "albedo texture")
    normal_map = None if mesh.normal_map is None else _check_texture(mesh.normal_map, "normal map")

    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    kept = f[~repeated]
    if kept.shape[0] == 0:
        raise EmptyMeshError(f"all {f.shape[0]} faces repeat a vertex (zero area); the mesh has no surface")
    # faces on coincident positions (seam copies) and back-to-back duplicates: Blender deletes them on import
    kept = kept[clean_faces(np.asarray(v, np.float32), kept)]
    if kept.shape[0] == 0:
        raise EmptyMeshError(f"all {f.shape[0]} faces have zero area or repeat another face; the mesh has no surface")
    used = np.zeros(v.shape[0], bool)
    used[kept.ravel()] = True
    remap = np.cumsum(used) - 1
    return CleanMesh(
        vertices=np.ascontiguousarray(v[used], dtype=np.float32),
        faces=remap[kept],
        uv=np.clip(uv[used], 0.0, 1.0).astype(np.float32),
        albedo=albedo,
        normal_map=normal_map,
        metadata=dict(mesh.metadata or {}),
        dropped_faces=int(repeated.sum()),
        dropped_vertices=int((~used).sum()),
        dropped_duplicate_faces=int((~repeated).sum() - kept.shape[0]),
    )
