"""Helpers of the training tests: a tiny synthetic multi-view dataset and tiny configs (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# A 2-level toy UNet (16 channels, 8 groups): the fast overfit and resume tests need ~0.05 s per step.
MICRO_UNET: dict[str, Any] = {
    "block_out_channels": (16, 16),
    "norm_num_groups": 8,
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}
IMAGE_SIZE = 64  # -> 8x8 latents


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread; two threads on a shared 2-core machine thrash (10x slower).

    Import it into a test module to make it autouse there.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_synthetic_dataset(root: Path, subjects: int = 2, views: int = 6, size: int = IMAGE_SIZE) -> Path:
    """recon's procedural heads rendered on a ring (+ one pitched view) into DATA/SUBJECT/views + arcface.npy.

    Subject k stores its normals in the camera frame when k is even and in the world frame when odd, so the
    loader's frame conversion is exercised.
    """
    from recon.synth import ViewSpec, procedural_head, render_viewset, ring_views
    from spin_io.viewset import write_viewset

    root = Path(root)
    for k in range(subjects):
        head = procedural_head(k, voxel_m=0.006, target_faces=3000)
        specs = ring_views(views - 1) + [ViewSpec(30.0, 20.0)]
        vs = render_viewset(head, specs, size=size, normal_frame="camera" if k % 2 == 0 else "world",
                            supersample=1, seed=k)
        write_viewset(root / f"subject{k}" / "views", vs)
        emb = np.random.default_rng(100 + k).standard_normal(512).astype(np.float32)
        np.save(root / f"subject{k}" / "arcface.npy", emb / np.linalg.norm(emb))
    return root


def tiny_config(data_root: Path, out: Path, **sections: dict[str, Any]) -> Any:
    """A TrainConfig for the micro UNet on the synthetic data; `sections` update single fields per section."""
    from smr_core.train.config import TrainConfig

    raw: dict[str, dict[str, Any]] = {
        "data": {"root": str(data_root), "image_size": IMAGE_SIZE, "num_frames": 4},
        "model": {"init": "tiny-random", "tiny_unet": dict(MICRO_UNET), "encode": "mean"},
        "objective": {},
        "optim": {"lr": 1e-3, "grad_clip": 1.0},
        "run": {"output_dir": str(out), "max_steps": 4, "checkpoint_every": 2, "log_every": 2, "device": "cpu",
                "progress": False, "export_weights": False, "ema_decay": 0.99},
    }
    for name, values in sections.items():
        raw[name].update(values)
    return TrainConfig.model_validate(raw)
