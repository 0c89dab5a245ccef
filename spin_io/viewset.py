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

Reading other tools' files (`read_viewset`): the matrices are the geometry; our own fields
(``azimuth_deg``, ``elevation_deg``, ``yaw_direction``, ``normal_frame``, ``is_input``) are hints with
defaults, and `ViewSet.declared` records which of them the file really declared. Facts learnt from
nerfstudio's ``nerfstudio`` dataparser (nerfstudio/data/dataparsers/nerfstudio_dataparser.py, its
process_data writers colmap_utils.py / polycam_utils.py / record3d_utils.py, data_utils.py) and from
instant-ngp's loader (src/nerf_loader.cu), and what we do with them:

* nerfstudio takes each of ``fl_x fl_y cx cy w h`` from the top level when the key is there, for
  every frame, and otherwise requires it in every frame; it never derives ``fl_y`` from ``fl_x`` nor
  ``cx cy`` from the size, and ignores ``camera_angle_x``. instant-ngp reads the top level, then lets
  a frame override it, takes a missing ``fl_y`` = ``fl_x``, the principal point at the image centre,
  and ``camera_angle_x`` (radians) when ``fl_x`` is absent. Its own writers never give both forms
  (one COLMAP camera: top level; several: per frame). We accept the union: per-frame values override
  top-level ones (warning when they differ, since nerfstudio would use the top-level ones),
  ``fl_y`` defaults to ``fl_x`` (and vice versa), ``camera_angle_x``/``camera_angle_y`` are focal
  fallbacks, ``cx cy`` default to ``w/2 h/2``, and ``w h`` default to the image size.
* ``camera_model`` (top level only in nerfstudio; absent = perspective): SIMPLE_PINHOLE, PINHOLE,
  SIMPLE_RADIAL, RADIAL and OPENCV are perspective models whose distortion is ``k1 k2 k3 k4 p1 p2``
  (missing = 0) or a 6-vector ``distortion_params`` in that order; OPENCV_FISHEYE, EQUIRECTANGULAR,
  FISHEYE624 etc. are not pinhole. recon needs undistorted pinhole images, so any non-zero distortion
  or non-perspective model is refused.
* ``transform_matrix``: nerfstudio stacks 4x4 matrices (its orientation step multiplies them as 4x4);
  instant-ngp and the Blender loader read only the top 3 rows, so 3x4 files exist: both are accepted.
* ``file_path`` is joined to the folder of transforms.json (an absolute path stays absolute);
  nerfstudio uses it verbatim, instant-ngp tries image extensions when it has none and the Blender
  synthetic sets write ``./train/r_0`` meaning ``r_0.png``: we try the verbatim path first.
* ``mask_path``: one single-channel image per frame (nerfstudio: all frames or none), nonzero = keep.
  Without one, an image alpha channel is the mask (alpha > 127) and the RGB is composited on white.
* Both tools reorder frames by file name; we keep the file's order (nothing assumes frame 0 is the input).
"""

from __future__ import annotations

import json
import math
import warnings
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
ROTATION_ATOL_WRITE = 1e-4  # our writer's matrices are exact
ROTATION_ATOL_READ = 1e-3  # other tools may print matrices with few digits
DISTORTION_ATOL = 1e-7
PERSPECTIVE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
ANGLE_KEYS = ("azimuth_deg", "elevation_deg")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")  # order of nerfstudio's distortion_params
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".PNG", ".JPG", ".JPEG")


class ViewSetWarning(UserWarning):
    """`read_viewset` accepted a file but replaced or defaulted something in it."""


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
    # What `read_viewset` found undeclared or contradicted in the file (empty = all declared, as our writer
    # does): "yaw_direction" -> bool (False: defaulted to ccw_from_above), "angles_computed" -> frame
    # indices whose azimuth/elevation came from the matrix, "angles_disagreed" -> {frame index: (declared
    # azimuth, declared elevation)} replaced by the matrix's angles. recon checks the yaw against the pixels.
    declared: dict[str, Any] = field(default_factory=dict)

    @property
    def yaw_declared(self) -> bool:
        """Whether yaw_direction came from the file (or the constructor) rather than the default."""
        return bool(self.declared.get("yaw_direction", True))


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


def _validate_frame_structure(i: int, f: ViewFrame, where: str, rot_atol: float = ROTATION_ATOL_WRITE) -> None:
    """Array shapes, camera matrix and intrinsics: what any reader or writer needs to be true."""
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
    if not np.allclose(rot.T @ rot, np.eye(3), atol=rot_atol) or np.linalg.det(rot) < 0:
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
    if np.linalg.norm(c2w[:3, 3]) < 1e-6:
        raise ContractError(f"{name}: camera sits at the origin; cameras must look at the head from outside")


def _angles_agree(
    position: np.ndarray, azimuth_deg: float | None, elevation_deg: float | None, yaw_direction: str
) -> bool:
    """Whether declared angles (None = not declared) match a camera centre under `yaw_direction`.

    The azimuth of a camera within 1 deg of a pole is undefined and not compared.
    """
    azimuth, elevation = angles_from_position(position, yaw_direction)
    if elevation_deg is not None and abs(elevation - elevation_deg) > ANGLE_TOLERANCE_DEG:
        return False
    if azimuth_deg is None or abs(elevation) >= 89.0:
        return True
    return _angle_diff(azimuth, azimuth_deg) <= ANGLE_TOLERANCE_DEG


def _check_frame_angles(i: int, f: ViewFrame, yaw_direction: str, where: str) -> None:
    """Writer-side strictness: the angles we write must describe the matrix we write."""
    position = np.asarray(f.c2w, np.float64)[:3, 3]
    if abs(f.elevation_deg) < 89.0 and not _angles_agree(position, f.azimuth_deg, f.elevation_deg, yaw_direction):
        azimuth, elevation = angles_from_position(position, yaw_direction)
        raise ContractError(
            f"{where}: frame {i}: azimuth/elevation ({f.azimuth_deg:.2f}, {f.elevation_deg:.2f}) disagree with the "
            f"camera position ({azimuth:.2f}, {elevation:.2f}) under yaw_direction {yaw_direction!r}; "
            "fix the writer or the yaw_direction declaration"
        )


def validate_viewset(vs: ViewSet, where: str = "ViewSet") -> None:
    """Raise ContractError naming the first problem of an in-memory ViewSet.

    Strict, for writers: declared angles must agree with the matrices. `read_viewset` is lenient
    about those hints (the matrices are the geometry) and reconciles them before calling
    `_validate_frame_structure` itself; what it returns passes this check too.
    """
    if vs.yaw_direction not in YAW_DIRECTIONS:
        raise ContractError(f"{where}: yaw_direction must be one of {YAW_DIRECTIONS}, got {vs.yaw_direction!r}")
    if not (math.isfinite(vs.metres_per_unit) and vs.metres_per_unit > 0):
        raise ContractError(f"{where}: metres_per_unit must be positive, got {vs.metres_per_unit}")
    if not vs.frames:
        raise ContractError(f"{where}: has no frames")
    for i, f in enumerate(vs.frames):
        _validate_frame_structure(i, f, where)
        _check_frame_angles(i, f, vs.yaw_direction, where)


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


# --- reading: our own files and any nerfstudio / instant-ngp transforms.json (module docstring) ---


def _number(value: Any, key: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ContractError(f"{where}: {key} must be finite, got {value!r}")
    return v


def _camera_field(entry: dict[str, Any], meta: dict[str, Any], key: str) -> tuple[Any, str]:
    """A camera value and where it came from: the frame's own overrides the top level's."""
    if entry.get(key) is not None:
        return entry[key], "frame"
    if meta.get(key) is not None:
        return meta[key], "top level"
    return None, ""


def _resolve(views_dir: Path, rel: Any) -> Path:
    """A path from transforms.json: relative to its folder, absolute kept, extension guessed if none."""
    path = Path(str(rel).replace("\\", "/"))
    if not path.is_absolute():
        path = views_dir / path
    if not path.exists() and not path.suffix:
        for suffix in _IMAGE_SUFFIXES:
            if path.with_suffix(suffix).is_file():
                return path.with_suffix(suffix)
    return path


def _read_image(path: Path, what: str, where: str, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels in `mode`; with mode "RGB" also the alpha channel, when the file has one (else None)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ContractError(f"{where}: missing {what} {path}; regenerate the ViewSet or fix transforms.json")
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "RGB" and ("A" in im.getbands() or "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"))
                return rgba[..., :3], rgba[..., 3]
            return np.asarray(im.convert(mode)), None
    except (UnidentifiedImageError, OSError) as exc:
        raise ContractError(f"{where}: the {what} {path} is not a readable image ({exc})") from exc


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite straight-alpha RGB on white, our ViewSet's background."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _transform_matrix(entry: dict[str, Any], where: str) -> np.ndarray:
    raw = entry.get("transform_matrix")
    if raw is None:
        raise ContractError(f"{where}: no transform_matrix: every frame needs its camera-to-world matrix (OpenGL axes)")
    try:
        m = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: transform_matrix must be a 4x4 (or 3x4) matrix of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise ContractError(f"{where}: transform_matrix must be 4x4 (or 3x4), got shape {m.shape}")
    return m


def _check_lens(entry: dict[str, Any], meta: dict[str, Any], where: str) -> None:
    """Refuse any lens that is not an undistorted pinhole, wherever (frame or top level) it is declared."""
    for source, d in (("frame", entry), ("top level", meta)):
        scope = "in this frame" if source == "frame" else "at the top level, so for every frame"
        model = d.get("camera_model")
        if model is not None and str(model).upper() not in PERSPECTIVE_MODELS:
            raise ContractError(
                f"{where}: camera_model {model!r} ({scope}) is not a pinhole camera; recon needs undistorted pinhole "
                "images: undistort the images first (e.g. COLMAP image_undistorter) and declare camera_model PINHOLE"
            )
        values = [(key, d[key]) for key in DISTORTION_KEYS if d.get(key) is not None]
        params = d.get("distortion_params")
        if params is not None:
            if not isinstance(params, (list, tuple)):
                raise ContractError(f"{where}: distortion_params ({scope}) must be a list of numbers")
            for j, value in enumerate(params):
                values.append((f"distortion_params[{j}]" + (f" ({DISTORTION_KEYS[j]})" if j < 6 else ""), value))
        for key, value in values:
            v = _number(value, key, where)
            if abs(v) > DISTORTION_ATOL:
                raise ContractError(
                    f"{where}: {key} = {v:g} ({scope}): the images are distorted and recon needs undistorted pinhole "
                    "images: undistort the images first (e.g. COLMAP image_undistorter), then give zero distortion"
                )


def _focal(entry: dict[str, Any], meta: dict[str, Any], axis: str, size: int, where: str) -> float | None:
    """fl_<axis>, else camera_angle_<axis> (full field of view in radians), the frame's before the top level's."""
    for d in (entry, meta):
        if d.get(f"fl_{axis}") is not None:
            return _number(d[f"fl_{axis}"], f"fl_{axis}", where)
        if d.get(f"camera_angle_{axis}") is not None:
            angle = _number(d[f"camera_angle_{axis}"], f"camera_angle_{axis}", where)
            if not 0.0 < angle < math.pi:
                raise ContractError(f"{where}: camera_angle_{axis} must be a field of view in radians, got {angle}")
            return 0.5 * size / math.tan(0.5 * angle)
    return None


def _intrinsics(
    entry: dict[str, Any], meta: dict[str, Any], width: int, height: int, where: str
) -> tuple[float, float, float, float]:
    """Pixel (fl_x, fl_y, cx, cy) of one frame, with the defaults of the module docstring."""
    for key, actual in (("w", width), ("h", height)):
        value, source = _camera_field(entry, meta, key)
        if value is not None and _number(value, key, where) != actual:
            raise ContractError(
                f"{where}: transforms.json says {key}={value} ({source}) but the rgb image is {width}x{height}"
            )
    fl_x = _focal(entry, meta, "x", width, where)
    fl_y = _focal(entry, meta, "y", height, where)
    if fl_x is None and fl_y is None:
        raise ContractError(f"{where}: no focal length: give fl_x (per frame or at the top level) or camera_angle_x")
    fl_x = fl_y if fl_x is None else fl_x
    fl_y = fl_x if fl_y is None else fl_y
    cx, _ = _camera_field(entry, meta, "cx")
    cy, _ = _camera_field(entry, meta, "cy")
    cx = width / 2 if cx is None else _number(cx, "cx", where)
    cy = height / 2 if cy is None else _number(cy, "cy", where)
    return float(fl_x), float(fl_y), float(cx), float(cy)


def _orthonormalized(c2w: np.ndarray) -> np.ndarray:
    """The nearest exact rotation (polar decomposition): removes the rounding of printed matrices."""
    u, _, vt = np.linalg.svd(c2w[:3, :3])
    out = c2w.copy()
    out[:3, :3] = u @ vt
    out[3] = [0.0, 0.0, 0.0, 1.0]
    return out


def _reconcile_angles(
    frames: list[ViewFrame],
    declared: list[tuple[float | None, float | None]],
    yaw_direction: str,
    yaw_declared: bool,
    where: str,
) -> dict[str, Any]:
    """Make every frame's azimuth/elevation describe its matrix under the declared yaw; never refuse.

    Angles the file does not give are computed from the matrix. Declared angles that contradict the
    matrix are replaced by the matrix's (the matrices are the geometry) with one warning; the yaw
    declaration is left as it is, because only the pixels can tell whether the matrices or the
    declaration are mirrored: recon's convention check compares the silhouettes under the matrices and
    under their mirror image, and it still sees the matrices exactly as the file gave them.
    """
    other = YAW_CW if yaw_direction == YAW_CCW else YAW_CCW
    computed: list[int] = []
    disagreed: dict[int, tuple[float | None, float | None]] = {}
    fit_other = 0
    for i, (f, (az, el)) in enumerate(zip(frames, declared, strict=True)):
        position = f.c2w[:3, 3]
        az_m, el_m = angles_from_position(position, yaw_direction)
        if az is None or el is None:
            computed.append(i)
        if _angles_agree(position, az, el, yaw_direction):
            f.azimuth_deg = az_m if az is None else az
            f.elevation_deg = el_m if el is None else el
            continue
        disagreed[i] = (az, el)
        fit_other += _angles_agree(position, az, el, other)
        f.azimuth_deg, f.elevation_deg = az_m, el_m
    if disagreed:
        how = "declared" if yaw_declared else "not declared, so the default"
        hint = ""
        if fit_other == len(disagreed):
            hint = f"; they all agree under {other!r}"
        elif fit_other:
            hint = f"; {fit_other} of them agree under {other!r}"
        warnings.warn(
            f"{where}: {len(disagreed)} of {len(frames)} frames give azimuth_deg/elevation_deg that disagree with "
            f"their transform_matrix under yaw_direction {yaw_direction!r} ({how}){hint}. The matrices are the "
            "geometry: their angles are recomputed from the matrices and yaw_direction is kept; recon checks the yaw "
            "against the silhouettes. Fix the writer or the yaw_direction declaration to silence this.",
            ViewSetWarning,
            stacklevel=3,
        )
    return {"angles_computed": computed, "angles_disagreed": disagreed}


def _warn_overrides(meta: dict[str, Any], frames_json: list[Any], where: str) -> None:
    """One warning when frames override top-level intrinsics with other values (nerfstudio would not)."""
    keys = ("fl_x", "fl_y", "cx", "cy", "camera_angle_x", "camera_angle_y")
    overridden: set[str] = set()
    count = 0
    for entry in frames_json:
        differ = {
            k
            for k in keys
            if entry.get(k) is not None and meta.get(k) is not None and _safe_float(entry[k]) != _safe_float(meta[k])
        }
        overridden |= differ
        count += bool(differ)
    if count:
        warnings.warn(
            f"{where}: {count} frames give {', '.join(sorted(overridden))} different from the top level; using the "
            "per-frame values (as instant-ngp does; nerfstudio's dataparser would use the top-level ones)",
            ViewSetWarning,
            stacklevel=3,
        )


def _safe_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_frame(views_dir: Path, meta: dict[str, Any], entry: Any, where: str) -> ViewFrame:
    """One frame of transforms.json -> a ViewFrame; its angles are placeholders until `_reconcile_angles`."""
    if not isinstance(entry, dict):
        raise ContractError(f"{where}: expected an object")
    rel = entry.get("file_path")
    if rel is None or str(rel) == "":
        raise ContractError(f"{where}: no file_path: every frame needs its image")
    c2w = _transform_matrix(entry, where)
    _check_lens(entry, meta, where)
    image_path = _resolve(views_dir, rel)
    rgb, alpha = _read_image(image_path, "rgb image", where, "RGB")
    h, w = rgb.shape[:2]
    fl_x, fl_y, cx, cy = _intrinsics(entry, meta, w, h, where)
    mask_rel = entry.get("mask_path")
    if mask_rel is not None:
        mask = _read_image(_resolve(views_dir, mask_rel), "mask", where, "L")[0] > 0  # nerfstudio: nonzero = keep
        if mask.shape != (h, w):
            raise ContractError(f"{where}: mask {mask_rel} is {mask.shape[1]}x{mask.shape[0]}, rgb is {w}x{h}")
    elif alpha is None:
        raise ContractError(
            f"{where}: no mask_path and {image_path.name} has no alpha channel; recon needs a mask per view: "
            "add mask_path or an alpha channel"
        )
    elif alpha.min() > 127:
        raise ContractError(
            f"{where}: no mask_path and the alpha channel of {image_path.name} is opaque everywhere; recon needs a "
            "mask per view: add mask_path or an alpha channel that is transparent around the head"
        )
    else:
        mask = alpha > 127
    if alpha is not None:
        rgb = _on_white(rgb, alpha)
    normal = None
    if entry.get("normal_path") is not None:
        raw, _ = _read_image(_resolve(views_dir, entry["normal_path"]), "normal map", where, "RGB")
        normal = raw.astype(np.float32) / 127.5 - 1.0
        if normal.shape[:2] != (h, w):
            raise ContractError(
                f"{where}: normal map {entry['normal_path']} is {normal.shape[1]}x{normal.shape[0]}, rgb is {w}x{h}"
            )
    return ViewFrame(
        rgb=np.ascontiguousarray(rgb, np.uint8),
        mask=mask,
        c2w=c2w,
        fl_x=fl_x,
        fl_y=fl_y,
        cx=cx,
        cy=cy,
        azimuth_deg=0.0,
        elevation_deg=0.0,
        normal=normal,
        normal_frame=str(entry.get("normal_frame", "world")),
        is_input=bool(entry.get("is_input", False)),
    )


def read_viewset(views_dir: str | Path) -> ViewSet:
    """Read a ViewSet folder, or any folder with a valid nerfstudio transforms.json (module docstring).

    Missing or broken geometry (file_path, transform_matrix, focal, image, mask, distortion) raises one
    ContractError naming the file, the frame and the field. Our own hint fields get defaults; declared
    angles that contradict the matrices are recomputed with a `ViewSetWarning`. What is returned passes
    `validate_viewset`, so it can be written back.
    """
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
    version = int(_number(meta.get("schema_version", SCHEMA_VERSION), "schema_version", str(tf_path)))
    if version > SCHEMA_VERSION:
        raise ContractError(
            f"{tf_path}: schema_version {version} is newer than this spin-to-mesh understands ({SCHEMA_VERSION}); "
            "upgrade spin-to-mesh"
        )
    yaw = meta.get("yaw_direction")
    yaw_declared = yaw is not None
    if not yaw_declared:
        yaw = YAW_CCW
    elif yaw not in YAW_DIRECTIONS:
        raise ContractError(
            f"{tf_path}: 'yaw_direction' must be one of {YAW_DIRECTIONS} (got {yaw!r}); see spin_io.viewset for "
            "their meaning, or leave it out to default to 'ccw_from_above'"
        )
    frames = []
    declared_angles: list[tuple[float | None, float | None]] = []
    for i, entry in enumerate(meta["frames"]):
        where = f"{tf_path}: frame {i}"
        f = _read_frame(views_dir, meta, entry, where)
        _validate_frame_structure(i, f, str(tf_path), rot_atol=ROTATION_ATOL_READ)
        f.c2w = _orthonormalized(f.c2w)
        frames.append(f)
        az, el = (None if entry.get(k) is None else _number(entry[k], k, where) for k in ANGLE_KEYS)
        declared_angles.append((az, el))
    _warn_overrides(meta, meta["frames"], str(tf_path))
    declared = {"yaw_direction": yaw_declared}
    declared.update(_reconcile_angles(frames, declared_angles, yaw, yaw_declared, str(tf_path)))
    generation = meta.get("generation")
    vs = ViewSet(
        frames=frames,
        yaw_direction=yaw,
        metres_per_unit=_number(meta.get("metres_per_unit", DEFAULT_METRES_PER_UNIT), "metres_per_unit", str(tf_path)),
        generation=dict(generation) if isinstance(generation, dict) else {},
        schema_version=version,
        declared=declared,
    )
    validate_viewset(vs, str(tf_path))
    return vs
