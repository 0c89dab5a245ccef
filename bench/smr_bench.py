"""Benchmark of the SpinMeRound diffusion core on whatever device is present.

Times, in one run and on one device:
  1. one UNet forward of 16 frames (the 8-view CFG batch: [uncond 8; cond 8]);
  2. a full 50-step 8-view CFG sampling (sample_spinmeround, EDM sigmas, scale 3.5; the conditioning view is
     pruned after the last multi-view attention, as in the pipeline, unless --no-prune);
  3. a 50-step guided normals run (sample_guided_normals, DDPM sigmas), fp32 as released and,
     optionally, in low precision, with the relative deviation of the result from fp32;
  4. our multi-view attention (SDPA over F*L tokens) against a naive reference implementation
     (explicit softmax(QK^T/sqrt(d))V) at the shape of the 32x32 level, printed as a ratio.

Weights are random (the maths and the cost do not depend on their values). `--config full` is the
real SpinMeRound network at 512 px (64x64 latents); `--config reduced` (default on CPU) keeps the
real block structure at small widths so the script finishes in a minute on 2 cores.

    python bench/smr_bench.py                       # auto: full on CUDA, reduced on CPU
    python bench/smr_bench.py --dtype fp16 --compile --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smr_core.denoiser import Denoiser  # noqa: E402
from smr_core.discretization import edm_sigmas, legacy_ddpm_sigmas  # noqa: E402
from smr_core.guidance import Conditioning  # noqa: E402
from smr_core.pose import cond_images  # noqa: E402
from smr_core.sampling import sample_guided_normals, sample_spinmeround  # noqa: E402
from smr_core.speed import prepare_unet  # noqa: E402
from smr_core.unet import MultiViewUNet, build_unet, spinmeround_unet_config  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
RESULTS: dict[str, object] = {}
T_START = time.perf_counter()


def checkpoint_json(path: Path | None) -> None:
    """Write what has been measured so far (a long run that is cut off keeps its numbers)."""
    if path is not None:
        path.write_text(json.dumps(RESULTS, indent=2))


def sdpa_backends(F: int, size: int, config: dict, dtype: torch.dtype, device: torch.device,
                  gen: torch.Generator) -> None:
    """Time each SDPA backend at the per-view 64x64 level and the multi-view 32x32 level."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ch = config["block_out_channels"]
    shapes = {"per-view L0": (2 * F, (size) ** 2, ch[0] // 8), "multi-view L1": (2, F * (size // 2) ** 2, ch[1] // 8)}
    for level, (groups, tokens, d) in shapes.items():
        q, k, v = (torch.randn(groups, 8, tokens, d, generator=gen).to(device, dtype) for _ in range(3))
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    timed(f"SDPA {backend.name.lower():<19s} {level} {groups}x8x{tokens}x{d}",
                          lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v),
                          device, reps=3)
            except RuntimeError as exc:
                print(f"  SDPA {backend.name.lower()} {level}: unavailable ({str(exc).splitlines()[0][:80]})")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(label: str, fn: Callable[[], object], device: torch.device, reps: int = 2, warmup: int = 1) -> float:
    """Best wall time of `reps` runs after `warmup` runs, printed and recorded in seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"  {label:<58s} {best * 1000:10.1f} ms   (runs: {', '.join(f'{t * 1000:.1f}' for t in times)})", flush=True)
    RESULTS[label] = best
    return best


def naive_multiview_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SPINMEROUND.md §3.4 written out: softmax(Q K^T / sqrt(d)) V over all F*L tokens, matrix materialised."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    weights = torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1)
    return weights @ v


def build_network(config: dict, dtype: torch.dtype, device: torch.device, compile_mode: str | None = None
                  ) -> MultiViewUNet:
    """A random-weight UNet prepared exactly as the pipeline's fast path prepares it (smr_core.speed)."""
    torch.manual_seed(0)
    with torch.device(device):
        net = MultiViewUNet(build_unet(config)).eval()
    return prepare_unet(net, dtype=dtype, compile_mode=compile_mode, copy_weights=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--config", choices=["auto", "full", "reduced"], default="auto")
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="network weights (default fp16 on CUDA)")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--latent-size", type=int, default=None, help="latent side (default 64 = 512 px; 16 on CPU)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    p.add_argument("--no-normals", action="store_true")
    p.add_argument("--no-prune", action="store_true", help="finish every frame (as the release; for comparisons)")
    p.add_argument("--cfg-graphs", action="store_true", help="also time the multi-view run with CUDA graphs")
    p.add_argument("--budget-s", type=float, default=float("inf"), help="skip further compiles after this many s")
    p.add_argument("--json", type=Path, help="write the measured numbers here")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    full = args.config == "full" or (args.config == "auto" and device.type == "cuda")
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if full:
        config = spinmeround_unet_config()
    else:
        from smr_core.tiny import tiny_unet_config

        config = tiny_unet_config()
    size = args.latent_size or (64 if full else 16)
    ctx_dim = config["cross_attention_dim"]
    F = args.views
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, config {'full 512 px' if full else 'reduced'}, "
          f"weights {str(dtype).removeprefix('torch.')}, {size * 8} px, {F} views, {args.steps} steps", flush=True)
    RESULTS.update(device=name, torch=torch.__version__, config="full" if full else "reduced",
                   dtype=str(dtype), views=F, steps=args.steps)

    gen = torch.Generator("cpu").manual_seed(0)
    angles = [(0.0, k * 360.0 / F) for k in range(F)]
    ci = cond_images(angles, [False] + [True] * (F - 1), size=size).to(device)
    context = torch.randn(1, 77, ctx_dim, generator=gen).to(device)
    uncond = torch.randn(1, 77, ctx_dim, generator=gen).to(device)
    x = torch.randn(1, 8, size, size, generator=gen).repeat(F, 1, 1, 1).to(device)  # same noise per view (§7.1)
    x[0] = torch.randn(8, size, size, generator=gen).to(device)  # the clean input latent
    empty = torch.randn(8, size, size, generator=gen).to(device)
    sigmas = edm_sigmas(args.steps)
    cond = Conditioning(ci, context.expand(F, -1, -1))
    prune = not args.no_prune
    RESULTS["prune_frames"] = prune

    with torch.inference_mode():
        net = build_network(config, dtype, device)
        print(f"  UNet parameters {sum(p.numel() for p in net.parameters()):,}", flush=True)
        net_in = torch.randn(2 * F, 153, size, size, generator=gen).to(device)
        c_noise = torch.full((2 * F,), 0.25 * math.log(80.0), device=device)
        ctx2 = context.expand(2 * F, -1, -1)
        timed(f"UNet forward, {2 * F} frames (eager)", lambda: net(net_in, c_noise, ctx2, F), device, reps=3)
        den = Denoiser(net)

        def multiview() -> torch.Tensor:
            return sample_spinmeround(den, x, sigmas, cond, uncond, empty, 3.5, prune_frames=prune)

        timed(f"{args.steps}-step {F}-view CFG sampling (eager)", multiview, device, reps=2)

        # Multi-view attention vs a naive reference, at the 32x32 level (640 ch, 8 heads of 80).
        L, heads, d = (size // 2) ** 2, 8, config["block_out_channels"][1] // 8
        q, k, v = (torch.randn(2, heads, F * L, d, generator=gen).to(device, dtype) for _ in range(3))
        ours = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        ref = naive_multiview_attention(q.float(), k.float(), v.float())
        err = ((ours.float() - ref).norm() / ref.norm()).item()
        t_ours = timed(f"multi-view attention SDPA, 2x{heads}x{F * L}x{d}", lambda q=q, k=k, v=v: torch.nn.functional
                       .scaled_dot_product_attention(q, k, v), device, reps=3)
        t_naive = timed(f"multi-view attention naive,  2x{heads}x{F * L}x{d}",
                        lambda q=q, k=k, v=v: naive_multiview_attention(q, k, v), device, reps=3)
        print(f"  => ours is {t_naive / t_ours:.2f}x faster than the naive reference (rel. diff {err:.1e})", flush=True)
        RESULTS["attention_speedup_vs_naive"] = t_naive / t_ours
        del q, k, v, ours, ref

    if not args.no_normals:
        ci1 = cond_images([(0.0, 0.0)], [True], size=size).to(device)
        noise = torch.randn(1, 8, size, size, generator=gen).to(device)
        z = torch.randn(1, 4, size, size, generator=gen).repeat(1, 2, 1, 1).to(device)
        mask = torch.tensor([1.0] * 4 + [0.0] * 4, device=device).reshape(1, 8, 1, 1)
        nsig = legacy_ddpm_sigmas(args.steps)
        with torch.inference_mode():
            net32 = build_network(config, torch.float32, device)
            fn32 = Denoiser(net32).conditioned(ci1, context, 1)
            ref_n = sample_guided_normals(fn32, noise, nsig, z, mask)
            timed(f"{args.steps}-step normals, fp32 (released)", lambda: sample_guided_normals(fn32, noise, nsig, z,
                                                                                             mask), device, reps=2)
            if dtype != torch.float32:
                fn_lp = Denoiser(net).conditioned(ci1, context, 1)
                out = sample_guided_normals(fn_lp, noise, nsig, z, mask)
                rel = ((out[:, 4:] - ref_n[:, 4:]).norm() / ref_n[:, 4:].norm()).item()
                print(f"  normals latents in {str(dtype).removeprefix('torch.')} vs fp32: rel. diff {rel:.2e}")
                RESULTS["normals_lowprec_rel_diff"] = rel
                timed(f"{args.steps}-step normals, {str(dtype).removeprefix('torch.')} weights",
                      lambda: sample_guided_normals(fn_lp, noise, nsig, z, mask), device, reps=2)

    if device.type == "cuda":
        sdpa_backends(F, size, config, dtype, device, gen)
    checkpoint_json(args.json)

    if args.compile:
        modes = [None] + (["reduce-overhead"] if device.type == "cuda" and args.cfg_graphs else [])
        for mode in modes:
            if time.perf_counter() - T_START > args.budget_s:
                print(f"  (skipping compile mode={mode}: time budget of {args.budget_s:.0f} s used)", flush=True)
                break
            with torch.inference_mode():
                torch._dynamo.reset()
                cnet = build_network(config, dtype, device, compile_mode=mode or "default")
                cden = Denoiser(cnet)
                t0 = time.perf_counter()
                for _ in range(3 if mode else 1):
                    sample_spinmeround(cden, x, edm_sigmas(2), cond, uncond, empty, 3.5, prune_frames=prune)
                sync(device)
                tag = f"compiled{'/' + mode if mode else ''}"
                print(f"  torch.compile warm-up ({tag}, multi-view) {time.perf_counter() - t0:.1f} s", flush=True)
                timed(f"UNet forward, {2 * F} frames ({tag})", lambda net=cnet: net(net_in, c_noise, ctx2, F), device,
                      reps=3)
                timed(f"{args.steps}-step {F}-view CFG sampling ({tag})",
                      lambda den=cden: sample_spinmeround(den, x, sigmas, cond, uncond, empty, 3.5,
                                                          prune_frames=prune), device, reps=2,
                      warmup=0)
                del cnet, cden
            checkpoint_json(args.json)
        if not args.no_normals and time.perf_counter() - T_START < args.budget_s:
            with torch.inference_mode():
                torch._dynamo.reset()
                mode = "reduce-overhead" if device.type == "cuda" else "default"  # CUDA graphs for 1 frame
                gnet = build_network(config, dtype, device, compile_mode=mode)
                gfn = Denoiser(gnet).conditioned(ci1, context, 1)
                t0 = time.perf_counter()
                out = sample_guided_normals(gfn, noise, nsig, z, mask)
                sync(device)
                print(f"  torch.compile warm-up (normals, mode={mode}) {time.perf_counter() - t0:.1f} s", flush=True)
                rel = ((out[:, 4:] - ref_n[:, 4:]).norm() / ref_n[:, 4:].norm()).item()
                print(f"  compiled normals vs fp32 eager: rel. diff {rel:.2e}", flush=True)
                RESULTS["normals_compiled_rel_diff"] = rel
                timed(f"{args.steps}-step normals, compiled {str(dtype).removeprefix('torch.')}",
                      lambda: sample_guided_normals(gfn, noise, nsig, z, mask), device, reps=2, warmup=1)

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  peak GPU memory {peak:.1f} GiB", flush=True)
        RESULTS["peak_gib"] = peak
    checkpoint_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
