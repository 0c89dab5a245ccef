"""Write a tiny synthetic training set (procedural heads rendered into ViewSets) for examples/train_tiny.toml.

    python examples/make_train_data.py out/train_tiny/data [--subjects 2] [--views 6] [--size 64]

Each subject gets views/ (a ViewSet with RGB, normals, masks, cameras) and arcface.npy. The identity
vectors are random unit vectors: synthetic heads have no ArcFace identity, so this data exercises the
training machinery only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from recon.synth import ViewSpec, procedural_head, render_viewset, ring_views
    from spin_io.viewset import write_viewset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--views", type=int, default=6, help="views per subject (a ring plus one pitched view)")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    for k in range(args.subjects):
        head = procedural_head(k, voxel_m=0.006, target_faces=3000)
        specs = ring_views(args.views - 1) + [ViewSpec(30.0, 20.0)]
        vs = render_viewset(head, specs, size=args.size, normal_frame="camera", supersample=1, seed=k)
        write_viewset(args.out / f"subject{k}" / "views", vs)
        emb = np.random.default_rng(100 + k).standard_normal(512).astype(np.float32)
        np.save(args.out / f"subject{k}" / "arcface.npy", emb / np.linalg.norm(emb))
        print(f"wrote {args.out / f'subject{k}'}")


if __name__ == "__main__":
    main()
