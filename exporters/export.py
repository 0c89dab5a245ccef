"""HeadMesh folder -> Asset folder: LOD GLBs, turntable preview, report.json (DESIGN.md §2).

Each decimated LOD gets its own tangent-space normal map baked from the full-resolution mesh
(exporters/normalbake.py): a map is only valid in the tangent frames of the mesh it was made for,
so a HeadMesh's own normal map goes, as is, only into undecimated LODs; decimated LODs get a bake
of the source's normal-mapped shading normals instead. With normal_maps off, the HeadMesh's map (if
any) is shared by every LOD as before (approximate on decimated LODs).

Textures are sized per LOD (config.lod_texture_sizes): LOD0 keeps the HeadMesh's albedo (at most
--max-texture-size), each later LOD gets at most half the previous LOD's side, so a far LOD does not
carry the full-size atlas. A HeadMesh whose provenance says its views were synthetic (a procedural
stand-in, not the photo) is labelled as such in every output: a banner across preview.png, top-level
"synthetic"/"warning" in report.json, and the GLB's asset.generator, asset.extras and node name.

Everything that can fail on bad input (settings, output folder, mesh, textures) is checked
before the first byte is written. Each file is written atomically, and report.json is written
last: an asset folder without report.json is incomplete (an overwrite removes the old report first).

With format "usd" or "both" the same LOD meshes, textures and material go into head.usdz (LODs as the
variants of the "lod" variant set, exporters/usd.py), checked by usd-core's validators and read back
for the report. The base colour is the HeadMesh's de-lit albedo unless `lit_texture` asks for the lit
one (albedo_lit.png); the lighting recon divided out is copied into report.json.

Roughness (roughness_map, on by default): a texture estimated from the de-lit albedo (exporters/material.py:
skin at the --roughness level, hair matte, in [0.4, 0.85]), sized like each LOD's albedo, as the GLB's
metallicRoughnessTexture (G roughness, B metallic 0; factors 1 and 0) and USD's roughness (channel g).
With lighting_preview, lighting.png shows LOD0 front and side, de-lit beside relit by the estimated
lighting (exporters/lighting.py re-evaluates recon's SH + key light model from the recorded coefficients,
since exporters do not import recon); a HeadMesh without recorded lighting gets no file and a reason.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.checks import CleanMesh, _check_texture, check_headmesh, load_mesh_dir
from exporters.config import (
    MOBILE_TEXTURE_SIZE,
    ExportConfig,
    default_normal_map_size,
    lod_filename,
    lod_texture_sizes,
)
from exporters.errors import ExportError, OutputExistsError, ValidationFailedError
from exporters.geometry import vertex_normals
from exporters.glb import Material, Primitive, build_glb, uv_to_gltf
from exporters.lod import LodMesh, build_lods, clean_lod
from exporters.normalbake import NormalBaker, shading_frames
from exporters.split import MAX_PRIMITIVE_VERTICES, split_primitives
from exporters.usd import UsdLod
from spin_io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_png
from spin_io.hashing import file_sha256
from spin_io.headmesh import HeadMesh, head_provenance, metrics_block

REPORT_SCHEMA_VERSION = 1
GENERATOR = "spin-to-mesh"
REPORT_NAME = "report.json"
PREVIEW_NAME = "preview.png"
LIGHTING_PREVIEW_NAME = "lighting.png"


@dataclass
class ExportResult:
    """What an export wrote: the folder, the files by role, and the report (as written to report.json)."""

    asset_dir: Path
    files: dict[str, Path]
    report: dict[str, Any] = field(default_factory=dict)


def _generator_version() -> str:
    try:
        from importlib.metadata import version

        return version("spin-to-mesh")
    except Exception:  # not installed as a distribution (running from a checkout)
        return "0.1.0"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    return file_sha256(path)


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG")
    return out.getvalue()


def _fit(image: np.ndarray, size: int | None) -> np.ndarray:
    """Scale an image down (never up) so its longer side is at most `size`, keeping its aspect ratio."""
    height, width = image.shape[:2]
    if size is None or max(height, width) <= size:
        return image
    from PIL import Image

    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(shape, Image.Resampling.LANCZOS))


def _check_output(asset_dir: Path, overwrite: bool) -> None:
    if asset_dir.exists() and not asset_dir.is_dir():
        raise OutputExistsError(f"{asset_dir}: exists and is a file, not a folder; choose another -o path")
    if asset_dir.is_dir() and any(asset_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{asset_dir}: already exists and is not empty; pass --overwrite to replace it")


def _json_safe(value: Any) -> Any:
    """Keep only what JSON can carry (the HeadMesh metadata is free-form)."""
    import json

    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return str(value)


def lod_primitives(lod: LodMesh, with_tangents: bool) -> list[Primitive]:
    """Normals (and tangents), the V flip, and the split into primitives of <= 65,534 vertices."""
    if with_tangents:
        normals, tangents = shading_frames(lod.vertices, lod.faces, lod.uv)  # the frames normalbake bakes into
    else:
        normals, tangents = vertex_normals(lod.vertices, lod.faces), None
    texcoords = uv_to_gltf(lod.uv)
    prims = []
    for part in split_primitives(lod.faces, MAX_PRIMITIVE_VERTICES, lod.vertices):
        ids = part.vertex_ids
        prims.append(
            Primitive(
                positions=lod.vertices[ids],
                normals=normals[ids],
                texcoords=texcoords[ids],
                indices=part.faces.reshape(-1),
                tangents=None if tangents is None else tangents[ids],
            )
        )
    return prims


def _lod_normals(lod: LodMesh, with_tangents: bool) -> np.ndarray:
    """The vertex normals lod_primitives gives the GLB, unsplit (for the USD copy)."""
    if with_tangents:
        return shading_frames(lod.vertices, lod.faces, lod.uv)[0]
    return vertex_normals(lod.vertices, lod.faces)


def _choose_texture(head: HeadMesh, lit: bool) -> tuple[HeadMesh, str]:
    """The base colour: the de-lit albedo (recon's default), or the lit texture when asked and present."""
    from dataclasses import replace

    lighting = (head.metadata or {}).get("lighting")
    delit = isinstance(lighting, dict) and bool(lighting.get("delit", False))
    if lit and head.albedo_lit is not None:
        return replace(head, albedo=head.albedo_lit), "lit"
    if lit:
        return head, "headmesh (no separate lit texture; albedo.png is used as is)"
    return head, "delit" if delit else "headmesh"


def _lighting(head: HeadMesh, mesh_dir: Path | None) -> dict[str, Any] | None:
    """The lighting recon estimated and divided out: mesh.json metadata, else metrics.json ("lighting")."""
    found = (head.metadata or {}).get("lighting")
    if isinstance(found, dict):
        return found
    return None if mesh_dir is None else metrics_block(mesh_dir / "metrics.json", "lighting")


def _bbox(vertices: np.ndarray) -> dict[str, list[float]]:
    lo = np.asarray(vertices, np.float64).min(axis=0)
    hi = np.asarray(vertices, np.float64).max(axis=0)
    return {"min": lo.tolist(), "max": hi.tolist(), "size": (hi - lo).tolist()}


def export_asset(
    source: str | Path | HeadMesh,
    asset_dir: str | Path,
    config: ExportConfig | None = None,
    progress: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a HeadMesh (folder or object) to an Asset folder; returns what was written.

    Raises an ExportError subclass on bad input before writing anything. If the glTF validator
    ran and reported errors or warnings, the files and report.json are still written (with
    "validation": {"passed": false}) and ValidationFailedError is raised.
    """
    t_start = time.perf_counter()
    config = config or ExportConfig()
    asset_dir = Path(asset_dir)
    timings: dict[str, float] = {}
    stages = ["read", "lods"] + (["normal_maps"] if config.normal_maps else []) + ["glb"]
    stages += ["roughness_map"] if config.roughness_map else []
    stages += (["preview"] if config.preview else []) + (["lighting_preview"] if config.lighting_preview else [])
    stages += ["write"]
    stages += ["validate"] if config.validate else []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(stages), desc="export", unit="step", leave=False)

    def stage_done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 4)
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)
        if on_stage is not None:
            on_stage(name)

    try:
        # 1. Check everything before writing anything.
        t0 = time.perf_counter()
        _check_output(asset_dir, config.overwrite)
        usd_version = None
        if config.writes_usd:
            from exporters.usd import require_usd

            usd_version = require_usd()
        source_info: dict[str, Any]
        mesh_dir: Path | None = None
        if isinstance(source, HeadMesh):
            head = source
            source_info = {"mesh_dir": None}
        else:
            mesh_dir = Path(source)
            head = load_mesh_dir(mesh_dir)
            source_info = {
                "mesh_dir": str(mesh_dir.resolve()),
                "sha256": {p.name: _sha256_file(p) for p in sorted(mesh_dir.iterdir()) if p.is_file()},
            }
        lighting = _lighting(head, mesh_dir)
        delit_head = head
        head, texture_source = _choose_texture(head, config.lit_texture)
        mesh: CleanMesh = check_headmesh(head)
        # the roughness map and the lighting preview read the de-lit albedo even when the GLB shows the lit one
        delit_albedo = _check_texture(delit_head.albedo, "albedo texture") if texture_source == "lit" else mesh.albedo
        source_info.update(
            vertices=int(len(head.vertices)),
            triangles=int(len(head.faces)),
            dropped_degenerate_faces=mesh.dropped_faces,
            dropped_duplicate_faces=mesh.dropped_duplicate_faces,
            dropped_unused_vertices=mesh.dropped_vertices,
            metadata=_json_safe(mesh.metadata),
        )
        provenance_raw = head_provenance(mesh.metadata)
        synthetic = bool(provenance_raw["synthetic"])
        warning = str(provenance_raw.get("warning", "")) if synthetic else None
        provenance = _json_safe(provenance_raw)
        # the weights' licences, as the views stage recorded them: every output that used them says so
        licences = provenance.get("licences") if isinstance(provenance.get("licences"), list) else []
        licence_summary = {
            "licences": licences,
            "commercial_use": all(bool(r.get("commercial_use", False)) for r in licences) if licences else None,
        }
        albedo = _fit(mesh.albedo, config.max_texture_size)
        normal_map = None if mesh.normal_map is None else _fit(mesh.normal_map, config.max_texture_size)
        stage_done("read", t0)

        # 2. Levels of detail.
        t0 = time.perf_counter()
        # clean_lod: the last guard, so each file has exactly the triangles the report counts
        lods = [clean_lod(lod) for lod in build_lods(mesh, config.lod_budgets)]
        texture_sizes = lod_texture_sizes(max(albedo.shape[:2]), len(lods))
        albedos = [albedo] + [_fit(albedo, size) for size in texture_sizes[1:]]
        delit_albedo = _fit(delit_albedo, max(albedo.shape[:2]))
        stage_done("lods", t0)

        # 2b. Roughness map (skin vs hair), sized like each LOD's albedo.
        rough_pngs: list[bytes | None] = [None] * len(lods)
        rough_range: tuple[float, float] | None = None
        if config.roughness_map:
            t0 = time.perf_counter()
            from exporters.material import metallic_roughness_image, roughness_map

            rough = roughness_map(delit_albedo, config.roughness)
            rough_range = (float(rough.min()), float(rough.max()))
            packed = metallic_roughness_image(rough)
            rough_pngs = [_encode_png(_fit(packed, max(image.shape[:2]))) for image in albedos]
            stage_done("roughness_map", t0)

        # 3. Normal maps: one per LOD (baked for decimated LODs), PNG-encoded once each.
        normal_size = config.normal_map_size or default_normal_map_size(
            max(albedo.shape[:2]), None if normal_map is None else max(normal_map.shape[:2])
        )
        if config.normal_maps:
            t0 = time.perf_counter()
            lod_normals = _lod_normal_maps(mesh, lods, normal_map, normal_size)
            stage_done("normal_maps", t0)
        else:
            lod_normals = _shared_normal_maps(normal_map, len(lods))

        # 4. GLB bytes (one material per LOD: its own albedo and normal map sizes).
        t0 = time.perf_counter()
        albedo_pngs = [_encode_png(image) for image in albedos]
        version = _generator_version()
        generator = f"{GENERATOR} {version}" + (" (SYNTHETIC head, not from the photo)" if synthetic else "")
        glbs: list[bytes] = []
        usd_lods: list[UsdLod] = []
        lod_entries: list[dict[str, Any]] = []
        for level, lod in enumerate(lods):
            normal_entry = lod_normals[level]
            normal_png = None if normal_entry is None else normal_entry.pop("png")
            prims = lod_primitives(lod, with_tangents=normal_png is not None)
            extras = {
                "generator": GENERATOR,
                "generator_version": version,
                "schema_version": REPORT_SCHEMA_VERSION,
                "units": "metres",
                "axes": "+Y up, face toward +Z",
                "lod": level,
                "triangle_budget": lod.budget,
                "synthetic": synthetic,
                **({"warning": warning, "provenance": provenance} if synthetic else {}),
                **licence_summary,
            }
            name = "head" if level == 0 else f"head_lod{level}"
            data = build_glb(
                prims,
                Material(
                    base_color_png=albedo_pngs[level],
                    roughness=float(config.roughness),
                    normal_png=normal_png,
                    metallic_roughness_png=rough_pngs[level],
                ),
                mesh_name=f"{name}_SYNTHETIC" if synthetic else name,
                asset_extras=extras,
                node_extras={"lod": level, "synthetic": synthetic},
                generator=generator,
            )
            glbs.append(data)
            if config.writes_usd:
                usd_lods.append(
                    UsdLod(lod.vertices, lod.faces, lod.uv, _lod_normals(lod, normal_png is not None),
                           albedo_pngs[level], normal_png, rough_pngs[level])
                )
            lod_entries.append(
                {
                    "level": level,
                    "file": lod_filename(level) if config.writes_glb else None,
                    **({"usd_variant": f"lod{level}"} if config.writes_usd else {}),
                    "triangle_budget": lod.budget,
                    "decimated": lod.decimated,
                    "triangles": int(len(lod.faces)),
                    "vertices": int(sum(len(p.positions) for p in prims)),
                    "primitives": len(prims),
                    "max_primitive_vertices": int(max(len(p.positions) for p in prims)),
                    "bounding_box_m": _bbox(lod.vertices),
                    "albedo": {
                        "width": int(albedos[level].shape[1]),
                        "height": int(albedos[level].shape[0]),
                        "bytes": len(albedo_pngs[level]),
                    },
                    "normal_map": normal_entry,
                    "roughness_map": None if rough_pngs[level] is None else {
                        "width": int(albedos[level].shape[1]),
                        "height": int(albedos[level].shape[0]),
                        "bytes": len(rough_pngs[level]),
                    },
                    "bytes": len(data),
                    "sha256": _sha256(data),
                }
            )
        stage_done("glb", t0)

        preview_image = None
        if config.preview:
            t0 = time.perf_counter()
            preview_image = _render_preview(lods[0], albedo, config)
            if synthetic:
                from exporters.preview import label_synthetic

                preview_image = label_synthetic(preview_image, config.preview_tile)
            stage_done("preview", t0)

        lighting_image = None
        lighting_skip: str | None = None
        if config.lighting_preview:
            t0 = time.perf_counter()
            lighting_image, lighting_skip = _render_lighting_preview(lods[0], delit_albedo, lighting, config)
            if lighting_image is not None and synthetic:
                from exporters.preview import label_synthetic

                lighting_image = label_synthetic(lighting_image, config.preview_tile)
            stage_done("lighting_preview", t0)

        # 5. Write: invalidate an old report first, then files, report last.
        t0 = time.perf_counter()
        asset_dir.mkdir(parents=True, exist_ok=True)
        report_path = asset_dir / REPORT_NAME
        report_path.unlink(missing_ok=True)
        files: dict[str, Path] = {}
        for level, data in enumerate(glbs if config.writes_glb else []):
            files[f"lod{level}"] = atomic_write_bytes(asset_dir / lod_filename(level), data)
        for stale in [*asset_dir.glob("head_lod*.glb"), asset_dir / "head.glb"]:
            if stale.exists() and stale not in files.values():
                stale.unlink()
        usd_entry: dict[str, Any] | None = None
        if config.writes_usd:
            usd_entry = _write_usd(asset_dir, usd_lods, config, usd_version, files, extras_info={
                "generator": generator, "synthetic": synthetic, **({"warning": warning} if synthetic else {})})
        else:
            (asset_dir / "head.usdz").unlink(missing_ok=True)
        preview_entry: dict[str, Any] | None = None
        preview_path = asset_dir / PREVIEW_NAME
        if preview_image is not None:
            files["preview"] = atomic_write_png(preview_path, preview_image)
            preview_entry = {
                "file": PREVIEW_NAME,
                "views": config.preview_views,
                "tile_px": config.preview_tile,
                "sha256": _sha256_file(preview_path),
            }
        else:
            preview_path.unlink(missing_ok=True)
        lighting_entry: dict[str, Any] | None = None
        lighting_path = asset_dir / LIGHTING_PREVIEW_NAME
        if lighting_image is not None:
            files["lighting_preview"] = atomic_write_png(lighting_path, lighting_image)
            lighting_entry = {
                "file": LIGHTING_PREVIEW_NAME,
                "layout": "one row: de-lit front, de-lit side, relit front, relit side (LOD0; the side the key "
                "light comes from)",
                "tile_px": config.preview_tile,
                "sha256": _sha256_file(lighting_path),
            }
        else:
            lighting_path.unlink(missing_ok=True)
            if lighting_skip is not None:
                lighting_entry = {"file": None, "reason": lighting_skip}
        stage_done("write", t0)

        validation: dict[str, Any] = {"ran": False, "reason": "disabled (--no-validate)"}
        if not config.writes_glb:
            validation = {"ran": False, "reason": "no GLB written (--format usd)"}
        elif config.validate:
            t0 = time.perf_counter()
            validation = _validate([files[f"lod{k}"] for k in range(len(glbs))], lod_entries)
            stage_done("validate", t0)

        timings["total"] = round(time.perf_counter() - t_start, 4)
        report = {
            "schema_version": REPORT_SCHEMA_VERSION,
            "generator": GENERATOR,
            "generator_version": version,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "complete": True,
            # top level on purpose: a synthetic head (views not made from the photo) must not pass for a real one
            "synthetic": synthetic,
            **({"warning": warning} if synthetic else {}),
            "provenance": provenance,
            # what the alignment lost (a GrabCut matte, hair cut by the frame): top level, for a TD to filter on
            "alignment_warnings": list(provenance.get("alignment_warnings") or []),
            # None: no record of the weights used (an older or hand-made mesh); False: some are non-commercial
            **licence_summary,
            "source": source_info,
            "settings": {
                "roughness": config.roughness,
                "metallic": 0.0,
                "lod_budgets": list(config.lod_budgets),
                "max_texture_size": config.max_texture_size,
                "texture_size": config.max_texture_size,  # the old name, for readers written before the rename
                "lod_texture_sizes": texture_sizes,
                "preview": config.preview,
                "validate": config.validate,
                "normal_maps": config.normal_maps,
                "normal_map_size": normal_size if config.normal_maps else None,
                "format": config.format,
                "usda": config.usda,
                "lit_texture": config.lit_texture,
                "roughness_map": config.roughness_map,
                "lighting_preview": config.lighting_preview,
            },
            "material": {
                "metallic": 0.0,
                # the factor (no map), or the skin's level of the map (clipped to the map's bounds)
                "roughness": config.roughness,
                # "delit": recon divided the estimated lighting out; "lit": the texture with lighting baked in
                "base_color": texture_source,
                "roughness_map": _roughness_map_entry(config, rough_range),
            },
            # what recon estimated and divided out (SH coefficients, per-view gains); None for older HeadMeshes
            "lighting": _json_safe(lighting),
            "usd": usd_entry,
            "units": "metres",
            "axes": "glTF: +Y up, face toward +Z, right-handed",
            "bounding_box_m": lod_entries[0]["bounding_box_m"],
            # LOD0's albedo; each LOD's own albedo is in lods[i]["albedo"]
            "texture": {
                "width": int(albedo.shape[1]),
                "height": int(albedo.shape[0]),
                "format": "image/png",
                "bytes": len(albedo_pngs[0]),
                # The HeadMesh's own normal map; each LOD's embedded map is in lods[i]["normal_map"].
                "normal_map": normal_map is not None,
                "normal_map_bytes": _headmesh_normal_bytes(lod_normals),
            },
            "lods": lod_entries,
            "preview": preview_entry,
            "lighting_preview": lighting_entry,
            "validation": validation,
            "timings_s": timings,
            "host": {"python": platform.python_version(), "machine": platform.machine()},
        }
        files["report"] = atomic_write_json(report_path, report)
    finally:
        if bar is not None:
            bar.close()
    if usd_entry is not None and not usd_entry["check"]["passed"]:
        raise ValidationFailedError(
            f"usd-core's checker found problems in {asset_dir / 'head.usdz'} (see 'usd' in {report_path}); "
            "please report this as a spin-to-mesh bug with the report attached"
        )
    if validation.get("ran") and not validation.get("passed"):
        raise ValidationFailedError(
            f"the glTF validator found problems in {asset_dir} (see 'validation' in {report_path}); "
            "please report this as a spin-to-mesh bug with the report attached"
        )
    return ExportResult(asset_dir=asset_dir, files=files, report=report)


def _write_usd(
    asset_dir: Path,
    lods: list[UsdLod],
    config: ExportConfig,
    usd_version: str | None,
    files: dict[str, Path],
    extras_info: dict[str, Any],
) -> dict[str, Any]:
    """head.usdz (+ head.usda), then usd-core's checker and a read-back of every LOD variant."""
    from exporters.usd import check_usd, read_usd_lods, write_usd

    written = write_usd(asset_dir, lods, float(config.roughness), usda=config.usda, info=extras_info)
    files.update(written)
    check = check_usd(written["usdz"])
    return {
        "usd_core": usd_version,
        "files": {role: path.name for role, path in written.items()},
        "sha256": {path.name: _sha256_file(path) for path in written.values()},
        "meters_per_unit": 1.0,
        "up_axis": "Y",
        "lod_variant_set": "lod",
        "lods": read_usd_lods(written["usdz"]),
        "check": check.summary(),
    }


def _encoded_normal_map(image: np.ndarray, origin: str) -> dict[str, Any]:
    png = _encode_png(image)
    height, width = image.shape[:2]
    return {"origin": origin, "width": int(width), "height": int(height), "bytes": len(png), "png": png}


def _next_normal_size(level: int, previous: int | None, first: int) -> int:
    """A LOD's normal-map side: `first` for the first map, then at most half the previous LOD's map;
    LOD2 onward also at most MOBILE_TEXTURE_SIZE."""
    size = first if previous is None else min(first, max(1, previous // 2))
    return min(size, MOBILE_TEXTURE_SIZE) if level >= 2 else size


def _shared_normal_maps(normal_map: np.ndarray | None, levels: int) -> list[dict[str, Any] | None]:
    """normal_maps off: the HeadMesh's map (if any) in every LOD, halved per LOD like the albedo."""
    if normal_map is None:
        return [None] * levels
    out: list[dict[str, Any] | None] = []
    previous: int | None = None
    for level in range(levels):
        size = _next_normal_size(level, previous, max(normal_map.shape[:2]))
        out.append(_encoded_normal_map(_fit(normal_map, size), "headmesh"))
        previous = size
    return out


def _lod_normal_maps(
    mesh: CleanMesh, lods: list[LodMesh], normal_map: np.ndarray | None, size: int
) -> list[dict[str, Any] | None]:
    """Per LOD: the HeadMesh's map (undecimated LOD), a bake from the full mesh (decimated LOD), or None.

    An undecimated LOD without a HeadMesh map needs none: baking it would give a flat map. `size` is the
    first baked map's side; each map is at most half the previous LOD's (_next_normal_size).
    """
    bakers: dict[int, NormalBaker] = {}
    out: list[dict[str, Any] | None] = []
    previous: int | None = None
    for level, lod in enumerate(lods):
        if not lod.decimated:
            if normal_map is None:
                out.append(None)
                continue
            side = _next_normal_size(level, previous, max(normal_map.shape[:2]))
            out.append(_encoded_normal_map(_fit(normal_map, side), "headmesh"))
            previous = side
            continue
        side = _next_normal_size(level, previous, size)
        if side not in bakers:
            lookup = next(iter(bakers.values())).lookup if bakers else None
            bakers[side] = NormalBaker(
                mesh.vertices, mesh.faces, mesh.uv, side, source_normal_map=normal_map, lookup=lookup
            )
        out.append(_encoded_normal_map(bakers[side].bake(lod), "baked"))
        previous = side
    return out


def _headmesh_normal_bytes(lod_normals: list[dict[str, Any] | None]) -> int | None:
    sizes = [e["bytes"] for e in lod_normals if e is not None and e["origin"] == "headmesh"]
    return sizes[0] if sizes else None


def _render_preview(lod: LodMesh, albedo: np.ndarray, config: ExportConfig) -> np.ndarray:
    from exporters.preview import turntable_sheet

    return turntable_sheet(
        lod.vertices, lod.faces, lod.uv, albedo, views=config.preview_views, tile=config.preview_tile
    )


def _roughness_map_entry(config: ExportConfig, found: tuple[float, float] | None) -> dict[str, Any] | None:
    """What report.json says about the roughness texture; None when one factor is used."""
    if found is None:
        return None
    from exporters.material import HAIR_ROUGHNESS, ROUGHNESS_MAX, ROUGHNESS_MIN

    return {
        "enabled": True,
        "source": "de-lit albedo (skin: warm, saturated, mid-bright; hair: dark, grey or busy)",
        "channels": "glTF metallicRoughnessTexture: G roughness, B metallic (0); USD roughness reads g",
        "bounds": [ROUGHNESS_MIN, ROUGHNESS_MAX],
        "skin": float(min(max(config.roughness, ROUGHNESS_MIN), ROUGHNESS_MAX)),
        "hair": HAIR_ROUGHNESS,
        "range": [round(found[0], 4), round(found[1], 4)],
        "roughness_factor": 1.0,
        "metallic_factor": 0.0,
    }


def _render_lighting_preview(
    lod: LodMesh, albedo: np.ndarray, lighting: dict[str, Any] | None, config: ExportConfig
) -> tuple[np.ndarray | None, str | None]:
    """lighting.png's image, or (None, why not) when the HeadMesh carries no evaluable lighting."""
    from exporters.lighting import has_lighting
    from exporters.preview import lighting_sheet

    if not has_lighting(lighting):
        return None, "the HeadMesh records no estimated lighting (metadata/metrics 'lighting' with 'sh')"
    return lighting_sheet(lod.vertices, lod.faces, lod.uv, albedo, lighting, tile=config.preview_tile), None


def _validate(paths: list[Path], lod_entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the validator if it is installed; record per-LOD results; never raises for a missing tool."""
    from exporters.validate import find_validator, summarize, validate_glbs

    info = find_validator()
    if info is None:
        return {"ran": False, "reason": "gltf-validator not found (install Node.js and run `npm install`)"}
    try:
        reports = validate_glbs(paths)
    except ExportError as exc:
        return {"ran": False, "reason": str(exc)}
    summaries = [summarize(r) for r in reports]
    for entry, summary in zip(lod_entries, summaries, strict=True):
        entry["validator"] = summary
    return {
        "ran": True,
        "validator": str(info.version),
        "passed": all(s["errors"] == 0 and s["warnings"] == 0 for s in summaries),
        "errors": sum(s["errors"] for s in summaries),
        "warnings": sum(s["warnings"] for s in summaries),
        "infos": sum(s["infos"] for s in summaries),
        "hints": sum(s["hints"] for s in summaries),
    }
