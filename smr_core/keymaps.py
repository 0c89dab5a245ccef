"""Key maps between the official SpinMeRound state dict and our diffusers/transformers modules.

The maps are data (smr_core/reference/*_keymap.tsv, generated from the official classes; see
SPINMEROUND.md §4): they hold names, and the only layout change is the VAE mid-block attention,
stored as 1x1 convolutions officially and as linear layers in diffusers. Both directions are
here, because the inverse (ours -> official) is what lets a test compare a freshly built
model against the reference tables, and what writes checkpoints in the official layout.

The tables fix one architecture. Checkpoints of other depths and widths (tests, tiny weights,
fine-tunes) are named by the same rules, which `unet_official_keys` / `vae_official_keys` apply to
any diffusers module's keys: the authors' UNet numbers its blocks consecutively (input_blocks.{n},
output_blocks.{n}, one per ResBlock or resampler), and its VAE nests them per level
(encoder.down.{i}.block.{j}, decoder.up.{i}.block.{j}, with up.{i} <-> up_blocks.{L-1-i}). For the
release's configuration the rules give exactly the tables (tests/test_checkpoint_infer.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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


_VAE_CONV1X1_SUFFIXES = ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")


def is_vae_conv1x1(our_key: str) -> bool:
    """Whether a diffusers VAE key is an attention projection stored as a 1x1 convolution officially.

    The rule behind `vae_conv1x1_keys` (which lists the release's), valid for attention at any level.
    """
    return ".attentions." in our_key and our_key.endswith(_VAE_CONV1X1_SUFFIXES)


def vae_tensor_to_ours(our_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Official VAE tensor -> diffusers layout: (C, C, 1, 1) attention convs become (C, C) linears."""
    if is_vae_conv1x1(our_key) and tensor.ndim == 4:
        return tensor.reshape(tensor.shape[0], tensor.shape[1])
    return tensor


def vae_tensor_to_official(our_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """diffusers VAE tensor -> official layout (inverse of `vae_tensor_to_ours`)."""
    if is_vae_conv1x1(our_key) and tensor.ndim == 2:
        return tensor.reshape(tensor.shape[0], tensor.shape[1], 1, 1)
    return tensor


# --------------------------------------------------------------------------- naming rules (any depth)

_Renames = tuple[tuple[str, str], ...]
_UNET_RESNET: _Renames = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
)
_VAE_RESNET: _Renames = (("conv_shortcut.", "nin_shortcut."),)
_VAE_ATTENTION: _Renames = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)
_SAME: _Renames = ()


@dataclass(frozen=True)
class BlockLayout:
    """The block structure of a UNet or VAE, per resolution level (level 0 = full resolution).

    down_layers/up_layers: ResBlocks per level on the way down and up (the up path has one more);
    down_attention/up_attention: whether each of those ResBlocks is followed by attention.
    """

    down_layers: tuple[int, ...]
    down_attention: tuple[bool, ...]
    up_layers: tuple[int, ...]
    up_attention: tuple[bool, ...]

    @property
    def levels(self) -> int:
        return len(self.down_layers)


def _counts(keys: Iterable[str], pattern: str) -> dict[int, int]:
    """First index -> number of distinct second indices among keys matching `pattern` (two groups)."""
    found: dict[int, set[int]] = {}
    for key in keys:
        match = re.match(pattern, key)
        if match:
            found.setdefault(int(match[1]), set()).add(int(match[2]))
    return {i: len(js) for i, js in found.items()}


def layout_from_ours(keys: Iterable[str], down: str, up: str) -> BlockLayout:
    """BlockLayout of a diffusers UNet/VAE from its state-dict keys (`down`/`up`: the block-list prefixes)."""
    keys = list(keys)
    d_res = _counts(keys, re.escape(down) + r"(\d+)\.resnets\.(\d+)\.")
    d_att = _counts(keys, re.escape(down) + r"(\d+)\.attentions\.(\d+)\.")
    u_res = _counts(keys, re.escape(up) + r"(\d+)\.resnets\.(\d+)\.")
    u_att = _counts(keys, re.escape(up) + r"(\d+)\.attentions\.(\d+)\.")
    n = max(len(d_res), len(u_res))  # a VAE's encoder has only down blocks, its decoder only up blocks
    return BlockLayout(
        down_layers=tuple(d_res.get(i, 0) for i in range(n)),
        down_attention=tuple(i in d_att for i in range(n)),
        up_layers=tuple(u_res.get(n - 1 - i, 0) for i in range(n)),  # up_blocks.{k} is level n-1-k
        up_attention=tuple(n - 1 - i in u_att for i in range(n)),
    )


def _unet_prefixes(layout: BlockLayout) -> list[tuple[str, str, _Renames]]:
    """(our module prefix, official module prefix, renames inside it) for a UNet of this layout.

    The authors' UNetModel appends one input block per ResBlock (+ its transformer at .1) and one per
    downsampler (.0.op), and one output block per up ResBlock (+ transformer, + upsampler last).
    """
    n = layout.levels
    out: list[tuple[str, str, _Renames]] = [
        ("time_embedding.linear_1.", "time_embed.0.", _SAME),
        ("time_embedding.linear_2.", "time_embed.2.", _SAME),
        ("conv_in.", "input_blocks.0.0.", _SAME),
        ("conv_norm_out.", "out.0.", _SAME),
        ("conv_out.", "out.2.", _SAME),
        ("mid_block.resnets.0.", "middle_block.0.", _UNET_RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", _SAME),
        ("mid_block.resnets.1.", "middle_block.2.", _UNET_RESNET),
    ]
    index = 1
    for level in range(n):
        for j in range(layout.down_layers[level]):
            out.append((f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{index}.0.", _UNET_RESNET))
            if layout.down_attention[level]:
                out.append((f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{index}.1.", _SAME))
            index += 1
        if level != n - 1:
            out.append((f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{index}.0.op.", _SAME))
            index += 1
    index = 0
    for k in range(n):
        level = n - 1 - k
        for j in range(layout.up_layers[level]):
            out.append((f"up_blocks.{k}.resnets.{j}.", f"output_blocks.{index}.0.", _UNET_RESNET))
            slot = 1
            if layout.up_attention[level]:
                out.append((f"up_blocks.{k}.attentions.{j}.", f"output_blocks.{index}.1.", _SAME))
                slot = 2
            if level != 0 and j == layout.up_layers[level] - 1:
                out.append((f"up_blocks.{k}.upsamplers.0.conv.", f"output_blocks.{index}.{slot}.conv.", _SAME))
            index += 1
    return out


def _vae_prefixes(encoder: BlockLayout, decoder: BlockLayout) -> list[tuple[str, str, _Renames]]:
    """(our prefix, official prefix, renames) for an AutoencoderKL: levels nest as down.{i}/up.{i}."""
    out: list[tuple[str, str, _Renames]] = [
        ("quant_conv.", "quant_conv.", _SAME),
        ("post_quant_conv.", "post_quant_conv.", _SAME),
    ]
    for part in ("encoder", "decoder"):
        out += [
            (f"{part}.conv_in.", f"{part}.conv_in.", _SAME),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", _SAME),
            (f"{part}.conv_out.", f"{part}.conv_out.", _SAME),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", _VAE_RESNET),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", _VAE_ATTENTION),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", _VAE_RESNET),
        ]
    n = encoder.levels
    for i in range(n):
        for j in range(encoder.down_layers[i]):
            out.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", _VAE_RESNET))
            out.append((f"encoder.down_blocks.{i}.attentions.{j}.", f"encoder.down.{i}.attn.{j}.", _VAE_ATTENTION))
        out.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", _SAME))
    n = decoder.levels
    for k in range(n):
        i = n - 1 - k
        for j in range(decoder.up_layers[i]):
            out.append((f"decoder.up_blocks.{k}.resnets.{j}.", f"decoder.up.{i}.block.{j}.", _VAE_RESNET))
            out.append((f"decoder.up_blocks.{k}.attentions.{j}.", f"decoder.up.{i}.attn.{j}.", _VAE_ATTENTION))
        out.append((f"decoder.up_blocks.{k}.upsamplers.0.conv.", f"decoder.up.{i}.upsample.conv.", _SAME))
    return out


def _apply(keys: Iterable[str], prefixes: list[tuple[str, str, _Renames]], official_prefix: str) -> dict[str, str]:
    """our key -> official key by longest matching module prefix; a key no rule covers raises KeyError."""
    table = sorted(prefixes, key=lambda row: len(row[0]), reverse=True)
    out: dict[str, str] = {}
    for key in keys:
        for ours, official, renames in table:
            if key.startswith(ours):
                tail = key[len(ours) :]
                for a, b in renames:
                    if tail.startswith(a):
                        tail = b + tail[len(a) :]
                        break
                out[key] = official_prefix + official + tail
                break
        else:
            raise KeyError(f"no official name for key {key!r}")
    return out


def unet_official_keys(our_keys: Iterable[str]) -> dict[str, str]:
    """diffusers UNet key -> model.diffusion_model.* key, for a UNet of any depth (layout read from the keys)."""
    keys = list(our_keys)
    layout = layout_from_ours(keys, "down_blocks.", "up_blocks.")
    return _apply(keys, _unet_prefixes(layout), UNET_PREFIX)


def vae_official_keys(our_keys: Iterable[str]) -> dict[str, str]:
    """diffusers AutoencoderKL key -> first_stage_model.* key, for any depth (layout read from the keys)."""
    keys = list(our_keys)
    encoder = layout_from_ours(keys, "encoder.down_blocks.", "encoder.up_blocks.")
    decoder = layout_from_ours(keys, "decoder.down_blocks.", "decoder.up_blocks.")
    return _apply(keys, _vae_prefixes(encoder, decoder), VAE_PREFIX)


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
    """diffusers UNet state dict (any depth) -> model.diffusion_model.* keys. Unknown keys raise KeyError."""
    to_official = unet_official_keys(state_dict)
    return {to_official[key]: value for key, value in state_dict.items()}


def vae_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL state dict (any depth) -> first_stage_model.* keys with 1x1-conv attention."""
    to_official = vae_official_keys(state_dict)
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
