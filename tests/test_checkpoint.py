"""Weights discovery, strict checkpoint loading, conversion round trip and the `weights` CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from smr_helpers import tiny_weights_dir, unet_inputs

from flows.cli import main as cli_main
from smr_core import keymaps
from smr_core.checkpoint import convert_weights, load_spinmeround, read_state_dict
from smr_core.errors import CheckpointError, WeightsNotFoundError
from smr_core.weights import find_weights, inspect_weights


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    return tiny_weights_dir(tmp_path_factory, "default")


@pytest.fixture(scope="module")
def official_models(official):
    return load_spinmeround(official)


@pytest.fixture(scope="module")
def official_outputs(official_models):
    return _outputs(official_models)


def _outputs(models) -> dict[str, torch.Tensor]:
    """UNet forward, VAE decode and identity context on fixed inputs."""
    x, c_noise, fixed_context = unet_inputs(2, size=8)
    arcface = torch.randn(1, 512, generator=torch.Generator().manual_seed(1))
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        context = models.identity_encoder(arcface)
        return {
            "context": context,
            "uncond": models.identity_encoder.unconditional(),
            "unet": models.unet(x, c_noise, fixed_context, num_frames=2),
            "decode": models.vae.decode(latents),
        }


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_checkpoint(root: Path, edit) -> None:
    """Apply `edit(state_dict)` to root/spmr.ckpt (Lightning layout kept)."""
    path = root / "spmr.ckpt"
    state = dict(torch.load(path, weights_only=True)["state_dict"])
    edit(state)
    torch.save({"state_dict": state}, path)


# --------------------------------------------------------------------------- round trips


def test_official_convert_load_round_trip_is_bit_identical(official, official_models, official_outputs, tmp_path):
    converted = convert_weights(official, tmp_path / "converted")
    assert sorted(p.name for p in converted.iterdir()) == ["spinmeround.json", "text_encoder", "unet", "vae"]
    assert not list(tmp_path.glob(".tmp-*"))
    again = load_spinmeround(converted)
    assert again.layout.kind == "converted" and official_models.layout.kind == "official"
    assert again.weights_id == official_models.weights_id and len(again.weights_id) == 12
    after = _outputs(again)
    for name, before in official_outputs.items():
        assert torch.equal(before, after[name]), name
    # the converted text encoder is stored in transformers 5.x naming
    assert all(not k.startswith("text_model.") for k in load_file(converted / "text_encoder" / "model.safetensors"))


def test_safetensors_checkpoint_and_5x_encoder_naming_load_identically(official_outputs, tmp_path):
    root = tmp_path / "st"
    from smr_core.tiny import write_tiny_weights

    write_tiny_weights(root, checkpoint_format="safetensors", text_naming="5.x")
    models = load_spinmeround(root)
    assert models.layout.checkpoint.name == "spmr.safetensors"
    after = _outputs(models)
    for name, before in official_outputs.items():
        assert torch.equal(before, after[name]), name


def test_smr_weights_environment_variable_is_the_default(official, monkeypatch):
    monkeypatch.setenv("SMR_WEIGHTS", str(official))
    assert find_weights().root == official


def test_conditioner_in_checkpoint_overrides_the_encoder_folder_and_ema_is_opt_in(tmp_path_factory, official_outputs):
    root = tiny_weights_dir(tmp_path_factory, "cond-ema", conditioner_in_checkpoint=True, ema=True)
    raw = load_spinmeround(root)
    ema = load_spinmeround(root, use_ema=True)
    assert raw.weights_id != ema.weights_id
    # identical folder encoder, different conditioner.* in the checkpoint -> different context
    with torch.no_grad():
        context = raw.identity_encoder(torch.randn(1, 512, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(official_outputs["context"], context)
    state = read_state_dict(root / "spmr.ckpt")
    expected = state[keymaps.TEXT_PREFIX + "text_model.final_layer_norm.weight"]
    assert torch.equal(raw.identity_encoder.text_model.final_layer_norm.weight, expected)
    # EMA ignored by default (release behaviour), loaded on request
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(raw.unet.unet.conv_out.weight, state[key])
    assert torch.equal(ema.unet.unet.conv_out.weight, state[keymaps.ema_key(key)])
    assert not torch.equal(raw.unet.unet.conv_out.weight, ema.unet.unet.conv_out.weight)


def test_ema_requested_but_absent_is_an_error(official):
    with pytest.raises(CheckpointError, match="no EMA weights"):
        load_spinmeround(official, use_ema=True)


def test_converted_folder_remembers_its_ema_choice(tmp_path_factory, tmp_path):
    root = tiny_weights_dir(tmp_path_factory, "cond-ema", conditioner_in_checkpoint=True, ema=True)
    converted = convert_weights(root, tmp_path / "ema", use_ema=True)
    assert load_spinmeround(converted).use_ema is True
    with pytest.raises(CheckpointError, match="EMA weights only"):
        load_spinmeround(converted, use_ema=False)


# --------------------------------------------------------------------------- strictness


def test_missing_unet_key_is_named(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    key = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn1.to_q.weight"
    _rewrite_checkpoint(root, lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): " + key.replace(".", r"\.")):
        load_spinmeround(root)


def test_unexpected_key_is_named(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    _rewrite_checkpoint(root, lambda s: s.update({"model.diffusion_model.camera_embed.0.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected 1 key\(s\): model\.diffusion_model\.camera_embed"):
        load_spinmeround(root)
    key = "model.diffusion_model.camera_embed.0.weight"
    _rewrite_checkpoint(root, lambda s: (s.pop(key), s.update(foo=torch.ones(1))))
    with pytest.raises(CheckpointError, match="unexpected 1 key.*foo"):
        load_spinmeround(root)


def test_mis_shaped_key_names_both_shapes(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    key = "first_stage_model.decoder.mid.attn_1.k.weight"
    _rewrite_checkpoint(root, lambda s: s.update({key: torch.zeros(96, 95, 1, 1)}))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.") + r": file \[96, 95\] vs model \[96, 96\]"):
        load_spinmeround(root)


def test_text_encoder_folder_is_loaded_strictly(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    path = root / "models" / "encoder" / "model.safetensors"
    tensors = load_file(path)
    tensors.pop("text_model.encoder.layers.1.mlp.fc2.bias")
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): text_model\.encoder\.layers\.1\.mlp\.fc2\.bias"):
        load_spinmeround(root)
    tensors["encoder.layers.1.mlp.fc2.bias"] = torch.zeros(32)  # 5.x name among 4.x names
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="mix transformers 4.x"):
        load_spinmeround(root)


def test_pickled_objects_are_not_executed(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    state = torch.load(root / "spmr.ckpt", weights_only=True)
    state["callbacks"] = Path("not/a/tensor")  # any non-allow-listed global
    torch.save(state, root / "spmr.ckpt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_spinmeround(root)


def test_garbage_checkpoint_is_a_checkpoint_error(official, tmp_path):
    root = _copy(official, tmp_path / "w")
    (root / "spmr.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="spmr.ckpt"):
        load_spinmeround(root)


# --------------------------------------------------------------------------- discovery


def test_missing_weights_are_listed_in_one_error(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        find_weights(tmp_path)
    message = str(info.value)
    assert "spmr.ckpt" in message and "spin-me-round/SpinMeRound" in message
    assert "encoder" in message and "FoivosPar/Arc2Face" in message
    assert "antelopev2" in message and "79999_iter.pth" in message  # alignment files listed too
    assert message.count("  - ") == 5  # spmr.ckpt, encoder, detector, recognition, parser


def test_alignment_files_are_required_only_on_request(official, tmp_path_factory):
    layout = find_weights(official)
    assert layout.diffusion_complete and not layout.alignment_complete
    with pytest.raises(WeightsNotFoundError, match="antelopev2") as info:
        find_weights(official, require_alignment=True)
    assert "spmr.ckpt" not in str(info.value) and "(diffusion)" not in str(info.value)
    complete = tiny_weights_dir(tmp_path_factory, "placeholders", alignment_placeholders=True)
    assert find_weights(complete, require_alignment=True).alignment_complete


def test_no_folder_and_no_environment_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="--weights DIR or set SMR_WEIGHTS"):
        find_weights(None)


def test_convert_refuses_to_overwrite_and_writes_nothing_on_bad_input(official, tmp_path):
    existing = tmp_path / "out"
    existing.mkdir()
    with pytest.raises(CheckpointError, match="--force"):
        convert_weights(official, existing)
    with pytest.raises(WeightsNotFoundError):
        convert_weights(tmp_path / "empty-src", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- CLI


def test_weights_cli_registers_without_heavy_imports():
    import subprocess
    import sys

    code = (
        "import argparse, sys; import smr_core.cli as c; p = argparse.ArgumentParser(); "
        "c.register(p.add_subparsers()); print(sorted(m for m in ('torch', 'diffusers', 'transformers') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_check_and_convert(official, tmp_path, capsys):
    assert cli_main(["weights", "check", str(official)]) == 0
    out = capsys.readouterr().out
    assert "official layout" in out and "alignment" in out and "complete" in out
    assert cli_main(["weights", "check", str(tmp_path)]) == 3  # EXIT_WEIGHTS
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "spmr.ckpt" in out
    dst = tmp_path / "conv"
    assert cli_main(["weights", "convert", str(official), "-o", str(dst)]) == 0
    assert inspect_weights(dst).kind == "converted"
    assert cli_main(["weights", "check", str(dst), "--load"]) == 0
    assert "weights id" in capsys.readouterr().out
    assert cli_main(["weights", "convert", str(official), "-o", str(dst)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
