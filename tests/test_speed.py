"""The fast inference path (smr_core.speed): a separate low-precision copy that computes the same function."""

import torch
from smr_helpers import unet_inputs

from smr_core.pipeline import SpinMeRoundPipeline
from smr_core.speed import prepare_unet
from smr_core.tiny import tiny_unet_config
from smr_core.unet import MultiViewUNet, build_unet


def _tiny_unet() -> MultiViewUNet:
    torch.manual_seed(0)
    return MultiViewUNet(build_unet(tiny_unet_config())).eval()


def test_prepared_copy_matches_fp32_and_leaves_the_original_untouched():
    net = _tiny_unet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, c_noise, context = unet_inputs(4, size=8, width=32)
    with torch.no_grad():
        ref = net(x, c_noise, context, 2)
        fast = prepare_unet(net, dtype=torch.bfloat16)
        out = fast(x, c_noise, context, 2)
    assert fast is not net and fast.dtype == torch.bfloat16
    assert out.dtype == torch.float32  # the sampler state stays fp32
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 3e-2, rel  # bf16 has 8 mantissa bits: ~1e-2 relative error through the whole UNet
    assert net.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # fusing did not touch the original


def test_pipeline_builds_each_fast_copy_once():
    net = _tiny_unet()
    pipe = SpinMeRoundPipeline(net, vae=None, identity_encoder=None)
    pipe.vae = type("V", (), {"device": torch.device("cpu")})()
    a = pipe.fast_unet("multiview", "auto")
    assert pipe.fast_unet("multiview", "auto") is a
    assert pipe.fast_unet("normals", "auto") is not a
    assert pipe.fast_unet("multiview", "fp16").dtype == torch.float16
    assert a.dtype == torch.bfloat16 and pipe.unet is net and net.dtype == torch.float32
