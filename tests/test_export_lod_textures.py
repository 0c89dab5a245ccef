"""Issue 15 item 3: each LOD's textures are sized for that LOD (at most half the previous LOD's side), LOD2
onward fit for mobile, and the texture-size option is --max-texture-size (--texture-size still works)."""

from __future__ import annotations

import json

import pytest
from export_helpers import decode_glb, field_error

from exporters import ExportConfig, export_asset
from exporters.cli import register
from exporters.config import MOBILE_TEXTURE_SIZE, lod_texture_sizes
from exporters.errors import ExportConfigError
from exporters.sample import procedural_head
from flows.cli import main as cli_main
from spin_io.headmesh import write_headmesh

BUDGETS = (5_000, 1_500, 500)


@pytest.fixture(scope="module")
def head():
    return procedural_head(n_lat=40, n_lon=80, texture_size=512)  # 6,240 triangles: every LOD decimated


@pytest.fixture(scope="module")
def asset(head, tmp_path_factory):
    out = tmp_path_factory.mktemp("tex") / "asset"
    result = export_asset(head, out, ExportConfig(lod_budgets=BUDGETS, preview=False, validate=False))
    return result, [decode_glb(result.files[f"lod{k}"].read_bytes()) for k in range(len(BUDGETS))]


def test_each_lod_embeds_textures_at_most_half_the_previous_lods(asset):
    result, glbs = asset
    albedo = [g["images"][0].shape[:2] for g in glbs]
    normal = [g["images"][1].shape[:2] for g in glbs]
    assert albedo == [(512, 512), (256, 256), (128, 128)]
    for k in range(1, len(glbs)):
        assert max(albedo[k]) <= max(albedo[k - 1]) // 2
        assert max(normal[k]) <= max(normal[k - 1]) // 2
        assert glbs[k]["gltf"].images[0].name == "baseColor" and glbs[k]["gltf"].images[1].name == "normal"
    sizes = [len(result.files[f"lod{k}"].read_bytes()) for k in range(len(glbs))]
    assert sizes[2] * 3 < sizes[0]  # the far LOD no longer carries the full-size atlas


def test_report_describes_each_lods_textures(asset):
    result, glbs = asset
    report = json.loads(result.files["report"].read_text())
    assert report["settings"]["lod_texture_sizes"] == [512, 256, 128]
    for entry, glb in zip(report["lods"], glbs, strict=True):
        h, w = glb["images"][0].shape[:2]
        assert (entry["albedo"]["width"], entry["albedo"]["height"]) == (w, h)
        assert entry["normal_map"]["width"] == glb["images"][1].shape[1]
    assert report["texture"]["width"] == 512  # LOD0's


def test_smaller_textures_still_show_the_right_colours(head, asset):
    """The LOD2 texture (128 px of a 512 px atlas) read through the LOD2 file's own UVs still matches the
    colour field of the surface: downscaling kept the atlas layout."""
    _, glbs = asset
    prim = glbs[2]["primitives"][0]
    uv = prim["TEXCOORD_0"] * [1, -1] + [0, 1]  # back to v up
    err = field_error(prim["POSITION"], prim["indices"], uv, glbs[2]["images"][0])
    assert err.mean() < 0.06, err.mean()
    flipped = field_error(prim["POSITION"], prim["indices"], prim["TEXCOORD_0"], glbs[2]["images"][0])
    assert flipped.mean() > 2 * err.mean()  # the measure can fail


def test_lod_texture_sizes_halve_and_cap_for_mobile():
    assert lod_texture_sizes(2048, 3) == [2048, 1024, 512]
    assert lod_texture_sizes(4096, 4) == [4096, 2048, MOBILE_TEXTURE_SIZE, MOBILE_TEXTURE_SIZE // 2]
    assert lod_texture_sizes(64, 1) == [64]


def test_max_texture_size_caps_lod0_and_never_upscales(head, tmp_path):
    config = ExportConfig(lod_budgets=(5_000, 1_500), max_texture_size=128, preview=False, validate=False)
    result = export_asset(head, tmp_path / "a", config)
    sizes = [decode_glb(result.files[k].read_bytes())["images"][0].shape[:2] for k in ("lod0", "lod1")]
    assert sizes == [(128, 128), (64, 64)]
    big = ExportConfig(lod_budgets=(5_000,), max_texture_size=4096, preview=False, validate=False)
    result = export_asset(head, tmp_path / "b", big)
    assert decode_glb(result.files["lod0"].read_bytes())["images"][0].shape[:2] == (512, 512)


def test_old_texture_size_name_is_an_alias():
    assert ExportConfig(texture_size=256).max_texture_size == 256
    assert ExportConfig(max_texture_size=256).texture_size == 256
    with pytest.raises(ExportConfigError, match="max_texture_size"):
        ExportConfig(texture_size=256, max_texture_size=512)


def test_cli_max_texture_size_and_hidden_alias(head, tmp_path, capsys):
    import argparse

    mesh_dir = write_headmesh(tmp_path / "mesh", head)
    base = ["export", str(mesh_dir), "--lod-budgets", "1500,500", "--no-preview", "--no-validate"]
    for flag, name in (("--max-texture-size", "a"), ("--texture-size", "b")):
        assert cli_main([*base, "-o", str(tmp_path / name), flag, "128"]) == 0
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["settings"]["lod_texture_sizes"] == [128, 64]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["export"].format_help()
    assert "--max-texture-size" in help_text and "--texture-size" not in help_text.replace("--max-texture-size", "")
