"""Which views are generated together, and what is kept of the decoded images (masks, normals).

Passes (SPINMEROUND.md §2.6). The release denoises at most 16 frames in one joint pass with one
conditioning view (the input). The model was trained with 0, 1 or 3 conditioning views, so larger
camera lists are filled in rounds:

1. the eye-level ring (elevation 0) with the input as the only conditioning view, as the release's
   "360" mode does (evenly subsampled if it does not fit one pass);
2. every later pass conditions on the input plus the two already-generated views nearest to the
   pass's targets (3 conditioning views; without an input, identity-only, the 3 nearest generated
   views). Nearest to a set of targets means: together with the input, the least total angle from
   each target to its closest conditioning view (coverage_cost). The remaining targets are sorted
   by azimuth and cut into the fewest passes that fit, in contiguous sectors, so that each pass's
   conditioning views are close to all of its targets.

Passes of one round condition only on views generated in earlier rounds: their order does not matter,
and no view is more than a few generations away from the photo (chains of generated-from-generated
views would drift from the input's identity). This schedule is ours: the authors' multi-stage
schedule was not released (§9.1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smr_core.cameras import ViewCamera
from smr_core.errors import InputError

MAX_FRAMES = 16  # the release's largest joint pass (gradio slider 15 + the input)
LATER_CONDITIONING = 3  # conditioning views per later pass, as the model was trained (0, 1 or 3)

# A pixel is background when all three channels are >= this value (<= 15 levels from white). The model's
# inputs are composited on pure white (255) and it reproduces that background; the VAE round trip leaves
# flat white within a few levels, and skin, hair and clothes are rarely above 240 in all three channels.
WHITE_THRESHOLD = 240
NORMAL_MIN_LENGTH = 1e-3


@dataclass(frozen=True)
class ViewPass:
    """One joint denoising run: clamped conditioning views first, then targets (camera indices)."""

    conditioning: tuple[int, ...]
    targets: tuple[int, ...]
    round: int = 0  # passes of one round condition only on views of earlier rounds


    @property
    def frames(self) -> tuple[int, ...]:
        return self.conditioning + self.targets


def _angles_deg(cameras: Sequence[ViewCamera], rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
    a = np.array([cameras[i].direction() for i in rows]).reshape(-1, 3)
    b = np.array([cameras[i].direction() for i in cols]).reshape(-1, 3)
    return np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0)))


def coverage_cost(cameras: Sequence[ViewCamera], targets: Sequence[int], conditioning: Sequence[int]) -> float:
    """Sum over targets of the angle (degrees) to the nearest conditioning view: what the choice minimises."""
    if not conditioning:
        return math.inf
    return float(_angles_deg(cameras, targets, conditioning).min(axis=1).sum())


def _nearest_generated(
    cameras: Sequence[ViewCamera], pool: Sequence[int], fixed: Sequence[int], targets: Sequence[int], k: int
) -> list[int]:
    """The k views of pool that, with the fixed ones (the input), are nearest to the targets.

    "Nearest" to a set of targets = least coverage_cost, searched exactly over the 12 pool views closest to
    any target (ties: lower indices), so a pass spread around the head gets spread conditioning views.
    """
    if k == 0:
        return []
    pool = sorted(pool)
    to_pool = _angles_deg(cameras, targets, pool)
    candidates = [pool[j] for j in np.argsort(to_pool.min(axis=0), kind="stable")[: max(k, 12)]]
    base = _angles_deg(cameras, targets, fixed).min(axis=1) if fixed else np.full(len(targets), np.inf)
    to_cand = _angles_deg(cameras, targets, candidates)
    best, best_cost = None, math.inf
    for combo in itertools.combinations(range(len(candidates)), k):
        cost = float(np.minimum(base, to_cand[:, combo].min(axis=1)).sum())
        if cost < best_cost - 1e-9:
            best, best_cost = combo, cost
    assert best is not None
    return sorted(candidates[j] for j in best)


def _sector_chunks(cameras: Sequence[ViewCamera], indices: Sequence[int], capacity: int) -> list[list[int]]:
    """indices sorted by (azimuth, elevation), cut into the fewest contiguous chunks of <= capacity views."""
    ordered = sorted(indices, key=lambda i: (cameras[i].azimuth_deg % 360.0, cameras[i].elevation_deg, i))
    n_chunks = math.ceil(len(ordered) / capacity)
    bounds = np.linspace(0, len(ordered), n_chunks + 1).round().astype(int)
    return [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _extra_conditioning(available: int, has_input: bool) -> int:
    """Generated views to condition on, keeping the total at 1 or 3 (with input) / 0, 1 or 3 (without)."""
    if has_input:
        return LATER_CONDITIONING - 1 if available >= LATER_CONDITIONING - 1 else 0
    if available >= LATER_CONDITIONING:
        return LATER_CONDITIONING
    return 1 if available >= 1 else 0


def plan_passes(cameras: Sequence[ViewCamera], max_frames: int = MAX_FRAMES) -> list[ViewPass]:
    """Every non-input camera is a target of exactly one pass; each pass has at most max_frames frames."""
    inputs = [i for i, c in enumerate(cameras) if c.is_input]
    if len(inputs) > 1:
        raise InputError(f"at most one camera can be the input view, got {len(inputs)} (indices {inputs})")
    if max_frames < 1 + len(inputs):
        raise InputError(f"max_frames={max_frames} is too small: a pass needs its input view plus one target")
    input_cond = tuple(inputs)
    targets = [i for i, c in enumerate(cameras) if not c.is_input]
    passes: list[ViewPass] = []
    generated: list[int] = []

    ring = [i for i in targets if cameras[i].elevation_deg == 0.0]
    capacity = max_frames - len(input_cond)
    if ring:
        if len(ring) > capacity:
            ring = sorted(ring, key=lambda i: (cameras[i].azimuth_deg % 360.0, i))
            keep = np.linspace(0, len(ring), capacity, endpoint=False).astype(int)
            ring = [ring[k] for k in keep]
        passes.append(ViewPass(input_cond, tuple(ring), 0))
        generated += ring

    remaining = [i for i in targets if i not in set(generated)]
    round_index = len(passes)
    while remaining:
        extra = _extra_conditioning(len(generated), bool(input_cond))
        capacity = max_frames - len(input_cond) - extra
        if capacity < 1:
            raise InputError(
                f"max_frames={max_frames} leaves no room for targets next to {len(input_cond) + extra} conditioning "
                f"views; use max_frames >= {len(input_cond) + extra + 1} (the release uses up to {MAX_FRAMES})"
            )
        round_targets = []
        for chunk in _sector_chunks(cameras, remaining, capacity):
            near = _nearest_generated(cameras, generated, input_cond, chunk, extra)
            passes.append(ViewPass(input_cond + tuple(near), tuple(chunk), round_index))
            round_targets += chunk
        generated += round_targets
        round_index += 1
        remaining = [i for i in remaining if i not in set(round_targets)]
    return passes


def white_background_mask(rgb: np.ndarray, threshold: int = WHITE_THRESHOLD) -> np.ndarray:
    """Foreground of a generated view on white: not-white pixels, largest connected region, holes filled.

    Holes are filled because eye whites, teeth and highlights inside the head can pass the threshold;
    specks outside the largest region are VAE noise on the background.
    """
    from scipy import ndimage

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"masks are computed from (H, W, 3) uint8 images, got {rgb.shape} {rgb.dtype}")
    foreground = ~np.all(rgb >= threshold, axis=2)
    labels, n = ndimage.label(foreground)
    if n == 0:
        return foreground
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(largest)


def unit_normals(normal: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Decoded normal map in [-1, 1] -> unit vectors inside the mask, 0 outside (stored as grey 128)."""
    n = np.clip(np.asarray(normal, np.float32), -1.0, 1.0)
    length = np.linalg.norm(n, axis=2, keepdims=True)
    keep = np.asarray(mask, bool)[..., None] & (length > NORMAL_MIN_LENGTH)
    return np.where(keep, n / np.maximum(length, NORMAL_MIN_LENGTH), 0.0).astype(np.float32)
