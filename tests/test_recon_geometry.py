"""Cameras, rasteriser, mesh checks and metrics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon.cameras import Cameras, mirror_yaw, opencv_to_opengl, opengl_to_opencv
from recon.errors import DegenerateResultError
from recon.mesh_ops import edge_manifold_report, self_intersections
from recon.metrics import surface_metrics
from recon.pipeline import check_mesh
from recon.raster import TorchRasterizer, interpolate, rasterize_views
from spin_io.viewset import YAW_CW, camera_position, focal_from_fov, look_at_c2w


def _cams(positions, size=64) -> Cameras:
    c2w = torch.tensor(np.stack([look_at_c2w(p) for p in positions]), dtype=torch.float32)
    f = focal_from_fov(size)
    n = len(positions)
    return Cameras(c2w, torch.full((n,), f), torch.full((n,), f), torch.full((n,), size / 2),
                   torch.full((n,), size / 2), size, size)


def _icosphere(radius: float = 1.0, subdivisions: int = 3):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices), np.asarray(m.faces, np.int64)


def test_projection_and_rays_agree():
    cams = _cams([camera_position(30, 20, 2.7), camera_position(-100, -10, 2.7)])
    pts = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    uv, depth = cams.project(pts)
    assert uv[:, 1] == pytest.approx(torch.tensor([[32.0, 32.0]] * 2))  # origin projects to the centre
    origins, dirs = cams.pixel_rays()
    assert dirs.shape == (2, 64, 64, 3)
    # the ray through the centre pixel corner region points at the origin
    centre_dir = -origins / origins.norm(dim=-1, keepdim=True)
    mid = (dirs[:, 31, 31] + dirs[:, 32, 32]) / 2
    assert torch.allclose(mid / mid.norm(dim=-1, keepdim=True), centre_dir, atol=1e-3)
    assert depth[:, 1] == pytest.approx(torch.tensor([2.7, 2.7]))


def test_gl_projection_matches_pixel_projection():
    cams = _cams([camera_position(50, 10, 2.7)])
    p = torch.tensor([[0.2, 0.1, -0.1]])
    uv, _ = cams.project(p)
    P = cams.gl_projection()[0]
    pc = cams.world_to_camera(p)[0, 0]
    clip = P @ torch.cat([pc, torch.ones(1)])
    ndc = clip[:2] / clip[3]
    u = (ndc[0] + 1) / 2 * 64
    v = (1 - ndc[1]) / 2 * 64
    assert (float(u), float(v)) == pytest.approx((float(uv[0, 0, 0]), float(uv[0, 0, 1])), abs=1e-3)


def test_axis_conversions_are_involutions_and_mirror_is_a_rotation():
    c2w = torch.tensor(look_at_c2w(camera_position(33, 12, 2.7)))
    assert torch.allclose(opencv_to_opengl(opengl_to_opencv(c2w)), c2w)
    cv = opengl_to_opencv(c2w)
    assert torch.allclose(cv[:3, 2], -c2w[:3, 2])  # OpenCV looks along +Z = OpenGL's -Z
    m = mirror_yaw(c2w[None])[0]
    assert torch.linalg.det(m[:3, :3]) == pytest.approx(1.0)
    assert m[:3, 3].numpy() == pytest.approx(camera_position(33, 12, 2.7, YAW_CW))


def test_rasterised_sphere_depth_and_area():
    v, f = _icosphere(0.25, 4)
    cams = _cams([camera_position(0, 0, 2.7)], size=96)
    fr = rasterize_views(TorchRasterizer(), cams, torch.tensor(v, dtype=torch.float32), torch.tensor(f))[0]
    # nearest point of the sphere is at distance 2.7 - 0.5 along the central ray
    centre_depth = float(fr.depth[47:49, 47:49].min())
    assert centre_depth == pytest.approx(2.45, abs=2e-3)
    # silhouette of a sphere seen from distance d: cone half-angle asin(r/d)
    half = math.asin(0.25 / 2.7)
    r_px = focal_from_fov(96) * math.tan(half)
    assert int(fr.covered.sum()) == pytest.approx(math.pi * r_px**2, rel=0.03)
    # perspective-correct barycentrics reproduce 3-D positions on the true sphere
    pos = interpolate(fr, torch.tensor(v, dtype=torch.float32), torch.tensor(f))[fr.covered]
    assert pos.norm(dim=-1).mean() == pytest.approx(0.25, abs=1e-3)


def test_zbuffer_keeps_the_nearer_triangle():
    tri = [[-1, -1, 0], [1, -1, 0], [0, 1, 0]]
    verts = torch.tensor(tri + [[x, y, 0.5] for x, y, _ in tri], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    cams = _cams([np.array([0.0, 0.0, 5.0])], size=32)
    fr = rasterize_views(TorchRasterizer(max_candidates=50), cams, verts, faces)[0]
    assert set(fr.face_id[fr.covered].tolist()) == {1}
    assert float(fr.depth[16, 16]) == pytest.approx(4.5, abs=1e-4)


def test_mesh_checks_catch_open_and_self_intersecting_meshes():
    v, f = _icosphere(1.0, 2)
    assert edge_manifold_report(f)["boundary_edges"] == 0
    assert self_intersections(v, f) == 0
    check_mesh(v, f)
    with pytest.raises(DegenerateResultError, match="boundary_edges"):
        check_mesh(v, f[1:])
    v2 = np.concatenate([v, v + [0.43, 0.11, 0.07]])
    f2 = np.concatenate([f, f + len(v)])
    assert self_intersections(v2, f2) > 0
    with pytest.raises(DegenerateResultError, match="self_intersections"):
        check_mesh(v2, f2)


def test_surface_metrics_closed_form_on_concentric_spheres():
    v, f = _icosphere(0.25, 5)
    grown = v * (0.25 + 0.003) / 0.25  # 3 mm larger at 1 unit = 1 m
    m = surface_metrics(grown, f, v, f, mm_per_unit=1000.0, y_cut=-1.0, count=40_000)
    assert m["chamfer_l1_mm"] == pytest.approx(3.0, abs=0.15)
    assert m["signed_offset_mm"] == pytest.approx(3.0, abs=0.15)
    assert m["fscore@2.5mm"] < 0.05 and m["fscore@5mm"] > 0.99
    assert m["normal_consistency"] > 0.999
    assert set(m["regions"]) == {"face", "back", "crown", "neck"}


def test_hull_keeps_a_neck_that_leaves_the_frame_and_cuts_it_flat():
    from recon.hull import visual_hull

    cams = _cams([camera_position(a, 0, 2.7) for a in (0, 90, 180, 270)], size=64)
    closed = torch.zeros(4, 64, 64)
    closed[:, 16:48, 24:40] = 1.0  # a box fully inside every frame
    open_ = closed.clone()
    open_[:, 40:, 26:38] = 1.0  # a neck running out of the bottom border
    h_closed = visual_hull(cams, closed, voxel=0.02, neck_margin=0.0)
    h_open = visual_hull(cams, open_, voxel=0.02, neck_margin=0.05)
    half_frame = 2.7 * 32 / focal_from_fov(64)  # half the frame height at the origin
    assert h_closed.vertices[:, 1].min() > -half_frame * 0.6
    # the open neck reaches the lowest row every view sees, and the cut there is one flat plane
    assert h_open.y_cut < -half_frame * 0.8
    bottom = h_open.vertices[:, 1] < h_open.y_cut + 1e-6
    assert bottom.sum() > 10 and np.allclose(h_open.vertices[bottom, 1], h_open.y_cut, atol=1e-6)


def test_hull_occupancy_in_the_masks_bottom_rows_follows_the_neck_above_them():
    """A neck that runs out of the frame leaves the hull open below it, but inside the frame it keeps its width.

    The bottom rows of a mask stand in for nothing (a matte eroded by a pixel or two still leaves the neck open);
    once every point in them counted as inside, the hull's last rows above the neck cut fused into a slab 30 mm
    too wide on the evaluation heads. In those rows the column's last trusted row now decides.
    """
    from recon.hull import _occupancy

    size, dist = 64, 2.7
    cams = _cams([camera_position(0, 0, dist)], size=size)
    masks = torch.zeros(1, size, size)
    masks[0, 16:48, 22:42] = 1.0  # a head
    masks[0, 40:, 26:38] = 1.0  # a neck 12 px wide running out of the bottom border
    masks[0, -2:, :] = 0.0  # ... and a matte eroded by two rows at the border
    origins, dirs = cams.pixel_rays()
    forward = cams.c2w[0, :3, :3] @ torch.tensor([0.0, 0.0, -1.0])

    def point(col: int, row: int) -> torch.Tensor:  # on the ray through that pixel's centre, at the origin's depth
        d = dirs[0, row, col]
        return origins[0] + d * dist / float(d @ forward)

    uv, _ = cams.project(point(24, 62)[None])
    assert torch.allclose(uv[0, 0], torch.tensor([24.5, 62.5]), atol=1e-3)  # the helper lands where it says
    below = point(32, 63) + torch.tensor([0.0, -0.2, 0.0])  # under the frame's bottom edge
    pts = torch.stack([point(32, 62), point(24, 62), point(8, 62), point(32, 52), point(24, 52), below])
    occ, seen = _occupancy(pts, cams, masks)
    # in the bottom rows: the neck's columns inside (eroded or not), the head's and the background's outside
    assert occ.tolist()[:3] == [1.0, 0.0, 0.0]
    assert occ.tolist()[3:5] == [1.0, 0.0]  # above them the mask itself
    assert occ.tolist()[5] == 1.0 and seen.tolist() == [1, 1, 1, 1, 1, 0]  # below the frame: open, not seen


def test_taubin_smoothing_removes_ripple_without_shrinking_and_keeps_fixed_vertices():
    import trimesh

    from recon.mesh_ops import taubin_smooth

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    rng = np.random.default_rng(0)
    noisy = v * (1.0 + 0.01 * rng.standard_normal(len(v)))[:, None]  # 1 % radial ripple
    fixed = v[:, 1] < -0.9
    out = taubin_smooth(noisy, f, iterations=3, fixed=fixed)
    r_in, r_out = np.linalg.norm(noisy, axis=1), np.linalg.norm(out, axis=1)
    assert r_out.std() < 0.6 * r_in.std()  # measured 0.55-0.57 of the ripple left after 3 passes
    assert abs(r_out.mean() - 1.0) < 0.002  # no shrinkage (plain Laplacian smoothing would shrink it)
    assert np.array_equal(out[fixed], noisy[fixed])


def _folded_slab() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A thin slab whose top is pushed through its bottom near the centre (a folded ear): the reference vertices,
    the moved ones, the faces and which vertices were pushed."""
    import trimesh

    slab = trimesh.creation.box(extents=(1.0, 1.0, 0.1)).subdivide().subdivide().subdivide()
    ref = np.asarray(slab.vertices, np.float64)
    faces = np.asarray(slab.faces, np.int64)
    moved = ref.copy()
    top = (ref[:, 2] > 0.04) & (np.hypot(ref[:, 0], ref[:, 1]) < 0.2)
    moved[top, 2] -= 0.08 * (1.0 - np.hypot(ref[top, 0], ref[top, 1]) / 0.2) + 0.06  # through the bottom
    return ref, moved, faces, top


def test_a_fold_goes_back_toward_the_reference_only_as_far_as_needed():
    """A thin slab whose top is pushed through its bottom (a folded ear): the repair must uncross it, keep part of
    the move (the old repair reverted the neighbourhood to the reference outright) and leave the rest alone."""
    from recon.mesh_ops import intersecting_face_pairs, repair_self_intersections

    ref, moved, faces, top = _folded_slab()
    assert len(intersecting_face_pairs(moved, faces)) > 0
    fixed, _ = repair_self_intersections(moved, faces, reference=ref, smoothing_rounds=0)
    assert len(intersecting_face_pairs(fixed, faces)) == 0
    kept = (ref[top, 2] - fixed[top, 2]) / (ref[top, 2] - moved[top, 2])
    assert kept.max() > 0.2 and kept.min() >= 0.0  # part of the move survives where it no longer crosses
    far = np.hypot(ref[:, 0], ref[:, 1]) > 0.45
    assert np.array_equal(fixed[far], moved[far])


def test_smoothing_that_stops_uncrossing_a_fold_hands_it_to_the_blend():
    """A wide plateau of the slab's top pushed far through its bottom: rounds of smoothing stop removing crossings,
    and continuing them (with rings that grow) smoothed away most of the slab; with patience the blend toward the
    reference takes over early and the surface stays close to where fusion put it."""
    import trimesh

    from recon.mesh_ops import intersecting_face_pairs, repair_self_intersections

    slab = trimesh.creation.box(extents=(1.0, 1.0, 0.1)).subdivide().subdivide().subdivide()
    ref = np.asarray(slab.vertices, np.float64)
    faces = np.asarray(slab.faces, np.int64)
    moved = ref.copy()
    moved[(ref[:, 2] > 0.04) & (np.hypot(ref[:, 0], ref[:, 1]) < 0.4), 2] -= 0.3  # three thicknesses through
    assert len(intersecting_face_pairs(moved, faces)) > 50
    patient, rounds = repair_self_intersections(moved, faces, reference=ref)
    endless, endless_rounds = repair_self_intersections(moved, faces, reference=ref, patience=0)
    assert len(intersecting_face_pairs(patient, faces)) == 0 and len(intersecting_face_pairs(endless, faces)) == 0
    assert rounds < endless_rounds  # measured 7 and 11
    drift = np.linalg.norm(patient - moved, axis=1).mean()
    assert drift < 0.4 * np.linalg.norm(endless - moved, axis=1).mean()  # measured 0.054 and 0.240
    # where the early stop leaves crossings that nothing after it clears, the repair runs again without it
    again, _ = repair_self_intersections(moved, faces, reference=ref, blend_rounds=0, max_rounds=0)
    assert len(intersecting_face_pairs(again, faces)) == 0
    assert np.array_equal(again, repair_self_intersections(moved, faces, reference=ref, blend_rounds=0, max_rounds=0,
                                                           patience=0)[0])


def test_fold_smoothing_falls_off_with_the_rings_around_the_crossing_faces():
    """One smoothing round moves the crossing faces' vertices most, less ring by ring, and nothing beyond its
    rings: a hard edge to the smoothed region made new crossings there."""
    from recon.mesh_ops import _falloff, _vertex_adjacency, intersecting_face_pairs, repair_self_intersections

    _, moved, faces, _ = _folded_slab()
    pairs = intersecting_face_pairs(moved, faces)
    A, _ = _vertex_adjacency(faces, len(moved))
    w = _falloff(A, faces, pairs, 2)
    core = np.zeros(len(moved), bool)
    core[faces[pairs.ravel()].ravel()] = True
    ring1 = ((A @ core.astype(np.float64)) > 0) & ~core
    assert np.all(w[core] == 1.0) and np.allclose(w[ring1], 2 / 3)
    assert set(np.round(np.unique(w), 6)) == {0.0, round(1 / 3, 6), round(2 / 3, 6), 1.0}
    beyond = w == 0
    assert beyond.sum() > len(moved) // 2
    one, _ = repair_self_intersections(moved, faces, max_rounds=1)  # one round, no reference
    step = np.linalg.norm(one - moved, axis=1)
    assert np.array_equal(one[beyond], moved[beyond])
    outer = np.isclose(w, 1 / 3)
    assert np.median(step[outer]) < np.median(step[core & (step > 0)])


def test_rechecking_only_the_moved_faces_finds_every_crossing():
    """The repair re-tests only the faces it moved; that must equal a full test, big faces (a flat neck cap) too."""
    import trimesh

    from recon.mesh_ops import intersecting_face_pairs, recheck_crossings

    rng = np.random.default_rng(3)
    sphere = trimesh.creation.icosphere(4)
    quad = np.array([[-1.5, 0.3, -1.5], [1.5, 0.3, -1.5], [1.5, 0.3, 1.5], [-1.5, 0.3, 1.5]])  # big faces
    v = np.concatenate([np.asarray(sphere.vertices, np.float64), quad])
    v[:-4] += rng.normal(0.0, 0.01, (len(v) - 4, 3))
    n = len(sphere.vertices)
    f = np.concatenate([np.asarray(sphere.faces, np.int64), [[n, n + 1, n + 2], [n, n + 2, n + 3]]])
    before = intersecting_face_pairs(v, f)
    moved_v = rng.random(len(v)) < 0.05
    moved_v[n:] = False
    moved_v[n + 1] = True  # one big face moves, the other stays
    v2 = v.copy()
    v2[moved_v] += rng.normal(0.0, 0.03, (int(moved_v.sum()), 3))
    incremental = recheck_crossings(v2, f, before, moved_v)
    full = intersecting_face_pairs(v2, f)
    assert len(full) > len(before) > 0
    assert {tuple(p) for p in np.sort(incremental, 1)} == {tuple(p) for p in np.sort(full, 1)}


def test_an_edge_pinched_by_decimation_is_split_into_two_closed_sheets():
    """Two boxes sharing one edge (what decimation leaves where a narrow gap closed): four faces on that edge.
    Splitting gives each box its own copy of the edge's vertices, moved into its own solid, and nothing else."""
    import trimesh

    from recon.mesh_ops import split_pinched_vertices

    a = trimesh.creation.box(bounds=[[0, 0, 0], [1, 1, 1]])
    b = trimesh.creation.box(bounds=[[1, 1, 0], [2, 2, 1]])
    both = trimesh.util.concatenate([a, b])
    both.merge_vertices()
    v, f = np.asarray(both.vertices, np.float64), np.asarray(both.faces, np.int64)
    assert edge_manifold_report(f)["nonmanifold_edges"] == 1
    v2, f2 = split_pinched_vertices(v, f, 0.01)
    report = edge_manifold_report(f2)
    assert report["nonmanifold_edges"] == report["boundary_edges"] == report["misoriented_edges"] == 0
    assert len(v2) == len(v) + 2 and len(f2) == len(f)
    parts = trimesh.Trimesh(v2, f2, process=False).split(only_watertight=True)
    assert len(parts) == 2 and all(p.is_volume for p in parts)
    for p in parts:  # each box keeps its shape; the pinched edge moved 0.01 into it (a sliver of volume)
        lo, hi = p.bounds
        assert np.allclose(hi - lo, 1.0) and 0.98 < abs(p.volume) < 0.9999
    near_edge = v2[np.hypot(v2[:, 0] - 1.0, v2[:, 1] - 1.0) < 0.05]
    assert len(near_edge) == 4  # two ends of the edge, once per box, each moved into its own box
    assert np.sum(near_edge[:, :2].sum(1) < 1.995) == 2 and np.sum(near_edge[:, :2].sum(1) > 2.005) == 2
    clean = trimesh.creation.icosphere(2)
    same_v, same_f = split_pinched_vertices(clean.vertices, clean.faces, 0.01)
    assert np.array_equal(same_f, clean.faces) and np.allclose(same_v, clean.vertices)


def test_sample_images_reads_pixel_centres_at_half_integers_and_clamps_at_the_border():
    from recon.raster import sample_images

    img = torch.arange(12.0).reshape(1, 1, 3, 4)  # value = 4 row + column
    uv = torch.tensor([[[0.5, 0.5], [1.0, 0.5], [2.5, 1.75], [3.5, 2.5], [10.0, 10.0]]])
    out = sample_images(img, uv, 4, 3)
    assert out.shape == (1, 1, 5)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.5, 7.0, 11.0, 11.0]), atol=1e-5)
