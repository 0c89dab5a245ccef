"""Refusals a real photo can trigger (issue 13): one line, exit code 2, nothing written, no empty folder."""

import numpy as np
import pytest
import skimage.data
from PIL import Image

from align import AlignConfig, Aligner
from align.errors import ExtremePoseError, FaceCutError
from flows.cli import main
from spin_io.aligned import read_aligned
from spin_io.errors import EXIT_USAGE

DLIB_ONLY = AlignConfig(refinement="landmark", matting="grabcut")


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def aligner():
    return Aligner("offline", None, DLIB_ONLY)


def test_face_cut_by_the_top_edge_is_refused_naming_fraction_and_side(astronaut, aligner, tmp_path):
    out = tmp_path / "a" / "aligned"
    with pytest.raises(FaceCutError) as exc:
        aligner.align(astronaut[50:], out)  # the astronaut's crown and forehead margin cut off
    message = str(exc.value)
    assert message.startswith("face cut by the photo edge: ") and "(top " in message
    fraction = int(message.split(": ")[1].split("%")[0])
    assert 12 <= fraction <= 30 and "at most 10% is allowed" in message and "\n" not in message
    assert isinstance(exc.value, ExtremePoseError) and exc.value.exit_code == EXIT_USAGE
    assert not (tmp_path / "a").exists()  # nothing written, not even the parent folder
    # a small cut (the reflected, blurred border covers it, as in the release) is accepted and recorded
    face = aligner.align(astronaut[25:])  # the 2-D path projects the head centre with pitch 0 (issue 13 bench)
    assert 0.0 < face.extra["outside_fraction"] <= 0.10
    assert aligner.align(astronaut).extra["outside_fraction"] < 0.03


def test_new_output_folder_appears_complete_or_not_at_all(astronaut, aligner, tmp_path, monkeypatch):
    import spin_io.aligned as aligned_mod
    from align import pipeline

    out = tmp_path / "nested" / "aligned"
    real = aligned_mod.atomic_write_json

    def broken(path, data, *args, **kwargs):  # the disk fills up while face.json is written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aligned_mod, "atomic_write_json", broken)
    with pytest.raises(OSError):
        aligner.align(astronaut, out)
    assert not out.exists() and list((tmp_path / "nested").iterdir()) == []
    monkeypatch.setattr(aligned_mod, "atomic_write_json", real)
    face = aligner.align(astronaut, out)
    assert sorted(p.name for p in out.iterdir()) == ["crop.png", "face.json", "mask.png"]
    assert [p.name for p in (tmp_path / "nested").iterdir()] == ["aligned"]  # no temporary left behind
    np.testing.assert_array_equal(read_aligned(out).crop, face.crop)
    assert pipeline.write_aligned_atomically  # the writer align uses


def test_cli_refusals_are_one_line_with_exit_code_2(astronaut, tmp_path, capsys):
    photo = tmp_path / "cut.png"
    Image.fromarray(astronaut[50:]).save(photo)
    out = tmp_path / "out"
    code = main(["align", str(photo), "-o", str(out), "--backend", "offline", "--device", "cpu", "--offline",
                 "--matting", "grabcut", "--refinement", "landmark"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and not out.exists()
    refusal = [line for line in err if "face cut by the photo edge" in line]
    assert len(refusal) == 1 and "Traceback" not in "\n".join(err)

    canvas = np.full((512, 1024, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[:, 512:] = astronaut[:, ::-1]
    Image.fromarray(canvas).save(tmp_path / "two.png")
    code = main(["align", str(tmp_path / "two.png"), "-o", str(out), "--backend", "offline", "--device", "cpu",
                 "--offline", "--matting", "grabcut", "--refinement", "landmark"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and not out.exists()
    assert "2 faces found (0: x " in err and "; 1: x " in err and "--face-index N" in err
    code = main(["align", str(tmp_path / "two.png"), "-o", str(out), "--backend", "offline", "--device", "cpu",
                 "--offline", "--matting", "grabcut", "--refinement", "landmark", "--face-index", "1"])
    assert code == 0 and read_aligned(out).face_index == 1
