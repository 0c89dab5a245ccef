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

Key light colour: d_c may be negative in one channel. A fill light opposite the key is the same clamped
cosine (max(0, -n·l) = max(0, n·l) - n·l, the linear part goes to the SH), so a warm key with a cool
fill from the other side fits d = key - fill, whose blue is below zero. Only the luminance d·LUMA > 0.

The fit takes the albedo as one colour A (absorbed into ℓ and d), so the regression is linear; albedo
variation (hair, lips, freckles) and specular highlights are residuals. They are multiplicative
(c = a s), so the residual is measured relative to the predicted shading, as the log-ratio would:

    r_t = (c_t - D_t β) / lum(D_t β)                      relative residual (the dark side counts as much)
    w_t = π_t ρ(|r_t| / σ) / lum(D_t β)²                   IRLS weight: prior x robust x relative

ρ: Huber weights first (convex, a safe start), then Tukey's biweight (hair and highlights get weight 0),
σ = 1.4826 MAD, with |r_t| counted κ = 2.5 times larger where lum r_t < 0: on a head, albedo darker than
skin is common (hair, brows, stubble, nostrils) and brighter than skin is rare (highlights, also cut), so a
dark texel is more likely material than shadow. Without κ a dark crown (all its normals hair) is read as
light from below, and the hair is brightened. The prior π_t (texture_prior) is low where the albedo is
busy at a scale the light cannot be (hair strands, stubble): local std of log luminance. (An optional smoothness penalty
λ l²(l+1)² per SH band, ∫|∇s|² on the sphere, is off: it did not improve the benchmark.)

Multi-start (a large dark cap, e.g. hair over every upward normal, is a second, wrong local optimum:
light from below, the hair read as shadow and brightened). The IRLS scale σ never grows (σ_k = min(σ_{k-1},
MAD_k)): otherwise a dark cluster pulls the fit down, and 1 / lum(D β)² grows as the predicted shading
falls, so the cluster widens its own tolerance until it is an inlier. The fit is run from two starts: all
texels (as before), and the brighter half (luminance >= median), whose key-direction search uses only those
texels (hair is darker than lit skin however it is lit); from each, the best `directions_per_start` key axes
of the coarse search (>= 25 degrees apart, l and -l being one axis) are fitted. The winner has the lowest
prior-weighted Tukey loss of its relative, dark-scaled residuals at one common scale, the smallest σ of all
starts: the solution with the most texels fitted tightly, measured the same way for every start. (No prior
on the key's elevation: the inlier criterion alone finds keys from above.) The coarse search solves all
256 directions at once (the SH block of the normal equations is shared), and the starts are fitted on the
15 000-texel search subset (only the winner on all 60 000), so the six fits cost what one did.

Robust scale: σ is the prior-weighted MAD. Hair over the back and the crown can be half the texels or more (51 % on
a head with dark hair); a plain MAD is then the hair's spread, and the hair counts as good data.

Model choice (so an unlit head stays unlit): besides the SH + key fits, one constant shading and SH alone are
fitted; the kept model has the lowest robust loss + model_penalty x its free parameters per channel (1, 9, 12),
all at the common scale. Unlit, the albedo's own broad colour patches lower the loss of SH + key by about 0.01
(the constant model wins by a margin); under the bench's lights the constant model's loss is 0.16-0.6 higher.
The penalty alone let light, strand-textured hair over the crown and back (an albedo laid out by the normal) pass
for a light: the rendered unlit controls gain up to 0.030 from a varying shading, and 0.024 beat the penalty on
one (face de-lit 5x worse). So a varying shading is kept only if its loss is at least light_min_gain = 0.08
below the constant model's: the log-middle of 0.030 (unlit) and 0.163 (the weakest lit case: a key from above
on dark hair), rounded up because missing a light that weak costs little (the texture stays lit) while
inventing one spoils the face. `light_gain` in the report says by how much a light would explain.

Second material (_second_material): hair is a second albedo under the same light, c_t = g ⊙ A ⊙ s(n_t) on its
texels, and where it covers every upward normal its shading is the only evidence of the light there. After the
fit, the busy texels (prior < material_prior) darker than half the fit (or brighter than twice it: blond hair on
dark skin) form it; g per channel (a 1-D search of the profiled least squares, β in closed form) and the light
are refitted together, the hair's residuals at their own spread. Then the key's direction is searched again with
g divided out, and the new direction kept if its two-material robust loss is lower (a key from above lights
mostly hair).

De-lit albedo, with the shading clamped from below where the fit has no support:

    a_t = c_t / (s(n_t) max(1, s_min / lum s(n_t))),   s_min = max(floor, P_1 of lum s over the inliers)

so a region darker than any well-fitted skin (dark hair seen as a shadow) is brightened at most to
what the darkest inlier shading would give, never by an extrapolated 1 / s → ∞.
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
GOLDEN = (math.sqrt(5) - 1) / 2
MIN_SIGMA = 0.01  # the monotone IRLS scale stops shrinking at 1% of the shading (below any photo's noise)


@dataclass
class DelightConfig:
    """How the lighting is estimated. `directional`: add one clamped-cosine key light to the SH."""

    enabled: bool = True
    directional: bool = True
    huber_iterations: int = 4
    tukey_iterations: int = 6
    max_samples: int = 60_000  # texels the final fit uses (a random subset)
    search_samples: int = 15_000  # texels the key-direction search uses
    direction_candidates: int = 256
    ridge: float = 1e-4
    band_penalty: float = 0.0  # λ of an SH smoothness penalty λ l²(l+1)² (off: it bought nothing on the bench)
    relative: bool = True  # residuals relative to the predicted shading (multiplicative albedo)
    dark_scale: float = 2.5  # a texel darker than the fit counts as this much further out (hair, brows)
    texture_window: int = 5  # texels: the prior's local window
    texture_sigma: float = 0.12  # local std of log luminance at which the prior halves
    shading_floor: float = 0.08  # de-lit albedo = c / max(s, s_min), s_min >= floor (P95 lum(s) = 1)
    floor_percentile: float = 1.0  # s_min >= this percentile of lum(s) over the inlier texels
    weighted_scale: bool = True  # the robust scale is the prior-weighted MAD (hair may be most of the texels)
    monotone_scale: bool = True  # the IRLS scale never grows (an outlier cluster cannot widen its own tolerance)
    directions_per_start: int = 3  # the best few coarse key directions, each fitted (multi-start)
    start_separation: float = 25.0  # degrees between them
    bright_start: bool = True  # a second start of the robust fit from the brighter texels (see estimate_lighting)
    bright_percentile: float = 50.0  # its first solve uses the texels above this luminance percentile
    second_material: bool = True  # refit with the dark busy texels (hair) as a second material (_second_material)
    material_prior: float = 0.6  # its texels: texture prior below this ...
    material_ratio: float = 0.5  # ... and darker than this share of the fit
    brighter_material: bool = True  # ... or brighter than its inverse (blond hair on dark skin)
    material_share: float = 0.05  # only if they are at least this share of the samples
    material_weight: float = 0.25  # their prior in the refit is at least this
    material_search: bool = True  # search the key's direction again with the second material divided out
    select_model: bool = True  # also fit a constant shading and SH only; keep the best penalised robust score
    model_penalty: float = 0.003  # robust loss (mean Tukey ρ in [0, 1]) added per free parameter per channel
    light_min_gain: float = 0.08  # a varying shading is kept only if it lowers the robust loss this much below constant
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
    residual_sigma: float = 0.0  # robust scale of the residual (relative to the shading)
    samples: int = 0
    floor: float = 0.0  # s_min: the de-lit albedo divides by max(s, floor)
    extra: dict[str, Any] = field(default_factory=dict)

    def shading(self, normals: np.ndarray) -> np.ndarray:
        """s(n) for (N, 3) unit normals -> (N, 3) linear RGB shading."""
        return _design(normals, self.direction) @ self._coefficients().T

    def varies(self) -> bool:
        """Whether the shading depends on the normal (False for the constant model an unlit head gets)."""
        return self.direction is not None or bool(np.any(self.sh[:, 1:]))

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
            "shading_floor": round(float(self.floor), 6),
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


SH_BAND = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2])


def _penalty(size: int, cfg: DelightConfig) -> np.ndarray:
    """Diagonal of the regulariser: ridge on all, plus λ l²(l+1)² on SH band l (the key light is free)."""
    band = SH_BAND.astype(np.float64)
    smooth = cfg.band_penalty * (band * (band + 1)) ** 2
    return cfg.ridge + np.concatenate([smooth, np.zeros(max(size - SH_COEFFS, 0))])[:size]


def _solve(design: np.ndarray, colours: np.ndarray, weights: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Weighted penalised least squares for all channels: (K, C) coefficients."""
    dw = design * weights[:, None]
    gram = dw.T @ design
    gram += np.diag(penalty * np.trace(gram) / len(gram))
    return np.linalg.solve(gram, dw.T @ colours)


def _robust_weights(
    residual: np.ndarray,
    kind: str,
    dark_scale: np.ndarray | float = 1.0,
    cap: float = 0.0,
    prior: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Huber or Tukey weights of per-sample residual norms, scaled by 1.4826 MAD (at most `cap` if > 0);
    darker-than-fit x dark_scale. With `prior`, the MAD is the prior-weighted median (texels the prior
    distrusts, e.g. hair strands, cannot set the scale even where they outnumber the skin)."""
    e = np.linalg.norm(residual, axis=1)
    med = float(np.median(e)) if prior is None else _weighted_median(e, prior)
    sigma = max(MAD_TO_SIGMA * med, 1e-6)
    if cap > 0:
        sigma = max(min(sigma, cap), MIN_SIGMA)
    u = np.where(residual @ LUMA < 0, dark_scale, 1.0) * e / sigma
    if kind == "huber":
        return np.minimum(1.0, HUBER_K / np.maximum(u, 1e-12)), sigma
    return np.where(u < TUKEY_C, (1 - (u / TUKEY_C) ** 2) ** 2, 0.0), sigma


def _predicted_level(design: np.ndarray, coef: np.ndarray, predicted: np.ndarray | None = None) -> np.ndarray:
    """lum(D β), kept away from zero: the scale of each residual."""
    level = predicted @ LUMA if predicted is not None else design @ (coef @ LUMA)
    return np.maximum(level, 0.05 * max(float(np.median(level)), 1e-9))


def _irls(
    design: np.ndarray,
    colours: np.ndarray,
    prior: np.ndarray,
    cfg: DelightConfig,
    start: np.ndarray | None = None,
    dark_scale: np.ndarray | float | None = None,
    spread: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust fit (Huber then Tukey, relative residuals); returns coefficients, robust weights, scale.

    `start` (T,): the first solve's weights (the prior if None); the iterations then reweight every sample.
    `dark_scale`: per sample (T,) or one value (cfg.dark_scale if None); `spread` (T,): a sample's residual
    is measured in units of spread x the common scale (a noisier material, e.g. hair strands)."""
    dark_scale = (cfg.dark_scale if dark_scale is None else dark_scale) / spread
    penalty = _penalty(design.shape[1], cfg)
    robust = np.ones(len(colours))
    sigma = 0.0
    coef = _solve(design, colours, prior if start is None else start, penalty)
    for it in range(cfg.huber_iterations + cfg.tukey_iterations):
        predicted = design @ coef
        level = _predicted_level(design, coef, predicted) if cfg.relative else np.ones(len(colours))
        residual = (colours - predicted) / level[:, None]
        kind = "huber" if it < cfg.huber_iterations else "tukey"
        robust, sigma = _robust_weights(residual, kind, dark_scale, sigma if cfg.monotone_scale else 0.0,
                                        prior if cfg.weighted_scale else None)
        coef = _solve(design, colours, prior * robust / level**2, penalty)
    return coef, robust, sigma


def _fit_cost(normals: np.ndarray, colours: np.ndarray, weights: np.ndarray, d: np.ndarray, penalty: np.ndarray):
    """Weighted residual of the SH + max(0, n·d) fit, and whether the key light adds light (lum d > 0).
    (The reference for _fit_costs, which the search uses.)"""
    design = _design(normals, d)
    coef = _solve(design, colours, weights, penalty)
    cost = float((weights * ((colours - design @ coef) ** 2).sum(1)).sum())
    return cost, float(coef[-1] @ LUMA) > 0


def _fit_costs(
    basis: np.ndarray,
    normals: np.ndarray,
    colours: np.ndarray,
    weights: np.ndarray,
    directions: np.ndarray,
    penalty: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """_fit_cost for many directions at once (the SH block of the normal equations is shared): (costs, adds)."""
    k = np.clip(normals @ directions.T, 0.0, None)  # (T, D) clamped cosines
    wb, wk = basis * weights[:, None], k * weights[:, None]
    gram = np.zeros((len(directions), SH_COEFFS + 1, SH_COEFFS + 1))
    gram[:, :SH_COEFFS, :SH_COEFFS] = wb.T @ basis
    cross = (wb.T @ k).T  # (D, 9)
    gram[:, :SH_COEFFS, SH_COEFFS] = cross
    gram[:, SH_COEFFS, :SH_COEFFS] = cross
    gram[:, SH_COEFFS, SH_COEFFS] = (wk * k).sum(0)
    rhs = np.zeros((len(directions), SH_COEFFS + 1, colours.shape[1]))
    rhs[:, :SH_COEFFS] = wb.T @ colours
    rhs[:, SH_COEFFS] = wk.T @ colours
    trace = np.trace(gram, axis1=1, axis2=2) / (SH_COEFFS + 1)
    gram_p = gram + penalty[None, :, None] * np.eye(SH_COEFFS + 1)[None] * trace[:, None, None]
    coef = np.linalg.solve(gram_p, rhs)  # (D, 10, C)
    yy = float((weights * (colours**2).sum(1)).sum())
    cost = yy - 2 * np.einsum("dkc,dkc->d", coef, rhs) + np.einsum("dkc,dkj,djc->d", coef, gram, coef)
    return cost, coef[:, SH_COEFFS] @ LUMA > 0


def _key_directions(
    normals: np.ndarray, colours: np.ndarray, weights: np.ndarray, cfg: DelightConfig, count: int = 1
) -> list[np.ndarray]:
    """The directions whose clamped cosine, added to the SH, best explain the (robustly weighted) colours:
    the `count` best coarse candidates at least cfg.start_separation apart, each refined locally."""
    penalty = _penalty(SH_COEFFS + 1, cfg)
    basis = sh_basis(normals)
    candidates = fibonacci_sphere(cfg.direction_candidates)
    costs, adds = _fit_costs(basis, normals, colours, weights, candidates, penalty)
    costs = np.where(adds, costs, np.inf)
    if not np.isfinite(costs).any():
        return [np.array([0.0, 1.0, 0.0])]
    chosen: list[int] = []
    for i in np.argsort(costs):
        if not np.isfinite(costs[i]) or len(chosen) == count:
            break
        # l and -l give the same fit (their difference n·l is in the SH span): one axis, one start
        if all(abs(candidates[i] @ candidates[j]) < math.cos(math.radians(cfg.start_separation)) for j in chosen):
            chosen.append(int(i))
    return [_refine(basis, normals, colours, weights, candidates[i], float(costs[i]), penalty) for i in chosen]


def _refine(basis, normals, colours, weights, best, best_cost, penalty) -> np.ndarray:
    """A local search on ever smaller circles (8 degrees, halved 5 times) around a direction."""
    step = math.radians(8.0)
    angles = np.linspace(0, 2 * math.pi, 8, endpoint=False)
    for _ in range(5):
        tangent = np.linalg.svd(best[None])[2][1:]
        ring = best[None] * math.cos(step) + math.sin(step) * (
            np.cos(angles)[:, None] * tangent[0] + np.sin(angles)[:, None] * tangent[1]
        )
        ring /= np.linalg.norm(ring, axis=1, keepdims=True)
        cost, add = _fit_costs(basis, normals, colours, weights, ring, penalty)
        cost = np.where(add, cost, np.inf)
        if cost.min() < best_cost:
            best, best_cost = ring[int(np.argmin(cost))], float(cost.min())
        step /= 2
    return best


def _robust_loss(
    design: np.ndarray, coef: np.ndarray, colours: np.ndarray, prior: np.ndarray, sigma: float, cfg: DelightConfig
) -> float:
    """Mean Tukey loss ρ(u) in [0, 1] (prior-weighted) of the relative, dark-scaled residuals at scale sigma."""
    level = _predicted_level(design, coef) if cfg.relative else np.ones(len(colours))
    residual = (colours - design @ coef) / level[:, None]
    u = np.where(residual @ LUMA < 0, cfg.dark_scale, 1.0) * np.linalg.norm(residual, axis=1) / sigma
    rho = np.where(u < TUKEY_C, 1 - (1 - np.minimum(u / TUKEY_C, 1.0) ** 2) ** 3, 1.0)
    return float((prior * rho).sum() / max(prior.sum(), 1e-12))


def _fits_from(
    normals: np.ndarray,
    colours: np.ndarray,
    prior: np.ndarray,
    start: np.ndarray | None,
    search: np.ndarray,
    cfg: DelightConfig,
) -> list[tuple]:
    """One start of the robust fit: SH-only IRLS, key-direction search on its weights, then an IRLS with each
    of the best few key directions: [(coef, robust, sigma, direction)]."""
    coef, robust, sigma = _irls(sh_basis(normals), colours, prior, cfg, start)
    if not cfg.directional:
        return [(coef, robust, sigma, None)]
    if start is None:  # search on the SH-only robust fit's weights
        level = _predicted_level(sh_basis(normals), coef) if cfg.relative else np.ones(len(colours))
        weights = (prior * robust / level**2)[search]
    else:  # search on the start's texels alone, before any IRLS can drift away from them
        sh_only = _solve(sh_basis(normals), colours, start, _penalty(SH_COEFFS, cfg))
        level = _predicted_level(sh_basis(normals), sh_only) if cfg.relative else np.ones(len(colours))
        weights = (start / level**2)[search]
    fits = []
    for direction in _key_directions(normals[search], colours[search], weights, cfg, cfg.directions_per_start):
        c, r, s = _irls(_design(normals, direction), colours, prior, cfg, start)
        if float(c[-1] @ LUMA) > 0:
            fits.append((c, r, s, direction))
    return fits or [(coef, robust, sigma, None)]


def estimate_lighting(
    colours: np.ndarray, normals: np.ndarray, cfg: DelightConfig | None = None, prior: np.ndarray | None = None
) -> Lighting:
    """Fit the shading model to (T, 3) linear colours at (T, 3) unit normals (one sample per texel).

    `prior` (T,) in [0, 1]: how much each texel may tell about the light (texture_prior), 1 if None.
    """
    cfg = cfg or DelightConfig()
    colours = np.asarray(colours, np.float64)
    normals = np.asarray(normals, np.float64)
    prior = np.ones(len(colours)) if prior is None else np.asarray(prior, np.float64)
    all_normals = normals
    rng = np.random.default_rng(cfg.seed)
    if len(colours) > cfg.max_samples:
        pick = rng.choice(len(colours), cfg.max_samples, replace=False)
        colours, normals, prior = colours[pick], normals[pick], prior[pick]
    search = rng.choice(len(colours), min(len(colours), cfg.search_samples), replace=False)
    starts: dict[str, np.ndarray | None] = {"all": None}
    if cfg.bright_start:
        lum = colours @ LUMA
        starts["bright"] = prior * (lum >= np.percentile(lum, cfg.bright_percentile))
    # every start on the search subset; the winner is fitted again on all the samples
    sub_n, sub_c, sub_p = normals[search], colours[search], prior[search]
    everything = np.arange(len(search))
    fits = [
        (name, f"{name}{i}", *fit)
        for name, start in starts.items()
        for i, fit in enumerate(
            _fits_from(sub_n, sub_c, sub_p, None if start is None else start[search], everything, cfg)
        )
    ]
    if cfg.select_model:  # the simpler models: one constant shading (no light varies with the normal), SH only
        basis = sh_basis(sub_n)
        for label, cols in (("constant", 1), ("sh", SH_COEFFS)):
            c, r, sg = _irls(basis[:, :cols], sub_c, sub_p, cfg)
            fits.append(("all", label, _pad_sh(c), r, sg, None))
    sigma_ref = min(f[4] for f in fits)
    losses = [_robust_loss(_design(sub_n, f[5]), f[2], sub_c, sub_p, sigma_ref, cfg) for f in fits]
    scores = [loss + cfg.model_penalty * _parameters(f[1], f[5]) for f, loss in zip(fits, losses, strict=True)]
    chosen = int(np.argmin(scores))
    light_gain = None
    if cfg.select_model:  # no light without clear evidence: albedo laid out by the normal (hair) can fake a weak one
        constant = next(i for i, f in enumerate(fits) if f[1] == "constant")
        light_gain = losses[constant] - min(v for i, v in enumerate(losses) if i != constant)
        if light_gain < cfg.light_min_gain:
            chosen = constant
    start_name, direction = fits[chosen][1], fits[chosen][5]
    cols = 1 if start_name == "constant" else SH_COEFFS
    if direction is not None:
        coef, robust, sigma = _irls(_design(normals, direction), colours, prior, cfg, starts[fits[chosen][0]])
    if direction is None or float(coef[-1] @ LUMA) <= 0:
        direction = None
        coef, robust, sigma = _irls(sh_basis(normals)[:, :cols], colours, prior, cfg, starts[fits[chosen][0]])
        coef = _pad_sh(coef)
    second = None
    if cfg.second_material and start_name != "constant":
        start = starts[fits[chosen][0]]
        coef, robust, sigma, second, state = _second_material(
            _design(normals, direction), colours, prior, coef, robust, sigma, cfg, start
        )
        if state is not None and direction is not None and cfg.material_search:
            # the key's direction searched again with the second material's colour divided out: a light whose
            # best-lit normals are all hair (a key from above) is found from the hair's own shading
            adjusted = np.where(state["member"][:, None], colours / state["g"][None], colours)
            level = _predicted_level(_design(normals, direction), coef)
            w = state["weight"] * robust / level**2
            (d_new,) = _key_directions(normals[search], adjusted[search], w[search], cfg, 1)
            if abs(float(d_new @ direction)) < math.cos(math.radians(2.0)):
                c0, r0, s0 = _irls(_design(normals, d_new), colours, prior, cfg, start)
                c2, r2, s2, info2, state2 = _second_material(_design(normals, d_new), colours, prior, c0, r0, s0, cfg,
                                                             start)
                if state2 is not None and float(c2[-1] @ LUMA) > 0:
                    ref = min(sigma, s2)
                    old_loss = _material_loss(_design(normals, direction), coef, colours, state, ref, cfg)
                    new_loss = _material_loss(_design(normals, d_new), c2, colours, state2, ref, cfg)
                    second = {**(second or {}), "searched": bool(new_loss < old_loss),
                              "losses": [round(old_loss, 4), round(new_loss, 4)]}
                    if new_loss < old_loss:
                        coef, robust, sigma, direction = c2, r2, s2, d_new
                        second.update(info2)
    if direction is not None:
        coef, direction = _bright_side(coef, direction)
    coef = coef / np.maximum((_design(all_normals, direction) @ coef).mean(0), 1e-9)[None]  # grey on average
    shading = _design(all_normals, direction) @ coef
    well_lit = np.percentile(shading @ LUMA, WELL_LIT_PERCENTILE)  # the well-lit constraint: P95 lum(s) = 1
    coef = coef / max(float(well_lit), 1e-9)
    inlier = (robust * prior) > 0.5
    supported = (_design(normals[inlier], direction) @ coef) @ LUMA if inlier.sum() >= 20 else np.zeros(1)
    floor = max(cfg.shading_floor, float(np.percentile(supported, cfg.floor_percentile)))
    return Lighting(
        sh=coef[:SH_COEFFS].T.copy(),
        direction=direction,
        directional=None if direction is None else coef[SH_COEFFS].copy(),
        inlier_share=float((robust > 0).mean()),
        residual_sigma=sigma,
        samples=len(colours),
        floor=floor,
        extra={"second_material": second, "start": start_name,
               "model_choice": "constant" if start_name == "constant" else "sh" if direction is None else "sh+key",
               "start_losses": {f[1]: round(v, 4) for f, v in zip(fits, losses, strict=True)},
               "light_gain": None if light_gain is None else round(light_gain, 4)},
    )


def _second_material(
    design: np.ndarray,
    colours: np.ndarray,
    prior: np.ndarray,
    coef: np.ndarray,
    robust: np.ndarray,
    sigma: float,
    cfg: DelightConfig,
    start: np.ndarray | None,
):
    """Refit with a second, darker material (hair) that shares the shading: c_t = g ⊙ (D_t β) on its texels.

    Its texels: busy (prior < material_prior: strands) and darker than material_ratio x the fit. Per channel,
    skin rows c = D β and hair rows c = g D β; g is found by a 1-D search of the profiled least squares (β in
    closed form for each g), inside the IRLS as in _irls (relative residuals; the hair's at their own scale, the
    MAD ratio of the two materials, without the darker-than-fit penalty: strands scatter both ways). The hair's
    own shading then constrains the light on the normals only hair has (a cap over every upward normal) and the
    hairline ties the two levels, instead of the SH's extrapolation from the skin. (Alternating between g and
    β stalls: along the cap's level every g is nearly a fixed point. Solving for h = 1/g linearly collapses to
    h = 0 with no light on the cap.) Returns (coef, robust, sigma, info, state); info and state None without
    a second material; state: member (T,), g (3,), spread (T,), weight (T,).
    """
    predicted = design @ coef
    ratio = (colours @ LUMA) / np.maximum(predicted @ LUMA, 1e-9)
    off = (ratio < cfg.material_ratio) | (ratio > 1 / cfg.material_ratio if cfg.brighter_material else False)
    member = (prior < cfg.material_prior) & off
    if member.mean() < cfg.material_share or (~member).sum() < 50:
        return coef, robust, sigma, None, None
    K = design.shape[1]
    penalty = _penalty(K, cfg)
    weight = np.where(member, np.maximum(prior, cfg.material_weight), prior)
    g = np.array([_weighted_median(colours[member, c] / np.maximum(predicted[member, c], 1e-9), weight[member])
                  for c in range(3)])
    g = np.clip(g, 1e-3, 10.0)

    def solve(w: np.ndarray, g_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        beta, g_new = np.zeros((K, 3)), np.zeros(3)
        for c in range(3):
            ws = np.where(member, 0.0, w)
            wh = np.where(member, w / g_prev[c] ** 2, 0.0)  # relative: hair residuals c - g D β are g times smaller
            gram_s, gram_h = (design * ws[:, None]).T @ design, (design * wh[:, None]).T @ design
            r_s, r_h = (design * ws[:, None]).T @ colours[:, c], (design * wh[:, None]).T @ colours[:, c]

            def profile(log_g: float, gram_s=gram_s, gram_h=gram_h, r_s=r_s, r_h=r_h) -> tuple[float, np.ndarray]:
                gg = math.exp(log_g)
                gram = gram_s + gg * gg * gram_h
                gram = gram + np.diag(penalty * np.trace(gram) / K)
                rhs = r_s + gg * r_h
                b = np.linalg.solve(gram, rhs)
                return -float(rhs @ b), b

            lo, hi = math.log(1e-3), math.log(10.0)  # golden section on log g, to 1e-4 relative
            m1, m2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
            f1, f2 = profile(m1)[0], profile(m2)[0]
            while hi - lo > 1e-4:
                if f1 < f2:
                    hi, m2, f2 = m2, m1, f1
                    m1 = hi - GOLDEN * (hi - lo)
                    f1 = profile(m1)[0]
                else:
                    lo, m1, f1 = m1, m2, f2
                    m2 = lo + GOLDEN * (hi - lo)
                    f2 = profile(m2)[0]
            g_new[c] = math.exp(0.5 * (lo + hi))
            beta[:, c] = profile(0.5 * (lo + hi))[1]
        return beta, g_new

    level = _predicted_level(design, coef)
    beta, g = solve(weight * (robust if start is None else np.ones(len(colours))) / level**2, g)
    dark_scale = np.where(member, 1.0, cfg.dark_scale)
    spread = None
    sigma = 0.0
    for it in range(cfg.huber_iterations + cfg.tukey_iterations):
        predicted = design @ beta
        level = _predicted_level(design, beta, predicted)
        target = np.where(member[:, None], colours / g[None], colours)
        residual = (target - predicted) / level[:, None]
        if spread is None:
            e = np.linalg.norm(residual, axis=1)
            mad = _weighted_median(e[member], weight[member]) / max(_weighted_median(e[~member], weight[~member]), 1e-9)
            spread = np.where(member, max(1.0, mad), 1.0)
        kind = "huber" if it < cfg.huber_iterations else "tukey"
        robust, sigma = _robust_weights(residual, kind, dark_scale / spread, sigma if cfg.monotone_scale else 0.0,
                                        weight if cfg.weighted_scale else None)
        beta, g = solve(weight * robust / level**2, g)
    info = {"share": round(float(member.mean()), 4), "ratio": np.round(g, 4).tolist()}
    state = {"member": member, "g": g, "spread": spread, "weight": weight}
    return beta, robust, sigma, info, state


def _material_loss(design: np.ndarray, coef: np.ndarray, colours: np.ndarray, state: dict, sigma: float,
                   cfg: DelightConfig) -> float:
    """_robust_loss of a two-material fit: the second material's colours divided by its ratio g, its residuals at
    its own spread and without the darker-than-fit penalty."""
    member = state["member"]
    level = _predicted_level(design, coef)
    target = np.where(member[:, None], colours / state["g"][None], colours)
    residual = (target - design @ coef) / level[:, None]
    scale = np.where(member, 1.0, np.where(residual @ LUMA < 0, cfg.dark_scale, 1.0)) / state["spread"]
    u = scale * np.linalg.norm(residual, axis=1) / sigma
    rho = np.where(u < TUKEY_C, 1 - (1 - np.minimum(u / TUKEY_C, 1.0) ** 2) ** 3, 1.0)
    return float((state["weight"] * rho).sum() / max(state["weight"].sum(), 1e-12))


def _pad_sh(coef: np.ndarray) -> np.ndarray:
    """(K, C) coefficients of the first K SH functions -> (9, C) (zeros above)."""
    if len(coef) >= SH_COEFFS:
        return coef
    return np.concatenate([coef, np.zeros((SH_COEFFS - len(coef), coef.shape[1]))], 0)


def _parameters(label: str, direction: np.ndarray | None) -> int:
    """Free parameters per channel of a model (the key's direction counts as 2)."""
    if label == "constant":
        return 1
    return SH_COEFFS + (0 if direction is None else 3)


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


def delight_colours(
    colours_srgb: np.ndarray, normals: np.ndarray, lighting: Lighting, floor: float | None = None
) -> np.ndarray:
    """De-lit sRGB colours: decode, a = c / max(s(n), s_min), encode; (N, 3) in [0, 1].

    s_min = max(floor, lighting.floor) bounds lum(s) (the light's colour is kept): below the darkest shading
    the fit saw on inliers, s would be a guess.
    """
    shading = lighting.shading(normals)
    level = shading @ LUMA
    s_min = max(floor or 0.0, lighting.floor)
    shading = shading * (np.maximum(level, s_min) / np.maximum(level, 1e-9))[:, None]  # lum(s) >= s_min, hue kept
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


def texture_prior(colours_srgb: np.ndarray, painted: np.ndarray, window: int = 5, sigma: float = 0.12) -> np.ndarray:
    """π_t in (0, 1] per texel of an (S, S, 3) atlas: low where the albedo is busy (hair, stubble).

    Shading is smooth across a few texels, strands are not, so the local std of log luminance (over the
    painted texels of a `window` square) is albedo texture, whatever the light:

        π_t = 1 / (1 + (std_t / σ)²)
    """
    from scipy.ndimage import uniform_filter

    lum = np.log(np.maximum(srgb_to_linear(colours_srgb) @ LUMA, 1e-3))
    mask = painted.astype(np.float64)
    count = np.maximum(uniform_filter(mask, window, mode="constant"), 1e-9)
    mean = uniform_filter(lum * mask, window, mode="constant") / count
    var = np.maximum(uniform_filter(lum**2 * mask, window, mode="constant") / count - mean**2, 0.0)
    return 1.0 / (1.0 + var / sigma**2)


def delight_atlas(
    colours_srgb: np.ndarray, normals: np.ndarray, painted: np.ndarray, cfg: DelightConfig
) -> tuple[Lighting, np.ndarray]:
    """Fit the lighting to the painted texels of an (S, S, 3) sRGB atlas and divide it out: (lighting, de-lit)."""
    import time

    start = time.perf_counter()
    colours = colours_srgb[painted].astype(np.float64)
    prior = texture_prior(colours_srgb, painted, cfg.texture_window, cfg.texture_sigma)[painted]
    lighting = estimate_lighting(srgb_to_linear(colours), normals[painted], cfg, prior)
    delit = np.zeros(colours_srgb.shape, np.float64)
    delit[painted] = delight_colours(colours, normals[painted], lighting, cfg.shading_floor)
    lighting.extra["seconds"] = round(time.perf_counter() - start, 3)
    return lighting, delit
