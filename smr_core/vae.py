"""The first stage: SD-1.5's KL-f8 autoencoder (diffusers AutoencoderKL), always run in fp32.

SPINMEROUND.md §3.10/§4.4: latents = 0.18215 * posterior sample; RGB images and normal maps (both
as [-1, 1] RGB) are encoded separately and concatenated to 8 channels by the caller. The release
encodes with a posterior *sample* (§7.8); `sample=False` takes the mean instead (deterministic,
a documented deviation).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL

from smr_core.errors import InputError

SCALING_FACTOR = 0.18215


def spinmeround_vae_config(**overrides: Any) -> dict[str, Any]:
    """The SD-1.5 AutoencoderKL config of §4.4 (overrides replace single entries)."""
    config: dict[str, Any] = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": SCALING_FACTOR,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(f"unknown VAE config keys: {sorted(unknown)}")
    config.update(overrides)
    return config


def build_vae(config: dict[str, Any]) -> AutoencoderKL:
    """A diffusers AutoencoderKL from a config dict (on the ambient default device, e.g. meta)."""
    return AutoencoderKL(**config)


class LatentVAE(torch.nn.Module):
    """Images in [-1, 1] <-> scaled latents, in fp32 whatever the ambient autocast (§2.7)."""

    def __init__(self, vae: AutoencoderKL, scaling_factor: float = SCALING_FACTOR) -> None:
        super().__init__()
        self.vae = vae.float()
        self.scaling_factor = scaling_factor

    @property
    def device(self) -> torch.device:
        return self.vae.encoder.conv_in.weight.device

    def encode(
        self,
        images: torch.Tensor,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 4, H/8, W/8) latents, scaled by 0.18215.

        sample=True draws z = mean + std * eps like the release (eps from `generator`, drawn on
        the generator's device: a CPU generator gives the same stream on any device);
        sample=False returns the posterior mean.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"VAE.encode expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
        with torch.autocast(images.device.type, enabled=False):
            moments = self.vae.encode(images.to(self.device, torch.float32)).latent_dist.parameters
            mean, logvar = moments.chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            if sample:
                eps_device = generator.device if generator is not None else mean.device
                eps = torch.randn(mean.shape, generator=generator, device=eps_device, dtype=mean.dtype)
                z = mean + torch.exp(0.5 * logvar) * eps.to(mean.device)
            else:
                z = mean
        return self.scaling_factor * z

    def decode(self, latents: torch.Tensor, clamp: bool = True, chunk_size: int | None = None) -> torch.Tensor:
        """(B, 4, h, w) scaled latents -> (B, 3, 8h, 8w) images in [-1, 1] (clamped unless clamp=False).

        chunk_size bounds peak memory (the release decodes 4 at a time); results do not depend on it.
        """
        if latents.ndim != 4 or latents.shape[1] != self.vae.config.latent_channels:
            raise InputError(
                f"VAE.decode expects (B, {self.vae.config.latent_channels}, h, w) latents, got {tuple(latents.shape)}"
            )
        chunks = latents.split(chunk_size) if chunk_size else (latents,)
        with torch.autocast(latents.device.type, enabled=False):
            images = torch.cat(
                [self.vae.decode(c.to(self.device, torch.float32) / self.scaling_factor).sample for c in chunks]
            )
        return images.clamp(-1.0, 1.0) if clamp else images
