"""Benchmark recon on synthetic ground truth: accuracy and stage times (issue 5, item 8).

    python bench/recon_bench.py                      # fsaverage, full table on CPU
    python bench/recon_bench.py --device cuda --quick
    python bench/recon_bench.py --heads fsaverage 1 2 3 --sizes 256 --layouts ring8+pitch8

"cpu s" is the process CPU time of reconstruct(): with --threads 1 it is what a quiet core would
take, even when other jobs share the machine (wall time is then inflated).

Held-out PSNR compares renders of the textured reconstruction with renders of the ground truth
(same procedural albedo) from 4 cameras between the input views (azimuth 22.5 + 90 k, elevation
10 deg), over the union of both silhouettes (background pixels are not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recon.cameras import Cameras  # noqa: E402
from recon.fusion import FusionConfig  # noqa: E402
from recon.metrics import psnr, surface_metrics  # noqa: E402
from recon.pipeline import ReconConfig, reconstruct  # noqa: E402
from recon.synth import Perturbation, fsaverage_head, procedural_head, render_viewset, ring_views  # noqa: E402
from recon.synth.albedo import procedural_albedo  # noqa: E402
from recon.synth.render import render_frame  # noqa: E402
from recon.texture import TextureConfig, render_textured  # noqa: E402
from spin_io.viewset import camera_position, focal_from_fov, look_at_c2w  # noqa: E402

LAYOUTS = {
    "ring8": lambda: ring_views(8),
    "ring8+pitch8": lambda: ring_views(8) + ring_views(8, 30.0),
    "ring16+pitch8": lambda: ring_views(16) + ring_views(8, 30.0, 22.5),
}


def held_out_psnr(head, result, size: int, device: str) -> float:
    """Mean PSNR (dB) over 4 held-out views, inside the union of GT and recon silhouettes."""
    dev = torch.device(device)
    focal = focal_from_fov(size)
    vals = []
    for k in range(4):
        c2w = look_at_c2w(camera_position(22.5 + 90 * k, 10.0, 2.7))
        gt_rgb, _, gt_cov = render_frame(
            torch.tensor(head.vertices, dtype=torch.float32, device=dev),
            torch.tensor(head.faces, device=dev),
            c2w, focal, size, procedural_albedo,
        )
        cams = Cameras(
            torch.tensor(c2w, dtype=torch.float32, device=dev)[None],
            *(torch.tensor([x], dtype=torch.float32, device=dev) for x in (focal, focal, size / 2, size / 2)),
            size, size,
        )
        rgb, cov = render_textured(
            torch.tensor(result.vertices, dtype=torch.float32, device=dev),
            torch.tensor(result.faces, device=dev),
            torch.tensor(result.uv, device=dev),
            torch.tensor(result.albedo, device=dev).float() / 255.0,
            cams,
        )
        union = (gt_cov > 0.5) | cov[0].cpu().numpy()
        vals.append(psnr(rgb[0].cpu().numpy(), gt_rgb, union))
    return float(np.mean(vals))


def run_case(head, layout: str, size: int, perturbed: bool, device: str, texture_size: int, rounds: int) -> dict:
    vs = render_viewset(head, LAYOUTS[layout](), size=size, perturb=Perturbation() if perturbed else None,
                        seed=7, device=device)
    cfg = ReconConfig(device=device, fusion=FusionConfig(rounds=rounds), texture=TextureConfig(size=texture_size))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    cpu = time.process_time()
    res = reconstruct(vs, cfg)
    cpu_seconds = time.process_time() - cpu
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    mm_per_unit = 1000.0 * vs.metres_per_unit
    m = surface_metrics(res.vertices, res.faces, head.vertices, head.faces, mm_per_unit, res.y_cut)
    return {
        "head": head.name,
        "layout": layout,
        "size": size,
        "perturbed": perturbed,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "stages": res.metrics["stage_seconds"],
        "psnr_heldout_db": held_out_psnr(head, res, size, device),
        "coverage": res.metrics["coverage"]["texels_painted"],
        "conventions_ok": res.conventions.ok if res.conventions else None,
        **{k: v for k, v in m.items() if k != "regions"},
        "regions": m["regions"],
    }


STAGES = ("conventions", "visual_hull", "simplify", "normal_fusion", "mesh_check", "texture", "reprojection")


def print_table(rows: list[dict]) -> None:
    cols = ["head", "layout", "px", "pert", "F@2.5", "F@5", "F@10", "NC", "CD-L1 mm", "offset mm", "PSNR dB",
            "wall s", "cpu s", "stages s"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        st = r["stages"]
        stages = "/".join(f"{st.get(k, 0):.1f}" for k in STAGES)
        print(" | ".join([
            r["head"], r["layout"], str(r["size"]), "yes" if r["perturbed"] else "no",
            f"{r['fscore@2.5mm']:.3f}", f"{r['fscore@5mm']:.4f}", f"{r['fscore@10mm']:.4f}",
            f"{r['normal_consistency']:.4f}", f"{r['chamfer_l1_mm']:.2f}", f"{r['signed_offset_mm']:+.2f}",
            f"{r['psnr_heldout_db']:.1f}", f"{r['seconds']:.1f}", f"{r.get('cpu_seconds', 0):.1f}", stages,
        ]))
    print("stages: conventions/hull/simplify/fusion/mesh-check/texture/reprojection")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--heads", nargs="+", default=["fsaverage"], help="'fsaverage' and/or procedural seeds")
    ap.add_argument("--layouts", nargs="+", default=["ring8", "ring8+pitch8"], choices=list(LAYOUTS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    ap.add_argument("--perturb", choices=("both", "clean", "perturbed"), default="both")
    ap.add_argument("--texture-size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=FusionConfig().rounds)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--quick", action="store_true", help="only fsaverage ring8+pitch8 at 256 px, perturbed")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.heads, args.layouts, args.sizes, args.perturb = ["fsaverage"], ["ring8+pitch8"], [256], "perturbed"
    perturbs = {"both": [False, True], "clean": [False], "perturbed": [True]}[args.perturb]
    rows = []
    for name in args.heads:
        head = fsaverage_head() if name == "fsaverage" else procedural_head(int(name))
        for layout in args.layouts:
            for size in args.sizes:
                for pert in perturbs:
                    row = run_case(head, layout, size, pert, args.device, args.texture_size, args.rounds)
                    rows.append(row)
                    print(f"done {row['head']} {layout} {size}px perturbed={pert}: {row['seconds']:.1f} s",
                          file=sys.stderr)
    if args.device.startswith("cuda"):
        print(f"device: {args.device} ({torch.cuda.get_device_name()})")
    else:
        print(f"device: cpu ({torch.get_num_threads()} torch threads)")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
