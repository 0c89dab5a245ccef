"""Background to white: BiSeNet parsing when its weights exist, else a landmark-seeded GrabCut.

The offline fallback must keep what BiSeNet keeps (face, hair, ears, neck, clothes) and drop the
rest. GrabCut (OpenCV, no weights) fits colour models to seeds we can place reliably in the
PanoHead crop, whose framing is fixed by the keypoints: the face polygon is certainly foreground;
an ellipse over the skull and the band below the chin are probably foreground; the two top
corners are certainly background; everything else is left for GrabCut to decide. The result is
cleaned to the connected region containing the face, with holes filled, so it is one solid head.
It is a fallback: hair against a similarly coloured background can be lost or kept wrongly.
"""

from __future__ import annotations

import numpy as np


def grabcut_mask(crop: np.ndarray, keypoints_crop: np.ndarray, iterations: int = 3, work_size: int = 256) -> np.ndarray:
    """Binary uint8 mask (255 = head) of a (S, S, 3) RGB crop, seeded by its 5 keypoints.

    GrabCut's graph cut grows quickly with resolution and texture, so it runs on a `work_size`
    copy (about 0.3 s on one core at 256 px) and the mask is upsampled with linear interpolation.
    """
    import cv2

    full = crop.shape[0]
    size = min(work_size, full)
    k = size / full
    work = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if size != full else crop
    kps = (np.asarray(keypoints_crop, np.float64) + 0.5) * k - 0.5
    eye_avg = 0.5 * (kps[0] + kps[1])
    mouth_avg = 0.5 * (kps[3] + kps[4])
    e2m = mouth_avg - eye_avg
    d = max(float(np.linalg.norm(kps[1] - kps[0])), float(np.linalg.norm(e2m)), 1.0)
    up = -e2m / np.linalg.norm(e2m) if np.linalg.norm(e2m) > 0 else np.array([0.0, -1.0])

    seeds = np.full((size, size), cv2.GC_PR_BGD, np.uint8)
    skull_centre = eye_avg + up * 0.35 * d
    angle = float(np.degrees(np.arctan2(-up[0], up[1])))
    cv2.ellipse(
        seeds,
        (int(skull_centre[0]), int(skull_centre[1])),
        (int(1.45 * d), int(1.75 * d)),
        angle,
        0,
        360,
        int(cv2.GC_PR_FGD),
        -1,
    )
    chin = mouth_avg - up * 0.9 * d
    neck = np.array(
        [
            chin + np.array([-0.9 * d, 0.0]),
            chin + np.array([0.9 * d, 0.0]),
            [chin[0] + 1.6 * d, size - 1],
            [chin[0] - 1.6 * d, size - 1],
        ],
        np.int32,
    )
    cv2.fillConvexPoly(seeds, neck, int(cv2.GC_PR_FGD))
    centre = kps.mean(axis=0)
    core = centre + 0.8 * (kps[[0, 1, 4, 3]] - centre)
    cv2.fillConvexPoly(seeds, core.astype(np.int32), int(cv2.GC_FGD))
    corner = max(size // 10, 4)
    for x0 in (0, size - corner):
        seeds[:corner, x0 : x0 + corner] = cv2.GC_BGD
    if not np.any(seeds == cv2.GC_BGD):
        seeds[0, 0] = cv2.GC_BGD

    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # A fixed +-1 dither keeps GrabCut's colour GMMs away from zero variance: on flat regions
    # (studio backdrops, synthetic images) singular covariances make its graph cut crawl.
    dither = np.random.default_rng(0).integers(-1, 2, work.shape)
    bgr = np.ascontiguousarray(np.clip(work.astype(np.int16) + dither, 0, 255).astype(np.uint8)[..., ::-1])
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's RNG: make the matte reproducible
    cv2.grabCut(bgr, seeds, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)

    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(fg)
    if n > 1:
        face_label = labels[int(np.clip(centre[1], 0, size - 1)), int(np.clip(centre[0], 0, size - 1))]
        if face_label == 0:
            face_label = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
        fg = (labels == face_label).astype(np.uint8)
    # Fill holes: background is what the border can reach through non-foreground pixels.
    flood = np.pad(1 - fg, 1, constant_values=1)
    ff_mask = np.zeros((size + 4, size + 4), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 2)
    fg = (flood[1:-1, 1:-1] != 2).astype(np.float32)
    if size != full:
        fg = cv2.resize(fg, (full, full), interpolation=cv2.INTER_LINEAR)
    return (fg > 0.5).astype(np.uint8) * 255


def composite_white(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rgb * m + (1 - m) * white, as the release does (binary masks make it exact in uint8)."""
    m = mask.astype(np.float32)[..., None] / 255.0
    out = crop.astype(np.float32) * m + 255.0 * (1.0 - m)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def top_edge_contact(mask: np.ndarray, keypoints_crop: np.ndarray) -> int:
    """Pixels of the crop's top row that the matte (alpha > 127) covers between the ears (the eye span widened
    by one eye distance each side): > 0 means the head's matte runs on above the frame.

    The release's framing is fixed by the face, so voluminous hair, a hat or raised hands can reach past it;
    the views stage then invents what was cut. Shoulders and background at the sides do not count.
    """
    eyes = np.asarray(keypoints_crop, np.float64)[:2]
    d = float(np.linalg.norm(eyes[1] - eyes[0]))
    width = mask.shape[1]
    x0 = int(np.clip(np.floor(eyes[:, 0].min() - d), 0, width - 1))
    x1 = int(np.clip(np.ceil(eyes[:, 0].max() + d), 0, width - 1))
    return int((np.asarray(mask)[0, x0 : x1 + 1] > 127).sum())


def top_edge_warning(contact_px: int, width: int) -> str:
    """face.json / report.json warning for a matte that reaches the top edge ('' when it does not)."""
    if contact_px <= 0:
        return ""
    return (
        f"the matte reaches the crop's top edge across {contact_px} px of {width} between the ears: hair, headwear "
        "or something touching the head continues above the frame (the model's framing is set by the face and cuts "
        "it), so the generated views guess what lies above it: check the top of the head"
    )
