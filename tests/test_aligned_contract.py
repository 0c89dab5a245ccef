"""AlignedFace contract: round trip, validation before writing, clear errors when reading."""

import json
from dataclasses import replace

import numpy as np
import pytest

from spin_io.aligned import AlignedFace, read_aligned, write_aligned
from spin_io.errors import ContractError


def _face(with_embedding: bool = True) -> AlignedFace:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=512).astype(np.float32)
    emb /= np.linalg.norm(emb)
    return AlignedFace(
        crop=rng.integers(0, 256, (512, 512, 3), dtype=np.uint8),
        mask=(rng.random((512, 512)) > 0.5).astype(np.uint8) * 255,
        source_sha256="ab" * 32,
        source_size=(640, 480),
        keypoints=np.array([[200.0, 100], [250, 100], [225, 130], [205, 150], [245, 150]]),
        crop_transform=np.array([[2.0, 0.1, -10.0], [-0.1, 2.0, 5.0]]),
        head_pose={"yaw_deg": 3.0, "pitch_deg": -5.0, "roll_deg": 1.0},
        backend={"name": "offline", "matting": "grabcut"},
        detector_scores=[1.2, 0.4],
        face_index=0,
        arcface=emb if with_embedding else None,
        identity_note="" if with_embedding else "no ArcFace model",
        extra={"refinement": {"s": 1.0}},
    )


def test_round_trip_preserves_every_field(tmp_path):
    face = _face()
    write_aligned(tmp_path / "aligned", face)
    back = read_aligned(tmp_path / "aligned")
    np.testing.assert_array_equal(back.crop, face.crop)
    np.testing.assert_array_equal(back.mask, face.mask)
    np.testing.assert_array_equal(back.arcface, face.arcface)
    np.testing.assert_allclose(back.keypoints, face.keypoints)
    np.testing.assert_allclose(back.crop_transform, face.crop_transform)
    np.testing.assert_allclose(back.keypoints_crop, face.keypoints_crop)
    assert back.source_sha256 == face.source_sha256 and back.source_size == (640, 480)
    assert back.head_pose == face.head_pose and back.detector_scores == [1.2, 0.4]
    assert back.backend["name"] == "offline" and back.extra == face.extra
    info = json.loads((tmp_path / "aligned" / "face.json").read_text())
    assert info["schema_version"] == 1
    assert info["keypoints"]["order"][0] == "left_eye"
    # the crop keypoints in face.json are the source keypoints through the stored transform
    np.testing.assert_allclose(info["keypoints"]["crop_px"], face.keypoints_crop, atol=1e-3)


def test_without_embedding_removes_stale_file_and_keeps_the_reason(tmp_path):
    write_aligned(tmp_path, _face(with_embedding=True))
    assert (tmp_path / "arcface.npy").is_file()
    write_aligned(tmp_path, _face(with_embedding=False))
    assert not (tmp_path / "arcface.npy").exists()
    back = read_aligned(tmp_path)
    assert back.arcface is None and back.identity_note == "no ArcFace model"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"crop": np.zeros((256, 256, 3), np.uint8)}, "512x512x3 uint8"),
        ({"mask": np.zeros((512, 512), np.float32)}, "mask must be"),
        ({"source_sha256": "xyz"}, "64 lowercase hex"),
        ({"keypoints": np.full((5, 2), np.nan)}, "5 finite"),
        ({"crop_transform": np.zeros((2, 3))}, "invertible"),
        ({"arcface": np.ones(512, np.float32)}, "L2-normalised"),
        ({"arcface": np.ones(128, np.float32) / np.sqrt(128)}, "(512,) float32"),
        ({"arcface": None, "identity_note": ""}, "must say why"),
        ({"head_pose": {"yaw_deg": 0.0}}, "pitch_deg"),
    ],
)
def test_invalid_face_is_refused_and_nothing_written(tmp_path, change, message):
    bad = replace(_face(), **change)
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_aligned(tmp_path / "out", bad)
    assert not (tmp_path / "out").exists()


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ContractError, match="no such aligned folder"):
        read_aligned(tmp_path / "nope")
    write_aligned(tmp_path, _face())
    (tmp_path / "arcface.npy").unlink()
    with pytest.raises(ContractError, match="arcface.npy: face.json names this embedding"):
        read_aligned(tmp_path)
    write_aligned(tmp_path, _face())
    np.save(tmp_path / "arcface.npy", np.ones(512, np.float32))
    with pytest.raises(ContractError, match="L2-normalised"):
        read_aligned(tmp_path)
    write_aligned(tmp_path, _face())
    info = json.loads((tmp_path / "face.json").read_text())
    info["schema_version"] = 99
    (tmp_path / "face.json").write_text(json.dumps(info))
    with pytest.raises(ContractError, match="schema_version 99"):
        read_aligned(tmp_path)
    write_aligned(tmp_path, _face())
    (tmp_path / "crop.png").write_bytes(b"not a png")
    with pytest.raises(ContractError, match="crop.png: not a readable PNG"):
        read_aligned(tmp_path)
