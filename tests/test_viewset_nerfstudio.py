"""read_viewset on transforms.json files written by hand the way other tools write them (issue 12).

Forms: nerfstudio ns-process-data (top-level OPENCV intrinsics, zero distortion, frames with only
file_path + transform_matrix), instant-ngp colmap2nerf (camera_angle_x + fl_x, aabb_scale, 3x4),
Blender synthetic (camera_angle_x only, file_path without extension, RGBA), per-frame intrinsics.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from PIL import Image

from spin_io.errors import ContractError
from spin_io.viewset import (
    YAW_CCW,
    YAW_CW,
    ViewSetWarning,
    camera_position,
    look_at_c2w,
    read_viewset,
    validate_viewset,
    write_viewset,
)

S = 24  # tiny square images keep these tests fast


def _c2w(az: float, el: float = 0.0, yaw: str = YAW_CCW) -> np.ndarray:
    return look_at_c2w(camera_position(az, el, 2.7, yaw))


def _rgb(seed: int, h: int = S, w: int = S) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = S, w: int = S, on: int = 255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[5:19, 7:17] = on
    return m


def _png(path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _write(d, meta: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "transforms.json").write_text(json.dumps(meta, indent=2))


def _ns_folder(d, azimuths=(0, 60, 120, 180, -120, -60), **top) -> dict:
    """An ns-process-data style folder: images/frame_NNNNN.png, masks/, top-level OPENCV intrinsics."""
    meta = {
        "w": S, "h": S, "fl_x": 31.5, "fl_y": 30.25, "cx": 12.2, "cy": 11.7,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "camera_model": "OPENCV",
        "frames": [],
        "applied_transform": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
        "ply_file_path": "sparse_pc.ply",
    }  # fmt: skip
    meta.update(top)
    for i, az in enumerate(azimuths, start=1):
        _png(d / "images" / f"frame_{i:05d}.png", _rgb(i))
        _png(d / "masks" / f"frame_{i:05d}.png", _mask())
        meta["frames"].append(
            {
                "file_path": f"images/frame_{i:05d}.png",
                "transform_matrix": _c2w(az).tolist(),
                "colmap_im_id": i,
                "mask_path": f"masks/frame_{i:05d}.png",
            }
        )
    _write(d, meta)
    return meta


@pytest.mark.filterwarnings("error")
def test_ns_process_data_folder_reads_with_top_level_intrinsics(tmp_path):
    d = tmp_path / "ns"
    azimuths = (0, 60, 120, 180, -120, -60)
    _ns_folder(d, azimuths)
    vs = read_viewset(d)
    assert len(vs.frames) == 6
    for i, (f, az) in enumerate(zip(vs.frames, azimuths, strict=True), start=1):
        assert (f.fl_x, f.fl_y, f.cx, f.cy) == (31.5, 30.25, 12.2, 11.7)
        assert np.allclose(f.c2w, _c2w(az), atol=1e-12)
        assert np.array_equal(f.rgb, _rgb(i)) and np.array_equal(f.mask, _mask() > 0)
        assert abs((f.azimuth_deg - az + 180) % 360 - 180) < 1e-9 and abs(f.elevation_deg) < 1e-9  # +-180 alike
        assert not f.is_input and f.normal is None and f.normal_frame == "world"
    assert vs.yaw_direction == YAW_CCW and not vs.yaw_declared
    assert vs.declared["angles_computed"] == list(range(6)) and vs.declared["angles_disagreed"] == {}
    validate_viewset(vs)  # what the reader returns satisfies the strict writer-side check


def test_foreign_file_can_be_written_back_and_read_again(tmp_path):
    _ns_folder(tmp_path / "ns")
    vs = read_viewset(tmp_path / "ns")
    write_viewset(tmp_path / "ours", vs)
    back = read_viewset(tmp_path / "ours")
    assert back.yaw_declared and [f.azimuth_deg for f in back.frames] == [f.azimuth_deg for f in vs.frames]
    assert all(np.array_equal(a.mask, b.mask) and a.fl_y == b.fl_y for a, b in zip(vs.frames, back.frames, strict=True))


@pytest.mark.filterwarnings("error")
def test_instant_ngp_style_prefers_fl_x_over_camera_angle_x_and_accepts_3x4(tmp_path):
    d = tmp_path / "ngp"
    alpha = _mask()
    meta = {"camera_angle_x": 0.9, "fl_x": 28.0, "w": S, "h": S, "aabb_scale": 16, "scale": 0.33, "frames": []}
    for i, az in enumerate((0, 90, 180, -90)):
        _png(d / "images" / f"{i:04d}.png", np.dstack([_rgb(i), alpha]))
        meta["frames"].append(
            {"file_path": f"./images/{i:04d}.png", "sharpness": 31.2, "transform_matrix": _c2w(az)[:3].tolist()}
        )
    _write(d, meta)
    vs = read_viewset(d)
    for f, az in zip(vs.frames, (0, 90, 180, -90), strict=True):
        assert (f.fl_x, f.fl_y, f.cx, f.cy) == (28.0, 28.0, S / 2, S / 2)  # fl_y = fl_x, principal point centred
        assert f.c2w.shape == (4, 4) and np.allclose(f.c2w, _c2w(az), atol=1e-12)
        assert np.array_equal(f.mask, alpha > 127)


@pytest.mark.filterwarnings("error")
def test_blender_style_camera_angle_x_only_and_file_path_without_extension(tmp_path):
    d = tmp_path / "blender"
    angle = 0.6911112070083618  # the Blender synthetic scenes' value
    alpha = _mask()
    meta = {"camera_angle_x": angle, "frames": []}
    for i, az in enumerate((30, -150)):
        _png(d / "train" / f"r_{i}.png", np.dstack([_rgb(i), alpha]))
        entry = {"file_path": f"./train/r_{i}", "rotation": 0.0126, "transform_matrix": _c2w(az).tolist()}
        meta["frames"].append(entry)
    _write(d, meta)
    vs = read_viewset(d)
    focal = 0.5 * S / math.tan(0.5 * angle)
    assert [(f.fl_x, f.fl_y, f.cx, f.cy) for f in vs.frames] == [(pytest.approx(focal),) * 2 + (S / 2, S / 2)] * 2
    assert vs.frames[1].azimuth_deg == pytest.approx(-150)


def test_per_frame_intrinsics_override_top_level_ones_with_one_warning(tmp_path):
    d = tmp_path / "mixed"
    meta = _ns_folder(d, (0, 90, 180))
    meta["frames"][1].update({"fl_x": 40.0, "cy": 10.0})
    meta["frames"][2].update({"fl_y": 33.0})
    _write(d, meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vs = read_viewset(d)
    assert len(caught) == 1 and issubclass(caught[0].category, ViewSetWarning)
    text = str(caught[0].message)
    assert "2 frames" in text and "cy, fl_x, fl_y" in text and "per-frame" in text
    assert (vs.frames[0].fl_x, vs.frames[0].fl_y, vs.frames[0].cy) == (31.5, 30.25, 11.7)
    assert (vs.frames[1].fl_x, vs.frames[1].fl_y, vs.frames[1].cx, vs.frames[1].cy) == (40.0, 30.25, 12.2, 10.0)
    assert (vs.frames[2].fl_x, vs.frames[2].fl_y) == (31.5, 33.0)


@pytest.mark.filterwarnings("error")
def test_per_frame_only_intrinsics_like_polycam_or_multi_camera_colmap(tmp_path):
    d = tmp_path / "poly"
    meta = {"camera_model": "OPENCV", "frames": []}
    for i, az in enumerate((0, 120, -120)):
        _png(d / "images" / f"frame_{i:05d}.png", _rgb(i))
        _png(d / "masks" / f"frame_{i:05d}.png", _mask())
        meta["frames"].append(
            {
                "fl_x": 30.0 + i, "fl_y": 29.0 + i, "cx": 12.0 - i, "cy": 11.0 + i, "w": S, "h": S,
                "k1": 0.0, "k2": 0.0, "k3": 0.0, "k4": 0.0, "p1": 0.0, "p2": 0.0,
                "file_path": f"images/frame_{i:05d}.png", "mask_path": f"masks/frame_{i:05d}.png",
                "transform_matrix": _c2w(az).tolist(),
            }
        )  # fmt: skip
    _write(d, meta)
    vs = read_viewset(d)
    expected = [(30.0 + i, 29.0 + i, 12.0 - i, 11.0 + i) for i in range(3)]
    assert [(f.fl_x, f.fl_y, f.cx, f.cy) for f in vs.frames] == expected


@pytest.mark.filterwarnings("error")
def test_pinhole_with_only_fl_x_takes_size_and_principal_point_from_the_image(tmp_path):
    d = tmp_path / "pinhole"
    h, w = 16, 32
    meta = {"camera_model": "PINHOLE", "fl_x": 40.0, "frames": []}
    for i, az in enumerate((0, 180)):
        _png(d / f"{i}.png", _rgb(i, h, w))
        _png(d / f"{i}_mask.png", _mask(h, w))
        entry = {"file_path": f"{i}.png", "mask_path": f"{i}_mask.png", "transform_matrix": _c2w(az).tolist()}
        meta["frames"].append(entry)
    _write(d, meta)
    vs = read_viewset(d)
    for f in vs.frames:
        assert (f.width, f.height) == (w, h) and (f.fl_x, f.fl_y, f.cx, f.cy) == (40.0, 40.0, 16.0, 8.0)


@pytest.mark.filterwarnings("error")
def test_shuffled_frames_keep_the_file_order_and_any_frame_may_be_the_input(tmp_path):
    d = tmp_path / "shuffled"
    azimuths = (120, 0, -60, 180, 60)
    meta = _ns_folder(d, azimuths)
    meta["frames"][1]["is_input"] = True
    meta["frames"].insert(0, meta["frames"].pop(3))  # the file lists frame_00004 first
    _write(d, meta)
    vs = read_viewset(d)
    order = (180, 120, 0, -60, 60)
    for f, az in zip(vs.frames, order, strict=True):
        assert np.allclose(f.c2w, _c2w(az), atol=1e-12)
    assert [f.is_input for f in vs.frames] == [False, False, True, False, False]
    assert np.array_equal(vs.frames[0].rgb, _rgb(4))


@pytest.mark.filterwarnings("error")
def test_unknown_fields_anywhere_are_ignored(tmp_path):
    d = tmp_path / "extra"
    meta = _ns_folder(d, (0, 90))
    meta.update({"orientation_override": "none", "some_tool": {"nested": [1, 2, {"x": None}]}, "aabb_scale": 32})
    meta["frames"][0].update({"depth_file_path": "depths/none.png", "sharpness": 88.1, "my_label": ["a"]})
    meta["frames"][1].update({"time": 0.5, "colmap_im_id": None})
    _write(d, meta)
    vs = read_viewset(d)
    assert [f.fl_x for f in vs.frames] == [31.5, 31.5]


@pytest.mark.filterwarnings("error")
def test_rgba_images_without_masks_use_alpha_and_are_composited_on_white(tmp_path):
    d = tmp_path / "rgba"
    rgb = np.full((S, S, 3), (10, 100, 200), np.uint8)
    alpha = np.zeros((S, S), np.uint8)
    alpha[4:20, 4:20] = 255
    alpha[10, 4:20] = 128  # just above the threshold
    alpha[11, 4:20] = 127  # just below
    meta = {"fl_x": 30.0, "frames": []}
    for i, az in enumerate((0, 180)):
        _png(d / f"{i}.png", np.dstack([rgb, alpha]))
        meta["frames"].append({"file_path": f"{i}.png", "transform_matrix": _c2w(az).tolist()})
    _write(d, meta)
    f = read_viewset(d).frames[0]
    assert np.array_equal(f.mask, alpha > 127) and f.mask[10, 5] and not f.mask[11, 5]
    assert tuple(f.rgb[0, 0]) == (255, 255, 255)  # transparent -> white
    assert tuple(f.rgb[5, 5]) == (10, 100, 200)  # opaque -> unchanged
    a = 128 / 255
    assert tuple(f.rgb[10, 5]) == tuple(round(c * a + 255 * (1 - a)) for c in (10, 100, 200))


def test_mask_path_nonzero_means_keep_like_nerfstudio(tmp_path):
    d = tmp_path / "ns"
    _ns_folder(d, (0, 180))
    m = _mask(on=1)
    m[0, 0] = 200
    _png(d / "masks" / "frame_00001.png", m)
    f = read_viewset(d).frames[0]
    assert np.array_equal(f.mask, m > 0) and f.mask.sum() == 14 * 10 + 1


@pytest.mark.filterwarnings("error")
def test_missing_yaw_direction_defaults_and_a_declared_one_is_carried(tmp_path):
    _ns_folder(tmp_path / "a")
    vs = read_viewset(tmp_path / "a")
    assert vs.yaw_direction == YAW_CCW and not vs.yaw_declared and vs.declared["yaw_direction"] is False
    d = tmp_path / "b"
    meta = _ns_folder(d, (0, 90, 180))
    meta["yaw_direction"] = YAW_CW
    for entry, az in zip(meta["frames"], (0, 90, 180), strict=True):
        entry.update({"transform_matrix": _c2w(az, 0, YAW_CW).tolist(), "azimuth_deg": az, "elevation_deg": 0.0})
    _write(d, meta)
    vs = read_viewset(d)
    assert vs.yaw_direction == YAW_CW and vs.yaw_declared
    assert [f.azimuth_deg for f in vs.frames] == [0, 90, 180] and vs.frames[1].c2w[0, 3] == pytest.approx(-2.7)


@pytest.mark.filterwarnings("error")
def test_missing_azimuth_and_elevation_are_computed_from_the_matrix(tmp_path):
    d = tmp_path / "angles"
    views = [(0, 0), (75, 20), (-130, -15), (170, 40)]
    meta = _ns_folder(d, [a for a, _ in views])
    for entry, (az, el) in zip(meta["frames"], views, strict=True):
        entry["transform_matrix"] = _c2w(az, el).tolist()
    meta["frames"][1]["azimuth_deg"] = 75.0  # declared and consistent: kept; elevation computed
    meta["frames"][3].update({"azimuth_deg": 170.0, "elevation_deg": 40.0})
    _write(d, meta)
    vs = read_viewset(d)
    assert [(f.azimuth_deg, f.elevation_deg) for f in vs.frames] == [pytest.approx(v, abs=1e-9) for v in views]
    assert vs.declared["angles_computed"] == [0, 1, 2]


def test_wrongly_declared_yaw_is_kept_matrices_untouched_angles_recomputed_one_warning(tmp_path):
    # the writer placed cameras and azimuths clockwise but declared counter-clockwise
    d = tmp_path / "wrong_yaw"
    azimuths = (0, 45, 90, 135, -90)
    meta = _ns_folder(d, azimuths, yaw_direction=YAW_CCW)
    for entry, az in zip(meta["frames"], azimuths, strict=True):
        entry.update({"transform_matrix": _c2w(az, 0, YAW_CW).tolist(), "azimuth_deg": float(az), "elevation_deg": 0.0})
    _write(d, meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vs = read_viewset(d)
    assert len(caught) == 1 and issubclass(caught[0].category, ViewSetWarning)
    text = str(caught[0].message)
    assert "4 of 5 frames" in text and "'ccw_from_above'" in text and "all agree under 'cw_from_above'" in text
    assert vs.yaw_direction == YAW_CCW and vs.yaw_declared  # carried unchanged: recon's pixel check decides
    for f, az in zip(vs.frames, azimuths, strict=True):
        assert np.allclose(f.c2w, _c2w(az, 0, YAW_CW), atol=1e-12)  # the geometry as given
        assert f.azimuth_deg == pytest.approx(-az if az else 0.0, abs=1e-9)  # consistent with it under the yaw
    assert sorted(vs.declared["angles_disagreed"]) == [1, 2, 3, 4]
    validate_viewset(vs)


def test_nearly_orthonormal_printed_matrices_are_accepted_and_cleaned(tmp_path):
    d = tmp_path / "rounded"
    meta = _ns_folder(d, (0, 100, -100))
    for entry in meta["frames"]:
        entry["transform_matrix"] = np.round(np.asarray(entry["transform_matrix"]), 4).tolist()
    _write(d, meta)
    vs = read_viewset(d)
    for f in vs.frames:
        rot = f.c2w[:3, :3]
        assert np.allclose(rot.T @ rot, np.eye(3), atol=1e-12) and np.linalg.det(rot) == pytest.approx(1.0)


def test_absolute_file_path_is_used_as_is(tmp_path):
    d = tmp_path / "abs"
    meta = _ns_folder(d, (0, 180))
    _png(tmp_path / "elsewhere" / "front.png", _rgb(42))
    meta["frames"][0]["file_path"] = str(tmp_path / "elsewhere" / "front.png")
    _write(d, meta)
    assert np.array_equal(read_viewset(d).frames[0].rgb, _rgb(42))


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda m: m.update(k1=-0.05), r"frame 0: k1 = -0.05 \(at the top level.*undistort the images first"),
        (lambda m: m["frames"][2].update(p2=0.001), r"frame 2: p2 = 0.001 \(in this frame\).*undistort"),
        (
            lambda m: m["frames"][1].update(distortion_params=[0, 0.01, 0, 0, 0, 0]),
            r"frame 1: distortion_params\[1\] \(k2\) = 0.01",
        ),
        (lambda m: m.update(camera_model="OPENCV_FISHEYE"), r"frame 0: camera_model 'OPENCV_FISHEYE'.*undistort"),
        (lambda m: m.update(camera_model="EQUIRECTANGULAR"), r"frame 0: camera_model 'EQUIRECTANGULAR'"),
    ],
)
def test_distorted_or_non_pinhole_cameras_are_refused_naming_field_and_frame(tmp_path, edit, pattern):
    d = tmp_path / "distorted"
    meta = _ns_folder(d, (0, 90, 180))
    edit(meta)
    _write(d, meta)
    with pytest.raises(ContractError, match=r"transforms\.json: " + pattern) as info:
        read_viewset(d)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (
            lambda m: [m.pop(k) for k in ("fl_x", "fl_y")] and m["frames"][0].update(fl_x=30.0),
            r"frame 1: no focal length: give fl_x \(per frame or at the top level\) or camera_angle_x",
        ),
        (lambda m: m["frames"][2].pop("file_path"), r"frame 2: no file_path"),
        (lambda m: m["frames"][1].pop("transform_matrix"), r"frame 1: no transform_matrix"),
        (lambda m: m["frames"][1].update(transform_matrix=[[1, 0], [0, 1]]), r"frame 1: transform_matrix must be 4x4"),
        (lambda m: m["frames"][0].pop("mask_path"), r"frame 0: no mask_path .*recon needs a mask per view"),
        (lambda m: m.update(w=32), r"frame 0: transforms.json says w=32 \(top level\)"),
        (lambda m: m.update(fl_x="wide"), r"frame 0: fl_x must be a number"),
        (lambda m: m.update(yaw_direction="left"), r"'yaw_direction' must be one of"),
    ],
)
def test_missing_or_broken_essentials_raise_one_clear_error(tmp_path, edit, pattern):
    d = tmp_path / "broken"
    meta = _ns_folder(d, (0, 90, 180))
    edit(meta)
    _write(d, meta)
    with pytest.raises(ContractError, match=r"transforms\.json: " + pattern) as info:
        read_viewset(d)
    assert "\n" not in str(info.value)


def test_opaque_alpha_is_not_a_mask(tmp_path):
    d = tmp_path / "opaque"
    meta = {"fl_x": 30.0, "frames": []}
    for i, az in enumerate((0, 180)):
        _png(d / f"{i}.png", np.dstack([_rgb(i), np.full((S, S), 255, np.uint8)]))
        meta["frames"].append({"file_path": f"{i}.png", "transform_matrix": _c2w(az).tolist()})
    _write(d, meta)
    with pytest.raises(ContractError, match=r"frame 0: no mask_path and the alpha channel of 0.png is opaque"):
        read_viewset(d)
