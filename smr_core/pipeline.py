"""SpinMeRound inference: the model pipeline that samples posed RGB and normal views from the networks.

Input: the aligned 512 px crop (or none: identity alone) and the ArcFace identity; output: a ViewsResult
in memory. Writing it as a ViewSet folder is smr_core.viewset_out; aligning a photo is the `align` package.

SPINMEROUND.md §2.4-§2.7. The run, in order:

1. normals retrieval for the input view (§2.4): a single-view fp32 run on the DDPM sigmas, the RGB
   half pulled to the encoded photo by masked-L2 guidance; the normals half becomes the input's normal map;
2. multi-view passes (§2.5, §2.6, plan in smr_core.views): Euler-EDM with CFG 3.5 over <= 16 frames,
   conditioning views clamped to their clean latents, one initial noise tensor shared by every target
   (the release's choice, §7.1) unless same_noise is off; the UNet runs under bf16/fp16 autocast on
   CUDA, the VAE always in fp32;
3. one batched VAE decode of every generated view (masks and the ViewSet: smr_core.viewset_out).

Speed: everything stays on the device; the identity context, the grey-image latent and every camera's
ray map are computed once per run; the VAE encodes the photo, its normals and the grey image in one
batch and decodes all views in batches. Noise is drawn from a CPU generator (a seed gives the same
run on any device).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from smr_core.attention_backends import AttentionBackend
from smr_core.cameras import (
    IMAGE_SIZE,
    ViewCamera,
    default_cameras,
    model_angles,
)
from smr_core.errors import InputError
from smr_core.views import MAX_FRAMES, WHITE_THRESHOLD, ViewPass, plan_passes

if TYPE_CHECKING:
    from smr_core.speed import FastPath

Progress = Callable[[str, int, int], None]

LATENT_SIZE = 64  # the pose maps are hard-wired to 64x64 latents, i.e. 512 px images (§2.2.6)


class ViewsConfig(BaseModel):
    """Everything that shapes one multi-view generation; the defaults are the release's where it has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_views: int = Field(
        8, ge=1, le=64, description="Views per ring, evenly spaced in yaw; the input is one of the eye-level ring's."
    )
    pitch_rings_deg: tuple[float, ...] = Field(
        (0.0, 20.0, -15.0),
        min_length=1,
        max_length=8,
        description="Elevation of each ring in degrees (0 = eye level, > 0 = from above); the defaults add the "
        "crown and the chin. Views beyond one 16-frame pass are generated in further passes.",
    )
    seed: int = Field(42, ge=0, le=2**63 - 1, description="Seed of every random draw (the release fixes 42).")
    cfg_scale: float = Field(3.5, ge=1.0, le=20.0, description="Classifier-free guidance scale (release 3.5).")
    steps: int = Field(50, ge=2, le=1000, description="Euler-EDM steps of each multi-view pass (release 50).")
    normals_steps: int = Field(50, ge=1, le=1000, description="Steps of the normals retrieval run (release 50).")
    normals_guidance: float = Field(1e5, ge=0.0, description="Masked-L2 guidance weight of the normals run (1e5).")
    same_noise: bool = Field(
        True, description="One initial noise tensor for every target view (release); False: independent noise."
    )
    encode: Literal["sample", "mean"] = Field(
        "sample", description="VAE posterior sample (release) or its mean (deterministic conditioning)."
    )
    max_frames: int = Field(MAX_FRAMES, ge=2, le=MAX_FRAMES, description="Frames per joint pass (<= 16, as trained).")
    camera_encoding: Literal["angles", "rays"] = Field(
        "angles",
        description="How a camera is told to the model: (elevation, azimuth) as angles (default) or the exact ray "
        "map of the camera; smr_core.cameras explains both readings (unverifiable without weights).",
    )
    normal_frame: Literal["camera", "world"] = Field("camera", description="Declared frame of the generated normals.")
    condition_on_photo: bool = Field(
        True, description="False: identity-only generation (the photo gives only its ArcFace embedding)."
    )
    mask_threshold: int = Field(WHITE_THRESHOLD, ge=1, le=255, description="Background = all channels >= this.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast dtype of the multi-view UNet: auto = fp16 on CUDA (as the release), fp32 on CPU. The "
        "normals run and the VAE are fp32 (fast=True: bf16, or fp16 when chosen here).",
    )
    decode_batch: int = Field(8, ge=1, le=64, description="Latents decoded per VAE call (memory vs speed).")
    attention_backend: AttentionBackend = Field(
        "auto",
        description="SDPA kernel tried first by every attention layer (smr_core.attention): auto lets torch choose; "
        "the others stay as fall-backs, so any choice runs everywhere. Same maths, different speed on CUDA.",
    )
    fast: bool = Field(
        False,
        description="CUDA fast path (smr_core.speed): a bf16 (or fp16 with precision='fp16') copy of the UNet with "
        "fused q/k/v and torch.compile for the multi-view passes, a CUDA-graph copy for the normals run, and cuDNN "
        "autotuning during the run (bf16; "
        "measured 2.6e-3 relative deviation from fp32 on random weights). The first run compiles (~40-60 s).",
    )

    @field_validator("pitch_rings_deg")
    @classmethod
    def _rings(cls, rings: tuple[float, ...]) -> tuple[float, ...]:
        for e in rings:
            if not (math.isfinite(e) and -90.0 < e < 90.0):
                raise ValueError(f"ring elevation {e} must lie strictly between -90 and 90 degrees")
        if len(set(rings)) != len(rings):
            raise ValueError(f"ring elevations must be distinct, got {list(rings)}")
        return tuple(float(e) for e in rings)

    def cameras(self, with_input: bool) -> list[ViewCamera]:
        """The requested cameras (input first when there is one)."""
        return default_cameras(self.num_views, self.pitch_rings_deg, with_input=with_input)


@dataclass
class ViewsResult:
    """What one generation produced, per camera (index = camera index)."""

    cameras: list[ViewCamera]
    rgb: np.ndarray  # (V, 512, 512, 3) uint8; the input's entry is the photo itself
    normals: np.ndarray  # (V, 512, 512, 3) float32 in [-1, 1] as decoded (not yet unit length)
    latents: Any  # (V, 8, 64, 64) float32 CPU tensor: RGB latent (0-3) + normals latent (4-7)
    passes: list[ViewPass]
    model_angles: list[tuple[float, float, float]]
    timings_s: dict[str, float] = field(default_factory=dict)


class ProgressCounter:
    """Turns per-stage steps into one (stage, done, total) stream for a single progress bar."""

    def __init__(self, total: int, progress: Progress | None, offset: int = 0, grand_total: int | None = None) -> None:
        self.done = offset
        self.total = grand_total if grand_total is not None else total
        self.progress = progress

    def __call__(self, stage: str, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(stage, self.done, self.total)


def _sync(device: Any) -> None:
    """Wait for queued CUDA work, so that stage timings measure the work and not its launch."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _autocast_dtype(precision: str, device: Any) -> Any:
    import torch

    if precision == "fp32" or (precision == "auto" and torch.device(device).type != "cuda"):
        return None
    # auto = fp16 autocast, as the release (§2.7): per UNet call it stays within 1.5e-3 (relative) of fp32 on
    # an H100, bf16 within 1.3e-2
    return {"auto": torch.float16, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextmanager
def conv_autotuning(fast: bool, device: Any) -> Iterator[None]:
    """cuDNN autotuning (benchmark mode) for the fast path on CUDA, for the run only; a no-op otherwise.

    Every tensor shape of a run is fixed, so letting cuDNN time its convolution algorithms once pays off
    (bench/smr_bench.py and bench/gpu_sweep.py time with it on, so the fast path must run with it too).
    The exact path keeps torch's defaults: cuDNN's heuristic choice is the same from run to run. Only the
    benchmark flag is touched, and it is restored afterwards.
    """
    import torch

    if not fast or torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class SpinMeRoundPipeline:
    """The two SpinMeRound runs around one set of networks (diffusers-style: from_pretrained, .to, seedable).

    unet: (N, 153, H, W), c_noise (N,), context (N, 77, D), num_frames -> (N, 8, H, W) (smr_core.unet.MultiViewUNet
    or any stand-in with that call); vae: smr_core.vae.LatentVAE; identity_encoder: smr_core.identity.IdentityEncoder.
    """

    def __init__(
        self,
        unet: Any,
        vae: Any,
        identity_encoder: Any,
        *,
        weights_info: dict[str, Any] | None = None,
        ray_cache: dict[tuple[float, float, float], Any] | None = None,
        fast_path: FastPath | None = None,
    ) -> None:
        from smr_core.speed import FastPath  # torch: imported on use

        self.unet = unet
        self.fast_path = fast_path if fast_path is not None else FastPath()
        self.vae = vae
        self.identity_encoder = identity_encoder
        self.weights_info = dict(weights_info or {"weights_id": "unknown"})
        # model angles -> ray map (144, 64, 64) on the CPU: ~0.1 s each to build, reused by every later run
        self.ray_cache = {} if ray_cache is None else ray_cache
        self._fast_unets: dict[tuple[str, str, str], Any] = {}  # (role, dtype, attention) -> prepared copy

    def fast_unet(self, role: Literal["multiview", "normals"], precision: str, attention_backend: str = "auto") -> Any:
        """The prepared low-precision copy of the UNet for `role`, built (and compiled) once per pipeline.

        How each role is compiled on CUDA comes from self.fast_path (smr_core.speed.FastPath: by default
        torch.compile's default mode for the multi-view passes, CUDA graphs for the launch-bound 1-frame
        normals run). On CPU the copies are eager.
        """
        import torch

        from smr_core.speed import prepare_unet

        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        key = (role, str(dtype), attention_backend)
        if key not in self._fast_unets:
            on_cuda = torch.device(self.device).type == "cuda"
            mode = self.fast_path.compile_mode(role) if on_cuda else None
            self._fast_unets[key] = prepare_unet(
                self.unet, dtype=dtype, compile_mode=mode, attention_backend=attention_backend,  # type: ignore[arg-type]
                inductor_options=(dict(self.fast_path.inductor_options) or None) if on_cuda else None,
            )
        return self._fast_unets[key]

    def ray_maps(self, angles: Sequence[tuple[float, float, float]]) -> Any:
        """(V, 144, 64, 64) ray maps on the device, built once per distinct camera and kept for later runs."""
        import torch

        from smr_core.pose import pose_map

        for a in angles:
            if a not in self.ray_cache:
                self.ray_cache[a] = pose_map(*a)
        return torch.stack([self.ray_cache[a] for a in angles]).to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        weights_dir: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        use_ema: bool | None = None,
    ) -> SpinMeRoundPipeline:
        """Load the official release (or a converted folder) strictly, fp32, onto `device` (default: CUDA if any)."""
        import torch

        from smr_core.checkpoint import file_sha256, load_spinmeround

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        models = load_spinmeround(weights_dir, device=device, dtype=torch.float32, use_ema=use_ema)
        info: dict[str, Any] = {
            "weights_id": models.weights_id,
            "use_ema": models.use_ema,
            "layout": models.layout.kind,
        }
        if models.layout.checkpoint is not None:
            info["checkpoint"] = models.layout.checkpoint.name
            info["checkpoint_sha256"] = file_sha256(models.layout.checkpoint)  # memoised by the loader
        return cls(models.unet, models.vae, models.identity_encoder, weights_info=info)

    @property
    def device(self) -> Any:
        return self.vae.device

    def to(self, device: Any) -> SpinMeRoundPipeline:
        for module in (self.unet, self.vae, self.identity_encoder):
            if hasattr(module, "to"):
                module.to(device)
        return self

    # ------------------------------------------------------------------ pieces

    def encode_identity(self, id_emb: Any) -> tuple[Any, Any]:
        """(context, unconditional context), each (1, 77, D): Arc2Face on the ArcFace vector and on ""."""
        import torch

        emb = torch.as_tensor(np.asarray(id_emb, np.float32)).reshape(1, -1).to(self.device)
        return self.identity_encoder(emb), self.identity_encoder.unconditional(1)

    def retrieve_normals(
        self,
        image: Any,
        context: Any,
        *,
        steps: int = 50,
        weight: float = 1e5,
        sample: bool = True,
        generator: Any = None,
        step: Callable[[], None] | None = None,
        network: Any = None,
    ) -> Any:
        """§2.4: the input view's normal map (1, 3, 512, 512) in [-1, 1] from image (1, 3, 512, 512) in [-1, 1].

        fp32 throughout (no autocast) with the default network, DDPM sigmas, D_rgb pulled towards the encoded
        photo; `network` replaces the UNet (the fast path's bf16 copy).
        """
        import torch

        from smr_core.denoiser import Denoiser
        from smr_core.discretization import legacy_ddpm_sigmas
        from smr_core.sampling import sample_guided_normals

        z = self.vae.encode(image, sample=sample, generator=generator)
        noise = torch.randn((1, 8, LATENT_SIZE, LATENT_SIZE), generator=generator).to(self.device)
        ones = torch.ones(1, 1, LATENT_SIZE, LATENT_SIZE, device=self.device)
        rays = torch.cat([self.ray_maps([(0.0, 0.0, 0.0)]), ones], dim=1)  # the frontal camera, a target (§2.4)
        denoiser_fn = Denoiser(network if network is not None else self.unet).conditioned(rays, context, 1)
        mask = torch.tensor([1.0] * 4 + [0.0] * 4, device=self.device).view(1, 8, 1, 1)
        x0 = sample_guided_normals(
            denoiser_fn,
            noise,
            legacy_ddpm_sigmas(steps),
            z.repeat(1, 2, 1, 1),
            mask,
            weight=weight,
            callback=(lambda _: step()) if step is not None else None,
        )
        return self.vae.decode(x0[:, 4:])

    # ------------------------------------------------------------------ the whole run

    def work_units(self, cameras: Sequence[ViewCamera], config: ViewsConfig, with_photo: bool) -> int:
        """Progress units of generate(): network steps plus VAE decode batches."""
        n_passes = len(plan_passes(cameras, config.max_frames))
        targets = sum(not c.is_input for c in cameras)
        decodes = math.ceil(2 * targets / config.decode_batch)
        return (config.normals_steps if with_photo else 0) + config.steps * n_passes + decodes

    def generate(
        self,
        image: np.ndarray | None,
        id_emb: np.ndarray,
        cameras: Sequence[ViewCamera],
        config: ViewsConfig,
        *,
        progress: Progress | None = None,
        progress_offset: int = 0,
        progress_total: int | None = None,
    ) -> ViewsResult:
        """Generate every camera's view. image: the aligned 512x512x3 uint8 crop (None = identity-only).

        With an image, exactly one camera must be the input (is_input) and it is conditioned on, never generated.
        progress(stage, done, total) is called after every network step and decode batch.
        """
        import torch

        from smr_core.denoiser import Denoiser
        from smr_core.discretization import edm_sigmas
        from smr_core.guidance import Conditioning
        from smr_core.sampling import sample_spinmeround

        cameras = list(cameras)
        inputs = [i for i, c in enumerate(cameras) if c.is_input]
        if image is not None:
            image = np.asarray(image)
            if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or image.dtype != np.uint8:
                raise InputError(
                    f"the input view must be the aligned {IMAGE_SIZE}x{IMAGE_SIZE}x3 uint8 crop (crop.png), got "
                    f"{image.shape} {image.dtype}; the pose maps only exist for 512 px images"
                )
            if len(inputs) != 1:
                raise InputError("with a photo, exactly one camera must be the input view (is_input=True)")
        elif inputs:
            raise InputError("identity-only generation has no input view: no camera may have is_input=True")
        passes = plan_passes(cameras, config.max_frames)
        angles = [model_angles(c, config.camera_encoding) for c in cameras]
        counter = ProgressCounter(self.work_units(cameras, config, image is not None), progress, progress_offset,
                           progress_total)
        timings: dict[str, float] = {}
        device = self.device
        sample = config.encode == "sample"
        current = getattr(self.unet, "attention_backend", None)  # None: a network without that choice
        if not config.fast and current is not None and current != config.attention_backend:
            self.unet.set_attention_backend(config.attention_backend)  # cheap: swaps the attention processors
        with torch.no_grad(), conv_autotuning(config.fast, device):
            generator = torch.Generator("cpu").manual_seed(config.seed)
            input_noise = torch.randn((1, 8, LATENT_SIZE, LATENT_SIZE), generator=generator)  # drawn first (§2.5.1)
            context, uncond = self.encode_identity(id_emb)
            latents: dict[int, torch.Tensor] = {}
            grey = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)  # the release's all-zero "empty image"
            normal_in = None
            if image is not None:
                t0 = time.perf_counter()
                x_in = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].to(device, torch.float32) / 127.5 - 1.0
                normal_in = self.retrieve_normals(
                    x_in, context, steps=config.normals_steps, weight=config.normals_guidance, sample=sample,
                    generator=generator, step=lambda: counter("normals"),
                    network=(
                        self.fast_unet("normals", config.precision, config.attention_backend) if config.fast else None
                    ),
                )
                z = self.vae.encode(torch.cat([x_in, normal_in, grey]), sample=sample, generator=generator)
                latents[inputs[0]] = torch.cat([z[0], z[1]])
                empty = z[2:3].repeat(1, 2, 1, 1)
                _sync(device)
                timings["normals"] = time.perf_counter() - t0
            else:
                empty = self.vae.encode(grey, sample=sample, generator=generator).repeat(1, 2, 1, 1)
            rays = self.ray_maps(angles)
            if config.fast:
                denoiser = Denoiser(self.fast_unet("multiview", config.precision, config.attention_backend))
            else:
                denoiser = Denoiser(self.unet, autocast_dtype=_autocast_dtype(config.precision, device))
            sigmas = edm_sigmas(config.steps)
            for p, view_pass in enumerate(passes):
                t0 = time.perf_counter()
                n_cond, n_target = len(view_pass.conditioning), len(view_pass.targets)
                if config.same_noise:
                    noise = input_noise.expand(n_target, -1, -1, -1)
                else:
                    noise = torch.randn((n_target, 8, LATENT_SIZE, LATENT_SIZE), generator=generator)
                clean = [latents[i] for i in view_pass.conditioning]
                x = torch.cat(([torch.stack(clean)] if clean else []) + [noise.to(device)])
                mask = torch.ones(len(view_pass.frames), 1, LATENT_SIZE, LATENT_SIZE, device=device)
                mask[:n_cond] = 0.0
                cond_images = torch.cat([rays[list(view_pass.frames)], mask], dim=1)
                stage = f"views pass {p + 1}/{len(passes)}"
                out = sample_spinmeround(
                    denoiser,
                    x,
                    sigmas,
                    Conditioning(cond_images, context),
                    uncond,
                    empty,
                    config.cfg_scale,
                    conditioning_frames=list(range(n_cond)),
                    num_frames=len(view_pass.frames),
                    generator=generator,
                    callback=lambda _, stage=stage: counter(stage),
                )
                for k, i in enumerate(view_pass.targets):
                    latents[i] = out[n_cond + k]
                _sync(device)
                timings[f"pass_{p + 1}"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            order = [i for i in range(len(cameras)) if not cameras[i].is_input]
            stacked = torch.stack([latents[i] for i in order]) if order else torch.zeros(0, 8, LATENT_SIZE, LATENT_SIZE)
            halves = torch.cat([stacked[:, :4], stacked[:, 4:]])  # all RGB latents, then all normal latents
            decoded = []
            for chunk in halves.split(config.decode_batch):
                decoded.append(self.vae.decode(chunk).float().cpu())
                counter("decode")
            images = torch.cat(decoded) if decoded else torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE)
            timings["decode"] = time.perf_counter() - t0

        n = len(cameras)
        rgb = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        normals = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        hwc = images.permute(0, 2, 3, 1).numpy()
        for k, i in enumerate(order):
            rgb[i] = np.round((hwc[k] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
            normals[i] = hwc[len(order) + k]
        if image is not None and normal_in is not None:
            rgb[inputs[0]] = image  # the photo itself, not its VAE reconstruction (recon wants the sharp input)
            normals[inputs[0]] = normal_in[0].permute(1, 2, 0).float().cpu().numpy()
        all_latents = torch.zeros(n, 8, LATENT_SIZE, LATENT_SIZE)
        for i, lat in latents.items():
            all_latents[i] = lat.float().cpu()
        return ViewsResult(cameras, rgb, normals, all_latents, passes, angles, timings)
