"""The networks a run starts from: the SpinMeRound release, a widened Arc2Face UNet, or tiny random toys.

Arc2Face -> SpinMeRound initialisation (the authors did not publish theirs, SPINMEROUND.md §7 item 15, §9.6).
Arc2Face is an SD-1.5 UNet: conv_in (C, 4, 3, 3) reads one 4-channel latent, conv_out (4, C, 3, 3)
writes one. SpinMeRound's conv_in reads 153 channels (RGB latent 0-3, normals latent 4-7, ray map
8-151, mask 152) and its conv_out writes 8 (RGB latent 0-3, normals latent 4-7). Our scheme:

* conv_in: columns 0-3 (RGB latent) = Arc2Face's weights; columns 4-152 (normals latent, rays, mask)
  = 0; bias = Arc2Face's. At initialisation the network therefore sees exactly what Arc2Face sees,
  whatever the normals and cameras are, and the new inputs start to matter as their zero weights
  receive gradients (the usual zero-init widening, as in ControlNet or Zero-1-to-3's extra channels).
* conv_out: rows 0-3 (RGB) = Arc2Face's weights and bias; rows 4-7 (normals) = a copy of them
  ("copy", default: both halves are SD-VAE latents of images, so copying gives outputs of the right
  statistics) or zero ("zero": the normals half starts as the constant prediction F = 0).
* Everything else is loaded unchanged. Arc2Face was trained for eps-prediction with DDPM timesteps
  0..999 while SpinMeRound predicts v with c_noise = 0.25 ln sigma, so the time embedding and the
  output parameterisation are re-learned: fine-tuning, not a drop-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from smr_core.train.config import ModelConfig
from smr_core.train.errors import TrainingError
from smr_core.unet import IN_CHANNELS, LATENT_CHANNELS

RGB_LATENT = 4  # channels of one SD-VAE latent


@dataclass
class TrainModels:
    """The trainable multi-view UNet and the frozen VAE and identity encoder."""

    unet: Any  # smr_core.unet.MultiViewUNet, trainable
    vae: Any  # smr_core.vae.LatentVAE, frozen fp32
    identity: Any  # smr_core.identity.IdentityEncoder, frozen fp32
    source: dict[str, Any]


def widen_unet(unet4: Any, normals_out: Literal["copy", "zero"] = "copy") -> Any:
    """An Arc2Face-style 4-in/4-out UNet2DConditionModel -> the 153-in/8-out SpinMeRound UNet (module docstring)."""
    from diffusers import UNet2DConditionModel

    got = (unet4.config.in_channels, unet4.config.out_channels)
    if got != (RGB_LATENT, RGB_LATENT):
        raise TrainingError(f"expected an Arc2Face/SD UNet with 4 input and 4 output channels, got {got}")
    if normals_out not in ("copy", "zero"):
        raise TrainingError(f"normals_out_init must be 'copy' or 'zero', got {normals_out!r}")
    config = {k: v for k, v in dict(unet4.config).items() if not k.startswith("_")}
    config.update(in_channels=IN_CHANNELS, out_channels=LATENT_CHANNELS)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    state = {k: v.detach().clone() for k, v in unet4.state_dict().items()}
    w_in = state["conv_in.weight"]
    conv_in = torch.zeros(w_in.shape[0], IN_CHANNELS, *w_in.shape[2:], dtype=w_in.dtype)
    conv_in[:, :RGB_LATENT] = w_in
    w_out, b_out = state["conv_out.weight"], state["conv_out.bias"]
    conv_out = torch.zeros(LATENT_CHANNELS, *w_out.shape[1:], dtype=w_out.dtype)
    bias_out = torch.zeros(LATENT_CHANNELS, dtype=b_out.dtype)
    conv_out[:RGB_LATENT], bias_out[:RGB_LATENT] = w_out, b_out
    if normals_out == "copy":
        conv_out[RGB_LATENT:], bias_out[RGB_LATENT:] = w_out, b_out
    state.update({"conv_in.weight": conv_in, "conv_out.weight": conv_out, "conv_out.bias": bias_out})
    unet.load_state_dict(state, strict=True, assign=True)
    return unet


def _own_memory(module: torch.nn.Module) -> torch.nn.Module:
    """Copy memory-mapped checkpoint tensors so that training updates never touch the file's pages."""
    with torch.no_grad():
        for p in module.parameters():
            p.data = p.data.clone()
    return module


def _tiny(config: ModelConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    from diffusers import UNet2DConditionModel

    from smr_core.tiny import build_tiny_models, tiny_unet_config

    _, vae, text = build_tiny_models(config.tiny_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.tiny_seed)
        unet = UNet2DConditionModel(**tiny_unet_config(**config.tiny_unet))
    return unet, vae, text, {"init": "tiny-random", "seed": config.tiny_seed}


def _release(config: ModelConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    from smr_core.checkpoint import load_raw
    from smr_core.weights import find_weights

    raw = load_raw(find_weights(config.weights), use_ema=True if config.start_from_ema else None)
    source = {"init": "spinmeround", "weights_id": raw.weights_id, "use_ema": raw.use_ema, **raw.source}
    return _own_memory(raw.unet), raw.vae, raw.text_encoder, source


def _arc2face(config: ModelConfig) -> tuple[Any, Any, Any, dict[str, Any]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from smr_core.checkpoint import read_state_dict, text_config_from_folder, text_encoder_from_tensors
    from smr_core.weights import WEIGHT_FILE_NAMES

    for what, folder in (("Arc2Face UNet", config.arc2face_unet), ("VAE", config.vae), ("encoder", config.encoder)):
        if folder is None or not Path(folder).is_dir():
            raise TrainingError(f"model.init = 'arc2face': the {what} folder {folder} does not exist")
    try:
        unet4 = UNet2DConditionModel.from_pretrained(str(config.arc2face_unet), local_files_only=True)
        vae = AutoencoderKL.from_pretrained(str(config.vae), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the Arc2Face UNet or the VAE as diffusers folders: {exc}") from exc
    encoder_dir = Path(config.encoder)
    files = [encoder_dir / n for n in WEIGHT_FILE_NAMES if (encoder_dir / n).is_file()]
    if not files:
        raise TrainingError(f"{encoder_dir}: no encoder weights ({' or '.join(WEIGHT_FILE_NAMES)})")
    text = text_encoder_from_tensors(text_config_from_folder(encoder_dir), read_state_dict(files[0]), files[0])
    unet = widen_unet(unet4, config.normals_out_init)
    return unet, vae, text, {"init": "arc2face", "normals_out_init": config.normals_out_init}


def build_models(config: ModelConfig) -> TrainModels:
    """Build the three networks on the CPU: the UNet trainable (train mode), VAE and encoder frozen (eval)."""
    from smr_core.identity import IdentityEncoder
    from smr_core.unet import MultiViewUNet
    from smr_core.vae import LatentVAE

    builders = {"tiny-random": _tiny, "spinmeround": _release, "arc2face": _arc2face}
    unet, vae, text, source = builders[config.init](config)
    scale = config.latent_scale if config.latent_scale is not None else float(vae.config.scaling_factor)
    network = MultiViewUNet(unet).float().train().requires_grad_(True)
    latent_vae = LatentVAE(vae, scaling_factor=scale).eval().requires_grad_(False)
    identity = IdentityEncoder(text).float().eval().requires_grad_(False)
    return TrainModels(network, latent_vae, identity, {**source, "latent_scale": scale})
