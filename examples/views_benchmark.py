"""Time SpinMeRoundPipeline.generate at full network size with RANDOM weights (speed only, images meaningless).

    python examples/views_benchmark.py --views 8 --steps 50          # CUDA: the release's 8-view run
    python examples/views_benchmark.py --tiny --steps 2 --device cpu # smoke test of this script

Prints one JSON line per timed run: the multi-view pass, the normals run and the decode, in seconds.
The first run is a warm-up (CUDA kernels, ray maps); timings of the later runs are what to compare.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from smr_core.identity import IdentityEncoder, arc2face_text_config
from smr_core.pipeline import SpinMeRoundPipeline, ViewsConfig
from smr_core.tiny import tiny_text_config, tiny_unet_config, tiny_vae_config
from smr_core.unet import MultiViewUNet, spinmeround_unet_config
from smr_core.vae import LatentVAE, spinmeround_vae_config


def random_pipeline(device: str, tiny: bool, fuse: bool) -> SpinMeRoundPipeline:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**(tiny_unet_config() if tiny else spinmeround_unet_config()))
        vae = AutoencoderKL(**(tiny_vae_config() if tiny else spinmeround_vae_config()))
        text = CLIPTextModel(tiny_text_config() if tiny else arc2face_text_config())
    mv = MultiViewUNet(unet).eval().requires_grad_(False)
    if fuse:
        mv.fuse_qkv_projections()
    return SpinMeRoundPipeline(
        mv,
        LatentVAE(vae).eval().requires_grad_(False),
        IdentityEncoder(text).eval().requires_grad_(False),
        weights_info={"weights_id": "random-benchmark"},
    )


def unet_only(pipe: SpinMeRoundPipeline, frames: int, steps: int, device: str) -> None:
    """ms per UNet call on `frames` frames: under bf16 autocast (the pipeline's way) and with bf16 weights."""
    width = pipe.identity_encoder.hidden_size
    x = torch.randn(frames, 153, 64, 64, device=device)
    c_noise = torch.zeros(frames, device=device)
    context = torch.randn(frames, 77, width, device=device)
    for label in ("autocast_bf16", "bf16_weights"):
        if label == "bf16_weights":
            pipe.unet.to(torch.bfloat16)
        ctx = torch.autocast("cuda", torch.bfloat16, enabled=label == "autocast_bf16")
        with torch.no_grad(), ctx:
            for _ in range(3):
                pipe.unet(x, c_noise, context, frames // 2)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                pipe.unet(x, c_noise, context, frames // 2)
            torch.cuda.synchronize()
        ms = 1000 * (time.perf_counter() - t0) / steps
        print(json.dumps({"unet_only": label, "frames": frames, "ms_per_call": round(ms, 2),
                          "s_per_pass": round(ms * steps / 1000, 3)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--pitch", default="", help="extra rings, e.g. 20,-15")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--normals-steps", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--fuse-qkv", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (script smoke test)")
    parser.add_argument("--unet-only", action="store_true", help="time bare UNet calls of one pass (2F frames)")
    args = parser.parse_args()

    rings = (0.0, *(float(v) for v in args.pitch.split(",") if v))
    config = ViewsConfig(
        num_views=args.views,
        pitch_rings_deg=rings,
        steps=args.steps,
        normals_steps=args.normals_steps or args.steps,
        precision=args.precision,
    )
    pipe = random_pipeline(args.device, args.tiny, args.fuse_qkv)
    if args.unet_only:
        unet_only(pipe, 2 * args.views, args.steps, args.device)
        return
    photo = np.full((512, 512, 3), 255, np.uint8)
    photo[100:420, 150:360] = (190, 150, 130)
    cameras = config.cameras(with_input=True)
    for run in range(args.runs):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = pipe.generate(photo, np.ones(512, np.float32), cameras, config)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        total = time.perf_counter() - t0
        row = {
            "run": run,
            "warmup": run == 0,
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "views": len(cameras),
            "passes": len(result.passes),
            "steps": args.steps,
            "precision": args.precision,
            "fuse_qkv": args.fuse_qkv,
            "total_s": round(total, 3),
            **{k + "_s": round(v, 3) for k, v in result.timings_s.items()},
            "finite": bool(np.isfinite(result.normals).all()),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
