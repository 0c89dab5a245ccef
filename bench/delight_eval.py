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

  slope   least-squares slope of that log ratio on n·l: how much shading is left, in log units per
          unit n·l (corr is scale-free, so a 1 % residual can still correlate; the slope says how much).

Held-out (--held-out; never used while tuning recon/delight.py): other heads (cleo, dev), a lighting not in
LIGHTINGS (warm key from the upper right-front, blue sky ambient), and an albedo with darker skin and dark
hair strands over the crown and back (hair is dark *albedo*, not shadow: it must not come back brightened).

    .venv/bin/python bench/delight_eval.py [--heads ada,ben] [--size 256] [--texture 512] [--faces 40000]
    .venv/bin/python bench/delight_eval.py --held-out
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
from recon.synth.lighting import DirectionalLight, SceneLighting
from recon.texture import TextureConfig, bake_texture, uv_to_pixels

LUMA = np.array([0.2126, 0.7152, 0.0722])
HAIR_REGIONS = (2, 3)  # back, crown (REGIONS order)

HELD_OUT_LIGHTINGS = {
    "warm_top_right": SceneLighting(
        "warm_top_right", (0.12, 0.15, 0.22), (DirectionalLight((-0.55, 0.7, 0.45), (0.95, 0.75, 0.5)),)
    ),
}
ALL_LIGHTINGS = {**LIGHTINGS, **HELD_OUT_LIGHTINGS}


def dark_skin_hair_albedo(head: GroundTruthHead):
    """Held-out albedo: the procedural pattern on darker skin, dark brown hair strands on the crown and back."""

    def albedo(points: torch.Tensor) -> torch.Tensor:
        skin = procedural_albedo(points) * torch.tensor([0.45, 0.38, 0.33], dtype=points.dtype)
        x, y, z = points.unbind(-1)
        strands = 0.5 + 0.5 * torch.sin(2 * torch.pi * (x + 0.35 * z) / 0.012) * torch.sin(2 * torch.pi * y / 0.05)
        hair = torch.tensor([0.14, 0.09, 0.06], dtype=points.dtype) * (0.6 + 0.8 * strands)[:, None]
        region = torch.as_tensor(head.regions(points.detach().cpu().numpy()))
        is_hair = (region == HAIR_REGIONS[0]) | (region == HAIR_REGIONS[1])
        return torch.where(is_hair[:, None], hair, skin).clamp(0.0, 1.0)

    return albedo


ALBEDOS = {"procedural": lambda head: procedural_albedo, "dark_skin_hair": dark_skin_hair_albedo}
HELD_OUT_CASES = [("cleo", "warm_top_right", "procedural"), ("dev", "hard_side", "dark_skin_hair"),
                  ("ada", "coloured", "dark_skin_hair")]


def decimated(head: GroundTruthHead, faces: int) -> GroundTruthHead:
    """The head at `faces` triangles (renders and bakes stay quick); the labeller is unchanged."""
    import fast_simplification

    if len(head.faces) <= faces:
        return head
    v, f = fast_simplification.simplify(
        head.vertices.astype(np.float32), head.faces.astype(np.int32), target_reduction=1 - faces / len(head.faces)
    )
    return GroundTruthHead(np.asarray(v, np.float64), np.asarray(f, np.int64), head.name, head.info, head.labeller)


def texel_truth(baked, size: int, albedo_fn=procedural_albedo) -> dict[str, np.ndarray]:
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
        "albedo": albedo_fn(pos).numpy().astype(np.float64),
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
        slope = float(np.polyfit(ndotl[sel], ratio[sel], 1)[0]) if ndotl is not None else float("nan")
        out[name] = {
            "mae": 255 * float(np.abs(x[sel] - y[sel]).mean()),
            "mae_aligned": 255 * float(np.abs(x[sel] * gain - y[sel]).mean()),
            "corr": corr,
            "slope": slope,
            "level": float(np.exp(np.median(np.log(np.maximum((x[sel] * gain) @ LUMA, 1e-3)) - np.log(
                np.maximum(y[sel] @ LUMA, 1e-3))))),  # median gain-aligned lum ratio: > 1 = brightened
        }
    return out


def run_case(head: GroundTruthHead, lighting_name: str, size: int, texture: int, albedo: str = "procedural") -> dict:
    lighting = ALL_LIGHTINGS.get(lighting_name)
    albedo_fn = ALBEDOS[albedo](head)
    vs = render_viewset(head, product_views(24), size=size, normal_frame="world", lighting=lighting,
                        albedo_fn=albedo_fn)
    cams = cameras_from_frames(vs.frames, "cpu")
    images = torch.tensor(np.stack([f.rgb for f in vs.frames]), dtype=torch.float32) / 255.0
    masks = np.stack([f.mask for f in vs.frames])
    t0 = time.perf_counter()
    baked = bake_texture(head.vertices, head.faces, cams, images, masks, [f.is_input for f in vs.frames],
                         TextureConfig(size=texture, delight=DelightConfig()))
    seconds = time.perf_counter() - t0
    truth = texel_truth(baked, texture, albedo_fn)
    regions = head.regions(truth["points"])
    key = lighting.key_direction() if lighting is not None else None
    lit = baked.albedo_lit if baked.albedo_lit is not None else baked.albedo
    return {
        "before": scores(lit, truth, regions, key),
        "after": scores(baked.albedo, truth, regions, key),
        "bake_s": seconds,
        "delight_s": baked.lighting.extra.get("seconds", float("nan")) if baked.lighting is not None else 0.0,
        "lighting": baked.lighting.as_dict() if baked.lighting is not None else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", default="ada,ben")
    ap.add_argument("--lightings", default="unlit," + ",".join(LIGHTINGS))
    ap.add_argument("--size", type=int, default=256, help="view size in pixels")
    ap.add_argument("--texture", type=int, default=512, help="texture atlas side")
    ap.add_argument("--faces", type=int, default=40_000, help="ground-truth mesh triangles")
    ap.add_argument("--held-out", action="store_true", help="run the held-out cases (HELD_OUT_CASES) instead")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"# delight_eval: {platform.node()} {platform.processor() or platform.machine()}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; 24 views at {args.size} px, "
          f"{args.texture} px atlas, GT mesh {args.faces} faces" + ("; HELD-OUT cases" if args.held_out else ""))
    header = f"{'head':6} {'lighting':20} {'albedo':14} {'region':6} {'MAE lit':>7} {'delit':>6} {'x':>5} " \
             f"{'MAE* lit':>8} {'delit':>6} {'x':>5} {'corr lit':>8} {'delit':>6} {'slope':>6} {'level':>5}"
    print(header)
    if args.held_out:
        cases = HELD_OUT_CASES
    else:
        cases = [(h, ln, "procedural") for h in args.heads.split(",") for ln in args.lightings.split(",")]
    worst: dict[str, float] = {}
    heads: dict[str, GroundTruthHead] = {}
    t_all = time.perf_counter()
    for name, lighting, albedo in cases:
        head = heads.setdefault(name, decimated(person_head(name), args.faces))
        res = run_case(head, lighting, args.size, args.texture, albedo)
        for region, b in res["before"].items():
            a = res["after"][region]
            x, xa = b["mae"] / max(a["mae"], 1e-9), b["mae_aligned"] / max(a["mae_aligned"], 1e-9)
            print(f"{name:6} {lighting:20} {albedo:14} {region:6} {b['mae']:7.2f} {a['mae']:6.2f} {x:5.2f} "
                  f"{b['mae_aligned']:8.2f} {a['mae_aligned']:6.2f} {xa:5.2f} {b['corr']:8.3f} {a['corr']:6.3f} "
                  f"{a['slope']:6.3f} {a['level']:5.2f}")
            if lighting != "unlit":
                worst[lighting] = min(worst.get(lighting, np.inf), xa)
        light = res["lighting"] or {}
        print(f"#   bake {res['bake_s']:.1f} s (de-lighting {res['delight_s']:.2f} s); key light "
              f"{light.get('key_light_direction')}, rgb {light.get('key_light_rgb')}, "
              f"inliers {light.get('inlier_share')}, floor {light.get('shading_floor')}")
    print("# smallest MAE* improvement over regions and heads: "
          + ", ".join(f"{k} {v:.2f}x" for k, v in worst.items()))
    print(f"# wall time {time.perf_counter() - t_all:.0f} s")

if __name__ == "__main__":
    main()
