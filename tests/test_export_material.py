"""Roughness map (skin vs hair) in the GLB and report, and the relit lighting preview (issue 17)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from export_helpers import decode_glb
from PIL import Image

from exporters import ExportConfig, export_asset
from exporters.material import ROUGHNESS_MAX, ROUGHNESS_MIN
from exporters.sample import procedural_head
from spin_io.headmesh import write_headmesh

BUDGETS = (1500, 600, 250)
SKIN = (224, 172, 140)
TILE = 64


def skin_and_hair_albedo(size: int = 128, seed: int = 0) -> np.ndarray:
    """Left half smooth skin colour, right half dark, low-saturation, noisy 'hair' (texture columns)."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:, : size // 2] = np.array(SKIN) + rng.normal(0, 2, (size, size // 2, 1))
    strands = rng.normal(55, 25, (size, size - size // 2, 1))
    img[:, size // 2 :] = strands * np.array([1.0, 0.95, 0.9])
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def material_asset(tmp_path_factory):
    head = replace(procedural_head(n_lat=24, n_lon=48, texture_size=128), albedo=skin_and_hair_albedo())
    out = tmp_path_factory.mktemp("material") / "asset"
    return export_asset(head, out, ExportConfig(lod_budgets=BUDGETS, preview=False, validate=False))


def _roughness_image(glb: dict) -> tuple[np.ndarray, dict]:
    gltf = glb["gltf"]
    pbr = gltf.materials[0].pbrMetallicRoughness
    source = gltf.textures[pbr.metallicRoughnessTexture.index].source
    return glb["images"][source], pbr


def test_glb_roughness_texture_is_rougher_on_hair_than_on_skin(material_asset):
    for level, lod in enumerate(material_asset.report["lods"]):
        glb = decode_glb((material_asset.asset_dir / lod["file"]).read_bytes())
        rough, pbr = _roughness_image(glb)
        base = glb["images"][glb["gltf"].textures[pbr.baseColorTexture.index].source]
        assert rough.shape == base.shape, level  # sized like this LOD's albedo
        assert pbr.roughnessFactor == 1.0 and pbr.metallicFactor == 0.0  # the texture rules
        assert (rough[..., 2] == 0).all()  # B = metallic = 0
        g = rough[..., 1].astype(np.float64) / 255.0
        assert g.min() >= ROUGHNESS_MIN - 1 / 255 and g.max() <= ROUGHNESS_MAX + 1 / 255
        w = g.shape[1]
        skin, hair = g[:, int(0.1 * w) : int(0.4 * w)], g[:, int(0.6 * w) : int(0.9 * w)]
        assert skin.mean() == pytest.approx(0.55, abs=0.03), level
        assert hair.mean() >= 0.75 and hair.min() > skin.max(), level


def test_report_records_the_roughness_map(material_asset):
    report = json.loads(material_asset.files["report"].read_text())
    assert report["settings"]["roughness_map"] is True
    entry = report["material"]["roughness_map"]
    assert entry["enabled"] and entry["bounds"] == [ROUGHNESS_MIN, ROUGHNESS_MAX]
    lo, hi = entry["range"]
    assert ROUGHNESS_MIN <= lo < 0.6 and 0.75 <= hi <= ROUGHNESS_MAX
    for lod in report["lods"]:
        assert lod["roughness_map"]["width"] == lod["albedo"]["width"]


def test_exporter_shading_matches_recon():
    """exporters/lighting.py re-evaluates recon/delight.py's model from the report entry: same numbers."""
    from exporters.lighting import shading
    from recon.delight import Lighting

    rng = np.random.default_rng(1)
    normals = rng.normal(size=(500, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    direction = np.array([0.6, 0.3, 0.74]) / np.linalg.norm([0.6, 0.3, 0.74])
    lighting = Lighting(sh=rng.normal(size=(3, 9)), direction=direction, directional=np.array([0.5, 0.4, 0.3]))
    entry = json.loads(json.dumps(lighting.as_dict()))
    np.testing.assert_allclose(shading(entry, normals), lighting.shading(normals), atol=1e-5)


def _lit_head(key: list[float]) -> object:
    """A uniform skin-coloured head lit by a weak ambient and a key light from `key`."""
    head = procedural_head(n_lat=24, n_lon=48, texture_size=64)
    albedo = np.empty_like(head.albedo)
    albedo[:] = SKIN
    sh = np.zeros((3, 9))
    sh[:, 0] = 0.3 / 0.282095
    lighting = {"sh": sh.tolist(), "key_light_direction": key, "key_light_rgb": [0.9, 0.9, 0.9], "delit": True}
    return replace(head, albedo=albedo, metadata={**(head.metadata or {}), "lighting": lighting})


def _tile(image: np.ndarray, k: int) -> np.ndarray:
    return image[:, k * TILE : (k + 1) * TILE].astype(np.float64)


def test_lighting_preview_is_brighter_on_the_key_light_side(tmp_path):
    config = ExportConfig(lod_budgets=(800,), preview=False, validate=False, lighting_preview=True, preview_tile=TILE)
    result = export_asset(_lit_head([1.0, 0.0, 0.0]), tmp_path / "asset", config)
    entry = result.report["lighting_preview"]
    assert entry["file"] == "lighting.png" and result.files["lighting_preview"].name == "lighting.png"
    image = np.asarray(Image.open(tmp_path / "asset" / "lighting.png").convert("RGB"))
    assert image.shape == (TILE, 4 * TILE, 3)  # de-lit front, de-lit side, relit front, relit side
    delit_front, relit_front = _tile(image, 0), _tile(image, 2)
    head = np.abs(delit_front - np.array(SKIN)).max(-1) < 4  # unshaded albedo: exactly the skin colour
    head[:12] = False  # the label
    columns = np.arange(TILE)[None, :].repeat(TILE, 0)
    right, left = head & (columns > TILE // 2 + 4), head & (columns < TILE // 2 - 4)
    assert right.sum() > 50 and left.sum() > 50
    luminance = relit_front.mean(-1)
    # +X (the key light) is the image's right in the front view (camera looks down -Z)
    assert luminance[right].mean() > luminance[left].mean() + 30
    assert np.abs(delit_front[right].mean() - delit_front[left].mean()) < 2  # the de-lit half is unshaded
    relit_side = _tile(image, 3).mean(-1)
    side_head = np.abs(_tile(image, 1) - np.array(SKIN)).max(-1) < 4
    side_head[:12] = False
    assert relit_side[side_head].mean() > luminance[left].mean() + 30  # the side shown is the key-lit one


def test_lighting_preview_without_lighting_is_skipped_with_a_reason(tmp_path):
    head = procedural_head(n_lat=16, n_lon=32, texture_size=64)
    config = ExportConfig(lod_budgets=(500,), preview=False, validate=False, lighting_preview=True)
    result = export_asset(head, tmp_path / "asset", config)
    assert not (tmp_path / "asset" / "lighting.png").exists()
    entry = result.report["lighting_preview"]
    assert entry["file"] is None and "lighting" in entry["reason"]


def test_cli_flags(tmp_path, capsys):
    from flows.cli import main as cli_main

    mesh_dir = tmp_path / "mesh"
    write_headmesh(mesh_dir, _lit_head([0.0, 1.0, 0.0]))
    out = tmp_path / "asset"
    argv = ["export", str(mesh_dir), "-o", str(out), "--lod-budgets", "600", "--no-validate", "--no-preview"]
    assert cli_main([*argv, "--no-roughness-map", "--lighting-preview"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["roughness_map"] is False and report["material"]["roughness_map"] is None
    assert report["lighting_preview"]["file"] == "lighting.png" and "lighting.png" in capsys.readouterr().out
    assert cli_main([*argv, "--overwrite"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["roughness_map"] is True and report["lighting_preview"] is None
    assert not (out / "lighting.png").exists()


def test_large_albedo_is_estimated_small_and_scaled_up():
    """Above ESTIMATE_SIDE the map is estimated at that side: same size out, same skin/hair split."""
    from exporters.material import ESTIMATE_SIDE, roughness_map

    size = ESTIMATE_SIDE + ESTIMATE_SIDE // 2
    rough = roughness_map(skin_and_hair_albedo(size), 0.5)
    assert rough.shape == (size, size) and rough.dtype == np.float32
    skin, hair = rough[:, : int(0.4 * size)], rough[:, int(0.6 * size) :]
    assert skin.mean() == pytest.approx(0.5, abs=0.02)
    assert hair.mean() >= 0.75 and hair.min() > skin.max()


def _smooth_skin(colour: tuple[int, int, int], size: int = 128, seed: int = 1) -> np.ndarray:
    """A skin tone with a smooth 6% pore/blotch modulation (the same relative texture on every tone)."""
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    blotch = gaussian_filter(rng.normal(0, 1, (size, size)), 3.0)
    blotch *= 0.06 / blotch.std()
    return np.clip(np.array(colour)[None, None] * (1 + blotch[..., None]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dark", [(110, 72, 52), (62, 42, 33), (44, 33, 27)])
def test_dark_skin_is_as_smooth_as_light_skin(dark):
    """Brightness is not the skin/hair cue: light and dark skin (down to the darkest tones) get r_skin."""
    from exporters.material import roughness_map

    light = roughness_map(_smooth_skin(SKIN), 0.5)
    other = roughness_map(_smooth_skin(dark), 0.5)
    assert light.mean() == pytest.approx(0.5, abs=0.02)
    assert other.mean() == pytest.approx(light.mean(), abs=0.02)


@pytest.mark.parametrize("hair", [(40, 28, 20), (120, 80, 45), (200, 170, 110)])
def test_hair_strands_are_rough_whatever_their_colour(hair):
    """Dark brown, mid brown and blond strands (busy at the texel scale) are rough next to smooth dark skin."""
    from exporters.material import roughness_map

    rng = np.random.default_rng(2)
    img = _smooth_skin((62, 42, 33)).astype(np.float64)
    strands = 1.0 + 0.45 * np.sin(np.arange(64)[None, :] * 2.1 + rng.normal(0, 1, (128, 1)))
    img[:, 64:] = np.array(hair)[None, None] * strands[..., None]
    rough = roughness_map(np.clip(img, 0, 255).astype(np.uint8), 0.5)
    assert rough[:, 8:48].mean() == pytest.approx(0.5, abs=0.02)
    assert rough[:, 80:120].mean() >= 0.75
