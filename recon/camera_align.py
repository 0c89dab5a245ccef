"""Per-view camera alignment: turn each camera about the head until its view agrees with the consensus.

A generated view is drawn from a camera that is close to, not at, the pose the ViewSet declares: a
degree or two of orbit moves an ear standing 8 cm from the axis by 2-3 mm, about two pixels at 256 px.
The visual hull takes the minimum over views, so a thin part one misplaced view does not cover is carved
away for good, and depth fusion averages surfaces that disagree by the same amount. The surface the views
agree on (hull + depth fusion) says where each view's features should land, so each camera's rotation
about the working centre c is estimated against it and the hull and depth fusion are run again.

For view i with declared camera C, a rotation R = exp([omega]_x) about c gives the camera T C, with
T x = R (x - c) + c. A consensus point x_p (visible in the declared view, normal m_p) then lands at

    u_p(omega) = pi_C(R^T (x_p - c) + c)

where the view observes the normal n(u_p) and the mask's signed pixel distance s(u_p) (> 0 outside).
With Q the view's own normal rotation (a generated normal map is often turned as a whole; closed form,
recon.normal_align.kabsch) and b the view's mask offset (a matte drawn a pixel tight or loose: the consensus's
outline sits at s = b rather than 0), omega and b minimise

    E(omega, b) = sum_p a_p rho(|Q n(u_p(omega)) - m_p| / sigma_n)     (surface points, a_p = cos^2 of the view angle)
                + sum_b     rho((s(u_b(omega)) - b) / sigma_s)         (points on the consensus's outline)
    rho(r)      = log(1 + r^2)                                        (Cauchy: occlusion edges and thin parts
                                                                        the consensus lost do not pull)

by Gauss-Newton on iteratively reweighted residuals, with a numerical Jacobian for omega. A uniform offset
and a turn move the outline differently (all round against one way), so fitting b keeps a tight matte from
being read as a turned camera. b is fitted only with `mask_offset` (opt-in: `recon --fit-masks`); otherwise
b = 0 and the fit is session 9's.

The turn every view shares (the median over views) is then removed: the declared cameras are right on
average, and a common turn is the consensus's own frame. A view whose remaining turn exceeds
`max_rotation_deg` (a wrong pose, not jitter), is under `min_change_deg`, or does not make it agree
better by `min_gain` keeps its declared camera. With `mask_offset`, the offset every view shares is likewise
the consensus's (the hull lies inside every mask), so a view's mask is drawn tight by shift = b - median(b)
pixels. A mask tight by `min_mask_shift_px` to `max_mask_shift_px` is moved out by its shift: the hull, depth
integration and the fusion's silhouette term then read the moved masks (`shifted_masks`), the texture the
masks as given.
Loose masks are only reported (`shrink_masks` moves them in too): the hull is the minimum over views, so a
loose matte is carved by the others, while a tight one carves what the others show (on 4 cases shrinking them
too cost up to 0.004 NC; bench/RECON_EVAL.md, session 10). Every estimate is reported (metrics.json:
camera_alignment).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recon.cameras import Cameras
from recon.mesh_ops import vertex_normals
from recon.normal_align import kabsch
from recon.raster import TorchRasterizer, interpolate, rasterize_views, sample_images


@dataclass
class CameraAlignConfig:
    """Camera alignment settings; angles in degrees."""

    enabled: bool = True  # run the pass at all (the cameras, the masks, or both)
    correct_cameras: bool = True  # apply the turns (otherwise only reported)
    consensus_size: int = 128  # the consensus integrates the views' depth at most this many pixels a side
    max_rotation_deg: float = 4.0  # larger estimates are a wrong camera, not jitter: reported, not applied
    min_gain: float = 0.035  # the cost must fall by this share (exact cameras: spurious turns gained <= 0.031)
    min_change_deg: float = 0.3  # smaller turns are not applied (the estimate's own error is 0.3-0.6 deg)
    sigma_normal: float = 0.1  # unit-normal residual scale
    sigma_outline_px: float = 1.0  # outline residual scale, pixels
    stride: int = 2  # surface points every `stride` pixels of the consensus render
    iterations: int = 12
    min_points: int = 300  # a view with fewer usable points keeps its camera
    zero_mean: bool = True  # remove the rotation all views share (the consensus's own frame; median over views)
    mask_offset: bool = False  # fit each view's mask offset (a matte a pixel tight or loose) with its camera, and
    # move tight masks out (`recon --fit-masks`; opt-in: NC +0.0016 on 20 tuned-on cases, +0.0004 and one new
    # failure on 9 held-out ones; bench/RECON_EVAL.md, session 10)
    shrink_masks: bool = False  # a loose matte is carved by the other views; a tight one carves what they show
    min_mask_shift_px: float = 0.3  # smaller departures from the views' median offset are not applied
    max_mask_shift_px: float = 3.0  # larger ones are a broken matte, not a tight one: reported, not applied

    @classmethod
    def for_choices(cls, trust_cameras: bool = False, fit_masks: bool = False) -> CameraAlignConfig:
        """The settings behind `recon --trust-cameras` / `--fit-masks` (and the flow's recon parameters)."""
        return cls(enabled=fit_masks or not trust_cameras, correct_cameras=not trust_cameras, mask_offset=fit_masks)


def rotation_matrix(omega: torch.Tensor) -> torch.Tensor:
    """exp([omega]_x) (Rodrigues) for a rotation vector omega (3,) in radians."""
    theta = omega.norm()
    if float(theta) < 1e-12:
        return torch.eye(3, dtype=omega.dtype, device=omega.device)
    k = omega / theta
    K = torch.zeros(3, 3, dtype=omega.dtype, device=omega.device)
    K[0, 1], K[0, 2], K[1, 2] = -k[2], k[1], -k[0]
    K = K - K.T
    return torch.eye(3, dtype=omega.dtype, device=omega.device) + torch.sin(theta) * K + (1 - torch.cos(theta)) * K @ K


def rotated_about(c2w: torch.Tensor, R: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """The camera-to-world (4, 4) turned by R about `centre`: T C with T x = R (x - c) + c."""
    T = torch.eye(4, dtype=c2w.dtype, device=c2w.device)
    T[:3, :3] = R.to(c2w.dtype)
    T[:3, 3] = centre.to(c2w.dtype) - R.to(c2w.dtype) @ centre.to(c2w.dtype)
    return T @ c2w


@dataclass
class _ViewSamples:
    """What one view's residuals need: consensus points and normals, and the view's maps as images."""

    points: torch.Tensor  # (P, 3) surface points seen by the declared camera
    normals: torch.Tensor  # (P, 3) their consensus normals
    weights: torch.Tensor  # (P,) cos^2 of the viewing angle
    outline: torch.Tensor  # (B, 3) surface points on the consensus's outline in this view
    normal_map: torch.Tensor  # (1, 3, H, W) observed world normals (zero outside the mask)
    sdf: torch.Tensor  # (1, 1, H, W) signed pixel distance to the mask border, > 0 outside


def _sample(img: torch.Tensor, uv: torch.Tensor, W: int, H: int) -> torch.Tensor:
    """Bilinear (C, N) samples of a (1, C, H, W) image at (N, 2) pixel coordinates (border-clamped)."""
    return sample_images(img, uv[None], W, H)[0]


@dataclass
class _Pinhole:
    """One declared camera in float64, inverted once (the fit projects thousands of times)."""

    w2c: torch.Tensor  # (4, 4) OpenGL world-to-camera
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def of(cls, cameras: Cameras, i: int) -> _Pinhole:
        return cls(torch.linalg.inv(cameras.c2w[i].double()), float(cameras.fx[i]), float(cameras.fy[i]),
                   float(cameras.cx[i]), float(cameras.cy[i]), cameras.width, cameras.height)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (N, 2) pixel coordinates (as Cameras.project)."""
        pc = points @ self.w2c[:3, :3].T + self.w2c[:3, 3]
        depth = (-pc[:, 2]).clamp(min=1e-9)
        return torch.stack([self.fx * pc[:, 0] / depth + self.cx, -self.fy * pc[:, 1] / depth + self.cy], -1)


def _residuals(
    s: _ViewSamples, cam: _Pinhole, centre: torch.Tensor, omega: torch.Tensor, Q: torch.Tensor, b: float,
    cfg: CameraAlignConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Surface residuals (P, 3), their usable flags (P,), and outline residuals (B,) for rotation omega and
    mask offset b (pixels)."""
    R = rotation_matrix(omega)
    W, H = cam.width, cam.height
    moved = (s.points - centre) @ R + centre  # R^T (x - c) + c, row vectors
    n = _sample(s.normal_map, cam.project(moved), W, H).T
    length2 = (n * n).sum(-1, keepdim=True)  # (torch's norm is slow on small float64 rows)
    usable = length2[:, 0] > 0.25
    n = n * torch.rsqrt(length2.clamp(min=1e-24))
    r_n = (n @ Q.T - s.normals) / cfg.sigma_normal
    r_b = (_sample(s.sdf, cam.project((s.outline - centre) @ R + centre), W, H)[0] - b) / cfg.sigma_outline_px
    return r_n, usable, r_b


def _cost(r_n: torch.Tensor, usable: torch.Tensor, r_b: torch.Tensor, s: _ViewSamples) -> float:
    """E(omega) of the module docstring (Cauchy); unusable surface points count as fully wrong (rho(3))."""
    rho_n = torch.where(usable, torch.log1p((r_n**2).sum(-1)), torch.full_like(s.weights, float(np.log1p(9.0))))
    return float((s.weights * rho_n).sum() + torch.log1p(r_b**2).sum())


def _fit_view(
    s: _ViewSamples, cam: _Pinhole, centre: torch.Tensor, cfg: CameraAlignConfig
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Gauss-Newton on the reweighted residuals: (omega, the view's normal rotation Q, its mask offset b, and the
    cost at omega = 0)."""
    dt, dev = s.points.dtype, s.points.device
    omega = torch.zeros(3, dtype=dt, device=dev)
    Q = torch.eye(3, dtype=dt, device=dev)
    b = 0.0
    r_n, usable, r_b = _residuals(s, cam, centre, omega, Q, b, cfg)
    cost0 = _cost(r_n, usable, r_b, s)
    h = 1e-3
    for _ in range(cfg.iterations):
        # the view's own normal rotation at the current camera (closed form)
        n_obs = r_n * cfg.sigma_normal + s.normals  # Q n(u_p)
        n_raw = n_obs @ Q  # n(u_p)
        keep = usable & ((r_n**2).sum(-1) < 9.0)
        if int(keep.sum()) >= 3:
            Q = kabsch(n_raw[keep], s.normals[keep], s.weights[keep])
        r_n, usable, r_b = _residuals(s, cam, centre, omega, Q, b, cfg)
        # IRLS weights of the Cauchy loss: u = 1 / (1 + r^2)
        u_n = torch.where(usable, s.weights / (1.0 + (r_n**2).sum(-1)), torch.zeros_like(s.weights))
        u_b = 1.0 / (1.0 + r_b**2)
        r = torch.cat([(r_n * u_n[:, None].sqrt()).reshape(-1), r_b * u_b.sqrt()])
        J = torch.zeros(r.shape[0], 4 if cfg.mask_offset else 3, dtype=dt, device=dev)
        for k in range(3):
            d = torch.zeros(3, dtype=dt, device=dev)
            d[k] = h
            rp = _residuals(s, cam, centre, omega + d, Q, b, cfg)
            rm = _residuals(s, cam, centre, omega - d, Q, b, cfg)
            jn = ((rp[0] - rm[0]) / (2 * h)) * u_n[:, None].sqrt()
            jb = ((rp[2] - rm[2]) / (2 * h)) * u_b.sqrt()
            J[:, k] = torch.cat([jn.reshape(-1), jb])
        if cfg.mask_offset:  # d r_b / d b = -1 / sigma_s; the surface residuals do not depend on b
            J[r_n.numel():, 3] = -u_b.sqrt() / cfg.sigma_outline_px
        JtJ = J.T @ J
        A = JtJ + 1e-6 * torch.eye(J.shape[1], dtype=dt, device=dev) * float(torch.trace(JtJ) + 1e-12)
        step = -torch.linalg.solve(A, J.T @ r)
        turn, shift = step[:3], float(step[3]) if cfg.mask_offset else 0.0
        turn_len = float(turn.norm())
        if turn_len > np.radians(1.0):  # trust region: at most a degree and a pixel per iteration
            turn = turn * (np.radians(1.0) / turn_len)
        shift = float(np.clip(shift, -1.0, 1.0))
        omega = omega + turn
        b = b + shift
        r_n, usable, r_b = _residuals(s, cam, centre, omega, Q, b, cfg)
        if float(turn.norm()) < np.radians(0.005) and abs(shift) < 0.01:
            break
    # compare at the same normal rotation and mask offset, so the gain is the camera's alone
    r0 = _residuals(s, cam, centre, torch.zeros(3, dtype=dt, device=dev), Q, b, cfg)
    return omega, Q, b, min(cost0, _cost(*r0, s))


def _view_samples(
    frag, cam: Cameras, vertices: torch.Tensor, faces: torch.Tensor, vn: torch.Tensor,
    normal_map: torch.Tensor, sdf: np.ndarray, mask: np.ndarray, y_cut: float, stride: int,
) -> _ViewSamples:
    """Consensus points every `stride` pixels and on the outline, with the view's maps as images (float64).

    Outline points on the neck's cut, or more than 4 px from the mask's border, are not outline the mask can
    confirm (the neck goes on below the cut; a part the consensus lost) and are left out.
    """
    dev = vertices.device
    covered = frag.covered
    pts = interpolate(frag, vertices, faces)
    nrm = interpolate(frag, vn, faces)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    _, dirs = cam.pixel_rays()
    cos_view = (-(dirs[0].to(nrm.dtype)) * nrm).sum(-1).clamp(min=0)
    grid = torch.zeros_like(covered)
    grid[stride // 2 :: stride, stride // 2 :: stride] = True
    take = covered & grid & torch.as_tensor(mask, device=dev)
    c = covered.float()[None, None]
    inner = torch.nn.functional.max_pool2d(-c, 3, stride=1, padding=1)[0, 0] > -0.5  # an empty pixel beside it
    sdf_t = torch.as_tensor(sdf, dtype=torch.float64, device=dev)
    edge = covered & inner & (pts[..., 1] > y_cut + 0.01) & (sdf_t.abs() < 4.0)
    nm = torch.where(normal_map.norm(dim=-1, keepdim=True) > 0.5, normal_map, torch.zeros_like(normal_map))
    f64 = torch.float64
    return _ViewSamples(
        points=pts[take].to(f64), normals=nrm[take].to(f64), weights=(cos_view[take] ** 2).to(f64),
        outline=pts[edge].to(f64), normal_map=nm.permute(2, 0, 1)[None].to(f64), sdf=sdf_t[None, None],
    )


def align_cameras(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    cameras: Cameras,
    normals: torch.Tensor,
    masks: np.ndarray,
    centre: np.ndarray,
    y_cut: float,
    cfg: CameraAlignConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Cameras, list[dict]]:
    """Turn each camera about `centre` onto the consensus mesh (module docstring).

    `normals` (V, H, W, 3) are the views' world normals; `y_cut` is the consensus's neck plane. Returns the
    cameras (declared ones where no rotation was applied) and, per view, the estimated rotation, whether it
    was applied and the cost's fall.
    """
    from recon.fusion import signed_distance_px

    cfg = cfg or CameraAlignConfig()
    frags = rasterize_views(TorchRasterizer(), cameras, vertices, faces)
    vn = vertex_normals(vertices, faces)
    sdf = signed_distance_px(np.asarray(masks, bool))
    c = torch.as_tensor(centre, dtype=torch.float64, device=vertices.device)
    fits: dict[int, tuple] = {}
    report: list[dict] = []
    for i, fr in enumerate(frags):
        s = _view_samples(fr, cameras.select([i]), vertices, faces, vn, normals[i], sdf[i], masks[i], y_cut, cfg.stride)
        report.append({"view": i, "points": int(s.points.shape[0])})
        if s.points.shape[0] >= cfg.min_points:
            cam = _Pinhole.of(cameras, i)
            omega, Q, b, cost0 = _fit_view(s, cam, c, cfg)
            fits[i] = (s, cam, omega, Q, b, cost0)
        if progress is not None:
            progress(i)
    # the declared cameras are right on average: a turn every view shares is the consensus's, not theirs
    # (the median, so one wrong camera does not move the others)
    common = torch.zeros(3, dtype=torch.float64, device=c.device)
    if cfg.zero_mean and len(fits) >= 3:
        common = torch.stack([fit[2] for fit in fits.values()]).median(0).values
    # likewise the mask offset every view shares is the consensus's (a hull lies inside every mask)
    common_b = float(np.median([fit[4] for fit in fits.values()])) if fits else 0.0
    c2w = cameras.c2w.clone()
    for i, entry in enumerate(report):
        if i not in fits:
            entry.update(rotation_deg=0.0, applied=False, reason="too few points", mask_offset_px=None,
                         mask_shift_px=None, mask_shift_applied=False, mask_shift_refused=False)
            continue
        s, cam, omega, Q, b, cost0 = fits[i]
        omega = omega - common
        cost1 = _cost(*_residuals(s, cam, c, omega, Q, b, cfg), s)
        angle = float(np.degrees(float(omega.norm())))
        gain = (cost0 - cost1) / max(cost0, 1e-12)
        applied = (cfg.correct_cameras and angle <= cfg.max_rotation_deg and gain >= cfg.min_gain
                   and angle >= cfg.min_change_deg)
        if applied:
            c2w[i] = rotated_about(c2w[i].double(), rotation_matrix(omega), c).to(c2w.dtype)
        entry.update(rotation_deg=round(angle, 3),
                     rotation_vector_deg=[round(float(a), 4) for a in np.degrees(omega.cpu().numpy())],
                     applied=applied, cost_gain=round(gain, 4))
        if not applied:
            entry["reason"] = ("cameras trusted" if not cfg.correct_cameras
                               else "larger than max_rotation_deg" if angle > cfg.max_rotation_deg
                               else "no better agreement" if gain < cfg.min_gain else "too small to matter")
        shift = b - common_b
        shift_ok = (cfg.mask_offset and cfg.min_mask_shift_px <= abs(shift) <= cfg.max_mask_shift_px
                    and (shift > 0 or cfg.shrink_masks))
        fitted = cfg.mask_offset  # otherwise b stays 0: not measured, and the rows say so (None)
        entry.update(mask_offset_px=round(b, 3) if fitted else None,
                     mask_shift_px=round(shift, 3) if fitted else None, mask_shift_applied=bool(shift_ok),
                     mask_shift_refused=bool(fitted and abs(shift) > cfg.max_mask_shift_px))
    aligned = Cameras(c2w, cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.width, cameras.height)
    return aligned, report


def shifted_masks(masks: np.ndarray, shift_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each view's mask moved outward by its shift (pixels, < 0 inward): (soft (V, H, W) float32, boolean).

    The soft mask ramps over one pixel about the moved border, so a fraction of a pixel still moves the hull;
    with no shift it is the boolean mask itself.
    """
    from recon.fusion import signed_distance_px

    sdf = signed_distance_px(np.asarray(masks, bool)) - np.asarray(shift_px, np.float32)[:, None, None]
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32), sdf < 0
