"""Soft head matte from MediaPipe's selfie segmentation, refined at the crop's full resolution.

Why: GrabCut (colour models from landmark seeds) lost most of the hair on real photos and gives a hard,
stair-stepped edge. The selfie model (Apache-2.0, from the mediapipe wheel) is trained on people: it
keeps hair, hats, ears, neck and clothes and returns a soft 256x256 probability. A guided filter with the
512 px crop as guide (He et al., 2010) carries it back to full resolution, so the edge follows the hair
instead of the 2x-upsampled grid. Pixels not connected to the face are dropped (other people, blobs), and
other people who touch the subject are split off (`split_people`: geodesic split between detected faces,
else a distance-transform watershed that finds a second head beside the subject's).
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

    def __call__(self, crop: np.ndarray, keypoints_crop: np.ndarray, others_crop: tuple | list = ()) -> np.ndarray:
        """Soft alpha (H, W) uint8 of `crop`; the region connected to the face (its keypoints) is kept."""
        return self.matte(crop, keypoints_crop, others_crop)[0]

    def matte(
        self, crop: np.ndarray, keypoints_crop: np.ndarray, others_crop: tuple | list = ()
    ) -> tuple[np.ndarray, str]:
        """(soft uint8 alpha, note): other people touching the subject are split off (`split_people`; the 5
        keypoints in crop px of the other detected faces help); the note says what was removed ("" if nothing)."""
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
        alpha, note = split_people(alpha.astype(np.float32), keypoints_crop, others_crop)
        return np.round(alpha * 255.0).astype(np.uint8), note


def licence_records() -> list[dict[str, object]]:
    """face.json licence record of the selfie model."""
    return [MODELS["mediapipe-selfie-segmentation"].licence_record()]


def _face_frame(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Centre, eye centre, unit 'up' (mouth -> eyes) and size d (max of eye distance, eye-to-mouth) of 5 keypoints."""
    kps = np.asarray(kps, np.float64)
    eye, mouth = 0.5 * (kps[0] + kps[1]), 0.5 * (kps[3] + kps[4])
    e2m = mouth - eye
    n = float(np.linalg.norm(e2m))
    up = -e2m / n if n > 0 else np.array([0.0, -1.0])
    d = max(float(np.linalg.norm(kps[1] - kps[0])), n, 1.0)
    return kps.mean(axis=0), eye, up, d


def _feather(alpha: np.ndarray, removed: np.ndarray, kept: np.ndarray, radius: int) -> np.ndarray:
    """alpha with `removed` (bool) cleared; next to `kept` (the subject) it fades over ~radius px instead."""
    import cv2

    keep = kept.astype(np.float32)
    soft = np.clip(2.0 * cv2.GaussianBlur(keep, (0, 0), max(float(radius), 1.0)), 0.0, 1.0)
    return alpha * np.where(removed, soft, 1.0).astype(np.float32)


def split_people(
    alpha: np.ndarray,
    keypoints_crop: np.ndarray,
    others_crop: list[np.ndarray] | tuple[np.ndarray, ...] = (),
    work_size: int = 256,
) -> tuple[np.ndarray, str]:
    """Remove from a soft alpha (float [0, 1], H x W) the pixels of people other than the subject.

    Other detected faces (their 5 keypoints in crop px) whose centre lies inside the mask: every mask pixel goes
    to the person nearest along the mask (geodesic distance from each face centre through mask pixels, divided by
    that face's size), and the other people's pixels are dropped. Without a detected face (turned away, or cut by
    the photo's edge), the mask is split at its saddles (watershed of its distance transform) and a basin whose
    peak is head-sized, above the subject's chin line and more than 1.5 face sizes beside the subject's face
    axis, and which reaches above the subject's eyes, is taken for another person's head and dropped (its part
    above the chin line: below it bodies overlap and cannot be told apart). The subject's face disc is never
    removed, the other person's soft rim goes with it and the cut edge is feathered. Returns (alpha, note); the
    alpha is returned unchanged, and the note is "", when nothing was removed.
    """
    import cv2

    h, w = alpha.shape
    centre, eye, up, d = _face_frame(keypoints_crop)
    radius = max(2, round(w / 128))
    core = alpha > 0.5
    removed = np.zeros((h, w), bool)
    notes = []

    seeds = []
    for kps in others_crop:
        c, _, _, dd = _face_frame(kps)
        x, y = int(round(c[0])), int(round(c[1]))
        if 0 <= x < w and 0 <= y < h and core[y, x]:
            seeds.append((c, dd))
    cx, cy = int(np.clip(round(centre[0]), 0, w - 1)), int(np.clip(round(centre[1]), 0, h - 1))
    if seeds and core[cy, cx]:
        from skimage.graph import MCP_Geometric

        k = min(1.0, work_size / max(h, w))
        sw, sh = max(1, round(w * k)), max(1, round(h * k))
        small = cv2.resize(core.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
        costs = np.where(small, 1.0, np.inf)
        dists = []
        for c, dd in [(centre, d), *seeds]:
            s = (int(np.clip(round(c[1] * k), 0, sh - 1)), int(np.clip(round(c[0] * k), 0, sw - 1)))
            if not small[s]:
                dists.append(np.full((sh, sw), np.inf))
                continue
            cum, _ = MCP_Geometric(costs).find_costs([s])
            dists.append(cum / (dd * k))
        dist = np.stack(dists)
        nearest = np.argmin(dist, axis=0)
        other = small & (nearest > 0) & np.isfinite(dist.min(axis=0))
        other_full = cv2.resize(other.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
        # the subject's own face region is never given away
        other_full &= ~_disc(h, w, centre, 1.2 * d)
        if other_full.any():
            removed |= other_full
            notes.append(
                f"{int(other_full.sum())} px of {len(seeds)} other detected person(s) removed (geodesic split)"
            )

    # no detected face (turned away, or cut by the photo's edge): another head is a second "bulge" of the mask.
    # Watershed of the distance transform splits the mask at its saddles (OpenCV counts the crop border as
    # inside, so a head cut by the border still has its peak); a basin other than the subject's is another head
    # when its peak is head-sized, above the subject's chin line, beside the subject's head and the basin reaches
    # above the subject's eyes. Only its part above the chin line is dropped (below it, bodies overlap).
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    k = min(1.0, work_size / max(h, w))
    sw, sh = max(1, round(w * k)), max(1, round(h * k))
    small = cv2.resize((core & ~removed).astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
    dk = d * k
    dt = cv2.distanceTransform(small, cv2.DIST_L2, 5)
    peaks = peak_local_max(dt, min_distance=max(1, int(0.4 * dk)), threshold_abs=0.5 * dk, labels=small,
                           exclude_border=False)
    c_s = centre * k
    fx, fy = int(np.clip(round(c_s[0]), 0, sw - 1)), int(np.clip(round(c_s[1]), 0, sh - 1))
    if len(peaks) > 1 and small[fy, fx]:
        markers = np.zeros((sh, sw), np.int32)
        markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
        basins = watershed(-dt, markers, mask=small.astype(bool))
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float64)
        chin_s = c_s - up * 1.0 * dk
        height = (xx - chin_s[0]) * up[0] + (yy - chin_s[1]) * up[1]
        eye_height = float((eye * k - chin_s) @ up)
        side = np.array([-up[1], up[0]])
        mine = int(basins[fy, fx])
        own_peak = float(dt[basins == mine].max())
        cut = np.zeros((sh, sw), bool)
        count = 0
        for i, (py, px) in enumerate(peaks, start=1):
            if i == mine:
                continue
            lateral = abs(float((np.array([px, py]) - c_s) @ side))
            basin = basins == i
            # head-sized: another head's inscribed radius is close to the subject's own (0.89-1.2x on the bench's
            # photos); a lock of hair or a shoulder beside the head is much thinner (0.6-0.65x)
            head_sized = float(dt[py, px]) >= 0.8 * own_peak
            if head_sized and height[py, px] > 0 and lateral > 1.5 * dk and float(height[basin].max()) > eye_height:
                cut |= basin & (height > 0)
                count += 1
        if count:
            part = cv2.resize(cut.astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR) > 0
            part &= ~_disc(h, w, centre, 1.2 * d)
            removed |= part & core
            notes.append(f"{int((part & core).sum())} px of {count} other head(s) without a detected face removed "
                         "(distance-transform watershed)")
    if not removed.any():
        return alpha, ""
    # the removed person's soft rim (alpha < 0.5) goes too; the subject's kept pixels are never touched
    grow = cv2.dilate(removed.astype(np.uint8), np.ones((4 * radius + 1, 4 * radius + 1), np.uint8)) > 0
    kept = core & ~removed
    n, labels = cv2.connectedComponents(kept.astype(np.uint8))
    if n > 2:  # slivers of the other person left by the coarser split are not the subject
        kp = np.clip(np.round(np.asarray(keypoints_crop)).astype(int), 0, [w - 1, h - 1])
        mine = {int(labels[y, x]) for x, y in kp} - {0}
        if mine:
            kept = np.isin(labels, list(mine))
    # what the cut left disconnected from the subject goes too (below-chin slivers of the other person)
    return _feather(alpha, (grow | core) & ~kept, kept, radius), "; ".join(notes)


def _disc(h: int, w: int, c: np.ndarray, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= r * r
