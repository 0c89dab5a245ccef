"""`spin-to-mesh views`: the real photo end to end with --tiny-random, and every documented user error."""

import json
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image
from smr_helpers import tiny_weights_dir

import flows.cli
from spin_io.aligned import read_aligned
from spin_io.viewset import read_viewset


@pytest.fixture
def cli(monkeypatch):
    """flows.cli.main with only the `views` command registered (the lead wires it into the full list)."""
    monkeypatch.setattr(flows.cli, "_COMMAND_MODULES", ("flows.views_cli",))
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    return flows.cli.main


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def test_photo_to_viewset_with_tiny_random(cli, astronaut, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["views", str(astronaut), "-o", str(out), "--tiny-random", "--views", "2", "--pitch", "none",
            "--steps", "2", "--normals-steps", "1", "--device", "cpu"]
    assert cli(argv) == 0
    captured = capsys.readouterr()
    assert "MEANINGLESS" in captured.out and "MEANINGLESS" in captured.err
    face = read_aligned(out / "aligned")
    assert face.backend["name"] == "offline" and face.arcface is None
    vs = read_viewset(out / "views")
    assert [f.is_input for f in vs.frames] == [True, False]
    assert [(f.azimuth_deg, f.elevation_deg) for f in vs.frames] == [(0.0, 0.0), (180.0, 0.0)]
    np.testing.assert_array_equal(vs.frames[0].rgb, face.crop)  # the input view is the aligned photo
    np.testing.assert_array_equal(vs.frames[0].mask, face.mask > 127)
    np.testing.assert_allclose(vs.frames[1].c2w[:3, 3], [0.0, 0.0, -2.7], atol=1e-9)
    gen = vs.generation
    assert gen["tiny_random"] is True and "MEANINGLESS" in gen["warning"]
    assert gen["identity"]["source"].startswith("RANDOM") and gen["steps"] == 2
    assert gen["normals"]["steps"] == 1 and gen["weights"]["tiny_random"] is True
    # no weights: the packaged 5-point landmarker (+ MediaPipe's models where cached), all commercial-use
    assert "dlib5" in [r["name"] for r in gen["licences"]]
    assert all(r["commercial_use"] is True and r["licence"] for r in gen["licences"])
    report = json.loads((out / "views" / "report.json").read_text())
    assert report["available"] is False and "NOT measured" in report["reason"]
    normals = np.linalg.norm(vs.frames[0].normal, axis=2)
    assert np.allclose(normals[vs.frames[0].mask], 1.0, atol=0.02)
    assert np.abs(vs.frames[0].normal[~vs.frames[0].mask]).max() < 0.005  # 0 outside, stored as 128/255


@pytest.mark.parametrize(
    "extra, message, code",
    [
        ([], "nothing to generate from", 2),
        (["PHOTO", "--aligned", "somewhere"], "not both", 2),
        (["PHOTO"], "run `spin-to-mesh weights fetch`", 3),  # offline (conftest), empty per-user cache
        (["PHOTO", "--tiny-random", "--views", "0"], "invalid view settings: num_views", 2),
        (["PHOTO", "--tiny-random", "--pitch", "0,95"], "between -90 and 90", 2),
        (["missing.jpg", "--tiny-random"], "missing.jpg", 2),
        (["PHOTO", "--tiny-random", "--device", "cuda:99"], "--device cuda:99", 5),
    ],
)
def test_user_errors_exit_with_their_code_and_write_nothing(
    cli, astronaut, tmp_path, capsys, monkeypatch, extra, message, code
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the per-user weights cache: empty
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    out = tmp_path / "out"
    argv = ["views", "-o", str(out)] + [str(astronaut) if a == "PHOTO" else a for a in extra]
    if "missing.jpg" in argv:
        argv[argv.index("missing.jpg")] = str(tmp_path / "missing.jpg")
    assert cli(argv) == code
    err = capsys.readouterr().err
    assert message in err and "spin-to-mesh views: error: " in err
    assert not out.exists()


def test_missing_weights_error_lists_the_files(cli, astronaut, tmp_path, capsys):
    assert cli(["views", str(astronaut), "-o", str(tmp_path / "o"), "--weights", str(tmp_path)]) == 3  # EXIT_WEIGHTS
    err = capsys.readouterr().err
    assert "spmr.ckpt" in err and "encoder" in err and not (tmp_path / "o").exists()
    assert "--views-backend synthetic" in err  # the weights-free demo is offered too


def test_offline_aligned_folder_needs_the_arcface_model(cli, astronaut, tmp_path, capsys, tmp_path_factory):
    from align import align_photo

    aligned = tmp_path / "aligned"
    align_photo(astronaut, aligned, backend="offline")
    weights = tiny_weights_dir(tmp_path_factory)
    assert cli(["views", "--aligned", str(aligned), "-o", str(tmp_path / "o"), "--weights", str(weights)]) == 3
    err = capsys.readouterr().err
    assert "no ArcFace embedding" in err and "antelopev2" in err and "--tiny-random" in err
    assert not (tmp_path / "o").exists()


def test_bad_pitch_is_an_argument_error(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["views", "-o", "x", "--pitch", "up"])
    assert exc.value.code == 2 and "comma-separated degrees" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = (
        "import argparse, sys; from flows.views_cli import register; p = argparse.ArgumentParser(); "
        "register(p.add_subparsers()); print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
