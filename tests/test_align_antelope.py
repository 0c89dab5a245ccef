"""antelopev2 through onnxruntime, exercised with tiny ONNX stand-ins that have the real models' I/O.

The SCRFD stand-in outputs fixed score/box/keypoint maps with one confident anchor placed so that
its decoded keypoints are the astronaut's true eyes, nose and mouth; decoding, letterbox scaling and
NMS must therefore give those points back. The ArcFace stand-in is a fixed random projection of the
aligned 112 px crop, so its embedding can be recomputed independently.
"""

import json

import numpy as np
import pytest
import skimage.data
import torch

from align import align_photo
from align.antelope import ARCFACE_DST, AntelopeBackend, nms, similarity_transform
from align.bisenet import BiSeNet

TRUTH = np.array([[202.5, 101.3], [246.3, 103.8], [224.0, 126.5], [204.0, 140.0], [244.0, 141.5]])
DET_SCALE = 448 / 512  # the astronaut is 512 px square: letterboxed into 448 px
CELL, STRIDE = (12, 6), 16  # the confident anchor: stride-16 cell (x=12, y=6), anchor 0
BOX_DIST = np.array([3.0, 4.0, 3.0, 5.0])  # left, top, right, bottom in strides


class _ScrfdStandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        centre = np.array(CELL, float) * STRIDE
        self.outs = []
        for level, stride in enumerate((8, 16, 32)):
            n = (448 // stride) ** 2 * 2
            scores = np.full((n, 1), 0.1, np.float32)
            boxes = np.ones((n, 4), np.float32)
            kps = np.zeros((n, 10), np.float32)
            if stride == STRIDE:
                i = (CELL[1] * (448 // stride) + CELL[0]) * 2
                scores[i] = 0.9
                boxes[i] = BOX_DIST
                kps[i] = ((TRUTH * DET_SCALE - centre) / stride).reshape(-1)
            for kind, arr in (("s", scores), ("b", boxes), ("k", kps)):
                self.register_buffer(f"{kind}{level}", torch.from_numpy(arr))

    def forward(self, x):
        zero = x.mean() * 0.0
        return tuple(getattr(self, f"{k}{i}") + zero for k in "sbk" for i in range(3))


class _ArcFaceStandIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 14 * 14, 512, bias=False)

    def forward(self, x):
        return self.proj(torch.nn.functional.avg_pool2d(x, 8).flatten(1))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    pack = root / "models" / "antelopev2"
    pack.mkdir(parents=True)
    torch.manual_seed(0)
    arcface = _ArcFaceStandIn().eval()
    export = dict(dynamo=False, input_names=["input.1"])
    torch.onnx.export(_ScrfdStandIn(), (torch.zeros(1, 3, 448, 448),), str(pack / "scrfd_10g_bnkps.onnx"), **export)
    torch.onnx.export(arcface, (torch.zeros(1, 3, 112, 112),), str(pack / "glintr100.onnx"), **export)
    torch.save(BiSeNet().state_dict(), root / "79999_iter.pth")
    return root, arcface


def test_similarity_transform_recovers_a_known_similarity():
    a, s, t = np.radians(20), 1.7, np.array([5.0, -3.0])
    M = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = ARCFACE_DST @ M.T + t
    np.testing.assert_allclose(similarity_transform(ARCFACE_DST, dst), np.hstack([M, t[:, None]]), atol=1e-9)


def test_nms_drops_overlaps_keeps_the_best():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert nms(boxes, np.array([0.8, 0.9, 0.5]), 0.4) == [1, 2]


def test_scrfd_decoding_returns_the_planted_face(weights):
    root, _ = weights
    pack = root / "models" / "antelopev2"
    backend = AntelopeBackend(pack / "scrfd_10g_bnkps.onnx", pack / "glintr100.onnx", use_insightface=False)
    dets = backend.detect(skimage.data.astronaut())
    assert len(dets) == 1 and dets[0].score == pytest.approx(0.9)
    np.testing.assert_allclose(dets[0].keypoints, TRUTH, atol=1e-3)
    centre = np.array(CELL) * STRIDE
    box = np.r_[centre - BOX_DIST[:2] * STRIDE, centre + BOX_DIST[2:] * STRIDE] / DET_SCALE
    np.testing.assert_allclose(dets[0].box, box, atol=1e-3)


def test_align_with_antelopev2_writes_a_normalised_embedding(weights, tmp_path):
    import cv2

    root, arcface = weights
    face = align_photo(skimage.data.astronaut(), tmp_path / "aligned", backend="antelopev2", weights_dir=root)
    assert face.backend["name"] == "antelopev2" and face.backend["runtime"] == "onnxruntime"
    assert face.backend["matting"] == "bisenet"
    np.testing.assert_allclose(face.keypoints, TRUTH, atol=1e-3)
    emb = np.load(tmp_path / "aligned" / "arcface.npy")
    assert emb.dtype == np.float32 and emb.shape == (512,)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    # recompute: the stand-in re-detects its planted face in the white-background crop (letterboxed
    # 512 -> 448), the crop is aligned to the ArcFace template and projected by the same weights
    kps_crop = TRUTH  # the stand-in always reports the same letterbox points: same pixels at 512 px
    M = similarity_transform(kps_crop, ARCFACE_DST)
    aligned = cv2.warpAffine(face.crop, M, (112, 112), borderValue=0.0)
    x = torch.from_numpy(((aligned.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None])
    with torch.no_grad():
        ref = arcface(x)[0].numpy()
    np.testing.assert_allclose(emb, ref / np.linalg.norm(ref), atol=1e-4)
    info = json.loads((tmp_path / "aligned" / "face.json").read_text())
    assert info["identity"]["file"] == "arcface.npy"


def test_auto_prefers_antelopev2_when_complete(weights, monkeypatch):
    root, _ = weights
    monkeypatch.setenv("SMR_WEIGHTS", str(root))
    face = align_photo(skimage.data.astronaut(), backend="auto")
    assert face.backend["name"] == "antelopev2" and face.arcface is not None
