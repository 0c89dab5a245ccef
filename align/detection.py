"""What every face backend returns, and the shared "detect on a smaller copy" helper."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detection:
    """One face in source-image pixels.

    `keypoints` are the 5 points of the AlignedFace contract; `fit_points`/`fit_parts` are the
    landmarks (with template part names) used for the pose/scale fit, which may be more than 5.
    """

    box: np.ndarray  # (4,) x0, y0, x1, y1
    score: float
    keypoints: np.ndarray  # (5, 2)
    fit_points: np.ndarray
    fit_parts: tuple[str, ...]
    extra: dict = field(default_factory=dict)

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))

    @property
    def size(self) -> float:
        """The FFHQ quad's scale from the keypoints, max(2 |eye to eye|, 1.8 |eyes to mouth|), in pixels.

        Faces are ranked by this, not by box area: boxes from different detectors (dlib's HOG is tight on the
        brows and chin, BlazeFace's is wider) are not comparable, the keypoints are.
        """
        k = np.asarray(self.keypoints, np.float64)
        eyes, mouth = 0.5 * (k[0] + k[1]), 0.5 * (k[3] + k[4])
        return float(max(2.0 * np.linalg.norm(k[1] - k[0]), 1.8 * np.linalg.norm(mouth - eyes)))


def same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes (x0, y0, x1, y1) of one face: the centre of either lies inside the other."""

    def inside(p: np.ndarray, r: np.ndarray) -> bool:
        return bool(r[0] <= p[0] <= r[2] and r[1] <= p[1] <= r[3])

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return inside(0.5 * (a[:2] + a[2:]), b) or inside(0.5 * (b[:2] + b[2:]), a)


def downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy whose longer side is at most `max_side`, and the factor back to source pixels."""
    import cv2

    h, w = rgb.shape[:2]
    factor = max(h, w) / float(max_side)
    if factor <= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    return small, max(h, w) / float(max(small.shape[:2]))
