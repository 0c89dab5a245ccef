"""FaceBoxes + 3DDFA_V2 refinement: checkpoint layouts, camera maths in closed form, safe pickles, wiring."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch

from align import AlignConfig, align_photo
from align.detection import Detection
from align.errors import AlignCheckpointError, AlignWeightsNotFoundError, NoFaceError
from align.faceboxes import FaceBoxes, FaceBoxesNet, decode, load_faceboxes_net, nms, prior_boxes
from align.geometry import Quad
from align.tddfa import (
    TDDFA,
    MobileNetV1,
    P2sRt,
    ParamStats,
    ReleaseRefiner,
    apply_release_refinement,
    crop_roi,
    load_bfm_mean_z,
    load_param_stats,
    load_tddfa_net,
    matrix2angle,
    release_pose,
    roi_box_from_bbox,
    safe_load_pickle,
)
from align.template import KEYPOINT_PARTS, PoseFit, template_points
from align.weights import TDDFA_FILES, find_tddfa_weights, require_tddfa_weights


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(-yaw) Rx(pitch): the convention matrix2angle inverts."""
    cz, sz = math.cos(roll), math.sin(roll)
    cy, sy = math.cos(-yaw), math.sin(-yaw)
    cx, sx = math.cos(pitch), math.sin(pitch)
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return Rz @ Ry @ Rx


def _randomise_bn(net: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ---------------------------------------------------------------------------------- checkpoints


def test_tddfa_loads_the_released_layout_strictly(tmp_path):
    torch.manual_seed(0)
    net = MobileNetV1().eval()
    _randomise_bn(net)
    keys = set(net.state_dict())
    assert {
        "conv1.weight",
        "bn1.running_var",
        "dw2_1.conv_dw.weight",
        "dw5_6.bn_sep.bias",
        "dw6.conv_sep.weight",
    } <= keys
    assert net.fc.weight.shape == (62, 1024)
    # mb1_120x120.pth: {'state_dict': {'module.<key>': tensor}} (DataParallel); older heads are fc_param.*
    released = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    torch.save(released, tmp_path / "mb1.pth")
    head_renamed = {k.replace("module.fc.", "module.fc_param."): v for k, v in released["state_dict"].items()}
    torch.save({"state_dict": head_renamed}, tmp_path / "mb1_fc_param.pth")
    x = torch.randn(2, 3, 120, 120)
    with torch.no_grad():
        ref = net(x)
        for name in ("mb1.pth", "mb1_fc_param.pth"):
            assert torch.equal(load_tddfa_net(tmp_path / name)(x), ref)
    bad = dict(released["state_dict"])
    bad.pop("module.dw6.conv_sep.weight")
    torch.save({"state_dict": bad}, tmp_path / "bad.pth")
    with pytest.raises(AlignCheckpointError, match="mb1_120x120.pth"):
        load_tddfa_net(tmp_path / "bad.pth")


def test_faceboxes_loads_the_released_layout_and_heads_match_the_priors(tmp_path):
    torch.manual_seed(0)
    net = FaceBoxesNet().eval()
    _randomise_bn(net)
    assert {"conv1.conv.weight", "inception3.branch3x3_3.bn.running_mean", "conv4_2.conv.weight"} <= set(
        net.state_dict()
    )
    assert net.loc[0].weight.shape == (84, 128, 3, 3) and net.conf[2].weight.shape == (2, 256, 3, 3)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "FaceBoxesProd.pth")
    loaded = load_faceboxes_net(tmp_path / "FaceBoxesProd.pth")
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        loc, p = loaded(x)
        loc_ref, p_ref = net(x)
    assert torch.equal(loc, loc_ref) and torch.equal(p, p_ref)
    # 21 anchors per stride-32 cell (16 + 4 + 1), 1 per stride-64 and stride-128 cell, ceil'd maps
    n = 21 * 5 * 7 + 3 * 4 + 2 * 2
    assert prior_boxes(160, 224).shape == (n, 4) and loc.shape == (1, n, 4) and p.shape == (1, n)


def test_priors_decode_and_nms_closed_forms():
    pri = prior_boxes(64, 64)
    # first cell: 32 px anchors at offsets 0, .25, .5, .75 of the 32 px step, row-major in (y, x)
    assert np.allclose(pri[1] * 64, [8, 0, 32, 32]) and np.allclose(pri[4] * 64, [0, 8, 32, 32])
    assert np.allclose(pri[16] * 64, [0, 0, 64, 64]) and np.allclose(pri[20] * 64, [16, 16, 128, 128])
    corners = decode(np.zeros((len(pri), 4), np.float32), pri)
    assert np.allclose(corners[20] * 64, [-48, -48, 80, 80])
    loc = np.array([[1.0, -0.5, math.log(2) / 0.2, 0.0]], np.float32)
    assert np.allclose(decode(loc, np.array([[0.5, 0.5, 0.2, 0.1]], np.float32)), [[0.32, 0.445, 0.72, 0.545]])
    boxes = np.array([[0, 0, 9, 9], [1, 0, 10, 9], [20, 20, 29, 29], [5, 0, 14, 9]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1) = 90/110 > 0.3; IoU(3,0) = 50/150 > 0.3; IoU(3,1) = 60/140 > 0.3; box 2 is apart
    assert nms(boxes, scores, 0.3) == [3, 2]
    assert nms(boxes, scores, 0.5) == [3, 0, 2]


def test_faceboxes_below_the_visibility_threshold_finds_nothing():
    net = FaceBoxesNet().eval()
    with torch.no_grad():
        for head in net.conf:
            head.weight.zero_()
            head.bias.copy_(torch.tensor([1.0, 0.0]).repeat(head.bias.numel() // 2))  # p(face) = 0.27
    dets = FaceBoxes(net)(np.full((100, 120, 3), 128, np.uint8))
    assert dets.shape == (0, 5)


# ---------------------------------------------------------------------------------- maths


@pytest.mark.parametrize(
    "yaw,pitch,roll", [(0.0, 0.0, 0.0), (30.0, -20.0, 10.0), (-75.0, 40.0, -45.0), (60.0, 70.0, 30.0)]
)
def test_P2sRt_and_matrix2angle_recover_a_known_camera(yaw, pitch, roll):
    R = _rot(*np.radians([yaw, pitch, roll]))
    s, t = 7.3e-4, np.array([61.0, 58.5, 12.0])
    P = np.concatenate([s * R, t[:, None]], axis=1)
    s_hat, R_hat, t_hat = P2sRt(P)
    assert s_hat == pytest.approx(s, rel=1e-12)
    assert np.allclose(R_hat, R, atol=1e-12) and np.allclose(t_hat, t)
    assert np.degrees(matrix2angle(R_hat)) == pytest.approx([yaw, pitch, roll], abs=1e-9)


def test_matrix2angle_gimbal_branch_puts_everything_in_pitch():
    for yaw in (90.0, -90.0):
        R = _rot(math.radians(yaw), math.radians(25.0), 0.0)
        y, p, r = np.degrees(matrix2angle(R))
        assert (y, r) == (pytest.approx(yaw), 0.0) and p == pytest.approx(25.0)


def test_roi_box_and_crop_closed_form():
    # side 100 -> square int(158) px, centre moved down by 14 px
    assert np.allclose(roi_box_from_bbox([10, 20, 110, 120, 0.9]), [-19, 5, 139, 163])
    img = np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)
    crop = crop_roi(img, np.array([-5.2, 3.0, 10.4, 13.0]))
    assert crop.shape == (10, 15, 3)
    assert not crop[:, :5].any() and np.array_equal(crop[:, 5:], img[3:13, 0:10])


def _param(R: np.ndarray, s_rel: float, t3d: np.ndarray) -> np.ndarray:
    p = np.zeros(62, np.float64)
    p[:12] = np.concatenate([s_rel * R, np.asarray(t3d, np.float64)[:, None]], axis=1).ravel()
    return p


def test_release_pose_maps_the_head_centre_through_the_first_roi_box():
    w = h = 512
    roi = np.array([100.0, 120.0, 400.0, 420.0])  # 300 px -> 2.5 source px per TDDFA px
    s_rel = 1.0 / (2000 * 300 / 511)  # -> s = 1
    mean_z = -40.0
    # frontal: the centre shift is along z only, so t3d's x, y map straight through the ROI box
    x_px, y_px = 255.5 + 0.25 * 255.5, 255.5 - 0.5 * 255.5
    t3d = np.array([(x_px - 100) / 2.5 + 1, 120 - (y_px - 120) / 2.5, 66.7])
    pose = release_pose(_param(np.eye(3), s_rel, t3d), roi, mean_z, w, h)
    assert pose.s == pytest.approx(1.0) and pose.t == pytest.approx((0.25, 0.5))
    assert pose.angles_deg == pytest.approx((0.0, 0.0, 0.0))
    # yaw 30: the object centre (0, 0, mean_z / 2) moves by s_rel * R[0, 2] * mean_z / 2 TDDFA px
    R = _rot(math.radians(30), 0.0, 0.0)
    turned = release_pose(_param(R, s_rel, t3d), roi, mean_z, w, h)
    dx = s_rel * R[0, 2] * 0.5 * mean_z * 2.5 / 255.5
    assert turned.t[0] - pose.t[0] == pytest.approx(dx) and turned.yaw_deg == pytest.approx(30.0)


def test_tddfa_uses_the_first_roi_box_not_the_selected_one():
    """The release normalises t3d with roi_box_lst[0] even when another box is nearest the centre (§7 item 14)."""
    torch.manual_seed(0)
    net = MobileNetV1().eval()
    stats = ParamStats(mean=np.linspace(-1, 1, 62).astype(np.float32), std=np.full(62, 0.1, np.float32))
    tddfa = TDDFA(net, stats, mean_z=-40.0)
    img = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    boxes = [np.array([0.0, 0.0, 60.0, 60.0, 0.99]), np.array([70.0, 60.0, 130.0, 120.0, 0.9])]
    params, rois = tddfa(img, boxes)
    import cv2

    expected_params = []
    for r in rois:
        x = (cv2.resize(crop_roi(img, r), (120, 120)).transpose(2, 0, 1)[None].astype(np.float32) - 127.5) / 128
        with torch.no_grad():
            expected_params.append(net(torch.from_numpy(x))[0].numpy() * stats.std + stats.mean)
    assert np.allclose(params, expected_params, atol=1e-5)
    pose = tddfa.refine(img, boxes)
    assert pose == release_pose(params[1], rois[0], -40.0, 200, 200)
    assert pose != release_pose(params[1], rois[1], -40.0, 200, 200)


def test_refinement_moves_and_scales_the_quad():
    quad = Quad(c=np.array([100.0, 80.0]), x=np.array([40.0, 0.0]), y=np.array([0.0, 40.0]))
    pose = release_pose(_param(np.eye(3), 1e-3, np.array([60.0, 60.0, 0.0])), np.array([0, 0, 120, 120]), 0.0, 121, 121)
    ref = apply_release_refinement(quad, pose)
    assert np.allclose(ref.quad.c, quad.c + quad.x * pose.t[0] - quad.y * pose.t[1])
    assert np.allclose(ref.quad.x, quad.x * pose.s) and ref.s == pose.s


# ---------------------------------------------------------------------------------- pickles and files


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_restricted_unpickler_reads_arrays_and_refuses_code(tmp_path):
    data = {"mean": np.arange(62, dtype=np.float32), "std": np.ones(62, np.float64)}
    for protocol in (2, 4):
        path = tmp_path / f"stats{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        back = safe_load_pickle(path)
        assert np.array_equal(back["mean"], data["mean"]) and back["std"].dtype == np.float64
        assert np.array_equal(load_param_stats(path).mean, data["mean"])
    target = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"mean": _Evil(str(target))}))
    with pytest.raises(AlignCheckpointError, match="is not allowed"):
        safe_load_pickle(tmp_path / "evil.pkl")
    assert not target.exists()


def test_bfm_mean_z_reads_the_fortran_interleaved_mean_shape(tmp_path):
    xyz = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [0.0, 0.0, -2.0]])  # (N, 3)
    (tmp_path / "bfm.pkl").write_bytes(pickle.dumps({"u": xyz.reshape(-1, 1).astype(np.float32)}))
    assert load_bfm_mean_z(tmp_path / "bfm.pkl") == pytest.approx(np.mean([3, 6, 9, -2]))


def test_missing_refinement_files_are_each_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    with pytest.raises(AlignWeightsNotFoundError, match="--weights DIR") as exc:
        require_tddfa_weights(None)
    assert all(name in str(exc.value) for name in TDDFA_FILES.values())
    (tmp_path / "3ddfa").mkdir()
    (tmp_path / "3ddfa" / "mb1_120x120.pth").write_bytes(b"x")
    with pytest.raises(AlignWeightsNotFoundError) as exc:
        require_tddfa_weights(tmp_path)
    msg = str(exc.value)
    assert "mb1_120x120.pth" not in msg
    for name in ("param_mean_std_62d_120x120.pkl", "bfm_noneck_v3.pkl", "FaceBoxesProd.pth"):
        assert name in msg
    assert "3DDFA_V2" in msg and "spin-to-mesh weights fetch" in msg  # where from, and the command that fetches it
    assert not find_tddfa_weights(tmp_path).complete


# ---------------------------------------------------------------------------------- pipeline wiring


class _StubBackend:
    name = "stub"
    info = {"name": "stub"}

    def __init__(self) -> None:
        fit = PoseFit(scale=3.0, rotation=np.eye(3), offset=np.array([450.0, 450.0]), rms_px=0.0)
        self.kps = fit.project(template_points(KEYPOINT_PARTS))

    def detect(self, rgb):
        box = np.r_[self.kps.min(0) - 50, self.kps.max(0) + 50]
        return [Detection(box=box, score=0.9, keypoints=self.kps, fit_points=self.kps, fit_parts=KEYPOINT_PARTS)]

    def embed(self, rgb_crop):
        return None


def _constant_nets() -> tuple[FaceBoxesNet, MobileNetV1]:
    """FaceBoxes that is sure of its stride-128 anchors only; a TDDFA whose output is its parameter mean."""
    fb, mb = FaceBoxesNet().eval(), MobileNetV1().eval()
    with torch.no_grad():
        for i, head in enumerate(fb.conf):
            head.weight.zero_()
            logits = [0.0, 5.0] if i == 2 else [5.0, 0.0]
            head.bias.copy_(torch.tensor(logits).repeat(head.bias.numel() // 2))
        for head in fb.loc:
            head.weight.zero_()
            head.bias.zero_()
        mb.fc.weight.zero_()
        mb.fc.bias.zero_()
    return fb, mb


def test_align_photo_uses_3ddfa_when_its_files_are_present(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    img = np.full((900, 900, 3), 180, np.uint8)  # the whole (refined) head crop inside the photo
    landmark = align_photo(img, backend=_StubBackend(), weights_dir=tmp_path)
    assert landmark.extra["refinement"]["method"] == "landmark"
    with pytest.raises(AlignWeightsNotFoundError, match="FaceBoxesProd.pth"):
        align_photo(img, backend=_StubBackend(), weights_dir=tmp_path, config=AlignConfig(refinement="3ddfa"))

    fb, mb = _constant_nets()
    dets = FaceBoxes(fb)(np.zeros((512, 512, 3), np.uint8))
    assert len(dets) >= 1 and np.allclose(dets[0, :4], [-192, -192, 320, 320])  # the first stride-128 prior
    sx, sy, ex, ey = roi_box_from_bbox(dets[0])
    scale = (ex - sx) / 120
    s_rel = 1.1 / (2000 * (ex - sx) / 511)  # -> s = 1.1
    x_px, y_px = 255.5 * 1.2, 255.5 * 0.9  # -> t = (0.2, 0.1)
    t3d = np.array([(x_px - sx) / scale + 1, 120 - (y_px - sy) / scale, 0.0])
    folder = tmp_path / "3ddfa"
    folder.mkdir()
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in mb.state_dict().items()}}, folder / TDDFA_FILES["checkpoint"]
    )
    torch.save(fb.state_dict(), folder / TDDFA_FILES["faceboxes"])
    stats = {"mean": _param(np.eye(3), s_rel, t3d).astype(np.float32), "std": np.ones(62, np.float32)}
    (folder / TDDFA_FILES["param_stats"]).write_bytes(pickle.dumps(stats))
    (folder / TDDFA_FILES["bfm"]).write_bytes(pickle.dumps({"u": np.zeros((30, 1), np.float32)}))

    out = tmp_path / "out"
    face = align_photo(img, out, backend=_StubBackend(), weights_dir=tmp_path)
    ref = face.extra["refinement"]
    assert ref["method"] == "3ddfa"
    assert ref["s"] == pytest.approx(1.1, rel=1e-4) and ref["t"] == pytest.approx([0.2, 0.1], abs=1e-4)
    assert face.head_pose["yaw_deg"] == pytest.approx(0.0, abs=1e-4)
    written = (out / "face.json").read_text()
    assert '"3ddfa"' in written
    forced = align_photo(img, backend=_StubBackend(), weights_dir=tmp_path, config=AlignConfig(refinement="landmark"))
    assert forced.extra["refinement"]["method"] == "landmark"


def test_release_refiner_without_a_face_box_says_so(tmp_path):
    fb, mb = _constant_nets()
    with torch.no_grad():
        fb.conf[2].bias.copy_(torch.tensor([5.0, 0.0]))
    stats = ParamStats(mean=np.zeros(62, np.float32), std=np.ones(62, np.float32))
    refiner = ReleaseRefiner(FaceBoxes(fb), TDDFA(mb, stats, 0.0))
    quad = Quad(c=np.array([50.0, 50.0]), x=np.array([30.0, 0.0]), y=np.array([0.0, 30.0]))
    with pytest.raises(NoFaceError, match="FaceBoxes"):
        refiner.pose(np.zeros((100, 100, 3), np.uint8), quad)
