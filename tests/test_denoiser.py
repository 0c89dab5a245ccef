"""The v-scaling denoiser: closed forms, the preconditioning identity, channel layout, fp32 output."""

import math

import pytest
import torch

from smr_core.denoiser import ConditionBuffer, Denoiser, v_scaling
from smr_core.discretization import edm_sigmas
from smr_core.errors import InputError
from smr_core.sampling import prior_scale, sample_euler_edm

MU, S = 0.7, 0.5  # toy data: every latent element ~ N(MU, S^2), independent


def gaussian_denoiser(x, sigma):
    """The optimal (posterior-mean) denoiser for N(MU, S^2) data: (S^2 x + sigma^2 MU) / (S^2 + sigma^2)."""
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))) if torch.is_tensor(sigma) else sigma
    return (S**2 * x + sigma**2 * MU) / (S**2 + sigma**2)


class GaussianVNetwork:
    """A stand-in network predicting the exact v = (eps - sigma x0)/sqrt(1 + sigma^2) for the toy data.

    It sees only what the real network sees: c_in x (+) 145 channels and c_noise = log(sigma)/4.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, net_in, c_noise, context, num_frames):
        self.calls.append((net_in.clone(), c_noise.clone(), context, num_frames))
        sigma = torch.exp(4 * c_noise.double()).reshape(-1, 1, 1, 1)
        x = net_in[:, :8].double() * torch.sqrt(1 + sigma**2)  # undo c_in, in the test's own words
        x0 = gaussian_denoiser(x, sigma.flatten())
        eps = (x - x0) / sigma
        return ((eps - sigma * x0) / torch.sqrt(1 + sigma**2)).float()


def test_v_scaling_closed_forms():
    sigma = torch.tensor([0.002, 0.1344, 1.0, 14.6146, 700.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = v_scaling(sigma)
    # EDM with sigma_data = 1 and c_out negated; c_skip + c_out^2 = 1 and c_in^2 (1 + sigma^2) = 1
    torch.testing.assert_close(c_skip + c_out**2, torch.ones_like(sigma))
    torch.testing.assert_close(c_in**2 * (1 + sigma**2), torch.ones_like(sigma))
    assert (c_out < 0).all()
    assert c_noise[-1].item() == pytest.approx(1.638, abs=1e-3)  # §3.5
    assert c_noise[0].item() == pytest.approx(-1.554, abs=1e-3)
    assert c_in[-1].item() == pytest.approx(0.00143, abs=1e-5)  # §5.1: clean frames reach the UNet at 0.14 %


def test_preconditioning_identity_exact_v_gives_optimal_denoiser():
    torch.manual_seed(0)
    n, h, w = 5, 4, 4
    sigma = torch.tensor([0.01, 0.3, 1.0, 20.0, 700.0])
    x = MU + S * torch.randn(n, 8, h, w) + sigma.reshape(-1, 1, 1, 1) * torch.randn(n, 8, h, w)
    cond = torch.randn(n, 145, h, w)
    denoiser = Denoiser(GaussianVNetwork())
    got = denoiser(x, sigma, cond, torch.zeros(n, 77, 16), num_frames=n)
    torch.testing.assert_close(got, gaussian_denoiser(x, sigma), atol=1e-5, rtol=0)  # float32 rounding only
    # the identity is sharp: EDM's (unflipped) c_out sign would miss the optimum badly
    c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in v_scaling(sigma))
    v = GaussianVNetwork()(torch.cat([c_in * x, cond], 1), c_noise.flatten(), None, n)
    assert (c_skip * x - c_out * v - gaussian_denoiser(x, sigma)).abs().max() > 1.0


def test_network_input_layout_and_per_frame_sigma():
    torch.manual_seed(1)
    net = GaussianVNetwork()
    x = torch.randn(3, 8, 4, 4)
    sigma = torch.tensor([0.5, 2.0, 80.0])
    cond = torch.randn(3, 145, 4, 4)
    context = torch.randn(3, 77, 16)
    Denoiser(net)(x, sigma, cond, context, num_frames=3)
    net_in, c_noise, got_context, num_frames = net.calls[0]
    assert net_in.shape == (3, 153, 4, 4) and num_frames == 3 and got_context is context
    c_in = 1 / torch.sqrt(1 + sigma**2)
    torch.testing.assert_close(net_in[:, :8], c_in.reshape(-1, 1, 1, 1) * x)  # c_in on the latents only
    assert torch.equal(net_in[:, 8:], cond)  # camera/mask channels never scaled
    torch.testing.assert_close(c_noise, 0.25 * torch.log(sigma))


def test_condition_buffer_matches_concatenation():
    torch.manual_seed(2)
    net = GaussianVNetwork()
    x = torch.randn(2, 8, 4, 4)
    cond = torch.randn(2, 145, 4, 4)
    ctx = torch.zeros(2, 77, 8)
    denoiser = Denoiser(net)
    buffer = ConditionBuffer(cond)
    for sigma in (3.0, 0.2):  # the buffer is reused across calls
        assert torch.equal(denoiser(x, sigma, buffer, ctx, 2), denoiser(x, sigma, cond, ctx, 2))
    with pytest.raises(InputError, match="do not fit"):
        buffer.with_latents(torch.zeros(3, 8, 4, 4))


def test_autocast_network_output_returns_float32():
    seen = {}

    def bf16_network(net_in, c_noise, context, num_frames):
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        weight = torch.ones(8, net_in.shape[1], 1, 1) / net_in.shape[1]
        out = torch.nn.functional.conv2d(net_in, weight)  # bf16 under CPU autocast
        seen["dtype"] = out.dtype
        return out

    x = torch.randn(2, 8, 4, 4)
    out = Denoiser(bf16_network, autocast_dtype=torch.bfloat16)(x, 1.5, torch.zeros(2, 145, 4, 4), None, 2)
    assert seen == {"autocast": True, "dtype": torch.bfloat16}
    assert out.dtype == torch.float32
    Denoiser(bf16_network)(x, 1.5, torch.zeros(2, 145, 4, 4), None, 2)
    assert seen == {"autocast": False, "dtype": torch.float32}


def test_sigma_shape_is_checked():
    with pytest.raises(InputError, match="one value per frame"):
        Denoiser(GaussianVNetwork())(torch.zeros(2, 8, 2, 2), torch.ones(3), torch.zeros(2, 145, 2, 2), None, 2)


def test_gradient_flows_through_conditioned_denoiser():
    sigma = torch.tensor([2.0])
    x = torch.randn(1, 8, 3, 3, requires_grad=True)
    fn = Denoiser(GaussianVNetwork()).conditioned(torch.zeros(1, 145, 3, 3), torch.zeros(1, 77, 4), 1)

    class Linear(torch.nn.Module):  # differentiable v-network for the toy data, float32 throughout
        def forward(self, net_in, c_noise, context, num_frames):
            s = torch.exp(4 * c_noise).reshape(-1, 1, 1, 1)
            xx = net_in[:, :8] * torch.sqrt(1 + s**2)
            x0 = (S**2 * xx + s**2 * MU) / (S**2 + s**2)
            return ((xx - x0) / s - s * x0) / torch.sqrt(1 + s**2)

    fn.denoiser = Denoiser(Linear())
    fn(x, sigma).sum().backward()
    # dD/dx = S^2 / (S^2 + sigma^2) for the optimal Gaussian denoiser
    torch.testing.assert_close(x.grad, torch.full_like(x, S**2 / (S**2 + 4.0)), atol=1e-5, rtol=1e-5)


def test_euler_edm_through_denoiser_and_network_matches_gaussian():
    """The full production path (Denoiser + v-network + sampler) reproduces the Gaussian's moments.

    Tolerance: 50 Euler steps from sigma 700 shrink the std by a known factor k (closed form below,
    about 0.92 for S = 0.5); 20,160 samples give a standard error of 0.5 % on the std and S/142 on the mean.
    """
    n, h, w = 2, 35, 36  # 20,160 scalar samples
    sigmas = edm_sigmas(50)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(n, 8, h, w, generator=gen)
    denoiser = Denoiser(GaussianVNetwork())
    fn = denoiser.conditioned(torch.zeros(n, 145, h, w), torch.zeros(n, 77, 4), n)
    x0 = sample_euler_edm(fn, MU + noise * math.sqrt(S**2 + sigmas[0].item() ** 2), sigmas)
    k = 1.0
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        k *= 1 + (s_next - s) * s / (S**2 + s**2)
    expected_std = k * math.sqrt(S**2 + sigmas[0].item() ** 2)
    assert abs(x0.mean().item() - MU) < 4 * S / math.sqrt(x0.numel())
    assert x0.std().item() == pytest.approx(expected_std, rel=0.02)
    assert x0.std().item() == pytest.approx(S, rel=0.1)
    assert prior_scale(700.0) == pytest.approx(700.0007, abs=1e-4)
