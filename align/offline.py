"""Offline face backend: dlib's detectors and landmarkers, whose models ship in PyPI packages.

Why dlib (dlib-bin + face-recognition-models) and not the alternatives, as checked for this project:
- mediapipe 0.10.21 (the last release with its face models in the wheel) requires numpy < 2;
  the project runs numpy 2.x, so it cannot be installed beside it.
- OpenCV 4.x Haar cascades only give boxes (no keypoints); YuNet/SFace need downloads.
- insightface 2.1 and uniface ship no weights.
- dlib's HOG detector (code and model under the Boost licence, trained on LFW), its CNN (MMOD)
  detector and its 5-point landmarker are public domain (dlib-models README). The 68-point
  landmarker is trained on iBUG 300-W, whose licence excludes commercial use, so it is opt-in
  (`landmarks="dlib68"`), never the default.

Keypoints. The 5-point model marks the four eye corners and the bottom of the nose. Eye centres
are the corner midpoints; the nose tip and mouth corners, which the FFHQ quad needs, are taken
from the 3-D template fitted to those five points (template.py). With `dlib68` (the landmarker
FFHQ itself was aligned with) eye centres are the eye-contour means, the nose tip is point 30 and
the mouth corners 48/54, exactly the release's 68-point branch of get_crop_bound.

dlib gives no ArcFace embedding (its 128-d descriptor lives in another space), so this backend
produces no arcface.npy; the identity embedding needs the antelopev2 model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from align.detection import Detection, downscaled, same_face
from align.errors import AlignWeightsNotFoundError
from align.template import KEYPOINT_PARTS, fit_pose, template_points

LandmarkModel = Literal["dlib5", "dlib68", "facemesh"]

_DLIB68_FIT = {
    36: "eye_l_outer",
    39: "eye_l_inner",
    42: "eye_r_inner",
    45: "eye_r_outer",
    30: "nose_tip",
    33: "nose_base",
    51: "lip_top",
    48: "mouth_l",
    54: "mouth_r",
}
# dlib's 5-point order: image-right eye outer, inner; image-left eye outer, inner; nose base.
_DLIB5_PARTS = ("eye_r_outer", "eye_r_inner", "eye_l_outer", "eye_l_inner", "nose_base")


@dataclass(frozen=True)
class OfflineConfig:
    """Detector settings; the defaults are what the tests measure on skimage's astronaut photo."""

    landmarks: LandmarkModel = "dlib5"
    detect_max_side: int = 1024  # detect on a copy no larger than this (huge photos)
    upsample: int = 1  # HOG pyramid upsampling: finds faces down to ~40 px in the copy
    min_score: float = 0.3  # HOG SVM margin; the astronaut's face scores 1.16, a false hit 0.12
    # When HOG finds nothing (over-exposed or turned >= 30 deg faces): MediaPipe's BlazeFace (a few ms) when its
    # models are cached, then dlib's MMOD CNN (3.5 s at 512 px) only if BlazeFace is unavailable, or also after it
    # with cnn_after_blazeface.
    blazeface: bool = True
    blazeface_with_hog: bool = True  # BlazeFace also runs when HOG found faces, and adds the faces HOG missed
    cnn_fallback: bool = True  # try the (slower, more pose-tolerant) MMOD CNN when HOG (and BlazeFace) find nothing
    cnn_after_blazeface: bool = False
    # When the face mesh runs, take all five keypoints from it (dlib's eyes move with its HOG box when the photo is
    # padded or scaled); False keeps dlib's eye centres and takes only the nose and mouth from the mesh.
    mesh_keypoints: bool = True
    # dlib's shape predictors regress toward an upright face: on a head rolled 20-40 deg their eye line comes out
    # 5-13 deg too level and the mouth corners tens of px off. Landmarks are located again on a copy turned so
    # that the eyes are level, up to this many times until they are level within 1 deg there (else the first points).
    deroll_iterations: int = 3
    deroll_min_deg: float = 5.0  # faces rolled less than this are located as they are (the predictor is fine)
    cnn_min_score: float = 0.3
    cnn_upsample: int = 0  # the CNN already finds faces from ~80 px in the copy; upsampling costs 4x


MAX_DEROLL_DEG = 60.0  # alignment refuses rolls over 50 deg; a turn past this is a runaway, not a roll


def _eye_line_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the line through two eye centres, from the one further left in the image (y down: > 0 clockwise)."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    if d[0] < 0:
        d = -d
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AlignWeightsNotFoundError(
            "the offline face backend needs the dlib models: pip install 'dlib-bin==20.0.1.post1' "
            "'face-recognition-models==0.3.0' (or the project's `align` extra)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class OfflineBackend:
    """dlib HOG (+ MMOD CNN fallback) detection and dlib shape-predictor landmarks."""

    name = "offline"

    def __init__(self, config: OfflineConfig = OfflineConfig()) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise AlignWeightsNotFoundError(
                "the offline face backend needs dlib: pip install 'dlib-bin==20.0.1.post1' "
                "'face-recognition-models==0.3.0'"
            ) from exc
        self.config = config
        models = _models_dir()
        file = (
            "shape_predictor_5_face_landmarks.dat"
            if config.landmarks != "dlib68"
            else ("shape_predictor_68_face_landmarks.dat")
        )
        for needed in (file, "mmod_human_face_detector.dat"):
            if not (models / needed).is_file():
                raise AlignWeightsNotFoundError(f"{models / needed}: missing; reinstall face-recognition-models==0.3.0")
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._cnn_path = models / "mmod_human_face_detector.dat"
        self._cnn = None
        self._predictor = dlib.shape_predictor(str(models / file))
        self._blazeface = None
        if config.blazeface:
            from align.blazeface import BlazeFace

            if BlazeFace.available():
                self._blazeface = BlazeFace()

    @property
    def info(self) -> dict:
        """What face.json records about this backend (including the licence caveat)."""
        licence = {
            "dlib5": "public domain (dlib-models)",
            "dlib68": "iBUG 300-W: non-commercial use only",
            "facemesh": "public domain (dlib-models) + Apache-2.0 (MediaPipe face mesh)",
        }[self.config.landmarks]
        return {
            "name": self.name,
            "detector": "dlib HOG frontal_face_detector ("
            + ("mediapipe BlazeFace fallback" if self._blazeface is not None else "MMOD CNN fallback")
            + (", then MMOD CNN" if self._blazeface is not None and self.config.cnn_after_blazeface else "")
            + ")",
            "landmarks": "dlib shape_predictor dlib5 (eyes, face-mesh ROI) + mediapipe face mesh"
            if self.config.landmarks == "facemesh"
            else f"dlib shape_predictor {self.config.landmarks}",
            "landmarks_licence": licence,
            "identity": None,
        }

    def _boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, str, float | None]]:
        """(box, score, detector, roll in degrees where the detector measured the eyes, else None) per face."""
        small, factor = downscaled(rgb, self.config.detect_max_side)
        small = np.ascontiguousarray(small)
        rects, scores, _ = self._hog.run(small, self.config.upsample, 0.0)
        found = [
            (np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) * factor, float(s), "hog", None)
            for r, s in zip(rects, scores, strict=True)
            if s >= self.config.min_score
        ]
        if self._blazeface is not None and not found:
            found = [(f.box, f.score, f.model, _eye_line_deg(*f.keypoints[:2])) for f in self._blazeface(rgb)]
        elif self._blazeface is not None and self.config.blazeface_with_hog:
            # HOG misses some subjects (head tipped up, a halo of white hair) while it finds a smaller face
            # behind them: BlazeFace's faces on the whole photo that are not HOG's are added, and size decides
            # (Detection.size). Its tiles run only when nothing else found a face.
            found += [(f.box, f.score, f.model, _eye_line_deg(*f.keypoints[:2])) for f in self._blazeface.whole(rgb)
                      if not any(same_face(f.box, box) for box, *_ in found)]
        cnn = self.config.cnn_fallback and (self._blazeface is None or self.config.cnn_after_blazeface)
        if not found and cnn:
            if self._cnn is None:
                self._cnn = self._dlib.cnn_face_detection_model_v1(str(self._cnn_path))
            for d in self._cnn(small, self.config.cnn_upsample):
                if d.confidence >= self.config.cnn_min_score:
                    r = d.rect
                    box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) * factor
                    found.append((box, float(d.confidence), "cnn", None))
        return found

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces, largest first (Detection.size), with landmarks located on the full-resolution image."""
        detections = []
        boxes = self._boxes(rgb)
        hog_found = any(which == "hog" for _, _, which, _ in boxes)
        for box, score, which, roll in boxes:
            pts, turned = self._landmarks(rgb, box, roll)
            if self.config.landmarks == "dlib68":
                idx = list(_DLIB68_FIT)
                fit_points, fit_parts = pts[idx], tuple(_DLIB68_FIT.values())
                kps = np.stack([*self._eyes(pts), pts[30], pts[48], pts[54]])
            else:
                fit_points, fit_parts = pts, _DLIB5_PARTS
                predicted = fit_pose(fit_points, fit_parts).project(template_points(KEYPOINT_PARTS))
                kps = np.stack([*self._eyes(pts), predicted[2], predicted[3], predicted[4]])
            detections.append(
                Detection(
                    box=box,
                    score=score,
                    keypoints=kps,
                    fit_points=fit_points,
                    fit_parts=fit_parts,
                    extra={
                        "detector": which,
                        # found by an extra pass (BlazeFace beside HOG, or on tiles): the face mesh must confirm it
                        "confirm": which.startswith("mediapipe-") and (hog_found or which.endswith("-tiled")),
                        "landmarks": pts.round(2).tolist(),
                        # located on a copy turned by this many degrees (0: on the photo itself)
                        "landmarks_turn_deg": round(turned, 2),
                        # nose tip and mouth corners predicted by the 2-D template fit, not located
                        "inferred_keypoints": () if self.config.landmarks == "dlib68" else (2, 3, 4),
                    },
                )
            )
        detections.sort(key=lambda d: d.size, reverse=True)
        return detections

    def _predict(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The shape predictor's points (N, 2) in a box of `rgb`."""
        rect = self._dlib.rectangle(*[int(round(v)) for v in box])
        return np.array([[p.x, p.y] for p in self._predictor(rgb, rect).parts()], np.float64)

    def _eyes(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image-left and image-right eye centres: dlib68's eye-contour means, or dlib5's corner midpoints."""
        if self.config.landmarks == "dlib68":
            return pts[36:42].mean(0), pts[42:48].mean(0)
        return 0.5 * (pts[2] + pts[3]), 0.5 * (pts[0] + pts[1])

    def _roll_deg(self, pts: np.ndarray) -> float:
        """The eye line's angle from the shape predictor's points."""
        return _eye_line_deg(*self._eyes(pts))

    def _landmarks(self, rgb: np.ndarray, box: np.ndarray, roll: float | None = None) -> tuple[np.ndarray, float]:
        """Shape-predictor points for one face box, located on a copy turned upright (OfflineConfig.deroll_*), and
        the turn in degrees (0: located on the photo itself).

        The copy is a square window twice the box's side around its centre, turned by the roll the last points
        gave (the first time, the detector's own eyes where it has them: BlazeFace's boxes of a face rolled 45 deg
        leave the predictor's first eye line 40 deg off); the box keeps its size and centre there, and the points
        are mapped back to the photo.
        """
        import cv2

        pts = self._predict(rgb, box)
        centre = 0.5 * (box[:2] + box[2:])
        side = float(max(box[2] - box[0], box[3] - box[1]))  # also the window's half-width: it spans two sides
        window = int(round(2 * side))
        if roll is None:
            roll = self._roll_deg(pts)
        if abs(roll) < self.config.deroll_min_deg or window < 8 or self.config.deroll_iterations < 1:
            return pts, 0.0
        total = 0.0
        for _ in range(self.config.deroll_iterations):
            total += roll
            if abs(total) > MAX_DEROLL_DEG:
                break
            # photo -> window: turn by -total about the box centre, which lands at the window's centre
            m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), total, 1.0)
            m[:, 2] += side - centre
            upright = cv2.warpAffine(rgb, m, (window, window), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            local = self._predict(upright, np.array([0.5 * side, 0.5 * side, 1.5 * side, 1.5 * side]))
            roll = self._roll_deg(local)
            if abs(roll) < 1.0:  # converged: the eyes are level in the turned copy
                inverse = cv2.invertAffineTransform(m)
                return local @ inverse[:, :2].T + inverse[:, 2], total
        # Not converged: on a head turned 45 deg the eye line is no measure of roll, and each turn made the
        # predictor tilt the eyes further (6 -> 24 -> 34 -> 39 deg on a render whose roll is 0): keep the first points.
        return pts, 0.0

    def embed(self, rgb_crop: np.ndarray) -> np.ndarray | None:
        """No ArcFace model offline: the caller records why arcface.npy is absent."""
        return None
