"""Depth no anchor of a view placed, from the other views' normals: a normal-matching sweep along each ray.

Normal integration fixes a view's depth only up to one offset per patch that depth steps cut off on
every side. Two such patches matter on heads:
* the floor of the pocket behind an ear standing far out, framed by the ear's rim and the hair's edge:
  the hull's lid (which bridges the pocket) holds it 15-20 mm in front of the truth;
* a thin ear plate seen from the side, joined to the skull only along its short attachment: integrated
  from there it lands 5-15 mm behind the true ear, and fusion carves the ear away (bench/RECON_EVAL.md).
Other views see the same surface, and a surface point has one world normal whichever view sees it, so its
depth is where the views' normals agree.

For a pixel p of view A with integrated depth d_p, observed world normal n_A(p) and ray q_p, each
offset t of a sweep in front of and behind it gives a point, seen by every other view B at pixel pi_B:

    X_p(t)     = C_A + R_A (d_p + t) q_p                  (-max_front <= t <= max_offset)
    c_B(p, t)  = 1 - <n_A(p), n_B(pi_B(X_p(t)))>     where X faces B (<n_A, unit(C_B - X)> > min_facing)
    c(p, t)    = mean of the k smallest c_B(p, t)     (k views that see it; occluded views disagree)
    C(p, t)    = mean of c(p', t) over a window of pixels p' around p        (one pixel is too noisy)
    t*_p       = argmin_t C(p, t)

X must stay inside every view's silhouette (the visual hull contains the head). An offset is accepted
where it is large enough to matter (|t*| >= min_offset), the normals match well there (C(p, t*) <=
max_cost), clearly better than where integration put the pixel (C(p, 0) - C(p, t*) > min_gain), and
the pixel belongs to a patch of accepted pixels large enough not to be a sliver along an occluding rim
and no larger than a pocket or an ear can be: a view whose normal map came out turned as a whole
by a few degrees otherwise "matches" better behind a whole smooth side of the head (fsaverage's back).
Pixels whose best match lies where integration put them (|t*| < min_offset, C(p, t*) <= max_cost) are
confirmed. A view with accepted offsets is integrated again (recon.depth) with anchors at both: the
moved depths carry the whole floating patch with them, and the confirmed ones keep what is right
in place (without them the second integration dragged a thin ear, joined to the patch by the first
one's smoothing, back with the pocket's floor).

Measured on the evaluation heads (16 views, as generated; bench/RECON_EVAL.md). Searching behind only
(session 8) opened most of eli's pocket (F@5 0.974 -> 0.992) but moved normal consistency by up to +-0.002
elsewhere, so it was opt-in. Searching 16 mm in front as well (session 12) brings thin ear plates back
(nia: ears NC 0.71 -> 0.88, whole head 0.9785 -> 0.9852) and raised NC on most heads, so it is on by default
(`recon --no-open-pockets` turns it off). The gain asked of a move is 0.003 (about 4.5 degrees) since session 16:
a pocket whose floor runs parallel to the hull's lid (the skull behind an ear, under hair that steps out behind
it: uri) matches the other views' normals only a little better on the floor than on the lid (0.0020 against
0.0050 at the median), so at 0.005 the view kept its lid 14 mm in front of the floor and the fused surface
crumpled there (uri, 16 views at 256 px: NC 0.9773 -> 0.9806; the held-out heads gained little: RECON_EVAL.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.depth import camera_rays


@dataclass
class SweepConfig:
    """Normal-matching sweep settings; lengths in ViewSet units (0.4 m each by default)."""

    enabled: bool = True  # recon --no-open-pockets turns it off; bench/RECON_EVAL.md, sessions 8 and 12
    max_offset: float = 0.1  # 40 mm behind the integrated depth
    max_front: float = 0.04  # 16 mm in front of it: an ear plate integration left behind the ear
    step: float = 0.005  # 2 mm
    min_offset: float = 0.015  # 6 mm: below this integration is trusted
    min_gain: float = 0.003  # in 1 - cos: the matched normals agree ~4.5 degrees better than at t = 0
    max_cost: float = 0.01  # C(p, t*) in 1 - cos: the matched normals agree within ~8 degrees
    best_views: int = 2
    min_facing: float = 0.2
    window: int = 7  # pixels a side
    stride: int = 2  # the sweep runs on every stride-th pixel (anchors need not be dense)
    min_patch: int = 32  # accepted lattice pixels a patch needs (at stride 2: 128 pixels)
    max_patch_area: float = 0.02  # units^2 (32 cm^2 at 0.4 m/unit): a pocket is no larger than the ear over it
    anchor_weight: float = 1.0
    stay_anchors: bool = True  # also anchor, at their integrated depth, pixels whose best match is there
    turn_normals: bool = True  # first turn the view's normals onto what the other views see (a tilted map)
    max_turn_deg: float = 10.0  # like recon.normal_align: a larger turn is a wrong camera, not a tilt


def _box_mean(values: np.ndarray, size: int) -> np.ndarray:
    """Mean of the finite entries of each (K, H, W) slice over a size x size window (nan where none)."""
    from scipy import ndimage

    finite = np.isfinite(values)
    total = ndimage.uniform_filter(np.where(finite, values, 0.0), size=(1, size, size), mode="constant")
    count = ndimage.uniform_filter(finite.astype(np.float64), size=(1, size, size), mode="constant")
    return np.where(count > 0.25, total / np.maximum(count, 1e-12), np.nan)


@dataclass
class Sweep:
    """One view's sweep on its lattice pixels (nan elsewhere): the best offset t*, C(p, t*) and C(p, 0)."""

    offset: np.ndarray
    cost: np.ndarray
    cost_at_zero: np.ndarray
    area: np.ndarray  # the surface area each lattice pixel stands for, at its depth (units^2)


def _seen(
    X: torch.Tensor, n_a: torch.Tensor, cameras: Cameras, normals: torch.Tensor, masks: torch.Tensor,
    others: torch.Tensor, min_facing: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For points X with normals n_a: per other view, 1 - <n_a, n_B> at X's pixel (inf where X does not face
    B or falls outside its mask), the normals n_B (V-1, N, 3), and whether X lies inside every silhouette."""
    V, H, W = masks.shape
    uv, delta = cameras.project(X.to(cameras.c2w.dtype))
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    in_frame = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (delta > 0)
    uu, vv = u.clamp(0, W - 1), v.clamp(0, H - 1)
    views = torch.arange(V, device=X.device)[:, None]
    in_mask = in_frame & masks[views, vv, uu]
    in_hull = ~(in_frame & ~in_mask).any(0)  # outside some silhouette: outside the head
    n_b = normals[views, vv, uu].double()[others]
    to_b = cameras.c2w.double()[others, :3, 3][:, None, :] - X[None]
    facing = (to_b * n_a[None]).sum(-1) > min_facing * to_b.norm(dim=-1)
    c = 1.0 - (n_b * n_a[None]).sum(-1)
    return torch.where(facing & in_mask[others], c, torch.full_like(c, np.inf)), n_b, in_hull


def _turn(
    X: torch.Tensor, n_a: torch.Tensor, cameras: Cameras, normals: torch.Tensor, masks: torch.Tensor,
    others: torch.Tensor, cfg: SweepConfig,
) -> torch.Tensor:
    """The rotation R turning the view's normals n_a onto the normals the best-matching other view sees at
    the integrated points X (Kabsch, as recon.normal_align does against the fused shape later): a normal
    map turned as a whole by a few degrees would otherwise match better behind the surface than on it.
    Matches more than 10 degrees off after the first fit are dropped; identity if the turn is implausible."""
    from recon.normal_align import kabsch, rotation_angle_deg

    c, n_b, _ = _seen(X, n_a, cameras, normals, masks, others, cfg.min_facing)
    best = torch.argmin(c, dim=0)
    found = torch.isfinite(c.min(0).values)
    m = n_b[best, torch.arange(len(best), device=best.device)]
    eye = torch.eye(3, dtype=n_a.dtype, device=n_a.device)
    if int(found.sum()) < 50:
        return eye
    w = found.double()
    R = eye
    for _ in range(3):
        R = kabsch(n_a, m, w)
        residual = torch.rad2deg(torch.arccos(((n_a @ R.T) * m).sum(-1).clamp(-1.0, 1.0)))
        w = (found & (residual < 10.0)).double()
    return R if rotation_angle_deg(R) <= cfg.max_turn_deg else eye


def sweep_costs(
    view: int,
    cameras: Cameras,
    normals: torch.Tensor,
    masks: np.ndarray,
    depth: np.ndarray,
    cfg: SweepConfig,
) -> Sweep:
    """The sweep of the module docstring for `view`'s lattice pixels, from the views' world normals.

    `normals` (V, H, W, 3) and `masks` (V, H, W) are at the cameras' resolution; `depth` is the view's
    integrated depth along its axis (inf off the object).
    """
    H, W = depth.shape
    dev = cameras.device
    s0, st = cfg.stride // 2, cfg.stride
    lattice = np.zeros((H, W), bool)
    lattice[s0::st, s0::st] = True
    pix = lattice & masks[view] & np.isfinite(depth)
    empty = np.full((H, W), np.nan)
    if not pix.any():
        return Sweep(empty, empty.copy(), empty.copy(), empty.copy())
    rows, cols = np.nonzero(pix)
    fx, fy, cx, cy = (float(t[view]) for t in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
    q = torch.tensor(camera_rays(H, W, fx, fy, cx, cy)[pix], dtype=torch.float64, device=dev)
    c2w = cameras.c2w.double()
    origin = c2w[view, :3, 3]
    ray = q @ c2w[view, :3, :3].T  # world direction per unit depth along the view axis
    d0 = torch.tensor(depth[pix], dtype=torch.float64, device=dev)
    n_a = normals[view][torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)].double()
    others = torch.tensor([b for b in range(len(cameras)) if b != view], device=dev)
    masks_t = torch.as_tensor(masks, device=dev)
    if cfg.turn_normals:
        n_a = n_a @ _turn(origin + d0[:, None] * ray, n_a, cameras, normals, masks_t, others, cfg).T
    zero = int(round(cfg.max_front / cfg.step))  # offsets[zero] == 0: where integration put the pixel
    offsets = cfg.step * np.arange(-zero, int(round(cfg.max_offset / cfg.step)) + 1)
    k = min(cfg.best_views, len(others))
    on = pix[s0::st, s0::st]  # the lattice's pixels, in the same (row-major) order as rows, cols
    cost = np.full((len(offsets),) + on.shape, np.nan)
    for i, t in enumerate(offsets):
        X = origin + (d0 + t)[:, None] * ray
        c, _, in_hull = _seen(X, n_a, cameras, normals, masks_t, others, cfg.min_facing)
        best = torch.topk(c, k, dim=0, largest=False).values.mean(0)
        best = torch.where(torch.isfinite(best) & in_hull, best, torch.full_like(best, np.nan))
        cost[i][on] = best.cpu().numpy()
    # C(p, t): the window on the lattice, window / stride lattice pixels a side
    smooth = _box_mean(cost, max(1, int(round(cfg.window / st))))
    smooth[:, ~on] = np.nan
    filled = np.where(np.isfinite(smooth), smooth, np.inf)
    k_best = np.argmin(filled, axis=0)
    c_best = np.take_along_axis(filled, k_best[None], 0)[0]
    found = np.isfinite(c_best)
    out = Sweep(empty.copy(), empty.copy(), empty.copy(), empty.copy())
    out.area[pix] = (depth[pix] * st) ** 2 / (fx * fy)  # a fronto-parallel stride x stride footprint
    out.offset[s0::st, s0::st] = np.where(found, offsets[k_best], np.nan)
    out.cost[s0::st, s0::st] = np.where(found, c_best, np.nan)
    out.cost_at_zero[s0::st, s0::st] = smooth[zero]
    return out


def accepted_offsets(sweep: Sweep, cfg: SweepConfig) -> np.ndarray:
    """The offsets worth anchoring (module docstring; nan elsewhere): deep, clearly better, in patches."""
    from scipy import ndimage

    # where C(p, 0) is undefined (the point lies outside the hull, or too few views face it) nothing is accepted:
    # measured on eli, accepting there too costs 0.012 of normal consistency
    with np.errstate(invalid="ignore"):
        accept = (np.abs(sweep.offset) >= cfg.min_offset) & (sweep.cost_at_zero - sweep.cost > cfg.min_gain)
        accept &= sweep.cost <= cfg.max_cost
    s0, st = cfg.stride // 2, cfg.stride
    lattice = accept[s0::st, s0::st]
    labels, count = ndimage.label(lattice)
    if count:
        index = np.arange(1, count + 1)
        sizes = ndimage.sum(lattice, labels, index=index)
        areas = ndimage.sum(np.nan_to_num(sweep.area[s0::st, s0::st]), labels, index=index)
        fits = (sizes >= cfg.min_patch) & (areas <= cfg.max_patch_area)
        lattice &= np.isin(labels, 1 + np.flatnonzero(fits))
    keep = np.zeros_like(accept)
    keep[s0::st, s0::st] = lattice
    return np.where(keep, sweep.offset, np.nan)


def confirmed(sweep: Sweep, cfg: SweepConfig) -> np.ndarray:
    """Lattice pixels whose integrated depth the other views confirm: the best match lies within min_offset."""
    with np.errstate(invalid="ignore"):
        return (np.abs(sweep.offset) < cfg.min_offset) & (sweep.cost <= cfg.max_cost)
