"""One Aligner per worker: the face backend, the 3DDFA refiner and BiSeNet load once, and reuse changes nothing.

The weights folder holds a random BiSeNet and a constant FaceBoxes + 3DDFA (as in test_align_bisenet.py and
test_align_tddfa.py), so every network of the production path runs on skimage's astronaut.
"""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from threads import one_thread_module  # noqa: F401  (autouse: one torch thread)

import align.bisenet as bisenet
import align.pipeline as pipeline
from align import AlignConfig, Aligner, align_photo
from align.errors import AlignWeightsNotFoundError
from align.faceboxes import FaceBoxes, FaceBoxesNet
from align.tddfa import MobileNetV1, ReleaseRefiner, roi_box_from_bbox
from align.weights import TDDFA_FILES
from flows import stages
from flows.params import AlignParams
from flows.records import PhotoRecord, to_uri

FILES = ("crop.png", "mask.png", "face.json")




def _write_bisenet(root: Path) -> None:
    torch.manual_seed(0)
    net = bisenet.BiSeNet()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), root / "79999_iter.pth")


def _write_tddfa(root: Path, s: float = 1.1, t: tuple[float, float] = (0.2, 0.1)) -> None:
    """FaceBoxes sure of its stride-128 anchors only, and a TDDFA whose output (its parameter mean) gives s, t."""
    fb, mb = FaceBoxesNet().eval(), MobileNetV1().eval()
    with torch.no_grad():
        for i, head in enumerate(fb.conf):
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.0, 5.0] if i == 2 else [5.0, 0.0]).repeat(head.bias.numel() // 2))
        for head in fb.loc:
            head.weight.zero_()
            head.bias.zero_()
        mb.fc.weight.zero_()
        mb.fc.bias.zero_()
    sx, sy, ex, ey = roi_box_from_bbox(FaceBoxes(fb)(np.zeros((512, 512, 3), np.uint8))[0])
    scale = (ex - sx) / 120
    s_rel = s / (2000 * (ex - sx) / 511)
    x_px, y_px = 255.5 * (1 + t[0]), 255.5 * (1 - t[1])
    t3d = np.array([(x_px - sx) / scale + 1, 120 - (y_px - sy) / scale, 0.0])
    mean = np.zeros(62, np.float32)
    mean[:12] = np.concatenate([s_rel * np.eye(3), t3d[:, None]], axis=1).ravel()
    folder = root / "3ddfa"
    folder.mkdir()
    checkpoint = {"state_dict": {f"module.{k}": v for k, v in mb.state_dict().items()}}
    torch.save(checkpoint, folder / TDDFA_FILES["checkpoint"])
    torch.save(fb.state_dict(), folder / TDDFA_FILES["faceboxes"])
    stats = {"mean": mean, "std": np.ones(62, np.float32)}
    (folder / TDDFA_FILES["param_stats"]).write_bytes(pickle.dumps(stats))
    (folder / TDDFA_FILES["bfm"]).write_bytes(pickle.dumps({"u": np.zeros((30, 1), np.float32)}))


def _count_loads(mp: pytest.MonkeyPatch) -> Counter:
    """Wrap the three loaders the Aligner calls; the counter also records the device each network went to."""
    counts: Counter = Counter()
    make_backend, load_bisenet, from_weights = pipeline.make_backend, bisenet.load_bisenet, ReleaseRefiner.from_weights

    def counting_backend(*args, **kwargs):
        counts["backend"] += 1
        return make_backend(*args, **kwargs)

    def counting_bisenet(path, device="cpu"):
        counts["bisenet"] += 1
        counts[f"bisenet@{device}"] += 1
        return load_bisenet(path, device)

    def counting_refiner(cls, weights, device="cpu", bgr=False):
        counts["refiner"] += 1
        counts[f"refiner@{device}"] += 1
        return from_weights(weights, device, bgr)

    mp.setattr(pipeline, "make_backend", counting_backend)
    mp.setattr(bisenet, "load_bisenet", counting_bisenet)
    mp.setattr(ReleaseRefiner, "from_weights", classmethod(counting_refiner))
    return counts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two photos through one Aligner, then through align_photo; the loads counted after each."""
    root = tmp_path_factory.mktemp("weights")
    _write_bisenet(root)
    _write_tddfa(root)
    out = tmp_path_factory.mktemp("out")
    photos = {"a": skimage.data.astronaut(), "b": np.ascontiguousarray(skimage.data.astronaut()[:, ::-1])}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SMR_WEIGHTS", raising=False)
        counts = _count_loads(mp)
        aligner = Aligner("offline", root, AlignConfig())
        reused = {k: aligner.align(img, out / f"aligner-{k}") for k, img in photos.items()}
        after_aligner = Counter(counts)
        fresh = {
            k: align_photo(img, out / f"photo-{k}", backend="offline", weights_dir=root) for k, img in photos.items()
        }
        after_photo = Counter(counts)
    return {"reused": reused, "fresh": fresh, "out": out, "after_aligner": after_aligner, "after_photo": after_photo}


def test_one_aligner_loads_each_network_once_align_photo_per_call(runs):
    face = runs["reused"]["a"]
    assert face.backend["matting"] == "bisenet" and face.extra["refinement"]["method"] == "3ddfa"  # all three ran
    assert runs["after_aligner"] == {"backend": 1, "bisenet": 1, "bisenet@cpu": 1, "refiner": 1, "refiner@cpu": 1}
    assert runs["after_photo"] == {"backend": 3, "bisenet": 3, "bisenet@cpu": 3, "refiner": 3, "refiner@cpu": 3}


@pytest.mark.parametrize("photo", ["a", "b"])
def test_reused_networks_give_bit_identical_results(runs, photo):
    reused, fresh = runs["reused"][photo], runs["fresh"][photo]
    for name in ("crop", "mask", "keypoints", "keypoints_crop", "crop_transform"):
        np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name), err_msg=name)
    assert reused.head_pose == fresh.head_pose and reused.extra == fresh.extra and reused.backend == fresh.backend
    for file in FILES:
        written = (runs["out"] / f"aligner-{photo}" / file).read_bytes()
        assert written == (runs["out"] / f"photo-{photo}" / file).read_bytes(), file
    assert 0 < (reused.mask > 0).mean() < 1  # the random parser splits the crop: the mask comparison means something


def test_the_two_photos_differ(runs):
    """The second photo is not served from the first one's result."""
    a, b = runs["reused"]["a"], runs["reused"]["b"]
    assert a.source_sha256 != b.source_sha256 and not np.array_equal(a.crop, b.crop)
    # the mirrored photo's eyes are the first photo's, mirrored (left and right swap)
    np.testing.assert_allclose(b.keypoints[:2, 0], 511 - a.keypoints[[1, 0], 0], atol=3.0)


def test_missing_weights_fail_before_writing_and_are_not_remembered(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    aligner = Aligner("offline", tmp_path / "weights", AlignConfig(matting="bisenet"))
    for _ in range(2):  # a failed load is retried by the next photo, with the same message
        with pytest.raises(AlignWeightsNotFoundError, match="79999_iter.pth"):
            aligner.align(skimage.data.astronaut(), tmp_path / "out")
        assert not (tmp_path / "out").exists()
    with pytest.raises(AlignWeightsNotFoundError, match="FaceBoxesProd.pth"):
        Aligner("offline", tmp_path / "weights", AlignConfig(refinement="3ddfa")).load()
    (tmp_path / "weights").mkdir()
    _write_bisenet(tmp_path / "weights")
    assert aligner.load().parser is not None  # the file is there now: the same Aligner picks it up


def test_the_align_stage_reuses_one_aligner_per_weights_folder(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    counts = _count_loads(monkeypatch)
    image = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(image)
    w1, w2 = tmp_path / "w1", tmp_path / "w2"
    w1.mkdir()
    w2.mkdir()
    params = AlignParams(backend="offline")

    def align(i: int, weights: str | None):
        work = to_uri(tmp_path / str(i))
        photo = PhotoRecord(photo_id="astronaut", uri=to_uri(image), sha256="0" * 64, work_uri=work)
        return stages.run_align(photo, params, weights)

    stages.loaded_aligner.cache_clear()
    try:
        first = align(0, str(w1))
        second = align(1, str(w1))
        info = stages.loaded_aligner.cache_info()
        assert (info.hits, info.misses) == (1, 1) and counts["backend"] == 1
        assert first.sha256 == second.sha256  # the reused aligner writes the same folder
        monkeypatch.setenv("SMR_WEIGHTS", str(w1))  # the same folder named by the environment: the same entry
        align(2, None)
        assert stages.loaded_aligner.cache_info().hits == 2 and counts["backend"] == 1
        monkeypatch.delenv("SMR_WEIGHTS")
        kept = stages.loaded_aligner("offline", str(w1), "cpu", "auto", "auto", "dlib5")
        align(3, str(w2))
        info = stages.loaded_aligner.cache_info()
        assert (info.misses, info.currsize) == (2, 1) and counts["backend"] == 2
        replaced = stages.loaded_aligner("offline", str(w2), "cpu", "auto", "auto", "dlib5")
        assert replaced is not kept and replaced.root == w2 and kept.root == w1
    finally:
        stages.loaded_aligner.cache_clear()
