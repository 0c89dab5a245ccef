"""The training loop: AdamW, gradient accumulation, bf16 autocast on CUDA, EMA, checkpoints, accelerate.

One optimiser step = `grad_accum` micro-batches of `batch_size` groups per process. Multi-GPU runs
are launched with `accelerate launch -m smr_core.train_cli train CONFIG` (or `spin-to-mesh train`
under `accelerate launch`); on one CPU or GPU the same code runs as a single process.

Gradient checkpointing is diffusers' own (`enable_gradient_checkpointing`): its transformer blocks
pass `cross_attention_kwargs` through the checkpointed call, so the frame count reaches our
multi-view processors in the recomputation too (the trap of SPINMEROUND.md §7 item 16, which the
official code falls into); tests/test_train_loop.py checks outputs and gradients against a plain run.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from smr_core.denoiser import append_dims, v_scaling
from smr_core.train import objective
from smr_core.train.config import TrainConfig
from smr_core.train.data import GroupDataset, ResumableSampler, collate_groups, load_subjects
from smr_core.train.ema import EMA
from smr_core.train.errors import TrainingError
from smr_core.train.init import TrainModels, build_models
from smr_core.train.state import (
    capture_rng,
    export_weights,
    latest_checkpoint,
    load_checkpoint,
    publish_checkpoint,
    restore_rng,
    save_checkpoint,
)
from spin_io.atomic import atomic_write_bytes, atomic_write_json

METRICS_FILE = "metrics.jsonl"
_RESUME_MUST_MATCH = ("data", "model", "objective")


@dataclass
class StepInfo:
    """What a callback sees after each optimiser step."""

    step: int
    loss: float
    lr: float
    unet: torch.nn.Module


@dataclass
class TrainResult:
    step: int
    resumed_from: int | None
    losses: list[float] = field(default_factory=list)  # mean loss of every step run in this call
    bucket_loss: dict[str, float | None] = field(default_factory=dict)  # over the last log window
    run_dir: Path | None = None
    weights_dir: Path | None = None


@dataclass
class Batch:
    """One micro-batch on the device: B groups of F frames, frames of a group contiguous."""

    x0: Tensor  # (N, 8, h, w) clean latents: RGB latent, normals latent
    rays: Tensor  # (N, 144, h, w)
    is_target: Tensor  # (N,) bool
    context: Tensor  # (B, 77, D) identity context
    num_frames: int


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA (auto or bf16); never on the CPU, where the run is fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16


def training_loss(
    network: Callable[[Tensor, Tensor, Tensor, int], Tensor],
    batch: Batch,
    uncond_context: Tensor,
    empty_latent: Tensor,
    config: Any,
    generator: torch.Generator,
    autocast: torch.dtype | None = None,
    prune_frames: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, per-group sigma (B,), per-group loss (B,)) of one micro-batch (objective module docstring).

    prune_frames: conditioning frames are not in the loss, so a network that supports it (smr_core.unet)
    stops computing them after the last multi-view attention; loss and gradients are unchanged (2.7 % of
    the forward FLOPs with 1 of 8 frames conditioning, 8 % with 3).

    Random draws, in order, from `generator` (CPU): sigma (B,), eps (N, 8, h, w), dropout uniforms (B, 3).
    Classifier-free dropout per group: identity -> the "" context; conditioning views -> the grey-image
    latent with all 145 conditioning channels zero (the inference unconditional branch, SPINMEROUND.md §5.4).
    """
    x0, device = batch.x0, batch.x0.device
    n, f = x0.shape[0], batch.num_frames
    b = n // f
    sigma_g = objective.sample_sigmas(b, config.p_mean, config.p_std, generator)
    eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(device)
    u = torch.rand(b, 3, generator=generator, device=generator.device)
    drop_all = u[:, 0] < config.p_drop_all
    drop_id = (drop_all | (u[:, 1] < config.p_drop_identity)).to(device)
    drop_views = (drop_all | (u[:, 2] < config.p_drop_views)).to(device)

    sigma = sigma_g.to(device).repeat_interleave(f)
    is_target = batch.is_target.to(device)
    x = objective.noisy_input(x0, eps, sigma, is_target)
    dropped_cond = (~is_target) & drop_views.repeat_interleave(f)
    x = torch.where(append_dims(dropped_cond, x.ndim), empty_latent.to(x.dtype).expand_as(x), x)
    mask = is_target.to(x.dtype)[:, None, None, None].expand(n, 1, *x.shape[2:])
    cond_images = torch.cat([batch.rays.to(x.dtype), mask], dim=1)
    cond_images = cond_images * (~dropped_cond).to(x.dtype)[:, None, None, None]
    context = torch.where(drop_id[:, None, None], uncond_context.to(batch.context.dtype), batch.context)
    context = context.repeat_interleave(f, dim=0)

    _, _, c_in, c_noise = v_scaling(sigma)
    net_in = torch.cat([append_dims(c_in, x.ndim) * x, cond_images], dim=1)
    keep = None
    core = getattr(network, "module", network)  # DistributedDataParallel keeps the model in .module
    if prune_frames and getattr(core, "supports_frame_pruning", False) and not bool(is_target.all()):
        keep = torch.nonzero(is_target).squeeze(1)
    ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    with ctx:
        if keep is None:
            prediction = network(net_in, c_noise, context, f)
        else:
            prediction = network(net_in, c_noise, context, f, keep_frames=keep)
    v = objective.v_target(x0, eps, sigma)
    if keep is None:
        per_frame = objective.per_frame_v_loss(prediction, v)
    else:  # the dropped frames' losses are zero-weighted anyway: put the kept ones back in place
        kept = objective.per_frame_v_loss(prediction, v.index_select(0, keep))
        per_frame = kept.new_zeros(n).index_copy(0, keep, kept)
    loss = objective.masked_mean(per_frame, is_target)
    with torch.no_grad():
        w = is_target.float().view(b, f)
        group_loss = (per_frame.detach().view(b, f) * w).sum(1) / w.sum(1).clamp(min=1.0)
    return loss, sigma_g, group_loss


class Trainer:
    """Holds one run: models, optimiser, EMA, data stream, and the accelerate state."""

    def __init__(self, config: TrainConfig, models: TrainModels | None = None) -> None:
        from accelerate import Accelerator

        self.config = config
        run = config.run
        self.accelerator = Accelerator(cpu=(run.device == "cpu"), mixed_precision="no")
        self.device = self.accelerator.device
        if run.device not in (None, "cpu") and torch.device(run.device).type != self.device.type:
            raise TrainingError(f"run.device = {run.device!r} but accelerate chose {self.device}; is CUDA available?")
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        self.run_dir = Path(run.output_dir)
        seed = run.seed * 1000 + self.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.models = models if models is not None else build_models(config.model)
        self.autocast = autocast_dtype(run.precision, self.device)

        unet = self.models.unet.to(self.device)
        if run.gradient_checkpointing:
            unet.unet.enable_gradient_checkpointing()
        self.models.vae.to(self.device)
        self.models.identity.to(self.device)
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            unet.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, eps=o.eps
        )
        warm = o.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm > 0 else 1.0
        )
        self.ema = EMA(unet.unet, run.ema_decay)
        self.step = 0
        self.resumed_from: int | None = None
        self.subjects = load_subjects(config.data)
        self._latent_cache: dict[tuple[str, int], Tensor] = {}
        with torch.no_grad():
            self.uncond = self.models.identity.unconditional(1)
            size = config.data.image_size
            grey = torch.zeros(1, 3, size, size, device=self.device)
            self.empty_latent = self.models.vae.encode(grey, sample=False).repeat(1, 2, 1, 1)

    # ------------------------------------------------------------------ checkpoints

    def _config_record(self) -> dict[str, Any]:
        return json.loads(self.config.model_dump_json())

    def resume(self) -> None:
        found = latest_checkpoint(self.run_dir)
        if found is None:
            return
        step, path = found
        payload, rng = load_checkpoint(path, self.rank)
        saved, now = payload["config"], self._config_record()
        changed = [k for k in _RESUME_MUST_MATCH if saved.get(k) != now.get(k)]
        if saved["run"].get("seed") != now["run"].get("seed"):
            changed.append("run.seed")
        if changed:
            raise TrainingError(
                f"{self.run_dir} holds a run with a different {', '.join(changed)} config; resume with the config "
                "it was started with, or choose a new run.output_dir"
            )
        self.models.unet.unet.load_state_dict(payload["unet"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.ema.load_state_dict(payload["ema"])
        restore_rng(rng, self.generator)
        self.step = self.resumed_from = step
        self._truncate_metrics(step)

    def save(self) -> None:
        payload = {
            "unet": self.models.unet.unet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "config": self._config_record(),
            "source": self.models.source,
        }
        save_checkpoint(self.run_dir, self.step, payload, capture_rng(self.generator), self.rank, self.is_main)
        self.accelerator.wait_for_everyone()
        if self.is_main:
            publish_checkpoint(self.run_dir, self.step, self.world, self.config.run.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _truncate_metrics(self, step: int) -> None:
        path = self.run_dir / METRICS_FILE
        if not self.is_main or not path.is_file():
            return
        kept = [line for line in path.read_text("utf-8").splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_bytes(path, ("".join(line + "\n" for line in kept)).encode("utf-8"))

    def _log(self, record: dict[str, Any]) -> None:
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ data

    def _loader(self) -> torch.utils.data.DataLoader:
        run = self.config.run
        dataset = GroupDataset(self.config.data, run.seed, self.subjects)
        sampler = ResumableSampler(run.batch_size, self.step * run.grad_accum, self.rank, self.world)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=run.batch_size,
            sampler=sampler,
            collate_fn=collate_groups,
            num_workers=self.config.data.num_workers,
            persistent_workers=self.config.data.num_workers > 0,
        )

    def _latents(self, raw: dict[str, Any]) -> Tensor:
        """(N, 8, h, w): RGB latent then normals latent of every frame; from the cache where allowed."""
        vae, n = self.models.vae, raw["rgb"].shape[0]
        if not self.config.model.cache_latents:
            sample = self.config.model.encode == "sample"
            images = torch.cat([raw["rgb"], raw["normal"]]).to(self.device)
            z = vae.encode(images, sample=sample, generator=self.generator if sample else None)
            return torch.cat([z[:n], z[n:]], dim=1)
        keys = [(s, i) for s, frames in zip(raw["subject"], raw["frames"], strict=True) for i in frames]
        for k, key in enumerate(keys):
            if key not in self._latent_cache:  # one view per call: the cached value never depends on the batch
                z = vae.encode(torch.stack([raw["rgb"][k], raw["normal"][k]]).to(self.device), sample=False)
                self._latent_cache[key] = z.reshape(-1, *z.shape[2:])
        return torch.stack([self._latent_cache[key] for key in keys])

    @torch.no_grad()
    def prepare_batch(self, raw: dict[str, Any]) -> Batch:
        """Encode images with the frozen VAE (fp32) and the identity with the frozen encoder."""
        x0 = self._latents(raw)
        context = self.models.identity(raw["id_emb"].to(self.device))
        return Batch(x0, raw["rays"].to(self.device), raw["is_target"].to(self.device), context,
                     self.config.data.num_frames)

    # ------------------------------------------------------------------ the loop

    def fit(self, callbacks: Sequence[Callable[[StepInfo], None]] = ()) -> TrainResult:
        from tqdm.auto import tqdm

        run, acc = self.config.run, self.accelerator
        model, optimizer = acc.prepare(self.models.unet, self.optimizer)
        edges = self.config.objective.sigma_buckets
        labels = objective.bucket_labels(edges)
        window_sum, window_n = np.zeros(len(labels)), np.zeros(len(labels))
        window_losses: list[float] = []
        result = TrainResult(self.step, self.resumed_from, run_dir=self.run_dir)
        bar = tqdm(total=run.max_steps, initial=self.step, desc="train", disable=not (run.progress and self.is_main))
        batches = iter(self._loader())
        while self.step < run.max_steps:
            step_loss = 0.0
            for micro in range(run.grad_accum):
                batch = self.prepare_batch(next(batches))
                sync = acc.no_sync(model) if micro < run.grad_accum - 1 else nullcontext()
                with sync:
                    loss, sigma_g, group_loss = training_loss(
                        model, batch, self.uncond, self.empty_latent, self.config.objective, self.generator,
                        self.autocast,
                    )
                    acc.backward(loss / run.grad_accum)
                sigma_all, group_all = acc.gather((sigma_g.to(self.device), group_loss))
                buckets = objective.bucket_index(sigma_all, edges).numpy()
                np.add.at(window_sum, buckets, group_all.float().cpu().numpy())
                np.add.at(window_n, buckets, 1)
                step_loss += float(acc.gather(loss.detach()[None]).mean()) / run.grad_accum
            if not math.isfinite(step_loss):
                raise TrainingError(
                    f"the loss became {step_loss} at step {self.step + 1}; lower optim.lr or use precision = 'fp32'"
                )
            if self.config.optim.grad_clip is not None:
                acc.clip_grad_norm_(model.parameters(), self.config.optim.grad_clip)
            optimizer.step()
            self.scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.ema.update(self.models.unet.unet)
            self.step += 1
            result.losses.append(step_loss)
            window_losses.append(step_loss)
            lr = self.scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if self.step % run.log_every == 0 or self.step == run.max_steps:
                bucket = {
                    k: (float(s / c) if c else None) for k, s, c in zip(labels, window_sum, window_n, strict=True)
                }
                result.bucket_loss = bucket
                self._log({"step": self.step, "loss": float(np.mean(window_losses)), "lr": lr, "sigma_buckets": bucket,
                           "counts": {k: int(c) for k, c in zip(labels, window_n, strict=True)}})
                window_sum[:], window_n[:], window_losses = 0.0, 0.0, []
            if self.step % run.checkpoint_every == 0 or self.step == run.max_steps:
                self.save()
            for callback in callbacks:
                callback(StepInfo(self.step, step_loss, lr, self.models.unet))
        bar.close()
        result.step = self.step
        if run.export_weights and self.is_main:
            result.weights_dir = self.export(self.run_dir / "weights")
        acc.wait_for_everyone()
        return result

    def export(self, out_dir: Path) -> Path:
        try:
            return export_weights(
                out_dir, self.models.unet.unet, self.ema.shadow, self.ema.num_updates, self.ema.decay,
                self.models.vae.vae, self.models.identity.text_model,
            )
        except KeyError as exc:
            raise TrainingError(
                f"cannot export {exc} in the official layout: only UNets with SpinMeRound's block structure (SD-1.5 "
                "levels, 2 layers per block) map onto it; set run.export_weights = false for other shapes"
            ) from exc


def train(
    config: TrainConfig,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    resume: bool = True,
    models: TrainModels | None = None,
) -> TrainResult:
    """Run (or resume) a training run to config.run.max_steps; returns the losses and where the weights went."""
    trainer = Trainer(config, models)
    if resume:
        trainer.resume()
    elif (trainer.run_dir / "checkpoints").exists() and any((trainer.run_dir / "checkpoints").iterdir()):
        raise TrainingError(f"{trainer.run_dir} already holds checkpoints; resume, or choose a new run.output_dir")
    if trainer.is_main:
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(trainer.run_dir / "config.json", trainer._config_record())
    return trainer.fit(callbacks)
