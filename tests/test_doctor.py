"""`spin-to-mesh doctor`: right advice, every weight file listed, non-zero exit when the main job cannot run."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest

from flows import doctor
from model_fetch.manifest import MANIFEST, stages_of


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    """No CUDA probe, no Blender start-up: only packages and weights matter here."""
    monkeypatch.setattr(doctor, "check_devices", lambda: [])
    monkeypatch.setattr(doctor, "check_tools", lambda: [])
    monkeypatch.delenv("SMR_WEIGHTS_MIRROR", raising=False)


def _run(weights, verify: bool = False) -> int:
    return doctor.run_doctor(argparse.Namespace(weights=str(weights), verify=verify))


def _place(root, names) -> None:
    for wf in MANIFEST:
        if wf.name in names:
            path = root / wf.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"placeholder {wf.name}".encode())


REQUIRED_FOR_RUN = {wf.name for wf in MANIFEST if wf.is_required(stages_of(["run"]))}


def test_missing_weights_exit_3_and_name_both_commands(tmp_path, capsys):
    assert _run(tmp_path / "empty") == 3
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert "cannot run" in last and "spin-to-mesh weights fetch" in last
    assert "spin-to-mesh run PHOTO -o OUT --views-backend synthetic" in last
    for wf in MANIFEST:  # every file is listed, with its licence
        line = next(ln for ln in out.splitlines() if f"] {wf.relpath} " in ln)
        assert wf.licence in line and ("missing" in line)
        assert ("[MISS]" in line) == (wf.name in REQUIRED_FOR_RUN)
    assert "NON-COMMERCIAL" in out


def test_complete_folder_exits_0_and_shows_size_checksum_licence(tmp_path, capsys):
    _place(tmp_path, REQUIRED_FOR_RUN)
    data = (tmp_path / "spmr.ckpt").read_bytes()
    state = tmp_path / ".spin-to-mesh"
    state.mkdir()
    digest = hashlib.sha256(data).hexdigest()
    (state / "manifest.json").write_text(json.dumps({"version": 1, "files": {
        "spmr.ckpt": {"sha256": digest, "size": len(data), "verified_by": "first-download"}}}))
    assert _run(tmp_path) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "] spmr.ckpt " in ln)
    assert line.lstrip().startswith("[ok  ]") and f"{len(data)} B" in line and digest[:12] in line and "MIT" in line
    hand = next(ln for ln in out.splitlines() if "] models/antelopev2/arcface.onnx " in ln)
    assert "no checksum recorded" in hand  # placed by hand: doctor says how to record one
    assert "the main job can run" in out.splitlines()[-1]


def test_verify_catches_a_changed_file(tmp_path, capsys):
    _place(tmp_path, REQUIRED_FOR_RUN)
    state = tmp_path / ".spin-to-mesh"
    state.mkdir()
    size = (tmp_path / "spmr.ckpt").stat().st_size
    (state / "manifest.json").write_text(json.dumps({"version": 1, "files": {
        "spmr.ckpt": {"sha256": "0" * 64, "size": size, "verified_by": "first-download"}}}))
    assert _run(tmp_path) == 0  # without --verify only sizes are compared
    capsys.readouterr()
    assert _run(tmp_path, verify=True) == 3
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "] spmr.ckpt " in ln)
    assert "FAILS VERIFICATION" in line


def test_converted_layout_stands_in_for_the_checkpoint(tmp_path, capsys):
    _place(tmp_path, {"arcface", "scrfd"})
    (tmp_path / "spinmeround.json").write_text("{}")
    diffusers = "diffusion_pytorch_model.safetensors"
    for sub, weights in (("unet", diffusers), ("vae", diffusers), ("text_encoder", "model.safetensors")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "config.json").write_text("{}")
        (tmp_path / sub / weights).write_bytes(b"x")
    assert _run(tmp_path) == 0
    out = capsys.readouterr().out
    assert "converted layout" in out
    assert "[MISS] spmr.ckpt" not in out


def test_package_advice_names_the_real_extras(monkeypatch):
    real = doctor._version
    absent = {"prefect", "onnxruntime", "mne"}
    monkeypatch.setattr(doctor, "_version", lambda d: None if d in absent else real(d))
    checks = {c.name: c for c in doctor.check_packages()}
    assert ".[flows]" in checks["prefect"].fix and "scripts/setup.sh" in checks["prefect"].fix
    assert ".[synth]" in checks["mne"].fix
    assert ".[align]" in checks["onnxruntime"].fix and ".[gpu]" in checks["onnxruntime"].fix
    assert "insightface" not in checks  # no extra installs it; the code does not need it
    extras = {"align", "gpu", "flows", "synth", "train", "dev"}
    for c in checks.values():
        for token in c.fix.split():
            if token.startswith("'.["):
                assert token.strip("'.[]") in extras, c


def test_missing_core_package_exits_1_with_the_setup_command(monkeypatch, tmp_path, capsys):
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: None if d == "trimesh" else real(d))
    assert _run(tmp_path) == 1
    out = capsys.readouterr().out
    assert "bash scripts/setup.sh" in out.splitlines()[-1]


def test_cpu_line_names_the_cores_and_warns_when_torch_has_more_threads(monkeypatch):
    """torch sizes its pool by the cores the process may use; more threads than cores make them wait on each
    other (two runs sharing two cores: 20 s instead of 1.5 s for normal fusion), so doctor says so."""
    import os

    import torch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    ok = doctor.check_cpus()
    assert (ok.status, ok.detail) == ("ok", "2 of 8 cores for this process; torch uses 2 thread(s)")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    over = doctor.check_cpus()
    assert over.status == "warn" and "OMP_NUM_THREADS" in over.fix and "to 2" in over.fix
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert "taskset" not in doctor.check_cpus().detail  # a CPU machine: one run, every core is right
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    whole = doctor.check_cpus()  # a GPU host, where each GPU's worker should get its own cores
    assert whole.status == "ok" and "taskset -c" in whole.detail
