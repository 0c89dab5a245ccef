"""The fast inference path (smr_core.speed): a separate low-precision copy that computes the same function."""

import pytest
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


# ---------------------------------------------------------------- frame pruning (smr_core.unet, guidance)


def test_pruned_frames_leave_the_kept_outputs_unchanged():
    net = _tiny_unet()
    assert net.supports_frame_pruning and net._pruning_block == 3  # the 64x64 up block, after up_blocks.2
    x, c_noise, context = unet_inputs(8, size=16, width=32)
    keep = torch.tensor([1, 2, 3, 5, 6, 7])  # frames 0 and 4: the conditioning view of each 4-frame group
    seen = []
    hook = net.unet.conv_out.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    with torch.no_grad():
        full = net(x, c_noise, context, 4)
        part = net(x, c_noise, context, 4, keep_frames=keep)
    hook.remove()
    assert seen == [8, 6]  # the dropped frames never reached the output convolution
    torch.testing.assert_close(part, full[keep], rtol=1e-5, atol=1e-5)  # same maths, other GEMM blocking
    # dropping before the last multi-view attention would change the kept frames: the drop point matters
    x2 = x.clone()
    x2[[0, 4]] += 1.0
    with torch.no_grad():
        moved = net(x2, c_noise, context, 4, keep_frames=keep)
    assert (moved - part).abs().max() > 1e-3  # the dropped frames still shaped the kept ones


def test_sampling_with_pruning_equals_sampling_without():
    from smr_core.discretization import edm_sigmas
    from smr_core.guidance import Conditioning
    from smr_core.pose import MASK_CHANNEL
    from smr_core.sampling import sample_spinmeround

    net = _tiny_unet()
    g = torch.Generator().manual_seed(3)
    views, size = 4, 16
    x = torch.randn(views, 8, size, size, generator=g)
    cond_images = torch.randn(views, 145, size, size, generator=g)
    cond_images[:, MASK_CHANNEL] = 1.0
    cond_images[[0, 2], MASK_CHANNEL] = 0.0
    cond = Conditioning(cond_images, torch.randn(1, 77, 32, generator=g).expand(views, -1, -1))
    uncond, empty = torch.randn(1, 77, 32, generator=g), torch.randn(8, size, size, generator=g)
    frames = []
    hook = net.unet.conv_out.register_forward_hook(lambda m, i, o: frames.append(o.shape[0]))
    runs = {}
    seen = {}
    for prune in (False, True):
        denoised = []
        runs[prune] = sample_spinmeround(
            net, x, edm_sigmas(4), cond, uncond, empty, 3.5, prune_frames=prune,
            callback=lambda info, out=denoised: out.append(info["denoised"].clone()),
        )
        seen[prune] = denoised
    hook.remove()
    assert frames == [8] * 4 + [4] * 4  # 2 x 4 frames per call, then only the 2 x 2 targets
    torch.testing.assert_close(runs[True], runs[False], rtol=1e-5, atol=1e-5)
    assert torch.equal(runs[True][[0, 2]], x[[0, 2]])
    for a, b in zip(seen[True], seen[False], strict=True):  # D at conditioning frames is their clean latent
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert torch.equal(a[[0, 2]], x[[0, 2]])


def test_pruning_survives_the_fast_copy_and_is_refused_where_impossible():
    from smr_core.denoiser import Denoiser
    from smr_core.errors import InputError

    net = _tiny_unet()
    fast = prepare_unet(net, dtype=torch.bfloat16)  # deep copy: the hook must come along
    x, c_noise, context = unet_inputs(4, size=8, width=32)
    with torch.no_grad():
        assert fast(x, c_noise, context, 2, keep_frames=torch.tensor([1, 3])).shape == (2, 8, 8, 8)
    with pytest.raises(InputError, match="cannot drop frames"):
        Denoiser(lambda *a: a[0][:, :8]).forward(x[:, :8], torch.ones(4), x[:, 8:], context, 2,
                                                   keep_frames=torch.tensor([1]))


# ---------------------------------------------------------------- SDPA backend choice (smr_core.attention)


def test_attention_backend_is_first_in_torch_priority_during_every_call(monkeypatch):
    from torch.nn.attention import SDPBackend

    net = _tiny_unet()
    net.set_attention_backend("cudnn")
    net.fuse_qkv_projections()  # the choice survives fusing (processors are kept)
    real = torch.nn.functional.scaled_dot_product_attention
    firsts = []

    def spy(*args, **kwargs):
        firsts.append(torch._C._get_sdp_priority_order()[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    x, c_noise, context = unet_inputs(2, size=8, width=32)
    before = torch._C._get_sdp_priority_order()
    with torch.no_grad():
        out = net(x, c_noise, context, 2)  # cuDNN is a CUDA kernel: on the CPU torch falls back by itself
    assert len(firsts) == 2 * 16 and set(firsts) == {int(SDPBackend.CUDNN_ATTENTION)}  # attn1 + attn2 of 16 blocks
    assert torch._C._get_sdp_priority_order() == before  # restored after each call
    net.set_attention_backend("auto")
    firsts.clear()
    with torch.no_grad():
        torch.testing.assert_close(net(x, c_noise, context, 2), out)
    assert set(firsts) == {before[0]}


def test_unknown_attention_backend_is_refused_before_anything_changes():
    net = _tiny_unet()
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        net.set_attention_backend("xformers")
    assert net.attention_backend == "auto"


@pytest.mark.slow
def test_pruning_and_backend_choice_compile_without_graph_breaks():
    net = _tiny_unet()
    net.set_attention_backend("cudnn")
    x, c_noise, context = unet_inputs(4, size=8, width=32)
    keep = torch.tensor([1, 3])
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)  # a graph break would raise
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, c_noise, context, 2, keep_frames=keep),
                                   net(x, c_noise, context, 2, keep_frames=keep))


def test_fast_path_autotunes_convolutions_on_cuda_only_and_restores_the_flags():
    from smr_core.pipeline import conv_autotuning

    before = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    with conv_autotuning(True, "cuda"):  # the flags are process state: settable (and testable) without a GPU
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.enabled
    assert (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == before
    for fast, device in ((False, "cuda"), (True, "cpu")):
        with conv_autotuning(fast, device):
            assert torch.backends.cudnn.benchmark == before[1]


def test_pipeline_compiles_each_role_as_its_fast_path_says(monkeypatch):
    import smr_core.speed as speed
    from smr_core.speed import FastPath

    seen = []
    monkeypatch.setattr(speed, "prepare_unet", lambda unet, **kw: seen.append(kw) or object())
    fast_path = FastPath(multiview_mode="max-autotune-no-cudagraphs", inductor_options={"freezing": True})
    for device in ("cuda", "cpu"):  # the device only decides whether to compile: nothing runs here
        pipe = SpinMeRoundPipeline(_tiny_unet(), vae=None, identity_encoder=None, fast_path=fast_path)
        pipe.vae = type("V", (), {"device": torch.device(device)})()
        pipe.fast_unet("multiview", "auto", "cudnn")
        pipe.fast_unet("normals", "auto")
    cuda_mv, cuda_normals, cpu_mv, cpu_normals = seen
    assert cuda_mv["compile_mode"] == "max-autotune-no-cudagraphs" and cuda_mv["inductor_options"] == {"freezing": True}
    assert cuda_mv["attention_backend"] == "cudnn" and cuda_normals["compile_mode"] == "reduce-overhead"
    assert all(c["compile_mode"] is None and c["inductor_options"] is None for c in (cpu_mv, cpu_normals))
    assert SpinMeRoundPipeline(_tiny_unet(), None, None).fast_path == FastPath()  # the measured defaults
