"""De-lighting (recon/delight.py): closed-form lighting recovery, per-view gains, a lit bake, the lit texture kept."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from export_helpers import decode_glb, grid_mesh
from PIL import Image
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

from exporters import ExportConfig, export_asset
from recon.cameras import cameras_from_frames
from recon.delight import (
    DelightConfig,
    delight_colours,
    estimate_lighting,
    estimate_view_gains,
    fibonacci_sphere,
    linear_to_srgb,
    sh_basis,
    srgb_to_linear,
)
from recon.synth import LIGHTINGS, ViewSpec, procedural_head, render_viewset
from recon.synth.lighting import SceneLighting
from recon.texture import TextureConfig, bake_texture, uv_to_pixels
from spin_io.headmesh import read_headmesh, write_headmesh

LUMA = np.array([0.2126, 0.7152, 0.0722])


def test_sh_basis_is_orthonormal():
    """∫ Y_i Y_j dΩ = δ_ij, by quadrature on nearly uniform directions."""
    n = fibonacci_sphere(20_000)
    Y = sh_basis(n)
    gram = 4 * np.pi * Y.T @ Y / len(n)
    np.testing.assert_allclose(gram, np.eye(9), atol=2e-3)


def _hard_light(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.array([0.9, 0.3, 0.3])
    d /= np.linalg.norm(d)
    return 0.12 + np.clip(n @ d, 0, None)[:, None] * np.array([1.0, 0.85, 0.7]), d


def test_lighting_is_recovered_despite_hair_and_highlights():
    """One albedo with 15% dark texels (eyebrows, stubble, strands of hair, scattered over the head) and 3%
    specular highlights: the shading comes back up to scale, the key light's direction within 2 degrees,
    and the dark texels and highlights get zero weight. (A hair cap that covers every normal of a region
    is not separable this way: see the report's limitations.)"""
    rng = np.random.default_rng(0)
    n = fibonacci_sphere(30_000)
    E, d = _hard_light(n)
    albedo = np.tile([0.55, 0.4, 0.33], (len(n), 1))
    hair = rng.random(len(n)) < 0.15
    albedo[hair] = [0.05, 0.035, 0.03]
    colours = albedo * E
    spec = rng.random(len(n)) < 0.03
    colours[spec] += 0.5
    lighting = estimate_lighting(colours, n)
    ratio = E / lighting.shading(n)
    assert np.std(ratio[~hair & ~spec] / ratio[~hair & ~spec].mean(0), axis=0).max() < 0.02
    angle = np.degrees(np.arccos(np.clip(lighting.direction @ d, -1, 1)))
    assert angle < 2.0
    assert lighting.inlier_share < 1 - 0.7 * (hair | spec).mean()
    # the well-lit normalisation: the 95th percentile of the shading's luminance is 1
    assert np.percentile(lighting.shading(n) @ LUMA, 95) == pytest.approx(1.0, abs=1e-6)
    json.dumps(lighting.as_dict())


def test_sh_only_model_fits_soft_light():
    """Ambient + a broad dome light is in the SH span: recovered exactly, no key light needed."""
    n = fibonacci_sphere(5_000)
    E = 0.4 + 0.3 * n[:, 1:2] + 0.1 * n[:, 2:3] * np.array([1.0, 0.8, 0.6])
    lighting = estimate_lighting(0.5 * E, n, DelightConfig(directional=False))
    ratio = E / lighting.shading(n)
    np.testing.assert_allclose(ratio / ratio.mean(0), 1.0, atol=1e-3)  # exact up to the tiny ridge


def test_view_gains_are_recovered_relative_to_the_input_view():
    rng = np.random.default_rng(1)
    T, V = 4000, 6
    truth = rng.uniform(0.2, 0.8, (T, 1, 3))
    gains = rng.uniform(0.8, 1.2, (V, 3))
    gains[0] = 1.0
    weights = (rng.random((T, V)) < 0.5).astype(float)
    colours = truth * gains[None] * (1 + 0.01 * rng.standard_normal((T, V, 3)))
    colours[rng.random((T, V)) < 0.05] = 0.99  # highlights / misregistered pixels
    est = estimate_view_gains(colours, weights, reference=0)
    np.testing.assert_allclose(est, gains, rtol=0.01)


def test_delight_inverts_known_shading():
    """encode(decode(a) E) de-lit with the estimated shading gives a back up to one gain per channel
    (the light's overall colour and scale, which no image separates from the albedo's)."""
    n = fibonacci_sphere(2_000)
    E, _ = _hard_light(n)
    albedo = np.tile([0.7, 0.5, 0.4], (len(n), 1))
    observed = linear_to_srgb(srgb_to_linear(albedo) * E * 0.8)
    lighting = estimate_lighting(srgb_to_linear(observed), n)
    ratio = srgb_to_linear(delight_colours(observed, n, lighting, 0.02)) / srgb_to_linear(albedo)
    assert (ratio.std(0) / ratio.mean(0)).max() < 0.02


def _scene(lighting: SceneLighting | None):
    """The procedural head rendered from three rings of 8 views: (head, cameras, images, masks, is_input)."""
    head = procedural_head(3, voxel_m=0.006, target_faces=6000)
    views = [ViewSpec(a, e, a == 0 and e == 0) for e in (0.0, 25.0, -20.0) for a in range(0, 360, 45)]
    vs = render_viewset(head, views, size=96, normal_frame="world", lighting=lighting)
    cams = cameras_from_frames(vs.frames, "cpu")
    images = torch.tensor(np.stack([f.rgb for f in vs.frames]), dtype=torch.float32) / 255.0
    return head, cams, images, np.stack([f.mask for f in vs.frames]), [f.is_input for f in vs.frames]


def _bake(lighting: SceneLighting | None):
    head, cams, images, masks, is_input = _scene(lighting)
    return bake_texture(head.vertices, head.faces, cams, images, masks, is_input,
                        TextureConfig(size=256, delight=DelightConfig()))


def _texel_truth(baked, size: int = 256):
    from recon.mesh_ops import vertex_normals
    from recon.raster import TorchRasterizer, interpolate
    from recon.synth import procedural_albedo

    uv, faces = torch.tensor(baked.uv), torch.tensor(baked.faces)
    verts = torch.tensor(baked.vertices, dtype=torch.float32)
    frags = TorchRasterizer().rasterize(uv_to_pixels(uv, size), torch.ones(len(uv)), faces, size, size)
    chart = frags.covered
    nrm = interpolate(frags, vertex_normals(verts, faces), faces)[chart]
    nrm = (nrm / nrm.norm(dim=-1, keepdim=True)).numpy()
    return chart.numpy(), procedural_albedo(interpolate(frags, verts, faces)[chart]).numpy(), nrm


@pytest.fixture(scope="module")
def hard_side_bake():
    return _bake(LIGHTINGS["hard_side"])


def test_bake_under_hard_side_light_removes_the_shading(hard_side_bake):
    """Measured against the true albedo: error (after the one gain no image can fix) at least 3x lower,
    and the shading left in the texture (correlation of log luminance ratio with n·l) near zero."""
    baked = hard_side_bake
    chart, truth, nrm = _texel_truth(baked)
    key = LIGHTINGS["hard_side"].key_direction()

    def score(texture):
        x = texture[chart] / 255.0
        gain = (x * truth).sum(0) / (x * x).sum(0)
        ratio = np.log(np.maximum(x @ LUMA, 1e-3) / (truth @ LUMA))
        return np.abs(x * gain - truth).mean(), np.corrcoef(ratio, nrm @ key)[0, 1]

    mae_lit, corr_lit = score(baked.albedo_lit)
    mae_delit, corr_delit = score(baked.albedo)
    assert corr_lit > 0.8 and abs(corr_delit) < 0.2
    assert mae_delit * 3 < mae_lit
    assert baked.lighting is not None and baked.lighting.direction @ key > 0.95
    json.dumps(baked.lighting.as_dict())


def test_texels_only_grazing_views_paint_take_the_delit_albedo_around_them(monkeypatch):
    """A surface only grazing views see (the neck's cut end from the ring 15 degrees below, under the chin) is
    painted from pixels whose footprint runs onto the surface beside it. Under a light from below the cut end is
    bright but its pixels show the darker neck: divided by its own shading it came out several times too dark.
    Filled from the de-lit surface around it, it is the skin it is; the lit texture keeps what the views showed."""
    import copy

    import recon.texture as texture_mod
    from recon.raster import TorchRasterizer
    from recon.synth import procedural_albedo
    from recon.synth.lighting import DirectionalLight

    below = SceneLighting("below", (0.2, 0.2, 0.2), (DirectionalLight((0.1, -1.0, 0.3), (0.9, 0.9, 0.9)),))
    head, cams, images, masks, is_input = _scene(below)
    cfg = TextureConfig(size=256, delight=DelightConfig())
    atlas = texture_mod._paint_texels(head.vertices, head.faces, cams, images, masks, is_input, cfg, TorchRasterizer())
    # the smear: the cut end (normals down) painted by a grazing view (cos^4 ~ 1e-4) with the neck's colour beside it
    down = atlas.chart & (atlas.normal[..., 1] < -0.9)
    side = atlas.painted & (np.abs(atlas.normal[..., 1]) < 0.3)
    assert down.sum() > 500 and atlas.painted[down].mean() < 0.05  # at 96 px hardly any view reached it: staged
    atlas.colour[down] = np.median(atlas.colour[side], 0)
    atlas.painted[down] = True
    atlas.strength[down] = 1e-4
    corners = head.vertices[atlas.vmap][atlas.faces[atlas.face_id[atlas.chart]]]
    truth = np.zeros(atlas.colour.shape)
    truth[atlas.chart] = procedural_albedo(torch.tensor(np.einsum("tk,tkc->tc", atlas.bary[atlas.chart], corners)))

    def bake(min_cos: float):
        monkeypatch.setattr(texture_mod, "_paint_texels", lambda *a, **k: copy.deepcopy(atlas))
        return bake_texture(head.vertices, head.faces, cams, images, masks, [], replace(cfg, delit_min_cos=min_cos))

    kept, refilled = bake(0.0), bake(cfg.delit_min_cos)
    assert np.array_equal(kept.albedo_lit, refilled.albedo_lit)
    assert kept.lighting.extra["grazing_refilled"] == 0  # report.json says how much was refilled
    assert refilled.lighting.extra["grazing_refilled"] >= round(down.sum() / atlas.painted.sum(), 4)
    rest = atlas.painted & ~down

    def error(baked) -> float:
        x = baked.albedo / 255.0
        gain = (x[rest] * truth[rest]).sum(0) / (x[rest] ** 2).sum(0)  # the one gain no image can fix, from the rest
        return float(np.abs(x[down] * gain - truth[down]).mean())

    assert error(refilled) < 0.5 * error(kept), (error(refilled), error(kept))  # measured 0.039 vs 0.30


def test_unlit_views_are_left_almost_unchanged():
    baked = _bake(None)
    diff = np.abs(baked.albedo.astype(float) - baked.albedo_lit.astype(float)).mean()
    assert diff < 4.0  # of 255: no shading is invented where there was none


def test_headmesh_keeps_the_lit_texture(tmp_path):
    mesh = grid_mesh(6)
    mesh.albedo_lit = (mesh.albedo // 2).astype(np.uint8)
    write_headmesh(tmp_path / "m", mesh)
    back = read_headmesh(tmp_path / "m")
    np.testing.assert_array_equal(back.albedo_lit, mesh.albedo_lit)
    assert json.loads((tmp_path / "m" / "mesh.json").read_text())["has_albedo_lit"]
    mesh.albedo_lit = None
    write_headmesh(tmp_path / "m", mesh)  # a rewrite without one leaves no stale lit texture
    assert read_headmesh(tmp_path / "m").albedo_lit is None and not (tmp_path / "m" / "albedo_lit.png").exists()


def test_export_uses_the_delit_albedo_unless_asked(tmp_path):
    mesh = grid_mesh(6)
    mesh.albedo_lit = (mesh.albedo // 2).astype(np.uint8)
    mesh.metadata["lighting"] = {"delit": True, "sh": [[0.0] * 9] * 3}
    write_headmesh(tmp_path / "m", mesh)

    def base_colour(config):
        result = export_asset(tmp_path / "m", tmp_path / str(config.lit_texture), config)
        gltf = decode_glb(result.files["lod0"].read_bytes())["gltf"]
        blob = gltf.binary_blob()
        view = gltf.bufferViews[gltf.images[0].bufferView]
        png = blob[view.byteOffset: view.byteOffset + view.byteLength]
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), result.report

    config = ExportConfig(lod_budgets=(100,), preview=False, validate=False)
    image, report = base_colour(config)
    np.testing.assert_array_equal(image, mesh.albedo)
    assert report["material"]["base_color"] == "delit" and report["lighting"]["delit"] is True
    assert report["material"]["metallic"] == 0.0
    image, report = base_colour(ExportConfig(lod_budgets=(100,), preview=False, validate=False, lit_texture=True))
    np.testing.assert_array_equal(image, mesh.albedo_lit)
    assert report["material"]["base_color"] == "lit"


def _head_like_albedo(
    n: np.ndarray, skin: tuple[float, float, float], seed: int = 3, hairline: float = 0.55
) -> tuple[np.ndarray, np.ndarray]:
    """sRGB albedo on a sphere of normals: skin with a smooth ±10% pattern below a hairline, and a dark
    hair cap (every normal with y > hairline, plus the back above the ears) that no skin texel shares."""
    rng = np.random.default_rng(seed)
    pattern = 1 + 0.1 * np.sin(9 * n[:, 0]) * np.sin(7 * n[:, 1] + 1) * np.sin(8 * n[:, 2])
    albedo = np.array(skin)[None] * pattern[:, None]
    hair = (n[:, 1] > hairline) | ((n[:, 2] < -0.3) & (n[:, 1] > 0.0))
    albedo[hair] = np.array([0.14, 0.09, 0.06]) * rng.uniform(0.6, 1.4, (int(hair.sum()), 1))
    return albedo, hair


def _ratio_scores(delit_srgb: np.ndarray, albedo_srgb: np.ndarray, n: np.ndarray, key: np.ndarray, sel: np.ndarray):
    """MAE after the one gain no image fixes (0-255), the |slope| of the log ratio on n·l (shading left,
    log units per unit n·l: on noise-free data a 0.5 % wobble still correlates), and the median level."""
    gain = (delit_srgb * albedo_srgb).sum(0) / (delit_srgb**2).sum(0)
    mae = 255 * np.abs(delit_srgb[sel] * gain - albedo_srgb[sel]).mean()
    log_ratio = np.log(np.maximum((delit_srgb * gain) @ LUMA, 1e-3) / (albedo_srgb @ LUMA))
    slope = abs(np.polyfit((n @ key)[sel], log_ratio[sel], 1)[0])
    return mae, slope, float(np.exp(np.median(log_ratio[sel])))


@pytest.mark.parametrize("name", ["hard_side", "ambient_directional", "coloured"])
def test_clamped_key_light_is_removed_and_the_unlit_side_not_overcorrected(name):
    """Known albedo under ambient + clamped directional light(s) (the bench's lightings, analytically):
    the de-lit error falls >= 4x everywhere, and on the unlit side (n·l < 0, where an SH-only fit rings
    and an absolute-residual fit is careless) the shading left is < 3% per unit n·l and the level within 3%
    (the lit side's slope before is > 0.5)."""
    n = fibonacci_sphere(40_000)
    lighting = LIGHTINGS[name]
    key = lighting.key_direction()
    albedo, _ = _head_like_albedo(n, (0.8, 0.6, 0.5))
    albedo[:] = np.array([0.8, 0.6, 0.5]) * (1 + 0.1 * np.sin(9 * n[:, :1]) * np.sin(7 * n[:, 1:2] + 1))  # no hair
    observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
    fit = estimate_lighting(srgb_to_linear(observed), n)
    delit = delight_colours(observed, n, fit)
    unlit = n @ key < 0
    assert _ratio_scores(observed, albedo, n, key, ~unlit)[1] > 0.5  # the lit side's shading, before
    for sel in (np.ones(len(n), bool), unlit):
        mae_lit, _, _ = _ratio_scores(observed, albedo, n, key, sel)
        mae, slope, level = _ratio_scores(delit, albedo, n, key, sel)
        assert mae * 4 < mae_lit
        assert slope < 0.03 and level == pytest.approx(1.0, abs=0.03)
    assert fit.direction @ key > 0.99


def test_a_warm_key_with_a_cool_opposite_fill_keeps_its_key_light():
    """d = key - fill may be negative in blue (max(0, -t) = max(0, t) - t): the key light is still found."""
    n = fibonacci_sphere(20_000)
    d = np.array([0.8, 0.4, 0.45]) / np.linalg.norm([0.8, 0.4, 0.45])
    E = 0.15 + np.clip(n @ d, 0, None)[:, None] * [0.85, 0.6, 0.35]
    E = E + np.clip(-n @ d, 0, None)[:, None] * [0.2, 0.35, 0.6]
    fit = estimate_lighting(0.5 * E, n)
    assert fit.direction is not None and fit.direction @ d > 0.999
    ratio = E / fit.shading(n)
    assert (ratio.std(0) / ratio.mean(0)).max() < 0.03


@pytest.mark.parametrize("name", ["ambient_directional", "hard_side"])
@pytest.mark.parametrize("skin", [(0.8, 0.6, 0.5), (0.36, 0.23, 0.16)])
def test_dark_hair_cap_is_not_taken_for_shadow(skin, name):
    """A dark hair cap over every upward normal and the back (a third of the head; light and dark skin
    below it), with the prior strands get from texture_prior (0.25, see below): the hair comes back
    brightened by at most 20%, the skin's error falls >= 3x and the key light is found within 5 degrees.
    (Without the prior, a cap 25x darker than light skin is still read as a light from below.)"""
    n = fibonacci_sphere(40_000)
    lighting = LIGHTINGS[name]
    key = lighting.key_direction()
    albedo, hair = _head_like_albedo(n, skin)
    observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
    fit = estimate_lighting(srgb_to_linear(observed), n, prior=np.where(hair, 0.25, 1.0))
    delit = delight_colours(observed, n, fit)
    gain = (delit[~hair] * albedo[~hair]).sum(0) / (delit[~hair] ** 2).sum(0)  # the skin fixes the one gain
    hair_level = np.median((delit[hair] * gain) @ LUMA / (albedo[hair] @ LUMA))
    assert hair_level < 1.2
    mae_lit = np.abs(observed[~hair] - albedo[~hair]).mean()
    assert np.abs(delit[~hair] * gain - albedo[~hair]).mean() * 3 < mae_lit
    assert np.degrees(np.arccos(np.clip(fit.direction @ key, -1, 1))) < 5.0


@pytest.mark.parametrize("skin", [(0.8, 0.6, 0.5), (0.36, 0.23, 0.16)])
def test_a_large_hair_cap_does_not_pull_the_key_light_below_the_head(skin):
    """Issue 17's held-out miss, cheaply: hair over ~45% of the sphere, every normal with y > 0.2 (all the
    upward ones), under the coloured key from above-left + cool fill. A single robust fit from all texels
    explained the cap as shadow (a key from below, the cap brightened); the multi-start fit (a start from
    the brighter texels, the best few key axes, the lowest robust loss at a common scale) finds the key
    within 10 degrees and leaves the cap within 20% of its albedo."""
    n = fibonacci_sphere(40_000)
    lighting = LIGHTINGS["coloured"]
    key = lighting.key_direction()
    albedo, hair = _head_like_albedo(n, skin, hairline=0.2)
    assert 0.4 < hair.mean() < 0.5 and hair[n[:, 1] > 0.2].all()
    observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
    fit = estimate_lighting(srgb_to_linear(observed), n, prior=np.where(hair, 0.25, 1.0))
    assert np.degrees(np.arccos(np.clip(fit.direction @ key, -1, 1))) < 10.0
    delit = delight_colours(observed, n, fit)
    gain = (delit[~hair] * albedo[~hair]).sum(0) / (delit[~hair] ** 2).sum(0)
    assert np.median((delit[hair] * gain) @ LUMA / (albedo[hair] @ LUMA)) < 1.2
    mae_lit = np.abs(observed[~hair] - albedo[~hair]).mean()
    assert np.abs(delit[~hair] * gain - albedo[~hair]).mean() * 4 < mae_lit
    assert set(fit.extra["start_losses"]) >= {"all0", "bright0"}


def test_fast_direction_costs_match_the_direct_fit():
    """_fit_costs (shared SH block, batched) equals _fit_cost direction by direction."""
    from recon.delight import _fit_cost, _fit_costs, _penalty, sh_basis

    rng = np.random.default_rng(1)
    n = fibonacci_sphere(3_000)
    colours = rng.uniform(0.1, 1.0, (len(n), 3))
    weights = rng.uniform(0.0, 1.0, len(n))
    directions = fibonacci_sphere(16)
    penalty = _penalty(10, DelightConfig())
    costs, adds = _fit_costs(sh_basis(n), n, colours, weights, directions, penalty)
    for d, cost, add in zip(directions, costs, adds, strict=True):
        expected, expected_add = _fit_cost(n, colours, weights, d, penalty)
        assert cost == pytest.approx(expected, rel=1e-6) and add == expected_add


def test_shading_floor_limits_how_much_a_dark_texel_is_brightened():
    """s_min is at least the darkest inlier shading: a dark texel is never divided by an extrapolated s."""
    n = fibonacci_sphere(10_000)
    E, _ = _hard_light(n)
    fit = estimate_lighting(0.5 * E, n)
    s = fit.shading(n) @ LUMA
    assert fit.floor >= np.percentile(s, 0.5) - 1e-9 and fit.floor < np.percentile(s, 5)
    black = delight_colours(np.full((len(n), 3), 0.05), n, fit)
    assert (srgb_to_linear(black) @ LUMA).max() <= 1.05 * srgb_to_linear(0.05) / fit.floor  # 5%: the light's hue


def test_texture_prior_is_low_on_strands_and_high_on_smooth_shading():
    """Busy albedo (strands) gets a low prior whatever its brightness; a smooth shading ramp does not."""
    from recon.delight import texture_prior

    size = 64
    ramp = np.linspace(0.5, 1.0, size)[None, :, None] * np.ones((size, size, 3)) * [0.8, 0.6, 0.5]
    strands = ramp.copy()
    strands[:, ::2] *= 0.45
    painted = np.ones((size, size), bool)
    assert np.median(texture_prior(ramp, painted)) > 0.9
    assert np.median(texture_prior(strands, painted)) < 0.3


def _patchy_albedo(n: np.ndarray) -> np.ndarray:
    """sRGB skin with a smooth ±10% pattern and two broad colour patches (a red cheek, a bluish back of the
    head): low-frequency albedo that an SH + key light fit can mistake for coloured light."""
    albedo = np.array([0.8, 0.6, 0.5]) * (1 + 0.1 * np.sin(9 * n[:, :1]) * np.sin(7 * n[:, 1:2] + 1))
    red = np.exp(-((n - [0.6, -0.2, 0.77]) ** 2).sum(1) / 0.1)[:, None]
    blue = np.exp(-((n - [-0.5, 0.3, -0.8]) ** 2).sum(1) / 0.15)[:, None]
    return np.clip(albedo + red * [0.15, -0.3, -0.25] + blue * [-0.35, -0.15, 0.3], 0, 1)


def test_unlit_input_stays_unlit():
    """No light at all (the bench's control): the penalised model choice keeps one constant shading, so no key
    light and no shading is invented (the SH + key model used to find a 'light' of 4% in the albedo's
    colour patches) and the de-lit albedo is the input."""
    n = fibonacci_sphere(20_000)
    albedo = _patchy_albedo(n)
    fit = estimate_lighting(srgb_to_linear(albedo), n)
    s = fit.shading(n) @ LUMA
    assert s.std() / s.mean() < 0.005
    delit = delight_colours(albedo, n, fit)
    gain = (delit * albedo).sum(0) / (delit**2).sum(0)
    assert 255 * np.abs(delit * gain - albedo).max() < 1.0
    assert fit.direction is None and fit.directional is None and fit.extra["model_choice"] == "constant"
    json.dumps(fit.as_dict())


def test_a_real_light_is_not_taken_for_albedo():
    """The other side of the model choice: the same patchy albedo under the bench's lightings keeps its key."""
    n = fibonacci_sphere(20_000)
    albedo = _patchy_albedo(n)
    for name in ("ambient_directional", "coloured", "hard_side"):
        lighting = LIGHTINGS[name]
        observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
        fit = estimate_lighting(srgb_to_linear(observed), n)
        assert fit.direction @ lighting.key_direction() > 0.98, name
        assert fit.extra.get("model_choice", "sh+key") == "sh+key", name
        assert fit.extra["light_gain"] > 2 * DelightConfig().light_min_gain, name


def _light_hair_cap(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sRGB albedo on the unit sphere: skin in front, light strand-textured hair over the crown and back (the
    fourth sweep split's unlit control 3101, cleo with light hair), and the texture prior a bake computes from it
    (1 / (1 + (local std of log luminance / 0.12)²) over each point's 25 nearest neighbours)."""
    from scipy.spatial import cKDTree

    skin = np.array([0.72, 0.52, 0.42]) * (1 + 0.08 * np.sin(9 * n[:, :1]) * np.sin(7 * n[:, 1:2] + 1))
    hair = ((n[:, 1] > 0.25) | (n[:, 2] < -0.2))[:, None]
    strands = 1 + 0.15 * np.sin(60 * np.arctan2(n[:, 0], n[:, 2]) + 25 * n[:, 1])[:, None]
    albedo = np.clip(np.where(hair, np.array([0.8, 0.68, 0.45]) * strands, skin), 0, 1)
    log_lum = np.log(np.maximum(srgb_to_linear(albedo) @ LUMA, 1e-3))
    _, near = cKDTree(n).query(n, 25)
    return albedo, 1 / (1 + log_lum[near].var(1) / 0.12**2)


def test_light_hair_laid_out_by_the_normal_is_not_taken_for_a_light():
    """Unlit, light textured hair over the crown and back lowers an SH + key fit's loss by 0.04 (the penalty per
    parameter alone let it through: a 'light' varying the shading by 32 %); the constant model must win, and the
    report says how little a light would have explained."""
    n = fibonacci_sphere(20_000)
    albedo, prior = _light_hair_cap(n)
    colours = srgb_to_linear(albedo)
    loose = estimate_lighting(colours, n, DelightConfig(light_min_gain=0.0), prior)
    s = loose.shading(n) @ LUMA
    assert loose.extra["model_choice"] != "constant" and s.std() / s.mean() > 0.3  # the failure this guards
    fit = estimate_lighting(colours, n, DelightConfig(), prior)
    assert fit.extra["model_choice"] == "constant" and fit.direction is None
    assert 0.0 < fit.extra["light_gain"] < DelightConfig().light_min_gain
    s = fit.shading(n) @ LUMA
    assert s.std() / s.mean() < 0.005
    delit = delight_colours(albedo, n, fit)
    gain = (delit * albedo).sum(0) / (delit**2).sum(0)
    assert 255 * np.abs(delit * gain - albedo).max() < 1.0


def test_robust_scale_is_set_by_the_texels_the_prior_trusts():
    """60% of the residuals large (hair, prior 0.25), 40% small (skin, prior 1): the plain MAD is the hair's,
    the prior-weighted one the skin's (the held-out miss: hair over the back and crown, most of the texels,
    set the scale and counted as good data)."""
    from recon.delight import _robust_weights

    rng = np.random.default_rng(0)
    skin = rng.normal(0, 0.02, (4000, 3))
    hair = rng.normal(0, 0.5, (6000, 3))
    residual = np.concatenate([skin, hair])
    prior = np.r_[np.ones(4000), np.full(6000, 0.25)]
    _, plain = _robust_weights(residual, "tukey")
    weights, weighted = _robust_weights(residual, "tukey", prior=prior)
    assert plain > 0.5 and weighted < 0.1
    assert weights[4000:].mean() < 0.1 < 0.8 < weights[:4000].mean()


@pytest.mark.parametrize("hairline", [0.2, -0.2])
def test_hair_over_most_of_the_head_under_coloured_light(hairline):
    """Issue 17's held-out miss (ada, coloured, dark skin + dark hair): dark hair over the back and every normal
    above the hairline, 44% and 60% of the sphere, on dark skin, under the warm key + cool fill. The key is found
    within 6 degrees; the hair, a second material that shares the light (its colour ratio to the skin comes
    back within 15%), is neither brightened nor darkened by more than 8%, overall and at the very top (before:
    the top of the cap came back 31% / 73% too bright, and with 60% hair the key was put 119 degrees off)."""
    n = fibonacci_sphere(20_000)
    lighting = LIGHTINGS["coloured"]
    key = lighting.key_direction()
    skin = (0.36, 0.23, 0.16)
    albedo, hair = _head_like_albedo(n, skin, hairline=hairline)
    observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
    fit = estimate_lighting(srgb_to_linear(observed), n, prior=np.where(hair, 0.25, 1.0))
    assert np.degrees(np.arccos(np.clip(fit.direction @ key, -1, 1))) < 6.0
    delit = delight_colours(observed, n, fit)
    gain = (delit[~hair] * albedo[~hair]).sum(0) / (delit[~hair] ** 2).sum(0)
    top = hair & (n[:, 1] > 0.7)
    for sel in (hair, top):
        assert np.median((delit[sel] * gain) @ LUMA / (albedo[sel] @ LUMA)) == pytest.approx(1.0, abs=0.08)
    assert fit.extra["second_material"]["share"] > 0.35


def test_a_second_material_recovers_its_colour_ratio():
    """Noise-free dark hair cap (40% of the sphere) on dark skin under the coloured light: the two-material fit
    gives the hair / skin albedo ratio within 6% per channel and the top of the cap within 5% of its albedo."""
    n = fibonacci_sphere(20_000)
    lighting = LIGHTINGS["coloured"]
    skin, hair_rgb = np.array([0.36, 0.23, 0.16]), np.array([0.14, 0.09, 0.06])
    albedo, hair = _head_like_albedo(n, tuple(skin), hairline=0.2)
    albedo[hair] = hair_rgb
    observed = linear_to_srgb(srgb_to_linear(albedo) * lighting.irradiance_np(n))
    fit = estimate_lighting(srgb_to_linear(observed), n, prior=np.where(hair, 0.25, 1.0))
    np.testing.assert_allclose(fit.extra["second_material"]["ratio"], srgb_to_linear(hair_rgb) / srgb_to_linear(skin),
                               rtol=0.06)
    delit = delight_colours(observed, n, fit)
    gain = (delit[~hair] * albedo[~hair]).sum(0) / (delit[~hair] ** 2).sum(0)
    top = hair & (n[:, 1] > 0.7)
    assert np.median((delit[top] * gain) @ LUMA / (albedo[top] @ LUMA)) == pytest.approx(1.0, abs=0.05)


def test_sweep_cases_are_harder_and_split():
    """bench/delight_eval.py --sweep: the splits (tune, never, fresh, fourth) share no seed, each has keys from
    below and behind, both colour orders of key and fill, every skin tone and hair colour, and unlit controls; a fill
    comes from the other side of the head."""
    import importlib.util
    import sys
    from pathlib import Path

    from recon.synth.lighting import SWEEP_KEY_DIRECTIONS, sweep_lighting

    path = Path(__file__).resolve().parents[1] / "bench" / "delight_eval.py"
    spec = importlib.util.spec_from_file_location("delight_eval", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["delight_eval"] = bench
    spec.loader.exec_module(bench)
    for fast in (False, True):
        splits = tuple(bench.SPLIT_BASE)
        assert splits == ("tune", "never", "fresh", "fourth")
        seeds = {split: set(bench.sweep_seeds(split, fast)) for split in splits}
        assert sum(len(s) for s in seeds.values()) == len(set().union(*seeds.values()))  # no seed in two splits
        for split in splits:
            cases = bench.sweep_cases(split, fast)
            lit = [c for c in cases if c[1] is not None]
            assert len(lit) < len(cases)  # unlit controls
            keys = [c[1].key_direction() for c in lit]
            assert min(k[1] for k in keys) < -0.5 and min(k[2] for k in keys) < -0.5  # below, behind
            names = {c[1].name.split("/")[1] for c in lit}
            assert {"warm_key_cool_fill", "cool_key_warm_fill"} <= names or not fast
            albedos = {c[2] for c in lit}
            assert {a.split("/")[0] for a in albedos} == {"skin-light", "skin-medium", "skin-dark"}
            assert {a.split("/")[1] for a in albedos} == {"hair-none", "hair-light", "hair-dark"}
    assert len(SWEEP_KEY_DIRECTIONS) >= 8
    light = sweep_lighting("left", "warm_key_cool_fill", "low")
    assert light.lights[0].direction[0] > 0.9 and light.lights[1].direction[0] < -0.5
