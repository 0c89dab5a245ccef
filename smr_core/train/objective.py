"""The EDM training objective of SpinMeRound (SPINMEROUND.md §5.1), written as the paper's equations.

    ln sigma ~ N(P_mean, P_std^2)                      (P_mean = 0.7, P_std = 1.6)
    x        = x0 + sigma eps                          (target frames; conditioning frames stay x0)
    D        = c_skip x + c_out F(c_in x (+) cond, c_noise, context)
    lambda   = (1 + sigma^2) / sigma^2 = 1 / c_out^2
    loss     = lambda ||D - x0||^2 = ||F - v||^2,    v = (eps - sigma x0) / sqrt(1 + sigma^2)

The second form (a plain MSE on the v-target) is what we compute: it never forms 1/sigma^2 and the
first form's cancellation in D - x0, so it stays accurate at small sigma. tests/test_train_objective.py
checks that both forms agree. Only target frames enter the mean: conditioning frames are clean
inputs, not predictions (the release's `mask_loss`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from smr_core.denoiser import append_dims


def sample_sigmas(n: int, p_mean: float, p_std: float, generator: torch.Generator) -> Tensor:
    """n noise levels with ln sigma ~ N(p_mean, p_std^2), float32 on the generator's device."""
    ln_sigma = p_mean + p_std * torch.randn(n, generator=generator, device=generator.device)
    return ln_sigma.exp()


def loss_weight(sigma: Tensor) -> Tensor:
    """lambda(sigma) = (1 + sigma^2) / sigma^2 = 1 / c_out(sigma)^2."""
    return (1.0 + sigma**2) / sigma**2


def v_target(x0: Tensor, eps: Tensor, sigma: Tensor) -> Tensor:
    """v = (eps - sigma x0) / sqrt(1 + sigma^2): what F must output for D(x0 + sigma eps) = x0; sigma per frame."""
    s = append_dims(sigma, x0.ndim)
    return (eps - s * x0) / (1.0 + s**2) ** 0.5


def noisy_input(x0: Tensor, eps: Tensor, sigma: Tensor, is_target: Tensor) -> Tensor:
    """x = x0 + sigma eps on target frames; conditioning frames stay clean (§7 item 2)."""
    s = append_dims(sigma, x0.ndim)
    keep = append_dims(is_target.to(x0.dtype), x0.ndim)
    return x0 + keep * s * eps


def per_frame_v_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each frame (N,), in at least fp32 whatever the prediction's precision (bf16)."""
    dtype = torch.promote_types(torch.promote_types(prediction.dtype, target.dtype), torch.float32)
    return (prediction.to(dtype) - target.to(dtype)).square().flatten(1).mean(dim=1)


def masked_mean(per_frame: Tensor, is_target: Tensor) -> Tensor:
    """Mean of per-frame losses over target frames only; conditioning frames get zero weight (and gradient)."""
    w = is_target.to(per_frame.dtype)
    return (per_frame * w).sum() / w.sum().clamp(min=1.0)


def weighted_denoiser_loss(denoised: Tensor, x0: Tensor, sigma: Tensor) -> Tensor:
    """The paper's form lambda(sigma) ||D - x0||^2 per frame (N,): for checks, not for training."""
    return loss_weight(sigma) * (denoised - x0).square().flatten(1).mean(dim=1)


def bucket_index(sigma: Tensor, edges: tuple[float, ...]) -> Tensor:
    """Bucket of each sigma: 0 below edges[0], k for edges[k-1] <= sigma < edges[k], len(edges) above."""
    return torch.bucketize(sigma.float().cpu(), torch.tensor(edges, dtype=torch.float32), right=True)


def bucket_labels(edges: tuple[float, ...]) -> list[str]:
    """Readable names of the buckets, e.g. 'sigma<0.1', '0.1-0.5', ..., '>=50'."""
    inner = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"<{edges[0]:g}", *inner, f">={edges[-1]:g}"]
