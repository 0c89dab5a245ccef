"""Inference-speed preparation of the multi-view UNet (the CUDA fast path; SPINMEROUND.md §2.7).

The exact path keeps the loaded fp32 weights and runs the multi-view pass under autocast, as the
release does. The fast path makes a separate copy with low-precision weights (no per-step weight
casts), channels_last convolutions, fused q/k/v projections and, optionally, torch.compile
(inductor). Measured on an H200 (bench/smr_bench.py, random weights, 8 views, 50 steps, CFG):
eager autocast 2.83 s -> bf16 + torch.compile 1.88 s; the normals run 1.30 s fp32 -> 0.23 s with
bf16 + CUDA graphs (torch.compile mode "reduce-overhead"), relative deviation of the normals
latents from fp32 2.6e-3.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from smr_core.attention import AttentionBackend
from smr_core.unet import MultiViewUNet

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]

# Inductor settings that the PyTorch team's diffusion-model guide ("Accelerating Generative AI Part III")
# found faster for SD UNets: 1x1 convolutions (proj_in/proj_out here: use_linear_projection is False)
# as matmuls, coordinate-descent tuning of the generated kernels, no epilogue fusion into the GEMMs.
# Not measured on this network yet: bench/gpu_sweep.py times them against the default.
TUNED_INDUCTOR_OPTIONS: dict[str, Any] = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "epilogue_fusion": False,
}


@dataclass(frozen=True)
class FastPath:
    """What the pipeline's fast path (ViewsConfig.fast) compiles on CUDA: one place to change after a GPU sweep.

    bench/gpu_sweep.py prints the best setting it measured as a FastPath(...) to put here (or to pass to
    SpinMeRoundPipeline(fast_path=...)). The defaults are the measured ones (H200, 1.88 s / 0.23 s).
    """

    multiview_mode: CompileMode = "default"  # 16-frame passes: GPU-bound
    normals_mode: CompileMode = "reduce-overhead"  # the 1-frame normals run is launch-bound: CUDA graphs
    inductor_options: dict[str, Any] = field(default_factory=dict)  # e.g. TUNED_INDUCTOR_OPTIONS

    def compile_mode(self, role: Literal["multiview", "normals"]) -> CompileMode:
        return self.normals_mode if role == "normals" else self.multiview_mode


def compile_options(mode: CompileMode, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The inductor options of a torch.compile mode plus `extra` (torch.compile takes a mode or options, not both)."""
    from torch._inductor import list_mode_options

    return {**list_mode_options(mode), **(extra or {})}


def prepare_unet(
    unet: MultiViewUNet,
    *,
    dtype: torch.dtype | None = None,
    channels_last: bool | None = None,
    fuse_qkv: bool = True,
    compile_mode: CompileMode | None = None,
    attention_backend: AttentionBackend | None = None,
    inductor_options: dict[str, Any] | None = None,
    copy_weights: bool = True,
) -> MultiViewUNet:
    """A UNet ready for fast inference; the original is left untouched when `copy_weights`.

    dtype: weights dtype (None keeps it); channels_last: default on CUDA only (it slows CPU convs);
    compile_mode: None for eager, else the torch.compile mode ("reduce-overhead" adds CUDA graphs,
    which pay off for the 1-frame normals run); attention_backend: the SDPA kernel put first
    (smr_core.attention; None keeps the UNet's); inductor_options: extra torch._inductor settings merged
    with the mode's (e.g. TUNED_INDUCTOR_OPTIONS, {"freezing": True}). Fused projections change the state dict, so never
    save a prepared model: convert/save the original.
    """
    net = copy.deepcopy(unet) if copy_weights else unet
    net = net.eval().requires_grad_(False)
    if dtype is not None:
        net = net.to(dtype)
    if channels_last is None:
        channels_last = net.device.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if attention_backend is not None:
        net.set_attention_backend(attention_backend)
    if fuse_qkv:
        net.fuse_qkv_projections()
    if compile_mode is not None:
        if inductor_options:
            net.unet = torch.compile(net.unet, options=compile_options(compile_mode, inductor_options), dynamic=False)
        else:
            mode = None if compile_mode == "default" else compile_mode
            net.unet = torch.compile(net.unet, mode=mode, dynamic=False)
    elif inductor_options:
        raise ValueError("inductor_options need a compile_mode")
    return net
