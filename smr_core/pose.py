"""The model's internal camera encoding: per-pixel NeRF-encoded ray maps (SPINMEROUND.md §3.2, §3.7).

SpinMeRound was trained with a deliberately odd camera: EG3D's *normalised* focal used as a *pixel* focal
on a 64-px grid (about 165 degrees of field of view), unnormalised ray directions, a Y rotation with flipped
sign, and the camera at -R^T t looking away from the origin. A learned model only needs the encoding to match
its training data, so this module reproduces it bit for bit (same float32 operations in the same order,
pi ~ 3.14159 and sqrt(2) ~ 1.414 in the focal) and never "fixes" it. This encoding is private to smr_core:
the ViewSet contract carries real geometric cameras instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from smr_core.errors import InputError

POSE_TRANSLATION = 2.7
POSE_FOV_DEG = 18.837
POSE_SIZE = 64
MAX_DEG_POS = 15
MAX_DEG_DIR = 8
#: index of the is-target mask channel inside a 145-channel cond_images row
MASK_CHANNEL = 144


def pose_channels(max_deg_pos: int = MAX_DEG_POS, max_deg_dir: int = MAX_DEG_DIR) -> int:
    """Number of ray-map channels: (3 + 2*3*max_deg_pos) for origins + (3 + 2*3*max_deg_dir) for directions."""
    return 3 + 6 * max_deg_pos + 3 + 6 * max_deg_dir


def pose_focal(fov_deg: float = POSE_FOV_DEG) -> float:
    """EG3D's normalised focal with the official code's rounded constants (4.2634, not 4.2647).

    The model treats this number as a focal length in pixels of the 64-px grid.
    """
    return 1.0 / (math.tan(fov_deg * 3.14159 / 360.0) * 1.414)


def _rot_x(a: Tensor) -> Tensor:
    c, s = torch.cos(a), torch.sin(a)
    R = torch.zeros(3, 3)
    R[0, 0] = 1.0
    R[1, 1] = c
    R[1, 2] = -s
    R[2, 1] = s
    R[2, 2] = c
    return R


def _rot_y_flipped(a: Tensor) -> Tensor:
    """Y rotation with the off-diagonal signs swapped (= a standard Y rotation by -a), as trained."""
    c, s = torch.cos(a), torch.sin(a)
    R = torch.zeros(3, 3)
    R[0, 0] = c
    R[0, 2] = -s
    R[1, 1] = 1.0
    R[2, 0] = s
    R[2, 2] = c
    return R


def _rot_z(a: Tensor) -> Tensor:
    c, s = torch.cos(a), torch.sin(a)
    R = torch.zeros(3, 3)
    R[0, 0] = c
    R[0, 1] = -s
    R[1, 0] = s
    R[1, 1] = c
    R[2, 2] = 1.0
    return R


def pose_rotation(a0: float, a1: float, a2: float = 0.0) -> Tensor:
    """R = Rz(a2) . Ry'(a1) . Rx(a0) in float32, angles in degrees (a0 pitch about X, a1 yaw about Y)."""
    angles = torch.tensor([a0, a1, a2], dtype=torch.float32)
    angles = angles * math.pi / 180
    return _rot_z(angles[2]) @ _rot_y_flipped(angles[1]) @ _rot_x(angles[0])


def world_to_camera(a0: float, a1: float, a2: float = 0.0, translation: float = POSE_TRANSLATION) -> Tensor:
    """The 4x4 matrix M = [[R, t], [0, 1]] with t = (0, 0, translation) that the model treats as world-to-camera."""
    M = torch.eye(4)
    M[:3, :3] = pose_rotation(a0, a1, a2)
    M[:3, 3] = torch.tensor([0.0, 0.0, translation], dtype=torch.float32)
    return M


def ray_bundle(cam_to_world: Tensor, focal: float, size: int = POSE_SIZE) -> tuple[Tensor, Tensor]:
    """Per-pixel ray origins and (unnormalised) world directions, each (size, size, 3), [row, column] indexed.

    Camera-frame direction of pixel (column i, row j) is ((i - size/2)/f, -(j - size/2)/f, -1) (OpenGL axes);
    the world direction is cam_to_world[:3, :3] @ that vector, summed elementwise as the official code does.
    """
    f = torch.tensor(focal, dtype=torch.float32)
    grid = torch.arange(size, dtype=torch.float32)
    column = grid[None, :].expand(size, size)
    row = grid[:, None].expand(size, size)
    dirs_cam = torch.stack([(column - size * 0.5) / f, -(row - size * 0.5) / f, -torch.ones_like(column)], dim=-1)
    directions = torch.sum(dirs_cam[..., None, :] * cam_to_world[:3, :3], dim=-1)
    origins = cam_to_world[:3, 3].expand(directions.shape)
    return origins, directions


def positional_encoding(v: Tensor, max_deg: int) -> Tensor:
    """NeRF encoding [v, sin(2^k v_j), sin(2^k v_j + pi/2)] with index 3k + j (frequency-major, xyz-minor).

    The cosine half is written as sin(. + pi/2) on purpose: at 2^14 * 2.7 float32 rounding makes it differ
    from cos() by up to ~4e-3, and the model was trained on the sin form.
    """
    scales = torch.tensor([2**k for k in range(max_deg)])
    vb = (v[..., None, :] * scales[:, None]).reshape(*v.shape[:-1], 3 * max_deg)
    return torch.cat([v, torch.sin(torch.cat([vb, vb + math.pi / 2.0], dim=-1))], dim=-1)


def pose_map(
    a0: float,
    a1: float,
    a2: float = 0.0,
    translation: float = POSE_TRANSLATION,
    fov_deg: float = POSE_FOV_DEG,
    size: int = POSE_SIZE,
    max_deg_pos: int = MAX_DEG_POS,
    max_deg_dir: int = MAX_DEG_DIR,
) -> Tensor:
    """The model's ray map for one view: (144, size, size) float32 on CPU (§3.2 channel order).

    Channels 0-92: origin o and its encoding (15 octaves); 93-143: direction d and its encoding (8 octaves).
    """
    if size <= 0 or max_deg_pos < 0 or max_deg_dir < 0:
        raise InputError(
            f"pose_map needs size > 0 and non-negative degrees, got {size=}, {max_deg_pos=}, {max_deg_dir=}"
        )
    M = world_to_camera(a0, a1, a2, translation)
    cam_to_world = torch.linalg.inv(M)
    origins, directions = ray_bundle(cam_to_world, pose_focal(fov_deg), size)
    encoded = torch.cat([positional_encoding(origins, max_deg_pos), positional_encoding(directions, max_deg_dir)], -1)
    return encoded.permute(2, 0, 1).contiguous()


def cond_images(
    angles: Sequence[Sequence[float]],
    is_target: Sequence[bool],
    *,
    translation: float = POSE_TRANSLATION,
    fov_deg: float = POSE_FOV_DEG,
    size: int = POSE_SIZE,
) -> Tensor:
    """Camera/mask channels for F views: (F, 145, size, size), ray map then mask (0 = conditioning, 1 = target).

    angles: per view (a0, a1) or (a0, a1, a2) in degrees, relative to the input view (always (0, 0)).
    """
    if len(angles) == 0:
        raise InputError("cond_images needs at least one view; pass e.g. angles=[(0, 0)], is_target=[True].")
    if len(angles) != len(is_target):
        raise InputError(
            f"cond_images got {len(angles)} angles but {len(is_target)} is_target flags; give one flag per view."
        )
    rows = []
    for view, (angle, target) in enumerate(zip(angles, is_target, strict=True)):
        if len(angle) not in (2, 3):
            raise InputError(f"view {view}: angles must be (a0, a1) or (a0, a1, a2) in degrees, got {tuple(angle)}")
        a = [float(v) for v in angle] + [0.0] * (3 - len(angle))
        rays = pose_map(a[0], a[1], a[2], translation=translation, fov_deg=fov_deg, size=size)
        mask = torch.full((1, size, size), 1.0 if target else 0.0)
        rows.append(torch.cat([rays, mask], dim=0))
    return torch.stack(rows)


def conditioning_mask(cond: Tensor) -> Tensor:
    """Boolean (F,) of conditioning views: mask channel 0 at pixel (0, 0), the rule the official sampler uses."""
    if cond.ndim != 4 or cond.shape[1] != MASK_CHANNEL + 1:
        raise InputError(f"cond_images must be (F, {MASK_CHANNEL + 1}, H, W), got {tuple(cond.shape)}")
    return cond[:, MASK_CHANNEL, 0, 0] == 0
