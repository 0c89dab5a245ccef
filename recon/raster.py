"""Rasterisation behind one small interface, with a pure-torch z-buffer implementation.

Explicit normal fusion and texture baking only need visibility (which face covers a pixel, and
where on it), never gradients through the rasteriser, so a z-buffer with perspective-correct
barycentrics is enough. A GPU backend (e.g. an OpenGL or CUDA rasteriser) can implement
`Rasterizer.rasterize` with the same inputs and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

_INT64_MAX = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel visibility: face id (-1 = empty), perspective-correct barycentrics, view depth (inf = empty)."""

    face_id: torch.Tensor  # (H, W) int64
    bary: torch.Tensor  # (H, W, 3) float32
    depth: torch.Tensor  # (H, W) float32

    @property
    def covered(self) -> torch.Tensor:
        return self.face_id >= 0


class Rasterizer(Protocol):
    def rasterize(
        self, uv: torch.Tensor, depth: torch.Tensor, faces: torch.Tensor, height: int, width: int
    ) -> Fragments:
        """uv: (N, 2) vertex pixel coordinates; depth: (N,) positive view depth (1 for flat layouts)."""
        ...


class TorchRasterizer:
    """Z-buffer by enumerating each triangle's pixel bounding box; chunks bound the memory use.

    The nearest fragment per pixel is found with one integer scatter-min over keys that pack the
    float32 depth bits (monotonic for positive floats) above the face id.
    """

    def __init__(self, max_candidates: int = 2_000_000, near: float = 1e-4) -> None:
        self.max_candidates = max_candidates
        self.near = near

    def rasterize(
        self, uv: torch.Tensor, depth: torch.Tensor, faces: torch.Tensor, height: int, width: int
    ) -> Fragments:
        dev = uv.device
        uv = uv.float()
        depth = depth.float()
        faces = faces.long()
        p = uv[faces]  # (F, 3, 2)
        z = depth[faces]  # (F, 3)
        x0 = torch.ceil(p[..., 0].amin(1) - 0.5).clamp(min=0).long()
        x1 = torch.floor(p[..., 0].amax(1) - 0.5).clamp(max=width - 1).long()
        y0 = torch.ceil(p[..., 1].amin(1) - 0.5).clamp(min=0).long()
        y1 = torch.floor(p[..., 1].amax(1) - 0.5).clamp(max=height - 1).long()
        nx = (x1 - x0 + 1).clamp(min=0)
        ny = (y1 - y0 + 1).clamp(min=0)
        e1 = p[:, 1] - p[:, 0]
        e2 = p[:, 2] - p[:, 0]
        area = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
        keep = (nx > 0) & (ny > 0) & (z.amin(1) > self.near) & (area.abs() > 1e-12)
        fidx = torch.nonzero(keep).squeeze(1)
        counts = (nx * ny)[fidx]
        buf = torch.full((height * width,), _INT64_MAX, dtype=torch.int64, device=dev)
        if fidx.numel():
            csum = torch.cumsum(counts, 0)
            start = 0
            while start < fidx.numel():
                base = int(csum[start - 1]) if start > 0 else 0
                stop = int(torch.searchsorted(csum, torch.tensor(base + self.max_candidates, device=dev), right=True))
                stop = max(stop, start + 1)
                self._chunk(fidx[start:stop], counts[start:stop], p, z, area, x0, y0, nx, width, buf)
                start = stop
        hit = buf != _INT64_MAX
        face_id = torch.where(hit, buf & 0xFFFFFFFF, torch.full_like(buf, -1))
        depth_bits = (buf >> 32).to(torch.int32)
        zbuf = torch.where(hit, depth_bits.view(torch.float32), torch.full((height * width,), float("inf"), device=dev))
        bary = torch.zeros(height * width, 3, device=dev)
        pid = torch.nonzero(hit).squeeze(1)
        if pid.numel():
            f = face_id[pid]
            px = (pid % width).float() + 0.5
            py = (pid // width).float() + 0.5
            bary[pid] = _perspective_bary(p[f], z[f], area[f], px, py)
        return Fragments(face_id.view(height, width), bary.view(height, width, 3), zbuf.view(height, width))

    @staticmethod
    def _chunk(fidx, counts, p, z, area, x0, y0, nx, width, buf) -> None:
        dev = p.device
        total = int(counts.sum())
        owner = torch.repeat_interleave(torch.arange(fidx.numel(), device=dev), counts)
        offsets = torch.cumsum(counts, 0) - counts
        k = torch.arange(total, device=dev) - offsets[owner]
        f = fidx[owner]
        px = x0[f] + k % nx[f]
        py = y0[f] + k // nx[f]
        b = _screen_bary(p[f], area[f], px.float() + 0.5, py.float() + 0.5)
        inside = (b >= -1e-7).all(1)
        if not bool(inside.any()):
            return
        b, f, px, py = b[inside], f[inside], px[inside], py[inside]
        inv_depth = (b / z[f]).sum(1)
        d = 1.0 / inv_depth
        key = (d.contiguous().view(torch.int32).long() << 32) | f
        buf.scatter_reduce_(0, py * width + px, key, reduce="amin")


def _screen_bary(p: torch.Tensor, area: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics of points (px, py) in triangles p (K, 3, 2) with signed doubled area."""
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    w0 = (b[:, 0] - px) * (c[:, 1] - py) - (c[:, 0] - px) * (b[:, 1] - py)
    w1 = (c[:, 0] - px) * (a[:, 1] - py) - (a[:, 0] - px) * (c[:, 1] - py)
    w2 = (a[:, 0] - px) * (b[:, 1] - py) - (b[:, 0] - px) * (a[:, 1] - py)
    return torch.stack([w0, w1, w2], 1) / area[:, None]


def _perspective_bary(p, z, area, px, py) -> torch.Tensor:
    """Perspective-correct barycentrics: screen weights divided by depth, renormalised."""
    b = _screen_bary(p, area, px, py).clamp(min=0)
    b = b / z
    return b / b.sum(1, keepdim=True).clamp(min=1e-20)


def interpolate(frags: Fragments, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Per-pixel (H, W, C) interpolation of per-vertex attributes (N, C); zero where empty."""
    H, W = frags.face_id.shape
    out = torch.zeros(H, W, attributes.shape[1], dtype=attributes.dtype, device=attributes.device)
    hit = frags.covered
    f = faces[frags.face_id[hit]]
    b = frags.bary[hit].to(attributes.dtype)
    out[hit] = (attributes[f] * b[..., None]).sum(1)
    return out


def rasterize_views(rasterizer: Rasterizer, cameras, vertices: torch.Tensor, faces: torch.Tensor) -> list[Fragments]:
    """Rasterise one mesh into every camera of a `recon.cameras.Cameras` batch."""
    uv, depth = cameras.project(vertices)
    return [rasterizer.rasterize(uv[v], depth[v], faces, cameras.height, cameras.width) for v in range(len(cameras))]


def sample_images(images: torch.Tensor, uv: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear samples (B, C, N) of images (B, C, H, W) at pixel coordinates uv (B, N, 2), border-clamped.

    Pixel centres sit at half-integers (align_corners=False), as in Cameras.project's pixel convention.
    """
    grid = torch.stack([uv[..., 0] / width * 2 - 1, uv[..., 1] / height * 2 - 1], -1)[:, None]
    return torch.nn.functional.grid_sample(images, grid, align_corners=False, padding_mode="border")[:, :, 0]
