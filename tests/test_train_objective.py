"""The EDM objective: the loss identity, conditioning frames outside the loss, sigma sampling, CFG dropout."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import one_thread  # noqa: F401 (autouse fixture)

from smr_core.denoiser import Denoiser
from smr_core.train import objective
from smr_core.train.config import ObjectiveConfig
from smr_core.train.loop import Batch, training_loss


def _linear_network(seed: int = 0, dtype: torch.dtype = torch.float64):
    """F(x_in) = 1x1 conv of the 153 input channels + a term in c_noise: cheap and not trivial."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 153, generator=g, dtype=dtype) * 0.1
    b = torch.randn(8, generator=g, dtype=dtype)

    def network(x, c_noise, context, num_frames):
        return torch.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None] * c_noise[:, None, None, None]

    return network


@pytest.mark.parametrize("sigma_value", [0.01, 0.3, 1.0, 2.0, 20.0, 400.0])
def test_weighted_denoiser_loss_equals_v_mse(sigma_value):
    """lambda(sigma) ||D - x0||^2 == ||F - v||^2 for D built by the production Denoiser.

    Inputs are float64; the Denoiser returns its network output in fp32 (by design), hence rtol 1e-6."""
    g = torch.Generator().manual_seed(1)
    n = 4
    x0 = torch.randn(n, 8, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 8, 8, 8, generator=g, dtype=torch.float64)
    cond = torch.randn(n, 145, 8, 8, generator=g, dtype=torch.float64)
    context = torch.zeros(n, 77, 4, dtype=torch.float64)
    sigma = torch.full((n,), sigma_value, dtype=torch.float64) * torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=torch.float64)
    network = _linear_network()
    x = x0 + sigma[:, None, None, None] * eps
    denoised = Denoiser(network)(x, sigma, cond, context, n).double()

    from smr_core.denoiser import append_dims, v_scaling

    _, _, c_in, c_noise = v_scaling(sigma)
    prediction = network(torch.cat([append_dims(c_in, 4) * x, cond], 1), c_noise, context, n)
    v_loss = objective.per_frame_v_loss(prediction.double(), objective.v_target(x0, eps, sigma).double())
    weighted = objective.weighted_denoiser_loss(denoised, x0, sigma)
    torch.testing.assert_close(weighted, v_loss.double(), rtol=1e-6, atol=0)


def test_v_target_makes_the_denoiser_exact():
    """F = v gives D(x0 + sigma eps) = x0: v is the right target for the v-scaling."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 8, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 8, 4, 4, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.05, 1.0, 50.0], dtype=torch.float64)
    v = objective.v_target(x0, eps, sigma)
    from smr_core.denoiser import append_dims, v_scaling

    c_skip, c_out, _, _ = (append_dims(c, 4) for c in v_scaling(sigma))
    denoised = c_skip * (x0 + append_dims(sigma, 4) * eps) + c_out * v
    torch.testing.assert_close(denoised, x0, rtol=0, atol=1e-10)


def test_loss_weight_is_one_over_c_out_squared():
    sigma = torch.tensor([0.002, 0.5, 1.0, 700.0], dtype=torch.float64)
    c_out = -sigma / (1 + sigma**2).sqrt()
    torch.testing.assert_close(objective.loss_weight(sigma), 1 / c_out**2)


def test_sigma_sampling_is_lognormal_with_the_paper_parameters():
    g = torch.Generator().manual_seed(0)
    ln_sigma = objective.sample_sigmas(200_000, 0.7, 1.6, g).log()
    assert abs(float(ln_sigma.mean()) - 0.7) < 0.02
    assert abs(float(ln_sigma.std()) - 1.6) < 0.02


def test_bucket_index_and_labels():
    edges = (0.1, 1.0, 10.0)
    idx = objective.bucket_index(torch.tensor([0.05, 0.1, 0.5, 1.0, 9.9, 10.0, 1e3]), edges)
    assert idx.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert objective.bucket_labels(edges) == ["<0.1", "0.1-1", "1-10", ">=10"]


# --------------------------------------------------------------------------- conditioning frames and dropout


class _Recorder(torch.nn.Module):
    """A network stand-in that records its inputs and returns a parameterised output."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.out = torch.nn.Parameter(torch.randn(n, 8, 4, 4, generator=torch.Generator().manual_seed(5)))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, c_noise, context, num_frames):
        self.calls.append((x.detach().clone(), context.detach().clone()))
        return self.out * 1.0


def _batch(seed: int = 0, b: int = 2, f: int = 4, n_cond: tuple[int, ...] = (1, 3)) -> Batch:
    g = torch.Generator().manual_seed(seed)
    is_target = torch.ones(b * f, dtype=torch.bool)
    for k, c in enumerate(n_cond):
        is_target[k * f : k * f + c] = False
    return Batch(
        x0=torch.randn(b * f, 8, 4, 4, generator=g),
        rays=torch.randn(b * f, 144, 4, 4, generator=g),
        is_target=is_target,
        context=torch.randn(b, 77, 6, generator=g),
        num_frames=f,
    )


def _no_dropout() -> ObjectiveConfig:
    return ObjectiveConfig(p_drop_identity=0.0, p_drop_views=0.0, p_drop_all=0.0)


def test_conditioning_frames_contribute_nothing_to_the_loss():
    """Changing the targets (clean latents) of conditioning frames changes neither the loss nor its gradient;
    the gradient of the loss w.r.t. the network output at conditioning frames is exactly zero."""
    batch = _batch()
    uncond, empty = torch.zeros(1, 77, 6), torch.zeros(1, 8, 4, 4)
    net = _Recorder(8)
    loss, _, _ = training_loss(net, batch, uncond, empty, _no_dropout(), torch.Generator().manual_seed(3))
    loss.backward()
    grad = net.out.grad.clone()
    cond = ~batch.is_target
    assert torch.count_nonzero(grad[cond]) == 0
    assert torch.count_nonzero(grad[batch.is_target]) > 0

    # the network never sees a conditioning frame's noise; its v-target is not in the loss either
    altered = _batch()
    altered.x0[cond] = altered.x0[cond] + 5.0  # different conditioning latents -> different network input ...
    net2 = _Recorder(8)
    loss2, _, _ = training_loss(net2, altered, uncond, empty, _no_dropout(), torch.Generator().manual_seed(3))
    assert torch.equal(loss2, loss)  # ... but the same loss: the output is fixed and those frames are masked out
    assert not torch.equal(net2.calls[0][0], net.calls[0][0])


def test_conditioning_frames_are_clean_and_targets_noisy():
    batch = _batch()
    net = _Recorder(8)
    training_loss(net, batch, torch.zeros(1, 77, 6), torch.zeros(1, 8, 4, 4), _no_dropout(),
                  torch.Generator().manual_seed(4))
    x_in, _ = net.calls[0]
    from smr_core.denoiser import v_scaling

    g = torch.Generator().manual_seed(4)
    sigma = objective.sample_sigmas(2, 0.7, 1.6, g).repeat_interleave(4)
    c_in = v_scaling(sigma)[2][:, None, None, None]
    cond = ~batch.is_target
    torch.testing.assert_close(x_in[cond, :8], (c_in * batch.x0)[cond])  # clean, only scaled by c_in
    assert not torch.allclose(x_in[batch.is_target, :8], (c_in * batch.x0)[batch.is_target])
    assert torch.equal(x_in[:, 152], batch.is_target.float()[:, None, None].expand(8, 4, 4))  # mask channel
    torch.testing.assert_close(x_in[:, 8:152], batch.rays)


def test_classifier_free_dropout_replaces_identity_and_conditioning_views():
    """p_drop_all = 1: every group sees the '' context, its conditioning views become the grey latent with
    all 145 conditioning channels zero; targets keep their rays and mask."""
    batch = _batch()
    uncond = torch.full((1, 77, 6), 7.0)
    empty = torch.full((1, 8, 4, 4), 3.0)
    net = _Recorder(8)
    config = ObjectiveConfig(p_drop_identity=0.0, p_drop_views=0.0, p_drop_all=1.0)
    training_loss(net, batch, uncond, empty, config, torch.Generator().manual_seed(0))
    x_in, context = net.calls[0]
    cond = ~batch.is_target
    assert torch.all(context == 7.0)
    assert torch.all(x_in[cond, 8:] == 0)
    from smr_core.denoiser import v_scaling

    sigma = objective.sample_sigmas(2, 0.7, 1.6, torch.Generator().manual_seed(0)).repeat_interleave(4)
    c_in = v_scaling(sigma)[2]
    torch.testing.assert_close(x_in[cond, :8], 3.0 * c_in[cond][:, None, None, None].expand(-1, 8, 4, 4))
    assert torch.all(x_in[batch.is_target, 152] == 1)


def test_dropout_rates_are_respected():
    config = ObjectiveConfig(p_drop_identity=0.3, p_drop_views=0.0, p_drop_all=0.0)
    g = torch.Generator().manual_seed(0)
    dropped = 0
    trials = 400
    uncond = torch.full((1, 77, 6), 7.0)
    for _ in range(trials // 2):
        net = _Recorder(8)
        training_loss(net, _batch(), uncond, torch.zeros(1, 8, 4, 4), config, g)
        context = net.calls[0][1]
        dropped += int(torch.all(context[:4] == 7.0)) + int(torch.all(context[4:] == 7.0))
    assert math.isclose(dropped / trials, 0.3, abs_tol=0.07)


def test_frame_pruning_leaves_loss_and_gradients_unchanged():
    from smr_core.tiny import tiny_unet_config
    from smr_core.unet import MultiViewUNet, build_unet

    torch.manual_seed(0)
    net = MultiViewUNet(build_unet(tiny_unet_config(cross_attention_dim=6))).train()
    g = torch.Generator().manual_seed(1)
    b, f, size = 2, 4, 8
    is_target = torch.ones(b * f, dtype=torch.bool)
    is_target[[0, 4, 5]] = False  # 1 and 2 conditioning views
    batch = Batch(torch.randn(b * f, 8, size, size, generator=g), torch.randn(b * f, 144, size, size, generator=g),
                  is_target, torch.randn(b, 77, 6, generator=g), f)
    uncond, empty = torch.zeros(1, 77, 6), torch.zeros(1, 8, size, size)
    frames = []
    hook = net.unet.conv_out.register_forward_hook(lambda m, i, o: frames.append(o.shape[0]))
    results = {}
    for prune in (False, True):
        net.zero_grad()
        loss, _, group = training_loss(net, batch, uncond, empty, _no_dropout(), torch.Generator().manual_seed(3),
                                       prune_frames=prune)
        loss.backward()
        results[prune] = (loss.detach(), group, [p.grad.clone() for p in net.parameters()])
    hook.remove()
    assert frames == [8, 5]  # the pruned pass finished only the 5 target frames
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-5, atol=1e-6)
    for a, c in zip(results[True][2], results[False][2], strict=True):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
