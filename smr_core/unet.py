"""The SpinMeRound network: a stock diffusers UNet2DConditionModel with multi-view attention.

SPINMEROUND.md §3-§4.6: SD-1.5 layout with 153 input channels (8 latent + 145 camera/mask) and 8
output channels (RGB latent + normals latent); time input is the continuous c_noise = 0.25 ln(sigma);
attn1 of the inner levels is multi-view (smr_core.attention).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel

from smr_core.attention import set_spinmeround_processors

LATENT_CHANNELS = 8  # 4 RGB-latent + 4 normals-latent channels
COND_CHANNELS = 145  # 144 ray-map channels + 1 mask channel (§3.2)
IN_CHANNELS = LATENT_CHANNELS + COND_CHANNELS


def spinmeround_unet_config(**overrides: Any) -> dict[str, Any]:
    """The full-size UNet2DConditionModel config of §4.3 (overrides replace single entries)."""
    config: dict[str, Any] = {
        "sample_size": 64,
        "in_channels": IN_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,  # diffusers' legacy name: this is the number of heads (SD-1.5)
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "use_linear_projection": False,
        "center_input_sample": False,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "transformer_layers_per_block": 1,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise TypeError(f"unknown UNet config keys: {sorted(unknown)}")
    config.update(overrides)
    return config


def build_unet(config: dict[str, Any]) -> UNet2DConditionModel:
    """A diffusers UNet from a config dict (on the ambient default device, e.g. meta)."""
    return UNet2DConditionModel(**config)


class MultiViewUNet(torch.nn.Module):
    """F_theta of the denoiser: (N = B*F frames, 153 ch) -> (N, 8 ch), frames grouped by F.

    Batch layout (§3.4): contiguous groups of `num_frames` frames, e.g. [uncond views; cond views]
    under CFG, so groups never attend to each other. Works in fp32, in a low-precision dtype
    (inputs are cast to the weights' dtype), and under torch.autocast; the output has the input's
    dtype so the sampler state stays fp32.
    """

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        expected = (IN_CHANNELS, LATENT_CHANNELS)
        got = (unet.config.in_channels, unet.config.out_channels)
        if got != expected:
            raise ValueError(f"SpinMeRound UNet needs in/out channels {expected}, got {got}")
        self.unet = unet
        set_spinmeround_processors(self.unet, multiview=True)

    def fuse_qkv_projections(self) -> None:
        """Fuse q/k/v (self-attention) and k/v (cross-attention) weights into single GEMMs for inference.

        Unlike diffusers' UNet method of the same name this keeps our processors. The state dict
        gains to_qkv/to_kv copies, so fuse after loading and do not save a fused model.
        """
        from diffusers.models.attention_processor import Attention

        for module in self.unet.modules():
            if isinstance(module, Attention) and not module.fused_projections:
                module.fuse_projections(fuse=True)

    @property
    def config(self) -> Any:
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.conv_in.weight.device

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (N, 153, H, W), c_noise (N,), context (N, 77, D) -> (N, 8, H, W)."""
        n = x.shape[0]
        if n % num_frames != 0:
            raise ValueError(f"{n} frames do not split into groups of num_frames={num_frames}")
        out_dtype = x.dtype
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.dtype)
            context = context.to(self.dtype)
        out = self.unet(
            x,
            c_noise,
            encoder_hidden_states=context,
            cross_attention_kwargs={"num_frames": num_frames},
            return_dict=False,
        )[0]
        return out.to(out_dtype)
