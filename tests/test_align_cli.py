"""`align` sub-command: writes the folder, reports the missing identity, fails with the documented error."""

import argparse

import pytest
import skimage.data
from PIL import Image

from align.cli import register
from align.errors import FaceTooSmallError, NoFaceError
from spin_io.aligned import read_aligned


def _parse(argv):
    parser = argparse.ArgumentParser(prog="spin-to-mesh")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_align_command_writes_the_contract(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(photo, quality=95)
    args = _parse(["align", str(photo), "-o", str(tmp_path / "aligned"), "--backend", "offline"])
    assert args.func(args) == 0
    face = read_aligned(tmp_path / "aligned")
    assert face.backend["name"] == "offline"
    out = capsys.readouterr()
    assert "aligned face 0 of 1" in out.out and "no arcface.npy" in out.err
    assert "warning:" not in out.err


def test_align_command_prints_what_the_alignment_lost(tmp_path, capsys, monkeypatch):
    """face.json's warnings are printed too (a GrabCut fallback here), not only written where nobody looks."""
    from align import pipeline
    from align.selfie import SelfieMatting

    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    monkeypatch.setattr(SelfieMatting, "available", classmethod(lambda cls: False))
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    args = _parse(["align", str(photo), "-o", str(tmp_path / "aligned"), "--backend", "offline"])
    assert args.func(args) == 0
    assert f"warning: {pipeline.GRABCUT_WARNING}\n" in capsys.readouterr().err


def test_align_command_no_face(tmp_path):
    photo = tmp_path / "wall.png"
    Image.fromarray(skimage.data.camera()[::4, ::4]).save(photo)  # cameraman at 1/4 size: face far below ~40 px
    args = _parse(["align", str(photo), "-o", str(tmp_path / "x"), "--backend", "offline"])
    # dlib's HOG finds nothing; MediaPipe's BlazeFace (when cached) finds the ~8 px-eyed face and it is refused as
    # too small: either way a one-line refusal and nothing written
    with pytest.raises((NoFaceError, FaceTooSmallError)):
        args.func(args)
    assert not (tmp_path / "x").exists()
