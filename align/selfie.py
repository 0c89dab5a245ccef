"""Soft head matte from MediaPipe's selfie segmentation, refined at the crop's full resolution.

Why: GrabCut (colour models from landmark seeds) lost most of the hair on real photos and gives a hard,
stair-stepped edge. The selfie model (Apache-2.0, from the mediapipe wheel) is trained on people: it
keeps hair, hats, ears, neck and clothes and returns a soft 256x256 probability. A guided filter with the
512 px crop as guide (He et al., 2010) carries it back to full resolution, so the edge follows the hair
instead of the 2x-upsampled grid. Pixels not connected to the face are dropped (other people, blobs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from align.mediapipe_models import MODELS, ensure_models, find_models, interpreter, litert_available, run

INPUT = 256


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide in [0, 1]: edge-aware smoothing of `src` along `guide`."""
    import cv2

    k = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


class SelfieMatting:
    """selfie_segmentation.tflite on ai-edge-litert -> soft uint8 alpha (255 = keep) of a square RGB crop."""

    name = "mediapipe selfie_segmentation (soft, guided-filter refined)"

    def __init__(self, path: Path | None = None) -> None:
        key = "mediapipe-selfie-segmentation"
        path = path or ensure_models([key], offline=True)[key]
        self._it = interpreter(path)

    @classmethod
    def available(cls) -> bool:
        """True when the model file is cached and the runtime importable (nothing is downloaded)."""
        return litert_available() and find_models(["mediapipe-selfie-segmentation"]) is not None

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """The model's person probability at INPUT px, float32 in [0, 1]."""
        import cv2

        small = cv2.resize(rgb, (INPUT, INPUT), interpolation=cv2.INTER_AREA)
        (out,) = run(self._it, (small.astype(np.float32) / 255.0)[None])
        return np.clip(out.reshape(INPUT, INPUT), 0.0, 1.0).astype(np.float32)

    def __call__(self, crop: np.ndarray, keypoints_crop: np.ndarray) -> np.ndarray:
        """Soft alpha (H, W) uint8 of `crop`; the region connected to the face (its keypoints) is kept."""
        import cv2

        h, w = crop.shape[:2]
        prob = cv2.resize(self.probability(crop), (w, h), interpolation=cv2.INTER_LINEAR)
        guide = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        radius = max(2, round(w / 128))
        alpha = np.clip(guided_filter(guide, prob, radius, 1e-3), 0.0, 1.0)
        # keep only what is connected to the face: other people and stray blobs become background
        core = (alpha > 0.5).astype(np.uint8)
        n, labels = cv2.connectedComponents(core)
        if n > 2:
            kps = np.clip(np.round(np.asarray(keypoints_crop)).astype(int), 0, [w - 1, h - 1])
            keep = {int(labels[y, x]) for x, y in kps} - {0}
            if keep:
                region = np.isin(labels, list(keep)).astype(np.uint8)
                near = cv2.dilate(region, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
                alpha = alpha * near
        return np.round(alpha * 255.0).astype(np.uint8)


def licence_records() -> list[dict[str, object]]:
    """face.json licence record of the selfie model."""
    return [MODELS["mediapipe-selfie-segmentation"].licence_record()]
