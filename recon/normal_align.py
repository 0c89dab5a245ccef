"""Per-view normal-map alignment: undo a generated view's tilted normals before they are fused.

A multi-view diffusion model draws each view's normal map on its own, and a whole map often comes
out turned by a few degrees (the normals of a view are consistent with each other but rotated
against the other views). Fusion then averages normals that disagree everywhere by that rotation,
which blurs and bends the surface. The shape the views agree on (hull + depth fusion) says which
way each surface point really faces, so each view's rotation can be estimated against it and
undone. With n_p a view's observed normal at pixel p and m_p the consensus mesh's normal there
(both world axes), the rotation R minimises (orthogonal Procrustes, Kabsch 1976)

    E(R)  = sum_p w_p |R n_p - m_p|^2
    H     = sum_p w_p n_p m_p^T = U S V^T
    R     = V diag(1, 1, det(V U^T)) U^T

with w_p = cos^2 of the viewing angle (grazing pixels are unreliable on both sides) and pixels whose
normal disagrees with the consensus by more than `max_residual_deg` after the first fit dropped
(occlusion edges, thin parts the consensus lost, concavities it filled). Views whose estimate
exceeds `max_rotation_deg` are left as they are and reported: such a rotation is a wrong camera
or a wrong normal frame, not a tilt, and recon.conventions handles those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.mesh_ops import vertex_normals
from recon.raster import TorchRasterizer, interpolate, rasterize_views


@dataclass
class NormalAlignConfig:
    """Per-view normal alignment settings."""

    enabled: bool = True
    max_rotation_deg: float = 10.0  # larger estimates are not applied (reported instead)
    max_residual_deg: float = 10.0  # pixels further than this from the consensus are dropped after the first fit
    min_pixels: int = 200  # a view with fewer usable pixels keeps its normals
    iterations: int = 4


def kabsch(n: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The rotation R (3, 3) minimising sum_p w_p |R n_p - m_p|^2 (module docstring)."""
    H = (w[:, None, None] * n[:, :, None] * m[:, None, :]).sum(0).double()
    U, _, Vt = torch.linalg.svd(H)
    d = torch.sign(torch.det(Vt.T @ U.T))
    D = torch.diag(torch.tensor([1.0, 1.0, float(d)], dtype=H.dtype, device=H.device))
    return (Vt.T @ D @ U.T).to(n.dtype)


def _rotvec_deg(R: torch.Tensor) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R.double().cpu().numpy()).as_rotvec(degrees=True)


def rotation_vector_deg(R: torch.Tensor) -> list[float]:
    """Axis times angle (degrees, world axes) of a rotation matrix: which way a view's normals were turned back."""
    return [round(float(a), 4) for a in _rotvec_deg(R)]


def rotation_angle_deg(R: torch.Tensor) -> float:
    """Angle of a rotation matrix in degrees."""
    return float(np.linalg.norm(_rotvec_deg(R)))


def align_view_normals(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    normals: torch.Tensor,
    masks: np.ndarray,
    cfg: NormalAlignConfig | None = None,
) -> tuple[torch.Tensor, list[dict]]:
    """Rotate each view's world-frame normal map (V, H, W, 3) onto the consensus mesh.

    Returns the aligned maps and, per view, the estimated rotation angle, whether it was applied and the
    mean angle to the consensus before and after (what metrics.json reports).
    """
    cfg = cfg or NormalAlignConfig()
    frags = rasterize_views(TorchRasterizer(), cameras, vertices, faces)
    vn = vertex_normals(vertices, faces)
    _, dirs = cameras.pixel_rays()
    out = normals.clone()
    report = []
    cos_max = float(np.cos(np.radians(cfg.max_residual_deg)))
    for i, fr in enumerate(frags):
        m_map = interpolate(fr, vn, faces)
        m_map = m_map / m_map.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        n_map = normals[i]
        usable = fr.covered & torch.as_tensor(masks[i], device=n_map.device) & (n_map.norm(dim=-1) > 0.5)
        n, m = n_map[usable], m_map[usable]
        cos_view = (-(dirs[i][usable]) * m).sum(-1).clamp(min=0)
        w = cos_view**2
        entry = {"view": i, "pixels": int(usable.sum())}
        if n.shape[0] < cfg.min_pixels:
            report.append({**entry, "rotation_deg": 0.0, "applied": False, "reason": "too few pixels"})
            continue
        before = _mean_angle(n, m, w)
        R = torch.eye(3, dtype=n.dtype, device=n.device)
        keep = w > 0
        for _ in range(cfg.iterations):
            R = kabsch(n[keep], m[keep], w[keep])
            keep = (w > 0) & (((n @ R.T) * m).sum(-1) > cos_max)
        angle = rotation_angle_deg(R)
        applied = angle <= cfg.max_rotation_deg
        if applied:
            out[i] = torch.where(n_map.norm(dim=-1, keepdim=True) > 0.5, n_map @ R.T, n_map)
        after = _mean_angle(n @ R.T, m, w) if applied else before
        report.append({**entry, "rotation_deg": round(angle, 3), "rotation_vector_deg": rotation_vector_deg(R),
                       "applied": applied,
                       "angle_to_consensus_deg": [round(before, 3), round(after, 3)]})
    return out, report


def _mean_angle(n: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> float:
    """Weighted mean angle (degrees) between two sets of unit normals."""
    c = (n * m).sum(-1).clamp(-1.0, 1.0)
    return float((torch.rad2deg(torch.arccos(c)) * w).sum() / w.sum().clamp(min=1e-12))
