"""A small z-buffer rasteriser and bilinear texture sampler in numpy (no display, no OpenGL).

Used for the turntable preview, for baking sample textures in UV space, and by the tests that
compare how LODs look. Each triangle's pixel bounding box is enumerated in one vectorised pass
(chunked to bound memory); the nearest fragment per pixel wins.
"""

from __future__ import annotations

import numpy as np


def rasterize(
    xy: np.ndarray,
    depth: np.ndarray,
    faces: np.ndarray,
    height: int,
    width: int,
    max_candidates: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Visible face per pixel and its barycentric coordinates.

    xy: (N, 2) vertex positions in pixels (x right, y down; pixel (i, j) has its centre at
    (j + 0.5, i + 0.5)); depth: (N,) smaller = nearer (interpolated linearly: orthographic views
    and flat layouts). Returns face_id (H, W) int64 with -1 where empty, and bary (H, W, 3).
    """
    xy = np.asarray(xy, np.float64)
    depth = np.asarray(depth, np.float64)
    faces = np.asarray(faces, np.int64)
    face_id = np.full(height * width, -1, np.int64)
    bary = np.zeros((height * width, 3), np.float64)
    zbuf = np.full(height * width, np.inf)
    if len(faces) == 0:
        return face_id.reshape(height, width), bary.reshape(height, width, 3).astype(np.float32)

    tri = xy[faces]  # (M, 3, 2)
    x0 = np.clip(np.ceil(tri[..., 0].min(1) - 0.5), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(tri[..., 0].max(1) - 0.5), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(tri[..., 1].min(1) - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(tri[..., 1].max(1) - 0.5), -1, height - 1).astype(np.int64)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    count = np.where(np.abs(area) > 1e-12, w * h, 0)
    live = np.flatnonzero(count > 0)
    if live.size == 0:
        return face_id.reshape(height, width), bary.reshape(height, width, 3).astype(np.float32)

    # Barycentrics and depth are affine in the pixel position: l = A x + B y + C per face.
    #   l0 = cross(b - p, c - p) / area,  l1 = cross(c - p, a - p) / area,  l2 = 1 - l0 - l1
    #   z  = z2 + l0 (z0 - z2) + l1 (z1 - z2)
    inv = 1.0 / np.where(np.abs(area) > 1e-12, area, 1.0)
    zf = depth[faces]
    coef = np.empty((len(faces), 9))
    coef[:, 0] = (b[:, 1] - c[:, 1]) * inv
    coef[:, 1] = (c[:, 0] - b[:, 0]) * inv
    coef[:, 2] = (b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0]) * inv
    coef[:, 3] = (c[:, 1] - a[:, 1]) * inv
    coef[:, 4] = (a[:, 0] - c[:, 0]) * inv
    coef[:, 5] = (c[:, 0] * a[:, 1] - c[:, 1] * a[:, 0]) * inv
    dz0, dz1 = zf[:, 0] - zf[:, 2], zf[:, 1] - zf[:, 2]
    coef[:, 6] = coef[:, 0] * dz0 + coef[:, 3] * dz1
    coef[:, 7] = coef[:, 1] * dz0 + coef[:, 4] * dz1
    coef[:, 8] = zf[:, 2] + coef[:, 2] * dz0 + coef[:, 5] * dz1

    csum = np.cumsum(count[live])
    start = 0
    while start < live.size:
        base = csum[start - 1] if start > 0 else 0
        stop = max(int(np.searchsorted(csum, base + max_candidates, side="right")), start + 1)
        f = live[start:stop]
        n = count[f]
        fo = np.repeat(f, n)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        wo = w[fo]
        px = x0[fo] + k % wo
        py = y0[fo] + k // wo
        cx, cy = px + 0.5, py + 0.5
        co = coef[fo]
        l0 = co[:, 0] * cx + co[:, 1] * cy + co[:, 2]
        l1 = co[:, 3] * cx + co[:, 4] * cy + co[:, 5]
        l2 = 1.0 - l0 - l1
        eps = -1e-9
        inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
        if inside.any():
            fid = fo[inside]
            z = co[inside, 6] * cx[inside] + co[inside, 7] * cy[inside] + co[inside, 8]
            pix = py[inside] * width + px[inside]
            lam = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)
            order = np.lexsort((z, pix))
            pix, z, fid, lam = pix[order], z[order], fid[order], lam[order]
            first = np.ones(pix.size, bool)
            first[1:] = pix[1:] != pix[:-1]
            pix, z, fid, lam = pix[first], z[first], fid[first], lam[first]
            nearer = z < zbuf[pix]
            pix = pix[nearer]
            zbuf[pix] = z[nearer]
            face_id[pix] = fid[nearer]
            bary[pix] = lam[nearer]
        start = stop
    return face_id.reshape(height, width), bary.reshape(height, width, 3).astype(np.float32)


def uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """HeadMesh UVs (v up) -> pixel positions in a size x size image (x right, y down; row 0 is v = 1)."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], axis=1)


def texel_uv(size: int) -> np.ndarray:
    """UV (v up) of every texel centre, row-major (size * size, 2)."""
    t = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(t, 1.0 - t)
    return np.stack([u.reshape(-1), v.reshape(-1)], axis=1)


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (H, W, C) image at UVs in the HeadMesh convention (v up); values in [0, 1].

    Texel (i, j) has its centre at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H; lookups clamp at the edges.
    """
    img = np.asarray(image)
    scale = 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[:, :, None]
    height, width = img.shape[:2]
    uv = np.asarray(uv, np.float64)
    x = np.clip(uv[..., 0] * width - 0.5, 0.0, width - 1.0)
    y = np.clip((1.0 - uv[..., 1]) * height - 0.5, 0.0, height - 1.0)
    j0 = np.minimum(np.floor(x).astype(np.int64), width - 1)
    i0 = np.minimum(np.floor(y).astype(np.int64), height - 1)
    j1 = np.minimum(j0 + 1, width - 1)
    i1 = np.minimum(i0 + 1, height - 1)
    fx = (x - j0)[..., None].astype(np.float32)
    fy = (y - i0)[..., None].astype(np.float32)
    top = img[i0, j0] * (1 - fx) + img[i0, j1] * fx
    bottom = img[i1, j0] * (1 - fx) + img[i1, j1] * fx
    return top * (1 - fy) + bottom * fy


def dilate_texture(image: np.ndarray, filled: np.ndarray, iterations: int = 8) -> np.ndarray:
    """Edge padding: grow each chart's colours into empty texels so bilinear/mip lookups at seams stay clean."""
    img = np.asarray(image, np.float32).copy()
    mask = np.asarray(filled, bool).copy()
    for _ in range(iterations):
        if mask.all():
            break
        acc = np.zeros_like(img)
        cnt = np.zeros(mask.shape, np.float32)
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            shifted = np.roll(np.roll(img * mask[..., None], di, axis=0), dj, axis=1)
            m = np.roll(np.roll(mask, di, axis=0), dj, axis=1)
            acc += shifted
            cnt += m
        grow = (~mask) & (cnt > 0)
        img[grow] = acc[grow] / cnt[grow][:, None]
        mask |= grow
    return img
