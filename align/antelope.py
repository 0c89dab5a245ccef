"""Production face backend: insightface's antelopev2 models (SCRFD detector + ArcFace), as the release.

With the `insightface` package installed we call its FaceAnalysis exactly as the demo does
(det_size 448, BGR input, largest box). Without it, the two ONNX files run directly through
onnxruntime with our own pre/post-processing, written from the models' published I/O contract:
SCRFD takes a 448x448 letterboxed RGB image normalised as (x - 127.5) / 128 and returns, per stride
(8, 16, 32) and 2 anchors per cell, a score, 4 box distances and 10 keypoint offsets in units of
the stride; ArcFace takes a 112x112 crop similarity-aligned to the standard 5-point template,
normalised as (x - 127.5) / 127.5, and returns a 512-d embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from align.detection import Detection, downscaled
from align.template import KEYPOINT_PARTS

DET_SIZE = 448
ARCFACE_SIZE = 112
# The standard ArcFace 5-point destination for 112x112 crops (insightface `arcface_dst`).
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def _providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src (N, 2) onto dst; returns (2, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    scale = np.trace(np.diag(S) @ D) / s_c.var(0).sum()
    t = mu_d - scale * R @ mu_s
    return np.hstack([scale * R, t[:, None]])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-12)
        order = rest[iou <= iou_threshold]
    return keep


class ScrfdOnnx:
    """SCRFD face detector with 5 keypoints, run through onnxruntime."""

    strides = (8, 16, 32)
    num_anchors = 2

    def __init__(self, path: Path, score_threshold: float = 0.5, nms_threshold: float = 0.4) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4), scores (N,), keypoints (N, 5, 2)) in the pixels of `rgb`, best first."""
        import cv2

        h, w = rgb.shape[:2]
        det_scale = DET_SIZE / max(h, w)
        new_w, new_h = max(int(round(w * det_scale)), 1), max(int(round(h * det_scale)), 1)
        canvas = np.zeros((DET_SIZE, DET_SIZE, 3), np.float32)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h)).astype(np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(None, {self.input_name: blob})
        n_levels = len(self.strides)
        if len(outputs) != 3 * n_levels:
            raise ValueError(
                f"expected {3 * n_levels} SCRFD outputs (scores, boxes, keypoints per stride), "
                f"got {len(outputs)}: is this scrfd_10g_bnkps.onnx?"
            )
        all_boxes, all_scores, all_kps = [], [], []
        for level, stride in enumerate(self.strides):
            scores = outputs[level].reshape(-1)
            dist = outputs[level + n_levels].reshape(-1, 4) * stride
            kps = outputs[level + 2 * n_levels].reshape(-1, 10) * stride
            cells = DET_SIZE // stride
            gy, gx = np.mgrid[:cells, :cells]
            centres = np.stack([gx, gy], -1).reshape(-1, 2).astype(np.float32) * stride
            centres = np.repeat(centres, self.num_anchors, axis=0)
            pos = np.where(scores >= self.score_threshold)[0]
            c = centres[pos]
            boxes = np.hstack([c - dist[pos, :2], c + dist[pos, 2:]])
            all_boxes.append(boxes)
            all_scores.append(scores[pos])
            all_kps.append(c[:, None, :] + kps[pos].reshape(-1, 5, 2))
        boxes = np.concatenate(all_boxes) / det_scale
        scores = np.concatenate(all_scores)
        kps = np.concatenate(all_kps) / det_scale
        keep = nms(boxes, scores, self.nms_threshold)
        return boxes[keep], scores[keep], kps[keep]


class ArcFaceOnnx:
    """ArcFace recognition model through onnxruntime: aligned 112 px crop -> raw 512-d embedding."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=_providers())
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        import cv2

        M = similarity_transform(keypoints, ARCFACE_DST)
        aligned = cv2.warpAffine(rgb, M, (ARCFACE_SIZE, ARCFACE_SIZE), borderValue=0.0)
        blob = ((aligned.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return self.session.run(None, {self.input_name: blob})[0].reshape(-1).astype(np.float32)


class AntelopeBackend:
    """antelopev2 detection + ArcFace, via insightface when installed, else onnxruntime directly."""

    name = "antelopev2"

    def __init__(
        self, detector: Path, recognition: Path, detect_max_side: int = 2048, use_insightface: bool | None = None
    ) -> None:
        self.detect_max_side = detect_max_side
        self._app = None
        if use_insightface is None:
            import importlib.util

            use_insightface = importlib.util.find_spec("insightface") is not None
        if use_insightface:
            from insightface.app import FaceAnalysis

            root = detector.parent.parent.parent  # WEIGHTS/models/antelopev2/x.onnx -> WEIGHTS
            self._app = FaceAnalysis(
                name="antelopev2", root=str(root), providers=_providers(), allowed_modules=["detection", "recognition"]
            )
            self._app.prepare(ctx_id=0, det_size=(DET_SIZE, DET_SIZE))
        else:
            self._scrfd = ScrfdOnnx(detector)
            self._arcface = ArcFaceOnnx(recognition)
        self._files = {"detector": detector.name, "recognition": recognition.name}

    @property
    def info(self) -> dict:
        return {
            "name": self.name,
            "runtime": "insightface" if self._app is not None else "onnxruntime",
            "detector": self._files["detector"],
            "landmarks": "SCRFD 5 keypoints",
            "identity": self._files["recognition"],
        }

    def _raw(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray, np.ndarray | None]]:
        if self._app is not None:
            faces = self._app.get(np.ascontiguousarray(rgb[..., ::-1]))  # insightface expects BGR
            return [
                (
                    np.asarray(f.bbox, np.float64),
                    float(f.det_score),
                    np.asarray(f.kps, np.float64),
                    np.asarray(f.embedding, np.float32),
                )
                for f in faces
            ]
        boxes, scores, kps = self._scrfd(rgb)
        return [
            (b.astype(np.float64), float(s), k.astype(np.float64), None)
            for b, s, k in zip(boxes, scores, kps, strict=True)
        ]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces, largest box first (the demo's choice), keypoints in source pixels."""
        small, factor = downscaled(rgb, self.detect_max_side)
        detections = [
            Detection(
                box=box * factor, score=score, keypoints=kps * factor, fit_points=kps * factor, fit_parts=KEYPOINT_PARTS
            )
            for box, score, kps, _ in self._raw(small)
        ]
        detections.sort(key=lambda d: d.area, reverse=True)
        return detections

    def embed(self, rgb_crop: np.ndarray) -> np.ndarray | None:
        """Re-detect on the white-background crop, take the largest face, L2-normalise its embedding.

        Returns None when no face is found again (the demo stops there; the caller explains).
        """
        raw = self._raw(rgb_crop)
        if not raw:
            return None
        box, _, kps, emb = max(raw, key=lambda r: (r[0][2] - r[0][0]) * (r[0][3] - r[0][1]))
        if emb is None:
            emb = self._arcface(rgb_crop, kps)
        emb = emb.astype(np.float32)
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return (emb / norm).astype(np.float32)
