"""A sparse 3-D mean face and a weak-perspective fit: head pose, size and centre from landmarks.

The release estimates pose, scale and the head centre with 3DDFA (a BFM fit); we need the same
three quantities from whichever landmarks a backend gives, so we fit a small rigid template by
scaled orthographic projection (the camera model 3DDFA itself uses). The coordinates are our own
round anthropometric values for an adult face in millimetres: x towards the image's right when the
face is frontal, y up, z towards the camera, origin between the eyes. Accuracy of a few mm is
plenty: the fit only steers the crop, and the thresholds it feeds are wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPLATE_MM: dict[str, tuple[float, float, float]] = {
    "eye_l_outer": (-44.0, 0.0, -9.0),
    "eye_l_inner": (-15.0, 0.0, -4.0),
    "eye_r_inner": (15.0, 0.0, -4.0),
    "eye_r_outer": (44.0, 0.0, -9.0),
    "eye_l": (-29.5, 0.0, -6.5),
    "eye_r": (29.5, 0.0, -6.5),
    "nose_tip": (0.0, -34.0, 22.0),
    "nose_base": (0.0, -43.0, 13.0),
    "lip_top": (0.0, -60.0, 10.0),
    "mouth_l": (-24.0, -70.0, -3.0),
    "mouth_r": (24.0, -70.0, -3.0),
}

# Keypoint names in AlignedFace order (left eye, right eye, nose tip, left mouth, right mouth).
KEYPOINT_PARTS = ("eye_l", "eye_r", "nose_tip", "mouth_l", "mouth_r")

# The point the refined crop is centred on: under the FFHQ quad centre of the frontal template
# (eye line + 0.1 * eye-to-mouth = 7 mm down) and 85 mm behind the eyes, i.e. inside the skull,
# where PanoHead's "object centre" (BFM origin moved back by half the mean depth) lies. Depth only
# matters for turned heads: it is what moves the crop towards the back of the head as yaw grows.
OBJECT_CENTRE = np.array([0.0, -7.0, -85.0])


def template_points(names: tuple[str, ...] | list[str]) -> np.ndarray:
    """(N, 3) template coordinates for the named parts."""
    return np.array([TEMPLATE_MM[n] for n in names], dtype=np.float64)


@dataclass(frozen=True)
class PoseFit:
    """Scaled orthographic camera: image point = scale * R[:2] @ X (y flipped) + offset."""

    scale: float  # source pixels per template millimetre
    rotation: np.ndarray  # (3, 3) template -> camera (x right, y up, z towards the viewer)
    offset: np.ndarray  # (2,) image pixels
    rms_px: float  # fit residual, a quality signal

    def project(self, points: np.ndarray) -> np.ndarray:
        """Template points (N, 3) -> image pixels (N, 2), y down."""
        cam = self.scale * (np.asarray(points, np.float64) @ self.rotation[:2].T)
        return np.stack([cam[:, 0], -cam[:, 1]], axis=1) + self.offset

    @property
    def angles_deg(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) with R = Rz(roll) Ry(yaw) Rx(-pitch).

        yaw > 0: face turned towards the image's right; pitch > 0: looking up; roll > 0:
        counter-clockwise in the image.
        """
        R = self.rotation
        yaw = np.degrees(np.arcsin(np.clip(-R[2, 0], -1.0, 1.0)))
        pitch = -np.degrees(np.arctan2(R[2, 1], R[2, 2]))
        roll = np.degrees(np.arctan2(R[1, 0], R[0, 0]))
        return float(yaw), float(pitch), float(roll)


def fit_pose(image_points: np.ndarray, names: tuple[str, ...] | list[str]) -> PoseFit:
    """Least-squares scaled-orthographic fit of the template parts `names` to `image_points` (N, 2).

    Linear solve for the 2x3 affine camera, then the nearest scaled rotation (SVD), so the fit is
    closed-form and has no mirror ambiguity while the points are not coplanar (the nose is not).
    """
    uv = np.asarray(image_points, np.float64)
    if uv.shape != (len(names), 2) or len(names) < 4:
        raise ValueError(f"need >= 4 image points matching the part names, got {uv.shape} for {len(names)} names")
    X = template_points(names)
    q = np.stack([uv[:, 0], -uv[:, 1]], axis=1)  # y up, like the template
    X0, q0 = X.mean(axis=0), q.mean(axis=0)
    Xc, qc = X - X0, q - q0
    M = np.linalg.lstsq(Xc, qc, rcond=None)[0].T  # (2, 3)
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    scale = float(S.mean())
    r12 = U @ Vt
    r3 = np.cross(r12[0], r12[1])
    R = np.stack([r12[0], r12[1], r3])
    offset_up = q0 - scale * (R[:2] @ X0)
    fit = PoseFit(scale=scale, rotation=R, offset=np.array([offset_up[0], -offset_up[1]]), rms_px=0.0)
    residual = fit.project(X) - uv
    return PoseFit(scale=scale, rotation=R, offset=fit.offset, rms_px=float(np.sqrt((residual**2).sum(1).mean())))


def level_pitch(fit: PoseFit) -> PoseFit:
    """The same fit with pitch set to 0 (yaw and roll kept), pivoting about the eye midpoint, which stays put.

    A 5-point 2-D fit cannot tell pitch from face proportions; projecting the head centre (85 mm behind the eyes)
    with a wrong pitch d moves the crop by about 85 mm x sin d, so without a 3-D measurement the crop assumes 0.
    """
    yaw, _, roll = np.radians(fit.angles_deg)
    cy, sy, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    Rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    Ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    R = Rz @ Ry
    pivot = template_points(("eye_l", "eye_r")).mean(0)
    level = PoseFit(scale=fit.scale, rotation=R, offset=np.zeros(2), rms_px=fit.rms_px)
    offset = fit.project(pivot[None])[0] - level.project(pivot[None])[0]
    return PoseFit(scale=fit.scale, rotation=R, offset=offset, rms_px=fit.rms_px)


def _template_ffhq_half_size() -> float:
    """|x| of the FFHQ quad of the frontal template at 1 px/mm: the size for which refinement gives s = 1."""
    eye_l, eye_r, _, mouth_l, mouth_r = template_points(KEYPOINT_PARTS)[:, :2] * np.array([1.0, -1.0])
    e2e = eye_r - eye_l
    e2m = 0.5 * (mouth_l + mouth_r) - 0.5 * (eye_l + eye_r)
    return float(max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m)))


TEMPLATE_FFHQ_HALF_SIZE = _template_ffhq_half_size()
