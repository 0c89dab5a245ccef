"""The training loop: overfitting, exact resume after a kill, gradient checkpointing, export, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import one_thread, tiny_config, write_synthetic_dataset  # noqa: F401 (autouse fixture)

from smr_core.train.loop import train


@pytest.fixture(scope="session")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "train-data"
    if not (root / "subject1" / "arcface.npy").is_file():
        write_synthetic_dataset(root)
    return root


def test_tiny_model_overfits_the_synthetic_heads(train_data, tmp_path):
    """300 steps on recon's synthetic heads: the mean loss of the last 20 steps is >4x below the first 20.

    sigma is drawn around 12 (ln sigma ~ N(2.5, 0.5^2)), where v ~ -x0 is learnable by memorising the views;
    the paper's distribution (the slow test below) also weights small sigma, where v ~ eps cannot be memorised
    by a toy network in a few hundred steps.
    """
    config = tiny_config(
        train_data, tmp_path / "run",
        model={"latent_scale": 3.0, "cache_latents": True},
        objective={"p_mean": 2.5, "p_std": 0.5, "p_drop_identity": 0.0, "p_drop_views": 0.0, "p_drop_all": 0.0},
        optim={"lr": 3e-3},
        run={"max_steps": 300, "log_every": 100, "checkpoint_every": 1000},
    )
    result = train(config)
    losses = np.array(result.losses)
    first, last = losses[:20].mean(), losses[-20:].mean()
    print(f"overfit: loss {first:.4f} -> {last:.4f} (x{first / last:.1f}); buckets {result.bucket_loss}")
    assert len(losses) == 300 and np.all(np.isfinite(losses))
    assert first / last > 4.0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


@pytest.mark.slow
def test_overfit_with_the_papers_sigma_distribution(train_data, tmp_path):
    """Loss per sigma bucket under ln sigma ~ N(0.7, 1.6^2) (numbers for the report)."""
    config = tiny_config(
        train_data, tmp_path / "run",
        model={"latent_scale": 3.0, "cache_latents": True},
        objective={"p_drop_identity": 0.0, "p_drop_views": 0.0, "p_drop_all": 0.0},
        optim={"lr": 3e-3},
        run={"max_steps": 1000, "log_every": 250, "checkpoint_every": 10000},
    )
    result = train(config)
    losses = np.array(result.losses)
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        print(line)
    assert losses[:50].mean() / losses[-50:].mean() > 1.5
    high = [v for k, v in result.bucket_loss.items() if k in ("2-5", "5-10", "10-50") and v is not None]
    low = [v for k, v in result.bucket_loss.items() if k in ("<0.1", "0.1-0.5") and v is not None]
    assert max(high) < min(low)  # large sigma (predict -x0) is learnt; small sigma (predict eps) is the hard part


class _Kill(Exception):
    pass


def _weights(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def test_killed_and_resumed_run_ends_with_identical_weights(train_data, tmp_path):
    """6 steps straight vs killed after step 5 (last checkpoint: step 4) and resumed: bit-identical weights,
    EMA and optimiser state. Posterior sampling, CFG dropout and gradient accumulation all draw randomness."""
    sections = {
        "model": {"encode": "sample"},
        "objective": {"p_drop_identity": 0.3, "p_drop_views": 0.3, "p_drop_all": 0.2},
        "run": {"max_steps": 6, "checkpoint_every": 2, "grad_accum": 2, "batch_size": 1},
    }
    straight = train(tiny_config(train_data, tmp_path / "a", **sections))
    final: dict[str, torch.Tensor] = {}
    train(tiny_config(train_data, tmp_path / "a2", **{**sections, "run": {**sections["run"], "max_steps": 6}}),
          callbacks=[lambda info: final.update(_weights(info.unet)) if info.step == 6 else None])

    def kill_at_5(info):
        if info.step == 5:
            raise _Kill

    with pytest.raises(_Kill):
        train(tiny_config(train_data, tmp_path / "b", **sections), callbacks=[kill_at_5])
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("*.pt")) == [
        "step-00000002.pt", "step-00000002.rng-0.pt", "step-00000004.pt", "step-00000004.rng-0.pt"
    ]
    resumed_final: dict[str, torch.Tensor] = {}
    resumed = train(tiny_config(train_data, tmp_path / "b", **sections),
                    callbacks=[lambda info: resumed_final.update(_weights(info.unet)) if info.step == 6 else None])
    assert resumed.resumed_from == 4 and len(resumed.losses) == 2
    assert straight.losses[4:] == resumed.losses
    assert final.keys() == resumed_final.keys()
    for key in final:
        assert torch.equal(final[key], resumed_final[key]), key
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-00000006.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-00000006.pt", weights_only=True)
    for key in a["unet"]:
        assert torch.equal(a["unet"][key], b["unet"][key])
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key])
    for (_, sa), (_, sb) in zip(sorted(a["optimizer"]["state"].items()), sorted(b["optimizer"]["state"].items()),
                                strict=True):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    metrics = [line for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [int(m.split(",")[0].split(":")[1]) for m in metrics] == [2, 4, 6]  # no duplicated steps after resume


def test_resume_refuses_a_different_config(train_data, tmp_path):
    from smr_core.train.errors import TrainingError

    train(tiny_config(train_data, tmp_path / "r", run={"max_steps": 2}))
    with pytest.raises(TrainingError, match="different objective"):
        train(tiny_config(train_data, tmp_path / "r", objective={"p_mean": 1.0}, run={"max_steps": 4}))
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(tiny_config(train_data, tmp_path / "r", run={"max_steps": 4}), resume=False)


def test_gradient_checkpointing_keeps_multiview_attention():
    """SPINMEROUND.md §7 item 16: with checkpointing, outputs AND gradients equal the plain run for F = 3,
    and differ from per-view attention (so the frame count did reach the recomputed attention)."""
    from smr_core.tiny import tiny_unet_config
    from smr_core.unet import MultiViewUNet, build_unet

    torch.manual_seed(0)
    unet = MultiViewUNet(build_unet(tiny_unet_config())).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 153, 8, 8, generator=g)
    c_noise = torch.randn(6, generator=g)
    context = torch.randn(6, 77, 32, generator=g)
    weight = torch.randn(6, 8, 8, 8, generator=g)

    def run(num_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        unet.zero_grad(set_to_none=True)
        out = unet(x, c_noise, context, num_frames)
        (out * weight).sum().backward()
        return out.detach(), [p.grad.clone() for p in unet.parameters()]

    plain_out, plain_grads = run(3)
    per_view_out, _ = run(1)
    unet.unet.enable_gradient_checkpointing()
    ckpt_out, ckpt_grads = run(3)
    assert unet.unet.is_gradient_checkpointing
    torch.testing.assert_close(ckpt_out, plain_out, rtol=0, atol=1e-6)
    for a, b in zip(ckpt_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (plain_out - per_view_out).abs().max() > 1e-3


def test_export_loads_through_the_production_loader(train_data, tmp_path):
    """A tiny run with the official block structure exports weights/ that load_spinmeround reads strictly,
    raw weights by default and the EMA copy with use_ema=True."""
    from smr_core.checkpoint import load_spinmeround

    config = tiny_config(train_data, tmp_path / "run", model={"tiny_unet": {}}, run={"max_steps": 2,
                         "export_weights": True})
    result = train(config)
    assert result.weights_dir == tmp_path / "run" / "weights"
    payload = torch.load(tmp_path / "run" / "checkpoints" / "step-00000002.pt", weights_only=True)
    raw = load_spinmeround(result.weights_dir, check_tokenizer=False)
    ema = load_spinmeround(result.weights_dir, use_ema=True, check_tokenizer=False)
    for key, value in raw.unet.unet.state_dict().items():
        assert torch.equal(value, payload["unet"][key])
        assert torch.equal(ema.unet.unet.state_dict()[key], payload["ema"]["shadow"][key])
    assert not all(torch.equal(payload["unet"][k], payload["ema"]["shadow"][k]) for k in payload["unet"])


def test_cli_train_runs_a_config_and_reports(train_data, tmp_path, capsys):
    from smr_core.train_cli import main

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[data]\nroot = "{train_data.as_posix()}"\nimage_size = 64\nnum_frames = 4\n'
        '[model]\ninit = "tiny-random"\nencode = "mean"\n'
        'tiny_unet = { block_out_channels = [16, 16], norm_num_groups = 8, layers_per_block = 1, '
        'down_block_types = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], '
        'up_block_types = ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"] }\n'
        '[run]\noutput_dir = "out"\nmax_steps = 50\nexport_weights = false\nprogress = false\n'
    )
    assert main(["train", str(cfg), "--max-steps", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "trained to step 2" in out and "sigma" in out
    assert (tmp_path / "out" / "checkpoints" / "latest.json").is_file()
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_example_config_is_valid():
    from smr_core.train.config import load_config

    example = Path(__file__).resolve().parents[1] / "examples" / "train_tiny.toml"
    config = load_config(example)
    assert config.model.init == "tiny-random" and config.data.image_size == 64
    assert math.isclose(sum(config.data.conditioning_probs), 1.0, abs_tol=1e-6)
