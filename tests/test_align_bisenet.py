"""BiSeNet face parser: our module loads a checkpoint laid out like 79999_iter.pth, strictly and safely."""

import numpy as np
import pytest
import skimage.data
import torch

from align import AlignConfig, align_photo
from align.bisenet import BiSeNet, load_bisenet, parse_mask
from align.errors import AlignCheckpointError, AlignWeightsNotFoundError
from align.offline import OfflineBackend

# Key names of zllrunning/face-parsing.PyTorch's BiSeNet (as in SpinMeRound's spmr/face_parsing/model.py).
RELEASE_KEYS = [
    "cp.resnet.conv1.weight",
    "cp.resnet.bn1.running_mean",
    "cp.resnet.layer1.0.conv1.weight",
    "cp.resnet.layer2.0.downsample.0.weight",
    "cp.resnet.layer4.1.bn2.num_batches_tracked",
    "cp.arm16.conv.conv.weight",
    "cp.arm32.conv_atten.weight",
    "cp.arm32.bn_atten.weight",
    "cp.conv_head32.conv.weight",
    "cp.conv_avg.bn.running_var",
    "ffm.convblk.conv.weight",
    "ffm.conv1.weight",
    "ffm.conv2.weight",
    "conv_out.conv.conv.weight",
    "conv_out.conv_out.weight",
    "conv_out16.conv_out.weight",
    "conv_out32.conv.bn.bias",
]


def _random_net(seed: int = 0) -> BiSeNet:
    torch.manual_seed(seed)
    net = BiSeNet()
    for m in net.modules():  # non-trivial BatchNorm statistics, so loading them is tested too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_state_dict_has_the_release_key_names():
    keys = set(BiSeNet().state_dict())
    missing = [k for k in RELEASE_KEYS if k not in keys]
    assert not missing
    assert not any(k.startswith("cp.resnet.fc") or k.startswith("sp.") for k in keys)  # no classifier, no spatial path


def test_saved_checkpoint_loads_and_reproduces_the_outputs(tmp_path):
    net = _random_net()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    assert expected.shape == (1, 19, 64, 64)
    for prefix in ("", "module."):  # plain, and as saved from DataParallel
        path = tmp_path / f"{prefix or 'plain'}79999_iter.pth"
        torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
        with torch.no_grad():
            torch.testing.assert_close(load_bisenet(path)(x), expected, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_checkpoints_are_refused(tmp_path):
    state = _random_net().state_dict()
    del state["ffm.conv1.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(AlignCheckpointError, match="does not match the BiSeNet face parser"):
        load_bisenet(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04junk")
    with pytest.raises(AlignCheckpointError, match="not a readable BiSeNet checkpoint"):
        load_bisenet(tmp_path / "junk.pth")


def test_parse_mask_keeps_exactly_the_non_background_classes():
    net = _random_net()
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        net.conv_out.conv_out.weight.zero_()  # all logits equal -> argmax 0 (background) everywhere
    assert parse_mask(net, rgb).max() == 0
    with torch.no_grad():
        net.conv_out.conv_out.weight[17] = 1.0  # "hair" wins wherever features are positive
    mask = parse_mask(net, rgb)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and (mask == 255).mean() > 0.9


def test_align_uses_bisenet_when_its_weights_are_present(tmp_path):
    torch.save(_random_net().state_dict(), tmp_path / "79999_iter.pth")
    face = align_photo(skimage.data.astronaut(), backend=OfflineBackend(), weights_dir=tmp_path)
    assert face.backend["matting"] == "bisenet"
    assert set(np.unique(face.mask)) <= {0, 255}
    # wherever the mask is background, the crop is white
    assert np.all(face.crop[face.mask == 0] == 255)
    with pytest.raises(AlignWeightsNotFoundError, match="79999_iter.pth"):
        align_photo(
            skimage.data.astronaut(),
            backend=OfflineBackend(),
            weights_dir=tmp_path / "empty",
            config=AlignConfig(matting="bisenet"),
        )
