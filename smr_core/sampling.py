"""Samplers as plain functions (k-diffusion style), SPINMEROUND.md §5.3-§5.5.

denoiser_fn(x, sigma) -> D(x; sigma) takes x (N, C, ...) and sigma (N,) and returns the x0-estimate.
sigmas is a descending 1-D schedule ending at 0 (smr_core.discretization); it is read to the host once, so
the loop makes no host-device syncs: step sizes are Python floats, the per-frame sigma tensors are built on
the device before the loop. Every sampler takes a torch.Generator (churn noise) and a per-step callback
receiving {"x", "i", "sigma", "sigma_hat", "denoised"} before the update (tensors are live: clone to keep).

Conventions: sample_euler_edm takes x already at noise level sigma_0 (k-diffusion). The SpinMeRound samplers
take unit noise (plus clean latents at conditioning frames) and scale it by sqrt(1 + sigma_0^2) themselves,
as sgm does, because that is the variance of x0 + sigma_0 eps for unit-variance latents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from smr_core.denoiser import LATENT_CHANNELS, Denoiser, NetworkFn, append_dims
from smr_core.errors import InputError
from smr_core.guidance import (
    Conditioning,
    DenoiserFn,
    SpinMeRoundCFG,
    frame_indices,
    guide_denoised,
    guide_through_x,
)

Callback = Callable[[dict[str, Any]], None]


def to_d(x: Tensor, sigma: Tensor | float, denoised: Tensor) -> Tensor:
    """The probability-flow ODE derivative dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. eq. 3 with s = 1)."""
    if torch.is_tensor(sigma):
        sigma = append_dims(sigma, x.ndim)
    return (x - denoised) / sigma


def churn_gamma(sigma: float, num_steps: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """EDM's stochasticity: gamma = min(S_churn / num_steps, sqrt(2) - 1) if S_tmin <= sigma <= S_tmax, else 0."""
    return min(s_churn / num_steps, 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0


def prior_scale(sigma_0: float) -> float:
    """sqrt(1 + sigma_0^2): std of x0 + sigma_0 eps for unit-variance latents; scales unit noise to the prior."""
    return math.sqrt(1.0 + sigma_0**2)


def _host_sigmas(sigmas: Tensor | Sequence[float]) -> list[float]:
    values = [float(s) for s in (sigmas.detach().cpu().flatten() if torch.is_tensor(sigmas) else sigmas)]
    if torch.is_tensor(sigmas) and sigmas.ndim != 1:
        raise InputError(f"sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
    if len(values) < 2:
        raise InputError("sigmas needs at least two values (sigma_0 ... 0); use smr_core.discretization.edm_sigmas")
    if any(not a > b for a, b in zip(values[:-1], values[1:], strict=True)) or values[-1] < 0:
        raise InputError("sigmas must be strictly decreasing and non-negative (e.g. edm_sigmas(50), ending at 0)")
    return values


class _FrameClamp:
    """Frames whose latents are held at clean values (conditioning views): reset in place before each step."""

    def __init__(self, x: Tensor, frames: Sequence[int]) -> None:
        self.index = torch.tensor(list(frames), dtype=torch.long, device=x.device)
        self.latents = x[self.index].detach().clone()

    def __call__(self, x: Tensor) -> Tensor:
        return x.index_copy_(0, self.index, self.latents)


@torch.no_grad()
def _euler_edm_loop(
    denoise: DenoiserFn,
    x: Tensor,
    sigmas: list[float],
    *,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    generator: torch.Generator | None,
    callback: Callback | None,
    progress: bool,
    clamp: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Euler on the probability-flow ODE with EDM churn (Karras et al. Alg. 2 without the Heun correction)."""
    num_steps = len(sigmas) - 1
    gammas = [churn_gamma(sigmas[i], num_steps, s_churn, s_tmin, s_tmax) for i in range(num_steps)]
    sigma_hats = [sigmas[i] * (1.0 + gammas[i]) for i in range(num_steps)]
    n = x.shape[0]
    sigma_hat_rows = torch.tensor(sigma_hats, dtype=torch.float32, device=x.device)[:, None].expand(num_steps, n)
    for i in tqdm(range(num_steps), disable=not progress, desc="sampling", leave=False):
        sigma, sigma_hat, sigma_next = sigmas[i], sigma_hats[i], sigmas[i + 1]
        if gammas[i] > 0:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + s_noise * eps * (sigma_hat**2 - sigma**2) ** 0.5
        if clamp is not None:
            clamp(x)
        denoised = denoise(x, sigma_hat_rows[i])
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})
        d = to_d(x, sigma_hat, denoised)
        x = x + (sigma_next - sigma_hat) * d
    if clamp is not None:
        clamp(x)
    return x


def sample_euler_edm(
    denoiser_fn: DenoiserFn,
    x: Tensor,
    sigmas: Tensor | Sequence[float],
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """Euler-EDM sampling from x at noise level sigmas[0] (e.g. x = sigmas[0] * randn) down to sigmas[-1].

    With s_churn = 0 (SpinMeRound's setting) this is plain deterministic Euler on the probability-flow ODE.
    """
    return _euler_edm_loop(
        denoiser_fn,
        x.to(torch.float32, copy=True),  # the loop owns its state: a denoiser_fn may clamp it in place
        _host_sigmas(sigmas),
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
        generator=generator,
        callback=callback,
        progress=progress,
    )


def sample_spinmeround(
    model: Denoiser | NetworkFn,
    x: Tensor,
    sigmas: Tensor | Sequence[float],
    cond: Conditioning,
    uncond: Conditioning | Tensor,
    empty_image: Tensor | None,
    cfg_scale: float = 3.5,
    *,
    conditioning_frames: Tensor | Sequence[int] | Sequence[bool] | None = None,
    num_frames: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    prune_frames: bool = True,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """The multi-view run (§5.3 EulerEDMSamplerSpMR + §5.4 VanillaCFGSpMR).

    x: (N, 8, H, W) float32: clean latents at conditioning frames, unit noise elsewhere (the demo repeats one
    noise tensor over all target frames, §7.1 - the caller decides). N = B * num_frames (default B = 1).
    cond: camera/mask channels and ID context; uncond: the unconditional ("") context, from which the
    unconditional branch is built (conditioning rows zeroed), or a full Conditioning used as given.
    empty_image: the grey-image latent (8, H, W) for conditioning frames in the unconditional branch.
    conditioning_frames: indices or booleans; None detects them as mask channel 0 at pixel (0, 0).
    model: a Denoiser, or a bare network that gets wrapped in one (with autocast_dtype).
    prune_frames: let the network skip finishing conditioning frames, whose output is discarded (exact up to
    float rounding; smr_core.unet); the callback's "denoised" holds their clean latents either way.
    Returns x0 (N, 8, H, W) float32 with the conditioning frames equal to their input latents.
    """
    denoiser = model if isinstance(model, Denoiser) else Denoiser(model, autocast_dtype=autocast_dtype)
    host_sigmas = _host_sigmas(sigmas)
    guider = SpinMeRoundCFG(
        denoiser, x, cond, uncond, empty_image, cfg_scale, conditioning_frames, num_frames, prune_frames=prune_frames
    )
    x = x.float() * prior_scale(host_sigmas[0])
    return _euler_edm_loop(
        guider,
        x,
        host_sigmas,
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
        generator=generator,
        callback=callback,
        progress=progress,
        clamp=guider.clamp_,
    )


def sample_guided_normals(
    denoiser_fn: DenoiserFn,
    x: Tensor,
    sigmas: Tensor | Sequence[float],
    target: Tensor,
    mask: Tensor,
    *,
    weight: float = 1e5,
    gradient_wrt: Literal["denoised", "x"] = "denoised",
    conditioning_frames: Sequence[int] = (),
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """The normals-retrieval run (§2.4, §5.5): Euler-EDM with masked-L2 guidance of D towards target.

    x: unit noise (N, 8, H, W), scaled here by sqrt(1 + sigma_0^2); sigmas: the released run uses
    legacy_ddpm_sigmas(50). target: z repeated to 8 channels; mask: 1 on the RGB-latent channels 0-3.
    gradient_wrt="denoised" (released code): D <- D - w grad_D mean(m (D - z)^2) = D - (2w/N) m (D - z).
    gradient_wrt="x" (paper's Algorithm 1 reading): the gradient goes through the network w.r.t. x and is
    applied to D (see guidance.guide_through_x); it costs a backward pass per step.
    conditioning_frames: frames held at their input latents (the released call has none). Unlike the
    released sampler they are also reset after the last step, as in the multi-view sampler.
    """
    if gradient_wrt not in ("denoised", "x"):
        raise InputError(f"gradient_wrt must be 'denoised' or 'x', got {gradient_wrt!r}")
    if x.ndim != 4 or x.shape[1] != LATENT_CHANNELS:
        raise InputError(f"x must be (N, {LATENT_CHANNELS}, H, W), got {tuple(x.shape)}")
    try:
        torch.broadcast_shapes(x.shape, target.shape, mask.shape)
    except RuntimeError as err:
        raise InputError(
            f"target {tuple(target.shape)} and mask {tuple(mask.shape)} must broadcast to x {tuple(x.shape)}"
        ) from err
    host_sigmas = _host_sigmas(sigmas)
    target = target.to(x.device, torch.float32)
    mask = mask.to(x.device, torch.float32)

    def guided(x_t: Tensor, sigma: Tensor) -> Tensor:
        if gradient_wrt == "x":
            return guide_through_x(denoiser_fn, x_t, sigma, target, mask, weight)
        return guide_denoised(denoiser_fn(x_t, sigma), target, mask, weight)

    frames = frame_indices(list(conditioning_frames), x.shape[0]) if len(conditioning_frames) else []
    clamp = _FrameClamp(x.float(), frames) if frames else None
    return _euler_edm_loop(
        guided,
        x.float() * prior_scale(host_sigmas[0]),
        host_sigmas,
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
        generator=generator,
        callback=callback,
        progress=progress,
        clamp=clamp,
    )
