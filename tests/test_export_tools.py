"""Real glTF clients: the Khronos validator (0 errors, 0 warnings) and a headless Blender import."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from _tools import tool_missing
from export_helpers import grid_mesh, quad_mesh, require_validator

from exporters import ExportConfig, export_asset
from exporters.blender_check import blender_import_report, find_blender
from exporters.glb import read_glb_json
from exporters.sample import procedural_head
from exporters.validate import summarize, validate_glbs


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Every kind of GLB the exporter writes: LODs with a normal map, a split mesh, a single quad."""
    root = tmp_path_factory.mktemp("tools")
    config = ExportConfig(lod_budgets=(2000, 700, 250), preview=False, validate=False)
    head = export_asset(procedural_head(n_lat=32, n_lon=64, texture_size=256, normal_map=True), root / "head", config)
    split = export_asset(
        grid_mesh(262), root / "split", ExportConfig(lod_budgets=(200_000,), preview=False, validate=False)
    )
    quad = export_asset(quad_mesh(), root / "quad", ExportConfig(lod_budgets=(100,), preview=False, validate=False))
    return {"head": head, "split": split, "quad": quad}


def _glbs(assets):
    return [path for result in assets.values() for key, path in result.files.items() if key.startswith("lod")]


def test_validator_reports_no_errors_or_warnings(assets):
    require_validator()
    paths = _glbs(assets)
    reports = validate_glbs(paths)
    assert len(reports) == len(paths) == 5
    for path, report in zip(paths, reports, strict=True):
        summary = summarize(report)
        assert summary["errors"] == 0 and summary["warnings"] == 0, (path, report["issues"]["messages"])
        info = report["info"]
        assert info["version"] == "2.0" and info["materialCount"] == 1 and info["drawCallCount"] >= 1
        # the roughness map (default) is part of what the validator checked
        pbr = read_glb_json(path.read_bytes())["materials"][0]["pbrMetallicRoughness"]
        assert "metallicRoughnessTexture" in pbr, path
    head_info = reports[0]["info"]
    assert head_info["hasTextures"] and head_info["maxAttributes"] == 4  # POSITION NORMAL TEXCOORD_0 TANGENT


def test_validator_catches_a_broken_file(assets, tmp_path):
    """The validator client really inspects our files: a wrong POSITION max must be reported as an error."""
    require_validator()
    data = assets["quad"].files["lod0"].read_bytes()
    doc = read_glb_json(data)
    doc["accessors"][0]["max"] = [9.0, 9.0, 9.0]
    json_bytes = json.dumps(doc, separators=(",", ":")).encode()
    json_bytes += b" " * (-len(json_bytes) % 4)
    old_len = struct.unpack_from("<I", data, 12)[0]
    rest = data[20 + old_len :]
    broken = struct.pack("<III", 0x46546C67, 2, 20 + len(json_bytes) + len(rest))
    broken += struct.pack("<II", len(json_bytes), 0x4E4F534A) + json_bytes + rest
    (tmp_path / "broken.glb").write_bytes(broken)
    report = validate_glbs([tmp_path / "broken.glb"])[0]
    assert report["issues"]["numErrors"] >= 1
    assert any(m["code"].startswith("ACCESSOR_MAX_MISMATCH") for m in report["issues"]["messages"])


def test_blender_imports_every_glb(assets):
    """One Blender launch for all files: counts, one material with an image texture, size within 1 %."""
    if find_blender() is None:
        tool_missing("Blender not installed (apt-get install blender); CI runs this check")
    paths = _glbs(assets)
    expected = [lod for result in assets.values() for lod in result.report["lods"]]
    results = blender_import_report(paths)
    assert len(results) == len(paths)
    for result, lod in zip(results, expected, strict=True):
        (obj,) = result["objects"]  # one mesh object, even when the mesh has several primitives
        # Blender's importer keeps one vertex per glTF vertex (seam copies and primitive-cut copies are not
        # merged with the default import settings), so its count is the GLB total.
        assert obj["vertices"] == lod["vertices"], result["file"]
        assert obj["faces"] == lod["triangles"]
        assert len(obj["materials"]) == 1 and obj["materials"][0]["images"], result["file"]
        assert obj["uv_layers"] == 1 and obj["matrix_is_identity_rotation_scale"]
        np.testing.assert_allclose(obj["dimensions_gltf"], lod["bounding_box_m"]["size"], rtol=0.01)
    normal_mapped = results[0]["objects"][0]["materials"][0]["images"]
    # baseColor + roughness map (on by default) + normal map
    assert sorted(normal_mapped) == ["baseColor", "metallicRoughness", "normal"]
