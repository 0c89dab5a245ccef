"""ViewSet -> textured head: the stages in order, their timings, and the checks between them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from recon.camera_align import CameraAlignConfig, align_cameras, shifted_masks
from recon.cameras import Cameras, cameras_from_frames
from recon.conventions import ConventionReport, apply_conventions, check_conventions
from recon.delight import DelightConfig
from recon.errors import DegenerateResultError, ViewSetInputError
from recon.fusion import FusionConfig, refine
from recon.hull import HullGrid, extract_surface, hull_grid, largest_component, simplify, working_extent
from recon.mesh_ops import (
    edge_manifold_report,
    face_normals,
    repair_self_intersections,
    self_intersections,
    taubin_smooth,
)
from recon.metrics import psnr
from recon.normal_align import NormalAlignConfig, align_view_normals
from recon.raster import TorchRasterizer, rasterize_views
from recon.selfcheck import SelfCheckConfig, self_check
from recon.texture import BakedTexture, TextureConfig, bake_texture, render_textured
from recon.volume import ViewDepth, VolumeConfig, fuse_depths, view_depths
from spin_io.viewset import ViewSet

MIN_VIEWS = 4
MEASURED_VIEWS = 8  # the fewest views recon is measured on (one ring); one ring of 4 at 256 px fails the mesh check


@dataclass
class ReconConfig:
    """Reconstruction settings; lengths in ViewSet units (0.4 m each by default)."""

    device: str = "cpu"
    hull_voxel: float = 0.006
    neck_margin: float = 0.0
    target_faces: int = 100_000  # fused heads have ~100k faces; 30k cost neck and ears NC, 60k 0.001 NC at 16 views
    smooth_iterations: int = 3  # Taubin lambda|mu passes after fusion (ripple from inconsistent views)
    conventions: str = "correct"  # "correct" (fix + warn) | "refuse" | "trust" (skip the check)
    check_self_intersections: bool = True
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    camera_align: CameraAlignConfig = field(default_factory=CameraAlignConfig)
    normal_align: NormalAlignConfig = field(default_factory=NormalAlignConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    texture: TextureConfig = field(default_factory=lambda: TextureConfig(delight=DelightConfig(enabled=True)))
    self_check: SelfCheckConfig = field(default_factory=SelfCheckConfig)


@dataclass
class ReconResult:
    """The head in ViewSet units (multiply by metres_per_unit for metres) plus what was measured."""

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    albedo: np.ndarray
    y_cut: float
    metres_per_unit: float
    conventions: ConventionReport | None
    metrics: dict
    albedo_lit: np.ndarray | None = None  # the texture with the views' lighting left in (albedo is de-lit)


def validate_input(vs: ViewSet) -> None:
    """Refuse ViewSets recon cannot work with, naming the view and what to do."""
    if len(vs.frames) < MIN_VIEWS:
        raise ViewSetInputError(
            f"recon needs at least {MIN_VIEWS} views, the ViewSet has {len(vs.frames)}; generate more views"
        )
    for i, f in enumerate(vs.frames):
        if f.normal is None:
            raise ViewSetInputError(
                f"view {i} has no normal map (normal_path in transforms.json); recon fuses normals, so every view "
                "needs one"
            )
        if not np.all(np.isfinite(f.normal)):
            raise ViewSetInputError(f"view {i}: the normal map contains NaN or infinite values; regenerate this view")
        if not np.any(f.mask):
            raise ViewSetInputError(f"view {i}: the mask is empty; the head must be visible in every view")
    sizes = {(f.width, f.height) for f in vs.frames}
    if len(sizes) != 1:
        raise ViewSetInputError(f"all views must have the same size, got {sorted(sizes)}")


def world_normals(vs: ViewSet, device: str | torch.device = "cpu") -> torch.Tensor:
    """(V, H, W, 3) unit normals in world axes (zero where the map is empty)."""
    out = []
    for f in vs.frames:
        n = np.asarray(f.normal, np.float32)
        if f.normal_frame == "camera":
            n = n @ np.asarray(f.c2w)[:3, :3].T.astype(np.float32)
        length = np.linalg.norm(n, axis=-1, keepdims=True)
        out.append(np.where(length > 0.5, n / np.maximum(length, 1e-12), 0.0))
    return torch.tensor(np.stack(out), dtype=torch.float32, device=device)


def _perimeter(mask: np.ndarray) -> int:
    """Mask pixels with a 4-neighbour outside the mask (the image border counts as outside)."""
    m = np.pad(np.asarray(mask, bool), 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return int((np.asarray(mask, bool) & ~inner).sum())


def check_mesh(vertices: np.ndarray, faces: np.ndarray, self_check: bool = True) -> dict:
    """Raise DegenerateResultError for an open, non-manifold or self-intersecting mesh; return the report."""
    if len(faces) == 0:
        raise DegenerateResultError("reconstruction produced an empty mesh; check the masks and cameras")
    if not np.all(np.isfinite(vertices)):
        raise DegenerateResultError("reconstruction produced NaN vertices; re-run with fewer fusion rounds")
    report = edge_manifold_report(faces)
    if self_check:
        report["self_intersections"] = self_intersections(vertices, faces)
    kinds = ("boundary_edges", "nonmanifold_edges", "misoriented_edges", "self_intersections")
    problems = [k for k in kinds if report.get(k)]
    if problems:
        detail = ", ".join(f"{k}={report[k]}" for k in problems)
        raise DegenerateResultError(
            f"the reconstructed mesh is not a clean closed surface ({detail}); it was not exported. "
            "Try a larger --hull-voxel or fewer --target-faces, or check the ViewSet for inconsistent views"
        )
    return report


def per_view_metrics(
    vertices: np.ndarray, faces: np.ndarray, baked: BakedTexture, cams: Cameras, vs: ViewSet, normals: torch.Tensor
) -> list[dict]:
    """Reprojection errors per view: silhouette IoU, normal angle, RGB PSNR inside the mask."""
    dev = cams.device
    v = torch.tensor(vertices, dtype=torch.float32, device=dev)
    f = torch.tensor(faces, dtype=torch.long, device=dev)
    frags = rasterize_views(TorchRasterizer(), cams, v, f)
    fn = face_normals(v, f)
    rgb, cov = render_textured(
        torch.tensor(baked.vertices, dtype=torch.float32, device=dev),
        torch.tensor(baked.faces, device=dev),
        torch.tensor(baked.uv, device=dev),
        torch.tensor(baked.albedo, device=dev).float() / 255.0,
        cams,
    )
    out = []
    for i, (fr, frame) in enumerate(zip(frags, vs.frames, strict=True)):
        mask = torch.tensor(frame.mask, device=dev)
        inter = (fr.covered & mask).sum().item()
        union = (fr.covered | mask).sum().item()
        xor = (fr.covered ^ mask).sum().item()
        both = fr.covered & mask & (normals[i].norm(dim=-1) > 0.5)
        cos = (fn[fr.face_id[both]] * normals[i][both]).sum(-1).clamp(-1, 1)
        m = (cov[i] & mask).cpu().numpy()
        out.append(
            {
                "view": i,
                "azimuth_deg": frame.azimuth_deg,
                "elevation_deg": frame.elevation_deg,
                "silhouette_iou": inter / max(union, 1),
                "silhouette_offset_px": xor / max(_perimeter(frame.mask), 1),
                "normal_error_deg": float(torch.rad2deg(torch.acos(cos)).mean()) if cos.numel() else None,
                "rgb_psnr_db": psnr(rgb[i].cpu().numpy(), frame.rgb / 255.0, m) if m.any() else None,
            }
        )
    return out


def reconstruct(
    vs: ViewSet, cfg: ReconConfig | None = None, log: Callable[[str], None] | None = None, progress: bool = False
) -> ReconResult:
    """Fit one closed textured head to the ViewSet (all stages; see recon/__init__.py).

    `log` receives a line as each long stage starts and one per finished stage; `progress` shows tqdm bars
    over the per-view depth integration and the fusion rounds.
    """
    cfg = cfg or ReconConfig()
    log = log or (lambda _msg: None)
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def stamp(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        times[name] = round(times.get(name, 0.0) + now - t0, 3)
        t0 = now
        log(f"{name}: {times[name]:.1f} s")

    validate_input(vs)
    report = None
    if cfg.conventions != "trust":
        report = check_conventions(vs)
        vs = apply_conventions(vs, report, cfg.conventions)
        stamp("conventions")
    dev = torch.device(cfg.device)
    cams = cameras_from_frames(vs.frames, dev)
    given_masks = np.stack([f.mask for f in vs.frames])  # the texture takes colour inside the masks as given
    masks_np = given_masks
    masks = torch.tensor(masks_np, dtype=torch.float32, device=dev)
    shift_px = np.zeros(len(vs.frames), np.float32)
    normals = world_normals(vs, dev)
    mm = vs.metres_per_unit * 1000
    first = cfg.volume
    if cfg.camera_align.enabled:  # a quicker consensus is enough to place the cameras
        first = replace(cfg.volume, max_size=min(cfg.volume.max_size, cfg.camera_align.consensus_size),
                        sweep=replace(cfg.volume.sweep, enabled=False))
    grid, v, f, depths, fused_report = _consensus_shape(cams, masks, masks_np, normals, cfg, first, mm, log, stamp,
                                                        progress)
    camera_report: list[dict] = []
    if cfg.camera_align.enabled:
        log("camera alignment: each view's camera turned onto the fused surface")
        v_t, f_t = torch.tensor(v, dtype=torch.float32, device=dev), torch.tensor(f, device=dev)
        centre, _ = working_extent(cams)
        with _bar(progress, len(vs.frames), "camera alignment", "view") as tick:
            cams, camera_report = align_cameras(v_t, f_t, cams, normals, masks_np, centre, grid.y_cut,
                                                cfg.camera_align, progress=tick)
        stamp("camera_alignment")
        shift_px = np.array([row["mask_shift_px"] if row["mask_shift_applied"] else 0.0 for row in camera_report],
                            np.float32)
        if shift_px.any():  # a matte a pixel tight carves what the others show: each moved to the views' median
            soft, masks_np = shifted_masks(masks_np, shift_px)
            masks = torch.tensor(soft, device=dev)
        if any(row["applied"] for row in camera_report) or shift_px.any() or first != cfg.volume:
            # the hull and depth fusion again, from the aligned cameras and at full size
            grid, v, f, depths, fused_report = _consensus_shape(cams, masks, masks_np, normals, cfg, cfg.volume, mm,
                                                                log, stamp, progress)
    if cfg.volume.enabled and cfg.volume.reanchor:
        log("depth from normals again, anchored on the fused shape where the hull is not tangent to it")
        grid, v, f, depths, fused_report = _consensus_shape(cams, masks, masks_np, normals, cfg, cfg.volume, mm,
                                                            log, stamp, progress, anchor_surface=(v, f), grid=grid)
    v_t, f_t = torch.tensor(v, dtype=torch.float32, device=dev), torch.tensor(f, device=dev)
    fused_normals, alignment = normals, []
    if cfg.normal_align.enabled:
        fused_normals, alignment = align_view_normals(v_t, f_t, cams, normals, masks_np, cfg.normal_align)
        stamp("normal_alignment")
    with _bar(progress, cfg.fusion.rounds, "normal fusion", "round") as tick:
        x = refine(v_t, f_t, cams, fused_normals, given_masks, grid.y_cut, cfg.fusion,
                   progress=lambda r, _info: tick(r), mask_shift_px=shift_px)
    vertices = x.cpu().numpy().astype(np.float64)
    cap = np.abs(vertices[:, 1] - grid.y_cut) < 1e-6
    vertices = taubin_smooth(vertices, f, cfg.smooth_iterations, fixed=cap)
    stamp("normal_fusion")
    repair_rounds = 0
    if cfg.check_self_intersections:
        log("mesh check: self-intersections (folds are smoothed or reverted to the fused mesh)")
        vertices, repair_rounds = repair_self_intersections(vertices, f, cap, reference=v.astype(np.float64))
    try:
        mesh_report = check_mesh(vertices, f, cfg.check_self_intersections)
    except DegenerateResultError as exc:
        if len(vs.frames) >= MEASURED_VIEWS:
            raise
        raise DegenerateResultError(
            f"{exc}. The ViewSet has only {len(vs.frames)} views; recon is measured from {MEASURED_VIEWS} up "
            "(one ring), so generate more views"
        ) from None
    mesh_report["repair_rounds"] = repair_rounds
    mesh_report["before_simplification"] = fused_report
    stamp("mesh_check")
    images = torch.tensor(np.stack([fr.rgb for fr in vs.frames]), dtype=torch.float32, device=dev) / 255.0
    inputs = [fr.is_input for fr in vs.frames]
    baked = bake_texture(vertices, f, cams, images, given_masks, inputs, cfg.texture, log=log)
    stamp("texture")
    # reprojection is measured against the lit views, so with the lit texture
    lit_baked = baked if baked.albedo_lit is None else replace(baked, albedo=baked.albedo_lit)
    views = per_view_metrics(vertices, f, lit_baked, cams, vs, normals)  # against the normals as given
    for row, a in zip(views, alignment, strict=False):
        row["normal_rotation_deg"] = a["rotation_deg"]
        row["normal_rotation_applied"] = a["applied"]
    for row, c in zip(views, camera_report, strict=False):  # how far each camera was turned from its declared pose
        row["camera_rotation_deg"] = c["rotation_deg"]
        row["camera_rotation_applied"] = c["applied"]
        row["camera_rotation_refused"] = c.get("reason") == "larger than max_rotation_deg"
        row["mask_shift_px"] = c["mask_shift_px"]  # its border against the others' (pixels, > 0: drawn tight)
        row["mask_shift_applied"] = c["mask_shift_applied"]  # moved out by that for the geometry
        row["mask_shift_refused"] = c["mask_shift_refused"]
    moved = [vd.moved for vd in depths] or [0] * len(views)  # a concavity the hull bridged, opened from other views
    for row, px in zip(views, moved, strict=True):
        row["depth_moved_px"] = px
    check = self_check(views, cfg.self_check)
    if not check["ok"]:
        log(f"self-check: views {check['disagreeing_views']} disagree with the rest (metrics.json: self_check)")
    stamp("reprojection")
    metrics = {
        "schema_version": 2,
        "self_check": check,
        "views": views,
        "normal_alignment": alignment,
        "camera_alignment": camera_report,
        "coverage": {"texels_painted": baked.coverage, "texels_surface_filled": baked.surface_filled},
        "mesh": {"vertices": int(len(baked.vertices)), "faces": int(len(baked.faces)), **mesh_report},
        "neck_plane_y_m": grid.y_cut * vs.metres_per_unit,
        "stage_seconds": times,
        "conventions": report.as_dict() if report else None,
        "config": {k: val for k, val in asdict(cfg).items()},
        "generation": vs.generation,
        "lighting": None if baked.lighting is None else baked.lighting.as_dict(),
    }
    return ReconResult(
        baked.vertices, baked.faces, baked.uv, baked.albedo, grid.y_cut, vs.metres_per_unit, report, metrics,
        albedo_lit=baked.albedo_lit,
    )


def _consensus_shape(
    cams: Cameras, masks: torch.Tensor, masks_np: np.ndarray, normals: torch.Tensor, cfg: ReconConfig,
    volume: VolumeConfig, mm_per_unit: float, log: Callable[[str], None], stamp: Callable[[str], None], progress: bool,
    anchor_surface: tuple[np.ndarray, np.ndarray] | None = None, grid: HullGrid | None = None,
) -> tuple[HullGrid, np.ndarray, np.ndarray, list[ViewDepth], dict]:
    """The shape the views agree on: visual hull, depth fusion inside it, simplified (and the unsimplified report).

    `anchor_surface`: an earlier fused shape from the same cameras, on which the views' depth is anchored where the
    hull is not tangent (`recon.volume.view_depths`); `grid`: their hull, when it is already carved.
    """
    if grid is None:
        log(f"visual hull: {len(cams)} views, {cfg.hull_voxel * mm_per_unit:.1f} mm voxels")
        grid = hull_grid(cams, masks, voxel=cfg.hull_voxel, neck_margin=cfg.neck_margin)
    v, f = extract_surface(grid)
    stamp("visual_hull")
    depths: list[ViewDepth] = []
    if volume.enabled:
        with _bar(progress, len(cams), "depth from normals", "view") as tick:
            depth_cams, depths = view_depths(cams, v, f, normals, masks_np, volume, progress=tick,
                                             anchor_surface=anchor_surface)
        stamp("depth_integration")
        v, f = extract_surface(grid, largest_component(fuse_depths(grid, depth_cams, depths, volume)))
        stamp("depth_fusion")
    fused_report = {"faces": int(len(f)), **edge_manifold_report(f)}
    v, f = simplify(v, f, cfg.target_faces)
    stamp("simplify")
    return grid, v, f, depths, fused_report


@contextmanager
def _bar(show: bool, total: int, desc: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr when `show`; yields the callback that advances it to step i + 1."""
    if not show:
        yield lambda _i: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    try:
        yield lambda i: bar.update(i + 1 - bar.n)
    finally:
        bar.close()


def run_recon(
    views_dir: str | Path, mesh_dir: str | Path, cfg: ReconConfig | None = None, log=None, progress: bool = False
) -> Path:
    """Read a ViewSet folder, reconstruct, and write the HeadMesh folder (metres, glTF axes)."""
    from spin_io.headmesh import PROVENANCE_KEY, HeadMesh, provenance_from_generation, write_headmesh
    from spin_io.viewset import read_viewset

    vs = read_viewset(views_dir)
    res = reconstruct(vs, cfg, log, progress)
    mesh = HeadMesh(
        vertices=(res.vertices * res.metres_per_unit).astype(np.float32),
        faces=res.faces.astype(np.int32),
        uv=res.uv.astype(np.float32),
        albedo=res.albedo,
        albedo_lit=res.albedo_lit,
        metadata={
            "lighting": res.metrics.get("lighting"),
            "source": "recon",
            "views": str(views_dir),
            "neck_plane_y_m": res.y_cut * res.metres_per_unit,
            # the ViewSet's provenance travels on, so the exporter can label a synthetic head on every output
            PROVENANCE_KEY: provenance_from_generation(vs.generation),
        },
    )
    return write_headmesh(mesh_dir, mesh, res.metrics)
