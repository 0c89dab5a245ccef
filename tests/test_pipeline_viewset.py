"""generate_viewset (the orchestration API) and the identity report, on stand-in networks."""

import json

import numpy as np
import pytest
from pipeline_helpers import fast_pipeline

from align.recogniser import load_recogniser
from smr_core import pipeline as pipeline_module
from smr_core.cameras import ViewCamera
from smr_core.errors import InputError, WeightsNotFoundError
from smr_core.identity_report import identity_report
from smr_core.pipeline import ViewsConfig
from smr_core.viewset_out import TINY_RANDOM_WARNING, generate_viewset, random_identity
from spin_io.aligned import AlignedFace, write_aligned
from spin_io.viewset import read_viewset

CONFIG = ViewsConfig(num_views=4, pitch_rings_deg=(0.0, 20.0), steps=2, normals_steps=1)


def _face(arcface):
    crop = np.full((512, 512, 3), 255, np.uint8)
    crop[140:420, 170:340] = (185, 145, 125)
    mask = np.where(crop.min(axis=2) < 255, 255, 0).astype(np.uint8)
    return AlignedFace(
        crop=crop,
        mask=mask,
        source_sha256="0" * 64,
        keypoints=np.array([[200.0, 250], [310, 250], [255, 300], [215, 350], [295, 350]]),
        crop_transform=np.array([[1.0, 0, 0], [0, 1, 0]]),
        head_pose={"yaw_deg": 0.0, "pitch_deg": 0.0, "roll_deg": 0.0},
        backend={"name": "antelopev2" if arcface is not None else "offline"},
        detector_scores=[0.9],
        arcface=arcface,
        identity_note="" if arcface is not None else "backend 'offline' has no ArcFace model",
    )


@pytest.fixture
def aligned(tmp_path):
    return write_aligned(tmp_path / "aligned", _face(random_identity(3)))


@pytest.fixture
def aligned_offline(tmp_path):
    return write_aligned(tmp_path / "aligned_offline", _face(None))


@pytest.fixture
def stand_in(monkeypatch):
    """from_pretrained -> the recording stand-in pipeline; records what it was asked for."""
    asked = []

    def from_pretrained(weights_dir=None, *, device=None, use_ema=None):
        asked.append({"weights_dir": weights_dir, "device": device})
        return fast_pipeline()[0]

    monkeypatch.setattr(pipeline_module.SpinMeRoundPipeline, "from_pretrained", staticmethod(from_pretrained))
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    return asked


def test_aligned_folder_to_viewset(aligned, tmp_path, stand_in):
    events = []
    out = generate_viewset(aligned, tmp_path / "views", CONFIG, weights_dir=tmp_path / "w", device="cpu",
                           progress=lambda *e: events.append(e), recogniser_loader=load_recogniser)
    assert out == tmp_path / "views" and stand_in[0]["weights_dir"] == tmp_path / "w"
    vs = read_viewset(out)
    assert len(vs.frames) == 8 and vs.frames[0].is_input and vs.yaw_direction == "ccw_from_above"
    np.testing.assert_array_equal(vs.frames[0].rgb, _face(None).crop)
    gen = vs.generation
    assert gen["tiny_random"] is False and "warning" not in gen
    assert gen["identity"]["source"].startswith("arcface.npy") and gen["weights_id"] == "test-fast"
    assert [p["conditioning"] for p in gen["passes"]] == [[0], [0, 1, 2]]  # ties: lower indices
    assert len(gen["model_angles_deg"]) == 8 and gen["config"]["steps"] == 2
    report = json.loads((out / "report.json").read_text())
    assert report["available"] is False and "no weights folder" not in report["reason"]
    assert "antelopev2" in report["reason"]
    assert events[-1][1] == events[-1][2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no temporary left behind


def test_alignment_warnings_travel_into_the_viewset(tmp_path, stand_in):
    """face.json's warnings (a GrabCut matte, hair cut by the frame) reach transforms.json's generation, from where
    recon and the exporter carry them to report.json; a face without warnings adds none."""
    face = _face(random_identity(3))
    warning = "the matte reaches the crop's top edge across 40 px of 512 between the ears"
    face.backend = {**face.backend, "warnings": [warning]}
    vs = read_viewset(generate_viewset(write_aligned(tmp_path / "a", face), tmp_path / "views", CONFIG))
    assert vs.generation["alignment_warnings"] == [warning]
    plain = write_aligned(tmp_path / "b", _face(random_identity(3)))
    assert "alignment_warnings" not in read_viewset(generate_viewset(plain, tmp_path / "v2", CONFIG)).generation


def test_rerun_replaces_the_whole_folder(aligned, tmp_path, stand_in):
    out = tmp_path / "views"
    generate_viewset(aligned, out, CONFIG)
    assert (out / "rgb" / "007.png").is_file()
    report = json.loads((out / "report.json").read_text())  # no recogniser given: not measured, and it says why
    assert report["available"] is False and "no face recogniser was given" in report["reason"]
    generate_viewset(aligned, out, CONFIG.model_copy(update={"pitch_rings_deg": (0.0,)}))
    assert len(read_viewset(out).frames) == 4 and not (out / "rgb" / "007.png").exists()  # no stale views


def test_offline_alignment_needs_antelopev2_unless_tiny_random(aligned_offline, tmp_path, stand_in):
    out = tmp_path / "views"
    with pytest.raises(WeightsNotFoundError, match="antelopev2") as err:
        generate_viewset(aligned_offline, out, CONFIG)
    assert "--tiny-random" in str(err.value)
    assert not out.exists() and not stand_in  # nothing written, no weights loaded
    generate_viewset(aligned_offline, out, CONFIG, tiny_random=True)
    gen = read_viewset(out).generation
    assert gen["tiny_random"] is True and gen["warning"] == TINY_RANDOM_WARNING
    assert gen["identity"]["source"].startswith("RANDOM unit vector")


def test_identity_only_from_an_embedding_file(tmp_path, stand_in):
    emb = tmp_path / "arcface.npy"
    np.save(emb, 3.0 * random_identity(5))  # normalised on reading
    config = CONFIG.model_copy(update={"condition_on_photo": False})
    vs = read_viewset(generate_viewset(None, tmp_path / "views", config, identity=emb))
    assert len(vs.frames) == 8 and not any(f.is_input for f in vs.frames)
    assert vs.generation["passes"][0]["conditioning"] == []
    with pytest.raises(InputError, match="512 finite floats"):
        generate_viewset(None, tmp_path / "v2", config, identity=np.zeros(512))
    with pytest.raises(InputError, match="needs an ArcFace embedding"):
        generate_viewset(None, tmp_path / "v3", config)


def test_refuses_to_replace_a_folder_that_is_not_a_viewset(aligned, tmp_path, stand_in):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a ViewSet folder"):
        generate_viewset(aligned, precious, CONFIG)
    assert (precious / "notes.txt").read_text() == "keep me" and not stand_in


# ---------------------------------------------------------------- identity report


class ColourRecogniser:
    """Stand-in ArcFace: the embedding is the view's mean colour (no face on an all-white view)."""

    def embed(self, rgb):
        if rgb.min() == 255:
            return None
        v = np.concatenate([rgb.reshape(-1, 3).mean(0), np.zeros(509)])
        return v / np.linalg.norm(v)


def test_identity_report_cosines_and_paper_metric():
    cams = [ViewCamera(0, 0, True), ViewCamera(45, 0), ViewCamera(315, 0), ViewCamera(90, 0), ViewCamera(45, 20)]
    colours = [(200, 100, 100), (200, 100, 100), (100, 200, 100), (255, 255, 255), (100, 100, 200)]
    images = [np.full((8, 8, 3), c, np.uint8) for c in colours]
    reference = ColourRecogniser().embed(images[0])
    report = identity_report(images, cams, reference, ColourRecogniser(), reference_note="test")
    cos = [v["cosine"] for v in report["views"]]
    unit = [np.array(c, float) / np.linalg.norm(c) for c in colours]
    assert cos[0] == pytest.approx(1.0) and cos[3] is None
    assert cos[2] == pytest.approx(float(unit[2] @ unit[0]))
    s = report["summary"]
    assert s["views_measured"] == 4 and s["faces_found"] == 3
    assert s["at_45_deg_yaw"] == pytest.approx((1.0 + cos[2]) / 2)  # eye level, +-45: frames 1 and 2
    assert s["mean"] == pytest.approx(np.mean([cos[1], cos[2], cos[4]])) and s["min"] == pytest.approx(min(cos[1:3]
                                                                                                           + [cos[4]]))
    assert report["available"] and "reason" not in report


def test_identity_report_says_when_it_cannot_measure(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    recogniser, why = load_recogniser(None)
    assert recogniser is None and "no weights folder" in why
    recogniser, why = load_recogniser(tmp_path)
    assert recogniser is None and "glintr100.onnx" in why and "scrfd_10g_bnkps.onnx" in why
    pack = tmp_path / "models" / "antelopev2"
    pack.mkdir(parents=True)
    (pack / "scrfd_10g_bnkps.onnx").write_bytes(b"")
    (pack / "glintr100.onnx").write_bytes(b"not a model")
    recogniser, why = load_recogniser(tmp_path)
    assert recogniser is None and "could not be loaded" in why
    report = identity_report([np.zeros((4, 4, 3), np.uint8)], [ViewCamera(0, 0, True)], np.ones(512), None, why)
    assert report["available"] is False and report["reason"].startswith("identity similarity NOT measured")
    assert report["views"][0]["cosine"] is None
