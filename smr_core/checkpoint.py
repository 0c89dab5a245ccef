"""Loading SpinMeRound weights strictly, and converting them to diffusers/transformers folders.

Official layout (SPINMEROUND.md §4): spmr.ckpt is a Lightning checkpoint whose "state_dict" holds
model.diffusion_model.* (UNet), first_stage_model.* (VAE), optionally conditioner.* (Arc2Face
encoder; overrides models/encoder/, §4.1) and model_ema.* (ignored unless asked for). Every
tensor must map onto our modules and every parameter must be present: a missing, unexpected or
mis-shaped key is a CheckpointError that names it (the release loads with strict=False and only
prints them). Widths are read from tensor shapes, so small checkpoints in the official layout
(tests, `--tiny-random`) load through this same path.

Modules are built on the meta device and the loaded tensors are assigned, so no time is spent on
random initialisation and no second copy of the weights is made on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from smr_core import keymaps
from smr_core.errors import CheckpointError
from smr_core.weights import MANIFEST, WEIGHT_FILE_NAMES, WeightsLayout, find_weights
from spin_io.atomic import make_temp_dir, replace_dir

MANIFEST_FORMAT = "spin-to-mesh/spinmeround-weights"
MANIFEST_VERSION = 1
CONVERT_STAGES = ("read + hash", "unet", "vae", "text encoder", "finish")
_MAX_LISTED = 12


# --------------------------------------------------------------------------- reading files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a pickled checkpoint via torch.load(weights_only=True).

    A Lightning checkpoint's "state_dict" entry is unwrapped; other entries (optimizer state, loops)
    are ignored.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"cannot read {path}: {exc}; re-download the file") from exc
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
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def check_keys(found: set[str], expected: set[str], what: str, source: Path | str) -> None:
    """Raise CheckpointError naming missing and unexpected keys of one component."""
    missing = sorted(expected - found)
    unexpected = sorted(found - expected)
    if not (missing or unexpected):
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_listing(unexpected)}")
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
        {display.get(k, k) for k in state_dict},
        {display.get(k, k) for k in expected},
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


def _shape(sd: dict[str, torch.Tensor], key: str, source: Path) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {key}")
    return tuple(sd[key].shape)


def infer_unet_config(official: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """UNet widths from tensor shapes (official names); the rest is the SpinMeRound config."""
    from smr_core.unet import spinmeround_unet_config

    p = keymaps.UNET_PREFIX
    conv_in = _shape(official, p + "input_blocks.0.0.weight", source)
    conv_out = _shape(official, p + "out.2.weight", source)
    widths = tuple(_shape(official, f"{p}input_blocks.{i}.0.in_layers.2.weight", source)[0] for i in (1, 4, 7, 10))
    cross = _shape(official, p + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", source)[1]
    time_dim = _shape(official, p + "time_embed.0.weight", source)[0]
    if time_dim != 4 * widths[0]:
        raise CheckpointError(f"{source}: time embedding width {time_dim} is not 4 x {widths[0]}")
    return spinmeround_unet_config(
        in_channels=conv_in[1], out_channels=conv_out[0], block_out_channels=widths, cross_attention_dim=cross
    )


def infer_vae_config(official: dict[str, torch.Tensor], source: Path) -> dict[str, Any]:
    """VAE widths from tensor shapes (official names)."""
    from smr_core.vae import spinmeround_vae_config

    p = keymaps.VAE_PREFIX
    widths = tuple(_shape(official, f"{p}encoder.down.{i}.block.0.conv1.weight", source)[0] for i in range(4))
    return spinmeround_vae_config(
        in_channels=_shape(official, p + "encoder.conv_in.weight", source)[1],
        out_channels=_shape(official, p + "decoder.conv_out.weight", source)[0],
        latent_channels=_shape(official, p + "post_quant_conv.weight", source)[0],
        block_out_channels=widths,
    )


def unet_from_official(official: dict[str, torch.Tensor], source: Path) -> Any:
    """diffusers UNet2DConditionModel from model.diffusion_model.* tensors (strict)."""
    from smr_core.unet import build_unet

    keymap = keymaps.unet_keymap()
    check_keys(set(official), set(keymap.to_ours), "UNet", source)
    with torch.device("meta"):
        unet = build_unet(infer_unet_config(official, source))
    ours = {keymap.to_ours[k]: v for k, v in official.items()}
    load_strict(unet, ours, "UNet", source, display=keymap.to_official)
    return unet


def vae_from_official(official: dict[str, torch.Tensor], source: Path) -> Any:
    """diffusers AutoencoderKL from first_stage_model.* tensors (strict; 1x1 conv -> linear)."""
    from smr_core.vae import build_vae

    keymap = keymaps.vae_keymap()
    check_keys(set(official), set(keymap.to_ours), "VAE", source)
    with torch.device("meta"):
        vae = build_vae(infer_vae_config(official, source))
    ours = {keymap.to_ours[k]: keymaps.vae_tensor_to_ours(keymap.to_ours[k], v) for k, v in official.items()}
    load_strict(vae, ours, "VAE", source, display=keymap.to_official)
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
    wanted = {keymaps.ema_key(k): k for k in keymaps.unet_keymap().to_ours}
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
