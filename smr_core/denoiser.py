"""The v-prediction denoiser D(x; sigma) around the multi-view network (SPINMEROUND.md §5.1, §3.2, §2.7).

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x (+) cond_images, c_noise(sigma), context)

with EDM's preconditioning at sigma_data = 1 and the sign of c_out flipped, i.e. F predicts
v = (eps - sigma x0) / sqrt(1 + sigma^2) for x = x0 + sigma eps. c_in scales only the 8 latent channels;
the 145 camera/mask channels reach the network unscaled.

The network is any callable network(x (N,153,H,W), c_noise (N,), context (N,77,D), num_frames) -> (N,8,H,W),
N = B*num_frames; frames of one item are contiguous. It may run under autocast; its output is cast back to
float32 so that the sampler state never leaves fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from smr_core.errors import InputError

LATENT_CHANNELS = 8
COND_CHANNELS = 145

NetworkFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Right-pad t with singleton dims so a per-frame (N,) factor broadcasts over (N, C, H, W)."""
    return t.reshape(*t.shape, *([1] * (ndim - t.ndim)))


def v_scaling(sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """SpinMeRound's preconditioning (sgm's VScalingWithEDMcNoise), per frame: (c_skip, c_out, c_in, c_noise)."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


class Denoiser(nn.Module):
    """Holds the network and applies the v-scaling; the only place where c_skip/c_out/c_in/c_noise are used.

    autocast_dtype: run the network under torch.autocast with this dtype (fp16/bf16 on CUDA for the
    multi-view pass, §2.7); None runs it in the ambient precision. The result is always float32.
    """

    def __init__(self, network: NetworkFn, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.network = network
        self.autocast_dtype = autocast_dtype

    def forward(
        self,
        x: Tensor,
        sigma: Tensor | float,
        cond_images: Tensor | ConditionBuffer,
        context: Tensor,
        num_frames: int,
        keep_frames: Tensor | None = None,
    ) -> Tensor:
        """D(x; sigma) for x (N, 8, H, W), sigma (N,) (or a float for all frames).

        cond_images: (N, 145, H, W), or a ConditionBuffer that already holds them (no per-call concat).
        keep_frames: sorted frame indices (long, on x's device) whose D is wanted; the network drops the
        other frames once they no longer influence these (supports_frame_pruning) and D has len(keep_frames)
        rows. Every frame still enters the network: the kept ones attend to all of them.
        """
        if not torch.is_tensor(sigma):
            sigma = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=torch.float32)
        if sigma.shape != (x.shape[0],):
            raise InputError(f"sigma must have one value per frame, shape ({x.shape[0]},), got {tuple(sigma.shape)}")
        c_skip, c_out, c_in, c_noise = v_scaling(sigma)
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in (c_skip, c_out, c_in))
        if isinstance(cond_images, ConditionBuffer):
            net_in = cond_images.with_latents(c_in * x)
        else:
            net_in = torch.cat([c_in * x, cond_images.to(x.dtype)], dim=1)
        v = self._run_network(net_in, c_noise, context, num_frames, keep_frames).float()
        if keep_frames is not None:
            x, c_skip, c_out = (t.index_select(0, keep_frames) for t in (x, c_skip, c_out))
        return c_skip * x + c_out * v

    @property
    def supports_frame_pruning(self) -> bool:
        """True when the network can finish only some frames (forward's keep_frames)."""
        return bool(getattr(self.network, "supports_frame_pruning", False))

    def _run_network(
        self, net_in: Tensor, c_noise: Tensor, context: Tensor, num_frames: int, keep_frames: Tensor | None
    ) -> Tensor:
        if keep_frames is not None and not self.supports_frame_pruning:
            raise InputError("this network cannot drop frames (no supports_frame_pruning); pass keep_frames=None")
        autocast = (
            torch.autocast(device_type=net_in.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            if keep_frames is None:
                return self.network(net_in, c_noise, context, num_frames)
            return self.network(net_in, c_noise, context, num_frames, keep_frames=keep_frames)

    def conditioned(self, cond_images: Tensor, context: Tensor, num_frames: int) -> ConditionedDenoiser:
        """Bind the conditioning once: returns denoiser_fn(x, sigma) for the plain samplers."""
        return ConditionedDenoiser(self, cond_images, context, num_frames)


class ConditionBuffer:
    """A preallocated network input (N, 8 + 145, H, W) whose camera/mask channels are written once.

    Each call writes c_in * x into channels 0-7 in place and returns the whole buffer, so a 50-step run
    allocates and copies the 145 conditioning channels once instead of every step. The returned tensor is
    overwritten by the next call: it must not be kept (true for a forward pass; the autograd path of the
    x-gradient guidance uses a plain tensor instead).
    """

    def __init__(self, cond_images: Tensor, dtype: torch.dtype = torch.float32) -> None:
        if cond_images.ndim != 4:
            raise InputError(f"cond_images must be (N, C, H, W), got {tuple(cond_images.shape)}")
        n, c, h, w = cond_images.shape
        self.buffer = torch.empty(n, LATENT_CHANNELS + c, h, w, device=cond_images.device, dtype=dtype)
        self.buffer[:, LATENT_CHANNELS:] = cond_images

    @property
    def cond_images(self) -> Tensor:
        return self.buffer[:, LATENT_CHANNELS:]

    def with_latents(self, scaled_x: Tensor) -> Tensor:
        if scaled_x.shape[0] != self.buffer.shape[0] or scaled_x.shape[1] != LATENT_CHANNELS:
            raise InputError(
                f"latents {tuple(scaled_x.shape)} do not fit the conditioning buffer {tuple(self.buffer.shape)}"
            )
        self.buffer[:, :LATENT_CHANNELS] = scaled_x
        return self.buffer


class ConditionedDenoiser:
    """denoiser_fn(x, sigma) -> D with cond_images/context/num_frames bound (k-diffusion's model(x, sigma))."""

    def __init__(self, denoiser: Denoiser, cond_images: Tensor, context: Tensor, num_frames: int) -> None:
        self.denoiser = denoiser
        self.cond_images = cond_images
        self.context = context
        self.num_frames = num_frames
        self._buffer: ConditionBuffer | None = None

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            # autograd may save the network input for backward: never hand it a reused buffer
            return self.denoiser(x, sigma, self.cond_images, self.context, self.num_frames)
        if self._buffer is None:
            self._buffer = ConditionBuffer(self.cond_images.to(x.device), dtype=x.dtype)
        return self.denoiser(x, sigma, self._buffer, self.context, self.num_frames)
