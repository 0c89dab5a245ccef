"""SpinMeRoundPipeline on stand-in networks: what each pass is given, clamping, noise, identity-only, ViewSet."""

import json

import numpy as np
import pytest
import torch
from pipeline_helpers import fast_pipeline
from pydantic import ValidationError

from smr_core.cameras import ViewCamera, model_angles
from smr_core.denoiser import v_scaling
from smr_core.errors import InputError
from smr_core.pipeline import ViewsConfig
from smr_core.pose import pose_rotation
from smr_core.views import plan_passes
from smr_core.viewset_out import build_viewset
from spin_io.viewset import read_viewset, write_viewset

STEPS, NORMALS_STEPS = 2, 2


def photo():
    img = np.full((512, 512, 3), 255, np.uint8)
    img[120:400, 160:350] = (190, 150, 130)
    img[200:220, 200:230] = (40, 30, 30)
    return img


def run(config=None, image="photo", cameras=None):
    config = config or ViewsConfig(steps=STEPS, normals_steps=NORMALS_STEPS)
    image = photo() if isinstance(image, str) else image
    cameras = cameras if cameras is not None else config.cameras(with_input=image is not None)
    pipe, net = fast_pipeline()
    events = []
    result = pipe.generate(image, np.ones(512, np.float32), cameras, config, progress=lambda *e: events.append(e))
    return result, net.calls, events, pipe


def ray_origin(cam):
    """The model's ray origin for a camera: o = -R^T t (SPINMEROUND.md §3.7)."""
    R = pose_rotation(*model_angles(cam))
    return -(R.T @ torch.tensor([0.0, 0.0, 2.7]))


def unscale(call):
    """x of every row from the recorded c_in * x (c_in = 1/sqrt(sigma^2 + 1), sigma = exp(4 c_noise))."""
    sigma = torch.exp(4 * call["c_noise"].double())
    _, _, c_in, _ = v_scaling(sigma)
    return call["latents"].double() / c_in[:, None, None, None]


@pytest.fixture(scope="module")
def default_run():
    return run()


def test_every_pass_gets_its_conditioning_views_clamped_and_its_cameras(default_run):
    result, calls, _, pipe = default_run
    cams = result.cameras
    assert len(cams) == 24 and len(result.passes) == 3
    assert result.passes == plan_passes(cams)
    normals_calls, pass_calls = calls[:NORMALS_STEPS], calls[NORMALS_STEPS:]
    for call in normals_calls:  # §2.4: one frame, a target (mask 1), the frontal camera
        assert call["n"] == 1 and call["num_frames"] == 1 and call["mask"].tolist() == [1.0]
        torch.testing.assert_close(call["origin"][0], torch.tensor([0.0, 0.0, -2.7]))
    assert len(pass_calls) == STEPS * len(result.passes)
    empty = None
    for p, view_pass in enumerate(result.passes):
        frames, n_cond = view_pass.frames, len(view_pass.conditioning)
        expected_origin = torch.stack([ray_origin(cams[i]) for i in frames])
        for call in pass_calls[p * STEPS : (p + 1) * STEPS]:
            f = len(frames)
            assert call["num_frames"] == f and call["n"] == 2 * f  # [uncond F; cond F] in one call
            x = unscale(call)
            uncond, cond = slice(0, f), slice(f, 2 * f)
            # conditional half: real cameras for every frame, mask 0 on conditioning frames only
            torch.testing.assert_close(call["origin"][cond], expected_origin, rtol=0, atol=1e-5)
            assert call["mask"][cond].tolist() == [0.0] * n_cond + [1.0] * (f - n_cond)
            # conditioning frames hold the clean latents of the views they are, at every step
            for k, i in enumerate(view_pass.conditioning):
                torch.testing.assert_close(x[f + k].float(), result.latents[i], rtol=1e-4, atol=1e-4)
            # unconditional half: conditioning rows are the grey-image latent with all camera channels zeroed
            assert call["camera_rows_zero"][uncond].tolist() == [True] * n_cond + [False] * (f - n_cond)
            for k in range(n_cond):
                if empty is None:
                    empty = x[k].clone()
                torch.testing.assert_close(x[k], empty, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(x[uncond][n_cond:], x[cond][n_cond:])  # targets: same state in both halves
    # the input's clean latent is (encoded photo, encoded retrieved normals)
    x_in = torch.from_numpy(photo()).permute(2, 0, 1)[None].float() / 127.5 - 1
    z_mean = pipe.vae.encode(x_in, sample=False)
    assert (result.latents[0, :4] - z_mean[0]).abs().max() < 0.01  # posterior sample: mean + 0.01 noise


def test_input_view_is_the_photo_and_targets_are_generated(default_run):
    result, *_ = default_run
    np.testing.assert_array_equal(result.rgb[0], photo())
    assert result.rgb.shape == (24, 512, 512, 3) and result.normals.shape == (24, 512, 512, 3)
    assert all(np.abs(result.latents[i]).sum() > 0 for i in range(24))
    assert len({result.latents[i].numpy().tobytes() for i in range(1, 24)}) == 23  # every camera its own view


def test_progress_is_one_monotonic_stream(default_run):
    result, _, events, _ = default_run
    totals = {t for _, _, t in events}
    done = [d for _, d, _ in events]
    assert len(totals) == 1 and done == list(range(1, len(events) + 1)) and done[-1] == totals.pop()
    stages = [s for s, _, _ in events]
    assert stages[:NORMALS_STEPS] == ["normals"] * NORMALS_STEPS and stages[-1] == "decode"
    assert "views pass 3/3" in stages


def test_same_initial_noise_by_default_and_independent_on_request(default_run):
    _, calls, _, _ = default_run
    first = unscale(calls[NORMALS_STEPS])  # first multi-view step of pass 1: 8 frames, input + 7 targets
    targets = first[8 + 1 : 16]
    assert all(torch.equal(targets[0], t) for t in targets[1:])
    config = ViewsConfig(num_views=4, pitch_rings_deg=(0.0,), steps=STEPS, normals_steps=1, same_noise=False)
    _, calls2, _, _ = run(config)
    targets2 = unscale(calls2[1])[4 + 1 : 8]
    assert not torch.allclose(targets2[0], targets2[1])


def test_seed_reproduces_and_changes_the_run():
    config = ViewsConfig(num_views=3, pitch_rings_deg=(0.0,), steps=STEPS, normals_steps=1, seed=7)
    a, *_ = run(config)
    b, *_ = run(config)
    c, *_ = run(config.model_copy(update={"seed": 8}))
    torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=0)
    assert not torch.allclose(a.latents[1:], c.latents[1:])


def test_identity_only_generation_conditions_first_on_nothing_then_on_three_views():
    config = ViewsConfig(num_views=4, pitch_rings_deg=(0.0, 25.0), steps=STEPS)
    result, calls, _, _ = run(config, image=None)
    assert not any(c.is_input for c in result.cameras) and len(calls) == STEPS * len(result.passes)  # no normals run
    assert result.passes[0].conditioning == () and len(result.passes[0].targets) == 4
    assert calls[0]["mask"].tolist() == [1.0] * 8  # pass 1: every frame a target in both halves
    second = result.passes[1]
    assert len(second.conditioning) == 3 and set(second.conditioning) <= set(result.passes[0].targets)
    x = unscale(calls[STEPS])
    f = len(second.frames)
    for k, i in enumerate(second.conditioning):
        torch.testing.assert_close(x[f + k].float(), result.latents[i], rtol=1e-4, atol=1e-4)


def test_generate_rejects_bad_input():
    config = ViewsConfig(num_views=2, pitch_rings_deg=(0.0,), steps=STEPS)
    with pytest.raises(InputError, match="512x512x3 uint8"):
        run(config, image=np.zeros((256, 256, 3), np.uint8))
    with pytest.raises(InputError, match="exactly one camera must be the input"):
        run(config, cameras=[ViewCamera(0, 0), ViewCamera(90, 0)])
    with pytest.raises(InputError, match="no input view"):
        run(config, image=None, cameras=[ViewCamera(0, 0, True), ViewCamera(90, 0)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pitch_rings_deg": (0.0, 90.0)}, "between -90 and 90"),
        ({"pitch_rings_deg": (0.0, 0.0)}, "distinct"),
        ({"steps": 1}, "greater than or equal to 2"),
        ({"max_frames": 17}, "less than or equal to 16"),
        ({"encode": "mode"}, "sample"),
        ({"views": 8}, "Extra inputs"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        ViewsConfig(**kwargs)


def test_result_makes_a_valid_viewset(tmp_path):
    config = ViewsConfig(num_views=4, pitch_rings_deg=(0.0, 20.0), steps=STEPS, normals_steps=1)
    result, *_ = run(config)
    input_mask = np.where(photo().min(axis=2) < 255, 255, 0).astype(np.uint8)
    vs = build_viewset(result, config, input_mask=input_mask, generation={"seed": config.seed})
    write_viewset(tmp_path, vs)
    back = read_viewset(tmp_path)
    assert back.yaw_direction == "ccw_from_above" and len(back.frames) == 8
    assert back.frames[0].is_input and not any(f.is_input for f in back.frames[1:])
    np.testing.assert_array_equal(back.frames[0].mask, input_mask > 127)
    for frame, cam in zip(back.frames, result.cameras, strict=True):
        np.testing.assert_allclose(frame.c2w, cam.c2w(), atol=1e-9)
        assert frame.normal_frame == "camera"
        inside = np.linalg.norm(frame.normal, axis=2)[frame.mask]
        np.testing.assert_allclose(inside, 1.0, atol=0.02)  # unit normals after 8-bit storage
    for i in range(1, 8):  # generated views: mask = not-white, as documented
        rgb = back.frames[i].rgb
        np.testing.assert_array_equal(back.frames[i].mask, _expected_mask(rgb))
    meta = json.loads((tmp_path / "transforms.json").read_text())
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h", "transform_matrix", "file_path"} <= set(meta["frames"][0])


def _expected_mask(rgb):
    from smr_core.views import white_background_mask

    return white_background_mask(rgb, 240)


def test_attention_backend_reaches_every_network_call_of_the_exact_path():
    from pipeline_helpers import RecordingNet, micro_vae, tiny_identity

    from smr_core.pipeline import SpinMeRoundPipeline

    class BackendNet(RecordingNet):
        attention_backend = "auto"

        def set_attention_backend(self, backend):
            self.attention_backend = backend

        def forward(self, x, c_noise, context, num_frames):
            self.backends.append(self.attention_backend)
            return super().forward(x, c_noise, context, num_frames)

    net = BackendNet()
    net.backends = []
    pipe = SpinMeRoundPipeline(net, micro_vae(), tiny_identity())
    config = ViewsConfig(num_views=2, pitch_rings_deg=(0.0,), steps=STEPS, normals_steps=1, attention_backend="flash")
    pipe.generate(photo(), np.ones(512, np.float32), config.cameras(with_input=True), config)
    assert net.backends == ["flash"] * (1 + STEPS)  # the normals step, then each multi-view step
    with pytest.raises(ValidationError, match="attention_backend"):
        ViewsConfig(attention_backend="xformers")
