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
