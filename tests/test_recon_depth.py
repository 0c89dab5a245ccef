"""Depth from normals (recon.depth), its fusion in the hull (recon.volume), the hull's extent and neck (recon.hull).

Single-view tests use analytic scenes in OpenGL camera axes (camera at the origin looking down -Z,
depth = distance along the view axis), where ray-sphere intersection gives the exact depth and
normals. Their "hull" is a bicylinder: the visual hull of a sphere seen by two orthographic views
along the camera's x and y axes. It contains the sphere and touches it only along two great circles
(a vertical and a horizontal line through the middle of the image), so the integration has to
carry the shape everywhere else, and copying the hull is off by ~0.4 % of the depth (~5 % at the
rim). A concentric sphere 3 % larger would not do: its normals agree with the sphere's over 92 %
of the pixels, so the anchors switch on almost everywhere and the result is the inflated sphere.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

from recon.cameras import Cameras, cameras_from_frames
from recon.depth import camera_rays, integrate_normals
from recon.hull import extract_surface, hull_grid, largest_component, working_extent
from recon.metrics import sample_surface
from recon.pipeline import world_normals
from recon.synth import GroundTruthHead, render_viewset, ring_views
from recon.volume import VolumeConfig, fuse_depths, robust_location, view_depths, weighted_median
from spin_io.viewset import DEFAULT_FOV_DEG, camera_position, focal_from_fov, look_at_c2w

SIZE = 96
DIST = 2.7
FOCAL = focal_from_fov(SIZE)
INTRINSICS = (FOCAL, FOCAL, SIZE / 2, SIZE / 2)
RAYS = camera_rays(SIZE, SIZE, *INTRINSICS)  # q = ((u - cx) / f, -(v - cy) / f, -1): depth d is the point d q
CENTRE = np.array([0.0, 0.0, -DIST])
RADIUS = 0.3


# ---------------------------------------------------------------------------------------------------------------
# analytic single-view scenes


def _ray_sphere(centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Depths at which each pixel's ray enters and leaves the sphere (inf / -inf where it misses)."""
    qq = (RAYS * RAYS).sum(-1)
    qc = RAYS @ centre
    disc = qc**2 - qq * (centre @ centre - radius**2)
    hit = disc > 0
    s = np.sqrt(np.where(hit, disc, 0.0))
    return np.where(hit, (qc - s) / qq, np.inf), np.where(hit, (qc + s) / qq, -np.inf)


def _sphere(centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth (inf off the sphere) and outward camera-frame normals (0 off the sphere)."""
    depth, _ = _ray_sphere(centre, radius)
    hit = np.isfinite(depth)
    normal = (np.where(hit, depth, 0.0)[..., None] * RAYS - centre) / radius
    return depth, np.where(hit[..., None], normal, 0.0)


def _cylinder_entry(centre: np.ndarray, radius: float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Entry depth into the infinite cylinder around `centre` along a camera axis, and its outward normal there."""
    e = np.eye(3)[axis]
    w = RAYS - (RAYS @ e)[..., None] * e
    c = centre - (centre @ e) * e
    ww = (w * w).sum(-1)
    wc = w @ c
    disc = wc**2 - ww * (c @ c - radius**2)
    hit = disc > 0
    t = np.where(hit, (wc - np.sqrt(np.where(hit, disc, 0.0))) / np.maximum(ww, 1e-300), np.inf)
    p = np.where(hit, t, 0.0)[..., None] * RAYS - centre
    p = p - (p @ e)[..., None] * e
    normal = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    return t, np.where(hit[..., None], normal, 0.0)


def _bicylinder(centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry depth and normal of the visual hull of the sphere from orthographic views along camera x and y."""
    tx, nx = _cylinder_entry(centre, radius, 0)
    ty, ny = _cylinder_entry(centre, radius, 1)
    return np.maximum(tx, ty), np.where((tx >= ty)[..., None], nx, ny)


def _cos(normal: np.ndarray) -> np.ndarray:
    """Cosine of the viewing angle of each pixel."""
    return -(normal * RAYS).sum(-1) / np.linalg.norm(RAYS, axis=-1)


def _rel_error(depth: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|depth - truth| / truth (nan where both are inf, off the object)."""
    with np.errstate(invalid="ignore"):
        return np.abs(depth - truth) / truth


def test_sphere_depth_from_exact_normals_matches_the_closed_form():
    depth, normal = _sphere(CENTRE, RADIUS)
    mask = np.isfinite(depth)
    hull_depth, hull_normal = _bicylinder(CENTRE, RADIUS)
    assert np.all(hull_depth[mask] <= depth[mask] + 1e-12)  # the hull contains the sphere
    hull_err = _rel_error(hull_depth[mask], depth[mask])
    assert np.median(hull_err) > 3e-3  # measured 3.7e-3: copying the hull cannot pass below

    vd = integrate_normals(normal, mask, INTRINSICS, hull_depth, hull_normal)
    assert np.all(np.isfinite(vd.depth[mask])) and np.all(np.isinf(vd.depth[~mask]))
    assert vd.confidence.min() >= 0 and vd.confidence.max() <= 1 and not vd.confidence[~mask].any()
    err = _rel_error(vd.depth[mask], depth[mask])
    facing = _cos(normal)[mask] > 0.2  # leave out the grazing rim
    assert np.median(err) < 5e-4  # measured 2.8e-4 (0.27 mm at 0.4 m/unit)
    assert np.percentile(err[facing], 95) < 1e-3  # measured 4.0e-4
    assert err[facing].max() < 3e-3  # measured 1.1e-3


SMALL_C, SMALL_R = np.array([0.1, 0.07, -2.25]), 0.07


def _two_spheres() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The small sphere in front of the big one: exact depth, normals, and where the small one is in front."""
    d_big, n_big = _sphere(CENTRE, RADIUS)
    d_small, n_small = _sphere(SMALL_C, SMALL_R)
    front = d_small < d_big
    return np.where(front, d_small, d_big), np.where(front[..., None], n_small, n_big), front


def _occluder_scene():
    """A small sphere in front of the big one: depth jumps by 7-11 % across the small one's contour."""
    d_big, _ = _sphere(CENTRE, RADIUS)
    d_small, _ = _sphere(SMALL_C, SMALL_R)
    depth, normal, front = _two_spheres()
    h_big, hn_big = _bicylinder(CENTRE, RADIUS)
    h_small, hn_small = _bicylinder(SMALL_C, SMALL_R)
    nearer = h_small < h_big
    hull_depth = np.where(nearer, h_small, h_big)
    hull_normal = np.where(nearer[..., None], hn_small, hn_big)
    rim = front & ~ndimage.binary_erosion(front)
    assert ((d_big[rim] - d_small[rim]) / d_big[rim]).min() > 0.07  # several % of the depth all along the contour
    # pixels more than 2 px from the occluding contour, on either side, not grazing
    from_contour = np.where(front, ndimage.distance_transform_edt(front), ndimage.distance_transform_edt(~front))
    keep = np.isfinite(depth) & (from_contour > 2) & (_cos(normal) > 0.2)
    vd = integrate_normals(normal, np.isfinite(depth), INTRINSICS, hull_depth, hull_normal)
    return depth, vd, front & keep, ~front & keep


def test_occluder_and_occluded_sphere_both_keep_their_depth():
    depth, vd, small, big = _occluder_scene()
    err = _rel_error(vd.depth, depth)
    assert np.median(err[small]) < 2e-4 and np.percentile(err[small], 95) < 5e-4  # measured 5.4e-5, 9.7e-5
    assert err[small].max() < 1e-3  # measured 1.0e-4: the occluder is one piece, not smeared into the back
    assert np.median(err[big]) < 5e-4  # measured 2.9e-4


@pytest.mark.xfail(
    strict=True,
    reason="bug: the first, uncut solve smears the jump into the occluded sphere; the pair cuts that follow "
    "isolate a ~50 px patch of it (up to 9 px from the contour), which the inside term then pins to the hull "
    "(1-4 % too near). Measured max error 3.7e-2 at 96 px.",
)
def test_no_smearing_across_the_occluding_contour():
    depth, vd, small, big = _occluder_scene()
    err = _rel_error(vd.depth, depth)
    assert err[small | big].max() < 3e-3  # single-sphere scene: 1.1e-3


def _dimple_scene(rho: float = 0.1, h: float = 0.05):
    """The sphere with a spherical dimple (ball of radius rho centred h outside its front) facing the camera."""
    dimple_c = CENTRE + np.array([0.0, 0.0, RADIUS + h])
    d_ball, n_ball = _sphere(CENTRE, RADIUS)
    t_in, t_out = _ray_sphere(dimple_c, rho)
    dimple = np.isfinite(d_ball) & (t_in <= d_ball) & (t_out > d_ball)
    depth = np.where(dimple, t_out, d_ball)
    p = np.where(np.isfinite(depth), depth, 0.0)[..., None] * RAYS
    normal = np.where(dimple[..., None], (dimple_c - p) / rho, n_ball)
    mask = np.isfinite(d_ball)
    vd = integrate_normals(normal, mask, INTRINSICS, d_ball, n_ball)  # hull: the undimpled sphere
    # the dimple's bottom: the pixels next to the optical axis, where the hull's normal agrees with the observed one
    bottom = np.zeros_like(mask)
    bottom[SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1] = True
    agree = (normal * n_ball).sum(-1) > np.cos(np.radians(5.0))
    assert np.array_equal(agree & dimple, bottom)  # so these four pixels carry (wrong) anchors
    assert np.all((depth[bottom] - d_ball[bottom]) / depth[bottom] > 0.02)  # the dimple is 2 % of the depth deep
    return depth, d_ball, vd, dimple, bottom, mask, normal, n_ball


def test_dimple_away_from_its_anchored_bottom_is_integrated():
    depth, hull_depth, vd, dimple, bottom, mask, _, _ = _dimple_scene()
    err = _rel_error(vd.depth, depth)
    assert np.median(err[dimple & ~bottom]) < 1.5e-3  # measured 5.8e-4 (the dimple is 2e-2 deep)
    assert np.median(err[mask & ~dimple]) < 1e-5  # the rest of the sphere touches its hull: measured 6e-8
    outer = dimple & (ndimage.distance_transform_edt(~bottom) > 3)
    assert np.percentile(err[outer], 90) < 2e-3  # measured 6.9e-4


def test_a_patch_no_hull_anchor_holds_takes_its_offset_from_an_earlier_fused_shape():
    """The small sphere in front of the big one, under a flat lid of the hull that is nowhere tangent to it: the
    depth jump cuts it off and no anchor places it. An earlier fused shape (here the truth),
    given as the anchor surface, places it; the big sphere keeps its own hull anchors and its depth."""
    depth, normal, front = _two_spheres()
    mask = np.isfinite(depth)
    h_big, hn_big = _bicylinder(CENTRE, RADIUS)
    lid = ndimage.binary_dilation(front, iterations=3) & mask
    hull_depth = np.where(lid, depth[front].min() - 0.02, h_big)  # 8 mm in front of the small sphere's tip
    hull_normal = np.where(lid[..., None], 0.0, hn_big)
    assert np.all(hull_depth[mask] <= depth[mask])  # the hull contains the scene
    small = front & (ndimage.distance_transform_edt(front) > 2) & (_cos(normal) > 0.2)
    big = ~lid & mask & (_cos(normal) > 0.2)

    floating = _rel_error(integrate_normals(normal, mask, INTRINSICS, hull_depth, hull_normal).depth, depth)
    assert np.median(floating[small]) > 3e-2  # measured 9.1e-2
    vd = integrate_normals(normal, mask, INTRINSICS, hull_depth, hull_normal, surface_depth=depth,
                           surface_normal_cam=normal)
    err = _rel_error(vd.depth, depth)
    assert np.median(err[small]) < 3e-4  # measured 4.5e-5
    assert np.median(err[big]) < 5e-4  # measured 6.1e-5 (2.9e-4 with the hull alone)
    # where the surface misses every ray, the hull's anchors are all there is: the hull-only map
    missing = integrate_normals(normal, mask, INTRINSICS, hull_depth, hull_normal,
                                surface_depth=np.full_like(depth, np.inf), surface_normal_cam=np.zeros_like(normal))
    assert np.array_equal(missing.depth[mask], integrate_normals(normal, mask, INTRINSICS, hull_depth,
                                                                 hull_normal).depth[mask])


def test_lid_anchors_off_an_earlier_fused_shape_are_dropped():
    """The dimple's bottom carries four hull anchors on the undimpled sphere, which alone the integration cannot
    outvote (the strict xfail below). With an earlier fused shape (the truth) they lie 2 % of the depth off it and
    are dropped; the dimple then takes its depth from that shape's weak anchors and its own normals."""
    depth, hull_depth, _, dimple, bottom, mask, normal, n_ball = _dimple_scene()
    vd = integrate_normals(normal, mask, INTRINSICS, hull_depth, n_ball, surface_depth=depth, surface_normal_cam=normal,
                           surface_tolerance=2e-3)
    miss = np.abs(vd.depth[bottom] - depth[bottom]) / (depth[bottom] - hull_depth[bottom])
    assert miss.max() < 0.05  # measured 0.002 (1.00 with the hull alone)
    assert np.median(_rel_error(vd.depth, depth)[mask & ~dimple]) < 1e-5  # measured 9e-7: the rest keeps its anchors
    kept = integrate_normals(normal, mask, INTRINSICS, hull_depth, n_ball, surface_depth=depth,
                             surface_normal_cam=normal)  # no tolerance: the lid's anchors stand
    assert np.abs(kept.depth[bottom] - depth[bottom]).max() / (depth[bottom] - hull_depth[bottom]).min() > 0.5  # 1.00


@pytest.mark.xfail(
    strict=True,
    reason="bug: the four anchored pixels at the dimple's bottom are pulled toward the hull in the first solve, "
    "the pair cuts then isolate them and they end exactly at the hull's depth (error 100 % of the dimple's "
    "depth) instead of being outvoted by the integrated dimple around them",
)
def test_anchors_at_the_bottom_of_a_bridged_concavity_are_outvoted():
    depth, hull_depth, vd, dimple, bottom, mask, _, _ = _dimple_scene()
    miss = np.abs(vd.depth[bottom] - depth[bottom]) / (depth[bottom] - hull_depth[bottom])
    assert miss.max() < 0.1  # measured 1.00: the bottom sits on the hull


# ---------------------------------------------------------------------------------------------------------------
# fusion of rendered views


def _closed_mesh(sdf, lo: float, hi: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of an SDF (negative inside) on a cube grid, outward-oriented."""
    from skimage.measure import marching_cubes

    axis = np.arange(lo, hi + step / 2, step)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)
    v, f, _, _ = marching_cubes(sdf(pts.reshape(-1, 3)).reshape(pts.shape[:3]), 0.0, spacing=(step,) * 3)
    v = v + lo
    f = f.astype(np.int64)
    a, b, c = (v[f[:, i]] for i in range(3))
    if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0:
        f = f[:, ::-1].copy()
    return v, f


def _distance_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Point-to-surface distance, to the tangent plane of the nearest of a dense sample of the surface."""
    from scipy.spatial import cKDTree

    samples, normals = sample_surface(vertices, faces, 200_000, seed=1)
    _, j = cKDTree(samples).query(points)
    return np.abs(((points - samples[j]) * normals[j]).sum(1))


def test_fusion_opens_a_pocket_the_visual_hull_keeps_filled():
    """A sphere with a 3.2 cm deep bowl in its front: no silhouette shows more than its lip."""
    rho, h = 0.12, 0.04
    bowl_c = np.array([0.0, 0.0, RADIUS + h])

    def sdf(p):
        return np.maximum(np.linalg.norm(p, axis=-1) - RADIUS, rho - np.linalg.norm(p - bowl_c, axis=-1))

    v, f = _closed_mesh(sdf, -0.33, 0.33, 0.006)
    vs = render_viewset(GroundTruthHead(v, f, "bowl"), ring_views(8) + ring_views(8, 30.0, 22.5), size=SIZE)
    cams = cameras_from_frames(vs.frames)
    masks = np.stack([fr.mask for fr in vs.frames])
    voxel = 0.01
    grid = hull_grid(cams, torch.tensor(masks, dtype=torch.float32), voxel=voxel)
    hull_v, hull_f = extract_surface(grid)
    cfg = VolumeConfig(workers=3)
    done: list[int] = []
    depth_cams, depths = view_depths(cams, hull_v, hull_f, world_normals(vs), masks, cfg, progress=done.append)
    assert done == list(range(len(vs.frames)))  # one tick per view, counted as they finish
    # the views run on three threads: the same maps, in view order, as on one
    _, serial = view_depths(cams, hull_v, hull_f, world_normals(vs), masks, replace(cfg, workers=1))
    for a, b in zip(depths, serial, strict=True):
        assert np.array_equal(a.depth, b.depth) and np.array_equal(a.confidence, b.confidence) and a.moved == b.moved
    fused_v, fused_f = extract_surface(grid, largest_component(fuse_depths(grid, depth_cams, depths, cfg)))

    gt, _ = sample_surface(v, f, 40_000)
    on_bowl = np.abs(np.linalg.norm(gt - bowl_c, axis=1) - rho) < 1e-3
    floor = on_bowl & (np.hypot(gt[:, 0], gt[:, 1]) < 0.05)
    ball = (np.abs(np.linalg.norm(gt, axis=1) - RADIUS) < 1e-3) & (gt[:, 1] > grid.y_cut + 0.05)
    hull_floor = np.median(_distance_to_surface(gt[floor], hull_v, hull_f))
    fused_floor = _distance_to_surface(gt[floor], fused_v, fused_f)
    assert hull_floor > 4 * voxel  # measured 0.061: the hull cannot open the bowl
    assert np.median(fused_floor) < min(hull_floor / 5, 0.3 * voxel)  # measured 0.0004
    assert np.percentile(fused_floor, 95) < 0.5 * voxel  # measured 0.0012
    assert np.median(_distance_to_surface(gt[on_bowl], fused_v, fused_f)) < 0.3 * voxel  # measured 0.0005
    # elsewhere fusion stays on the ball (0.3 voxel inside it, the hull 0.14: the inside term of the integration
    # keeps each depth map behind every dent of the voxelised hull)
    assert np.median(_distance_to_surface(gt[ball], fused_v, fused_f)) < 0.5 * voxel  # measured 0.0031


# ---------------------------------------------------------------------------------------------------------------
# the hull's neck and extent


def _neck_viewset(elevations: list[float], fov_deg: float, radius: float = 0.1):
    """A capsule 3 units long hanging from y = 0.2: a neck that leaves the bottom of every frame."""
    import trimesh

    m = trimesh.creation.capsule(height=3.0, radius=radius, count=[48, 24])
    v = np.asarray(m.vertices) @ np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # (x, y, z) -> (x, z, -y)
    v[:, 1] += 0.2 - v[:, 1].max()
    f = np.asarray(m.faces, np.int64)
    a, b, c = (v[f[:, i]] for i in range(3))
    if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0:
        f = f[:, ::-1].copy()
    views = [spec for k, el in enumerate(elevations) for spec in ring_views(8, el, 22.5 * (k % 2))]
    return render_viewset(GroundTruthHead(v, f, "neck"), views, size=SIZE, fov_deg=fov_deg)


def _lowest_fully_seen_height(cams: Cameras, radius: float) -> float:
    """Lowest y above which every point of the neck's cross-section lies in some view's frame.

    A point is in a view's frame down to the plane through the camera centre and the image's bottom
    edge (v = H); the capsule is thin, so the side and top planes never bind down there.
    """
    rr = np.sqrt(np.linspace(0.0, 1.0, 40))[:, None] * radius
    phi = np.linspace(0.0, 2 * np.pi, 360, endpoint=False)[None]
    x, z = (rr * np.cos(phi)).ravel(), (rr * np.sin(phi)).ravel()
    c2w = cams.c2w.double().numpy()
    lowest = []
    for i in range(len(cams)):
        R, o = c2w[i, :3, :3], c2w[i, :3, 3]
        slope = (cams.height - float(cams.cy[i])) / float(cams.fy[i])
        n = R @ np.array([0.0, 1.0, -slope])  # in frame on the side n . (p - o) >= 0
        lowest.append(o[1] + (n[0] * (o[0] - x) + n[2] * (o[2] - z)) / n[1])
    return float(np.min(lowest, axis=0).max())


@pytest.mark.parametrize(
    "elevations, fov_deg",
    [
        ([0.0], DEFAULT_FOV_DEG),
        ([0.0], 26.0),
        # pitched views frame the neck below the frustum's half-width at the centre: the box holds it
        ([0.0, 20.0], DEFAULT_FOV_DEG),
    ],
    ids=["ring-0", "ring-0-wide-lens", "rings-0-and-20"],
)
def test_neck_is_cut_where_the_views_stop_seeing_it(elevations, fov_deg):
    vs = _neck_viewset(elevations, fov_deg)
    assert all(fr.mask[-1].any() for fr in vs.frames)  # the neck leaves every frame at the bottom
    cams = cameras_from_frames(vs.frames)
    voxel = 0.01
    grid = hull_grid(cams, torch.tensor(np.stack([fr.mask for fr in vs.frames]), dtype=torch.float32), voxel=voxel)
    expected = _lowest_fully_seen_height(cams, 0.1)
    # the first voxel row at or above the expected height: within a voxel above it
    assert expected - 0.5 * voxel <= grid.y_cut <= expected + 1.5 * voxel  # measured +0.27, +0.81 voxel
    v, _ = extract_surface(grid)
    assert v[:, 1].min() == pytest.approx(grid.y_cut, abs=1e-6)  # closed flat at the cut


def test_working_extent_finds_a_head_off_the_origin_at_another_scale():
    target, ring, sphere_r = np.array([1.0, -2.0, 3.0]), 10.0, 1.2
    positions = [
        target + camera_position(az, el, ring)
        for el, n, offset in ((0.0, 12, 0.0), (35.0, 6, 15.0), (-35.0, 6, 45.0))
        for az in offset + 360.0 * np.arange(n) / n
    ]
    c2w = torch.tensor(np.stack([look_at_c2w(p, target) for p in positions]), dtype=torch.float32)
    V = len(positions)
    full = torch.full((V,), FOCAL)
    half = torch.full((V,), SIZE / 2)
    cams = Cameras(c2w, full, full.clone(), half, half.clone(), SIZE, SIZE)
    centre, extent = working_extent(cams)
    assert np.abs(centre - target).max() < 1e-6  # measured 4.8e-8 (float32 cameras)
    t = np.tan(np.radians(DEFAULT_FOV_DEG / 2))
    assert extent == pytest.approx(ring * t / (1 - t), rel=1e-6)  # holds what the views frame behind the centre

    origins, dirs = cams.pixel_rays()
    oc = origins.double().numpy()[:, None, None, :] - target
    b = (dirs.double().numpy() * oc).sum(-1)
    masks = torch.tensor(b * b - ((oc * oc).sum(-1) - sphere_r**2) > 0, dtype=torch.float32)  # ray hits the sphere
    voxel = 0.04
    grid = hull_grid(cams, masks, voxel=voxel)
    v, _ = extract_surface(grid)
    radial = np.linalg.norm(v - target, axis=1) - sphere_r
    assert np.abs(radial).max() < voxel  # measured 0.72 voxel
    # all in frame: cut at the hull's bottom (the visual hull reaches a little below the sphere)
    assert abs(grid.y_cut - (target[1] - sphere_r)) < voxel


# ---------------------------------------------------------------------------------------------------------------
# robust aggregation of the views' votes


def test_weighted_median_is_the_value_holding_half_the_weight():
    m = torch.tensor([[1.0, 1.0], [2.0, 2.0], [10.0, 10.0]])
    w = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 5.0]])
    assert weighted_median(m, w).tolist() == [2.0, 10.0]
    # views that do not vote (weight 0) are ignored, whatever value they hold
    assert weighted_median(torch.tensor([[-5.0], [3.0], [4.0]]), torch.tensor([[0.0], [1.0], [1.0]])).item() == 3.0


def test_robust_votes_keep_a_thin_part_a_few_drifting_views_would_carve():
    """Six views put the voxel 1 mm inside their surface, three drifted views say 8 mm of free space."""
    tau, inside = 0.02, -0.0025
    m = torch.tensor([[inside]] * 6 + [[tau]] * 3)
    w = torch.ones_like(m)
    mean = float((w * m).sum() / w.sum())
    assert mean > 0  # the weighted mean (Curless & Levoy) carves the voxel: +5 mm
    F = robust_location(m, w, s=0.005, iterations=2).item()
    assert F < 0 and abs(F - inside) < 0.001  # measured -0.0020


def test_robust_votes_equal_the_mean_when_the_views_agree():
    gen = torch.Generator().manual_seed(0)
    m = 0.004 + 0.0005 * torch.randn(12, 500, generator=gen)
    w = torch.rand(12, 500, generator=gen) + 0.1
    mean = (w * m).sum(0) / w.sum(0)
    assert torch.allclose(robust_location(m, w, s=0.005, iterations=2), mean, atol=5e-5)


def test_an_interrupt_during_depth_integration_stops_the_views_not_yet_started(monkeypatch):
    """Ctrl-C while the views integrate: the views still queued never start, and the interrupt comes through."""
    import trimesh

    import recon.volume as volume

    m = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    vs = render_viewset(GroundTruthHead(np.asarray(m.vertices), np.asarray(m.faces, np.int64), "ball"),
                        ring_views(8), size=SIZE)
    cams = cameras_from_frames(vs.frames)
    masks = np.stack([fr.mask for fr in vs.frames])
    grid = hull_grid(cams, torch.tensor(masks, dtype=torch.float32), voxel=0.02)
    hull_v, hull_f = extract_surface(grid)
    started: list[int] = []
    real = volume.integrate_normals

    def counting(*args, **kwargs):
        started.append(1)
        return real(*args, **kwargs)

    def interrupt(_done: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(volume, "integrate_normals", counting)
    with pytest.raises(KeyboardInterrupt):
        cfg = VolumeConfig(workers=1)
        cfg = replace(cfg, sweep=replace(cfg.sweep, enabled=False))  # one integration per view
        view_depths(cams, hull_v, hull_f, world_normals(vs), masks, cfg, progress=interrupt)
    assert 1 <= len(started) <= 2  # the view that finished, perhaps the one the worker had begun; not the other 6
