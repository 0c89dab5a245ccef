"""Guidance for the two SpinMeRound runs (SPINMEROUND.md §5.4, §5.5, §2.4, §2.6).

- SpinMeRoundCFG: classifier-free guidance on the x0-estimates, D = D_u + s (D_c - D_u), with conditioning
  views clamped to their clean latents; in the unconditional branch they become the `empty_image` latent with
  all 145 camera/mask channels zeroed and the context is the unconditional ("") embedding. Both branches run
  in one network call of 2N frames ordered [uncond N; cond N], so frame groups never mix. The returned
  D of a conditioning frame is its clean latent (the released guider returns the network's estimate,
  which the sampler then overwrites: the samples are the same). That lets the network skip finishing
  those frames (`prune_frames`, smr_core.unet): 2 of 16 frames of an 8-view pass, 6 of 16 when three
  views condition.
- masked L2 guidance of the normals run: D <- D - w grad mean(m (D - z)^2), mean over ALL elements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from smr_core.denoiser import COND_CHANNELS, LATENT_CHANNELS, ConditionBuffer, Denoiser
from smr_core.errors import InputError
from smr_core.pose import conditioning_mask

DenoiserFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Conditioning:
    """Per-frame conditioning of one branch: camera/mask channels (N, 145, H, W) and context (N or 1, 77, D)."""

    cond_images: Tensor
    context: Tensor


def frame_indices(frames: Tensor | Sequence[int] | Sequence[bool], n: int) -> list[int]:
    """Sorted distinct frame indices from explicit indices or one boolean per frame."""
    flags = torch.as_tensor(frames).cpu()
    if flags.dtype == torch.bool:
        if flags.shape != (n,):
            raise InputError(f"boolean conditioning frames need one flag per frame ({n}), got {tuple(flags.shape)}")
        return torch.nonzero(flags).flatten().tolist()
    indices = [int(i) for i in flags.flatten().tolist()]
    if any(not 0 <= i < n for i in indices) or len(set(indices)) != len(indices):
        raise InputError(f"conditioning frames must be distinct indices in [0, {n}), got {indices}")
    return sorted(indices)


def resolve_conditioning_frames(
    cond_images: Tensor, conditioning_frames: Tensor | Sequence[int] | Sequence[bool] | None
) -> list[int]:
    """Indices of the conditioning (clamped) frames: explicit indices or booleans, else mask channel 0 at (0, 0).

    Resolved once before sampling (one host sync at most), never inside the loop.
    """
    if conditioning_frames is None:
        return torch.nonzero(conditioning_mask(cond_images).cpu()).flatten().tolist()
    return frame_indices(conditioning_frames, cond_images.shape[0])


def _expand_context(context: Tensor, n: int, name: str) -> Tensor:
    if context.ndim != 3 or context.shape[0] not in (1, n):
        raise InputError(f"{name} must be (1 or {n}, tokens, dim), got {tuple(context.shape)}")
    return context.expand(n, -1, -1)


class SpinMeRoundCFG:
    """The released VanillaCFGSpMR guider, with every per-run constant built once.

    Call clamp_(x) before each denoising (writes the clean latents into the conditioning frames of the
    sampler state, in place, as the official guider does), then guider(x, sigma) -> CFG-combined D.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        cond: Conditioning,
        uncond: Conditioning | Tensor,
        empty_image: Tensor | None,
        cfg_scale: float,
        conditioning_frames: Tensor | Sequence[int] | Sequence[bool] | None = None,
        num_frames: int | None = None,
        prune_frames: bool = True,
    ) -> None:
        n, c, h, w = x.shape
        if c != LATENT_CHANNELS:
            raise InputError(f"x must have {LATENT_CHANNELS} latent channels (RGB + normals), got {tuple(x.shape)}")
        if cond.cond_images.shape != (n, COND_CHANNELS, h, w):
            raise InputError(
                f"cond.cond_images must be ({n}, {COND_CHANNELS}, {h}, {w}) to match x, got "
                f"{tuple(cond.cond_images.shape)}; build it with smr_core.pose.cond_images"
            )
        self.num_frames = n if num_frames is None else num_frames
        if self.num_frames <= 0 or n % self.num_frames:
            raise InputError(f"num_frames ({self.num_frames}) must divide the number of frames ({n})")
        device = x.device
        frames = resolve_conditioning_frames(cond.cond_images, conditioning_frames)
        self.picked = torch.tensor(frames, dtype=torch.long, device=device)
        self.gt = x[self.picked].detach().clone().float()
        if frames and empty_image is not None:
            if empty_image.ndim == 3:
                empty_image = empty_image[None]
            if (
                empty_image.ndim != 4
                or empty_image.shape[1:] != (c, h, w)
                or empty_image.shape[0] not in (1, len(frames))
            ):
                raise InputError(
                    f"empty_image must be ({c}, {h}, {w}) or (1 or {len(frames)}, {c}, {h}, {w}) (the grey-image "
                    f"latent repeated to 8 channels), got {tuple(empty_image.shape)}"
                )
            self.empty = empty_image.to(device, torch.float32).expand(len(frames), -1, -1, -1).contiguous()
        else:
            self.empty = None

        if isinstance(uncond, Conditioning):
            uncond_images, uncond_context = uncond.cond_images, uncond.context
            if uncond_images.shape != cond.cond_images.shape:
                raise InputError(f"uncond.cond_images {tuple(uncond_images.shape)} must match cond's")
        else:
            uncond_images = cond.cond_images.clone()
            uncond_images[frames] = 0.0
            uncond_context = uncond
        cond_images2 = torch.cat([uncond_images, cond.cond_images]).to(device, torch.float32)
        self.cond_buffer = ConditionBuffer(cond_images2)
        self.context2 = torch.cat(
            [_expand_context(uncond_context, n, "uncond context"), _expand_context(cond.context, n, "cond context")]
        ).to(device)
        self.x2 = torch.empty(2 * n, c, h, w, device=device, dtype=torch.float32)
        targets = sorted(set(range(n)) - set(frames))
        self.targets = torch.tensor(targets, dtype=torch.long, device=device)
        # frames whose network output is used: the targets of both halves (None: all, nothing to prune)
        self.keep: Tensor | None = None
        if prune_frames and frames and targets and denoiser.supports_frame_pruning:
            self.keep = torch.cat([self.targets, self.targets + n])
        self.denoiser = denoiser
        self.cfg_scale = float(cfg_scale)
        self.n = n

    def clamp_(self, x: Tensor) -> Tensor:
        """Reset the conditioning frames of x to their clean latents (in place)."""
        return x.index_copy_(0, self.picked, self.gt)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        n = self.n
        self.x2[:n] = x
        self.x2[n:] = x
        if self.empty is not None:
            self.x2.index_copy_(0, self.picked, self.empty)  # uncond half only: it comes first
        sigma2 = torch.cat([sigma, sigma])
        denoised = self.denoiser(self.x2, sigma2, self.cond_buffer, self.context2, self.num_frames, self.keep)
        d_u, d_c = denoised.chunk(2)
        guided = d_u + self.cfg_scale * (d_c - d_u)
        if self.keep is not None:
            guided = torch.empty_like(x).index_copy_(0, self.targets, guided)
        if len(self.picked):
            guided.index_copy_(0, self.picked, self.gt)
        return guided


def masked_l2_loss(denoised: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """L = mean(m (D - z)^2) over all elements (including the masked-out ones), as in the released code."""
    return (mask * (denoised - target) ** 2).mean()


def masked_l2_grad(denoised: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """dL/dD in closed form: 2 m (D - z) / N, N = number of elements of the broadcast product.

    N makes the effective pull depend on the tensor size (2w/N = 6.10 at one 8x64x64 latent, §7.4).
    """
    numel = torch.Size(torch.broadcast_shapes(denoised.shape, target.shape, mask.shape)).numel()
    return 2.0 * mask * (denoised - target) / numel


def guide_denoised(denoised: Tensor, target: Tensor, mask: Tensor, weight: float) -> Tensor:
    """Released normals guidance: D <- D - w dL/dD (an over-relaxed pull of the masked channels towards z)."""
    return denoised - weight * masked_l2_grad(denoised, target, mask)


def guide_through_x(
    denoiser_fn: DenoiserFn, x: Tensor, sigma: Tensor, target: Tensor, mask: Tensor, weight: float
) -> Tensor:
    """Algorithm-1 style guidance: D <- D - w dL(D(x))/dx, the gradient taken through the network w.r.t. x.

    The update is applied to D (not to x) so that this variant and the released one share the Euler step,
    weight 0 reproduces the unguided sampler, and w keeps the same units; since d = (x - D)/sigma, it equals
    adding -(w/sigma^2) dL/dx to the score (DPS-style likelihood guidance).
    """
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        denoised = denoiser_fn(x_in, sigma)
        loss = masked_l2_loss(denoised, target, mask)
        (grad_x,) = torch.autograd.grad(loss, x_in)
    return denoised.detach() - weight * grad_x
