"""Cameras as geometry: ViewSet frames <-> batched pinhole cameras, projections, axis conventions.

World axes are the ViewSet's (= glTF's: +Y up, face toward +Z) in model units; `to_metres` only
scales. Camera matrices are OpenGL camera-to-world (camera looks along -Z); OpenCV's convention
(looks along +Z, +Y down) differs by flipping the camera's Y and Z axes.
Pixel coordinates are continuous with pixel (i, j) centred at (i + 0.5, j + 0.5), v pointing down,
as nerfstudio uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.errors import ViewSetInputError

GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def opengl_to_opencv(c2w: torch.Tensor) -> torch.Tensor:
    """Camera-to-world OpenGL (looks -Z, +Y up) -> OpenCV (looks +Z, +Y down); an involution."""
    return c2w @ GL_TO_CV.to(c2w)


def opencv_to_opengl(c2w: torch.Tensor) -> torch.Tensor:
    """Inverse of `opengl_to_opencv` (the same axis flip)."""
    return c2w @ GL_TO_CV.to(c2w)


def to_metres(points: torch.Tensor, metres_per_unit: float) -> torch.Tensor:
    """ViewSet units -> glTF metres; the axes already agree (+Y up, face toward +Z)."""
    return points * metres_per_unit


@dataclass
class Cameras:
    """V pinhole cameras sharing one image size; tensors live on one device."""

    c2w: torch.Tensor  # (V, 4, 4) OpenGL camera-to-world
    fx: torch.Tensor  # (V,)
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def w2c(self) -> torch.Tensor:
        return torch.linalg.inv(self.c2w)

    @property
    def centers(self) -> torch.Tensor:
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(
            self.c2w.to(device), self.fx.to(device), self.fy.to(device), self.cx.to(device), self.cy.to(device),
            self.width, self.height,
        )

    def select(self, index: list[int] | torch.Tensor) -> Cameras:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return Cameras(self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx], self.width, self.height)

    def resized(self, width: int, height: int) -> Cameras:
        """The same cameras imaging onto a resampled sensor (intrinsics scale with the pixel grid)."""
        sx = width / self.width
        sy = height / self.height
        return Cameras(self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (V, N, 3) in each OpenGL camera frame."""
        w2c = self.w2c.to(points.dtype)
        return torch.einsum("vij,nj->vni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3) world points -> pixel coordinates (V, N, 2) and positive depth along the view axis (V, N)."""
        pc = self.world_to_camera(points)
        depth = -pc[..., 2]
        safe = torch.where(depth.abs() < 1e-9, torch.full_like(depth, 1e-9), depth)
        u = self.fx[:, None].to(points.dtype) * pc[..., 0] / safe + self.cx[:, None].to(points.dtype)
        v = -self.fy[:, None].to(points.dtype) * pc[..., 1] / safe + self.cy[:, None].to(points.dtype)
        return torch.stack([u, v], dim=-1), depth

    def pixel_rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """World ray origins (V, 3) and unit directions (V, H, W, 3) through every pixel centre."""
        dev, dt = self.device, self.c2w.dtype
        j, i = torch.meshgrid(
            torch.arange(self.height, device=dev, dtype=dt) + 0.5,
            torch.arange(self.width, device=dev, dtype=dt) + 0.5,
            indexing="ij",
        )
        x = (i[None] - self.cx[:, None, None]) / self.fx[:, None, None]
        y = -(j[None] - self.cy[:, None, None]) / self.fy[:, None, None]
        d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
        d = torch.einsum("vij,vhwj->vhwi", self.c2w[:, :3, :3], d_cam)
        return self.centers, d / d.norm(dim=-1, keepdim=True)

    def gl_projection(self, near: float = 0.1, far: float = 10.0) -> torch.Tensor:
        """(V, 4, 4) OpenGL clip-space projection matching the pixel intrinsics (for GPU rasteriser backends)."""
        V = len(self)
        P = torch.zeros(V, 4, 4, dtype=self.c2w.dtype, device=self.device)
        P[:, 0, 0] = 2 * self.fx / self.width
        P[:, 1, 1] = 2 * self.fy / self.height
        P[:, 0, 2] = 1 - 2 * self.cx / self.width
        P[:, 1, 2] = 2 * self.cy / self.height - 1
        P[:, 2, 2] = -(far + near) / (far - near)
        P[:, 2, 3] = -2 * far * near / (far - near)
        P[:, 3, 2] = -1
        return P


def cameras_from_frames(
    frames: list, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Cameras:
    """Batch the cameras of ViewSet frames (spin_io.viewset.ViewFrame); all frames must share one size."""
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) != 1:
        raise ViewSetInputError(f"all views must have the same image size, got {sorted(sizes)}; resample the views")
    (w, h) = sizes.pop()

    def t(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)

    c2w = torch.tensor(np.stack([np.asarray(f.c2w) for f in frames]), dtype=dtype, device=device)
    return Cameras(
        c2w, t([f.fl_x for f in frames]), t([f.fl_y for f in frames]), t([f.cx for f in frames]),
        t([f.cy for f in frames]), w, h,
    )


def mirror_yaw(c2w: torch.Tensor) -> torch.Tensor:
    """Cameras placed at azimuth -a instead of a: conjugate by the X mirror S (S c2w S stays a rotation)."""
    S = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=c2w.dtype, device=c2w.device))
    return S @ c2w @ S
