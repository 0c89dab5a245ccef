"""De-lighting: estimate one lighting for the whole head from the baked texels and their normals, divide it out.

Image formation (Lambertian, distant light, linear RGB), per texel t with surface normal n_t:

    c_t = a_t ⊙ s(n_t)                                   colour = albedo x shading
    s_c(n) = Σ_k ℓ_{c,k} Y_k(n) + d_c max(0, n·l)        shading: 2nd-order SH + one directional light
    g_i ⊙ c_t                                            what view i records (exposure / white balance g_i)

The SH part is the smooth ambient/sky light (9 coefficients per channel); the clamped-cosine term is the
one hard key light the SH cannot represent (a sharp terminator); its direction l is found by a search
over the sphere. One head, one lighting: every view shares s; each view only has its own gain g_i
(estimate_view_gains: the robust median ratio of the view to the multi-view consensus).

Albedo / light ambiguity: a brighter light on a darker albedo looks the same, and so does a tinted light
on a tinted albedo. The fit absorbs the mean albedo colour A into the coefficients, so we first divide
it out with the grey-light constraint, then fix the scale with the "well-lit" constraint

    mean_t s_c(n_t) equal for c = R, G, B                (the light is grey on average; A goes to the albedo)
    P95_t lum(s(n_t)) = 1                                (95th percentile over the painted surface)

i.e. the best-lit skin (as a photographer exposes for the key side) shows its albedo, and an evenly lit
head is left as it is. The light's overall colour cannot be told from the albedo's and stays in the
albedo (the photo's white balance is kept); only the variation of the light with the normal is removed.

Sign: max(0, n·l) - max(0, -n·l) = n·l lies in the SH span, so l and -l fit equally well; the reported
l is the one on the bright side (the total linear shading term points along l).

The fit takes the albedo as one colour A (absorbed into ℓ and d), so the regression is linear; albedo
variation (hair, lips, freckles) and specular highlights are residuals, down-weighted by iteratively
reweighted least squares: Huber weights first (convex, a safe start), then Tukey's biweight (hair and
highlights get weight 0), scale = 1.4826 MAD. Then a_t = c_t / max(s(n_t), floor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spin_io.lighting import linear_to_srgb, sh_basis, srgb_to_linear  # noqa: F401  (re-exported)

SH_COEFFS = 9
LUMA = np.array([0.2126, 0.7152, 0.0722])  # linear-RGB luminance (Rec. 709)
Y1 = 0.488603  # the l = 1 SH constant: n·v = (v_y Y1-1 + v_z Y10 + v_x Y11) / Y1
WELL_LIT_PERCENTILE = 95.0
HUBER_K = 1.345
TUKEY_C = 4.685
MAD_TO_SIGMA = 1.4826


@dataclass
class DelightConfig:
    """How the lighting is estimated. `directional`: add one clamped-cosine key light to the SH."""

    enabled: bool = True
    directional: bool = True
    huber_iterations: int = 4
    tukey_iterations: int = 8
    max_samples: int = 200_000
    direction_candidates: int = 256
    ridge: float = 1e-4
    shading_floor: float = 0.08  # de-lit albedo = c / max(s, floor * mean s): a deep shadow is not amplified
    view_gains: bool = True
    seed: int = 0


@dataclass
class Lighting:
    """The estimated lighting, normalised so its mean over the painted surface is 1 per channel."""

    sh: np.ndarray  # (3, 9) shading SH coefficients per linear RGB channel
    direction: np.ndarray | None = None  # (3,) unit direction *towards* the key light, ViewSet axes
    directional: np.ndarray | None = None  # (3,) key light RGB intensity d_c
    view_gains: np.ndarray | None = None  # (V, 3) exposure / white balance per view (input view = 1)
    inlier_share: float = 1.0  # share of samples with a non-zero final robust weight
    residual_sigma: float = 0.0  # robust scale of the residual (linear RGB)
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def shading(self, normals: np.ndarray) -> np.ndarray:
        """s(n) for (N, 3) unit normals -> (N, 3) linear RGB shading."""
        return _design(normals, self.direction) @ self._coefficients().T

    def _coefficients(self) -> np.ndarray:
        if self.direction is None:
            return self.sh
        return np.concatenate([self.sh, self.directional[:, None]], 1)

    def as_dict(self) -> dict[str, Any]:
        """JSON for metrics.json / report.json."""
        return {
            "model": "sh2" + ("+directional" if self.direction is not None else ""),
            "normalisation": "grey on average; 95th percentile of the shading luminance over the painted surface = 1",
            "colour_space": "linear RGB (sRGB-decoded texels)",
            "sh_basis": "real SH, order 2: Y00, Y1-1, Y10, Y11, Y2-2, Y2-1, Y20, Y21, Y22 of (x, y, z) ViewSet axes",
            "sh": np.round(self.sh, 6).tolist(),
            "key_light_direction": None if self.direction is None else np.round(self.direction, 6).tolist(),
            "key_light_rgb": None if self.directional is None else np.round(self.directional, 6).tolist(),
            "view_gains": None if self.view_gains is None else np.round(self.view_gains, 6).tolist(),
            "inlier_share": round(float(self.inlier_share), 4),
            "residual_sigma": round(float(self.residual_sigma), 6),
            "samples": int(self.samples),
            "delit": True,
            **self.extra,
        }


def _design(normals: np.ndarray, direction: np.ndarray | None) -> np.ndarray:
    """Rows of the linear model: SH basis [+ max(0, n·l)]."""
    basis = sh_basis(normals)
    if direction is None:
        return basis
    return np.concatenate([basis, np.clip(np.asarray(normals, np.float64) @ direction, 0.0, None)[:, None]], 1)


def fibonacci_sphere(count: int) -> np.ndarray:
    """`count` nearly uniform unit directions."""
    i = np.arange(count) + 0.5
    phi = np.arccos(1 - 2 * i / count)
    theta = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.cos(phi), np.sin(theta) * np.sin(phi)], 1)


def _solve(design: np.ndarray, colours: np.ndarray, weights: np.ndarray, ridge: float) -> np.ndarray:
    """Weighted ridge least squares for all channels: (K, C) coefficients."""
    dw = design * weights[:, None]
    gram = dw.T @ design
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, dw.T @ colours)


def _robust_weights(residual: np.ndarray, kind: str) -> tuple[np.ndarray, float]:
    """Huber or Tukey weights of per-sample residual norms, scaled by 1.4826 MAD."""
    e = np.linalg.norm(residual, axis=1)
    sigma = max(MAD_TO_SIGMA * float(np.median(e)), 1e-6)
    u = e / sigma
    if kind == "huber":
        return np.minimum(1.0, HUBER_K / np.maximum(u, 1e-12)), sigma
    return np.where(u < TUKEY_C, (1 - (u / TUKEY_C) ** 2) ** 2, 0.0), sigma


def _irls(design: np.ndarray, colours: np.ndarray, cfg: DelightConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust fit: Huber then Tukey reweighting; returns coefficients, final weights, residual scale."""
    weights = np.ones(len(colours))
    sigma = 0.0
    coef = _solve(design, colours, weights, cfg.ridge)
    for it in range(cfg.huber_iterations + cfg.tukey_iterations):
        weights, sigma = _robust_weights(colours - design @ coef, "huber" if it < cfg.huber_iterations else "tukey")
        coef = _solve(design, colours, weights, cfg.ridge)
    return coef, weights, sigma


def _key_direction(normals: np.ndarray, colours: np.ndarray, weights: np.ndarray, cfg: DelightConfig) -> np.ndarray:
    """The direction whose clamped cosine, added to the SH, best explains the (robustly weighted) colours."""
    best, best_cost = None, np.inf
    for d in fibonacci_sphere(cfg.direction_candidates):
        design = _design(normals, d)
        coef = _solve(design, colours, weights, cfg.ridge)
        if np.any(coef[-1] < 0):  # a key light adds light in every channel
            continue
        cost = float((weights * ((colours - design @ coef) ** 2).sum(1)).sum())
        if cost < best_cost:
            best, best_cost = d, cost
    if best is None:
        return np.array([0.0, 1.0, 0.0])
    # refine: a local search on ever smaller circles around the best candidate
    step = math.radians(8.0)
    for _ in range(4):
        tangent = np.linalg.svd(best[None])[2][1:]
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False):
            d = best * math.cos(step) + math.sin(step) * (math.cos(a) * tangent[0] + math.sin(a) * tangent[1])
            design = _design(normals, d)
            coef = _solve(design, colours, weights, cfg.ridge)
            cost = float((weights * ((colours - design @ coef) ** 2).sum(1)).sum())
            if cost < best_cost and np.all(coef[-1] >= 0):
                best, best_cost = d / np.linalg.norm(d), cost
        step /= 2
    return best


def estimate_lighting(colours: np.ndarray, normals: np.ndarray, cfg: DelightConfig | None = None) -> Lighting:
    """Fit the shading model to (T, 3) linear colours at (T, 3) unit normals (one sample per texel)."""
    cfg = cfg or DelightConfig()
    colours = np.asarray(colours, np.float64)
    normals = np.asarray(normals, np.float64)
    if len(colours) > cfg.max_samples:
        pick = np.random.default_rng(cfg.seed).choice(len(colours), cfg.max_samples, replace=False)
        colours, normals = colours[pick], normals[pick]
    coef, weights, sigma = _irls(sh_basis(normals), colours, cfg)
    direction = None
    if cfg.directional:
        direction = _key_direction(normals, colours, weights, cfg)
        coef, weights, sigma = _irls(_design(normals, direction), colours, cfg)
        if np.any(coef[-1] <= 0):
            direction = None
            coef, weights, sigma = _irls(sh_basis(normals), colours, cfg)
    if direction is not None:
        coef, direction = _bright_side(coef, direction)
    coef = coef / np.maximum((_design(normals, direction) @ coef).mean(0), 1e-9)[None]  # grey on average
    shading = _design(normals, direction) @ coef
    well_lit = np.percentile(shading @ LUMA, WELL_LIT_PERCENTILE)  # the well-lit constraint: P95 lum(s) = 1
    coef = coef / max(float(well_lit), 1e-9)
    return Lighting(
        sh=coef[:SH_COEFFS].T.copy(),
        direction=direction,
        directional=None if direction is None else coef[SH_COEFFS].copy(),
        inlier_share=float((weights > 0).mean()),
        residual_sigma=sigma,
        samples=len(colours),
    )


def _bright_side(coef: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pick l or -l so the key light is on the bright side; the shading is unchanged.

    The linear (l = 1) part of s along l is v·l + k/2 (the clamped cosine projects onto n·l with weight
    1/2); if its luminance is negative, use -l and add k (n·l) to the SH, as k max(0, -t) = k max(0, t) - k t.
    """
    k = coef[SH_COEFFS]  # (3,)
    linear = np.stack([coef[3], coef[1], coef[2]], 1) * Y1  # (3, 3): per channel, v_c in xyz
    along = (linear @ direction + 0.5 * k) @ LUMA
    if along >= 0:
        return coef, direction
    coef = coef.copy()
    dx, dy, dz = direction
    coef[1] += k * dy / Y1
    coef[2] += k * dz / Y1
    coef[3] += k * dx / Y1
    return coef, -direction


def delight_colours(colours_srgb: np.ndarray, normals: np.ndarray, lighting: Lighting, floor: float) -> np.ndarray:
    """De-lit sRGB colours: decode, a = c / max(s(n), floor), encode; (N, 3) in [0, 1]."""
    shading = np.maximum(lighting.shading(normals), floor)
    return np.clip(linear_to_srgb(srgb_to_linear(colours_srgb) / shading), 0.0, 1.0)


def estimate_view_gains(
    colours: np.ndarray, weights: np.ndarray, reference: int | None = None, rounds: int = 3
) -> np.ndarray:
    """Per-view RGB gains g_i from (T, V, 3) colours of the same texels in every view (weights (T, V), 0 unseen).

    log g_i = weighted median over texels of log c_{t,i} - log c̄_t, where c̄_t is the consensus of the other
    views with their gains divided out; repeated `rounds` times. Normalised so the reference view (the
    input photo) has gain 1, or the geometric mean is 1 without one. Specular highlights and misregistered
    pixels are outliers of the median, not of the estimate.
    """
    colours = np.clip(np.asarray(colours, np.float64), 1e-3, None)
    weights = np.asarray(weights, np.float64)
    V = colours.shape[1]
    log_c = np.log(colours)
    log_g = np.zeros((V, 3))
    for _ in range(rounds):
        corrected = log_c - log_g[None]
        wsum = weights.sum(1)
        total = (weights[..., None] * corrected).sum(1)
        for i in range(V):
            others = wsum - weights[:, i]  # the consensus of the *other* views
            seen = (weights[:, i] > 0) & (others > 1e-6) & (colours[:, i].min(1) > 0.02)
            if seen.sum() < 50:
                continue
            consensus = (total[seen] - weights[seen, i, None] * corrected[seen, i]) / others[seen, None]
            diff = log_c[seen, i] - consensus
            log_g[i] = [_weighted_median(diff[:, ch], weights[seen, i]) for ch in range(3)]
        log_g -= log_g[reference] if reference is not None else log_g.mean(0)
    return np.exp(log_g)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, 0.5 * cum[-1])])
