"""`export --format usd`: head.usdz checked by usd-core's own validators, read back, same LODs as the GLBs."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from _tools import tool_missing
from export_helpers import decode_glb

from exporters import ExportConfig, ExportConfigError, export_asset
from exporters.sample import procedural_head
from flows.cli import main as cli_main
from spin_io.headmesh import write_headmesh

BUDGETS = (1500, 600, 250)


@pytest.fixture(scope="module")
def pxr():
    try:
        import pxr  # noqa: F401
        from pxr import Usd

        return Usd
    except ImportError:
        tool_missing("usd-core (pxr) is not installed: pip install 'spin-to-mesh[usd]'")


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mesh") / "mesh"
    write_headmesh(d, procedural_head(n_lat=24, n_lon=48, texture_size=128))
    return d


@pytest.fixture(scope="module")
def asset(pxr, mesh_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("usd") / "asset"
    config = ExportConfig(lod_budgets=BUDGETS, preview=False, validate=False, format="both", usda=True)
    return export_asset(mesh_dir, out, config)


def test_usd_core_checker_passes_the_package_and_the_loose_copy(asset):
    from exporters.usd import check_usd

    for name in ("head.usdz", "head.usda"):
        result = check_usd(asset.asset_dir / name)
        assert result.errors == [] and result.warnings == [], (name, result.errors, result.warnings)
    assert asset.report["usd"]["check"]["passed"]


def test_checker_is_not_a_no_op(asset, tmp_path):
    """The same stage without upAxis / metersPerUnit, and with a normal map read as sRGB, must fail."""
    from exporters.usd import check_usd

    text = (asset.asset_dir / "head.usda").read_text()
    broken = tmp_path / "head.usda"
    (tmp_path / "textures").symlink_to(asset.asset_dir / "textures")
    broken.write_text(text.replace('    metersPerUnit = 1\n', "").replace('    upAxis = "Y"\n', ""))
    errors = " ".join(check_usd(broken).errors)
    assert "metersPerUnit" in errors and "upAxis" in errors
    normal_srgb = text.replace('token inputs:sourceColorSpace = "raw"', 'token inputs:sourceColorSpace = "sRGB"')
    assert normal_srgb != text
    broken.write_text(normal_srgb)
    assert any("NormalMap" in e or "sourceColorSpace" in e for e in check_usd(broken).errors)


def test_stage_metadata_and_lod_variants(asset, pxr):
    from pxr import UsdGeom

    stage = pxr.Stage.Open(str(asset.asset_dir / "head.usdz"))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == "Y"
    root = stage.GetDefaultPrim()
    assert root.GetPath() == "/head"
    lod = root.GetVariantSets().GetVariantSet("lod")
    assert lod.GetVariantNames() == ["lod0", "lod1", "lod2"] and lod.GetVariantSelection() == "lod0"


def _glb_lod(path) -> tuple[int, np.ndarray, np.ndarray]:
    decoded = decode_glb(path.read_bytes())
    tris = sum(len(p["indices"]) for p in decoded["primitives"])
    pos = np.concatenate([p["POSITION"] for p in decoded["primitives"]])
    return tris, pos.min(0), pos.max(0)


def test_usd_lods_match_the_glbs(asset, pxr):
    """Read back with pxr, compare with the GLBs read by pygltflib: triangles and bounding box per LOD."""
    from exporters.usd import read_usd_lods

    usd_lods = read_usd_lods(asset.asset_dir / "head.usdz")
    assert len(usd_lods) == len(BUDGETS)
    for level, lod in enumerate(usd_lods):
        tris, lo, hi = _glb_lod(asset.asset_dir / asset.report["lods"][level]["file"])
        assert lod["triangles"] == tris == asset.report["lods"][level]["triangles"]
        np.testing.assert_allclose(lod["bounding_box_m"]["min"], lo, atol=1e-7)
        np.testing.assert_allclose(lod["bounding_box_m"]["size"], hi - lo, atol=1e-7)
    assert asset.report["usd"]["lods"] == usd_lods


def test_mesh_uvs_normals_and_material(asset, pxr):
    """st keeps the HeadMesh's v-up origin (the GLB's TEXCOORD_0 flipped back); UsdPreviewSurface is metallic 0."""
    from pxr import UsdGeom, UsdShade

    stage = pxr.Stage.Open(str(asset.asset_dir / "head.usdz"))
    mesh = UsdGeom.Mesh(stage.GetPrimAtPath("/head/mesh"))
    assert mesh.GetSubdivisionSchemeAttr().Get() == "none"
    points = np.asarray(mesh.GetPointsAttr().Get())
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    assert st.GetInterpolation() == "vertex"
    st = np.asarray(st.Get())
    normals = np.asarray(mesh.GetNormalsAttr().Get())
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    decoded = decode_glb((asset.asset_dir / "head.glb").read_bytes())
    glb_pos = np.concatenate([p["POSITION"] for p in decoded["primitives"]])
    glb_uv = np.concatenate([p["TEXCOORD_0"] for p in decoded["primitives"]])
    # every GLB vertex is a USD vertex with the same position and st = (u, 1 - v)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(np.c_[points, st]).query(np.c_[glb_pos, glb_uv[:, 0], 1.0 - glb_uv[:, 1]])
    assert len(points) == len(glb_pos) and dist.max() < 1e-6
    material, _ = UsdShade.MaterialBindingAPI(mesh.GetPrim()).ComputeBoundMaterial()
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetIdAttr().Get() == "UsdPreviewSurface"
    assert surface.GetInput("metallic").Get() == 0.0
    # the roughness map (on by default): a raw texture's g channel drives roughness
    rough_sources = surface.GetInput("roughness").GetConnectedSources()[0]
    assert len(rough_sources) == 1 and rough_sources[0].sourceName == "g"
    rough_tex = UsdShade.Shader(rough_sources[0].source.GetPrim())
    assert rough_tex.GetIdAttr().Get() == "UsdUVTexture"
    assert rough_tex.GetInput("sourceColorSpace").Get() == "raw"
    assert rough_tex.GetInput("file").Get().path.endswith("lod0_roughness.png")
    base = surface.GetInput("diffuseColor").GetConnectedSources()[0][0].source
    assert UsdShade.Shader(base.GetPrim()).GetInput("sourceColorSpace").Get() == "sRGB"
    assert surface.GetInput("normal").HasConnectedSource()
    names = zipfile.ZipFile(asset.asset_dir / "head.usdz").namelist()
    assert names[0] == "head.usdc" and "textures/lod0_albedo.png" in names and "textures/lod1_normal.png" in names
    assert "textures/lod0_roughness.png" in names and "textures/lod2_roughness.png" in names


def test_usd_roughness_factor_without_map(pxr, mesh_dir, tmp_path):
    """--no-roughness-map: roughness is a plain value, the setting."""
    from pxr import UsdShade

    config = ExportConfig(lod_budgets=(300,), preview=False, validate=False, format="usd", roughness_map=False)
    result = export_asset(mesh_dir, tmp_path / "asset", config)
    stage = pxr.Stage.Open(str(result.asset_dir / "head.usdz"))
    surface = UsdShade.Shader(stage.GetPrimAtPath("/head/Looks/skin/PreviewSurface"))
    assert not surface.GetInput("roughness").HasConnectedSource()
    assert surface.GetInput("roughness").Get() == pytest.approx(0.55)
    assert result.report["material"]["roughness_map"] is None


def test_cli_format_usd_writes_only_usd(pxr, mesh_dir, tmp_path, capsys):
    out = tmp_path / "asset"
    argv = ["export", str(mesh_dir), "-o", str(out), "--lod-budgets", "1200,400", "--format", "usd", "--no-preview"]
    assert cli_main(argv) == 0
    assert "head.usdz" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["head.usdz", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["usd"]["files"] == {"usdz": "head.usdz"} and report["settings"]["format"] == "usd"
    assert [lod["file"] for lod in report["lods"]] == [None, None]
    assert [lod["usd_variant"] for lod in report["lods"]] == ["lod0", "lod1"]
    # overwrite as GLB: the USD file of the earlier run goes
    assert cli_main([*argv[:-3], "--overwrite", "--no-preview", "--no-validate"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["head.glb", "head_lod1.glb", "report.json"]


def test_usda_needs_a_usd_format():
    with pytest.raises(ExportConfigError, match="usda"):
        ExportConfig(usda=True)
    with pytest.raises(ExportConfigError, match="format"):
        ExportConfig(format="fbx")
