"""The view schedule: real cameras for the ViewSet, and the model's angles that ask for them.

Real cameras (docs/DESIGN.md §2): on a sphere of radius 2.7 around the head, looking at the origin,
+Y up, no roll, the input camera on +Z, pinhole with FOV 18.837 degrees (EG3D's crop framing).
A camera is (azimuth, elevation) under `YAW_DIRECTION` = "ccw_from_above": position =
r (cos e sin a, sin e, cos e cos a), so azimuth +90 puts the camera on +X.

Model angles (SPINMEROUND.md §3.7): the network sees a ray map built from (a0, a1, a2) with
R = Rz(a2) Ry(-a1) Rx(a0) used as world-to-camera with translation +2.7 z. Its ray origins are
o = -R^T t and its per-pixel directions are R^T (OpenGL pixel ray). Reading the worked values:
the input (0, 0, 0) has o = (0, 0, -2.7) and central ray (0, 0, -1); (0, 90, 0) has o = (-2.7, 0, 0)
and central ray (-1, 0, 0); (30, 0, 0) has o = (0, -1.35, -2.338) and ray (0, -0.5, -0.866).
The rays point AWAY from the origin: only the sign of t is odd. Flipping the origins (p = -o = R^T t)
gives a proper camera with axes R^T that looks straight at the origin, with the same rays; that is
the only reading without a mirror. (Trusting the origins instead and rotating the frame by 180
degrees about Y, to put the input camera on +Z, gives the same answer for yaw.) So:

* yaw: a1 = +90 is the camera on +X of a frame whose input camera is on +Z and whose image right is
  +X, i.e. the camera that sees the side of the head shown on the RIGHT of the input photo (the
  subject's left ear). Hence azimuth = +a1 under "ccw_from_above".
* pitch: a0 = +30 puts the camera above the head, looking down: elevation = +a0.

What cannot be checked without the weights: that the training renders obey this geometry rather
than its mirror image (a mirrored renderer would flip the yaw direction). recon checks it on data.

Combined angles. For a0 != 0 and a1 != 0 the ray map of (a0, a1, 0) is geometrically a ring tilted
about X with roll, not a camera at elevation a0. Two readings, both unverifiable without weights:

* "angles" (default): the training data labelled look-at cameras (elevation, azimuth) and the ray
  map is just a deterministic code of those labels (the dataset provides angles, and the paper's
  evaluation viewpoints are given "in elevation and azimuth"). We feed (a0, a1, a2) = (e, a, 0).
* "rays": the ray maps were geometrically exact. We feed the Euler angles whose ray map is exactly
  our camera's (this needs a roll a2 != 0 for combined angles).

Both readings agree on the main ring (e = 0) and on the frontal pitched view (a = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from smr_core.errors import InputError
from spin_io.viewset import DEFAULT_FOV_DEG, DEFAULT_RADIUS, YAW_CCW, camera_position, focal_from_fov, look_at_c2w

CameraEncoding = Literal["angles", "rays"]
YAW_DIRECTION = YAW_CCW
YAW_DIRECTION_NOTE = (
    "azimuth_deg = model yaw a1; derived from the ray-map geometry of SPINMEROUND.md §3.7 (a1 = +90 is the "
    "camera on the side shown on the right of the input photo). Unverified without real weights: a mirrored "
    "training renderer would flip it; recon checks it on the data."
)
IMAGE_SIZE = 512
RADIUS = DEFAULT_RADIUS
FOV_DEG = DEFAULT_FOV_DEG


@dataclass(frozen=True)
class ViewCamera:
    """One requested view: a look-at camera at (azimuth, elevation) on the sphere of radius 2.7.

    is_input marks the photo's own view (azimuth 0, elevation 0: the input is assumed frontal, §7.5).
    """

    azimuth_deg: float
    elevation_deg: float
    is_input: bool = False

    def position(self, radius: float = RADIUS) -> np.ndarray:
        return camera_position(self.azimuth_deg, self.elevation_deg, radius, YAW_DIRECTION)

    def direction(self) -> np.ndarray:
        """Unit vector from the head to the camera (what angular distances between views are measured on)."""
        return self.position(1.0)

    def c2w(self, radius: float = RADIUS) -> np.ndarray:
        """OpenGL camera-to-world matrix, looking at the origin with +Y up."""
        return look_at_c2w(self.position(radius))


def ring_azimuths(n: int, offset_deg: float = 0.0) -> list[float]:
    """n azimuths evenly spaced over 360 degrees from offset_deg, in [0, 360) (the release's "360" mode)."""
    return [float((offset_deg + k * 360.0 / n) % 360.0) for k in range(n)]


def default_cameras(
    num_views: int = 8,
    pitch_rings_deg: Sequence[float] = (0.0, 20.0, -15.0),
    *,
    with_input: bool = True,
) -> list[ViewCamera]:
    """`num_views` evenly spaced yaws on every ring (elevations in degrees; 0 = eye level, > 0 = from above).

    With an input, it is camera 0 (azimuth 0, elevation 0) and takes the place of the eye-level ring's
    azimuth-0 view. The default pitched rings (+20, -15) cover the crown and the chin.
    """
    if num_views < 1:
        raise InputError(f"num_views must be at least 1 (views per ring, input included), got {num_views}")
    rings = [float(e) for e in pitch_rings_deg]
    if not rings:
        raise InputError("pitch_rings_deg needs at least one ring; (0,) is the eye-level ring alone")
    for e in rings:
        if not (math.isfinite(e) and -90.0 < e < 90.0):
            raise InputError(f"ring elevation {e} is not usable: it must lie strictly between -90 and 90 degrees")
    if len(set(rings)) != len(rings):
        raise InputError(f"ring elevations must be distinct, got {rings}")
    cameras = [ViewCamera(0.0, 0.0, is_input=True)] if with_input else []
    for e in rings:
        for a in ring_azimuths(num_views):
            if not (with_input and e == 0.0 and a == 0.0):
                cameras.append(ViewCamera(a, e))
    return cameras


def _wrap(deg: float) -> float:
    """Angle in (-180, 180]."""
    w = math.fmod(deg, 360.0)
    if w <= -180.0:
        w += 360.0
    elif w > 180.0:
        w -= 360.0
    return w


def euler_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """(a0, a1, a2) in degrees with R = Rz(a2) Ry(-a1) Rx(a0) (pose.pose_rotation), the branch with least roll."""
    R = np.asarray(R, np.float64)
    beta = math.asin(max(-1.0, min(1.0, -R[2, 0])))
    alpha = math.atan2(R[2, 1], R[2, 2])
    gamma = math.atan2(R[1, 0], R[0, 0])
    if abs(math.cos(beta)) < 1e-9:  # gimbal lock (camera straight above/below after yaw): put it all in a0
        alpha, gamma = math.atan2(-R[1, 2], R[1, 1]), 0.0
    candidates = [(alpha, beta, gamma), (alpha + math.pi, math.pi - beta, gamma + math.pi)]
    best = min(candidates, key=lambda c: (abs(_wrap(math.degrees(c[2]))), abs(_wrap(math.degrees(c[0])))))
    a0, b, a2 = (math.degrees(v) for v in best)
    return _wrap(a0), _wrap(-b), _wrap(a2)


def model_angles(camera: ViewCamera, encoding: CameraEncoding = "angles") -> tuple[float, float, float]:
    """The (a0, a1, a2) the network is given for a real camera (module docstring for the two readings)."""
    if encoding == "angles":
        return float(camera.elevation_deg), float(camera.azimuth_deg), 0.0
    if encoding == "rays":
        # the ray map's camera axes are R^T (= c2w rotation), so R = C^T
        return euler_from_rotation(camera.c2w()[:3, :3].T)
    raise InputError(f"camera encoding must be 'angles' or 'rays', got {encoding!r}")


def pixel_intrinsics(size: int = IMAGE_SIZE, fov_deg: float = FOV_DEG) -> tuple[float, float, float, float]:
    """(fl_x, fl_y, cx, cy) of the real 512 px camera (nerfstudio's pixel convention, centre at w/2)."""
    f = focal_from_fov(size, fov_deg)
    return f, f, size / 2.0, size / 2.0


def angular_distance_deg(a: ViewCamera, b: ViewCamera) -> float:
    """Angle between the two cameras' directions as seen from the head."""
    c = float(np.clip(np.dot(a.direction(), b.direction()), -1.0, 1.0))
    return math.degrees(math.acos(c))
