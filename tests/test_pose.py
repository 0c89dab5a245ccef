"""The model's camera encoding: SPINMEROUND.md §3.7 worked values and the §3.2 channel layout."""

import math

import pytest
import torch

from smr_core.errors import InputError
from smr_core.pose import (
    MASK_CHANNEL,
    cond_images,
    conditioning_mask,
    pose_channels,
    pose_focal,
    pose_map,
    pose_rotation,
)

# §3.7: (a0, a1, a2) -> ray origin o, direction at pixel (row 32, column 32); translation 2.7
WORKED = [
    ((0, 0, 0), (0.0, 0.0, -2.7), (0.0, 0.0, -1.0)),
    ((0, 45, 0), (-1.909, 0.0, -1.909), (-0.707, 0.0, -0.707)),
    ((0, 90, 0), (-2.7, 0.0, 0.0), (-1.0, 0.0, 0.0)),
    ((0, 180, 0), (0.0, 0.0, 2.7), (0.0, 0.0, 1.0)),
    ((30, 0, 0), (0.0, -1.35, -2.338), (0.0, -0.5, -0.866)),
]

# channel offsets inside the 144 ray-map channels (§3.2 minus the 8 latent channels)
O, O_SIN, O_COS = 0, 3, 48
D, D_SIN, D_COS = 93, 96, 120


@pytest.mark.parametrize(("angles", "origin", "direction"), WORKED)
def test_worked_values(angles, origin, direction):
    m = pose_map(*angles)
    assert m.shape == (144, 64, 64) and m.dtype == torch.float32
    torch.testing.assert_close(m[O : O + 3, 32, 32], torch.tensor(origin), atol=1e-3, rtol=0)
    torch.testing.assert_close(m[D : D + 3, 32, 32], torch.tensor(direction), atol=1e-3, rtol=0)
    # the origin is the camera centre: the same at every pixel
    assert torch.equal(m[O : O + 3], m[O : O + 3, :1, :1].expand(3, 64, 64))


def test_focal_is_pixel_focal_with_rounded_constants():
    f = pose_focal()
    assert f == pytest.approx(4.2634, abs=1e-4)
    # the rounded pi and sqrt(2) matter at this precision: exact constants give 4.2627
    assert abs(f - 1 / (math.tan(math.radians(18.837) / 2) * math.sqrt(2))) > 5e-4
    m = pose_map(0, 0, 0)
    f32 = torch.tensor(f, dtype=torch.float32)
    # column 0 of the central row: x = (0 - 32)/f, y = 0, z = -1; row 0 of the central column: y = +32/f (y up)
    assert torch.equal(m[D : D + 3, 32, 0], torch.stack([-32 / f32, torch.tensor(0.0), torch.tensor(-1.0)]))
    assert torch.equal(m[D : D + 3, 0, 32], torch.stack([torch.tensor(0.0), 32 / f32, torch.tensor(-1.0)]))
    # unnormalised directions: |d| from 1 at the centre to ~10.66 at the corner (a ~165 degree field of view)
    norms = m[D : D + 3].norm(dim=0)
    assert norms.min().item() == pytest.approx(1.0) and norms.max().item() == pytest.approx(10.66, abs=0.01)


def test_y_rotation_is_flipped():
    a = 37.0
    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
    standard_ry_of_minus_a = torch.tensor([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    torch.testing.assert_close(pose_rotation(0, a, 0), standard_ry_of_minus_a)


def test_channel_layout_frequency_major_sin_then_shifted_sin():
    m = pose_map(12.0, 135.0, 4.0)
    assert pose_channels() == 144
    o = m[O : O + 3, 5, 7]
    d = m[D : D + 3, 5, 7]
    for block, value, sin0, cos0, degrees in ((O, o, O_SIN, O_COS, 15), (D, d, D_SIN, D_COS, 8)):
        assert cos0 - sin0 == 3 * degrees and block + 3 == sin0
        for k in range(degrees):
            for j in range(3):
                arg = value[j] * 2**k
                assert m[sin0 + 3 * k + j, 5, 7] == torch.sin(arg)
                assert m[cos0 + 3 * k + j, 5, 7] == torch.sin(arg + math.pi / 2)
                if k < 8:  # float32 sin(x + pi/2) is cos(x) until 2^k |x| gets large
                    assert m[cos0 + 3 * k + j, 5, 7].item() == pytest.approx(math.cos(arg.item()), abs=1e-4)
    assert m.shape[0] == D_COS + 24


def test_smaller_grids_and_encodings():
    assert pose_map(0, 90, size=16).shape == (144, 16, 16)
    assert pose_map(0, 0, max_deg_pos=2, max_deg_dir=1).shape == (3 + 12 + 3 + 6, 64, 64)
    with pytest.raises(InputError):
        pose_map(0, 0, size=0)


def test_cond_images_mask_channel_and_detection():
    angles = [(0, 0), (0, 45), (10, 90, 0)]
    out = cond_images(angles, [False, True, True])
    assert out.shape == (3, 145, 64, 64)
    assert torch.equal(out[0, MASK_CHANNEL], torch.zeros(64, 64))
    assert torch.equal(out[1:, MASK_CHANNEL], torch.ones(2, 64, 64))
    assert torch.equal(out[2, :MASK_CHANNEL], pose_map(10, 90, 0))
    assert conditioning_mask(out).tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("angles", "flags", "match"),
    [([], [], "at least one view"), ([(0, 0)], [True, False], "one flag per view"), ([(0,)], [True], "a0, a1")],
)
def test_cond_images_rejects_bad_input(angles, flags, match):
    with pytest.raises(InputError, match=match):
        cond_images(angles, flags)
