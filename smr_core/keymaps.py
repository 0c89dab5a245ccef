"""Key maps between the official SpinMeRound state dict and our diffusers/transformers modules.

The maps are data (smr_core/reference/*_keymap.tsv, generated from the official classes; see
SPINMEROUND.md §4): they hold names, and the only layout change is the VAE mid-block attention,
stored as 1x1 convolutions officially and as linear layers in diffusers. Both directions are
here, because the inverse (ours -> official) is what lets a test compare a freshly built
model against the reference tables, and what writes checkpoints in the official layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "conditioner.embedders.0.encoder."  # followed by text_model.* (transformers 4.x naming)
EMA_PREFIX = "model_ema."
TEXT_MODEL_PREFIX = "text_model."  # transformers 4.x CLIPTextModel; 5.x drops it


@dataclass(frozen=True)
class KeyMap:
    """official key -> our key (both full names, official prefix included)."""

    to_ours: dict[str, str]
    to_official: dict[str, str]


def _read_tsv(name: str) -> list[list[str]]:
    text = resources.files("smr_core").joinpath("reference", name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line.strip()]


def _parse_shape(text: str) -> tuple[int, ...]:
    inner = text.strip().strip("[]").strip()
    return tuple(int(v) for v in inner.split(",")) if inner else ()


@cache
def reference_state_dict(part: str) -> dict[str, tuple[int, ...]]:
    """Official key -> shape for part "unet" (686), "first_stage" (248) or "conditioner" (196)."""
    rows = _read_tsv(f"spmr_{part}_state_dict.tsv")
    return {row[0]: _parse_shape(row[1]) for row in rows}


@cache
def unet_keymap() -> KeyMap:
    """model.diffusion_model.* <-> diffusers UNet2DConditionModel keys (686, no reshapes)."""
    rows = _read_tsv("spmr_unet_to_diffusers_keymap.tsv")
    to_ours = {row[0]: row[1] for row in rows}
    return KeyMap(to_ours=to_ours, to_official={v: k for k, v in to_ours.items()})


@cache
def vae_keymap() -> KeyMap:
    """first_stage_model.* <-> diffusers AutoencoderKL keys (248; mid attention conv1x1 <-> linear)."""
    rows = _read_tsv("spmr_first_stage_to_diffusers_keymap.tsv")
    to_ours = {row[0]: row[1] for row in rows}
    return KeyMap(to_ours=to_ours, to_official={v: k for k, v in to_ours.items()})


@cache
def vae_conv1x1_keys() -> frozenset[str]:
    """Our (diffusers) VAE keys that are linear here and 1x1 convolutions in the official layout."""
    rows = _read_tsv("spmr_first_stage_to_diffusers_keymap.tsv")
    return frozenset(row[1] for row in rows if len(_parse_shape(row[2])) == 4 and len(_parse_shape(row[3])) == 2)


def vae_tensor_to_ours(our_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Official VAE tensor -> diffusers layout: (C, C, 1, 1) attention convs become (C, C) linears."""
    if our_key in vae_conv1x1_keys() and tensor.ndim == 4:
        return tensor.reshape(tensor.shape[0], tensor.shape[1])
    return tensor


def vae_tensor_to_official(our_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """diffusers VAE tensor -> official layout (inverse of `vae_tensor_to_ours`)."""
    if our_key in vae_conv1x1_keys() and tensor.ndim == 2:
        return tensor.reshape(tensor.shape[0], tensor.shape[1], 1, 1)
    return tensor


def ema_key(official_unet_key: str) -> str:
    """LitEma's name for the EMA copy of a UNet tensor: dots removed below the wrapper (§4.1).

    model.diffusion_model.time_embed.0.weight -> model_ema.diffusion_modeltime_embed0weight
    """
    name = official_unet_key.removeprefix("model.")
    return EMA_PREFIX + name.replace(".", "")


def text_keys_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP text keys in 4.x (`text_model.*`) or 5.x naming -> transformers 5.x naming.

    A mixture of the two namings is refused by the strict loader later (the unprefixed copy of a
    prefixed key collides), so this only strips the prefix and drops the position_ids buffer that
    older transformers releases saved.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key.removeprefix(TEXT_MODEL_PREFIX)
        if name == "embeddings.position_ids":
            continue  # a constant arange, non-persistent since transformers 4.31
        if name in out:
            raise KeyError(f"text encoder key {key!r} occurs in both 4.x and 5.x naming")
        out[name] = value
    return out


def text_keys_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5.x CLIPTextModel keys -> conditioner.embedders.0.encoder.text_model.* (4.x)."""
    return {TEXT_PREFIX + TEXT_MODEL_PREFIX + key: value for key, value in state_dict.items()}


def unet_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers UNet state dict -> model.diffusion_model.* keys. Unknown keys raise KeyError."""
    to_official = unet_keymap().to_official
    return {to_official[key]: value for key, value in state_dict.items()}


def vae_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL state dict -> first_stage_model.* keys with 1x1-conv attention."""
    to_official = vae_keymap().to_official
    return {to_official[key]: vae_tensor_to_official(key, value) for key, value in state_dict.items()}


def to_official_state_dict(
    unet: dict[str, torch.Tensor] | None = None,
    vae: dict[str, torch.Tensor] | None = None,
    text: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Assemble an official spmr.ckpt "state_dict" from our modules' state dicts (any subset)."""
    out: dict[str, torch.Tensor] = {}
    if unet is not None:
        out.update(unet_to_official(unet))
    if vae is not None:
        out.update(vae_to_official(vae))
    if text is not None:
        out.update(text_keys_to_official(text))
    return out
