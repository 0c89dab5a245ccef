"""Discretisations, Euler-EDM (with churn), SpinMeRound CFG and the guided normals sampler on analytic problems."""

import math

import pytest
import torch

from smr_core.denoiser import Denoiser
from smr_core.discretization import ddpm_timesteps, edm_sigmas, get_sigmas, legacy_ddpm_sigmas
from smr_core.errors import InputError
from smr_core.guidance import Conditioning, guide_denoised, guide_through_x, masked_l2_grad, masked_l2_loss
from smr_core.pose import MASK_CHANNEL
from smr_core.sampling import (
    churn_gamma,
    prior_scale,
    sample_euler_edm,
    sample_guided_normals,
    sample_spinmeround,
)

MU, S = 1.5, 0.5  # toy data: every element ~ N(MU, S^2)


def gaussian_denoiser(x, sigma):
    """Optimal denoiser for N(MU, S^2) data: D(x; sigma) = (S^2 x + sigma^2 MU) / (S^2 + sigma^2)."""
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1))) if torch.is_tensor(sigma) else sigma
    return (S**2 * x + sigma**2 * MU) / (S**2 + sigma**2)


def euler_std_factor(sigmas, s):
    """Gaussian data make Euler linear: x_N - MU = k (x_0 - MU), k = prod(1 + (s' - s_i) s_i / (s^2 + s_i^2))."""
    k = 1.0
    for a, b in zip(sigmas[:-1], sigmas[1:], strict=True):
        k *= 1 + (b - a) * a / (s**2 + a**2)
    return k


# ---------------------------------------------------------------- discretisations (§5.2, §2.4)


def test_edm_sigmas_worked_values():
    sigmas = edm_sigmas(50)
    assert sigmas.shape == (51,) and sigmas.dtype == torch.float32 and sigmas[-1] == 0
    torch.testing.assert_close(sigmas[:5], torch.tensor([700.0, 620.33, 548.56, 484.03, 426.12]), atol=0.01, rtol=0)
    torch.testing.assert_close(sigmas[-5:-1], torch.tensor([0.01382, 0.00768, 0.00405, 0.002]), atol=1e-5, rtol=0)
    assert torch.equal(get_sigmas("edm"), sigmas)


def test_legacy_ddpm_sigmas_worked_values():
    assert ddpm_timesteps(50)[:3].tolist() == [999, 979, 959] and ddpm_timesteps(50)[-1] == 19
    sigmas = legacy_ddpm_sigmas(50)
    assert sigmas.shape == (51,) and sigmas[-1] == 0
    # §2.4 quotes 4 decimals (0.1344 is 0.13445 truncated)
    torch.testing.assert_close(sigmas[:3], torch.tensor([14.6146, 12.9663, 11.5428]), atol=1e-4, rtol=0)
    torch.testing.assert_close(sigmas[-3:-1], torch.tensor([0.1963, 0.1344]), atol=1e-4, rtol=0)
    # sigma_t = sqrt((1 - abar_t)/abar_t) with beta linear in sqrt-space: check t = 999 independently
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)[999]
    assert sigmas[0].item() == pytest.approx(math.sqrt((1 - abar) / abar), rel=1e-6)
    assert torch.equal(get_sigmas("legacy_ddpm"), sigmas)


def test_discretisation_errors():
    with pytest.raises(InputError):
        edm_sigmas(1)
    with pytest.raises(InputError):
        legacy_ddpm_sigmas(2000)
    with pytest.raises(InputError, match="unknown discretisation"):
        get_sigmas("karras")


# ---------------------------------------------------------------- Euler-EDM on Gaussian data (§5.3)


def test_euler_edm_matches_gaussian_moments():
    """20,000 samples, 50 EDM steps from sigma 700.

    Euler's first-order bias shrinks the std by k (closed form, 0.918 for S = 0.5); the sample std's standard
    error is 1/sqrt(2n) = 0.5 %, so the std must match k*sqrt(S^2 + 700^2) within 2 % (4 standard errors)
    and S within 10 %; the mean's standard error is 0.92 S/sqrt(n) = 0.0032, tolerance 4 of them.
    """
    gen = torch.Generator().manual_seed(0)
    sigmas = edm_sigmas(50)
    n = 20_000
    x = MU + torch.randn(n, 1, generator=gen) * math.sqrt(S**2 + sigmas[0].item() ** 2)
    x0 = sample_euler_edm(gaussian_denoiser, x, sigmas)
    expected_std = euler_std_factor(sigmas.tolist(), S) * math.sqrt(S**2 + sigmas[0].item() ** 2)
    assert abs(x0.mean().item() - MU) < 4 * S / math.sqrt(n)
    assert x0.std().item() == pytest.approx(expected_std, rel=0.02)
    assert x0.std().item() == pytest.approx(S, rel=0.1)
    # first-order convergence: 4x the steps, ~4x smaller std bias
    x0_fine = sample_euler_edm(gaussian_denoiser, x, edm_sigmas(200))
    bias_50 = abs(x0.std().item() / x.std().item() * math.sqrt(S**2 + 700**2) - S)
    bias_200 = abs(x0_fine.std().item() / x.std().item() * math.sqrt(S**2 + 700**2) - S)
    assert bias_200 < bias_50 / 3


def test_sigmas_are_validated():
    with pytest.raises(InputError, match="strictly decreasing"):
        sample_euler_edm(gaussian_denoiser, torch.zeros(2, 1), [1.0, 2.0, 0.0])
    with pytest.raises(InputError, match="at least two"):
        sample_euler_edm(gaussian_denoiser, torch.zeros(2, 1), [1.0])


def test_churn_gamma_formula():
    assert churn_gamma(1.0, 50, 10.0, 0.0, math.inf) == pytest.approx(0.2)
    assert churn_gamma(1.0, 50, 100.0, 0.0, math.inf) == pytest.approx(math.sqrt(2) - 1)
    assert churn_gamma(60.0, 50, 10.0, 0.05, 50.0) == 0.0
    assert churn_gamma(0.01, 50, 10.0, 0.05, 50.0) == 0.0
    assert churn_gamma(50.0, 50, 10.0, 0.05, 50.0) == pytest.approx(0.2)


def test_churn_adds_noise_only_inside_window():
    sigmas = edm_sigmas(20).tolist()
    s_tmin, s_tmax, s_churn, s_noise = 0.05, 50.0, 4.0, 1.003
    steps = []
    x = MU + torch.randn(4096, 1, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    sample_euler_edm(
        gaussian_denoiser,
        x,
        sigmas,
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
        generator=torch.Generator().manual_seed(2),
        callback=lambda info: steps.append({k: v.clone() if torch.is_tensor(v) else v for k, v in info.items()}),
    )
    inside = 0
    for prev, cur in zip(steps[:-1], steps[1:], strict=True):
        # the previous step's output, recomputed from what it reported
        x_out = prev["x"] + (cur["sigma"] - prev["sigma_hat"]) * ((prev["x"] - prev["denoised"]) / prev["sigma_hat"])
        added = cur["x"] - x_out
        if s_tmin <= cur["sigma"] <= s_tmax:
            inside += 1
            assert cur["sigma_hat"] == pytest.approx(cur["sigma"] * 1.2)
            expected = s_noise * math.sqrt(cur["sigma_hat"] ** 2 - cur["sigma"] ** 2)
            assert added.std().item() == pytest.approx(expected, rel=0.1)
        else:
            assert cur["sigma_hat"] == cur["sigma"]
            # float32 rounding only: far below the smallest churn noise (0.66 sigma)
            assert added.abs().max() <= 1e-6 * x_out.abs().max()
    assert 0 < inside < len(steps) - 1


def test_generator_makes_churn_reproducible():
    x = torch.randn(64, 1, generator=torch.Generator().manual_seed(0)) * 80

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return sample_euler_edm(gaussian_denoiser, x, edm_sigmas(10, sigma_max=80.0), s_churn=5.0, generator=g)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


# ---------------------------------------------------------------- SpinMeRound CFG (§5.3, §5.4, §2.6)

H = W = 4
CTX = 6


class ToyMultiViewNet:
    """Mixes frames within each contiguous group of num_frames (a stand-in for 3-D attention), reads the
    camera/mask channels and the context, and records every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, net_in, c_noise, context, num_frames):
        self.calls.append(
            {"ptr": net_in.data_ptr(), "net_in": net_in.clone(), "c_noise": c_noise.clone(), "context": context.clone()}
        )
        self.calls[-1]["num_frames"] = num_frames
        n = net_in.shape[0]
        lat, cam = net_in[:, :8], net_in[:, 8:]
        per_view = lat + 0.2 * cam[:, 40:48] + 0.1 * cam[:, MASK_CHANNEL : MASK_CHANNEL + 1]
        groups = per_view.reshape(n // num_frames, num_frames, 8, H, W)
        mixed = groups.mean(1, keepdim=True).expand_as(groups).reshape(n, 8, H, W)
        out = 0.6 * per_view + 0.3 * mixed
        out = out + 0.2 * context.mean((1, 2)).reshape(n, 1, 1, 1) + 0.05 * c_noise.reshape(n, 1, 1, 1)
        return torch.tanh(out)


def make_problem(num_views, cond_frames, seed=0, batch=1):
    gen = torch.Generator().manual_seed(seed)
    n = num_views * batch
    x = torch.randn(n, 8, H, W, generator=gen)
    cond_images = torch.randn(n, 145, H, W, generator=gen)
    cond_images[:, MASK_CHANNEL] = 1.0
    for b in range(batch):
        for f in cond_frames:
            cond_images[b * num_views + f, MASK_CHANNEL] = 0.0
    cond = Conditioning(cond_images, torch.randn(1, 77, CTX, generator=gen).expand(n, -1, -1))
    uncond_context = torch.randn(1, 77, CTX, generator=gen)
    empty = torch.randn(8, H, W, generator=gen)
    return x, cond, uncond_context, empty


def reference_sampler(network, x, sigmas, cond, uncond_context, empty, scale):
    """The released loop written out naively from §5.3/§5.4: rebuilds everything every step."""
    n = x.shape[0]
    picked = cond.cond_images[:, MASK_CHANNEL, 0, 0] == 0
    gt = x[picked].clone()
    uc_images = cond.cond_images.clone()
    uc_images[picked] = 0
    x = x * math.sqrt(1 + sigmas[0] ** 2)
    for i in range(len(sigmas) - 1):
        sigma = torch.full((2 * n,), sigmas[i])
        x[picked] = gt
        x2 = torch.cat([x, x])
        x2[torch.cat([picked, torch.zeros_like(picked)])] = empty
        c_skip = (1 / (sigma**2 + 1)).reshape(-1, 1, 1, 1)
        c_out = (-sigma / torch.sqrt(sigma**2 + 1)).reshape(-1, 1, 1, 1)
        c_in = (1 / torch.sqrt(sigma**2 + 1)).reshape(-1, 1, 1, 1)
        net_in = torch.cat([c_in * x2, torch.cat([uc_images, cond.cond_images])], 1)
        context = torch.cat([uncond_context.expand(n, -1, -1), cond.context])
        d2 = c_skip * x2 + c_out * network(net_in, 0.25 * torch.log(sigma), context, n)
        d_u, d_c = d2.chunk(2)
        denoised = d_u + scale * (d_c - d_u)
        x = x + (sigmas[i + 1] - sigmas[i]) * (x - denoised) / sigmas[i]
    x[picked] = gt
    return x


@pytest.mark.parametrize("cond_frames", [[], [0], [0, 2, 5]])
def test_cfg_sampler_matches_naive_reference(cond_frames):
    x, cond, uncond_context, empty = make_problem(6, cond_frames)
    sigmas = edm_sigmas(12)
    got = sample_spinmeround(ToyMultiViewNet(), x, sigmas, cond, uncond_context, empty, 3.5)
    want = reference_sampler(ToyMultiViewNet(), x.clone(), sigmas.tolist(), cond, uncond_context, empty, 3.5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(got[cond_frames], x[cond_frames])


def test_uncond_branch_sees_empty_image_zeroed_rows_and_uncond_context():
    views, cond_frames = 5, [0, 3]
    x, cond, uncond_context, empty = make_problem(views, cond_frames, seed=1)
    net = ToyMultiViewNet()
    sample_spinmeround(net, x, edm_sigmas(4), cond, uncond_context, empty, 2.0)
    assert len(net.calls) == 4  # one batched call per step
    targets = [f for f in range(views) if f not in cond_frames]
    for call in net.calls:
        net_in, c_in = call["net_in"], 1 / torch.sqrt(1 + torch.exp(4 * call["c_noise"][0]) ** 2)
        assert net_in.shape == (2 * views, 153, H, W) and call["num_frames"] == views
        assert torch.equal(call["c_noise"], call["c_noise"][:1].expand(2 * views))
        uncond, condb = net_in[:views], net_in[views:]
        torch.testing.assert_close(uncond[cond_frames, :8], c_in * empty.expand(2, -1, -1, -1))
        assert torch.equal(uncond[cond_frames, 8:], torch.zeros(2, 145, H, W))  # rays and mask zeroed
        assert torch.equal(uncond[targets, 8:], cond.cond_images[targets])
        torch.testing.assert_close(condb[cond_frames, :8], c_in * x[cond_frames])  # clean latents, clamped
        assert torch.equal(condb[:, 8:], cond.cond_images)
        assert torch.equal(call["context"][:views], uncond_context.expand(views, -1, -1))
        assert torch.equal(call["context"][views:], cond.context)
    # the [uncond; cond] conditioning is written once: the same network-input storage every step
    assert len({call["ptr"] for call in net.calls}) == 1


def test_conditioning_frames_stay_clamped_every_step():
    x, cond, uncond_context, empty = make_problem(4, [1, 2], seed=2)
    seen = []
    out = sample_spinmeround(
        ToyMultiViewNet(),
        x,
        edm_sigmas(6),
        cond,
        uncond_context,
        empty,
        3.5,
        callback=lambda info: seen.append(info["x"][[1, 2]].clone()),
    )
    assert len(seen) == 6 and all(torch.equal(s, x[[1, 2]]) for s in seen)
    assert torch.equal(out[[1, 2]], x[[1, 2]])


def test_cfg_scale_one_equals_conditional_sampler():
    views, cond_frames = 5, [0]
    x, cond, uncond_context, empty = make_problem(views, cond_frames, seed=3)
    sigmas = edm_sigmas(8)
    got = sample_spinmeround(ToyMultiViewNet(), x, sigmas, cond, uncond_context, empty, 1.0)
    fn = Denoiser(ToyMultiViewNet()).conditioned(cond.cond_images, cond.context, views)
    gt = x[cond_frames].clone()

    def conditional(x_t, sigma):
        x_t[cond_frames] = gt  # the conditional branch alone, with the same clamping
        return fn(x_t, sigma)

    want = sample_euler_edm(conditional, x * prior_scale(sigmas[0].item()), sigmas)
    targets = [f for f in range(views) if f not in cond_frames]
    torch.testing.assert_close(got[targets], want[targets], atol=1e-5, rtol=1e-5)


def test_explicit_conditioning_frames_and_batches():
    views = 4
    x, cond, uncond_context, empty = make_problem(views, [0], seed=4, batch=2)
    sigmas = edm_sigmas(5)
    by_mask = sample_spinmeround(ToyMultiViewNet(), x, sigmas, cond, uncond_context, empty, 3.5, num_frames=views)
    by_index = sample_spinmeround(
        ToyMultiViewNet(), x, sigmas, cond, uncond_context, empty, 3.5, num_frames=views, conditioning_frames=[0, 4]
    )
    flags = torch.tensor([True, False, False, False] * 2)
    by_flags = sample_spinmeround(
        ToyMultiViewNet(), x, sigmas, cond, uncond_context, empty, 3.5, num_frames=views, conditioning_frames=flags
    )
    assert torch.equal(by_mask, by_index) and torch.equal(by_mask, by_flags)
    # B = 2 groups never mix: each item sampled alone gives the same result
    for b in range(2):
        rows = slice(b * views, (b + 1) * views)
        item = Conditioning(cond.cond_images[rows], cond.context[rows])
        alone = sample_spinmeround(ToyMultiViewNet(), x[rows], sigmas, item, uncond_context, empty, 3.5)
        torch.testing.assert_close(by_mask[rows], alone, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"conditioning_frames": [9]}, "distinct indices"),
        ({"num_frames": 3}, "must divide"),
        ({"empty_image": torch.zeros(4, H, W)}, "empty_image"),
    ],
)
def test_cfg_rejects_bad_input(kwargs, match):
    x, cond, uncond_context, empty = make_problem(4, [0])
    args = {"empty_image": empty, **kwargs}
    with pytest.raises(InputError, match=match):
        sample_spinmeround(ToyMultiViewNet(), x, edm_sigmas(3), cond, uncond_context, cfg_scale=3.5, **args)


# ---------------------------------------------------------------- guided normals (§2.4, §5.5)

RGB_MASK = torch.tensor([1.0] * 4 + [0.0] * 4).reshape(1, 8, 1, 1)


def test_masked_l2_gradient_closed_form_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(2, 8, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    z = torch.randn(1, 4, 5, 5, generator=gen, dtype=torch.float64).repeat(1, 2, 1, 1)
    masked_l2_loss(d, z, RGB_MASK.double()).backward()
    torch.testing.assert_close(masked_l2_grad(d.detach(), z, RGB_MASK.double()), d.grad)
    # N counts all elements, masked ones included: 2 * 8 * 5 * 5
    expected = 2 * RGB_MASK.double() * (d.detach() - z) / 400
    torch.testing.assert_close(masked_l2_grad(d.detach(), z, RGB_MASK.double()), expected)


def test_released_guidance_factor_at_64px():
    d = torch.randn(1, 8, 64, 64)
    z = torch.randn(1, 4, 64, 64).repeat(1, 2, 1, 1)
    guided = guide_denoised(d, z, RGB_MASK, 1e5)
    factor = 2 * 1e5 / (8 * 64 * 64)
    assert factor == pytest.approx(6.1035, abs=1e-4)
    torch.testing.assert_close(guided[:, :4], d[:, :4] - factor * (d[:, :4] - z[:, :4]))
    assert torch.equal(guided[:, 4:], d[:, 4:])  # normals are not modified directly


def test_guided_normals_weight_zero_is_unguided():
    noise = torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    sigmas = legacy_ddpm_sigmas(50)
    z = torch.randn(1, 8, 16, 16)
    guided = sample_guided_normals(gaussian_denoiser, noise, sigmas, z, RGB_MASK, weight=0.0)
    plain = sample_euler_edm(gaussian_denoiser, noise * prior_scale(sigmas[0].item()), sigmas)
    assert torch.equal(guided, plain)


def test_guided_normals_pull_rgb_to_target():
    """At the released size (one 8x64x64 latent) and w = 1e5 every step applies D_rgb - 6.10 (D_rgb - z);
    the RGB half ends near z while the normals half (an elementwise denoiser) is exactly the unguided one."""
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(1, 8, 64, 64, generator=gen)
    z = (MU + S * torch.randn(1, 4, 64, 64, generator=gen)).repeat(1, 2, 1, 1)
    sigmas = legacy_ddpm_sigmas(50)
    steps = []
    guided = sample_guided_normals(
        gaussian_denoiser, noise, sigmas, z, RGB_MASK, weight=1e5, callback=lambda i: steps.append(i["denoised"])
    )
    plain = sample_guided_normals(gaussian_denoiser, noise, sigmas, z, RGB_MASK, weight=0.0)
    assert len(steps) == 50
    err_guided = (guided[:, :4] - z[:, :4]).abs().mean().item()
    err_plain = (plain[:, :4] - z[:, :4]).abs().mean().item()
    assert err_guided < 0.05 * err_plain
    assert torch.equal(guided[:, 4:], plain[:, 4:])
    # x-gradient variant: weaker early (dD/dx = S^2/(S^2 + sigma^2) is small at high sigma), still pulls
    via_x = sample_guided_normals(gaussian_denoiser, noise, sigmas, z, RGB_MASK, weight=1e5, gradient_wrt="x")
    assert (via_x[:, :4] - z[:, :4]).abs().mean().item() < 0.2 * err_plain


def test_x_gradient_guidance_closed_form():
    """For the Gaussian denoiser dD/dx = S^2/(S^2 + sigma^2), so grad_x L = that factor times grad_D L."""
    x = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    z = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.8], dtype=torch.float64)
    d = gaussian_denoiser(x, sigma)
    via_x = guide_through_x(gaussian_denoiser, x, sigma, z, RGB_MASK.double(), 50.0)
    expected = d - 50.0 * (S**2 / (S**2 + 0.64)) * masked_l2_grad(d, z, RGB_MASK.double())
    torch.testing.assert_close(via_x, expected)


def test_guided_normals_clamps_conditioning_frames_and_validates():
    x = torch.randn(2, 8, 8, 8)
    out = sample_guided_normals(
        gaussian_denoiser, x, legacy_ddpm_sigmas(10), torch.zeros(1, 8, 8, 8), RGB_MASK, conditioning_frames=[1]
    )
    assert torch.equal(out[1], x[1]) and not torch.equal(out[0], x[0])
    with pytest.raises(InputError, match="broadcast"):
        sample_guided_normals(gaussian_denoiser, x, legacy_ddpm_sigmas(10), torch.zeros(3, 8, 8, 8), RGB_MASK)
    with pytest.raises(InputError, match="gradient_wrt"):
        sample_guided_normals(gaussian_denoiser, x, legacy_ddpm_sigmas(10), x, RGB_MASK, gradient_wrt="v")
