"""HeadMesh contract (docs/DESIGN.md §2): the textured head that `recon` writes and `exporters` reads.

Folder layout::

    mesh/
      head.npz        vertices (N,3) float32 metres in glTF axes (+Y up, face toward +Z),
                      faces (M,3) int32 (counter-clockwise seen from outside),
                      uv (N,2) float32 in [0,1], v measured UP from the bottom row of the
                      texture (the OpenGL/OBJ/trimesh convention; glTF's top-left origin is
                      applied by the exporter)
      albedo.png      baseColor texture, RGB uint8 (de-lit by recon: the estimated lighting divided out)
      albedo_lit.png  optional: the same atlas with the lighting of the views baked in (artists sometimes
                      want it; `export --lit-texture`); folders without it are read as before
      normal_map.png  optional tangent-space normal map (glTF convention, +Y = +V)
      mesh.json       schema_version, units, axes, uv_origin, free-form metadata
                      (metadata["provenance"]: where the views came from, see provenance_from_generation)
      metrics.json    optional, written by recon (reprojection errors, coverage, timings)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spin_io.aligned import warning_list
from spin_io.atomic import atomic_path, atomic_write_json, atomic_write_png
from spin_io.errors import ContractError

SCHEMA_VERSION = 1
PROVENANCE_KEY = "provenance"
SYNTHETIC_WARNING = "SYNTHETIC HEAD - not from the photo: a procedural stand-in rendered for demos and tests"


def provenance_from_generation(generation: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance a HeadMesh carries from its ViewSet's `generation` block, so the exporter can say
    on every output whether the head came from the photo or from a synthetic stand-in.

    A ViewSet is synthetic when generation["backend"] == "synthetic" (flows) or generation["synthetic"]
    is set (True, or the procedural head's name as recon.synth writes it).
    """
    gen = generation if isinstance(generation, dict) else {}
    flag = gen.get("synthetic")
    synthetic = gen.get("backend") == "synthetic" or (flag is not None and flag is not False and flag != "")
    out: dict[str, Any] = {"synthetic": bool(synthetic)}
    backend = gen.get("backend") or ("synthetic" if synthetic else None)
    if backend is not None:
        out["views_backend"] = str(backend)
    if isinstance(flag, str) and flag:
        out["synthetic_head"] = flag
    elif isinstance(gen.get("synthetic_head"), str):
        out["synthetic_head"] = gen["synthetic_head"]
    if synthetic:
        out["warning"] = SYNTHETIC_WARNING
    licences = gen.get("licences")
    if isinstance(licences, list):
        out["licences"] = [dict(r) for r in licences if isinstance(r, dict)]
    warnings = warning_list(gen.get("alignment_warnings"))
    if warnings:  # face.json's, so report.json says what the crop lost
        out["alignment_warnings"] = warnings
    return out


def head_provenance(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance dict of HeadMesh metadata ({"synthetic": False} when it says nothing)."""
    prov = (metadata or {}).get(PROVENANCE_KEY)
    if not isinstance(prov, dict):
        return {"synthetic": False}
    out = dict(prov)
    out["synthetic"] = bool(prov.get("synthetic", False))
    if out["synthetic"]:
        out.setdefault("warning", SYNTHETIC_WARNING)
    return out


@dataclass
class HeadMesh:
    """A textured triangle mesh in metres and glTF axes, with per-vertex UVs."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    albedo: np.ndarray
    normal_map: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    albedo_lit: np.ndarray | None = None  # the texture with the views' lighting left in (albedo is de-lit)


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
    if mesh.albedo_lit is not None:
        atomic_write_png(mesh_dir / "albedo_lit.png", np.asarray(mesh.albedo_lit, np.uint8))
    else:
        (mesh_dir / "albedo_lit.png").unlink(missing_ok=True)  # never pair a new albedo with an old lit one
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
            "has_albedo_lit": mesh.albedo_lit is not None,
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
    lit_path = mesh_dir / "albedo_lit.png"
    albedo_lit = _load_image(lit_path, "lit texture") if lit_path.is_file() else None
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
    if PROVENANCE_KEY not in metadata:
        # Folders written before mesh.json carried provenance: recon's metrics.json has the ViewSet's generation.
        generation = metrics_block(mesh_dir / "metrics.json", "generation")
        if generation is not None:
            metadata[PROVENANCE_KEY] = provenance_from_generation(generation)
    return HeadMesh(
        vertices=arrays["vertices"],
        faces=arrays["faces"],
        uv=arrays["uv"],
        albedo=albedo,
        normal_map=normal_map,
        metadata=metadata,
        albedo_lit=albedo_lit,
    )


def metrics_block(path: Path, key: str) -> dict[str, Any] | None:
    """One block of a HeadMesh's metrics.json ("generation", "lighting"), or None when the file is missing or
    unreadable or the block is absent (metrics.json is optional in the contract)."""
    if not path.is_file():
        return None
    try:
        block = json.loads(path.read_text("utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return block if isinstance(block, dict) else None
