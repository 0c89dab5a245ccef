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


def downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy whose longer side is at most `max_side`, and the factor back to source pixels."""
    import cv2

    h, w = rgb.shape[:2]
    factor = max(h, w) / float(max_side)
    if factor <= 1.0:
        return rgb, 1.0
    small = cv2.resize(rgb, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA)
    return small, max(h, w) / float(max(small.shape[:2]))
