"""Render a ground-truth head into a ViewSet (RGB on white, normals, masks) for any camera list.

Unlit (the albedo itself) by default; with a SceneLighting (recon/synth/lighting.py) the head is shaded
by known ambient + directional lights, for the de-lighting benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.mesh_ops import vertex_normals
from recon.raster import Rasterizer, TorchRasterizer, interpolate
from recon.synth.albedo import procedural_albedo
from recon.synth.heads import GroundTruthHead
from recon.synth.lighting import SceneLighting, lit
from recon.synth.perturb import Perturbation
from spin_io.viewset import (
    DEFAULT_FOV_DEG,
    DEFAULT_METRES_PER_UNIT,
    DEFAULT_RADIUS,
    YAW_CCW,
    ViewFrame,
    ViewSet,
    camera_position,
    focal_from_fov,
    look_at_c2w,
)


@dataclass
class ViewSpec:
    azimuth_deg: float
    elevation_deg: float = 0.0
    is_input: bool = False


def ring_views(n: int, elevation_deg: float = 0.0, offset_deg: float = 0.0) -> list[ViewSpec]:
    """n views evenly spaced in azimuth starting at `offset_deg`; azimuth 0 (if present) is the input view."""
    return [
        ViewSpec(offset_deg + 360.0 * k / n, elevation_deg, is_input=(k == 0 and offset_deg == 0 == elevation_deg))
        for k in range(n)
    ]


def _axis_angle(axis: np.ndarray, deg: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    t = math.radians(deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    return _axis_angle(rng.normal(size=3), float(rng.uniform(-max_deg, max_deg)))


def shape_field(points: np.ndarray, rng: np.random.Generator, amplitude: float, wavelength: float,
                waves: int = 6) -> np.ndarray:
    """A smooth random scalar field on (N, 3) points whose largest |value| over them is exactly `amplitude`.

    A sum of `waves` plane waves with wavelengths in [wavelength, 2 wavelength]: low-frequency swells and
    dents like the shape disagreements between a diffusion model's views (issue 12).
    """
    pts = np.asarray(points, np.float64)
    dirs = rng.normal(size=(waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    k = 2 * np.pi / (wavelength * rng.uniform(1.0, 2.0, waves))
    phase = rng.uniform(0, 2 * np.pi, waves)
    weight = rng.uniform(0.5, 1.0, waves)
    g = (np.cos(pts @ (dirs * k[:, None]).T + phase) * weight).sum(1)
    peak = np.abs(g).max()
    return g * (amplitude / peak) if peak > 0 else g


def render_frame(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    c2w: np.ndarray,
    focal: float,
    size: int,
    albedo_fn: Callable[[torch.Tensor], torch.Tensor],
    supersample: int = 2,
    rasterizer: Rasterizer | None = None,
    lighting: SceneLighting | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo (lit by `lighting` if given) on white, world normals (zero outside) and coverage in [0, 1],
    box-filtered."""
    rasterizer = rasterizer or TorchRasterizer()
    dev = vertices.device
    s = size * supersample
    cams = Cameras(
        torch.tensor(c2w, dtype=torch.float32, device=dev)[None],
        torch.tensor([focal * supersample], device=dev),
        torch.tensor([focal * supersample], device=dev),
        torch.tensor([s / 2], device=dev),
        torch.tensor([s / 2], device=dev),
        s,
        s,
    )
    uv, depth = cams.project(vertices.float())
    frags = rasterizer.rasterize(uv[0], depth[0], faces, s, s)
    hit = frags.covered
    pos = interpolate(frags, vertices.float(), faces)
    nrm = interpolate(frags, vertex_normals(vertices.float(), faces), faces)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    rgb = torch.ones(s, s, 3, device=dev)
    rgb[hit] = albedo_fn(pos[hit]) if lighting is None else lit(albedo_fn(pos[hit]), nrm[hit], lighting)
    cov = hit.float()

    def box(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], supersample)[0].permute(1, 2, 0)

    rgb_d = box(rgb)
    cov_d = box(cov[..., None])[..., 0]
    n_d = box(nrm * cov[..., None])
    n_d = n_d / n_d.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return rgb_d.cpu().numpy(), n_d.cpu().numpy(), cov_d.cpu().numpy()


def render_viewset(
    head: GroundTruthHead,
    views: list[ViewSpec],
    size: int = 256,
    normal_frame: str = "camera",
    yaw_direction: str = YAW_CCW,
    perturb: Perturbation | None = None,
    seed: int = 0,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
    supersample: int = 2,
    albedo_fn: Callable[[torch.Tensor], torch.Tensor] = procedural_albedo,
    device: str | torch.device = "cpu",
    metres_per_unit: float = DEFAULT_METRES_PER_UNIT,
    lighting: SceneLighting | None = None,
) -> ViewSet:
    """Render `head` from each view (declared under `yaw_direction`) into an in-memory ViewSet.

    With a perturbation, what was drawn per view (colour gains, camera rotation, shape-field peak) is
    recorded in `generation["perturbation"]`, so tests can compare the images against it.
    """
    from scipy import ndimage

    perturb = perturb or Perturbation.none()
    rng = np.random.default_rng(seed)
    record: dict[str, list] = {"gains": [], "camera_rotation_deg": [], "shape_peak_mm": []}
    verts = torch.tensor(head.vertices, dtype=torch.float32, device=device)
    faces = torch.tensor(head.faces, dtype=torch.long, device=device)
    focal = focal_from_fov(size, fov_deg)
    back = int(np.argmin([abs((v.azimuth_deg % 360.0) - 180.0) + abs(v.elevation_deg) for v in views]))
    frames = []
    for i, spec in enumerate(views):
        c2w = look_at_c2w(camera_position(spec.azimuth_deg, spec.elevation_deg, radius, yaw_direction))
        render_c2w = c2w.copy()
        if perturb.camera_jitter_deg > 0:
            R = _random_rotation(rng, perturb.camera_jitter_deg)
            render_c2w[:3, :] = R @ c2w[:3, :]
            record["camera_rotation_deg"].append(math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
        v_render = verts
        view_rng = np.random.default_rng([seed, i, 12])  # the issue-12 perturbations draw from their own stream
        if perturb.shape_noise_mm > 0:
            unit_mm = 1000.0 * metres_per_unit
            disp = shape_field(head.vertices, view_rng, perturb.shape_noise_mm / unit_mm,
                               perturb.shape_wavelength_mm / unit_mm)
            record["shape_peak_mm"].append(float(np.abs(disp).max() * unit_mm))
            v_render = verts + torch.tensor(disp, dtype=torch.float32, device=device)[:, None] * vertex_normals(
                verts, faces)
        extra_rot = np.eye(3)
        if perturb.inconsistent_back_view and i == back:
            bump_c = torch.tensor([0.08, 0.15, -0.2], device=device)
            w = torch.exp(-((verts - bump_c) ** 2).sum(-1) / (2 * 0.12**2))
            v_render = verts + perturb.back_bulge_units * w[:, None] * vertex_normals(verts, faces)
            extra_rot = _axis_angle(np.array([0.0, 1.0, 0.3]), perturb.back_normal_rotation_deg)
        rgb, n_world, cov = render_frame(v_render, faces, render_c2w, focal, size, albedo_fn, supersample,
                                         lighting=lighting)
        mask = cov >= 0.5
        R_n = extra_rot
        if perturb.normal_rotation_deg > 0:
            R_n = _random_rotation(rng, perturb.normal_rotation_deg) @ R_n
        n_world = n_world @ R_n.T
        if perturb.white_balance > 0:
            # exposure and white balance of the head only: the background stays white, edge pixels blend
            gains = (1.0 + view_rng.uniform(-perturb.brightness, perturb.brightness)) * (
                1.0 + view_rng.uniform(-perturb.white_balance, perturb.white_balance, 3))
            record["gains"].append(gains.tolist())
            rgb = (rgb - (1.0 - cov[..., None])) * gains + (1.0 - cov[..., None])
        elif perturb.brightness > 0:
            rgb = 1.0 - (1.0 - rgb) * 1.0  # keep white background white
            gain = 1.0 + rng.uniform(-perturb.brightness, perturb.brightness)
            rgb = np.where(mask[..., None], rgb * gain, rgb)
        if perturb.pixel_noise > 0:
            rgb = rgb + rng.normal(0, perturb.pixel_noise, rgb.shape) * cov[..., None]
            n_world = n_world + rng.normal(0, perturb.pixel_noise, n_world.shape)
            n_world = n_world / np.linalg.norm(n_world, axis=-1, keepdims=True).clip(1e-12)
        if perturb.mask_jitter_px > 0:
            k = int(rng.integers(-perturb.mask_jitter_px, perturb.mask_jitter_px + 1))
            if k > 0:
                mask = ndimage.binary_dilation(mask, iterations=k)
            elif k < 0:
                mask = ndimage.binary_erosion(mask, iterations=-k)
        # normals are stored in the frame of the camera the ViewSet declares (the nominal one)
        normal = n_world @ c2w[:3, :3] if normal_frame == "camera" else n_world
        normal = np.where(cov[..., None] > 0, normal, 0.0).astype(np.float32)
        frames.append(
            ViewFrame(
                rgb=np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8),
                mask=mask,
                c2w=c2w,
                fl_x=focal,
                fl_y=focal,
                cx=size / 2,
                cy=size / 2,
                azimuth_deg=spec.azimuth_deg,
                elevation_deg=spec.elevation_deg,
                normal=normal,
                normal_frame=normal_frame,
                is_input=spec.is_input,
            )
        )
    return ViewSet(
        frames=frames,
        yaw_direction=yaw_direction,
        metres_per_unit=metres_per_unit,
        generation={
            "synthetic": head.name,
            "seed": seed,
            "perturbed": perturb != Perturbation.none(),
            **({"lighting": lighting.name} if lighting is not None else {}),
            **({"perturbation": {k: v for k, v in record.items() if v}} if any(record.values()) else {}),
        },
    )
