"""Camera alignment: each declared camera turned back onto the view it really shows (recon.camera_align)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

from recon.camera_align import CameraAlignConfig, align_cameras, rotated_about, rotation_matrix
from recon.cameras import cameras_from_frames
from recon.pipeline import world_normals
from recon.synth import person_head, render_viewset, ring_views


@pytest.fixture(scope="module")
def head():
    return person_head("dev")  # ears 8 cm from the axis: what a degree of orbit moves by two pixels


@pytest.fixture(scope="module")
def clean(head):
    """16 views at 128 px, rendered from exactly the cameras they declare."""
    return render_viewset(head, ring_views(8) + ring_views(8, 20.0), size=128, normal_frame="world", seed=3)


def _declared(vs, rotvecs_deg: np.ndarray):
    """The same pixels with each camera declared turned by -rotvec about the origin (a generator's pose error)."""
    frames = []
    for f, rv in zip(vs.frames, rotvecs_deg, strict=True):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rv, degrees=True).as_matrix().T
        frames.append(replace(f, c2w=T @ f.c2w))
    return replace(vs, frames=frames)


def _align(vs, head, cfg: CameraAlignConfig):
    cams = cameras_from_frames(vs.frames)
    masks = np.stack([f.mask for f in vs.frames])
    v = torch.tensor(head.vertices, dtype=torch.float32)
    f = torch.tensor(head.faces)
    return align_cameras(v, f, cams, world_normals(vs), masks, np.zeros(3), y_cut=-10.0, cfg=cfg)


def test_rotation_about_a_centre_moves_the_view_as_the_inverse_turn_moves_the_world():
    omega = torch.tensor([0.01, -0.02, 0.015], dtype=torch.float64)
    R = rotation_matrix(omega)
    assert np.allclose(R.numpy(), Rotation.from_rotvec(omega.numpy()).as_matrix(), atol=1e-12)
    from recon.cameras import Cameras

    c2w = torch.eye(4, dtype=torch.float64)
    c2w[2, 3] = 2.5
    one = lambda m: torch.ones(1, dtype=torch.float64)  # noqa: E731
    cam = Cameras(c2w[None], one(0) * 300, one(0) * 300, one(0) * 64, one(0) * 64, 128, 128)
    c = torch.tensor([0.1, -0.05, 0.02], dtype=torch.float64)
    turned = Cameras(rotated_about(c2w, R, c)[None], cam.fx, cam.fy, cam.cx, cam.cy, 128, 128)
    x = torch.tensor([[0.2, 0.1, 0.3], [-0.1, 0.2, -0.1]], dtype=torch.float64)
    assert torch.allclose(turned.project(x)[0], cam.project((x - c) @ R + c)[0], atol=1e-9)


def test_known_pose_errors_are_recovered(head, clean):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(16, 3))
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True) * rng.uniform(0.8, 2.0, (16, 1))
    aligned, report = _align(_declared(clean, truth), head, CameraAlignConfig(zero_mean=False))
    est = np.array([r["rotation_vector_deg"] for r in report])
    err = np.linalg.norm(est - truth, axis=1)
    assert all(r["applied"] for r in report)
    assert err.mean() < 0.15 and err.max() < 0.4, err  # errors of 0.8-2 degrees, to a tenth of a degree
    # the aligned cameras are the ones the views were rendered from
    declared_back = np.stack([f.c2w for f in clean.frames])
    assert np.abs(aligned.c2w.numpy() - declared_back).max() < 0.02


def test_declared_cameras_that_are_right_are_kept(head, clean):
    _, report = _align(clean, head, CameraAlignConfig())
    assert not any(r["applied"] for r in report)
    angles = [r["rotation_deg"] for r in report]
    assert np.mean(angles) < 0.12 and max(angles) < 0.3


def test_a_turn_every_view_shares_is_the_consensus_frame_not_an_error(head, clean):
    common = np.tile([0.0, 1.5, 0.0], (16, 1))
    _, report = _align(_declared(clean, common), head, CameraAlignConfig())
    angles = [r["rotation_deg"] for r in report]
    # what remains is each view's own error (back views, where hair gives the least to hold on to, the most)
    assert np.mean(angles) < 0.2 and max(angles) < 0.5, angles


def test_a_wrong_camera_is_reported_not_applied(head, clean):
    truth = np.zeros((16, 3))
    truth[5] = [0.0, 0.0, 7.0]  # beyond max_rotation_deg (4): a wrong pose, not jitter
    aligned, report = _align(_declared(clean, truth), head, CameraAlignConfig())
    assert not report[5]["applied"] and report[5]["reason"] == "larger than max_rotation_deg"
    assert report[5]["rotation_deg"] == pytest.approx(7.0, abs=0.5)
    # ...and does not move the others: the turn they share is their median, not their mean
    assert not any(r["applied"] for r in report)
    declared = cameras_from_frames(_declared(clean, truth).frames)
    assert torch.equal(aligned.c2w, declared.c2w)


def test_masks_are_not_measured_unless_asked(head, clean):
    _, report = _align(clean, head, CameraAlignConfig())
    assert all(r["mask_shift_px"] is None and not r["mask_shift_applied"] for r in report)


def test_a_matte_a_pixel_tight_or_loose_is_measured_against_the_others(head, clean):
    from scipy import ndimage

    frames = list(clean.frames)
    tight, loose = (2, 7), (4, 11)
    for i in tight:
        frames[i] = replace(frames[i], mask=ndimage.binary_erosion(frames[i].mask))
    for i in loose:
        frames[i] = replace(frames[i], mask=ndimage.binary_dilation(frames[i].mask))
    _, report = _align(replace(clean, frames=frames), head, CameraAlignConfig(mask_offset=True))
    shift = np.array([r["mask_shift_px"] for r in report])
    # one 4-connected erosion moves a straight border by 1 px and a diagonal one by 1/sqrt(2)
    assert np.all((shift[list(tight)] > 0.55) & (shift[list(tight)] < 1.2)), shift  # moved out by what it lost
    assert np.all((shift[list(loose)] < -0.55) & (shift[list(loose)] > -1.2)), shift
    others = [i for i in range(16) if i not in tight + loose]
    applied = np.array([r["mask_shift_applied"] for r in report])
    assert applied[list(tight)].all() and not applied[list(loose)].any()  # loose ones are carved by the others
    assert not applied[others].any(), shift  # the rest agree within min_mask_shift_px: left as they are
    assert np.abs(shift[others]).max() < 0.3
    assert not any(r["applied"] for r in report)  # and no camera is turned to explain a matte


def test_shifted_masks_move_the_border_by_the_shift():
    from recon.camera_align import shifted_masks

    disc = (np.hypot(*np.mgrid[-32:32, -32:32] + 0.5) < 20.0)[None].repeat(3, 0)
    soft, hard = shifted_masks(disc, np.array([0.0, 1.0, -2.0]))
    assert np.array_equal(soft[0], disc[0].astype(np.float32)) and np.array_equal(hard[0], disc[0])
    # the area grows by the perimeter times the shift (2 pi r d); the pixel grid's distances are good to 20 %
    grown = soft.sum((1, 2)) - soft[0].sum()
    assert grown[1] == pytest.approx(2 * np.pi * 20.0 * 1.0, rel=0.2)
    assert grown[2] == pytest.approx(2 * np.pi * 20.0 * -2.0, rel=0.2)
    assert hard[1].sum() > hard[0].sum() > hard[2].sum()


def test_trusted_cameras_are_reported_not_turned(head, clean):
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(16, 3))
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True) * 1.5
    vs = _declared(clean, truth)
    aligned, report = _align(vs, head, CameraAlignConfig(correct_cameras=False, zero_mean=False))
    assert not any(r["applied"] for r in report) and {r["reason"] for r in report} == {"cameras trusted"}
    assert np.mean([r["rotation_deg"] for r in report]) == pytest.approx(1.5, abs=0.3)  # still measured
    assert torch.equal(aligned.c2w, cameras_from_frames(vs.frames).c2w)
