"""Another person touching the subject is split off the matte (issue 13, ALIGN_EVAL finding 5).

Synthetic soft alphas (no model): the subject's head (with its hair on top and ears at the sides) over a body, and
a second head touching it from the side, as in obama2's crop. `split_people` must drop the second head, with or
without its face detected, and leave a lone subject (ears, shoulders, hair) untouched.
"""

import cv2
import numpy as np

from align.selfie import split_people

S = 512
KPS = np.array([[180.0, 250.0], [260.0, 250.0], [220.0, 290.0], [190.0, 330.0], [250.0, 330.0]])


def _alpha(other: bool, ears: bool = True) -> np.ndarray:
    a = np.zeros((S, S), np.uint8)
    cv2.ellipse(a, (220, 250), (115, 135), 0, 0, 360, 255, -1)  # skull and hair: top at y = 115
    cv2.rectangle(a, (150, 330), (290, 430), 255, -1)  # neck
    cv2.ellipse(a, (220, 560), (260, 150), 0, 0, 360, 255, -1)  # shoulders
    if ears:
        for x in (100, 340):
            cv2.ellipse(a, (x, 270), (22, 40), 0, 0, 360, 255, -1)
    if other:
        cv2.circle(a, (450, 300), 110, 255, -1)  # the other head, overlapping the subject's hair and ear
    return cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), 2.0)


def _subject_kept(out: np.ndarray) -> None:
    assert out[125:135, 200:240].mean() > 0.9, "the subject's hair at the crown is kept"
    assert out[260:280, 330:345].mean() > 0.9, "the subject's ear next to the other head is kept"
    assert out[260:280, 95:105].mean() > 0.9, "the far ear is kept"
    assert out[480:, 100:340].mean() > 0.9, "the shoulders are kept"


def test_other_head_without_a_detected_face_is_removed():
    alpha = _alpha(other=True)
    out, note = split_people(alpha, KPS)
    assert "other head" in note
    assert out[230:370, 470:512].max() < 0.05, "the other person's head is gone"
    assert out[200:215, 440:460].max() < 0.05, "including its soft rim"
    _subject_kept(out)
    assert out.dtype == np.float32 and out.max() <= 1.0


def test_other_detected_face_is_split_off_geodesically():
    alpha = _alpha(other=True)
    out, note = split_people(alpha, KPS, [KPS + [250.0, 40.0]])
    assert "detected" in note
    assert out[250:350, 430:512].max() < 0.05
    _subject_kept(out)
    edge = out[270, 360:420]
    assert ((edge > 0.05) & (edge < 0.95)).any(), "the cut edge stays soft"


def test_a_lone_subject_is_untouched():
    for ears in (True, False):
        alpha = _alpha(other=False, ears=ears)
        out, note = split_people(alpha, KPS)
        assert note == "" and out is alpha
        # a detected face outside the mask (a person standing apart) changes nothing either
        out, note = split_people(alpha, KPS, [KPS + [300.0, 0.0]])
        assert note == "" and out is alpha


def test_a_thick_lock_of_hair_beside_the_head_is_not_taken_for_another_head():
    """Long, full hair makes a second bulge beside the face, reaching above the eyes; it is thinner than a head."""
    a = np.zeros((S, S), np.uint8)
    cv2.ellipse(a, (220, 250), (115, 135), 0, 0, 360, 255, -1)
    cv2.ellipse(a, (220, 560), (260, 150), 0, 0, 360, 255, -1)
    cv2.rectangle(a, (150, 330), (290, 430), 255, -1)
    cv2.ellipse(a, (375, 260), (60, 120), 0, 0, 360, 255, -1)  # the lock: 120 px wide, 1.5 face sizes
    alpha = cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), 2.0)
    out, note = split_people(alpha, KPS)
    assert note == "" and out is alpha


def test_nothing_of_the_other_person_is_left_floating():
    out, _ = split_people(_alpha(other=True), KPS)
    n, _ = cv2.connectedComponents((out > 0.5).astype(np.uint8))
    assert n == 2, "one region: the subject"


def test_the_pipeline_passes_the_other_faces_and_records_the_note(tmp_path):
    """The aligner hands the other detected faces (crop px) to the selfie matte and writes its note to face.json."""
    import json

    import skimage.data

    from align import AlignConfig, Aligner

    seen = []

    class FakeSelfie:
        def matte(self, crop, keypoints_crop, others_crop):
            seen.append([np.asarray(o) for o in others_crop])
            return np.full(crop.shape[:2], 255, np.uint8), "123 px of 1 other detected person(s) removed"

    person = skimage.data.astronaut()[:, 100:356]
    two = np.ascontiguousarray(np.concatenate([person, person], axis=1))
    aligner = Aligner("offline", None, AlignConfig(refinement="landmark", matting="selfie"))
    aligner._loaded["selfie"] = FakeSelfie()
    face = aligner.align(two, tmp_path / "a", face_index=0)
    (others,) = seen
    assert len(others) == 1 and others[0].shape == (5, 2)
    # the other face sits one copy-width (256 px of source) to the side of the subject, in crop pixels
    scale = np.linalg.norm(face.crop_transform[:, 0])
    shift = others[0].mean(0) - face.keypoints_crop.mean(0)
    assert abs(abs(shift[0]) - 256 * scale) < 0.1 * 256 * scale
    info = json.loads((tmp_path / "a" / "face.json").read_text())
    assert info["backend"]["matting"] == "selfie"
    assert info["backend"]["matting_note"].startswith("123 px")
