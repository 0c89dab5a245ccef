"""ViewSet contract (docs/DESIGN.md §2): posed RGB + normal + mask views of one head.

Folder layout::

    views/
      transforms.json   nerfstudio-readable cameras plus our fields (below); written last
      rgb/NNN.png       RGB uint8 on white
      normal/NNN.png    unit normals n in [-1, 1] stored as (n + 1) / 2, RGB uint8
      mask/NNN.png      L uint8, 255 = head

Geometry is in the model's own units: +Y up, the input camera on +Z, cameras on a ring of radius
about 2.7 looking at the origin; ``metres_per_unit`` (default 0.4) converts to metres. Cameras are
camera-to-world 4x4 matrices in the OpenGL convention (camera looks along its -Z, +Y up, +X right),
as nerfstudio expects, with pixel intrinsics ``fl_x fl_y cx cy w h``.

Sign conventions that a generator may get wrong are declared, so `recon` can check them:

* ``yaw_direction`` -- how ``azimuth_deg`` maps to a camera position. With azimuth a, elevation e and
  radius r, ``"ccw_from_above"`` means position = r (cos e sin a, sin e, cos e cos a): azimuth grows
  counter-clockwise seen from +Y looking down, so the camera at azimuth +90 deg sits on +X (it sees the
  subject's left ear). ``"cw_from_above"`` mirrors that: position = r (-cos e sin a, sin e, cos e cos a),
  azimuth +90 deg on -X. Elevation > 0 puts the camera above the head, looking down.
* ``normal_frame`` (per frame) -- ``"world"``: normals in the ViewSet's world axes; ``"camera"``:
  normals in the OpenGL camera axes of that frame (+X right, +Y up, +Z toward the camera, so a
  surface facing the camera is blue).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spin_io.atomic import atomic_write_json, atomic_write_png
from spin_io.errors import ContractError

SCHEMA_VERSION = 1
YAW_CCW = "ccw_from_above"
YAW_CW = "cw_from_above"
YAW_DIRECTIONS = (YAW_CCW, YAW_CW)
NORMAL_FRAMES = ("camera", "world")
DEFAULT_METRES_PER_UNIT = 0.4
DEFAULT_RADIUS = 2.7
DEFAULT_FOV_DEG = 18.837
ANGLE_TOLERANCE_DEG = 0.5


@dataclass
class ViewFrame:
    """One posed view: images as arrays, camera as a 4x4 OpenGL camera-to-world matrix + pixel intrinsics."""

    rgb: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool
    c2w: np.ndarray  # (4, 4) float64, OpenGL camera axes
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    azimuth_deg: float
    elevation_deg: float
    normal: np.ndarray | None = None  # (H, W, 3) float32 in [-1, 1]
    normal_frame: str = "world"
    is_input: bool = False

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


@dataclass
class ViewSet:
    """A list of views plus the declarations `recon` needs to interpret them."""

    frames: list[ViewFrame]
    yaw_direction: str = YAW_CCW
    metres_per_unit: float = DEFAULT_METRES_PER_UNIT
    generation: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def camera_position(
    azimuth_deg: float, elevation_deg: float, radius: float, yaw_direction: str = YAW_CCW
) -> np.ndarray:
    """Camera centre for (azimuth, elevation) under the declared yaw direction (module docstring)."""
    if yaw_direction not in YAW_DIRECTIONS:
        raise ContractError(f"yaw_direction must be one of {YAW_DIRECTIONS}, got {yaw_direction!r}")
    a = math.radians(azimuth_deg)
    e = math.radians(elevation_deg)
    sign = 1.0 if yaw_direction == YAW_CCW else -1.0
    return radius * np.array([sign * math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])


def look_at_c2w(position: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """OpenGL camera-to-world matrix of a camera at `position` looking at `target` (default: origin)."""
    position = np.asarray(position, np.float64)
    target = np.zeros(3) if target is None else np.asarray(target, np.float64)
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, np.float64)
    back = position - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-8:  # looking straight up or down: any right vector will do
        right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right = right / np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0] = right
    c2w[:3, 1] = true_up
    c2w[:3, 2] = back
    c2w[:3, 3] = position
    return c2w


def focal_from_fov(size_px: int, fov_deg: float = DEFAULT_FOV_DEG) -> float:
    """Pixel focal length of a pinhole camera whose full field of view over `size_px` pixels is `fov_deg`."""
    return 0.5 * size_px / math.tan(math.radians(fov_deg) / 2)


def angles_from_position(position: np.ndarray, yaw_direction: str = YAW_CCW) -> tuple[float, float]:
    """Inverse of `camera_position`: (azimuth_deg, elevation_deg) of a camera centre."""
    x, y, z = (float(v) for v in position)
    sign = 1.0 if yaw_direction == YAW_CCW else -1.0
    azimuth = math.degrees(math.atan2(sign * x, z))
    elevation = math.degrees(math.atan2(y, math.hypot(x, z)))
    return azimuth, elevation


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _validate_frame(i: int, f: ViewFrame, yaw_direction: str, where: str) -> None:
    name = f"{where}: frame {i}"
    rgb = np.asarray(f.rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ContractError(f"{name}: rgb must be an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    mask = np.asarray(f.mask)
    if mask.shape != (h, w):
        raise ContractError(f"{name}: mask is {mask.shape}, rgb is {(h, w)}; masks must match their rgb image")
    if f.normal is not None:
        normal = np.asarray(f.normal)
        if normal.shape != (h, w, 3):
            raise ContractError(f"{name}: normal map is {normal.shape}, expected {(h, w, 3)} like its rgb image")
        if not np.all(np.isfinite(normal)):
            raise ContractError(f"{name}: normal map contains NaN or infinite values; regenerate this view")
    if f.normal_frame not in NORMAL_FRAMES:
        raise ContractError(f"{name}: normal_frame must be one of {NORMAL_FRAMES}, got {f.normal_frame!r}")
    c2w = np.asarray(f.c2w, np.float64)
    if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
        raise ContractError(f"{name}: transform_matrix must be a finite 4x4 matrix, got shape {c2w.shape}")
    rot = c2w[:3, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
        raise ContractError(f"{name}: transform_matrix rotation is not a proper rotation (orthonormal, det +1)")
    if not np.allclose(c2w[3], [0, 0, 0, 1], atol=1e-6):
        raise ContractError(f"{name}: transform_matrix last row must be [0, 0, 0, 1]")
    for key in ("fl_x", "fl_y"):
        v = float(getattr(f, key))
        if not (math.isfinite(v) and v > 0):
            raise ContractError(f"{name}: {key} must be a positive pixel focal length, got {v}")
    for key in ("cx", "cy", "azimuth_deg", "elevation_deg"):
        if not math.isfinite(float(getattr(f, key))):
            raise ContractError(f"{name}: {key} must be finite")
    position = c2w[:3, 3]
    if np.linalg.norm(position) < 1e-6:
        raise ContractError(f"{name}: camera sits at the origin; cameras must look at the head from outside")
    azimuth, elevation = angles_from_position(position, yaw_direction)
    if abs(f.elevation_deg) < 89.0 and (
        _angle_diff(azimuth, f.azimuth_deg) > ANGLE_TOLERANCE_DEG
        or abs(elevation - f.elevation_deg) > ANGLE_TOLERANCE_DEG
    ):
        raise ContractError(
            f"{name}: azimuth/elevation ({f.azimuth_deg:.2f}, {f.elevation_deg:.2f}) disagree with the camera "
            f"position ({azimuth:.2f}, {elevation:.2f}) under yaw_direction {yaw_direction!r}; "
            "fix the writer or the yaw_direction declaration"
        )


def validate_viewset(vs: ViewSet, where: str = "ViewSet") -> None:
    """Raise ContractError naming the first problem of an in-memory ViewSet."""
    if vs.yaw_direction not in YAW_DIRECTIONS:
        raise ContractError(f"{where}: yaw_direction must be one of {YAW_DIRECTIONS}, got {vs.yaw_direction!r}")
    if not (math.isfinite(vs.metres_per_unit) and vs.metres_per_unit > 0):
        raise ContractError(f"{where}: metres_per_unit must be positive, got {vs.metres_per_unit}")
    if not vs.frames:
        raise ContractError(f"{where}: has no frames")
    for i, f in enumerate(vs.frames):
        _validate_frame(i, f, vs.yaw_direction, where)


def write_viewset(views_dir: str | Path, vs: ViewSet) -> Path:
    """Validate `vs`, then write its images and transforms.json (last, so it marks completion).

    Nothing is written when validation fails.
    """
    views_dir = Path(views_dir)
    validate_viewset(vs, str(views_dir))
    frames_json = []
    for i, f in enumerate(vs.frames):
        stem = f"{i:03d}.png"
        atomic_write_png(views_dir / "rgb" / stem, np.asarray(f.rgb, np.uint8))
        atomic_write_png(views_dir / "mask" / stem, np.where(np.asarray(f.mask, bool), 255, 0).astype(np.uint8))
        entry: dict[str, Any] = {
            "file_path": f"rgb/{stem}",
            "mask_path": f"mask/{stem}",
            "transform_matrix": np.asarray(f.c2w, np.float64).tolist(),
            "fl_x": float(f.fl_x),
            "fl_y": float(f.fl_y),
            "cx": float(f.cx),
            "cy": float(f.cy),
            "w": f.width,
            "h": f.height,
            "azimuth_deg": float(f.azimuth_deg),
            "elevation_deg": float(f.elevation_deg),
            "is_input": bool(f.is_input),
        }
        if f.normal is not None:
            n = np.clip(np.asarray(f.normal, np.float32), -1.0, 1.0)
            atomic_write_png(views_dir / "normal" / stem, np.round((n + 1.0) * 127.5).astype(np.uint8))
            entry["normal_path"] = f"normal/{stem}"
            entry["normal_frame"] = f.normal_frame
        frames_json.append(entry)
    atomic_write_json(
        views_dir / "transforms.json",
        {
            "schema_version": vs.schema_version,
            "camera_model": "OPENCV",
            "yaw_direction": vs.yaw_direction,
            "metres_per_unit": float(vs.metres_per_unit),
            "generation": vs.generation,
            "frames": frames_json,
        },
    )
    return views_dir


def _read_png(path: Path, mode: str, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ContractError(f"{path}: missing {what}; regenerate the ViewSet or fix transforms.json")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise ContractError(f"{path}: the {what} is not a readable image ({exc})") from exc


def _field(entry: dict[str, Any], key: str, where: str, default: Any = None) -> Any:
    if key in entry:
        return entry[key]
    if default is not None:
        return default
    raise ContractError(f"{where}: missing field '{key}'")


def read_viewset(views_dir: str | Path) -> ViewSet:
    """Read and validate a ViewSet folder; every problem raises ContractError naming the file."""
    views_dir = Path(views_dir)
    tf_path = views_dir / "transforms.json"
    if not tf_path.is_file():
        raise ContractError(
            f"{tf_path}: missing; a ViewSet folder needs transforms.json (written by smr_core or recon.synth)"
        )
    try:
        meta = json.loads(tf_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{tf_path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise ContractError(f"{tf_path}: expected an object with a 'frames' list")
    version = int(meta.get("schema_version", SCHEMA_VERSION))
    if version > SCHEMA_VERSION:
        raise ContractError(
            f"{tf_path}: schema_version {version} is newer than this spin-to-mesh understands ({SCHEMA_VERSION}); "
            "upgrade spin-to-mesh"
        )
    frames = []
    for i, entry in enumerate(meta["frames"]):
        where = f"{tf_path}: frame {i}"
        if not isinstance(entry, dict):
            raise ContractError(f"{where}: expected an object")
        rgb = _read_png(views_dir / str(_field(entry, "file_path", where)), "RGB", "rgb image")
        mask_rel = entry.get("mask_path")
        if mask_rel is None:
            raise ContractError(f"{where}: missing field 'mask_path'; recon needs a mask per view")
        mask = _read_png(views_dir / str(mask_rel), "L", "mask") > 127
        normal = None
        if entry.get("normal_path") is not None:
            raw = _read_png(views_dir / str(entry["normal_path"]), "RGB", "normal map")
            normal = raw.astype(np.float32) / 127.5 - 1.0
        h, w = rgb.shape[:2]
        for key, actual in (("w", w), ("h", h)):
            if key in entry and int(entry[key]) != actual:
                raise ContractError(f"{where}: transforms.json says {key}={entry[key]} but the rgb image is {w}x{h}")
        if mask.shape != (h, w):
            raise ContractError(f"{where}: mask {mask_rel} is {mask.shape[1]}x{mask.shape[0]}, rgb is {w}x{h}")
        if normal is not None and normal.shape[:2] != (h, w):
            raise ContractError(
                f"{where}: normal map {entry['normal_path']} is {normal.shape[1]}x{normal.shape[0]}, rgb is {w}x{h}"
            )
        try:
            c2w = np.asarray(_field(entry, "transform_matrix", where), np.float64)
            frames.append(
                ViewFrame(
                    rgb=rgb,
                    mask=mask,
                    c2w=c2w,
                    fl_x=float(_field(entry, "fl_x", where)),
                    fl_y=float(_field(entry, "fl_y", where)),
                    cx=float(entry.get("cx", w / 2)),
                    cy=float(entry.get("cy", h / 2)),
                    azimuth_deg=float(_field(entry, "azimuth_deg", where)),
                    elevation_deg=float(_field(entry, "elevation_deg", where)),
                    normal=normal,
                    normal_frame=str(entry.get("normal_frame", "world")),
                    is_input=bool(entry.get("is_input", False)),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ContractError(f"{where}: malformed camera field ({exc})") from exc
    vs = ViewSet(
        frames=frames,
        yaw_direction=str(meta.get("yaw_direction", "")),
        metres_per_unit=float(meta.get("metres_per_unit", DEFAULT_METRES_PER_UNIT)),
        generation=dict(meta.get("generation", {})),
        schema_version=version,
    )
    if vs.yaw_direction not in YAW_DIRECTIONS:
        raise ContractError(
            f"{tf_path}: 'yaw_direction' must be declared as one of {YAW_DIRECTIONS} "
            f"(got {meta.get('yaw_direction')!r}); see spin_io.viewset for their meaning"
        )
    validate_viewset(vs, str(tf_path))
    return vs
