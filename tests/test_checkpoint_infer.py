"""Official-layout checkpoints of any depth and width: architecture read from keys and shapes (issue 14).

Two kinds of evidence. Tiny checkpoints of several architectures, written in the official layout,
load bit for bit and give the outputs of the same networks built directly (up to float rounding).
Hand-built state dicts, made from the reference tables of the authors' key names (not through our key maps), load
strictly, land where the authors' names say, and give back the release configuration.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from smr_helpers import unet_inputs

from smr_core import keymaps
from smr_core.checkpoint import (
    convert_weights,
    infer_unet_config,
    infer_vae_config,
    load_spinmeround,
    read_state_dict,
    vae_from_official,
)
from smr_core.errors import CheckpointError
from smr_core.identity import IdentityEncoder
from smr_core.tiny import build_tiny_models, tiny_text_config, tiny_unet_config, tiny_vae_config, write_tiny_weights
from smr_core.unet import MultiViewUNet, build_unet, multiview_blocks, spinmeround_unet_config
from smr_core.vae import LatentVAE, build_vae, spinmeround_vae_config


def _types(n: int, attention: tuple[bool, ...], with_attn: str, without: str) -> tuple[str, ...]:
    return tuple(with_attn if attention[i] else without for i in range(n))


def _unet(widths: tuple[int, ...], attention: tuple[bool, ...], **overrides) -> dict:
    """A tiny UNet config with attention at the given levels (level 0 = full resolution)."""
    n = len(widths)
    return tiny_unet_config(
        block_out_channels=widths,
        down_block_types=_types(n, attention, "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=_types(n, attention[::-1], "CrossAttnUpBlock2D", "UpBlock2D"),
        **overrides,
    )


def _vae(widths: tuple[int, ...], layers: int, attention: tuple[bool, ...] | None = None) -> dict:
    """A tiny VAE config; `attention` puts attention after every ResBlock of those levels (attn_resolutions)."""
    n = len(widths)
    attention = attention or (False,) * n
    return tiny_vae_config(
        block_out_channels=widths,
        layers_per_block=layers,
        down_block_types=_types(n, attention, "AttnDownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=_types(n, attention[::-1], "AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
    )


# name -> (UNet config, VAE config, context width)
CASES: dict[str, tuple[dict, dict, int]] = {
    # the case: the release's UNet layout, a VAE with one ResBlock per level
    "vae-1-block": (tiny_unet_config(), tiny_vae_config(layers_per_block=1), 32),
    # 2 levels everywhere, attention at the inner level only, transformer depth 2, context 64
    "two-levels-depth-2": (
        _unet((32, 64), (False, True), layers_per_block=1, transformer_layers_per_block=2, cross_attention_dim=64),
        _vae((32, 64), layers=1),
        64,
    ),
    # 3 levels: per-level ResBlocks (2, 1, 2), attention at levels 0 and 2, linear projections;
    # VAE ch_mult (1, 2, 4) with 2 ResBlocks per level and attention at its innermost level
    "three-levels-mixed": (
        _unet((32, 64, 128), (True, False, True), layers_per_block=(2, 1, 2), use_linear_projection=True),
        _vae((32, 64, 128), layers=2, attention=(False, False, True)),
        32,
    ),
}


def _directly(seed: int, unet_config: dict, vae_config: dict, width: int):
    """The pipeline's three networks built straight from the configs (no checkpoint involved)."""
    unet, vae, text = build_tiny_models(seed, unet_config, vae_config, tiny_text_config(hidden_size=width))
    return (
        MultiViewUNet(unet).eval(),
        LatentVAE(vae).eval(),
        IdentityEncoder(text).eval(),
    )


def _plain(value):
    return tuple(value) if isinstance(value, list | tuple) else value


def _outputs(unet, vae, identity, width: int) -> dict[str, torch.Tensor]:
    x, c_noise, context = unet_inputs(4, size=8, width=width)
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    arcface = torch.randn(1, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return {
            "unet": unet(x, c_noise, context, num_frames=2),
            "encode": vae.encode(image, sample=False),
            "decode": vae.decode(latents, clamp=False),
            "context": identity(arcface),
        }


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    name = request.param
    unet_config, vae_config, width = CASES[name]
    root = write_tiny_weights(
        tmp_path_factory.mktemp(name),
        seed=5,
        unet_config=unet_config,
        vae_config=vae_config,
        text_config=tiny_text_config(hidden_size=width),
        ema=True,
    )
    return name, root


def test_official_checkpoints_of_several_architectures_match_the_networks_built_directly(case):
    name, root = case
    unet_config, vae_config, width = CASES[name]
    loaded = load_spinmeround(root)
    unet, vae, identity = _directly(5, unet_config, vae_config, width)
    for part, built, got in (("unet", unet.unet, loaded.unet.unet), ("vae", vae.vae, loaded.vae.vae)):
        assert {k: v.shape for k, v in got.state_dict().items()} == {k: v.shape for k, v in built.state_dict().items()}
        for key in ("block_out_channels", "down_block_types", "up_block_types", "in_channels", "out_channels"):
            assert _plain(got.config[key]) == _plain(built.config[key]), (part, key)
    assert loaded.unet.config.cross_attention_dim == width
    assert loaded.unet.config.use_linear_projection == unet_config["use_linear_projection"]
    for part, built, got in (("unet", unet.unet, loaded.unet.unet), ("vae", vae.vae, loaded.vae.vae)):
        wrong = [k for k, v in built.state_dict().items() if not torch.equal(v, got.state_dict()[k])]
        assert not wrong, (name, part, wrong[:3])  # every weight loaded bit for bit where it belongs
    expected = _outputs(unet, vae, identity, width)
    got = _outputs(loaded.unet, loaded.vae, loaded.identity_encoder, width)
    for key, value in expected.items():
        # same weights, same inputs: equal up to float rounding (a CPU kernel's summation order can depend on
        # where its buffers happen to lie in memory: 1e-7 relative seen on one machine); a misplaced weight is O(1)
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{name} {key}")


def test_inferred_architectures_survive_conversion(case, tmp_path):
    name, root = case
    _, _, width = CASES[name]
    official = load_spinmeround(root)
    converted = load_spinmeround(convert_weights(root, tmp_path / "converted"))
    assert _plain(converted.unet.config.layers_per_block) == _plain(official.unet.config.layers_per_block)
    before = _outputs(official.unet, official.vae, official.identity_encoder, width)
    after = _outputs(converted.unet, converted.vae, converted.identity_encoder, width)
    for key, value in before.items():
        assert torch.equal(value, after[key]), (name, key)


def test_ema_weights_follow_the_inferred_architecture(case):
    _, root = case
    state = read_state_dict(root / "spmr.ckpt")
    ema = load_spinmeround(root, use_ema=True)
    key = keymaps.UNET_PREFIX + "input_blocks.1.0.in_layers.2.weight"
    assert torch.equal(ema.unet.unet.down_blocks[0].resnets[0].conv1.weight, state[keymaps.ema_key(key)])
    assert torch.equal(ema.unet.unet.down_blocks[0].resnets[0].conv1.weight, state[key] + 0.01)


def test_the_vae_depth_and_widths_are_read_from_the_checkpoint(case):
    name, root = case
    _, vae_config, _ = CASES[name]
    state = read_state_dict(root / "spmr.ckpt")
    inferred = infer_vae_config({k: v for k, v in state.items() if k.startswith(keymaps.VAE_PREFIX)}, root)
    for key in ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types", "latent_channels"):
        assert inferred[key] == vae_config[key], key
    # the decoder has one ResBlock more per level than the encoder (ldm)
    layers = vae_config["layers_per_block"]
    assert f"{keymaps.VAE_PREFIX}decoder.up.0.block.{layers}.conv1.weight" in state
    assert f"{keymaps.VAE_PREFIX}encoder.down.0.block.{layers}.conv1.weight" not in state


# --------------------------------------------------------------------------- hand-built from the reference tables


def _scaled(part: str, factor: int, multiple_of: int, fixed: dict[int, int] | None = None) -> dict[str, torch.Tensor]:
    """The reference table's keys with random tensors, every dimension divisible by `multiple_of` divided by
    `factor` (and `fixed` dimensions replaced): the release's layout at test size, built without our maps."""
    fixed = fixed or {}
    g = torch.Generator().manual_seed(11)
    out = {}
    for key, shape in keymaps.reference_state_dict(part).items():
        dims = [fixed.get(d, d // factor if d % multiple_of == 0 else d) for d in shape]
        out[key] = torch.randn(dims, generator=g)
    return out


def test_reference_shapes_give_back_the_release_configs():
    unet = {k: torch.empty(s, device="meta") for k, s in keymaps.reference_state_dict("unet").items()}
    vae = {k: torch.empty(s, device="meta") for k, s in keymaps.reference_state_dict("first_stage").items()}
    assert infer_unet_config(unet, Path("ref")) == spinmeround_unet_config()
    assert infer_vae_config(vae, Path("ref")) == spinmeround_vae_config()


def test_naming_rules_reproduce_the_reference_key_maps():
    with torch.device("meta"):
        unet = build_unet(spinmeround_unet_config())
        vae = build_vae(spinmeround_vae_config())
    assert keymaps.unet_official_keys(unet.state_dict()) == keymaps.unet_keymap().to_official
    assert keymaps.vae_official_keys(vae.state_dict()) == keymaps.vae_keymap().to_official
    assert frozenset(k for k in vae.state_dict() if keymaps.is_vae_conv1x1(k)) == keymaps.vae_conv1x1_keys()


def test_hand_built_release_layout_unet_loads_at_test_size():
    # 320/640/1280 (and 4x, 8x for time/ff) -> /10; the 768-wide context -> 32
    official = _scaled("unet", factor=10, multiple_of=320, fixed={768: 32})
    from smr_core.checkpoint import unet_from_official

    unet = unet_from_official(official, Path("hand-built"))
    assert unet.config.block_out_channels == (32, 64, 128, 128) and unet.config.cross_attention_dim == 32
    p = keymaps.UNET_PREFIX
    # a few placements written out by hand from SPINMEROUND.md §4.3
    assert torch.equal(unet.conv_in.weight, official[p + "input_blocks.0.0.weight"])
    assert torch.equal(
        unet.down_blocks[1].resnets[0].conv_shortcut.weight, official[p + "input_blocks.4.0.skip_connection.weight"]
    )
    assert torch.equal(unet.down_blocks[2].downsamplers[0].conv.weight, official[p + "input_blocks.9.0.op.weight"])
    assert torch.equal(
        unet.up_blocks[1].attentions[2].transformer_blocks[0].attn2.to_k.weight,
        official[p + "output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight"],
    )
    assert torch.equal(unet.up_blocks[1].upsamplers[0].conv.weight, official[p + "output_blocks.5.2.conv.weight"])
    assert torch.equal(unet.up_blocks[0].upsamplers[0].conv.weight, official[p + "output_blocks.2.1.conv.weight"])
    assert torch.equal(
        unet.mid_block.resnets[1].time_emb_proj.weight, official[p + "middle_block.2.emb_layers.1.weight"]
    )


def test_hand_built_vae_with_one_resblock_per_level_loads():
    """The release's VAE names with encoder block.1 and decoder block.2 dropped: ldm's num_res_blocks=1."""
    full = _scaled("first_stage", factor=4, multiple_of=128)  # 128/256/512 -> 32/64/128
    drop = re.compile(r"first_stage_model\.(encoder\.down\.\d+\.block\.1|decoder\.up\.\d+\.block\.2)\.")
    official = {k: v for k, v in full.items() if not drop.match(k)}
    assert len(full) - len(official) == 64  # 8 tensors per ResBlock: the 64 keys the old loader missed
    vae = vae_from_official(official, Path("hand-built"))
    assert vae.config.layers_per_block == 1 and vae.config.block_out_channels == (32, 64, 128, 128)
    assert len(vae.encoder.down_blocks[0].resnets) == 1 and len(vae.decoder.up_blocks[0].resnets) == 2
    p = keymaps.VAE_PREFIX
    assert torch.equal(
        vae.encoder.down_blocks[1].resnets[0].conv_shortcut.weight,
        official[p + "encoder.down.1.block.0.nin_shortcut.weight"],
    )
    assert torch.equal(
        vae.decoder.up_blocks[0].resnets[1].conv2.weight, official[p + "decoder.up.3.block.1.conv2.weight"]
    )
    assert torch.equal(
        vae.decoder.up_blocks[3].resnets[0].conv_shortcut.weight,
        official[p + "decoder.up.0.block.0.nin_shortcut.weight"],
    )
    q = official[p + "decoder.mid.attn_1.q.weight"]
    assert q.shape == (128, 128, 1, 1) and torch.equal(vae.decoder.mid_block.attentions[0].to_q.weight, q[:, :, 0, 0])
    assert sum(t.numel() for t in vae.state_dict().values()) == sum(t.numel() for t in official.values())


# --------------------------------------------------------------------------- real mismatches


def test_a_missing_key_is_named_with_its_shape_in_one_line():
    _, vae, _ = build_tiny_models(0, vae_config=_vae((32, 64), layers=1))
    official = keymaps.vae_to_official(vae.state_dict())
    key = keymaps.VAE_PREFIX + "decoder.up.0.block.1.conv2.weight"
    official.pop(key)
    with pytest.raises(CheckpointError) as info:
        vae_from_official(official, Path("w/spmr.ckpt"))
    message = str(info.value)
    assert "\n" not in message
    assert f"missing 1 key(s): {key} [32, 32, 3, 3]" in message


def test_a_decoder_of_the_wrong_depth_lists_the_first_five_keys_with_shapes():
    # encoder with 2 ResBlocks per level, decoder with 1 + 1 (as if written for num_res_blocks=1)
    _, two, _ = build_tiny_models(0, vae_config=_vae((32, 64), layers=2))
    _, one, _ = build_tiny_models(0, vae_config=_vae((32, 64), layers=1))
    official = {
        **{k: v for k, v in keymaps.vae_to_official(two.state_dict()).items() if ".decoder." not in k},
        **{k: v for k, v in keymaps.vae_to_official(one.state_dict()).items() if ".decoder." in k},
    }
    with pytest.raises(CheckpointError) as info:
        vae_from_official(official, Path("w/spmr.ckpt"))
    message = str(info.value)
    assert "\n" not in message
    listed = re.search(r"missing (\d+) key\(s\): (.*?), \.\.\. \((\d+) more\)", message)
    assert listed is not None, message
    total, shown, more = int(listed[1]), listed[2].split("], "), int(listed[3])
    assert total == 2 * 8 and len(shown) == 5 and more == total - 5  # decoder block.2 of both levels
    assert shown[0] == f"{keymaps.VAE_PREFIX}decoder.up.0.block.2.conv1.bias [32"


def test_a_wrong_shape_names_both_shapes(tmp_path):
    unet_config, vae_config, width = CASES["two-levels-depth-2"]
    root = write_tiny_weights(
        tmp_path / "w", unet_config=unet_config, vae_config=vae_config, text_config=tiny_text_config(hidden_size=width)
    )
    state = dict(torch.load(root / "spmr.ckpt", weights_only=True)["state_dict"])  # not mmapped: rewritten below
    key = keymaps.UNET_PREFIX + "input_blocks.3.1.transformer_blocks.1.ff.net.2.weight"
    assert tuple(state[key].shape) == (64, 256)
    state[key] = torch.zeros(64, 255)
    torch.save({"state_dict": state}, root / "spmr.ckpt")
    with pytest.raises(CheckpointError, match=re.escape(key) + r": file \[64, 255\] vs model \[64, 256\]") as info:
        load_spinmeround(root)
    assert "\n" not in str(info.value)


def test_unrepresentable_architectures_are_refused_in_one_line():
    _, vae, _ = build_tiny_models(0, vae_config=_vae((32, 64), layers=1))
    official = keymaps.vae_to_official(vae.state_dict())
    p = keymaps.VAE_PREFIX
    official[p + "post_quant_conv.weight"] = torch.zeros(4, 3, 1, 1)  # embed_dim 3 != z_channels 4
    with pytest.raises(CheckpointError, match="embed_dim 3 differs from z_channels 4") as info:
        vae_from_official(official, Path("w"))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- multi-view placement at any depth


def test_multiview_attention_and_frame_pruning_follow_the_level_count():
    unet_config, _, _ = CASES["three-levels-mixed"]
    unet, _, _ = build_tiny_models(1, unet_config=unet_config)
    net = MultiViewUNet(unet).eval()
    assert multiview_blocks(unet) == ("down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1")
    multiview = {n.split(".attentions")[0] for n, p in unet.attn_processors.items() if p.multiview}
    per_view = {
        n.split(".attentions")[0] for n, p in unet.attn_processors.items() if ".attn1." in n and not p.multiview
    }
    assert multiview == {"down_blocks.2", "mid_block", "up_blocks.0"}  # level 1 has no attention here
    assert per_view == {"down_blocks.0", "up_blocks.2"}
    assert net.supports_frame_pruning and net._pruning_block == 2
    x, c_noise, context = unet_inputs(4, size=8)
    keep = torch.tensor([1, 3])
    with torch.no_grad():
        full = net(x, c_noise, context, num_frames=4)
        part = net(x, c_noise, context, num_frames=4, keep_frames=keep)
    # equal to float32 rounding: on one CPU thread the kernels differ with the batch size (2 frames vs 4), 1e-6 apart
    torch.testing.assert_close(part, full[keep], rtol=1e-5, atol=1e-6)
