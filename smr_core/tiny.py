"""Tiny random SpinMeRound weights in the official release layout (tests, --tiny-random, bench).

The tiny networks keep the real block structure (4 levels, 2 layers per block, depth-1
transformers with 8 heads, channel changes at the same places, 32 norm groups), so every
official key name is identical and only shapes differ; they load through the production loader
unchanged. The text encoder keeps CLIP's 49408-token vocabulary (the prompt token ids are fixed
facts of it) and 77 positions, with a 32-wide, 2-layer transformer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from smr_core import keymaps
from smr_core.identity import arc2face_text_config
from smr_core.unet import spinmeround_unet_config
from smr_core.vae import spinmeround_vae_config
from smr_core.weights import ANTELOPE_DIR, BISENET_FILE, ENCODER_DIR

TINY_TEXT_WIDTH = 32


def tiny_unet_config(**overrides: Any) -> dict[str, Any]:
    """SpinMeRound UNet at widths (32, 64, 96, 96): c0 < c1 < c2 = c3 like (320, 640, 1280, 1280)."""
    values: dict[str, Any] = {"block_out_channels": (32, 64, 96, 96), "cross_attention_dim": TINY_TEXT_WIDTH}
    values.update(overrides)
    return spinmeround_unet_config(**values)


def tiny_vae_config(**overrides: Any) -> dict[str, Any]:
    """SD VAE at widths (32, 64, 96, 96): same shortcut pattern as (128, 256, 512, 512)."""
    values: dict[str, Any] = {"block_out_channels": (32, 64, 96, 96)}
    values.update(overrides)
    return spinmeround_vae_config(**values)


def tiny_text_config(**overrides: Any) -> Any:
    """CLIP text config: full vocabulary and 77 positions, width 32, 2 layers, 8 heads."""
    values: dict[str, Any] = {
        "hidden_size": TINY_TEXT_WIDTH,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "projection_dim": TINY_TEXT_WIDTH,
    }
    values.update(overrides)
    return arc2face_text_config(**values)


def _randomise_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give norm layers non-trivial affine parameters so that key mix-ups change outputs."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.GroupNorm | torch.nn.LayerNorm) and sub.weight is not None:
            with torch.no_grad():
                sub.weight.copy_(1.0 + 0.1 * torch.randn(sub.weight.shape, generator=generator))
                sub.bias.copy_(0.1 * torch.randn(sub.bias.shape, generator=generator))


def build_tiny_models(
    seed: int = 0,
    unet_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    text_config: Any = None,
) -> tuple[Any, Any, Any]:
    """(diffusers UNet, diffusers AutoencoderKL, transformers CLIPTextModel) with seeded random weights.

    The configs default to the tiny ones above; others (depths, widths, attention levels) let tests
    check that any official-layout checkpoint loads. The global RNG is forked, so calling this leaves
    torch's default generator untouched.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**(unet_config or tiny_unet_config()))
        vae = AutoencoderKL(**(vae_config or tiny_vae_config()))
        text = CLIPTextModel(text_config or tiny_text_config())
    generator = torch.Generator().manual_seed(seed + 1)
    for module in (unet, vae, text):
        _randomise_norms(module, generator)
        module.eval()
    return unet, vae, text


def write_tiny_weights(
    root: str | os.PathLike[str],
    seed: int = 0,
    conditioner_in_checkpoint: bool = False,
    ema: bool = False,
    checkpoint_format: str = "ckpt",
    text_naming: str = "4.x",
    alignment_placeholders: bool = False,
    unet_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    text_config: Any = None,
) -> Path:
    """Write a complete tiny weights folder in the OFFICIAL layout and return its path.

    root/spmr.ckpt ({"state_dict": ...}, torch.save) or root/spmr.safetensors;
    root/models/encoder/{config.json, model.safetensors} with `text_model.*` keys (4.x naming,
    like the Arc2Face release) or unprefixed keys (text_naming="5.x").
    conditioner_in_checkpoint also stores the encoder as conditioner.* in the checkpoint (with
    weights different from the folder's, so tests can see which one wins); ema adds
    model_ema.* copies (UNet weights + 0.01) plus LitEma's decay/num_updates.
    alignment_placeholders writes EMPTY stand-ins for antelopev2/*.onnx and 79999_iter.pth: they
    satisfy the file checks only and cannot run alignment. unet_config/vae_config/text_config
    replace the tiny architectures (see build_tiny_models); keys follow the official naming rules.
    """
    from safetensors.torch import save_file

    from spin_io.atomic import atomic_path, atomic_write_bytes

    root = Path(root)
    unet, vae, text = build_tiny_models(seed, unet_config, vae_config, text_config)
    unet_state = keymaps.unet_to_official(unet.state_dict())
    state = {**unet_state, **keymaps.vae_to_official(vae.state_dict())}
    if conditioner_in_checkpoint:
        _, _, other_text = build_tiny_models(seed + 1000, unet_config, vae_config, text_config)
        state.update(keymaps.text_keys_to_official(other_text.state_dict()))
    if ema:
        for key in unet_state:
            state[keymaps.ema_key(key)] = state[key] + 0.01
        state[keymaps.EMA_PREFIX + "decay"] = torch.tensor(0.9999)
        state[keymaps.EMA_PREFIX + "num_updates"] = torch.tensor(1000, dtype=torch.int32)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    root.mkdir(parents=True, exist_ok=True)
    if checkpoint_format == "ckpt":
        with atomic_path(root / "spmr.ckpt") as tmp:
            torch.save({"state_dict": state, "epoch": 0, "global_step": 31000}, tmp)
    elif checkpoint_format == "safetensors":
        with atomic_path(root / "spmr.safetensors") as tmp:
            save_file(state, str(tmp))
    else:
        raise ValueError(f"checkpoint_format must be 'ckpt' or 'safetensors', got {checkpoint_format!r}")
    encoder = root / ENCODER_DIR
    encoder.mkdir(parents=True, exist_ok=True)
    prefix = {"4.x": keymaps.TEXT_MODEL_PREFIX, "5.x": ""}[text_naming]
    text_state = {prefix + k: v.detach().contiguous() for k, v in text.state_dict().items()}
    with atomic_path(encoder / "model.safetensors") as tmp:
        save_file(text_state, str(tmp), metadata={"format": "pt"})
    atomic_write_bytes(encoder / "config.json", text.config.to_json_string().encode("utf-8"))
    if alignment_placeholders:
        atomic_write_bytes(root / ANTELOPE_DIR / "scrfd_10g_bnkps.onnx", b"")
        atomic_write_bytes(root / ANTELOPE_DIR / "glintr100.onnx", b"")
        atomic_write_bytes(root / BISENET_FILE, b"")
    return root
