"""MediaPipe's BlazeFace face detector (short- and full-range .tflite from the mediapipe 0.10.21 wheel).

Why: dlib's HOG detector misses over-exposed and turned (>= 30 deg) faces, and its MMOD CNN fallback costs
3.5 s on a 512 px photo (6.9 s before refusing a photo without a face). BlazeFace runs in a few ms on a
128x128 (short range) or 192x192 (full range) letterboxed copy and is trained on turned faces too.

Pre/post-processing follows MediaPipe's public face_detection graphs (face_detection_short_range.pbtxt,
face_detection_full_range.pbtxt; SsdAnchorsCalculator and TensorsToDetectionsCalculator options): input
RGB in [-1, 1], letterboxed keeping the aspect ratio; anchors of unit size on grids of strides 8, 16, 16, 16
(short: 2 + 6 anchors per cell, 896 in all) or 4 (full: 1 per cell, 2304); box and keypoint offsets in input
pixels relative to the anchor centre; score = sigmoid(clip(logit, +-100)); weighted non-maximum suppression
at IoU 0.3. Keypoints: subject's right eye (image-left), left eye, nose tip, mouth centre, right ear, left ear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align.mediapipe_models import MODELS, find_models, interpreter, litert_available, run

SHORT, FULL = "mediapipe-face-detection-short", "mediapipe-face-detection-full"


@dataclass(frozen=True)
class _Spec:
    size: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # 2 with the interpolated aspect ratio, 1 without
    min_score: float


TILE_GRID = 3  # tiles per side when the whole photo finds nothing
TILE_FRACTION = 0.6  # tile side / the photo's longer side: neighbours overlap by 40 %
# Nine tiles give nine chances of a false face: a tile of a padded astronaut photo scored a patch below her face
# 0.63, the real faces seen so far in tiles score 0.77-0.96 (Einstein at a lectern 0.83)
TILE_MIN_SCORE = 0.7

_SPECS = {
    SHORT: _Spec(128, (8, 16, 16, 16), 2, 0.5),
    FULL: _Spec(192, (4,), 1, 0.6),
}


def anchors(spec: _Spec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in the order the model's outputs use."""
    out = []
    i = 0
    strides = spec.strides
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = spec.anchors_per_layer * (j - i)
        grid = int(np.ceil(spec.size / strides[i]))
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
        i = j
    return np.concatenate(out)


@dataclass(frozen=True)
class FaceBox:
    """One detection in source pixels: box (x0, y0, x1, y1), score, 6 keypoints (x, y), and the model."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    model: str


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[tuple]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of those overlapping it."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    left = np.ones(len(scores), bool)
    kept = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        group = left & (_iou(boxes[i], boxes) > iou)
        group[i] = True
        w = scores[group][:, None]
        kept.append(((boxes[group] * w).sum(0) / w.sum(), (kps[group] * w[:, :, None]).sum(0) / w.sum(),
                     float(scores[i])))
        left &= ~group
    return kept


class BlazeFace:
    """Short-range BlazeFace, then full-range when it finds nothing (faces smaller than ~1/8 of the photo), then
    both on tiles."""

    name = "mediapipe BlazeFace (face_detection_short_range / full_range_sparse)"

    def __init__(self, paths: dict[str, Path] | None = None) -> None:
        paths = paths or find_models([SHORT, FULL])
        if paths is None:
            raise FileNotFoundError("BlazeFace models are not cached")
        self._models = {name: (interpreter(paths[name]), _SPECS[name], anchors(_SPECS[name])) for name in (SHORT, FULL)}

    @classmethod
    def available(cls) -> bool:
        """True when both models are cached and the runtime importable (nothing is downloaded)."""
        return litert_available() and find_models([SHORT, FULL]) is not None

    def _run(self, rgb: np.ndarray, name: str) -> list[FaceBox]:
        import cv2

        it, spec, anc = self._models[name]
        h, w = rgb.shape[:2]
        k = spec.size / max(h, w)
        nw, nh = max(1, round(w * k)), max(1, round(h * k))
        x0, y0 = (spec.size - nw) // 2, (spec.size - nh) // 2
        canvas = np.full((spec.size, spec.size, 3), -1.0, np.float32)
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        canvas[y0:y0 + nh, x0:x0 + nw] = small.astype(np.float32) / 127.5 - 1.0
        raw, logits = run(it, canvas[None])
        raw, logits = raw[0].astype(np.float64), logits[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
        keep = scores >= spec.min_score
        if not keep.any():
            return []
        raw, scores, a = raw[keep], scores[keep], anc[keep] * spec.size
        centre = raw[:, :2] + a
        half = 0.5 * raw[:, 2:4]
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        kps = raw[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
        offset = np.array([x0, y0], np.float64)
        found = []
        for box, pts, score in weighted_nms(boxes, kps, scores):
            box = (box.reshape(2, 2) - offset).ravel() / k
            found.append(FaceBox(box=box, score=score, keypoints=(pts - offset) / k, model=name))
        return found

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        """The whole photo (short range, then full range); if neither finds a face, overlapping tiles.

        Letterboxed to 128 px, a face of 1/5 of a tall head-and-torso photo is ~25 px: the short-range model
        scores it under its threshold (Einstein at a lectern: 0.45) while a tile of 0.6 x the photo's longer side
        around it scores 0.83 (bench/ALIGN_EVAL.md).
        """
        return self.whole(rgb) or self.tiled(rgb)

    def whole(self, rgb: np.ndarray) -> list[FaceBox]:
        """The whole photo only: short range, then full range."""
        return self._run(rgb, SHORT) or self._run(rgb, FULL)

    def tiled(self, rgb: np.ndarray, grid: int = TILE_GRID, frac: float = TILE_FRACTION) -> list[FaceBox]:
        """Both models on a grid x grid of overlapping square tiles, merged by weighted NMS (source pixels)."""
        h, w = rgb.shape[:2]
        side = max(1, round(frac * max(h, w)))
        boxes, kps, scores, models = [], [], [], []
        for i in range(grid):
            for j in range(grid):
                y0 = round(max(h - side, 0) * i / max(grid - 1, 1))
                x0 = round(max(w - side, 0) * j / max(grid - 1, 1))
                shift = np.array([x0, y0], np.float64)
                for name in (SHORT, FULL):
                    for f in self._run(rgb[y0:y0 + side, x0:x0 + side], name):
                        boxes.append(f.box + np.tile(shift, 2))
                        kps.append(f.keypoints + shift)
                        scores.append(f.score)
                        models.append(name)
        if not boxes:
            return []
        best = models[int(np.argmax(scores))]
        return [
            FaceBox(box=box, score=score, keypoints=pts, model=best + "-tiled")
            for box, pts, score in weighted_nms(np.array(boxes), np.array(kps), np.array(scores))
            if score >= TILE_MIN_SCORE
        ]


def licence_records(models: set[str]) -> list[dict[str, object]]:
    """face.json licence records of the BlazeFace models that ran."""
    return [MODELS[n].licence_record() for n in sorted(models)]
