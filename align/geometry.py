"""The release's crop geometry (SPINMEROUND.md §2.2 step 3): FFHQ quad, pose/scale refinement, final crop.

All points are image pixels (x right, y down, pixel centres on integers, as OpenCV). The quad is
kept as its centre c and half-axes x, y: corners c-x-y, c-x+y, c+x+y, c+x-y map onto the
crop's (0, 0), (0, 511), (511, 511), (511, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from align.errors import ExtremePoseError, FaceTooSmallError
from align.template import OBJECT_CENTRE, TEMPLATE_FFHQ_HALF_SIZE, PoseFit


@dataclass(frozen=True)
class Quad:
    """An oriented square in the source image: centre c, half-axes x (rightwards) and y (downwards)."""

    c: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def corners(self) -> np.ndarray:
        """(4, 2) float32 corners in the release's order (top-left, bottom-left, bottom-right, top-right)."""
        c, x, y = self.c, self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]).astype(np.float32)

    @property
    def side(self) -> float:
        """The shorter side length in source pixels (the release's `orig_size`)."""
        q = self.corners
        return float(min(np.linalg.norm(q[1] - q[0]), np.linalg.norm(q[2] - q[1])))


def rot90(v: np.ndarray) -> np.ndarray:
    """R90(v) = (-v_y, v_x): the release's `np.flipud(v) * [-1, 1]`."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def ffhq_quad(keypoints: np.ndarray) -> Quad:
    """FFHQ quad from the 5 keypoints (left eye, right eye, nose, left mouth, right mouth)."""
    kps = np.asarray(keypoints, np.float64)
    left_eye, right_eye, left_mouth, right_mouth = kps[0], kps[1], kps[3], kps[4]
    e2e = right_eye - left_eye
    eye_avg = 0.5 * (left_eye + right_eye)
    mouth_avg = 0.5 * (left_mouth + right_mouth)
    e2m = mouth_avg - eye_avg
    x = e2e - rot90(e2m)
    x = x / np.hypot(*x)
    x = x * max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    y = rot90(x)
    c = eye_avg + 0.1 * e2m
    return Quad(c=c, x=x, y=y)


@dataclass(frozen=True)
class Refinement:
    """PanoHead's one refinement step: scale s and normalised offset t of the head centre."""

    quad: Quad
    s: float
    t: tuple[float, float]


def refine_quad(quad: Quad, fit: PoseFit) -> Refinement:
    """Re-centre the quad on the projected head centre and rescale it to the fitted head size.

    The release measures both with 3DDFA on the 512 px quad crop; here they come from the
    weak-perspective template fit in source pixels (same quantities, no resampling):
    s = fitted size / size of the template's own FFHQ quad, t = head centre in the quad's
    normalised frame (x right, y up). A frontal template face gives s = 1, t = (0, 0).
    """
    half = float(np.hypot(*quad.x))
    s = fit.scale * TEMPLATE_FFHQ_HALF_SIZE / half
    p = fit.project(OBJECT_CENTRE[None])[0]
    t_x = float(np.dot(p - quad.c, quad.x) / half**2)
    t_y = -float(np.dot(p - quad.c, quad.y) / half**2)
    c = quad.c + quad.x * t_x - quad.y * t_y
    return Refinement(quad=Quad(c=c, x=quad.x * s, y=quad.y * s), s=s, t=(t_x, t_y))


@dataclass(frozen=True)
class PoseLimits:
    """The release's rejection thresholds (recrop_images.panohead_crop), plus its minimum quad side."""

    scale: tuple[float, float] = (0.7, 1.3)
    max_yaw_deg: float = 90.0
    max_pitch_deg: float = 80.0
    max_roll_deg: float = 50.0
    max_offset: float = 1.0
    min_quad_side_px: float = 128.0
    # Refuse when more of the final quad than this lies outside the photo: the release fills it with a
    # blurred reflection, which the model takes for a head (a cut chin or crown comes back as a smear).
    max_outside_fraction: float = 0.10


def check_refinement(ref: Refinement, fit: PoseFit, limits: PoseLimits) -> None:
    """Raise the documented error when the release would have rejected this face (size first: a tiny face's
    pose is noise, and "too small" is the fix the user needs)."""
    check_size(ref.quad, limits)
    yaw, pitch, roll = fit.angles_deg
    for name, value, limit in (
        ("yaw", yaw, limits.max_yaw_deg),
        ("pitch", pitch, limits.max_pitch_deg),
        ("roll", roll, limits.max_roll_deg),
    ):
        if abs(value) > limit:
            raise ExtremePoseError(
                f"extreme head pose: |{name}| = {abs(value):.1f} deg exceeds the {limit:.0f} deg limit; "
                "use a photo where the face looks closer to the camera"
            )
    lo, hi = limits.scale
    if not lo <= ref.s <= hi:
        raise ExtremePoseError(
            f"the face's proportions do not fit the crop (scale refinement s = {ref.s:.2f}, allowed "
            f"[{lo}, {hi}]); this happens with strong pose, occlusion or a wrong detection: try another photo"
        )
    if max(abs(ref.t[0]), abs(ref.t[1])) > limits.max_offset:
        raise ExtremePoseError(
            f"the head centre falls outside the face crop (offset {ref.t[0]:.2f}, {ref.t[1]:.2f}; limit "
            f"{limits.max_offset}); try a more frontal photo"
        )


def check_size(quad: Quad, limits: PoseLimits) -> None:
    """FaceTooSmallError naming the measured crop size and the minimum (one decimal: 127.6 is not "128")."""
    side = quad.side
    if side < limits.min_quad_side_px:
        raise FaceTooSmallError(
            f"face too small: its crop spans {side:.1f} px in the photo, the minimum is "
            f"{limits.min_quad_side_px:.0f} px (about {side / 4:.0f} px between the eyes, "
            f"{limits.min_quad_side_px / 4:.0f} needed); use a higher-resolution photo or one taken closer"
        )


def _clip(poly: np.ndarray, axis: int, bound: float, keep_below: bool) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon on one side of the line coord[axis] = bound."""
    out: list[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina = (a[axis] <= bound) if keep_below else (a[axis] >= bound)
        inb = (b[axis] <= bound) if keep_below else (b[axis] >= bound)
        if ina:
            out.append(a)
        if ina != inb:
            t = (bound - a[axis]) / (b[axis] - a[axis])
            out.append(a + t * (b - a))
    return np.array(out, np.float64).reshape(-1, 2)


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def outside_fraction(quad: Quad, width: int, height: int) -> tuple[float, dict[str, float]]:
    """Fraction of the quad's area outside a width x height photo, and the fraction beyond each side."""
    poly = quad.corners.astype(np.float64)
    total = _area(poly)
    lo_x, lo_y, hi_x, hi_y = -0.5, -0.5, width - 0.5, height - 0.5
    inside = poly
    for axis, bound, below in ((0, lo_x, False), (0, hi_x, True), (1, lo_y, False), (1, hi_y, True)):
        inside = _clip(inside, axis, bound, below)
    beyond = {
        "left": _area(_clip(poly, 0, lo_x, True)),
        "right": _area(_clip(poly, 0, hi_x, False)),
        "top": _area(_clip(poly, 1, lo_y, True)),
        "bottom": _area(_clip(poly, 1, hi_y, False)),
    }
    total = max(total, 1e-9)
    return 1.0 - _area(inside) / total, {k: v / total for k, v in beyond.items()}


def check_inside(quad: Quad, width: int, height: int, limits: PoseLimits) -> float:
    """FaceCutError when more than limits.max_outside_fraction of the quad lies outside the photo; the fraction."""
    from align.errors import FaceCutError

    frac, sides = outside_fraction(quad, width, height)
    if frac > limits.max_outside_fraction:
        cut = [f"{side} {part:.0%}" for side, part in sorted(sides.items(), key=lambda kv: -kv[1]) if part >= 0.005]
        raise FaceCutError(
            f"face cut by the photo edge: {frac:.0%} of the head's crop lies outside the photo "
            f"({', '.join(cut)}; at most {limits.max_outside_fraction:.0%} is allowed); use a photo with the whole "
            "head and some margin around it"
        )
    return frac


def quad_matrix(quad: Quad, size: int, left: int = 0, top: int = 0) -> np.ndarray:
    """Affine (2, 3) mapping the quad's first three corners onto a size-px square at (left, top)."""
    import cv2

    n = size - 1
    bound = np.array([[left, top], [left, top + n], [left + n, top + n]], dtype=np.float32)
    return cv2.getAffineTransform(quad.corners[:3], bound).astype(np.float64)


@dataclass(frozen=True)
class CropSpec:
    """crop_final's parameters as the demo calls it (padd=True): 512 face square, expanded to 563 px."""

    size: int = 512
    top_expand: float = 0.1
    left_expand: float = 0.05
    right_expand: float = 0.05
    bottom_expand: float = 0.0
    upsample: int = 2
    out_size: int = 512

    @property
    def padded_size(self) -> tuple[int, int]:
        """(width, height) of the padded crop: int(512 * 1.1) = 563 for both with the defaults."""
        w = int(self.size * (1 + self.left_expand + self.right_expand))
        h = int(self.size * (1 + self.top_expand + self.bottom_expand))
        return w, h


def crop_final(image: np.ndarray, quad: Quad, spec: CropSpec = CropSpec()) -> tuple[np.ndarray, np.ndarray]:
    """The release's crop_final + the demo's resize: returns (out_size² RGB uint8, source->crop affine).

    Warp at 2x with Lanczos-4 and reflected borders, INTER_AREA down to 563², blend the reflected
    border with a box-blurred copy where the quad leaves the image, then bilinear to 512². The
    returned matrix accounts for every resampling step (pixel centres on integers).
    """
    import cv2

    crop_w, crop_h = spec.padded_size
    mat = quad_matrix(quad, spec.size, int(spec.size * spec.left_expand), int(spec.size * spec.top_expand))
    big = cv2.warpAffine(
        image,
        spec.upsample * mat,
        (crop_w * spec.upsample, crop_h * spec.upsample),
        flags=cv2.INTER_LANCZOS4,
        borderMode=cv2.BORDER_REFLECT,
    )
    crop = cv2.resize(big, (crop_w, crop_h), interpolation=cv2.INTER_AREA)
    inside = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), mat, (crop_w, crop_h))
    if inside.mean() < 255:
        n = spec.size - 1
        mask_kernel = int(n * 0.02) * 2 + 1
        blur_kernel = int(n * 0.03) * 2 + 1
        blend = cv2.blur(inside.astype(np.float32), (mask_kernel, mask_kernel))[..., None] / 255.0
        blurred = cv2.blur(crop, (blur_kernel, blur_kernel))
        crop = (crop * blend + blurred * (1.0 - blend)).astype(np.uint8)
    out = cv2.resize(crop, (spec.out_size, spec.out_size), interpolation=cv2.INTER_LINEAR)
    # Pixel-centre bookkeeping: area-downsampling by k maps u -> (u + 0.5) / k - 0.5, and the
    # bilinear resize maps u -> (u + 0.5) * out / in - 0.5.
    k = spec.upsample
    to_padded = mat.copy()
    to_padded[:, 2] = (k * mat[:, 2] + 0.5) / k - 0.5
    sx, sy = spec.out_size / crop_w, spec.out_size / crop_h
    final = to_padded * np.array([[sx], [sy]])
    final[:, 2] += np.array([0.5 * sx - 0.5, 0.5 * sy - 0.5])
    return out, final


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a (2, 3) affine."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]
