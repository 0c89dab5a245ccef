"""Unseen chart texels take their colour from the surface around them, not from the neighbouring chart in UV space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

from recon.cameras import cameras_from_frames
from recon.raster import TorchRasterizer
from recon.synth import ViewSpec, procedural_head, render_viewset
from recon.texture import (
    TextureConfig,
    _fill_from_surface,
    _fill_uv_nearest,
    _paint_texels,
    _to_uint8,
    bake_texture,
    harmonic_fill,
)


def smooth_albedo(points: torch.Tensor) -> torch.Tensor:
    """Low-frequency albedo (skin tone drifting over the head): what a fill can and should recover."""
    x, y, z = points.unbind(-1)
    return torch.stack([0.5 + 1.5 * x, 0.5 + 1.2 * y, 0.5 - 1.5 * z], -1).clamp(0.0, 1.0)


BAKE_LOG: list[str] = []  # the log lines of the fixture's bake


@pytest.fixture(scope="module")
def case():
    """A head seen only from the front half and above: the back, under the chin and the neck stay unseen."""
    head = procedural_head(3, voxel_m=0.006, target_faces=6000)
    views = [ViewSpec(a, 0.0, a == 0) for a in (0, 45, -45, 90, -90)] + [ViewSpec(a, 30.0) for a in (0, 60, -60)]
    vs = render_viewset(head, views, size=96, albedo_fn=smooth_albedo)
    cams = cameras_from_frames(vs.frames, "cpu")
    images = torch.tensor(np.stack([f.rgb for f in vs.frames]), dtype=torch.float32) / 255.0
    masks = np.stack([f.mask for f in vs.frames])
    is_input = [f.is_input for f in vs.frames]
    cfg = TextureConfig(size=256)
    atlas = _paint_texels(head.vertices, head.faces, cams, images, masks, is_input, cfg, TorchRasterizer())
    BAKE_LOG.clear()
    baked = bake_texture(head.vertices, head.faces, cams, images, masks, is_input, cfg, log=BAKE_LOG.append)
    return head, atlas, baked


def test_each_texture_step_is_announced_as_it_starts(case):
    """The unwrap alone takes most of a minute on a full head: a user sees which step is running, in order."""
    head, lines = case[0], BAKE_LOG
    assert [line.split(":")[1].split()[0] for line in lines] == ["UV", "painting", "filling"]  # de-lighting off
    assert f"{len(head.faces)} faces" in lines[0] and "8 views" in lines[1]


def _truth(head, atlas, texels: np.ndarray) -> np.ndarray:
    """Ground-truth albedo at the surface point of each selected texel."""
    corners = head.vertices[atlas.vmap][atlas.faces[atlas.face_id[texels]]]
    pos = np.einsum("tk,tkc->tc", atlas.bary[texels], corners)
    return smooth_albedo(torch.tensor(pos, dtype=torch.float32)).numpy()


def test_unseen_texels_match_the_surface_far_better_than_the_uv_neighbour(case):
    head, atlas, baked = case
    hole = atlas.chart & ~atlas.painted
    assert 0.15 < hole.sum() / atlas.chart.sum() < 0.6  # a real unseen region, not a rounding error
    truth = _truth(head, atlas, hole)
    new = baked.albedo[hole] / 255.0
    old = _to_uint8(_fill_uv_nearest(atlas.colour, atlas.painted))[hole] / 255.0
    err_new = np.abs(new - truth).mean()
    err_old = np.abs(old - truth).mean()
    err_flat = np.abs(truth - truth.mean(0)).mean()  # one flat colour for the whole hole
    assert err_new < 0.5 * err_old, (err_new, err_old)
    assert err_new < 0.3 * err_flat, (err_new, err_flat)
    # the surface fill itself, before quantisation, agrees with what bake_texture wrote
    img, n = _fill_from_surface(atlas, head.vertices, head.faces)
    assert n == hole.sum() and np.array_equal(_to_uint8(img)[atlas.chart], baked.albedo[atlas.chart])


def test_painted_texels_keep_their_baked_colour_bit_for_bit(case):
    head, atlas, baked = case
    assert np.array_equal(baked.albedo[atlas.painted], _to_uint8(atlas.colour)[atlas.painted])
    assert np.abs(baked.albedo[atlas.painted] / 255.0 - _truth(head, atlas, atlas.painted)).mean() < 0.01
    n_chart = atlas.chart.sum()
    assert baked.coverage == pytest.approx(atlas.painted.sum() / n_chart)
    assert baked.surface_filled == pytest.approx((atlas.chart & ~atlas.painted).sum() / n_chart)
    assert baked.coverage + baked.surface_filled == pytest.approx(1.0)


def test_gutter_is_padded_from_the_nearest_chart_and_nothing_is_black(case):
    from scipy import ndimage

    _, atlas, baked = case
    gutter = ~atlas.chart
    assert gutter.mean() > 0.05
    assert not np.any(baked.albedo.max(-1) == 0)  # no black texel anywhere
    _, (iy, ix) = ndimage.distance_transform_edt(gutter, return_indices=True)
    assert np.array_equal(baked.albedo[gutter], baked.albedo[iy, ix][gutter])
    assert atlas.chart[iy, ix].all()  # every gutter texel copies a chart texel


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat n x n vertex grid, each square split along the same diagonal."""
    y, x = np.mgrid[0:n, 0:n]
    v = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1).astype(np.float64)
    i = (y[:-1, :-1] * n + x[:-1, :-1]).ravel()
    f = np.concatenate([np.stack([i, i + 1, i + n + 1], 1), np.stack([i, i + n + 1, i + n], 1)])
    return v, f


def test_harmonic_fill_reproduces_a_linear_field_and_keeps_known_values():
    v, f = _grid(12)
    field = np.stack([0.3 * v[:, 0] - 0.1 * v[:, 1] + 2.0, 0.05 * v[:, 1]], 1)
    border = (v[:, 0] == 0) | (v[:, 0] == 11) | (v[:, 1] == 0) | (v[:, 1] == 11)
    values = np.where(border[:, None], field, 123.0)
    out = harmonic_fill(v, f, values, border)
    assert np.array_equal(out[border], field[border])
    # on a symmetric grid a linear field is harmonic: the interior is recovered up to the tiny eps pull
    assert np.abs(out[~border] - field[~border]).max() < 1e-4
    # a component with no known vertex takes the mean of the known values instead of failing
    v2, f2 = _grid(3)
    vv = np.concatenate([v, v2 + [0.0, 0.0, 5.0]])
    ff = np.concatenate([f, f2 + len(v)])
    kk = np.r_[border, np.zeros(len(v2), bool)]
    out2 = harmonic_fill(vv, ff, np.concatenate([values, np.zeros((len(v2), 2))]), kk)
    assert np.allclose(out2[len(v):], field[border].mean(0), atol=1e-6)
