"""Loading SpinMeRound weights strictly, and converting them to diffusers/transformers folders.

Official layout (SPINMEROUND.md §4): spmr.ckpt is a Lightning checkpoint whose "state_dict" holds
model.diffusion_model.* (UNet), first_stage_model.* (VAE), optionally conditioner.* (Arc2Face
encoder; overrides models/encoder/, §4.1) and model_ema.* (ignored unless asked for). Every
tensor must map onto our modules and every parameter must be present: a missing, unexpected or
mis-shaped key is a CheckpointError that names the first few, with their shapes, in one line (the
release loads with strict=False and only prints them).

The UNet and VAE architectures are read from the keys and shapes (`infer_unet_config`,
`infer_vae_config`: levels, widths, ResBlocks per level, attention levels, transformer depths,
context width, latent channels), so official-layout checkpoints of any depth and width (tests,
`--tiny-random`, fine-tunes) load through this same path. What tensors cannot show (attention
heads, GroupNorm groups) keeps the release's values. The text encoder's architecture is its
folder's config.json, as in the authors' code, which builds it from there before loading spmr.ckpt.

Modules are built on the meta device and the loaded tensors are assigned, so no time is spent on
random initialisation and no second copy of the weights is made on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from smr_core import keymaps
from smr_core.errors import CheckpointError
from smr_core.weights import MANIFEST, WEIGHT_FILE_NAMES, WeightsLayout, find_weights
from spin_io.atomic import make_temp_dir, replace_dir
from spin_io.hashing import file_sha256 as _file_sha256

MANIFEST_FORMAT = "spin-to-mesh/spinmeround-weights"
MANIFEST_VERSION = 1
CONVERT_STAGES = ("read + hash", "unet", "vae", "text encoder", "finish")
_MAX_LISTED = 5  # keys quoted in an error message; the rest are counted


# --------------------------------------------------------------------------- reading files


CPU_ALIGNMENT = 64  # bytes: torch's CPU allocator aligns every tensor to this


def _aligned(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself where its data is 64-byte aligned, else an aligned copy.

    safetensors maps each tensor at its offset in the file (any multiple of 8 bytes). On one CPU thread
    oneDNN picks its kernels by the address, so the same weights gave outputs 1e-6 apart depending on the
    file format they came in (a one-CPU worker, `pytest -n 2`). Copies make a model's numbers depend on its
    weights alone.
    """
    return tensor if tensor.data_ptr() % CPU_ALIGNMENT == 0 else tensor.clone()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a pickled checkpoint via torch.load(weights_only=True).

    A Lightning checkpoint's "state_dict" entry is unwrapped; other entries (optimizer state, loops)
    are ignored.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"cannot read {path}: {exc}; re-download the file") from exc
        return {key: _aligned(value) for key, value in tensors.items()}
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {path} with torch.load(weights_only=True): {exc}. "
            "Re-download it, or convert a trusted copy to .safetensors"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors; is it a SpinMeRound checkpoint?")
    return dict(obj)


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return _file_sha256(path, 1 << 22)


def file_sha256(path: Path) -> str:
    """sha256 of a file (memoised per path, size and modification time)."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _weights_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"no weights file ({' or '.join(names)}) in {folder}")


# --------------------------------------------------------------------------- strict loading


def _listing(keys: list[str], shapes: Mapping[str, tuple[int, ...]] | None = None) -> str:
    """The first _MAX_LISTED keys (with their shapes when known) and how many more there are."""
    shapes = shapes or {}
    shown = ", ".join(f"{k} {list(shapes[k])}" if k in shapes else k for k in keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def check_keys(
    found: Mapping[str, tuple[int, ...]] | set[str],
    expected: Mapping[str, tuple[int, ...]] | set[str],
    what: str,
    source: Path | str,
) -> None:
    """Raise CheckpointError naming the first missing and unexpected keys of one component, in one line.

    Given key -> shape mappings, each listed key carries its shape (the model's for a missing key,
    the file's for an unexpected one), which usually tells which architecture the file was made for.
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if not (missing or unexpected):
        return
    model_shapes = expected if isinstance(expected, Mapping) else None
    file_shapes = found if isinstance(found, Mapping) else None
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_listing(missing, model_shapes)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_listing(unexpected, file_shapes)}")
    raise CheckpointError(
        f"{source}: the {what} weights do not match the SpinMeRound model ({'; '.join(parts)}). "
        "Check that the file is the SpinMeRound release (or a conversion of it) and not truncated"
    )


def load_strict(
    module: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    what: str,
    source: Path | str,
    display: dict[str, str] | None = None,
) -> None:
    """Assign `state_dict` to a (meta-device) module; keys and shapes must match exactly.

    `display` maps our key -> the key as the file names it, so errors quote the file's naming.
    """
    display = display or {}
    expected = module.state_dict()
    check_keys(
        {display.get(k, k): tuple(v.shape) for k, v in state_dict.items()},
        {display.get(k, k): tuple(v.shape) for k, v in expected.items()},
        what,
        source,
    )
    mismatched = [
        f"{display.get(k, k)}: file {list(state_dict[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} {what} tensor(s) have the wrong shape: {_listing(mismatched)}. "
            "The file mixes tensors of different model sizes; re-download or re-convert it"
        )
    module.load_state_dict(state_dict, strict=True, assign=True)
    leftovers = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if leftovers:
        raise CheckpointError(f"{what}: tensors not provided by {source}: {_listing(leftovers)}")


# --------------------------------------------------------------------------- components


def _shape(sd: dict[str, torch.Tensor], key: str, source: Path, prefix: str = "") -> tuple[int, ...]:
    """Shape of sd[key]; a missing key (one the architecture cannot be read without) is a CheckpointError."""
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {prefix}{key}, needed to read the architecture")
    return tuple(sd[key].shape)


def _unsupported(source: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{source}: {what}; this loader supports the SpinMeRound UNet/VAE family only")


def _indices(keys: list[str], pattern: str) -> list[int]:
    """Sorted distinct values of the first group of `pattern` among keys."""
    return sorted({int(m[1]) for k in keys if (m := re.match(pattern, k))})


def _depth(keys: list[str], block: str) -> int:
    """Transformer blocks inside the SpatialTransformer `block` (e.g. "input_blocks.1.1")."""
    return len(_indices(keys, re.escape(block) + r"\.transformer_blocks\.(\d+)\."))


def infer_unet_config(official: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """The diffusers UNet config of model.diffusion_model.* tensors, read from keys and shapes.

    Walking input_blocks.{n} in order gives the levels: a ResBlock (n.0.in_layers) adds a layer to
    the current level, a downsampler (n.0.op) starts the next one. Per level: width (in_layers.2 out
    channels), layers (num_res_blocks), attention (an n.1 SpatialTransformer) and its depth
    (transformer_blocks.{d}); middle_block.1 gives the middle depth and attn2.to_k the context width.
    conv_in/out.2 give in/out channels, proj_in's rank use_linear_in_transformer, emb_layers.1's
    width use_scale_shift_norm. Not in the tensors, kept at the release's values: 8 heads per
    attention layer (num_heads: 8), 32 GroupNorm groups, flip_sin_to_cos, the sinusoid's period.
    A class (label_emb.*) or camera (camera_embed.*) embedding, which SpinMeRound does not have,
    is reported by the key check as unexpected keys with their shapes (which give its dimensions).
    """
    from smr_core.unet import spinmeround_unet_config

    p = keymaps.UNET_PREFIX
    sd = {k.removeprefix(p): v for k, v in official.items()}
    keys = list(sd)
    if not keys:
        raise CheckpointError(f"{source} holds no UNet tensors ({p}*); is it a SpinMeRound checkpoint?")

    def shape(key: str) -> tuple[int, ...]:
        return _shape(sd, key, source, p)

    conv_in = shape("input_blocks.0.0.weight")
    model_channels = conv_in[0]
    widths: list[int] = []
    layers: list[int] = []
    attention: list[list[bool]] = []
    depth: list[set[int]] = []
    linear: set[bool] = set()
    scale_shift: set[bool] = set()
    blocks = _indices(keys, r"input_blocks\.(\d+)\.")
    if blocks != list(range(len(blocks))):
        raise CheckpointError(f"{source}: UNet input_blocks are not numbered 0..{len(blocks) - 1} ({blocks})")
    level_open = True
    for n in blocks[1:]:
        if f"input_blocks.{n}.0.op.weight" in sd:
            level_open = False
            continue
        if f"input_blocks.{n}.0.in_layers.2.weight" not in sd:
            raise _unsupported(
                source, f"UNet input_blocks.{n} is neither a ResBlock nor a conv downsampler (resblock_updown?)"
            )
        if not level_open or not widths:
            widths.append(shape(f"input_blocks.{n}.0.in_layers.2.weight")[0])
            layers.append(0)
            attention.append([])
            depth.append(set())
            level_open = True
        out = shape(f"input_blocks.{n}.0.in_layers.2.weight")[0]
        if out != widths[-1]:
            raise CheckpointError(f"{source}: UNet level {len(widths) - 1} mixes widths {widths[-1]} and {out}")
        layers[-1] += 1
        scale_shift.add(shape(f"input_blocks.{n}.0.emb_layers.1.weight")[0] == 2 * out)
        has_attention = any(k.startswith(f"input_blocks.{n}.1.") for k in keys)
        attention[-1].append(has_attention)
        if has_attention:
            depth[-1].add(_depth(keys, f"input_blocks.{n}.1"))
            linear.add(len(shape(f"input_blocks.{n}.1.proj_in.weight")) == 2)
    levels = len(widths)
    if levels == 0:
        raise CheckpointError(f"{source}: the UNet has no ResBlocks (input_blocks.1.0.in_layers.*)")
    if widths[0] != model_channels:
        raise _unsupported(
            source, f"UNet level 0 is {widths[0]} wide but conv_in gives {model_channels} (channel_mult[0] != 1)"
        )
    for level, flags in enumerate(attention):
        if len(set(flags)) > 1:
            raise _unsupported(
                source, f"UNet level {level} has attention after some ResBlocks only (num_attention_blocks)"
            )
        if len(depth[level]) > 1:
            raise _unsupported(source, f"UNet level {level} mixes transformer depths {sorted(depth[level])}")
    has_attn = [bool(flags[0]) for flags in attention]
    mid_depth = _depth(keys, "middle_block.1")
    if mid_depth == 0:
        raise _unsupported(
            source, "the UNet middle block has no SpatialTransformer (middle_block.1.transformer_blocks)"
        )
    linear.add(len(shape("middle_block.1.proj_in.weight")) == 2)
    depths = [min(depth[i]) if has_attn[i] else 1 for i in range(levels)]
    if has_attn[-1] and depths[-1] != mid_depth:
        raise _unsupported(
            source, f"UNet last-level transformer depth {depths[-1]} differs from the middle's {mid_depth}"
        )
    depths[-1] = mid_depth  # diffusers' mid block takes the last level's depth
    if len(linear) > 1 or len(scale_shift) > 1:
        raise CheckpointError(f"{source}: UNet blocks mix conv/linear transformer projections or norm types")
    # every transformer has the same context width; the middle one always exists
    context_key = min(
        (k for k in keys if k.endswith(".attn2.to_k.weight")),
        default="middle_block.1.transformer_blocks.0.attn2.to_k.weight",
    )
    time_dim = shape("time_embed.0.weight")[0]
    if time_dim != 4 * model_channels:
        raise CheckpointError(f"{source}: time embedding width {time_dim} is not 4 x {model_channels}")
    config = spinmeround_unet_config(
        in_channels=conv_in[1],
        out_channels=shape("out.2.weight")[0],
        block_out_channels=tuple(widths),
        layers_per_block=layers[0] if len(set(layers)) == 1 else tuple(layers),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)),
        transformer_layers_per_block=depths[0] if len(set(depths)) == 1 else tuple(depths),
        cross_attention_dim=shape(context_key)[1],
        use_linear_projection=linear.pop(),
    )
    if scale_shift.pop():  # diffusers' own key, absent from the release config (which uses its default)
        config["resnet_time_scale_shift"] = "scale_shift"
    return config


def infer_vae_config(official: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """The diffusers AutoencoderKL config of first_stage_model.* tensors, read from keys and shapes.

    Levels: encoder.down.{i}; num_res_blocks: encoder.down.{i}.block.{j} (one value for all levels,
    the decoder has one block more); widths (ch * ch_mult): down.{i}.block.0.conv1 out channels;
    attention per level: down.{i}.attn.* / up.{i}.attn.* (attn_resolutions), in the middle:
    mid.attn_1.*; z_channels: decoder.conv_in in channels, double_z: encoder.conv_out = 2 z;
    embed_dim: post_quant_conv in channels. Not in the tensors: 32 GroupNorm groups (ldm's Normalize).
    """
    from smr_core.vae import spinmeround_vae_config

    p = keymaps.VAE_PREFIX
    sd = {k.removeprefix(p): v for k, v in official.items()}
    keys = list(sd)
    if not keys:
        raise CheckpointError(f"{source} holds no VAE tensors ({p}*); the VAE has no other source (§4.1)")

    def shape(key: str) -> tuple[int, ...]:
        return _shape(sd, key, source, p)

    levels = _indices(keys, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"{source}: VAE encoder levels (encoder.down.{{i}}) are not numbered 0..n-1: {levels}")
    per_level = {len(_indices(keys, rf"encoder\.down\.{i}\.block\.(\d+)\.")) for i in levels}
    if len(per_level) != 1:
        raise _unsupported(source, f"VAE encoder levels have different numbers of ResBlocks {sorted(per_level)}")
    widths = tuple(shape(f"encoder.down.{i}.block.0.conv1.weight")[0] for i in levels)
    ch = shape("encoder.conv_in.weight")[0]
    if widths[0] != ch:
        raise _unsupported(source, f"VAE level 0 is {widths[0]} wide but conv_in gives {ch} (ch_mult[0] != 1)")
    z_channels = shape("decoder.conv_in.weight")[1]
    moments = shape("encoder.conv_out.weight")[0]
    if moments != 2 * z_channels:
        raise _unsupported(
            source, f"the VAE encoder outputs {moments} channels for z_channels {z_channels} (double_z false)"
        )
    embed_dim = shape("post_quant_conv.weight")[1]
    if embed_dim != z_channels:
        raise _unsupported(source, f"VAE embed_dim {embed_dim} differs from z_channels {z_channels}")
    mid = {part: any(k.startswith(f"{part}.mid.attn_1.") for k in keys) for part in ("encoder", "decoder")}
    if mid["encoder"] != mid["decoder"]:
        raise _unsupported(source, "only one of the VAE encoder/decoder has mid-block attention")

    def attends(part: str, i: int) -> bool:
        return any(k.startswith(f"{part}.{'down' if part == 'encoder' else 'up'}.{i}.attn.") for k in keys)

    config = spinmeround_vae_config(
        in_channels=shape("encoder.conv_in.weight")[1],
        out_channels=shape("decoder.conv_out.weight")[0],
        latent_channels=z_channels,
        block_out_channels=widths,
        layers_per_block=per_level.pop(),
        down_block_types=tuple(
            "AttnDownEncoderBlock2D" if attends("encoder", i) else "DownEncoderBlock2D" for i in levels
        ),
        up_block_types=tuple(
            "AttnUpDecoderBlock2D" if attends("decoder", i) else "UpDecoderBlock2D" for i in reversed(levels)
        ),
    )
    if not mid["encoder"]:  # attn_type "none"; a diffusers key the release config leaves at its default
        config["mid_block_add_attention"] = False
    return config


def _official_shapes(module: torch.nn.Module, to_official: dict[str, str], vae: bool) -> dict[str, tuple[int, ...]]:
    """Official key -> the shape the file must hold, for a (meta) module."""
    out: dict[str, tuple[int, ...]] = {}
    for key, value in module.state_dict().items():
        shape = tuple(value.shape)
        if vae and keymaps.is_vae_conv1x1(key) and len(shape) == 2:
            shape = (*shape, 1, 1)
        out[to_official[key]] = shape
    return out


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items()}


def unet_plan(official: dict[str, torch.Tensor], source: Path) -> tuple[Any, dict[str, str]]:
    """A meta-device UNet of the checkpoint's architecture and its our-key -> official-key map."""
    from smr_core.unet import build_unet

    with torch.device("meta"):
        unet = build_unet(infer_unet_config(official, source))
    return unet, keymaps.unet_official_keys(unet.state_dict())


def unet_from_official(official: dict[str, torch.Tensor], source: Path) -> Any:
    """diffusers UNet2DConditionModel from model.diffusion_model.* tensors (strict)."""
    unet, to_official = unet_plan(official, source)
    check_keys(_shapes(official), _official_shapes(unet, to_official, vae=False), "UNet", source)
    to_ours = {v: k for k, v in to_official.items()}
    ours = {to_ours[k]: v for k, v in official.items()}
    load_strict(unet, ours, "UNet", source, display=to_official)
    return unet


def vae_from_official(official: dict[str, torch.Tensor], source: Path) -> Any:
    """diffusers AutoencoderKL from first_stage_model.* tensors (strict; 1x1 conv -> linear)."""
    from smr_core.vae import build_vae

    with torch.device("meta"):
        vae = build_vae(infer_vae_config(official, source))
    to_official = keymaps.vae_official_keys(vae.state_dict())
    check_keys(_shapes(official), _official_shapes(vae, to_official, vae=True), "VAE", source)
    to_ours = {v: k for k, v in to_official.items()}
    ours = {to_ours[k]: keymaps.vae_tensor_to_ours(to_ours[k], v) for k, v in official.items()}
    load_strict(vae, ours, "VAE", source, display=to_official)
    return vae


def text_encoder_from_tensors(
    config: Any, tensors: dict[str, torch.Tensor], source: Path | str, display_prefix: str = ""
) -> Any:
    """transformers CLIPTextModel from tensors in 4.x (`text_model.*`) or 5.x naming (strict).

    display_prefix is prepended to key names in error messages (conditioner.* keys in spmr.ckpt).
    """
    from transformers import CLIPTextModel

    prefixed = [k for k in tensors if k.startswith(keymaps.TEXT_MODEL_PREFIX)]
    if prefixed and len(prefixed) != len(tensors):
        plain = sorted(k for k in tensors if not k.startswith(keymaps.TEXT_MODEL_PREFIX))
        raise CheckpointError(
            f"{source}: text encoder keys mix transformers 4.x (text_model.*) and 5.x naming; "
            f"unexpected key(s): {_listing(plain)}"
        )
    try:
        ours = keymaps.text_keys_to_ours(tensors)
    except KeyError as exc:
        raise CheckpointError(f"{source}: {exc.args[0]}") from exc
    with torch.device("meta"):
        model = CLIPTextModel(config)
    naming = display_prefix + (keymaps.TEXT_MODEL_PREFIX if prefixed else "")
    display = {k: naming + k for k in model.state_dict()}
    positions = config.max_position_embeddings
    # the one non-persistent buffer: a constant arange that no checkpoint needs to carry
    model.embeddings.register_buffer("position_ids", torch.arange(positions).expand((1, -1)), persistent=False)
    load_strict(model, ours, "text encoder", source, display=display)
    return model.eval()


def text_config_from_folder(folder: Path) -> Any:
    """The CLIPTextConfig in an encoder folder's config.json (a full CLIPConfig is unwrapped)."""
    from transformers import CLIPTextConfig

    try:
        return CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the text encoder config in {folder}: {exc}") from exc


# --------------------------------------------------------------------------- whole model


@dataclass
class RawModels:
    """The three networks as stock diffusers/transformers modules, in the file's dtype, on the CPU."""

    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    weights_id: str
    use_ema: bool
    source: dict[str, Any]


def _split_official(state_dict: dict[str, torch.Tensor], source: Path) -> dict[str, dict[str, torch.Tensor]]:
    prefixes = {
        "unet": keymaps.UNET_PREFIX,
        "vae": keymaps.VAE_PREFIX,
        "text": keymaps.TEXT_PREFIX,
        "ema": keymaps.EMA_PREFIX,
    }
    parts: dict[str, dict[str, torch.Tensor]] = {name: {} for name in prefixes}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for name, prefix in prefixes.items():
            if key.startswith(prefix):
                parts[name][key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        check_keys(set(unknown), set(), "checkpoint", source)
    return parts


def _apply_ema(parts: dict[str, dict[str, torch.Tensor]], source: Path) -> None:
    ema = parts["ema"]
    if not ema:
        raise CheckpointError(f"{source} holds no EMA weights (model_ema.*); load it without --ema")
    # LitEma's names drop the dots, so they are matched against the raw UNet's (architecture read from it)
    _, to_official = unet_plan(parts["unet"], source)
    wanted = {keymaps.ema_key(k): k for k in to_official.values()}
    bookkeeping = {keymaps.EMA_PREFIX + "decay", keymaps.EMA_PREFIX + "num_updates"}
    check_keys(set(ema) - bookkeeping, set(wanted), "EMA UNet", source)
    parts["unet"] = {wanted[k]: v for k, v in ema.items() if k in wanted}


def _short_id(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:12]


def _load_official(layout: WeightsLayout, use_ema: bool | None) -> RawModels:
    assert layout.checkpoint is not None and layout.encoder is not None
    source = layout.checkpoint
    parts = _split_official(read_state_dict(source), source)
    use_ema = bool(use_ema)
    if use_ema:
        _apply_ema(parts, source)
    unet = unet_from_official(parts["unet"], source)
    vae = vae_from_official(parts["vae"], source)
    config = text_config_from_folder(layout.encoder)
    encoder_file = _weights_file(layout.encoder, WEIGHT_FILE_NAMES)
    checkpoint_sha = file_sha256(source)
    encoder_sha = None
    if parts["text"]:  # conditioner.* in spmr.ckpt override the encoder folder (§4.1)
        text_tensors = {k.removeprefix(keymaps.TEXT_PREFIX): v for k, v in parts["text"].items()}
        text = text_encoder_from_tensors(config, text_tensors, source, display_prefix=keymaps.TEXT_PREFIX)
    else:
        text = text_encoder_from_tensors(config, read_state_dict(encoder_file), encoder_file)
        encoder_sha = file_sha256(encoder_file)
    id_parts = [checkpoint_sha] + ([encoder_sha] if encoder_sha else []) + (["ema"] if use_ema else [])
    return RawModels(
        unet=unet,
        vae=vae,
        text_encoder=text,
        weights_id=_short_id(*id_parts),
        use_ema=use_ema,
        source={
            "checkpoint": source.name,
            "checkpoint_sha256": checkpoint_sha,
            "encoder_sha256": encoder_sha,
            "conditioner_in_checkpoint": bool(parts["text"]),
        },
    )


def _read_manifest(root: Path) -> dict[str, Any]:
    import json

    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {root / MANIFEST}: {exc}; re-run `spin-to-mesh weights convert`") from exc
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("format_version") != MANIFEST_VERSION:
        raise CheckpointError(
            f"{root / MANIFEST} is not a spin-to-mesh weights manifest of version {MANIFEST_VERSION}; "
            "re-run `spin-to-mesh weights convert`"
        )
    return manifest


def _load_converted(layout: WeightsLayout, use_ema: bool | None) -> RawModels:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from smr_core.weights import DIFFUSERS_WEIGHT_NAMES

    assert layout.unet is not None and layout.vae is not None and layout.encoder is not None
    manifest = _read_manifest(layout.root)
    if use_ema is not None and bool(use_ema) != bool(manifest.get("use_ema")):
        have = "EMA" if manifest.get("use_ema") else "raw (non-EMA)"
        raise CheckpointError(
            f"{layout.root} holds the {have} weights only; re-convert from spmr.ckpt "
            f"{'with' if use_ema else 'without'} --ema, or drop the EMA option"
        )
    modules = []
    for cls, folder, what in ((UNet2DConditionModel, layout.unet, "UNet"), (AutoencoderKL, layout.vae, "VAE")):
        config = cls.load_config(str(folder))
        with torch.device("meta"):
            module = cls.from_config(config)
        weights = _weights_file(folder, DIFFUSERS_WEIGHT_NAMES)
        load_strict(module, read_state_dict(weights), what, weights)
        modules.append(module)
    encoder_file = _weights_file(layout.encoder, WEIGHT_FILE_NAMES)
    text = text_encoder_from_tensors(
        text_config_from_folder(layout.encoder), read_state_dict(encoder_file), encoder_file
    )
    return RawModels(
        unet=modules[0],
        vae=modules[1],
        text_encoder=text,
        weights_id=str(manifest["weights_id"]),
        use_ema=bool(manifest.get("use_ema")),
        source=dict(manifest.get("source", {})),
    )


def load_raw(layout: WeightsLayout, use_ema: bool | None = None) -> RawModels:
    """Load either layout into stock modules (file dtype, CPU), strictly.

    use_ema: None = the release's behaviour (raw weights; a converted folder: what it holds),
    True/False = insist on EMA or raw weights.
    """
    if layout.kind == "converted":
        return _load_converted(layout, use_ema)
    return _load_official(layout, use_ema)


@dataclass
class SpinMeRoundModels:
    """Everything the samplers need; `weights_id` identifies the weights in run records."""

    unet: Any  # smr_core.unet.MultiViewUNet
    vae: Any  # smr_core.vae.LatentVAE (fp32)
    identity_encoder: Any  # smr_core.identity.IdentityEncoder (fp32)
    weights_id: str
    use_ema: bool
    layout: WeightsLayout


def load_spinmeround(
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    use_ema: bool | None = None,
    check_tokenizer: bool = True,
) -> SpinMeRoundModels:
    """The single loading entry point: find, load strictly, wrap, move to `device`.

    `dtype` applies to the UNet; the VAE and the identity encoder stay fp32 (§2.7; both are cheap
    next to 2F x 50 UNet evaluations).
    """
    from smr_core.identity import IdentityEncoder, find_local_tokenizer
    from smr_core.identity import check_tokenizer as check_tokenizer_ids
    from smr_core.unet import MultiViewUNet
    from smr_core.vae import LatentVAE

    layout = find_weights(weights_dir)
    raw = load_raw(layout, use_ema)
    if check_tokenizer and layout.encoder is not None:
        tokenizer = find_local_tokenizer([layout.encoder.parent / "tokenizer", layout.root / "tokenizer"])
        if tokenizer is not None:
            check_tokenizer_ids(tokenizer)
    unet = MultiViewUNet(raw.unet).to(device=device, dtype=dtype).eval().requires_grad_(False)
    vae = LatentVAE(raw.vae).to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    encoder = IdentityEncoder(raw.text_encoder).to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    return SpinMeRoundModels(
        unet=unet, vae=vae, identity_encoder=encoder, weights_id=raw.weights_id, use_ema=raw.use_ema, layout=layout
    )


# --------------------------------------------------------------------------- conversion


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spin-to-mesh")
    except PackageNotFoundError:
        return "unknown"


def convert_weights(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    use_ema: bool | None = None,
    overwrite: bool = False,
    copy_alignment: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a diffusers-style folder (unet/, vae/, text_encoder/, spinmeround.json) from `src`.

    The folder is assembled under a temporary name and renamed into place, so an interrupted
    conversion never leaves a folder that looks complete. Alignment files are copied along when
    present so the converted folder is self-sufficient. `progress(stage)` is called as each of the
    CONVERT_STAGES begins (the CLI shows a progress bar with it).
    """
    step = progress or (lambda stage: None)
    from spin_io.atomic import atomic_write_json

    dst = Path(dst).expanduser()
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{dst} already exists; choose another -o folder or pass --force")
    layout = find_weights(src)
    step(CONVERT_STAGES[0])
    raw = load_raw(layout, use_ema)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(dst)
    try:
        step(CONVERT_STAGES[1])
        raw.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        step(CONVERT_STAGES[2])
        raw.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        step(CONVERT_STAGES[3])
        raw.text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
        step(CONVERT_STAGES[4])
        if copy_alignment:
            if layout.antelopev2 is not None:
                shutil.copytree(layout.antelopev2, tmp / "models" / "antelopev2")
            if layout.bisenet is not None:
                shutil.copy2(layout.bisenet, tmp / layout.bisenet.name)
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "weights_id": raw.weights_id,
            "use_ema": raw.use_ema,
            "source": raw.source,
            "converted_by": f"spin-to-mesh {_package_version()}",
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst
