"""Synthetic ground truth: axes, handedness, closedness, determinism, rendered conventions."""

from __future__ import annotations

import numpy as np
import pytest

from recon.mesh_ops import edge_manifold_report
from recon.synth import Perturbation, fsaverage_head, procedural_head, render_viewset, ring_views
from recon.synth.heads import procedural_params


def _volume(v, f):
    a, b, c = (v[f[:, i]] for i in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6


def test_fsaverage_is_closed_upright_and_faces_plus_z():
    h = fsaverage_head(subdivisions=1)
    rep = edge_manifold_report(h.faces)
    assert rep["boundary_edges"] == rep["nonmanifold_edges"] == rep["misoriented_edges"] == 0
    assert _volume(h.vertices, h.faces) > 0  # outward orientation
    ext = (h.vertices.max(0) - h.vertices.min(0)) * 0.4
    assert ext[1] == pytest.approx(0.263, abs=0.01)  # metres, vertical extent incl. neck
    assert ext[0] < ext[2] < ext[1]  # narrower than deep, deep less than tall
    nose = h.vertices[np.argmax(h.vertices[:, 2])]
    assert abs(nose[0]) < 0.02 and nose[1] > h.vertices[:, 1].min() + 0.25 * (ext[1] / 0.4)


def test_fsaverage_conversion_is_a_rotation_not_a_mirror():
    import os

    import mne

    path = os.path.join(os.path.dirname(mne.__file__), "data", "fsaverage", "fsaverage-head.fif")
    ras = mne.read_bem_surfaces(path, verbose=False)[0]["rr"]
    h = fsaverage_head(subdivisions=0)
    # the map RAS -> ours is linear up to the centring and scale; recover it and check det > 0
    A, *_ = np.linalg.lstsq(np.c_[ras, np.ones(len(ras))], h.vertices, rcond=None)
    assert np.linalg.det(A[:3]) > 0
    assert A[0, 0] < 0 and A[2, 1] > 0 and A[1, 2] > 0  # right -> -X, up -> +Y, anterior -> +Z


def test_procedural_heads_are_seeded_closed_and_asymmetric():
    a = procedural_head(5, voxel_m=0.005, target_faces=8000)
    b = procedural_head(5, voxel_m=0.005, target_faces=8000)
    assert np.array_equal(a.vertices, b.vertices)
    assert procedural_params(5) != procedural_params(6)
    rep = edge_manifold_report(a.faces)
    assert rep["boundary_edges"] == rep["nonmanifold_edges"] == 0
    assert _volume(a.vertices, a.faces) > 0
    # the cheek bump sits on +X (the subject's left): more surface protrudes there than on -X
    P = a.info["params"]
    tip = np.array(P["bump_c"]) + 0.018 * np.array([0.6, 0.0, 0.8])  # on the bump, metres
    centre = np.array(a.info["centre_m"])

    def gap_mm(p_m):
        return np.linalg.norm(a.vertices - (p_m - centre) / 0.4, axis=1).min() * 400

    assert gap_mm(tip) < 3.0
    assert gap_mm(tip * [-1, 1, 1]) > gap_mm(tip) + 2.0


def test_rendered_views_follow_the_declared_conventions():
    h = procedural_head(2, voxel_m=0.005, target_faces=8000)
    vs = render_viewset(h, ring_views(4), size=48, normal_frame="camera")
    f0 = vs.frames[0]
    assert f0.rgb[0, 0].tolist() == [255, 255, 255] and f0.mask.mean() > 0.1
    n = f0.normal[f0.mask]
    assert n[:, 2].mean() > 0.6  # camera-frame normals face the camera (+Z, blue)
    side = vs.frames[1]  # azimuth 90: camera on +X looking at the left side of the head
    assert side.c2w[0, 3] > 2.6
    world = side.normal[side.mask] @ side.c2w[:3, :3].T
    assert world[:, 0].mean() > 0.5
    noisy = render_viewset(h, ring_views(4), size=48, perturb=Perturbation(), seed=3)
    assert not np.array_equal(noisy.frames[0].rgb, f0.rgb)
    assert np.allclose(noisy.frames[2].c2w, vs.frames[2].c2w)  # declared cameras stay nominal
