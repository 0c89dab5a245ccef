"""LODs: budgets, UV validity, texture fidelity (against the analytic colour field and by rendering), geometry."""

from __future__ import annotations

import numpy as np
import pytest
from export_helpers import field_error

from exporters.checks import check_headmesh
from exporters.geometry import closest_points_on_triangles, face_normals
from exporters.lod import SurfaceLookup, build_lods, uv_charts
from exporters.preview import bounding_sphere, render_view
from exporters.sample import fsaverage_head, procedural_head
from exporters.split import split_primitives

BUDGETS = (3000, 1000, 300)


@pytest.fixture(scope="module")
def head():
    """Procedural head: one UV chart that meets itself along a cut at the back (the hard seam case)."""
    return check_headmesh(procedural_head(n_lat=40, n_lon=80, texture_size=512))


@pytest.fixture(scope="module")
def lods(head):
    return build_lods(head, BUDGETS)


def test_budgets_respected_and_uvs_valid(head, lods):
    assert len(head.faces) > BUDGETS[0]
    for lod, budget in zip(lods, BUDGETS, strict=True):
        assert lod.decimated
        assert 0.9 * budget <= len(lod.faces) <= budget
        assert np.isfinite(lod.uv).all() and lod.uv.min() >= 0.0 and lod.uv.max() <= 1.0
        assert lod.faces.min() >= 0 and lod.faces.max() < len(lod.vertices)


def test_lod_texture_matches_the_surface_colour(head, lods):
    """The texture holds colour_field(p) at surface point p: each LOD must show it where it is."""
    base = field_error(head.vertices, head.faces, head.uv, head.albedo)
    assert base.mean() < 0.005  # the bake itself
    for lod, limit in zip(lods, (0.01, 0.02, 0.04), strict=True):
        err = field_error(lod.vertices, lod.faces, lod.uv, head.albedo)
        assert err.mean() < limit, (len(lod.faces), err.mean())
        assert np.mean(err > 0.25) < 0.002  # no faces textured from the wrong side of the seam
    # Negative control: the same measure on a V-flipped mapping is far off, so it can fail.
    flipped = lods[0].uv * [1, -1] + [0, 1]
    assert field_error(lods[0].vertices, lods[0].faces, flipped, head.albedo).mean() > 0.15


def test_many_chart_atlas_lods_keep_texture():
    """fsaverage scalp unwrapped by xatlas: dozens of charts, seams everywhere."""
    head = check_headmesh(fsaverage_head(subdivisions=0, texture_size=512))
    assert uv_charts(head.faces, len(head.vertices)).max() >= 5
    for lod in build_lods(head, (1500, 500)):
        err = field_error(lod.vertices, lod.faces, lod.uv, head.albedo)
        assert err.mean() < 0.03 and np.mean(err > 0.25) < 0.005, (len(lod.faces), err.mean())


def test_rendered_lod2_looks_like_lod0(head, lods):
    centre, radius = bounding_sphere(lods[0].vertices)
    for yaw in (0.0, 90.0, 200.0):
        img0, cov0 = render_view(
            lods[0].vertices, lods[0].faces, lods[0].uv, head.albedo, yaw, 96, centre, radius, lit=False
        )
        img2, cov2 = render_view(
            lods[2].vertices, lods[2].faces, lods[2].uv, head.albedo, yaw, 96, centre, radius, lit=False
        )
        both = cov0 & cov2
        assert both.sum() / (cov0 | cov2).sum() > 0.95  # silhouettes agree
        assert np.abs(img0[both] - img2[both]).mean() < 0.04, yaw


def test_decimated_surface_stays_on_the_source(head, lods):
    lookup = SurfaceLookup(head.vertices, head.faces, head.uv)
    src_n = face_normals(head.vertices, head.faces)
    extent = np.ptp(head.vertices, axis=0).max()
    for lod in lods:
        face, bary = lookup.closest(lod.vertices)
        on_src = np.einsum("qc,qcd->qd", bary, head.vertices[head.faces[face]].astype(np.float64))
        assert np.linalg.norm(on_src - lod.vertices, axis=1).max() < 0.02 * extent
        centre_face, _ = lookup.closest(lod.vertices[lod.faces].mean(axis=1))
        agree = np.sum(face_normals(lod.vertices, lod.faces) * src_n[centre_face], axis=1) > 0
        assert agree.mean() > 0.99  # winding (outward orientation) survives decimation


def test_small_mesh_is_not_decimated(head):
    (lod,) = build_lods(head, (len(head.faces),))
    assert not lod.decimated and lod.vertices is head.vertices


def test_split_primitives_bounds_vertices_and_keeps_every_face():
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 400, size=(1500, 3))
    parts = split_primitives(faces, max_vertices=100)
    assert all(len(p.vertex_ids) <= 100 for p in parts)
    rebuilt = np.concatenate([p.vertex_ids[p.faces] for p in parts])
    np.testing.assert_array_equal(rebuilt, faces)  # without vertices: original order
    (whole,) = split_primitives(faces, max_vertices=400)
    np.testing.assert_array_equal(whole.vertex_ids[whole.faces], faces)


def test_closest_point_matches_brute_force():
    rng = np.random.default_rng(2)
    tris = rng.normal(size=(200, 3, 3))
    points = rng.normal(size=(200, 3)) * 2
    d2, bary = closest_points_on_triangles(points, tris)
    assert np.all(bary >= -1e-12) and np.allclose(bary.sum(1), 1)
    np.testing.assert_allclose(d2, np.sum((np.einsum("qc,qcd->qd", bary, tris) - points) ** 2, axis=1), atol=1e-12)
    s = np.linspace(0, 1, 61)
    b1, b2 = np.meshgrid(s, s)
    keep = b1 + b2 <= 1
    grid = np.stack([1 - b1[keep] - b2[keep], b1[keep], b2[keep]], 1)
    dense = np.einsum("gc,qcd->qgd", grid, tris)
    brute = np.min(np.sum((dense - points[:, None]) ** 2, axis=2), axis=1)
    assert np.all(d2 <= brute + 1e-12)  # never worse than any sample of the triangle
    assert np.all(np.sqrt(brute) - np.sqrt(d2) < 0.05)  # and within the sampling resolution
