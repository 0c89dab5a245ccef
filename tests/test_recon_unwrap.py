"""recon.unwrap: charts that never overlap, keep every face, stay inside the atlas with their gutters."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from recon.texture import unwrap
from recon.unwrap import UnwrapConfig, unwrap_charts


def _coverage(uv: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per texel centre: how many triangles contain it, and the last one that does (-1: none)."""
    count = np.zeros((size, size), np.int32)
    owner = np.full((size, size), -1, np.int64)
    t = uv[faces] * size
    for f, tri in enumerate(t):
        x0, y0 = np.floor(tri.min(0) - 0.5).astype(int)
        x1, y1 = np.ceil(tri.max(0) - 0.5).astype(int)
        xs, ys = np.meshgrid(np.arange(max(x0, 0), min(x1, size - 1) + 1), np.arange(max(y0, 0), min(y1, size - 1) + 1))
        px, py = xs.ravel() + 0.5, ys.ravel() + 0.5
        a, b, c = tri
        den = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
        if abs(den) < 1e-12:
            continue
        w0 = ((b[1] - c[1]) * (px - c[0]) + (c[0] - b[0]) * (py - c[1])) / den
        w1 = ((c[1] - a[1]) * (px - c[0]) + (a[0] - c[0]) * (py - c[1])) / den
        inside = (w0 > 1e-6) & (w1 > 1e-6) & (1 - w0 - w1 > 1e-6)
        count[ys.ravel()[inside], xs.ravel()[inside]] += 1
        owner[ys.ravel()[inside], xs.ravel()[inside]] = f
    return count, owner


def _head_with_ear() -> tuple[np.ndarray, np.ndarray]:
    """A ball with a thin plate standing 40 degrees off its side, a gap behind it: seen along +x, the plate
    hides skull that faces +x too and joins it round the plate's root."""
    from recon.synth.sdf import ellipsoid, mesh_sdf, rot_y, smin

    def sdf(p: np.ndarray) -> np.ndarray:
        skull = ellipsoid(p, (0.0, 0.0, 0.0), (0.5, 0.5, 0.5))
        # hinged at (0.5, 0, 0) on the skull, swinging back (-z) and out by 25 degrees
        a = np.radians(25.0)
        centre = (0.5 + 0.2 * np.sin(a), 0.0, -0.2 * np.cos(a))
        ear = ellipsoid(p, centre, (0.03, 0.2, 0.21), rot_y(25.0))
        return smin(skull, ear, 0.03)

    return mesh_sdf(sdf, (-0.6, -0.6, -0.6), (0.8, 0.6, 0.6), 0.025)


def _check_atlas(v: np.ndarray, f: np.ndarray, vmap, new_faces, uv, cfg: UnwrapConfig, size: int = 512) -> None:
    assert new_faces.shape == f.shape
    np.testing.assert_array_equal(vmap[new_faces], f)  # every face kept, in order, on its own vertices
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    t = uv[new_faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    signed = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    area3 = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    real = area3 > 1e-9 * area3.max()
    assert np.all(signed[real] > 0)  # no triangle flips
    count, _ = _coverage(uv, new_faces, size)
    assert count.max() == 1  # no texel is claimed by two triangles


def test_sphere_atlas_is_clean_and_fast_to_describe():
    mesh = trimesh.creation.icosphere(subdivisions=4)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    cfg = UnwrapConfig(atlas_size=512)
    vmap, new_faces, uv, report = unwrap_charts(v, f, cfg)
    _check_atlas(v, f, vmap, new_faces, uv, cfg)
    # 14 facing directions; a sphere has no layers, so nothing needs splitting
    assert 6 <= report.charts <= 14
    assert report.split_rounds == 0
    assert report.max_stretch <= 1.0 / cfg.cos_small + 1e-6
    assert report.fill > 0.3


def test_flap_in_front_of_the_skull_is_split_off_and_nothing_overlaps():
    v, f = _head_with_ear()
    cfg = UnwrapConfig(atlas_size=1024, min_chart_faces=10)
    vmap, new_faces, uv, report = unwrap_charts(v, f, cfg)
    assert report.split_rounds >= 1  # the +x chart first held the flap's face and the skull behind it
    _check_atlas(v, f, vmap, new_faces, uv, cfg, size=1024)


def test_without_peeling_rounds_crossing_charts_fall_back_to_single_faces():
    v, f = _head_with_ear()
    peeled = unwrap_charts(v, f, UnwrapConfig(atlas_size=1024, min_chart_faces=10))[3]
    cfg = UnwrapConfig(atlas_size=1024, min_chart_faces=10, max_splits=0)
    vmap, new_faces, uv, report = unwrap_charts(v, f, cfg)
    assert report.split_rounds == 1 and report.charts > peeled.charts + 100  # the crossing chart, face by face
    _check_atlas(v, f, vmap, new_faces, uv, cfg, size=1024)


def test_overlap_without_a_crossing_outline_is_found_and_the_face_behind_leaves():
    """A chart that is not a disc can cover itself twice with outlines that never cross: two squares, one
    floating over the other, as one chart (a ring of neck folding under the cap does this)."""
    from recon.unwrap import _half_edges, _overlapping

    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    x = np.concatenate([square, square + [0.5, 0.25, 1.0]])  # the second square 1 unit in front, half over
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    chart = np.zeros(4, np.int64)
    axis = np.array([[0.0, 0.0, 1.0]])
    he = _half_edges(faces, len(x))
    behind = _overlapping(x, faces, faces, x[:, :2], chart, axis, he)
    assert len(behind) and set(behind) <= {0, 1}  # only faces of the square further back
    far = np.concatenate([square, square + [3.0, 0.0, 1.0]])  # side by side: nothing to move
    assert len(_overlapping(far, faces, faces, far[:, :2], chart, axis, he)) == 0


def test_charts_keep_their_gutter():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    size = 256
    cfg = UnwrapConfig(atlas_size=size, padding_px=3.0)
    vmap, new_faces, uv, report = unwrap_charts(v, f, cfg)
    _, owner = _coverage(uv, new_faces, size)
    # the chart of each face: faces sharing an atlas vertex are in one chart
    chart = np.full(len(new_faces), -1)
    parent = np.arange(len(uv))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, c in new_faces:
        ra, rb, rc = root(a), root(b), root(c)
        parent[rb] = ra
        parent[root(rc)] = ra
    chart = np.array([root(a) for a in new_faces[:, 0]])
    cid = np.where(owner >= 0, chart[np.maximum(owner, 0)], -1)
    # texels of different charts are at least the gutter apart (3 px each side: 6, less a texel of rasterisation)
    for dy in range(-5, 6):
        for dx in range(-5, 6):
            if dx * dx + dy * dy > 25:
                continue
            a = cid[max(dy, 0): size + min(dy, 0), max(dx, 0): size + min(dx, 0)]
            b = cid[max(-dy, 0): size + min(-dy, 0), max(-dx, 0): size + min(-dx, 0)]
            assert not np.any((a >= 0) & (b >= 0) & (a != b))


def test_a_cube_gives_six_square_charts_packed_near_the_densest_layout():
    """Closed form: six equal squares fit a unit square at best with side 1/3 (two rows of three), 6/9 filled."""
    mesh = trimesh.creation.box(extents=(1, 1, 1)).subdivide().subdivide()
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    cfg = UnwrapConfig(atlas_size=1024, padding_px=0.0, min_chart_faces=1)
    vmap, new_faces, uv, report = unwrap_charts(v, f, cfg)
    assert report.charts == 6
    assert report.max_stretch == pytest.approx(1.0)
    assert 0.65 <= report.fill <= 6 / 9 + 1e-9


def test_unknown_method_is_refused():
    mesh = trimesh.creation.icosphere(subdivisions=1)
    with pytest.raises(ValueError, match="unknown unwrap method 'lscm'"):
        unwrap(np.asarray(mesh.vertices), np.asarray(mesh.faces), "lscm")
