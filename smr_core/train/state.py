"""Checkpoints that survive a kill, exact resume, and export of the trained model in the official layout.

A checkpoint is `checkpoints/step-NNNNNNNN.pt` (model, EMA, optimiser, LR schedule, step, config) plus
one `step-NNNNNNNN.rng-R.pt` per process (torch, CUDA, numpy, python and the run's own generator), each
written atomically (spin_io.atomic); `checkpoints/latest.json` is rewritten last, so a run killed at any
moment resumes from the newest COMPLETE checkpoint. The data stream is a pure function of the step
(smr_core.train.data), so these states are all a resumed run needs to end bit-identical to an
uninterrupted one. Files hold only tensors and plain Python values: they load with
torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smr_core.train.errors import TrainingError
from spin_io.atomic import atomic_path, atomic_write_json, make_temp_dir

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
STATE_FORMAT = "spin-to-mesh/train-state"
STATE_VERSION = 1


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


# --------------------------------------------------------------------------- RNG states as plain values


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a training step may consume, as tensors / lists (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    run_dir: Path, step: int, payload: dict[str, Any], rng: dict[str, Any], rank: int, is_main: bool
) -> None:
    """Write this process's part of the checkpoint of `step` (main: model state; every rank: its RNG)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    name = checkpoint_name(step)
    if is_main:
        with atomic_path(folder / f"{name}.pt") as tmp:
            torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, "step": step, **payload}, tmp)
    with atomic_path(folder / f"{name}.rng-{rank}.pt") as tmp:
        torch.save(rng, tmp)


def publish_checkpoint(run_dir: Path, step: int, world_size: int, keep: int) -> None:
    """Point latest.json at `step` (after every rank has written) and delete checkpoints beyond `keep`."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    name = checkpoint_name(step)
    atomic_write_json(folder / LATEST, {"step": step, "name": name, "world_size": world_size})
    mains = [p for p in folder.glob("step-*.pt") if ".rng-" not in p.name and p.name[5:13].isdigit()]
    steps = sorted(int(p.name[5:13]) for p in mains)
    for old in steps[:-keep] if keep > 0 else []:
        if old == step:
            continue
        for f in folder.glob(f"{checkpoint_name(old)}.*"):
            f.unlink(missing_ok=True)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(step, main file) of the newest complete checkpoint, or None for a fresh run."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    try:
        info = json.loads(pointer.read_text("utf-8"))
        step, name = int(info["step"]), str(info["name"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{pointer}: unreadable ({exc}); delete it to resume from scratch") from exc
    path = pointer.parent / f"{name}.pt"
    if not path.is_file():
        raise TrainingError(f"{pointer} points to {path}, which is missing; delete latest.json to start again")
    return step, path


def load_checkpoint(path: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(main payload, this rank's RNG state)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {exc}; delete it and latest.json to start over") from exc
    if payload.get("format") != STATE_FORMAT or payload.get("version") != STATE_VERSION:
        raise TrainingError(f"{path} is not a spin-to-mesh training checkpoint of version {STATE_VERSION}")
    rng_path = path.with_name(path.name.removesuffix(".pt") + f".rng-{rank}.pt")
    if not rng_path.is_file():
        raise TrainingError(
            f"{rng_path} is missing: this checkpoint was written by fewer processes; resume with the same number "
            "of processes it was written with"
        )
    return payload, torch.load(rng_path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- export


def export_weights(
    out_dir: Path,
    unet: torch.nn.Module,
    ema_shadow: dict[str, torch.Tensor] | None,
    ema_updates: int,
    ema_decay: float,
    vae: torch.nn.Module,
    text_encoder: torch.nn.Module,
) -> Path:
    """Write a weights folder in the OFFICIAL layout that `load_spinmeround` reads (use_ema=True for the EMA).

    out_dir/spmr.safetensors: model.diffusion_model.* (raw), model_ema.* (EMA), first_stage_model.*;
    out_dir/models/encoder/: the (frozen) identity encoder. Assembled under a temporary name, then renamed.
    """

    from safetensors.torch import save_file

    from smr_core import keymaps

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    unet_state = {k: v.detach().float().cpu() for k, v in unet.state_dict().items()}
    state = keymaps.to_official_state_dict(unet=unet_state, vae={k: v.cpu() for k, v in vae.state_dict().items()})
    if ema_shadow is not None:
        # named by the depth-independent rules, so a model of any architecture exports (not only the release's)
        to_official = keymaps.unet_official_keys(unet_state)
        for ours, value in ema_shadow.items():
            state[keymaps.ema_key(to_official[ours])] = value.detach().float().cpu()
        state[keymaps.EMA_PREFIX + "decay"] = torch.tensor(ema_decay)
        state[keymaps.EMA_PREFIX + "num_updates"] = torch.tensor(ema_updates, dtype=torch.int32)
    state = {k: v.contiguous() for k, v in state.items()}
    tmp = make_temp_dir(out_dir)
    try:
        save_file(state, str(tmp / "spmr.safetensors"))
        text_encoder.save_pretrained(tmp / "models" / "encoder", safe_serialization=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
