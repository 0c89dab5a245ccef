"""Check the ViewSet's declared yaw direction and normal frame against its own pixels.

* Yaw: carve a coarse visual hull under the declared cameras and under the mirrored ones
  (azimuth -a, i.e. the other `yaw_direction`), render each hull back into the views and compare
  silhouette IoU with the masks. Only the right sign makes every mask agree with one solid.
* Normal frame: for points of that hull seen by several views, convert each view's normal to
  world axes under the declared frame and under the swapped one (camera <-> world); the right
  frame makes one surface point's normals agree across views (smaller angular spread).

Wrong declarations are corrected with a warning (policy "correct") or refused (policy "refuse").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from recon.cameras import cameras_from_frames, mirror_yaw
from recon.errors import ConventionError, DegenerateResultError
from recon.mesh_ops import vertex_normals
from recon.raster import TorchRasterizer, rasterize_views
from spin_io.viewset import YAW_CCW, YAW_CW, ViewSet


@dataclass
class ConventionReport:
    declared_yaw: str
    yaw: str
    frame_swapped: bool
    silhouette_iou: dict[str, float]
    normal_spread_deg: dict[str, float]
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.yaw == self.declared_yaw and not self.frame_swapped

    def as_dict(self) -> dict:
        return {
            "declared_yaw_direction": self.declared_yaw,
            "detected_yaw_direction": self.yaw,
            "normal_frame_swapped": self.frame_swapped,
            "silhouette_iou": self.silhouette_iou,
            "normal_spread_deg": self.normal_spread_deg,
            "ok": self.ok,
            "messages": self.messages,
        }


def _downsample(frames, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-downsampled masks (V, s, s) and normal maps (V, s, s, 3) as they are stored."""
    H = frames[0].height
    k = max(1, H // size)
    masks = torch.tensor(np.stack([f.mask for f in frames]), dtype=torch.float32)
    normals = torch.tensor(np.stack([f.normal for f in frames]), dtype=torch.float32)
    masks = torch.nn.functional.avg_pool2d(masks[:, None], k)[:, 0]
    normals = torch.nn.functional.avg_pool2d(normals.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1)
    return masks, normals


def _world_normals(normals: torch.Tensor, c2w: torch.Tensor, camera_frame: torch.Tensor) -> torch.Tensor:
    rotated = torch.einsum("vij,vhwj->vhwi", c2w[:, :3, :3], normals)
    out = torch.where(camera_frame[:, None, None, None], rotated, normals)
    return out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def check_conventions(vs: ViewSet, size: int = 64, voxel: float = 0.02, margin_iou: float = 0.01) -> ConventionReport:
    """Measure which yaw direction and normal frame the data support (see module docstring)."""
    from recon.hull import visual_hull

    frames = vs.frames
    masks, normals = _downsample(frames, size)
    cams_declared = cameras_from_frames(frames).resized(masks.shape[2], masks.shape[1])
    other_yaw = YAW_CW if vs.yaw_direction == YAW_CCW else YAW_CCW
    hyps = {vs.yaw_direction: cams_declared, other_yaw: replace(cams_declared, c2w=mirror_yaw(cams_declared.c2w))}
    rast = TorchRasterizer()
    iou: dict[str, float] = {}
    hulls = {}
    for name, cams in hyps.items():
        try:
            hull = visual_hull(cams, masks, voxel=voxel, neck_margin=0.0)
        except DegenerateResultError:
            iou[name] = 0.0
            continue
        v = torch.tensor(hull.vertices, dtype=torch.float32)
        f = torch.tensor(hull.faces)
        frags = rasterize_views(rast, cams, v, f)
        m = masks > 0.5
        vals = []
        for fr, mk in zip(frags, m, strict=True):
            inter = (fr.covered & mk).sum().item()
            union = (fr.covered | mk).sum().item()
            vals.append(inter / max(union, 1))
        iou[name] = float(np.mean(vals))
        hulls[name] = (v, f, frags)
    camera_frame = torch.tensor([f.normal_frame == "camera" for f in frames])
    spread: dict[str, float] = {}
    for name, (v, f, frags) in hulls.items():
        cams = hyps[name]
        for swapped in (False, True):
            wn = _world_normals(normals, cams.c2w, camera_frame ^ swapped)
            spread[f"{name}/{'swapped' if swapped else 'declared'}"] = _normal_spread(v, f, frags, cams, wn)
    yaw = vs.yaw_direction
    messages = []
    if iou.get(other_yaw, 0.0) > iou.get(yaw, 0.0) + margin_iou:
        yaw = other_yaw
    elif abs(iou.get(other_yaw, 0.0) - iou.get(yaw, 0.0)) <= margin_iou and hulls:
        best = min(spread, key=spread.get)
        yaw = best.split("/")[0]
    if yaw != vs.yaw_direction:
        messages.append(
            f"yaw_direction is declared {vs.yaw_direction!r} but the silhouettes agree with {yaw!r} "
            f"(mean IoU {iou.get(yaw, 0):.3f} vs {iou.get(vs.yaw_direction, 0):.3f})"
        )
    swapped = spread.get(f"{yaw}/swapped", np.inf) + 1.0 < spread.get(f"{yaw}/declared", np.inf)
    if swapped:
        messages.append(
            f"normals agree across views only with the normal frame swapped (camera <-> world): spread "
            f"{spread[f'{yaw}/swapped']:.1f} deg vs {spread[f'{yaw}/declared']:.1f} deg as declared"
        )
    return ConventionReport(vs.yaw_direction, yaw, bool(swapped), iou, spread, messages)


def _normal_spread(v, f, frags, cams, world_normals: torch.Tensor) -> float:
    """Mean angle (deg) between each view's normal at a hull vertex and the vertices' mean normal."""
    vn = vertex_normals(v, f)
    uv, depth = cams.project(v)
    W, H = cams.width, cams.height
    acc = torch.zeros_like(v)
    samples = []
    for i, fr in enumerate(frags):
        x = uv[i, :, 0].floor().long().clamp(0, W - 1)
        y = uv[i, :, 1].floor().long().clamp(0, H - 1)
        zb = fr.depth[y, x]
        to_cam = cams.centers[i][None] - v
        facing = (vn * to_cam).sum(-1) / to_cam.norm(dim=-1) > 0.5
        vis = facing & (depth[i] <= zb + 0.05)
        n = world_normals[i][y, x]
        ok = vis & (n.norm(dim=-1) > 0.5)
        samples.append((ok, n))
        acc += n * ok[:, None]
    mean = acc / acc.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    count = sum(ok.long() for ok, _ in samples)
    angles = []
    for ok, n in samples:
        sel = ok & (count >= 2)
        cos = (n[sel] * mean[sel]).sum(-1).clamp(-1, 1)
        angles.append(torch.rad2deg(torch.acos(cos)))
    cat = torch.cat(angles)
    return float(cat.mean()) if cat.numel() else float("inf")


def apply_conventions(vs: ViewSet, report: ConventionReport, policy: str = "correct") -> ViewSet:
    """Return the ViewSet with corrected declarations, or raise (policy "refuse"); "trust" skips."""
    if policy == "trust" or report.ok:
        return vs
    text = "; ".join(report.messages)
    if policy == "refuse":
        raise ConventionError(
            f"the ViewSet's conventions contradict its data: {text}. Fix the declaration in transforms.json "
            "(or the generator), or run recon with --conventions correct to let it fix them"
        )
    warnings.warn(f"recon corrected the ViewSet's conventions: {text}", stacklevel=2)
    frames = []
    for f in vs.frames:
        c2w = f.c2w
        if report.yaw != vs.yaw_direction:
            S = np.diag([-1.0, 1.0, 1.0, 1.0])
            c2w = S @ c2w @ S
        frame = f.normal_frame
        if report.frame_swapped:
            frame = "world" if frame == "camera" else "camera"
        frames.append(replace(f, c2w=c2w, normal_frame=frame))
    return replace(vs, frames=frames, yaw_direction=report.yaw)
