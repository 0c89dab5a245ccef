"""The typed configuration of a training run, read from TOML, YAML or JSON (docs/TRAINING.md lists every field).

Defaults are the paper's where it gives one (SPINMEROUND.md §5.1: ln sigma ~ N(0.7, 1.6^2), LR 1e-5,
0/1/3 conditioning views) and ours otherwise (CFG dropout rates, AdamW betas, EMA decay): the
authors released no training code. Relative paths are resolved against the config file's folder, so
an example config runs from any working directory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smr_core.train.errors import TrainingError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the subjects are and how a training group of F frames is drawn from one of them."""

    root: Path = Field(description="Dataset folder: one sub-folder per subject (views/ ViewSet + arcface.npy).")
    subjects_file: Path | None = Field(
        None, description="Text file of subject names to use (one per line), e.g. `filter-data`'s kept.txt."
    )
    image_size: int = Field(512, ge=64, description="Images are resized to this; latents are image_size/8 (512).")
    num_frames: int = Field(8, ge=1, le=16, description="Frames per group F (the release generates up to 16).")
    conditioning_views: tuple[int, ...] = Field((0, 1, 3), description="Numbers of clean conditioning views.")
    conditioning_probs: tuple[float, ...] = Field((1 / 3, 1 / 3, 1 / 3), description="Probability of each number.")
    p_frontal_conditioning: float = Field(
        0.5, ge=0.0, le=1.0, description="Chance that the frontal view is the first conditioning view when any."
    )
    camera_encoding: Literal["angles", "rays"] = Field(
        "angles", description="How a camera becomes model angles: as smr_core.cameras.model_angles (pipeline's)."
    )
    normal_frame: Literal["camera", "world"] = Field(
        "camera", description="Frame the normal images are expressed in before encoding (pipeline default camera)."
    )
    white_background: bool = Field(True, description="Composite RGB onto white outside the mask (model's input).")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 = in the training process).")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (latents are image_size/8), got {self.image_size}")
        if len(self.conditioning_views) != len(self.conditioning_probs) or not self.conditioning_views:
            raise ValueError("conditioning_views and conditioning_probs need one probability per number")
        if any(p < 0 for p in self.conditioning_probs) or not math.isclose(sum(self.conditioning_probs), 1.0,
                                                                           abs_tol=1e-6):
            raise ValueError(f"conditioning_probs must be >= 0 and sum to 1, got {self.conditioning_probs}")
        if any(n < 0 or n >= self.num_frames for n in self.conditioning_views):
            raise ValueError(
                f"every number of conditioning views must leave a target among num_frames={self.num_frames}, "
                f"got {self.conditioning_views}"
            )
        return self


class ModelConfig(_Strict):
    """Which weights the run starts from (docs/TRAINING.md: initialisation)."""

    init: Literal["spinmeround", "arc2face", "tiny-random"] = Field(
        "spinmeround",
        description="spinmeround: fine-tune a SpinMeRound folder (`weights`); arc2face: an Arc2Face UNet widened "
        "to 153/8 channels plus an SD VAE and the Arc2Face encoder; tiny-random: toy networks for tests.",
    )
    weights: Path | None = Field(None, description="SpinMeRound weights folder (init = spinmeround).")
    start_from_ema: bool = Field(False, description="Start from the release's EMA copy instead of its raw weights.")
    arc2face_unet: Path | None = Field(None, description="Arc2Face UNet folder (diffusers config + weights).")
    vae: Path | None = Field(None, description="SD-1.5 VAE folder (diffusers AutoencoderKL), init = arc2face.")
    encoder: Path | None = Field(None, description="Arc2Face encoder folder (CLIP text model), init = arc2face.")
    normals_out_init: Literal["copy", "zero"] = Field(
        "copy", description="conv_out rows of the normals latent: copy of the RGB rows, or zero (arc2face)."
    )
    tiny_unet: dict[str, Any] = Field(default_factory=dict, description="Overrides of the tiny UNet config.")
    tiny_seed: int = Field(0, description="Seed of the tiny random networks.")
    encode: Literal["sample", "mean"] = Field("sample", description="VAE posterior sample (release) or mean.")
    latent_scale: float | None = Field(None, gt=0, description="Latent scaling; None = the VAE's (0.18215).")
    cache_latents: bool = Field(
        False, description="Keep every view's latents in memory after the first encode (needs encode = 'mean')."
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        need = {"spinmeround": ("weights",), "arc2face": ("arc2face_unet", "vae", "encoder"), "tiny-random": ()}
        missing = [name for name in need[self.init] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"model.init = {self.init!r} needs model.{', model.'.join(missing)}")
        if self.cache_latents and self.encode != "mean":
            raise ValueError("model.cache_latents needs model.encode = 'mean' (posterior samples differ every step)")
        return self


class ObjectiveConfig(_Strict):
    """The EDM objective of §5.1 and classifier-free dropout (rates are ours; the authors' are unpublished)."""

    p_mean: float = Field(0.7, description="Mean of ln sigma (paper 0.7).")
    p_std: float = Field(1.6, gt=0, description="Std of ln sigma (paper 1.6).")
    p_drop_identity: float = Field(0.05, ge=0, le=1, description="Chance a group's identity becomes the '' prompt.")
    p_drop_views: float = Field(
        0.05, ge=0, le=1, description="Chance a group's conditioning views become the grey latent with zero rays."
    )
    p_drop_all: float = Field(0.05, ge=0, le=1, description="Chance of both at once (the CFG unconditional branch).")
    sigma_buckets: tuple[float, ...] = Field(
        (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0), description="Edges of the sigma buckets the loss is logged in."
    )


class OptimConfig(_Strict):
    """AdamW; lr 1e-5 is the release config's base_learning_rate."""

    lr: float = Field(1e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.01, ge=0)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0, description="Max global gradient norm (None = no clipping).")
    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up over this many optimiser steps.")


class RunConfig(_Strict):
    """The loop: steps, batch, precision, checkpoints, logging."""

    output_dir: Path = Field(description="Run folder: checkpoints/, metrics.jsonl, weights/ (the exported model).")
    max_steps: int = Field(ge=1, description="Optimiser steps of the whole run (a resumed run continues to it).")
    batch_size: int = Field(1, ge=1, description="Groups of F frames per process per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimiser step.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto = bf16 autocast on CUDA, else fp32.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (less memory).")
    ema_decay: float = Field(0.9999, ge=0, lt=1, description="EMA decay (warmed up as min(decay, (1+n)/(10+n))).")
    checkpoint_every: int = Field(500, ge=1, description="Save a resumable checkpoint every this many steps.")
    keep_checkpoints: int = Field(2, ge=1, description="Older checkpoints are deleted.")
    log_every: int = Field(10, ge=1, description="Write a metrics.jsonl line every this many steps.")
    seed: int = Field(0, ge=0, description="Seeds data order, views, sigma, noise and dropout.")
    device: str | None = Field(None, description="cpu or cuda (default: what accelerate picks).")
    export_weights: bool = Field(True, description="Write weights/ (official layout, raw + EMA) at the end.")
    progress: bool = Field(True, description="Show a progress bar.")


class TrainConfig(_Strict):
    data: DataConfig
    model: ModelConfig = ModelConfig(init="tiny-random")
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig


_PATH_FIELDS = {
    "data": ("root", "subjects_file"),
    "model": ("weights", "arc2face_unet", "vae", "encoder"),
    "run": ("output_dir",),
}


def _read_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise TrainingError(f"{path}: YAML needs PyYAML (pip install pyyaml); or use a .toml config") from exc
        return yaml.safe_load(text) or {}
    if suffix == ".json":
        return json.loads(text)
    raise TrainingError(f"{path}: unknown config format {suffix!r}; use .toml, .yaml or .json")


def load_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> TrainConfig:
    """Read and validate a config file; relative paths are taken relative to the file's folder.

    overrides: {"run": {"max_steps": 10}, ...} applied on top (the CLI's flags).
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such config file; see examples/train_tiny.toml for one that runs")
    try:
        raw = _read_mapping(path)
    except (ValueError, OSError) as exc:
        raise TrainingError(f"{path}: cannot parse the config ({exc})") from exc
    if not isinstance(raw, dict):
        raise TrainingError(f"{path}: the config must be a table/mapping with [data], [model], [run] sections")
    for section, extra in (overrides or {}).items():
        raw.setdefault(section, {}).update(extra)
    for section, names in _PATH_FIELDS.items():
        table = raw.get(section)
        if isinstance(table, dict):
            for name in names:
                value = table.get(name)
                if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                    table[name] = str((path.parent / value).resolve())
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise TrainingError(f"{path}: invalid training config:\n{exc}") from exc
