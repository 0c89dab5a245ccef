"""ViewSet contract: round trip, conventions helpers, and clear errors for broken folders."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spin_io.errors import ContractError
from spin_io.viewset import (
    YAW_CCW,
    YAW_CW,
    ViewFrame,
    ViewSet,
    ViewSetWarning,
    angles_from_position,
    camera_position,
    focal_from_fov,
    look_at_c2w,
    read_viewset,
    write_viewset,
)


def _frame(az: float, el: float = 0.0, size: int = 16, yaw: str = YAW_CCW, frame: str = "camera", seed: int = 0):
    rng = np.random.default_rng(seed)
    n = rng.normal(size=(size, size, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    mask = np.zeros((size, size), bool)
    mask[4:12, 5:11] = True
    return ViewFrame(
        rgb=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        mask=mask,
        c2w=look_at_c2w(camera_position(az, el, 2.7, yaw)),
        fl_x=focal_from_fov(size),
        fl_y=focal_from_fov(size),
        cx=size / 2,
        cy=size / 2,
        azimuth_deg=az,
        elevation_deg=el,
        normal=n,
        normal_frame=frame,
        is_input=az == 0,
    )


def _viewset(yaw: str = YAW_CCW) -> ViewSet:
    frames = [_frame(a, e, yaw=yaw, seed=i) for i, (a, e) in enumerate([(0, 0), (90, 0), (180, 30), (-45, 30)])]
    frames[1].normal_frame = "world"
    return ViewSet(frames=frames, yaw_direction=yaw, generation={"seed": 3, "steps": 50, "cfg": 3.5})


def test_round_trip_keeps_everything(tmp_path):
    vs = _viewset()
    write_viewset(tmp_path / "views", vs)
    back = read_viewset(tmp_path / "views")
    assert back.yaw_direction == YAW_CCW and back.metres_per_unit == 0.4 and back.generation["cfg"] == 3.5
    assert len(back.frames) == 4
    for a, b in zip(vs.frames, back.frames, strict=True):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.mask, b.mask)
        assert np.allclose(a.c2w, b.c2w) and a.normal_frame == b.normal_frame and a.is_input == b.is_input
        # 8-bit storage of (n + 1) / 2: error at most half a step
        assert np.abs(a.normal - b.normal).max() <= 1.0 / 255 + 1e-6
    meta = json.loads((tmp_path / "views" / "transforms.json").read_text())
    f0 = meta["frames"][0]
    assert {"file_path", "mask_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h"} <= set(f0)


def test_yaw_directions_place_azimuth_90_on_opposite_sides():
    assert camera_position(90, 0, 2.7, YAW_CCW) == pytest.approx([2.7, 0, 0], abs=1e-12)
    assert camera_position(90, 0, 2.7, YAW_CW) == pytest.approx([-2.7, 0, 0], abs=1e-12)
    assert camera_position(0, 30, 2.7)[1] == pytest.approx(2.7 * math.sin(math.radians(30)))
    for yaw in (YAW_CCW, YAW_CW):
        az, el = angles_from_position(camera_position(-70, 25, 2.7, yaw), yaw)
        assert (az, el) == pytest.approx((-70, 25))


def test_look_at_is_opengl_and_looks_at_origin():
    c2w = look_at_c2w(camera_position(40, 20, 2.7))
    forward = -c2w[:3, 2]
    assert forward == pytest.approx(-c2w[:3, 3] / 2.7)
    assert np.linalg.det(c2w[:3, :3]) == pytest.approx(1.0)
    assert c2w[1, 1] > 0  # camera +Y roughly world up


def test_focal_matches_fov():
    f = focal_from_fov(512, 18.837)
    assert 2 * math.degrees(math.atan(256 / f)) == pytest.approx(18.837)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "mask" / "001.png").unlink(), "missing mask"),
        (lambda d: (d / "transforms.json").unlink(), "transforms.json: missing"),
        # issue 12: a missing yaw_direction now defaults; an unknown one is still refused
        (lambda d: _edit(d, lambda m: m.__setitem__("yaw_direction", "sideways")), "yaw_direction"),
        (lambda d: _edit(d, lambda m: m["frames"][2].__setitem__("normal_frame", "tangent")), "normal_frame"),
        (lambda d: _edit(d, lambda m: m["frames"][1].__setitem__("w", 99)), "w=99"),
        (lambda d: _edit(d, lambda m: m.__setitem__("schema_version", 99)), "newer"),
        (lambda d: (d / "transforms.json").write_text("{not json"), "invalid JSON"),
    ],
)
def test_broken_folders_raise_clear_errors(tmp_path, breakage, message):
    d = tmp_path / "views"
    write_viewset(d, _viewset())
    breakage(d)
    with pytest.raises(ContractError, match=message):
        read_viewset(d)


def test_reader_recomputes_angles_that_contradict_the_matrix(tmp_path):
    # issue 12: the reader no longer refuses this (the matrices are the geometry); it warns and recomputes
    d = tmp_path / "views"
    write_viewset(d, _viewset())
    _edit(d, lambda m: m["frames"][1].__setitem__("azimuth_deg", -90.0))
    with pytest.warns(ViewSetWarning, match="disagree"):
        back = read_viewset(d)
    assert back.frames[1].azimuth_deg == pytest.approx(90.0) and back.yaw_direction == YAW_CCW
    assert back.declared["angles_disagreed"] == {1: (-90.0, 0.0)}


def test_mismatched_image_size_is_refused(tmp_path):
    from PIL import Image

    d = tmp_path / "views"
    write_viewset(d, _viewset())
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "mask" / "002.png")
    with pytest.raises(ContractError, match="mask"):
        read_viewset(d)


def _edit(d, fn):
    p = d / "transforms.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))


def test_writer_refuses_nan_normals_and_writes_nothing(tmp_path):
    vs = _viewset()
    vs.frames[2].normal[3, 3, 0] = np.nan
    with pytest.raises(ContractError, match="NaN"):
        write_viewset(tmp_path / "views", vs)
    assert not (tmp_path / "views").exists() or not any((tmp_path / "views").rglob("*"))


def test_writer_refuses_camera_that_contradicts_the_declared_yaw(tmp_path):
    vs = _viewset(YAW_CCW)
    vs.frames[1].c2w = look_at_c2w(camera_position(90, 0, 2.7, YAW_CW))
    with pytest.raises(ContractError, match="yaw_direction"):
        write_viewset(tmp_path / "views", vs)
