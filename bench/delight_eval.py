"""De-lighting benchmark (issue 17): albedo error against the true albedo before and after de-lighting.

Ground-truth people heads (recon.synth.people) with the procedural albedo are rendered under known
lighting (recon.synth.lighting.LIGHTINGS: ambient + directional, coloured key + fill, hard side light;
"unlit" as the control) from the product's 24 views, and baked onto the *ground-truth* mesh (so geometry
error does not confound the texture) with recon.texture.bake_texture, which returns both the lit texture
(albedo_lit) and the de-lit albedo. Per texel: the true albedo at its surface point, its region (face,
ears, back, crown, neck) and its normal.

Reported per lighting and region:
  MAE     mean |texture - true albedo| over chart texels, 0-255 sRGB units, as baked;
  MAE*    the same after the best per-channel gain (least squares), i.e. modulo the overall light
          colour / albedo colour that no image can tell apart (the de-lighting keeps the mean colour);
  corr    Pearson correlation over texels of log(texture luminance / true luminance) with n·l of the
          key light: the shading left in the texture (0 = none).

    .venv/bin/python bench/delight_eval.py [--heads ada,ben] [--size 256] [--texture 512] [--faces 40000]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from recon.cameras import cameras_from_frames
from recon.delight import DelightConfig
from recon.mesh_ops import vertex_normals
from recon.metrics import REGIONS
from recon.raster import TorchRasterizer, interpolate
from recon.synth import LIGHTINGS, GroundTruthHead, person_head, procedural_albedo, product_views, render_viewset
from recon.texture import TextureConfig, bake_texture, uv_to_pixels

LUMA = np.array([0.2126, 0.7152, 0.0722])


def decimated(head: GroundTruthHead, faces: int) -> GroundTruthHead:
    """The head at `faces` triangles (renders and bakes stay quick); the labeller is unchanged."""
    import fast_simplification

    if len(head.faces) <= faces:
        return head
    v, f = fast_simplification.simplify(
        head.vertices.astype(np.float32), head.faces.astype(np.int32), target_reduction=1 - faces / len(head.faces)
    )
    return GroundTruthHead(np.asarray(v, np.float64), np.asarray(f, np.int64), head.name, head.info, head.labeller)


def texel_truth(baked, size: int) -> dict[str, np.ndarray]:
    """Per chart texel: surface point, normal, true albedo, region index."""
    dev = torch.device("cpu")
    uv = torch.tensor(baked.uv, device=dev)
    faces = torch.tensor(baked.faces, device=dev)
    verts = torch.tensor(baked.vertices, dtype=torch.float32, device=dev)
    frags = TorchRasterizer().rasterize(uv_to_pixels(uv, size), torch.ones(len(uv)), faces, size, size)
    chart = frags.covered
    pos = interpolate(frags, verts, faces)[chart]
    nrm = interpolate(frags, vertex_normals(verts, faces), faces)[chart]
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return {
        "chart": chart.numpy(),
        "points": pos.numpy(),
        "normals": nrm.numpy().astype(np.float64),
        "albedo": procedural_albedo(pos).numpy().astype(np.float64),
    }


def scores(texture: np.ndarray, truth: dict, regions: np.ndarray, key: np.ndarray | None) -> dict[str, dict]:
    """MAE, gain-aligned MAE and shading correlation, overall and per region."""
    x = texture[truth["chart"]].astype(np.float64) / 255.0
    y = truth["albedo"]
    gain = (x * y).sum(0) / np.maximum((x * x).sum(0), 1e-12)
    ratio = np.log(np.maximum(x @ LUMA, 1e-3) / np.maximum(y @ LUMA, 1e-3))
    ndotl = truth["normals"] @ key if key is not None else None
    out = {}
    for name, sel in [("all", np.ones(len(x), bool))] + [(r, regions == k) for k, r in enumerate(REGIONS)]:
        if sel.sum() < 50:
            continue
        corr = float(np.corrcoef(ratio[sel], ndotl[sel])[0, 1]) if ndotl is not None else float("nan")
        out[name] = {
            "mae": 255 * float(np.abs(x[sel] - y[sel]).mean()),
            "mae_aligned": 255 * float(np.abs(x[sel] * gain - y[sel]).mean()),
            "corr": corr,
        }
    return out


def run_case(head: GroundTruthHead, lighting_name: str, size: int, texture: int) -> dict:
    lighting = LIGHTINGS.get(lighting_name)
    vs = render_viewset(head, product_views(24), size=size, normal_frame="world", lighting=lighting)
    cams = cameras_from_frames(vs.frames, "cpu")
    images = torch.tensor(np.stack([f.rgb for f in vs.frames]), dtype=torch.float32) / 255.0
    masks = np.stack([f.mask for f in vs.frames])
    t0 = time.perf_counter()
    baked = bake_texture(head.vertices, head.faces, cams, images, masks, [f.is_input for f in vs.frames],
                         TextureConfig(size=texture, delight=DelightConfig()))
    seconds = time.perf_counter() - t0
    truth = texel_truth(baked, texture)
    regions = head.regions(truth["points"])
    key = lighting.key_direction() if lighting is not None else None
    lit = baked.albedo_lit if baked.albedo_lit is not None else baked.albedo
    return {
        "before": scores(lit, truth, regions, key),
        "after": scores(baked.albedo, truth, regions, key),
        "bake_s": seconds,
        "lighting": baked.lighting.as_dict() if baked.lighting is not None else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="ada,ben")
    ap.add_argument("--lightings", default="unlit," + ",".join(LIGHTINGS))
    ap.add_argument("--size", type=int, default=256, help="view size in pixels")
    ap.add_argument("--texture", type=int, default=512, help="texture atlas side")
    ap.add_argument("--faces", type=int, default=40_000, help="ground-truth mesh triangles")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"# delight_eval: {platform.node()} {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; 24 views at {args.size} px, "
          f"{args.texture} px atlas, GT mesh {args.faces} faces")
    header = f"{'head':6} {'lighting':20} {'region':6} {'MAE lit':>8} {'MAE delit':>9} {'x':>5} " \
             f"{'MAE* lit':>8} {'MAE* delit':>10} {'x':>5} {'corr lit':>8} {'corr delit':>10}"
    print(header)
    worst = {}
    for name in args.heads.split(","):
        head = decimated(person_head(name), args.faces)
        for lighting in args.lightings.split(","):
            res = run_case(head, lighting, args.size, args.texture)
            for region, b in res["before"].items():
                a = res["after"][region]
                x, xa = b["mae"] / max(a["mae"], 1e-9), b["mae_aligned"] / max(a["mae_aligned"], 1e-9)
                print(f"{name:6} {lighting:20} {region:6} {b['mae']:8.2f} {a['mae']:9.2f} {x:5.2f} "
                      f"{b['mae_aligned']:8.2f} {a['mae_aligned']:10.2f} {xa:5.2f} {b['corr']:8.3f} {a['corr']:10.3f}")
                if lighting != "unlit":
                    worst[lighting] = min(worst.get(lighting, np.inf), xa)
            light = res["lighting"] or {}
            print(f"#   bake {res['bake_s']:.1f} s; key light {light.get('key_light_direction')}, "
                  f"rgb {light.get('key_light_rgb')}, inliers {light.get('inlier_share')}")
    print("# smallest MAE* improvement over regions and heads: "
          + ", ".join(f"{k} {v:.2f}x" for k, v in worst.items()))


if __name__ == "__main__":
    main()
