"""Multi-view ("3-D") self-attention as a diffusers attention processor (SPINMEROUND.md §3.4).

SpinMeRound's only architectural change to the SD-1.5 UNet: in the transformer blocks of
down_blocks.1-2, mid_block and up_blocks.1-2, attn1 attends over the tokens of all F frames of a
batch item at once. Frames arrive as a batch of N = B*F images in contiguous groups of F, so
regrouping (N, L, C) -> (B, F*L, C) is a free view. Everything else (attn2, the other blocks) is
ordinary per-view attention. No weights are added.

The frame count travels with each call (`cross_attention_kwargs={"num_frames": F}`); every
processor of the UNet accepts it, so diffusers warns about nothing and no state is kept between
calls. Attention itself is `scaled_dot_product_attention`. By default torch picks the kernel; an
explicit backend ("cudnn", "flash", ...) is put first in torch's priority order with
`sdpa_kernel(..., set_priority=True)`, which torch.compile honours when it traces the call, and the
others stay as fall-backs (so "cudnn" still runs on a CPU). The per-view 64x64 level has heads of 40
channels, where the kernels differ most (H200, 16x8x4096x40: cuDNN 1.2 ms, flash 2.2 ms).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F_
from diffusers.models.attention_processor import Attention
from torch.nn.attention import SDPBackend, sdpa_kernel

from smr_core.attention_backends import ATTENTION_BACKENDS, AttentionBackend

_BACKENDS: dict[str, SDPBackend] = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def backend_priority(backend: AttentionBackend) -> list[SDPBackend] | None:
    """Torch's SDPA backends with `backend` first and the others after it as fall-backs; None for "auto"."""
    if backend == "auto":
        return None
    if backend not in _BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    first = _BACKENDS[backend]
    return [first] + [b for b in _BACKENDS.values() if b != first]

# The diffusers block groups whose attn1 is multi-view (§3.3): every level but the 64x64 one.
MULTIVIEW_BLOCKS: tuple[str, ...] = ("down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.1", "up_blocks.2")


class SpinMeRoundAttnProcessor:
    """Scaled-dot-product attention over groups of `num_frames` frames (multiview) or per frame.

    Written for the UNet's attention layers (3-D token input, no mask, no extra norms); the
    installer checks those assumptions once instead of branching on every call.
    """

    def __init__(self, multiview: bool, backend: AttentionBackend = "auto") -> None:
        self.multiview = multiview
        self.backend = backend
        self._priority = backend_priority(backend)

    def _kernel(self) -> AbstractContextManager[None]:
        if self._priority is None:
            return nullcontext()
        return sdpa_kernel(self._priority, set_priority=True)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        num_frames: int = 1,
        keep_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # keep_frames is read by the UNet's frame-pruning hook (smr_core.unet), not here; accepting it keeps
        # diffusers from warning about an unused argument on every call.
        if attention_mask is not None:
            raise ValueError("SpinMeRound attention takes no attention mask")
        n, length, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        groups = n
        if self.multiview and encoder_hidden_states is None:
            if n % num_frames != 0:
                raise ValueError(f"batch of {n} frames is not a whole number of {num_frames}-frame groups")
            groups = n // num_frames
        heads = attn.heads

        if attn.fused_projections:  # one GEMM for q, k, v (self) or k, v (cross): see fuse_qkv_projections
            if encoder_hidden_states is None:
                query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
            else:
                query = attn.to_q(hidden_states)
                key, value = attn.to_kv(context).chunk(2, dim=-1)
        else:
            query = attn.to_q(hidden_states)
            key = attn.to_k(context)
            value = attn.to_v(context)
        head_dim = query.shape[-1] // heads

        # (N, L, C) -> (groups, frames*L, heads, d) -> (groups, heads, frames*L, d): views, no copies
        # (also for the chunks of a fused projection: merging N and L only needs stride_N = L * stride_L)
        query = query.view(groups, -1, heads, head_dim).transpose(1, 2)
        key = key.view(groups, -1, heads, head_dim).transpose(1, 2)
        value = value.view(groups, -1, heads, head_dim).transpose(1, 2)

        with self._kernel():
            out = F_.scaled_dot_product_attention(query, key, value)

        out = out.transpose(1, 2).reshape(n, length, heads * head_dim)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        return out


def is_multiview_attention(name: str) -> bool:
    """True for the attn1 (self-attention) processors of the multi-view block groups."""
    return ".attn1." in name and any(name.startswith(block + ".") for block in MULTIVIEW_BLOCKS)


def _check_plain_attention(name: str, attn: Attention) -> None:
    unsupported = [
        flag
        for flag, present in (
            ("spatial_norm", attn.spatial_norm is not None),
            ("group_norm", attn.group_norm is not None),
            ("norm_cross", attn.norm_cross),
            ("norm_q", attn.norm_q is not None),
            ("residual_connection", attn.residual_connection),
            ("rescale_output_factor", attn.rescale_output_factor != 1.0),
        )
        if present
    ]
    if unsupported:
        raise ValueError(f"attention {name} uses {', '.join(unsupported)}, which the SpinMeRound processor omits")


def set_spinmeround_processors(
    unet: torch.nn.Module, multiview: bool = True, backend: AttentionBackend = "auto"
) -> None:
    """Install our processor on every attention layer of a diffusers UNet2DConditionModel.

    `multiview=False` installs per-view attention everywhere (a stock SD UNet), which is useful
    as a comparison in tests and for single-view runs. `backend` picks the SDPA kernel (see above).
    """
    backend_priority(backend)  # an unknown name fails here, before anything is replaced
    processors: dict[str, SpinMeRoundAttnProcessor] = {}
    for name in unet.attn_processors:
        module_name = name.removesuffix(".processor")
        _check_plain_attention(module_name, unet.get_submodule(module_name))
        processors[name] = SpinMeRoundAttnProcessor(
            multiview=multiview and is_multiview_attention(name), backend=backend
        )
    unet.set_attn_processor(processors)
