"""Cheap stand-ins for the pipeline tests: a recording network, a micro VAE, a tiny identity encoder.

The real tiny UNet still attends over 4096 tokens per view at 64x64 latents (the size the pose maps fix),
so multi-pass tests use a network that records what it is given and answers with a cheap function of it.
"""

from __future__ import annotations

import torch

from smr_core.identity import IdentityEncoder
from smr_core.pipeline import SpinMeRoundPipeline
from smr_core.tiny import tiny_text_config
from smr_core.vae import LatentVAE, spinmeround_vae_config


class RecordingNet(torch.nn.Module):
    """F(x, c_noise, context, num_frames): records each call; output depends on each frame's latents and rays."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def forward(self, x, c_noise, context, num_frames):
        self.calls.append(
            {
                "num_frames": int(num_frames),
                "n": int(x.shape[0]),
                "latents": x[:, :8].detach().clone(),  # c_in * x
                "origin": x[:, 8:11, 0, 0].detach().clone(),  # ray origin of each frame (§3.2)
                "camera_rows_zero": (x[:, 8:] == 0).flatten(1).all(1),
                "mask": x[:, 152, 0, 0].detach().clone(),
                "c_noise": c_noise.detach().clone(),
                "context": context[:, 0, :4].detach().clone(),
            }
        )
        return 0.1 * x[:, :8] + 0.05 * x[:, 8:16]


def micro_vae(seed: int = 0) -> LatentVAE:
    """A real diffusers AutoencoderKL with 8 channels per level and one layer per block: 512 px <-> 64x64x4."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            **spinmeround_vae_config(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=8)
        )
    return LatentVAE(vae.eval().requires_grad_(False))


def tiny_identity(seed: int = 0) -> IdentityEncoder:
    from transformers import CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = CLIPTextModel(tiny_text_config())
    return IdentityEncoder(text.eval().requires_grad_(False))


def recording_pipeline() -> tuple[SpinMeRoundPipeline, RecordingNet]:
    net = RecordingNet()
    pipe = SpinMeRoundPipeline(net, micro_vae(), tiny_identity(), weights_info={"weights_id": "test-recording"})
    return pipe, net


class PoolVAE(torch.nn.Module):
    """A stand-in LatentVAE: 8x average pooling + a fixed 3->4 channel map (and back); no 512 px convolutions."""

    scaling_factor = 0.18215

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("enc", torch.randn(4, 3, generator=g))
        self.register_buffer("dec", torch.linalg.pinv(self.enc))

    @property
    def device(self) -> torch.device:
        return self.enc.device

    def encode(self, images, sample=True, generator=None):
        z = torch.einsum("oc,nchw->nohw", self.enc, torch.nn.functional.avg_pool2d(images.float(), 8))
        if sample:
            z = z + 0.01 * torch.randn(z.shape, generator=generator).to(z.device)
        return self.scaling_factor * z

    def decode(self, latents, clamp=True, chunk_size=None):
        x = torch.einsum("co,nohw->nchw", self.dec, latents.float() / self.scaling_factor)
        x = torch.nn.functional.interpolate(x, scale_factor=8, mode="nearest")
        return x.clamp(-1, 1) if clamp else x


RAY_MAPS: dict = {}  # shared by the stand-in pipelines of one test session: ray maps cost ~0.1 s each on CPU


def fast_pipeline() -> tuple[SpinMeRoundPipeline, RecordingNet]:
    """Recording network + pooling VAE + tiny identity encoder: a multi-pass run in about a second."""
    net = RecordingNet()
    pipe = SpinMeRoundPipeline(
        net, PoolVAE(), tiny_identity(), weights_info={"weights_id": "test-fast"}, ray_cache=RAY_MAPS
    )
    return pipe, net
