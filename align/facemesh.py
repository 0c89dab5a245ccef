"""MediaPipe's 468-point 3-D face mesh on a detected face, and the head pose from a 3-D fit to it.

Why: the crop's vertical placement depends on the head's pitch, which 5 image points cannot pin down
(it flipped sign between landmarkers on real photos). The mesh predicts every point's depth, so a
rigid 3-D fit of our anthropometric template (template.py) gives yaw, pitch and roll, the head size
and centre from real measurements; refine_quad then uses them exactly as it uses the 2-D fit.

Pre/post-processing follows MediaPipe's public face_landmark graph and model card: a square ROI
1.5x the face, rotated so the eyes are level, resampled to 192x192 RGB in [0, 1]; the model returns
468 x (x, y, z) in input pixels (z: same scale as x, smaller = nearer the camera) and a face-presence
logit. We run it twice: once on the ROI from the detector's box, once on the ROI from the first
mesh (as MediaPipe's tracking loop does), which makes the result independent of the detector's box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align.image import warp_minified
from align.mediapipe_models import MODELS, ensure_models, find_models, interpreter, run
from align.template import PoseFit, template_points

INPUT = 192
ROI_SCALE = 1.5
# Mesh indices (MediaPipe's canonical topology). "l" = the image's left = the subject's right, as template.py.
EYE_L = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_R = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP, MOUTH_L, MOUTH_R = 1, 61, 291
CHIN, FOREHEAD_TOP = 152, 10
# template part -> mesh index (or eye contour) for the 3-D fit
_FIT = {
    "eye_l_outer": 33,
    "eye_l_inner": 133,
    "eye_r_inner": 362,
    "eye_r_outer": 263,
    "nose_tip": NOSE_TIP,
    "nose_base": 2,
    "lip_top": 0,
    "mouth_l": MOUTH_L,
    "mouth_r": MOUTH_R,
}
FIT_PARTS = (*_FIT, "eye_l", "eye_r")
MIN_PRESENCE = 0.5
MIN_MEAN_PRESENCE = 0.25  # and the two passes' mean at least this
# ROI updates from the mesh after the detector's ROI (MediaPipe's tracking loop): until the ROI settles (centre and
# side within 0.5 % of the side, turn within 0.5 deg of the previous ROI), at most TRACKING_STEPS; then AVERAGED
# more steps whose points are averaged. Six fixed steps left a 30 deg turned head's ROI still growing (243 -> 289 px
# of a converged 296), so its crop depended on the detector's first box (a padded photo moved it by 2.8 % of 512);
# and at the settled ROI the mesh still moves by ~1 px and 0.3 deg from one step to the next, so any single step's
# points carry that jitter into the crop.
TRACKING_STEPS = 20
AVERAGED = 4
SETTLED = 0.005
SETTLED_DEG = 0.5


# Named points: mesh index, or a contour whose mean is the point; and each one's mirror image.
_NAMED: dict[str, int | tuple[int, ...]] = {**_FIT, "eye_l": EYE_L, "eye_r": EYE_R, "chin": CHIN,
                                            "forehead_top": FOREHEAD_TOP}
_MIRROR = {"eye_l_outer": "eye_r_outer", "eye_l_inner": "eye_r_inner", "mouth_l": "mouth_r", "eye_l": "eye_r"}
_MIRROR.update({v: k for k, v in list(_MIRROR.items())})


def named_points(points: np.ndarray) -> dict[str, np.ndarray]:
    """The named points (x, y, z) of a (468, 3) mesh."""
    return {n: points[list(i)].mean(0) if isinstance(i, tuple) else points[i] for n, i in _NAMED.items()}


@dataclass(frozen=True)
class MeshResult:
    """The mesh in source pixels (z in the same pixel scale, smaller = nearer) and what it implies.

    `named` holds the points the alignment uses, averaged over the ROI and its mirror image (see FaceMesh).
    """

    points: np.ndarray  # (468, 3) of the direct pass: x right, y down (source px), z MediaPipe's
    named: dict[str, np.ndarray]
    presence: float  # face-presence probability of the final pass (mean of the direct and mirrored runs)
    pose: PoseFit  # template -> camera, fitted in 3-D

    @property
    def keypoints(self) -> np.ndarray:
        """The 5 AlignedFace keypoints: eye contour centres, nose tip, mouth corners (image-left first)."""
        return np.stack([self.named[n][:2] for n in ("eye_l", "eye_r", "nose_tip", "mouth_l", "mouth_r")])

    @property
    def fit_points(self) -> np.ndarray:
        """(len(FIT_PARTS), 3) mesh points matching template parts FIT_PARTS."""
        return np.stack([self.named[n] for n in FIT_PARTS])


def similarity_3d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: (s, R, t) minimising |dst - (s R src + t)|^2, R a proper rotation."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def pose_from_mesh(fit_points: np.ndarray) -> PoseFit:
    """Scaled-orthographic PoseFit (template mm -> source px) from a rigid 3-D fit to the mesh points."""
    cam = np.asarray(fit_points, np.float64) * np.array([1.0, -1.0, -1.0])  # x right, y up, z towards the viewer
    s, R, t = similarity_3d(template_points(FIT_PARTS), cam)
    fit = PoseFit(scale=s, rotation=R, offset=np.array([t[0], -t[1]]), rms_px=0.0)
    residual = fit.project(template_points(FIT_PARTS)) - fit_points[:, :2]
    return PoseFit(scale=s, rotation=R, offset=fit.offset, rms_px=float(np.sqrt((residual**2).sum(1).mean())))


def roi_matrix(centre: np.ndarray, size: float, angle: float) -> np.ndarray:
    """(2, 3) affine: source px -> 192 px model input, for a square ROI of side `size` rotated by `angle` rad."""
    c, s = np.cos(angle), np.sin(angle)
    k = INPUT / size
    # input = k * R(-angle) (p - centre) + INPUT/2 - 0.5 (pixel centres on integers)
    A = k * np.array([[c, s], [-s, c]])
    return np.concatenate([A, (INPUT / 2 - 0.5 - A @ centre)[:, None]], axis=1)


class FaceMesh:
    """face_landmark.tflite on ai-edge-litert, with MediaPipe's ROI construction (two passes)."""

    name = "mediapipe face_landmark (468 points, 3-D)"

    def __init__(self, path: Path | None = None) -> None:
        path = path or ensure_models(["mediapipe-face-landmark"], offline=True)["mediapipe-face-landmark"]
        self._it = interpreter(path)

    @classmethod
    def available(cls) -> bool:
        """True when the model file is cached and the runtime importable (nothing is downloaded)."""
        from align.mediapipe_models import litert_available

        return litert_available() and find_models(["mediapipe-face-landmark"]) is not None

    def _passes(
        self, rgb: np.ndarray, centre: np.ndarray, size: float, angle: float
    ) -> tuple[np.ndarray, float, np.ndarray, float]:
        """The model on the ROI and on its mirror image, from one warp: (points, presence, mirrored points,
        presence); the mirrored run's x is mapped back (its indices stay mirrored)."""
        import cv2

        M = roi_matrix(centre, size, angle)
        crop = warp_minified(rgb, M, INPUT)
        Minv = cv2.invertAffineTransform(M)
        return (*self._run(crop, Minv, size, mirror=False), *self._run(crop, Minv, size, mirror=True))

    def _run(self, crop: np.ndarray, Minv: np.ndarray, size: float, mirror: bool) -> tuple[np.ndarray, float]:
        x = ((crop[:, ::-1] if mirror else crop).astype(np.float32) / 255.0)[None]
        raw, flag = run(self._it, np.ascontiguousarray(x))
        pts = raw.reshape(468, 3).astype(np.float64)
        if mirror:
            pts[:, 0] = INPUT - 1 - pts[:, 0]
        xy = pts[:, :2] @ Minv[:, :2].T + Minv[:, 2]
        z = pts[:, 2] * (size / INPUT)
        return np.concatenate([xy, z[:, None]], axis=1), float(1.0 / (1.0 + np.exp(-float(np.ravel(flag)[0]))))

    def __call__(self, rgb: np.ndarray, box: np.ndarray, eyes: np.ndarray) -> MeshResult | None:
        """Mesh of the face in `box` (x0, y0, x1, y1) whose eye centres (image-left, image-right) are `eyes`.

        Every pass runs on the ROI and on its mirror image and averages the named points (left and right
        swapped for the mirror), so a mirrored photo gives the mirrored framing, not the model's own bias; the
        last AVERAGED steps' points are averaged too (the settled ROI's jitter). None when the model says there is
        no face in the ROI (no pass's presence >= 0.5, or their mean < 0.25).
        """
        box = np.asarray(box, np.float64)
        eyes = np.asarray(eyes, np.float64)
        d = eyes[1] - eyes[0]
        angle = float(np.arctan2(d[1], d[0]))
        centre = 0.5 * (box[:2] + box[2:])
        size = ROI_SCALE * float(max(box[2] - box[0], box[3] - box[1]))
        passes: list[tuple[np.ndarray, np.ndarray, float, float]] = []  # the averaged steps (direct, mirrored)
        settled = False
        for step in range(TRACKING_STEPS + AVERAGED):  # the tracking ROI: from the mesh itself, as MediaPipe's loop
            pts, presence, mirrored, presence_m = self._passes(rgb, centre, size, angle)
            if settled or step >= TRACKING_STEPS:
                passes.append((pts, mirrored, presence, presence_m))
                if len(passes) == AVERAGED:
                    break
            rois = (_roi(pts, 33, 263), _roi(mirrored, 263, 33))
            new_centre = 0.5 * (rois[0][0] + rois[1][0])
            new_size = 0.5 * (rois[0][1] + rois[1][1])
            new_angle = float(np.arctan2(sum(np.sin(r[2]) for r in rois), sum(np.cos(r[2]) for r in rois)))
            settled = settled or bool(
                np.linalg.norm(new_centre - centre) < SETTLED * size
                and abs(new_size - size) < SETTLED * size
                and abs(np.degrees(np.angle(np.exp(1j * (new_angle - angle))))) < SETTLED_DEG
            )
            centre, size, angle = new_centre, new_size, new_angle
        # Either pass (flip-symmetric), with the mean as a sanity bound: on faces turned 45 deg one pass may say
        # 0.22 and its mirror 0.78 (the other way round on the flipped photo); requiring both dropped such faces
        # and switched the framing method between a photo and its mirror or padded copy.
        best = max(max(p[2], p[3]) for p in passes)
        presence = float(np.mean([0.5 * (p[2] + p[3]) for p in passes]))
        if best < MIN_PRESENCE or presence < MIN_MEAN_PRESENCE:
            return None
        named: dict[str, np.ndarray] = {}
        for pts, mirrored, _, _ in passes:
            direct, other = named_points(pts), named_points(mirrored)
            for n in direct:
                named[n] = named.get(n, 0.0) + (direct[n] + other[_MIRROR.get(n, n)]) / (2 * len(passes))
        fit = np.stack([named[n] for n in FIT_PARTS])
        return MeshResult(points=pts, named=named, presence=presence, pose=pose_from_mesh(fit))


def _roi(pts: np.ndarray, left: int, right: int) -> tuple[np.ndarray, float, float]:
    """MediaPipe's landmarks-to-ROI: eye corners `left`->`right` level, square 1.5x the mesh's extent."""
    d = pts[right, :2] - pts[left, :2]
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(angle), np.sin(angle)
    local = pts[:, :2] @ np.array([[c, -s], [s, c]])  # into the eye-levelled frame
    lo, hi = local.min(0), local.max(0)
    return 0.5 * (lo + hi) @ np.array([[c, s], [-s, c]]), ROI_SCALE * float(max(hi - lo)), angle


def licence_records() -> list[dict[str, object]]:
    """face.json licence record of the mesh model."""
    return [MODELS["mediapipe-face-landmark"].licence_record()]
