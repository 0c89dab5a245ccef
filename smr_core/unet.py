"""The SpinMeRound network: a stock diffusers UNet2DConditionModel with multi-view attention.

SPINMEROUND.md §3-§4.6: SD-1.5 layout with 153 input channels (8 latent + 145 camera/mask) and 8
output channels (RGB latent + normals latent); time input is the continuous c_noise = 0.25 ln(sigma);
attn1 of the inner levels is multi-view (smr_core.attention).

Frame pruning: after the last multi-view attention (up_blocks.2) frames no longer exchange
information, so a frame whose output is thrown away (a conditioning view, clamped to its clean
latent by the sampler) need not go through the 64x64 up block and conv_out, the costliest per-view
part of the network (about a fifth of its FLOPs). `keep_frames` selects the frames to finish; the
others are dropped by a forward pre-hook on that block. The kept frames' outputs are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel

from smr_core.attention import AttentionBackend, SpinMeRoundAttnProcessor, set_spinmeround_processors

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


def multiview_blocks(unet: UNet2DConditionModel) -> tuple[str, ...]:
    """The block groups whose attn1 is multi-view: every level but the full-resolution one, and the middle.

    The authors' UNet builds SpatialTransformer3D at every level > 0 and in the middle (§3.3); for
    the release's 4 levels this is smr_core.attention.MULTIVIEW_BLOCKS plus two blocks without
    attention (down_blocks.3, up_blocks.0). Read from the block count, it holds for any depth.
    """
    n = len(unet.down_blocks)
    return (
        tuple(f"down_blocks.{i}" for i in range(1, n))
        + ("mid_block",)
        + tuple(f"up_blocks.{k}" for k in range(n - 1))  # up_blocks.{n-1} is level 0
    )


def install_processors(unet: UNet2DConditionModel, backend: AttentionBackend = "auto") -> None:
    """Our attention processors, multi-view exactly on `multiview_blocks(unet)` (any number of levels)."""
    set_spinmeround_processors(unet, multiview=True, backend=backend)  # also checks every layer once
    blocks = multiview_blocks(unet)
    processors = dict(unet.attn_processors)
    changed = False
    for name, processor in processors.items():
        wanted = ".attn1." in name and any(name.startswith(block + ".") for block in blocks)
        if processor.multiview != wanted:
            processors[name] = SpinMeRoundAttnProcessor(multiview=wanted, backend=backend)
            changed = True
    if changed:
        unet.set_attn_processor(processors)


def pruning_block(unet: UNet2DConditionModel) -> int | None:
    """Index of the first up block after the last multi-view one, where frames stop interacting.

    None when there is no such block with cross-attention (the hook reads keep_frames from the
    cross_attention_kwargs that diffusers passes only to those blocks).
    """
    multiview_up = [int(b.split(".")[1]) for b in multiview_blocks(unet) if b.startswith("up_blocks.")]
    index = max(multiview_up, default=-1) + 1
    if index >= len(unet.up_blocks) or not getattr(unet.up_blocks[index], "has_cross_attention", False):
        return None
    return index


def _drop_frames(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]] | None:
    """Forward pre-hook of the pruning block: keep only the frames listed in cross_attention_kwargs["keep_frames"]."""
    keep = (kwargs.get("cross_attention_kwargs") or {}).get("keep_frames")
    if keep is None:
        return None
    n = kwargs["hidden_states"].shape[0]
    kwargs = dict(kwargs)
    kwargs["hidden_states"] = kwargs["hidden_states"].index_select(0, keep)
    kwargs["res_hidden_states_tuple"] = tuple(r.index_select(0, keep) for r in kwargs["res_hidden_states_tuple"])
    for name in ("temb", "encoder_hidden_states"):
        t = kwargs.get(name)
        if t is not None and t.shape[0] == n:
            kwargs[name] = t.index_select(0, keep)
    return args, kwargs


class MultiViewUNet(torch.nn.Module):
    """F_theta of the denoiser: (N = B*F frames, 153 ch) -> (N, 8 ch), frames grouped by F.

    Batch layout (§3.4): contiguous groups of `num_frames` frames, e.g. [uncond views; cond views]
    under CFG, so groups never attend to each other. Works in fp32, in a low-precision dtype
    (inputs are cast to the weights' dtype), and under torch.autocast; the output has the input's
    dtype so the sampler state stays fp32.
    """

    def __init__(self, unet: UNet2DConditionModel, attention_backend: AttentionBackend = "auto") -> None:
        super().__init__()
        expected = (IN_CHANNELS, LATENT_CHANNELS)
        got = (unet.config.in_channels, unet.config.out_channels)
        if got != expected:
            raise ValueError(f"SpinMeRound UNet needs in/out channels {expected}, got {got}")
        self.unet = unet
        self.attention_backend = attention_backend
        install_processors(self.unet, backend=attention_backend)
        self._pruning_block = pruning_block(unet)
        if self._pruning_block is not None:
            self.unet.up_blocks[self._pruning_block].register_forward_pre_hook(_drop_frames, with_kwargs=True)

    @property
    def supports_frame_pruning(self) -> bool:
        """Whether forward() accepts keep_frames (the block layout allows dropping frames before the output)."""
        return self._pruning_block is not None

    def set_attention_backend(self, backend: AttentionBackend) -> None:
        """Choose the SDPA kernel of every attention layer (smr_core.attention); keeps fused projections."""
        install_processors(self.unet, backend=backend)
        self.attention_backend = backend

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

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        context: torch.Tensor,
        num_frames: int,
        keep_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (N, 153, H, W), c_noise (N,), context (N, 77, D) -> (N, 8, H, W).

        keep_frames: sorted frame indices (long tensor on x's device); only these frames are finished and
        returned, (len(keep_frames), 8, H, W), equal to the same rows of the full output.
        """
        n = x.shape[0]
        if n % num_frames != 0:
            raise ValueError(f"{n} frames do not split into groups of num_frames={num_frames}")
        kwargs: dict[str, Any] = {"num_frames": num_frames}
        if keep_frames is not None:
            if self._pruning_block is None:
                raise ValueError("this UNet's block layout does not allow frame pruning; pass keep_frames=None")
            kwargs["keep_frames"] = keep_frames
        out_dtype = x.dtype
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.dtype)
            context = context.to(self.dtype)
        out = self.unet(
            x,
            c_noise,
            encoder_hidden_states=context,
            cross_attention_kwargs=kwargs,
            return_dict=False,
        )[0]
        return out.to(out_dtype)
