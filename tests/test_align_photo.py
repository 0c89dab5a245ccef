"""photo -> AlignedFace on a real photo (skimage's astronaut), offline backend, and every documented error.

Ground truth, read off a zoomed render of skimage.data.astronaut() (512x512): pupils at
(202.5, 101.3) and (246.3, 103.8), nose tip (224, 126.5), mouth corners (204, 140) and (244, 141.5).
The inter-ocular distance is 44 px.
"""

import json
import re

import numpy as np
import pytest
import skimage.data

from align import AlignConfig, align_photo
from align.detection import Detection
from align.errors import (
    AlignInputError,
    AlignWeightsNotFoundError,
    ExtremePoseError,
    FaceTooSmallError,
    NoFaceError,
    SeveralFacesError,
)
from align.offline import OfflineBackend, OfflineConfig
from align.template import KEYPOINT_PARTS, PoseFit, template_points
from spin_io.aligned import read_aligned

TRUTH = np.array([[202.5, 101.3], [246.3, 103.8], [224.0, 126.5], [204.0, 140.0], [244.0, 141.5]])
# Pixel tolerance per keypoint. dlib68 locates all five; dlib5 (public-domain model) locates the eye
# corners and infers nose tip and mouth corners from the 3-D template, so those are looser (0.2 IOD).
TOLERANCE = {"dlib68": [4, 4, 4, 4, 4], "dlib5": [3, 3, 9, 9, 9]}


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def backends():
    return {lm: OfflineBackend(OfflineConfig(landmarks=lm)) for lm in ("dlib5", "dlib68")}


# The dlib-only path (what runs without the MediaPipe models): 2-D landmark fit and GrabCut, pinned so these
# tests mean the same whether or not the models are cached (test_align_mediapipe.py covers that path).
DLIB_ONLY = AlignConfig(refinement="landmark", matting="grabcut")


@pytest.fixture(scope="module")
def aligned(astronaut, backends, tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned")
    return {lm: (align_photo(astronaut, out / lm, backend=b, config=DLIB_ONLY), out / lm) for lm, b in backends.items()}


def _redetect_eyes(backend, crop):
    """Eye centres found again by the detector on the produced crop (white background and all)."""
    dets = backend.detect(crop)
    assert dets, "the aligned crop should still contain a detectable face"
    return dets[0].keypoints[:2]


@pytest.mark.parametrize("landmarks", ["dlib5", "dlib68"])
def test_keypoints_land_on_eyes_nose_and_mouth(aligned, landmarks):
    face, _ = aligned[landmarks]
    err = np.linalg.norm(face.keypoints - TRUTH, axis=1)
    assert np.all(err <= TOLERANCE[landmarks]), f"keypoint errors {err.round(1)} px"
    assert face.detector_scores[0] > 1.0  # the astronaut's face is a confident HOG hit
    assert abs(face.head_pose["yaw_deg"]) < 10 and abs(face.head_pose["roll_deg"]) < 10


@pytest.mark.parametrize("landmarks", ["dlib5", "dlib68"])
def test_written_folder_is_a_valid_contract_without_identity(aligned, landmarks):
    face, folder = aligned[landmarks]
    back = read_aligned(folder)
    np.testing.assert_array_equal(back.crop, face.crop)
    assert back.arcface is None and not (folder / "arcface.npy").exists()
    assert "antelopev2" in back.identity_note
    info = json.loads((folder / "face.json").read_text())
    assert info["backend"]["name"] == "offline" and info["backend"]["matting"] == "grabcut"
    licence = info["backend"]["landmarks_licence"]
    assert ("non-commercial" in licence) == (landmarks == "dlib68")
    # the models used, with licences, for report.json and the GLB (issue 14): here only the packaged landmarker
    (record,) = info["backend"]["licences"]
    assert record["name"] == landmarks and record["commercial_use"] == (landmarks == "dlib5")
    # white background: the top corners are background, the face centre is kept
    assert np.all(face.crop[:20, :20] == 255) and face.mask[:20, :20].max() == 0
    eyes = face.keypoints_crop[:2].mean(0).astype(int)
    assert face.mask[eyes[1], eyes[0]] == 255
    fg = face.mask > 0
    assert 0.2 < fg.mean() < 0.8  # a head, not the whole frame nor a speck


@pytest.mark.parametrize("landmarks", ["dlib5", "dlib68"])
def test_crop_transform_matches_the_pixels(aligned, backends, landmarks):
    """Eyes re-detected in the crop sit where the stored transform maps the source eyes (crop px)."""
    face, _ = aligned[landmarks]
    found = _redetect_eyes(backends["dlib68"], face.crop)
    np.testing.assert_allclose(found, face.keypoints_crop[:2], atol=6.0)


def test_unrefined_crop_puts_the_eyes_where_the_ffhq_construction_says(astronaut, backends):
    """Without refinement the eye midpoint is at c - 0.1 e2m of the FFHQ quad: a fixed crop position."""
    face = align_photo(astronaut, backend=backends["dlib68"], config=AlignConfig(refine=False, matting="grabcut"))
    kps = face.keypoints
    eye_avg, mouth_avg = kps[:2].mean(0), kps[3:].mean(0)
    e2e, e2m = kps[1] - kps[0], mouth_avg - eye_avg
    x = e2e - np.array([-e2m[1], e2m[0]])
    x = x / np.linalg.norm(x) * max(2 * np.linalg.norm(e2e), 1.8 * np.linalg.norm(e2m))
    y = np.array([-x[1], x[0]])
    a, b = (-0.1 * e2m) @ x / (x @ x), (-0.1 * e2m) @ y / (y @ y)  # eye_avg in the quad's [-1, 1] frame
    in_quad = (np.array([a, b]) + 1) / 2 * 511  # quad pixel
    in_563 = in_quad + np.array([25, 51]) - 0.25  # padded crop (left/top expansion, 2x area resample)
    expected = (in_563 + 0.5) * 512 / 563 - 0.5
    np.testing.assert_allclose(face.keypoints_crop[:2].mean(0), expected, atol=1e-6)
    # and the pixels agree: the eyes found again in the crop are there (2.5 crop px ~ 1 source px)
    found = _redetect_eyes(backends["dlib68"], face.crop).mean(0)
    np.testing.assert_allclose(found, expected, atol=3.0)
    # a level face: the eye midpoint is horizontally centred on the face square
    assert expected[0] == pytest.approx((25 + 255.5 - 0.25 + 0.5) * 512 / 563 - 0.5, abs=3.0)


def test_several_faces_are_refused_without_face_index_and_chosen_with_it(astronaut, backends):
    small = astronaut[::-1][::-1]  # same photo
    import cv2

    second = cv2.resize(small[:, ::-1], (435, 435), interpolation=cv2.INTER_AREA)  # mirrored, 85 % size
    canvas = np.full((512, 960, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[40:475, 520:955] = second
    b = backends["dlib5"]
    # two faces of similar size and no face_index: refused, naming how many and where (issue 13)
    with pytest.raises(SeveralFacesError) as exc:
        align_photo(canvas, backend=b, config=DLIB_ONLY)
    message = str(exc.value)
    assert message.startswith("2 faces found (0: x 175-265, y 76-166; 1: x 7") and "--face-index N" in message
    assert "\n" not in message and isinstance(exc.value, NoFaceError)
    first = align_photo(canvas, backend=b, face_index=0, config=DLIB_ONLY)
    other = align_photo(canvas, backend=b, face_index=1, config=DLIB_ONLY)
    assert len(first.detector_scores) == 2
    assert first.keypoints[:, 0].max() < 512 < other.keypoints[:, 0].min()
    eye_dist = [np.linalg.norm(f.keypoints[1] - f.keypoints[0]) for f in (first, other)]
    assert eye_dist[1] == pytest.approx(0.85 * eye_dist[0], rel=0.1)
    with pytest.raises(NoFaceError, match="face_index 2 requested but 2 face"):
        align_photo(canvas, backend=b, face_index=2, config=DLIB_ONLY)
    # a face under half the largest one's size is a bystander: the largest is taken without asking
    canvas[40:475, 520:955] = 200
    canvas[200:330, 700:830] = cv2.resize(astronaut[:, ::-1], (130, 130), interpolation=cv2.INTER_AREA)
    alone = align_photo(canvas, backend=b, config=DLIB_ONLY)
    assert alone.keypoints[:, 0].max() < 512


def test_huge_photo_detects_on_a_copy_and_crops_from_the_original(astronaut, aligned, backends):
    import cv2

    k = 5
    huge = cv2.resize(astronaut, (512 * k, 512 * k), interpolation=cv2.INTER_CUBIC)
    face = align_photo(huge, backend=backends["dlib5"], config=DLIB_ONLY)
    small_face, _ = aligned["dlib5"]
    np.testing.assert_allclose(face.keypoints, (small_face.keypoints + 0.5) * k - 0.5, atol=2.0 * k)
    diff = np.abs(face.crop.astype(float) - small_face.crop.astype(float))
    assert np.median(diff) < 8  # the same framing of the same face


def test_no_face_names_the_threshold(backends):
    with pytest.raises(NoFaceError, match=r"score >= 0.3.*1024 px"):
        align_photo(skimage.data.coffee(), backend=backends["dlib5"])


def test_face_too_small_names_the_threshold(astronaut, backends, tmp_path):
    import cv2

    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceTooSmallError) as exc:
        align_photo(small, tmp_path / "out", backend=backends["dlib5"], config=DLIB_ONLY)
    # the measured size (one decimal, so 127.6 never reads as "128") and the minimum (issue 13)
    assert re.search(r"^face too small: its crop spans 8\d\.\d px in the photo, the minimum is 128 px", str(exc.value))
    assert not (tmp_path / "out").exists()  # nothing written


class _StubBackend:
    """A backend returning one face whose keypoints come from the template at a chosen pose."""

    name = "stub"
    info = {"name": "stub"}

    def __init__(self, roll_deg: float = 0.0, yaw_deg: float = 0.0, scale: float = 3.0):
        r, y = np.radians(roll_deg), np.radians(yaw_deg)
        Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
        Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        fit = PoseFit(scale=scale, rotation=Rz @ Ry, offset=np.array([400.0, 300.0]), rms_px=0.0)
        self.kps = fit.project(template_points(KEYPOINT_PARTS))

    def detect(self, rgb):
        box = np.r_[self.kps.min(0) - 50, self.kps.max(0) + 50]
        return [Detection(box=box, score=0.9, keypoints=self.kps, fit_points=self.kps, fit_parts=KEYPOINT_PARTS)]

    def embed(self, rgb_crop):
        return None


def test_extreme_pose_is_refused_with_its_threshold(tmp_path):
    img = np.full((600, 800, 3), 180, np.uint8)
    with pytest.raises(ExtremePoseError, match=r"\|roll\| = 70.0 deg exceeds the 50 deg limit"):
        align_photo(img, tmp_path / "a", backend=_StubBackend(roll_deg=70))
    assert not (tmp_path / "a").exists()
    # within limits: aligned, roll undone (scale 2: at 3 the head would not fit the 600 px photo)
    ok = align_photo(img, backend=_StubBackend(roll_deg=20, scale=2.0))
    assert ok.head_pose["roll_deg"] == pytest.approx(20, abs=1e-6)
    eyes = ok.keypoints_crop[:2]
    assert abs(eyes[1, 1] - eyes[0, 1]) < 1e-3  # the crop levels the eyes


def test_production_backend_lists_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    with pytest.raises(AlignWeightsNotFoundError, match="--weights DIR") as exc:
        align_photo(np.zeros((64, 64, 3), np.uint8), backend="antelopev2")
    assert "scrfd_10g_bnkps.onnx" in str(exc.value) and "79999_iter.pth" in str(exc.value)
    (tmp_path / "models" / "antelopev2").mkdir(parents=True)
    (tmp_path / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx").write_bytes(b"x")
    with pytest.raises(AlignWeightsNotFoundError) as exc:
        align_photo(np.zeros((64, 64, 3), np.uint8), backend="antelopev2", weights_dir=tmp_path)
    message = str(exc.value)
    assert "glintr100.onnx" in message and "79999_iter.pth" in message and "scrfd_10g" not in message
    with pytest.raises(AlignInputError, match="unknown alignment backend"):
        align_photo(np.zeros((64, 64, 3), np.uint8), backend="mediapipe")
