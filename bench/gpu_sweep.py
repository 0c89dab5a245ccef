"""Which fast-path settings bring the 8-view, 50-step CFG run under issue 3's 1.6 s? One run, one device.

The last measured fast path (H200: bf16 weights, fused q/k/v, channels_last, torch.compile default) took
1.88 s. This script times, in one process and against that same baseline, the settings that could close
the gap, each added to the previous best one:

  eager       attention backends (auto, cudnn, flash, efficient): one 16-frame forward each, no compile;
  compiled    the baseline above (torch.compile default, attention "auto", no frame pruning);
  +prune      conditioning frames skip the 64x64 up block and conv_out (exact; smr_core.unet);
  +tuned      smr_core.speed.TUNED_INDUCTOR_OPTIONS (1x1 convs as matmuls, coordinate-descent tuning, ...);
  +graphs     CUDA graphs (the "reduce-overhead" mode) on the 16-frame pass;
  +autotune   max-autotune GEMM/conv templates (the longest compile);
  +freezing   inductor freezing (weights become constants: constant folding, layout choices);
  +backend    the fastest attention backend of the eager sweep, if it is not torch's own choice.

The order is by expected gain: a variant starts only while --budget-s lasts. Each one is checked against an
fp32 eager forward of the same random weights (relative difference of the 16-frame output, printed) and
fails soft: an error is recorded and the sweep goes on. Results are written to --json after every variant,
so a run cut off by a time limit keeps what it measured.

    python bench/gpu_sweep.py --json out.json                   # CUDA, full 512 px network
    python bench/gpu_sweep.py --device cpu --config reduced --steps 2 --variants eager compiled +prune
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smr_bench import RESULTS, checkpoint_json, sync, timed  # noqa: E402

from smr_core.attention import ATTENTION_BACKENDS  # noqa: E402
from smr_core.denoiser import Denoiser  # noqa: E402
from smr_core.discretization import edm_sigmas  # noqa: E402
from smr_core.guidance import Conditioning  # noqa: E402
from smr_core.pose import cond_images  # noqa: E402
from smr_core.sampling import sample_spinmeround  # noqa: E402
from smr_core.speed import TUNED_INDUCTOR_OPTIONS, prepare_unet  # noqa: E402
from smr_core.unet import MultiViewUNet, build_unet, spinmeround_unet_config  # noqa: E402

STEPS = ("eager", "compiled", "+prune", "+tuned", "+graphs", "+autotune", "+freezing", "+backend")


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: everything prepare_unet and the sampler are given."""

    mode: str = "default"
    prune: bool = False
    backend: str = "auto"
    tuned: bool = False
    freezing: bool = False

    def inductor_options(self) -> dict[str, object] | None:
        options = dict(TUNED_INDUCTOR_OPTIONS) if self.tuned else {}
        if self.freezing:
            options["freezing"] = True
        return options or None


def random_network(config: dict, device: torch.device) -> MultiViewUNet:
    torch.manual_seed(0)
    with torch.device(device):
        return MultiViewUNet(build_unet(config)).eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--config", choices=["full", "reduced"], default="full")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--variants", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--budget-s", type=float, default=420.0, help="start no new compiled variant after this many s")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    warnings.filterwarnings("ignore", message=".*functools.lru_cache")  # diffusers' version checks, once per block
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.config == "full":
        config, size = spinmeround_unet_config(), 64
    else:
        from smr_core.tiny import tiny_unet_config

        config, size = tiny_unet_config(), 16
    F, ctx_dim = args.views, config["cross_attention_dim"]
    name = torch.cuda.get_device_name(device) if on_cuda else "cpu"
    print(f"device {name}, torch {torch.__version__}, {args.config} config, {size * 8} px, {F} views, "
          f"{args.steps} steps, weights {args.dtype}", flush=True)
    RESULTS.update(device=name, torch=torch.__version__, config=args.config, views=F, steps=args.steps,
                   dtype=args.dtype, variants={})

    gen = torch.Generator("cpu").manual_seed(0)
    ci = cond_images([(0.0, k * 360.0 / F) for k in range(F)], [False] + [True] * (F - 1), size=size).to(device)
    context = torch.randn(1, 77, ctx_dim, generator=gen).to(device)
    uncond = torch.randn(1, 77, ctx_dim, generator=gen).to(device)
    x = torch.randn(1, 8, size, size, generator=gen).repeat(F, 1, 1, 1).to(device)  # one noise for all views (§7.1)
    x[0] = torch.randn(8, size, size, generator=gen).to(device)  # the clean input latent
    empty = torch.randn(8, size, size, generator=gen).to(device)
    cond = Conditioning(ci, context.expand(F, -1, -1))
    sigmas = edm_sigmas(args.steps)
    net_in = torch.randn(2 * F, 153, size, size, generator=gen).to(device)
    c_noise = torch.full((2 * F,), 0.25 * math.log(80.0), device=device)
    ctx2 = context.expand(2 * F, -1, -1)
    keep = torch.tensor([f for f in range(2 * F) if f % F != 0], device=device)  # what the pruned guider keeps

    with torch.inference_mode():
        ref = random_network(config, device)(net_in, c_noise, ctx2, F)  # fp32 eager: the accuracy reference
    gc.collect()

    def record(label: str, values: dict[str, object]) -> None:
        RESULTS["variants"][label] = values  # type: ignore[index]
        checkpoint_json(args.json)

    def forward_fn(net: MultiViewUNet, setting: Setting) -> Callable[[], torch.Tensor]:
        if setting.prune:
            return lambda: net(net_in, c_noise, ctx2, F, keep_frames=keep)
        return lambda: net(net_in, c_noise, ctx2, F)

    def rel_diff(out: torch.Tensor, setting: Setting) -> float:
        want = ref[keep] if setting.prune else ref
        return ((out.float() - want).norm() / want.norm()).item()

    best_backend = "auto"
    if "eager" in args.variants:
        with torch.inference_mode():
            net = prepare_unet(random_network(config, device), dtype=dtype, copy_weights=False)
            times = {}
            for backend in ATTENTION_BACKENDS:
                if backend == "math":
                    continue  # materialises the 2 x 8 x 8192^2 attention matrix: slow and huge at 512 px
                try:
                    net.set_attention_backend(backend)  # type: ignore[arg-type]
                    fn = forward_fn(net, Setting())
                    times[backend] = timed(f"eager forward, {2 * F} frames, attention {backend}", fn, device, reps=3)
                    record(f"eager/{backend}", {"forward_s": times[backend], "rel_diff": rel_diff(fn(), Setting())})
                except RuntimeError as exc:
                    print(f"  attention {backend}: failed ({str(exc).splitlines()[0][:100]})", flush=True)
            if times:
                best_backend = min(times, key=times.__getitem__)
            del net
        print(f"  fastest eager attention backend: {best_backend}", flush=True)

    plan = {
        "compiled": lambda s: s,
        "+prune": lambda s: replace(s, prune=True),
        "+backend": lambda s: replace(s, backend=best_backend),
        "+tuned": lambda s: replace(s, tuned=True),
        "+freezing": lambda s: replace(s, freezing=True),
        "+graphs": lambda s: replace(s, mode="reduce-overhead"),
        "+autotune": lambda s: replace(s, mode="max-autotune" if s.mode == "reduce-overhead" else
                                       "max-autotune-no-cudagraphs"),
    }
    best: tuple[float, Setting] | None = None
    current = Setting()
    for step in STEPS[1:]:
        if step not in args.variants:
            continue
        candidate = plan[step](current)
        if step == "+backend" and best_backend == "auto":
            print("  +backend: torch's own choice was fastest; nothing to add", flush=True)
            continue
        if time.perf_counter() - t_start > args.budget_s:
            print(f"  {step}: skipped, the {args.budget_s:.0f} s budget is spent", flush=True)
            continue
        label = f"{step} {candidate}"
        try:
            with torch.inference_mode():
                torch._dynamo.reset()
                net = prepare_unet(
                    random_network(config, device), dtype=dtype, compile_mode=candidate.mode,  # type: ignore[arg-type]
                    attention_backend=candidate.backend,  # type: ignore[arg-type]
                    inductor_options=candidate.inductor_options(), copy_weights=False,
                )
                den = Denoiser(net)

                def run(steps: torch.Tensor, den: Denoiser = den, prune: bool = candidate.prune) -> torch.Tensor:
                    return sample_spinmeround(den, x, steps, cond, uncond, empty, 3.5, prune_frames=prune)

                t0 = time.perf_counter()
                for _ in range(3 if "graphs" in step or candidate.mode != "default" else 1):
                    run(edm_sigmas(2))
                fn = forward_fn(net, candidate)
                fn()
                sync(device)
                warmup = time.perf_counter() - t0
                print(f"  {step}: compiled and warmed up in {warmup:.1f} s", flush=True)
                t_fwd = timed(f"{step}: forward", fn, device, reps=3)
                diff = rel_diff(fn(), candidate)
                t_run = timed(f"{step}: {args.steps}-step {F}-view CFG sampling", lambda: run(sigmas), device,
                              reps=2, warmup=0)
            print(f"  {step}: relative difference from fp32 eager {diff:.2e}", flush=True)
            record(label, {"forward_s": t_fwd, "sampling_s": t_run, "rel_diff": diff, "warmup_s": warmup})
            if best is None or t_run < best[0]:
                best = (t_run, candidate)
            if t_run <= best[0]:
                current = candidate  # keep what helped; drop what did not
        except Exception as exc:  # noqa: BLE001 - a failed variant must not cost the rest of the sweep
            print(f"  {step}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
            record(label, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        finally:
            net = den = None  # type: ignore[assignment]
            gc.collect()
            if on_cuda:
                torch.cuda.empty_cache()

    if best is not None:
        print(f"BEST: {best[0]:.3f} s for {args.steps}-step {F}-view CFG sampling with {best[1]}", flush=True)
        fast_path = (f"FastPath(multiview_mode={best[1].mode!r}, inductor_options={best[1].inductor_options() or {}!r})"
                     f"; attention_backend={best[1].backend!r}; prune_frames={best[1].prune}")
        print(f"  as the pipeline's settings (smr_core/speed.py, ViewsConfig): {fast_path}", flush=True)
        RESULTS["best"] = {"sampling_s": best[0], "setting": str(best[1]), "fast_path": fast_path}
    if on_cuda:
        RESULTS["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  peak GPU memory {RESULTS['peak_gib']:.1f} GiB", flush=True)
    checkpoint_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
