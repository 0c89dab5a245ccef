"""MediaPipe models from the PyPI wheel: the loader, face-mesh framing and selfie matting on a real photo (issue 13).

The models are fetched on first use through the same loader users run (the registry is reachable in CI);
without network or the TFLite runtime these tests skip locally and fail in CI (SPIN_TO_MESH_REQUIRE_TOOLS=1).
Framing numbers are in percent of the 512 px crop; the quad's corners are compared in source pixels scaled
by 512 / quad side.
"""

import json

import numpy as np
import pytest
import skimage.data
from _tools import mediapipe_models

from align import AlignConfig, Aligner
from align.errors import AlignWeightsNotFoundError
from align.mediapipe_models import MODELS, ensure_models, extract_models, find_models
from align.offline import OfflineConfig


@pytest.fixture(scope="module")
def models():
    return mediapipe_models()


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def mesh_aligner(models):
    return Aligner("offline", None, AlignConfig()).load()


@pytest.fixture(scope="module")
def face(mesh_aligner, astronaut, tmp_path_factory):
    out = tmp_path_factory.mktemp("mp") / "aligned"
    return mesh_aligner.align(astronaut, out), out


def _quad(face) -> np.ndarray:
    return np.array(face.extra["final_quad_px"])


def _offset_pct(quad: np.ndarray, reference: np.ndarray) -> float:
    """Largest corner displacement in percent of the crop (512 px spans the quad's side)."""
    side = np.linalg.norm(reference[1] - reference[0])
    return float(np.abs(quad - reference).max() / side * 100)


def test_models_are_the_pinned_files_and_a_tampered_copy_is_not_used(models, tmp_path):
    for name, path in models.items():
        assert path.stat().st_size > 10_000 and path.name == MODELS[name].filename
    assert find_models() == models
    # a copy that does not match its pinned sha256 is not "found" (and so would be fetched again)
    for path in models.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    assert find_models(root=tmp_path) is not None
    (tmp_path / "face_landmark.tflite").write_bytes(b"not a model")
    assert find_models(root=tmp_path) is None
    assert find_models(["mediapipe-selfie-segmentation"], root=tmp_path) is not None
    # the wheel itself is verified before anything is extracted
    fake = tmp_path / "mediapipe.whl"
    fake.write_bytes(b"PK")
    with pytest.raises(AlignWeightsNotFoundError, match="not the pinned mediapipe-0.10.21-cp311"):
        extract_models(fake, root=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_offline_without_the_models_says_what_to_do(tmp_path):
    with pytest.raises(AlignWeightsNotFoundError) as exc:
        ensure_models(offline=True, root=tmp_path / "empty")
    message = str(exc.value)
    assert "downloads are off (--offline)" in message and "SMR_MEDIAPIPE_WHEEL" in message and "\n" not in message


def test_face_json_records_pose_models_and_apache_licences(face):
    aligned, out = face
    info = json.loads((out / "face.json").read_text())
    backend = info["backend"]
    assert backend["framing"]["pose"].startswith("3-D fit of our template to the mediapipe 468-point face mesh")
    assert "mediapipe face mesh" in backend["framing"]["keypoints"] and backend["matting"] == "selfie"
    assert "warnings" not in backend
    assert info["extra"]["refinement"]["method"] == "facemesh"
    names = {r["name"]: r for r in backend["licences"]}
    for name in ("dlib5", "mediapipe-face-landmark", "mediapipe-selfie-segmentation"):
        assert names[name]["commercial_use"] is True
    assert names["mediapipe-face-landmark"]["licence"].startswith("Apache-2.0")
    assert names["mediapipe-face-landmark"]["sha256"] == MODELS["mediapipe-face-landmark"].sha256
    # the pose is measured in 3-D: the astronaut looks at the camera, slightly down (the 5-point fit said -26 deg)
    pose = aligned.head_pose
    assert abs(pose["yaw_deg"]) < 5 and -15 < pose["pitch_deg"] < 0 and abs(pose["roll_deg"]) < 6


def test_whole_head_is_inside_the_crop(face):
    aligned, _ = face
    mesh = aligned.extra["facemesh"]
    chin_x, chin_y = mesh["chin_crop_px"]
    top_x, top_y = mesh["forehead_top_crop_px"]
    assert 10 < chin_y < 512 - 10, "the chin must be inside the crop with a margin (2 % of 512)"
    assert 100 < top_y < chin_y - 200, "the forehead top well inside, leaving room above it for the crown"
    assert 200 < chin_x < 312 and 200 < top_x < 312  # horizontally centred
    # the matte keeps the crown: the kept region reaches well above the forehead's top point, under the top edge
    rows = np.nonzero((aligned.mask[:, 200:312] > 127).any(axis=1))[0]
    assert 5 < rows.min() < top_y - 60


def test_framing_is_mirror_and_scale_and_padding_invariant(mesh_aligner, astronaut, face):
    import cv2

    aligned, _ = face
    quad = _quad(aligned)
    w = astronaut.shape[1]
    flipped = _quad(mesh_aligner.align(astronaut[:, ::-1].copy()))
    mirrored = quad.copy()
    mirrored[:, 0] = w - 1 - mirrored[:, 0]
    assert _offset_pct(flipped, mirrored[[3, 2, 1, 0]]) < 2.0
    # a 2x photo and its half (the 512 px original) give the same crop; at 256 px the face is below the minimum
    big = cv2.resize(astronaut, (2 * w, 2 * w), interpolation=cv2.INTER_CUBIC)
    halved = (_quad(mesh_aligner.align(big)) + 0.5) / 2 - 0.5
    assert _offset_pct(halved, quad) < 2.0
    pad = int(0.2 * w)
    padded = np.pad(astronaut, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    assert _offset_pct(_quad(mesh_aligner.align(padded)) - pad, quad) < 2.0


def test_landmark_backends_agree_on_the_eye_line(mesh_aligner, astronaut, face, models):
    dlib5, _ = face
    mesh_only = Aligner("offline", None, AlignConfig(offline=OfflineConfig(landmarks="facemesh"))).align(astronaut)
    assert "mediapipe face mesh" in mesh_only.backend["landmarks"]
    eye_line = [f.keypoints_crop[:2].mean(0) for f in (dlib5, mesh_only)]
    assert np.abs(eye_line[0] - eye_line[1]).max() < 0.03 * 512
    assert _offset_pct(_quad(mesh_only), _quad(dlib5)) < 3.0


def test_selfie_matte_is_soft_keeps_the_hair_and_drops_the_background(face):
    aligned, _ = face
    alpha = aligned.mask.astype(np.int32)
    soft = (alpha > 10) & (alpha < 245)
    assert soft.sum() > 500, "a soft edge, not a binary cut-out"
    edge = np.abs(np.diff((alpha > 127).astype(np.int8), axis=1)).sum()
    assert soft.sum() > edge  # the intermediate band is wider than one pixel along the whole outline
    # background corners gone (white in the crop), the face and the hair above the forehead kept
    assert alpha[:40, :40].max() == 0 and alpha[:40, -40:].max() == 0
    assert np.all(aligned.crop[:40, :40] == 255)
    top_y = int(aligned.extra["facemesh"]["forehead_top_crop_px"][1])
    hair = alpha[top_y - 40 : top_y - 10, 226:286]
    assert hair.mean() > 200, "the hair above the forehead is kept"
    eyes = aligned.keypoints_crop[:2].mean(0).astype(int)
    assert alpha[eyes[1], eyes[0]] == 255
    # composited on white with the soft alpha, as the release does
    m = alpha[..., None] / 255.0
    assert np.all(aligned.crop[soft] >= np.floor(255 * (1 - m[soft]) - 1))


def test_hair_cut_by_the_frame_is_recorded_as_a_warning(mesh_aligner, face, astronaut, tmp_path):
    """A tall hairdo (the astronaut's hair stretched upward 2.2x, the photo padded above so the head stays inside
    it) runs past the crop's top edge: the framing, set by the face, does not move, and face.json says the top of
    the head was cut (the views will guess it) instead of passing silently."""
    plain, _ = face
    assert plain.extra["matte_top_edge_px"] == 0
    padded = np.concatenate([np.full((200, 512, 3), (200, 200, 210), np.uint8), astronaut], 0)
    tall = padded.copy()
    brow = 262  # the padded photo's row above which the hair is
    for y in range(brow):
        tall[y] = padded[int(round(brow - (brow - y) / 2.2))]
    aligned = mesh_aligner.align(tall, tmp_path / "tall")
    info = json.loads((tmp_path / "tall" / "face.json").read_text())
    assert info["extra"]["matte_top_edge_px"] > 100
    (warning,) = info["backend"]["warnings"]
    assert "top edge" in warning and f"{info['extra']['matte_top_edge_px']} px" in warning
    reference = mesh_aligner.align(padded)
    shift = np.abs(aligned.crop_transform[:, 2] - reference.crop_transform[:, 2]).max()
    assert shift < 0.02 * 512 and "warnings" not in reference.backend


def test_grabcut_fallback_is_recorded_as_a_warning(astronaut, tmp_path, monkeypatch):
    from align import pipeline
    from align.selfie import SelfieMatting

    monkeypatch.setattr(SelfieMatting, "available", classmethod(lambda cls: False))
    face = Aligner("offline", None, AlignConfig(refinement="landmark")).align(astronaut, tmp_path / "a")
    info = json.loads((tmp_path / "a" / "face.json").read_text())
    assert info["backend"]["matting"] == "grabcut"
    assert info["backend"]["warnings"] == [pipeline.GRABCUT_WARNING]
    assert "GrabCut" in face.backend["warnings"][0]


def test_the_runtime_prints_nothing_on_the_users_terminal(models):
    """Issue 15 item 11: LiteRT writes 'INFO: Created TensorFlow Lite XNNPACK delegate' to fd 2 from C++
    (once per process, so a fresh interpreter process is the honest test)."""
    import subprocess
    import sys

    code = ("import sys; from align.mediapipe_models import interpreter; "
            "it = interpreter(sys.argv[1]); print(len(it.get_input_details()))")
    done = subprocess.run([sys.executable, "-c", code, str(models["mediapipe-selfie-segmentation"])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "1"
    assert done.stderr == "", done.stderr
