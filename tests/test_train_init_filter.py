"""Arc2Face -> SpinMeRound widening, model building from an Arc2Face layout, and ArcFace data filtering."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import one_thread, write_synthetic_dataset  # noqa: F401 (autouse fixture)

from smr_core.train.errors import TrainingError
from smr_core.train.init import widen_unet


def _unet4():
    from diffusers import UNet2DConditionModel

    from smr_core.tiny import tiny_unet_config

    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny_unet_config(in_channels=4, out_channels=4)).eval()


@pytest.mark.parametrize("normals_out", ["copy", "zero"])
def test_widened_unet_reproduces_arc2face_on_the_rgb_latent(normals_out):
    """Whatever the normals latent, rays and mask hold, the widened UNet's RGB output is Arc2Face's output."""
    unet4 = _unet4()
    wide = widen_unet(unet4, normals_out).eval()
    assert (wide.config.in_channels, wide.config.out_channels) == (153, 8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 153, 8, 8, generator=g)
    t = torch.tensor([0.3, -0.2])
    context = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        ref = unet4(x[:, :4], t, encoder_hidden_states=context).sample
        out = wide(x, t, encoder_hidden_states=context).sample
    torch.testing.assert_close(out[:, :4], ref, rtol=1e-5, atol=1e-5)
    expected_normals = ref if normals_out == "copy" else torch.zeros_like(ref)
    torch.testing.assert_close(out[:, 4:], expected_normals, rtol=1e-5, atol=1e-5)
    with pytest.raises(TrainingError, match="4 input and 4 output"):
        widen_unet(wide)


def test_arc2face_folders_build_a_trainable_spinmeround(tmp_path):
    from smr_core.tiny import build_tiny_models
    from smr_core.train.config import ModelConfig
    from smr_core.train.init import build_models

    unet4 = _unet4()
    _, vae, text = build_tiny_models(0)
    unet4.save_pretrained(tmp_path / "arc2face")
    vae.save_pretrained(tmp_path / "vae")
    text.save_pretrained(tmp_path / "encoder")
    models = build_models(ModelConfig(init="arc2face", arc2face_unet=tmp_path / "arc2face", vae=tmp_path / "vae",
                                      encoder=tmp_path / "encoder", normals_out_init="zero"))
    w = models.unet.unet.conv_in.weight
    assert w.shape[1] == 153 and w.requires_grad and models.unet.training
    assert torch.equal(w[:, :4], unet4.conv_in.weight) and torch.count_nonzero(w[:, 4:]) == 0
    assert not any(p.requires_grad for p in models.vae.parameters())
    assert not any(p.requires_grad for p in models.identity.parameters())
    with pytest.raises(TrainingError, match="does not exist"):
        build_models(ModelConfig(init="arc2face", arc2face_unet=tmp_path / "nope", vae=tmp_path / "vae",
                                 encoder=tmp_path / "encoder"))


# --------------------------------------------------------------------------- filtering


class FakeRecogniser:
    """ArcFace stand-in: embeddings looked up by image content (sha256 of the pixels)."""

    def __init__(self) -> None:
        self.table: dict[str, np.ndarray | None] = {}

    @staticmethod
    def key(rgb: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()

    def set(self, path: Path, emb: np.ndarray | None) -> None:
        from PIL import Image

        with Image.open(path) as im:
            self.table[self.key(np.asarray(im.convert("RGB")))] = emb

    def embed(self, rgb: np.ndarray) -> np.ndarray | None:
        return self.table[self.key(rgb)]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
def filter_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp() / "train-data"
    if not (base / "subject1" / "arcface.npy").is_file():
        write_synthetic_dataset(base)
    root = tmp_path_factory.mktemp("filter") / "data"
    for name, src in (("good", "subject0"), ("mixed", "subject1"), ("faceless", "subject0")):
        shutil.copytree(base / src, root / name)
        (root / name / "arcface.npy").unlink()
    from PIL import Image

    for png in (root / "faceless" / "views" / "rgb").glob("*.png"):  # distinct pixels from its source "good"
        pixels = np.asarray(Image.open(png).convert("RGB")).copy()
        pixels[0, 0] = (1, 2, 3)
        Image.fromarray(pixels).save(png)
    return root


def test_filter_drops_inconsistent_subjects_and_says_why(filter_data, tmp_path):
    import json

    from smr_core.train.data import read_transforms
    from smr_core.train.filtering import FilterConfig, filter_dataset

    rng = np.random.default_rng(0)
    fake = FakeRecogniser()
    identity = _unit(rng.standard_normal(512))
    for name in ("good", "mixed", "faceless"):
        frames = read_transforms(filter_data / name / "views")
        for f in frames:
            if name == "good":
                emb = _unit(identity + 0.3 * _unit(rng.standard_normal(512)))
            elif name == "mixed":
                emb = identity if f.is_input else _unit(rng.standard_normal(512))  # another person in every view
            else:
                emb = None if f.is_input else identity
            fake.set(f.rgb, emb)
    assert len(fake.table) == 18  # three subjects of six distinct views
    report = filter_dataset(filter_data, fake, FilterConfig(threshold=0.5, max_angle_deg=80.0), tmp_path,
                            write_arcface=True)
    by_name = {e["subject"]: e for e in report["subjects"]}
    assert by_name["good"]["keep"] and by_name["good"]["score"] > 0.85
    assert not by_name["mixed"]["keep"] and "< threshold 0.5" in by_name["mixed"]["reason"]
    assert not by_name["faceless"]["keep"] and by_name["faceless"]["reason"] == "no face found in the frontal view"
    assert (tmp_path / "kept.txt").read_text() == "good\n"
    saved = json.loads((tmp_path / "filter_report.json").read_text())
    assert saved["kept"] == 1 and saved["dropped"] == 2
    views = by_name["good"]["views"]
    assert any("beyond max_angle_deg" in v.get("note", "") for v in views)  # the back views are not scored
    assert (filter_data / "good" / "arcface.npy").is_file() and not (filter_data / "mixed" / "arcface.npy").is_file()


def test_cli_filter_data_explains_a_missing_arcface_model(filter_data, tmp_path, capsys, monkeypatch):
    from flows.cli import main

    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    assert main(["filter-data", str(filter_data), "-o", str(tmp_path / "f"), "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs the antelopev2 ArcFace model" in err and "antelopev2" in err
    assert not (tmp_path / "f").exists()
