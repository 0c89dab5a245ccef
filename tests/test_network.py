"""The SpinMeRound UNet, its multi-view attention and the VAE wrapper (tiny random weights, CPU)."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from smr_helpers import NaiveProcessor, naive_attention, unet_inputs
from transformers import CLIPTextModel

from smr_core import keymaps
from smr_core.attention import MULTIVIEW_BLOCKS, SpinMeRoundAttnProcessor, set_spinmeround_processors
from smr_core.errors import InputError
from smr_core.identity import arc2face_text_config
from smr_core.tiny import build_tiny_models, tiny_unet_config
from smr_core.unet import MultiViewUNet, build_unet, spinmeround_unet_config
from smr_core.vae import SCALING_FACTOR, LatentVAE, build_vae, spinmeround_vae_config


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_models(seed=3)


@pytest.fixture(scope="module")
def mv_unet(tiny):
    unet, _, _ = tiny
    clone = UNet2DConditionModel(**tiny_unet_config())
    clone.load_state_dict(unet.state_dict())
    return MultiViewUNet(clone).eval()


def _with_processors(unet: UNet2DConditionModel, processors) -> UNet2DConditionModel:
    clone = UNet2DConditionModel(**dict(unet.config))
    clone.load_state_dict(unet.state_dict())
    clone.set_attn_processor(processors)
    return clone.eval()


# --------------------------------------------------------------------------- full size, meta device


def test_full_size_model_matches_the_official_key_tables():
    """Built on meta and renamed to the official layout: exactly the 686 + 248 + 196 keys and shapes."""
    with torch.device("meta"):
        unet = build_unet(spinmeround_unet_config())
        vae = build_vae(spinmeround_vae_config())
        text = CLIPTextModel(arc2face_text_config())
    ours = keymaps.to_official_state_dict(unet.state_dict(), vae.state_dict(), text.state_dict())
    for part, count, prefix in (
        ("unet", 686, keymaps.UNET_PREFIX),
        ("first_stage", 248, keymaps.VAE_PREFIX),
        ("conditioner", 196, keymaps.TEXT_PREFIX),
    ):
        reference = keymaps.reference_state_dict(part)
        got = {k: tuple(v.shape) for k, v in ours.items() if k.startswith(prefix)}
        assert len(reference) == count
        assert got == reference, part
    assert sum(p.numel() for p in unet.parameters()) == 859_961_608
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in text.parameters()) == 123_060_480


def test_inverse_key_maps_round_trip_the_tables():
    for keymap in (keymaps.unet_keymap(), keymaps.vae_keymap()):
        assert len(keymap.to_official) == len(keymap.to_ours)
        assert all(keymap.to_official[ours] == official for official, ours in keymap.to_ours.items())
    assert keymaps.ema_key("model.diffusion_model.time_embed.0.weight") == "model_ema.diffusion_modeltime_embed0weight"


# --------------------------------------------------------------------------- processor placement


def test_multiview_attention_sits_on_exactly_the_listed_blocks(mv_unet):
    processors = mv_unet.unet.attn_processors
    multiview = sorted(name for name, p in processors.items() if p.multiview)
    assert all(isinstance(p, SpinMeRoundAttnProcessor) for p in processors.values())
    assert all(".attn1." in name for name in multiview)
    assert {name.split(".attentions")[0] for name in multiview} == set(MULTIVIEW_BLOCKS)
    # SD-1.5 layout: 2 + 2 transformers down, 1 mid, 3 + 3 up among the multi-view levels
    assert len(multiview) == 11
    per_view_attn1 = [n for n, p in processors.items() if ".attn1." in n and not p.multiview]
    assert sorted({n.split(".attentions")[0] for n in per_view_attn1}) == ["down_blocks.0", "up_blocks.3"]
    # every processor accepts num_frames, so diffusers drops no kwarg and prints no warning
    assert all("num_frames" in inspect.signature(p.__call__).parameters for p in processors.values())


# --------------------------------------------------------------------------- numerics


def test_single_frame_is_identical_to_the_stock_unet(tiny, mv_unet):
    unet, _, _ = tiny
    stock = _with_processors(unet, AttnProcessor2_0())
    x, c_noise, context = unet_inputs(3)
    with torch.no_grad():
        expected = stock(x, c_noise, encoder_hidden_states=context).sample
        got = mv_unet(x, c_noise, context, num_frames=1)
    assert torch.equal(got, expected)


def test_processor_matches_naive_attention_on_one_layer():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=4, dim_head=4)
    hidden = torch.randn(6, 5, 16)
    q, k, v = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)
    with torch.no_grad():
        for multiview, groups in ((True, 2), (False, 6)):
            got = SpinMeRoundAttnProcessor(multiview)(attn, hidden, num_frames=3)
            expected = attn.to_out[0](naive_attention(q, k, v, heads=4, groups=groups))
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_multiview_unet_equals_a_naive_implementation_of_3d_attention(tiny, mv_unet):
    """B = 2 groups of F = 2 frames; reference: explicit softmax(QK^T/sqrt d)V over concatenated frames."""
    unet, _, _ = tiny
    reference = _with_processors(
        unet, {name: NaiveProcessor(p.multiview) for name, p in mv_unet.unet.attn_processors.items()}
    )
    per_view = _with_processors(unet, AttnProcessor2_0())
    x, c_noise, context = unet_inputs(4)
    with torch.no_grad():
        got = mv_unet(x, c_noise, context, num_frames=2)
        expected = reference(x, c_noise, encoder_hidden_states=context, cross_attention_kwargs={"num_frames": 2}).sample
        single = per_view(x, c_noise, encoder_hidden_states=context).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got - single).abs().max() > 100 * (got - expected).abs().max()


def test_groups_do_not_attend_to_each_other_but_frames_within_a_group_do(mv_unet):
    """CFG layout [uncond F frames; cond F frames]: changing the cond half leaves the uncond half alone."""
    x, c_noise, context = unet_inputs(4)
    x2 = x.clone()
    x2[3] += torch.randn_like(x2[3])  # frame 1 of group 1
    with torch.no_grad():
        a = mv_unet(x, c_noise, context, num_frames=2)
        b = mv_unet(x2, c_noise, context, num_frames=2)
    assert torch.equal(a[:2], b[:2])  # group 0 untouched
    assert not torch.allclose(a[2], b[2])  # frame 0 of group 1 sees frame 1 through 3-D attention


def test_fused_qkv_projections_give_the_same_output(tiny, mv_unet):
    fused = MultiViewUNet(UNet2DConditionModel(**tiny_unet_config())).eval()
    fused.load_state_dict(mv_unet.state_dict())
    fused.fuse_qkv_projections()
    assert fused.unet.mid_block.attentions[0].transformer_blocks[0].attn1.fused_projections
    x, c_noise, context = unet_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(
            fused(x, c_noise, context, num_frames=2), mv_unet(x, c_noise, context, num_frames=2), rtol=1e-4, atol=1e-5
        )


def test_num_frames_must_divide_the_batch(mv_unet):
    x, c_noise, context = unet_inputs(3)
    with pytest.raises(ValueError, match="groups of num_frames=2"):
        mv_unet(x, c_noise, context, num_frames=2)


def test_low_precision_paths_on_cpu(mv_unet):
    """bf16 autocast and bf16 weights: output keeps the input dtype and stays close to fp32."""
    x, c_noise, context = unet_inputs(2)
    with torch.no_grad():
        reference = mv_unet(x, c_noise, context, num_frames=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = mv_unet(x, c_noise, context, num_frames=2)
        bf16 = MultiViewUNet(UNet2DConditionModel(**tiny_unet_config())).eval()
        bf16.load_state_dict(mv_unet.state_dict())
        bf16 = bf16.to(torch.bfloat16)
        low = bf16(x, c_noise, context, num_frames=2)
    scale = reference.abs().max()
    for out in (autocast, low):
        assert out.dtype == torch.float32
        assert (out - reference).abs().max() < 0.1 * scale


def test_processors_refuse_attention_layers_they_do_not_implement():
    unet = UNet2DConditionModel(**tiny_unet_config())
    unet.mid_block.attentions[0].transformer_blocks[0].attn1.residual_connection = True
    with pytest.raises(ValueError, match="residual_connection"):
        set_spinmeround_processors(unet)


@pytest.mark.slow
def test_unet_compiles_without_graph_breaks(mv_unet):
    x, c_noise, context = unet_inputs(2)
    compiled = torch.compile(mv_unet, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, c_noise, context, num_frames=2), mv_unet(x, c_noise, context, 2))


# --------------------------------------------------------------------------- VAE


@pytest.fixture(scope="module")
def latent_vae(tiny):
    _, vae, _ = tiny
    return LatentVAE(vae).eval()


def test_vae_encode_is_the_scaled_posterior_sample(latent_vae):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        moments = latent_vae.vae.encode(images).latent_dist.parameters
        mean, logvar = moments.chunk(2, dim=1)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
        expected = SCALING_FACTOR * (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * eps)
        sampled = latent_vae.encode(images, generator=torch.Generator().manual_seed(7))
        again = latent_vae.encode(images, generator=torch.Generator().manual_seed(7))
        other = latent_vae.encode(images, generator=torch.Generator().manual_seed(8))
        deterministic = latent_vae.encode(images, sample=False)
    assert sampled.shape == (2, 4, 4, 4)
    torch.testing.assert_close(sampled, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(sampled, again) and not torch.equal(sampled, other)
    torch.testing.assert_close(deterministic, SCALING_FACTOR * mean)


def test_vae_decode_range_chunks_and_fp32_under_autocast(latent_vae):
    latents = torch.randn(3, 4, 4, 4)
    with torch.no_grad():
        images = latent_vae.decode(latents)
        raw = latent_vae.vae.decode(latents / SCALING_FACTOR).sample
        chunked = latent_vae.decode(latents, chunk_size=2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = latent_vae.decode(latents)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(images, raw.clamp(-1, 1))
    torch.testing.assert_close(chunked, images, rtol=1e-4, atol=1e-4)  # batch size changes conv kernels
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, images)


def test_vae_rejects_wrong_shapes(latent_vae):
    with pytest.raises(InputError, match="expects"):
        latent_vae.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(InputError, match="latents"):
        latent_vae.decode(torch.zeros(1, 8, 4, 4))
