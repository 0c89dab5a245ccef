"""Per-view normal alignment (recon.normal_align): tilted normal maps are turned back onto the shape."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from recon.cameras import Cameras
from recon.mesh_ops import vertex_normals
from recon.normal_align import NormalAlignConfig, align_view_normals, kabsch, rotation_angle_deg
from recon.raster import TorchRasterizer, interpolate, rasterize_views
from spin_io.viewset import camera_position, focal_from_fov, look_at_c2w


def _ellipsoid() -> tuple[torch.Tensor, torch.Tensor]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v = np.asarray(m.vertices) * [0.8, 1.0, 0.9]
    return torch.tensor(v, dtype=torch.float32), torch.tensor(np.asarray(m.faces, np.int64))


def _cameras(size: int = 64) -> Cameras:
    positions = [camera_position(az, el, 4.0) for el in (0.0, 20.0) for az in range(0, 360, 90)]
    c2w = torch.tensor(np.stack([look_at_c2w(p) for p in positions]), dtype=torch.float32)
    f = focal_from_fov(size)
    n = len(positions)
    return Cameras(c2w, torch.full((n,), f), torch.full((n,), f), torch.full((n,), size / 2),
                   torch.full((n,), size / 2), size, size)


def _true_maps(v: torch.Tensor, f: torch.Tensor, cams: Cameras) -> tuple[torch.Tensor, np.ndarray]:
    frags = rasterize_views(TorchRasterizer(), cams, v, f)
    vn = vertex_normals(v, f)
    maps = torch.stack([interpolate(fr, vn, f) for fr in frags])
    maps = maps / maps.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return maps, np.stack([fr.covered.numpy() for fr in frags])


def _tilts(count: int, seed: int, max_deg: float) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        axis = rng.normal(size=3)
        angle = rng.uniform(1.0, max_deg)
        out.append(Rotation.from_rotvec(np.radians(angle) * axis / np.linalg.norm(axis)).as_matrix())
    return out


def test_kabsch_recovers_a_known_rotation_exactly():
    rng = np.random.default_rng(0)
    n = torch.tensor(rng.normal(size=(500, 3)))
    n = n / n.norm(dim=-1, keepdim=True)
    R = torch.tensor(Rotation.from_rotvec([0.02, -0.05, 0.03]).as_matrix())
    m = n @ R.T
    w = torch.tensor(rng.uniform(0.1, 1.0, 500))
    assert torch.allclose(kabsch(n, m, w), R, atol=1e-10)
    assert abs(rotation_angle_deg(kabsch(n, m, w)) - np.degrees(np.linalg.norm([0.02, -0.05, 0.03]))) < 1e-6


def test_tilted_views_are_turned_back_and_untilted_views_left_alone():
    v, f = _ellipsoid()
    cams = _cameras()
    truth, masks = _true_maps(v, f, cams)
    tilts = _tilts(len(cams), seed=1, max_deg=5.0)
    tilts[0] = np.eye(3)  # one view as given
    tilted = torch.stack([
        torch.where(truth[i].norm(dim=-1, keepdim=True) > 0.5, truth[i] @ torch.tensor(R, dtype=torch.float32).T,
                    truth[i])
        for i, R in enumerate(tilts)
    ])
    aligned, report = align_view_normals(v, f, cams, tilted, masks)
    for i, row in enumerate(report):
        true_deg = rotation_angle_deg(torch.tensor(tilts[i]))
        assert row["applied"]
        assert abs(row["rotation_deg"] - true_deg) < 0.2, (i, row["rotation_deg"], true_deg)
        on = masks[i]
        cos = (aligned[i][on] * truth[i][on]).sum(-1).clamp(-1, 1)
        assert float(torch.rad2deg(torch.arccos(cos)).mean()) < 0.3
    assert report[0]["rotation_deg"] < 0.2


def test_a_rotation_too_large_to_be_a_tilt_is_reported_not_applied():
    v, f = _ellipsoid()
    cams = _cameras()
    truth, masks = _true_maps(v, f, cams)
    R = torch.tensor(Rotation.from_rotvec(np.radians([0.0, 0.0, 25.0])).as_matrix(), dtype=torch.float32)
    tilted = truth.clone()
    tilted[2] = torch.where(truth[2].norm(dim=-1, keepdim=True) > 0.5, truth[2] @ R.T, truth[2])
    aligned, report = align_view_normals(v, f, cams, tilted, masks, NormalAlignConfig(max_residual_deg=40.0))
    assert not report[2]["applied"] and report[2]["rotation_deg"] > 20.0
    assert torch.equal(aligned[2], tilted[2])
    assert all(r["applied"] for i, r in enumerate(report) if i != 2)
