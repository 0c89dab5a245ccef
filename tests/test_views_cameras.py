"""View schedule: real cameras, the model's angles for them, pass planning, masks and stored normals."""

import itertools
import math

import numpy as np
import pytest

from smr_core.cameras import (
    ViewCamera,
    angular_distance_deg,
    default_cameras,
    euler_from_rotation,
    model_angles,
    pixel_intrinsics,
)
from smr_core.errors import InputError
from smr_core.pose import pose_focal, pose_map, pose_rotation
from smr_core.views import MAX_FRAMES, coverage_cost, plan_passes, unit_normals, white_background_mask
from spin_io.viewset import angles_from_position


def ray_geometry(angles):
    """From the model's ray map: (origin, central direction, one-pixel step right, one-pixel step up)."""
    rays = pose_map(*angles)
    origin = rays[0:3, 32, 32].double().numpy()
    d = rays[93:96].double().numpy()  # direction channels (§3.2), [xyz, row, column]
    centre = d[:, 32, 32]
    right = d[:, 32, 33] - centre
    up = d[:, 31, 32] - centre  # row index grows downwards
    return origin, centre, right, up


def assert_rays_match_camera(angles, cam, atol=2e-5):
    """The ray map is the camera's own geometry once its origin is flipped (p = -o, cameras/module docstring)."""
    origin, centre, right, up = ray_geometry(angles)
    c2w = cam.c2w()
    f = pose_focal()
    np.testing.assert_allclose(-origin, c2w[:3, 3], atol=1e-5 * 2.7 * 10)
    np.testing.assert_allclose(centre, -c2w[:3, 2], atol=atol)  # looks at the head
    np.testing.assert_allclose(right * f, c2w[:3, 0], atol=atol)  # image right, no mirror
    np.testing.assert_allclose(up * f, c2w[:3, 1], atol=atol)


# ---------------------------------------------------------------- cameras


def test_default_schedule_is_a_ring_plus_crown_and_chin_rings():
    cams = default_cameras()
    assert len(cams) == 24 and cams[0] == ViewCamera(0.0, 0.0, is_input=True)
    assert sum(c.is_input for c in cams) == 1
    for e in (0.0, 20.0, -15.0):
        ring = sorted(c.azimuth_deg for c in cams if c.elevation_deg == e)
        assert ring == [k * 45.0 for k in range(8)]
    no_input = default_cameras(4, (0.0,), with_input=False)
    assert [c.azimuth_deg for c in no_input] == [0.0, 90.0, 180.0, 270.0] and not any(c.is_input for c in no_input)


@pytest.mark.parametrize(
    "args, match",
    [((0,), "at least 1"), ((8, (0.0, 95.0)), "between -90 and 90"), ((8, (0.0, 20.0, 20.0)), "distinct"),
     ((8, ()), "at least one ring")],
)
def test_bad_schedules_are_refused(args, match):
    with pytest.raises(InputError, match=match):
        default_cameras(*args)


def test_viewset_cameras_follow_the_conventions():
    f, _, cx, cy = pixel_intrinsics()
    assert 2 * math.degrees(math.atan(256 / f)) == pytest.approx(18.837) and (cx, cy) == (256.0, 256.0)
    for cam in default_cameras():
        c2w = cam.c2w()
        p = c2w[:3, 3]
        assert np.linalg.norm(p) == pytest.approx(2.7)
        np.testing.assert_allclose(-c2w[:3, 2], -p / 2.7, atol=1e-12)  # OpenGL: looks along -Z, at the origin
        assert c2w[1, 1] > 0 and abs(c2w[1, 0]) < 1e-12  # +Y up, no roll
        az, el = angles_from_position(p, "ccw_from_above")
        assert (az - cam.azimuth_deg + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)
        assert el == pytest.approx(cam.elevation_deg)
    np.testing.assert_allclose(ViewCamera(90.0, 0.0).position(), [2.7, 0, 0], atol=1e-12)
    assert ViewCamera(0.0, 20.0).position()[1] > 0  # positive elevation: from above


def test_yaw_direction_from_the_worked_values():
    """§3.7: (0, 90, 0) has o = (-2.7, 0, 0) while the input has o = (0, 0, -2.7): flipping the origins gives the
    input camera on +Z and the a1 = +90 camera on +X, i.e. our azimuth +90 under 'ccw_from_above'."""
    origin_in, *_ = ray_geometry((0.0, 0.0, 0.0))
    origin_90, *_ = ray_geometry((0.0, 90.0, 0.0))
    np.testing.assert_allclose(origin_in, [0, 0, -2.7], atol=1e-5)
    np.testing.assert_allclose(origin_90, [-2.7, 0, 0], atol=1e-5)
    assert model_angles(ViewCamera(90.0, 0.0)) == (0.0, 90.0, 0.0)
    # the input camera's image right is +X, so the a1 = +90 camera sees the side on the photo's right
    _, _, right, _ = ray_geometry((0.0, 0.0, 0.0))
    assert right[0] > 0


@pytest.mark.parametrize("cam", [ViewCamera(a, 0.0) for a in range(0, 360, 45)] + [ViewCamera(0.0, e) for e in
                                                                                   (20.0, -15.0, 45.0)])
def test_angle_encoding_is_exact_on_the_ring_and_the_frontal_pitch(cam):
    assert_rays_match_camera(model_angles(cam, "angles"), cam)
    a, b = model_angles(cam, "angles"), model_angles(cam, "rays")  # both readings give the same rotation here
    np.testing.assert_allclose(pose_rotation(*a).numpy(), pose_rotation(*b).numpy(), atol=1e-5)


@pytest.mark.parametrize("cam", default_cameras(8, (0.0, 20.0, -15.0, 60.0), with_input=False))
def test_ray_encoding_reproduces_every_camera_exactly(cam):
    assert_rays_match_camera(model_angles(cam, "rays"), cam)


def test_angle_encoding_differs_from_the_geometry_off_axis():
    """Documented: (a0, a1, 0) with both non-zero is a tilted, rolled camera, not elevation a0 at azimuth a1."""
    cam = ViewCamera(90.0, 20.0)
    origin, *_ = ray_geometry(model_angles(cam, "angles"))
    assert np.linalg.norm(-origin - cam.position()) > 0.5
    a0, a1, a2 = model_angles(cam, "rays")
    assert abs(a2) > 1.0  # exact rays need a roll


def test_euler_decomposition_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-170, 170, 3)
        R = pose_rotation(*a).double().numpy()
        back = euler_from_rotation(R)
        np.testing.assert_allclose(pose_rotation(*back).double().numpy(), R, atol=1e-5)


# ---------------------------------------------------------------- passes


def _check_plan(cams, passes, max_frames):
    has_input = any(c.is_input for c in cams)
    targets = [t for p in passes for t in p.targets]
    assert sorted(targets) == [i for i, c in enumerate(cams) if not c.is_input]  # each view exactly once
    generated, before_round, current_round = set(), set(), -1
    for k, p in enumerate(passes):
        if p.round != current_round:
            assert p.round == current_round + 1
            current_round, before_round = p.round, set(generated)
        assert len(p.frames) <= max_frames and p.targets
        if has_input:
            assert p.conditioning[0] == 0 and len(p.conditioning) in (1, 3)
        else:
            assert len(p.conditioning) in ((0,) if k == 0 else (0, 1, 3))
        extra = [i for i in p.conditioning if not cams[i].is_input]
        assert set(extra) <= before_round  # only views generated by earlier rounds
        if extra:  # ... and the nearest of them to this pass's targets (least coverage cost, brute force)
            fixed = [i for i in p.conditioning if cams[i].is_input]
            best = min(
                coverage_cost(cams, p.targets, fixed + list(c))
                for c in itertools.combinations(sorted(before_round), len(extra))
            )
            assert coverage_cost(cams, p.targets, p.conditioning) <= best + 1e-6
        generated |= set(p.targets)


def test_default_plan_fills_24_views_in_three_passes():
    cams = default_cameras()
    passes = plan_passes(cams)
    _check_plan(cams, passes, MAX_FRAMES)
    assert passes[0].conditioning == (0,) and passes[0].targets == tuple(range(1, 8))  # the release's "360" pass
    assert [len(p.conditioning) for p in passes] == [1, 3, 3] and len(passes) == 3
    # the sector of azimuths 0..135 conditions on the input and the generated 45 and 90 degree views
    first_sector = passes[1]
    assert {cams[t].azimuth_deg for t in first_sector.targets} == {0.0, 45.0, 90.0, 135.0}
    assert {(cams[i].azimuth_deg, cams[i].elevation_deg) for i in first_sector.conditioning[1:]} == {(45, 0), (90, 0)}


@pytest.mark.parametrize("views", [1, 2, 4, 8, 16, 24])
@pytest.mark.parametrize("rings", [(0.0,), (0.0, 20.0, -15.0), (30.0, -30.0)])
@pytest.mark.parametrize("with_input", [True, False])
def test_plans_cover_every_view_once_within_the_frame_limit(views, rings, with_input):
    cams = default_cameras(views, rings, with_input=with_input)
    if not any(not c.is_input for c in cams):
        assert plan_passes(cams) == []
        return
    for max_frames in (16, 8):
        _check_plan(cams, plan_passes(cams, max_frames), max_frames)


def test_large_main_ring_is_subsampled_evenly_in_the_first_pass():
    cams = default_cameras(24, (0.0,))
    passes = plan_passes(cams)
    first = [cams[i].azimuth_deg for i in passes[0].targets]
    assert len(first) == 15 and passes[0].conditioning == (0,)
    gaps = np.diff(sorted(first + [0.0, 360.0]))
    assert gaps.max() <= 2 * 15.0 + 1e-9  # no gap wider than two ring steps


def test_identity_only_plan_starts_unconditioned_then_uses_three_views():
    cams = default_cameras(8, (0.0, 20.0), with_input=False)
    passes = plan_passes(cams)
    assert passes[0].conditioning == () and len(passes[0].targets) == 8
    assert all(len(p.conditioning) == 3 for p in passes[1:])


def test_plan_errors():
    with pytest.raises(InputError, match="at most one camera"):
        plan_passes([ViewCamera(0, 0, True), ViewCamera(90, 0, True)])
    with pytest.raises(InputError, match="max_frames"):
        plan_passes(default_cameras(4, (0.0, 20.0)), max_frames=3)


def test_angular_distance():
    assert angular_distance_deg(ViewCamera(0, 0), ViewCamera(90, 0)) == pytest.approx(90)
    assert angular_distance_deg(ViewCamera(0, 20), ViewCamera(0, -15)) == pytest.approx(35)


# ---------------------------------------------------------------- masks and normals


def test_white_background_mask_threshold_holes_and_specks():
    img = np.full((64, 64, 3), 255, np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 30) ** 2 < 15**2
    img[disc] = (180, 140, 120)
    img[30:33, 28:31] = 250  # an eye white inside the head: a hole to fill
    img[2:4, 60:62] = 90  # a speck of background noise
    img[50, 5] = (255, 255, 239)  # one channel below the threshold: foreground, but an isolated speck
    mask = white_background_mask(img)
    np.testing.assert_array_equal(mask, disc)
    near_white = np.full((8, 8, 3), 240, np.uint8)
    assert not white_background_mask(near_white).any()  # all channels >= 240: background
    near_white[2:5, 2:5] = 239
    assert white_background_mask(near_white).sum() == 9
    with pytest.raises(InputError):
        white_background_mask(np.zeros((4, 4), np.uint8))


def test_unit_normals_inside_the_mask_only():
    n = np.zeros((4, 4, 3), np.float32)
    n[..., 2] = 0.5
    n[0, 0] = (0.3, -0.4, 0.0)
    mask = np.ones((4, 4), bool)
    mask[3] = False
    out = unit_normals(n, mask)
    np.testing.assert_allclose(np.linalg.norm(out[:3], axis=2), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[0, 0], (0.6, -0.8, 0.0), atol=1e-6)
    assert not out[3].any()
