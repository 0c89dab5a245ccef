"""`spin-to-mesh export MESH_DIR -o ASSET_DIR`: HeadMesh folder -> GLB LODs, preview, report.json."""

from __future__ import annotations

import argparse
import sys

from exporters.config import DEFAULT_LOD_BUDGETS, FORMATS, MOBILE_TEXTURE_SIZE


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` sub-command."""
    parser = subparsers.add_parser(
        "export",
        help="export a HeadMesh folder to game-ready GLB files (LODs), a preview and report.json",
        description=(
            "Write ASSET_DIR/head.glb (LOD0), head_lod1.glb, head_lod2.glb, preview.png and report.json "
            "from a HeadMesh folder (head.npz + albedo.png [+ normal_map.png]). Each decimated LOD gets a "
            "tangent-space normal map baked from the full-resolution mesh; each LOD's textures are half the "
            "previous LOD's side. A head made from synthetic views is labelled as such in preview.png, "
            "report.json and every GLB. Nothing is written if the input is invalid; report.json is written "
            "last and marks a complete asset. --format usd (or both) writes head.usdz instead of (or beside) "
            "the GLBs: the same LODs as variants, UsdPreviewSurface material, metersPerUnit 1, upAxis Y."
        ),
    )
    parser.add_argument("mesh_dir", metavar="MESH_DIR", help="HeadMesh folder written by `spin-to-mesh recon`")
    parser.add_argument("-o", "--output", required=True, metavar="ASSET_DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an existing ASSET_DIR")
    parser.add_argument(
        "--roughness",
        type=float,
        default=0.55,
        help="PBR roughness of the skin in [0, 1] (default %(default)s; with the roughness map, its skin level "
        "clipped to [0.4, 0.85])",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="glb",
        help="glb: head.glb + LOD files; usd: head.usdz (LODs as variants, needs usd-core); both (default glb)",
    )
    parser.add_argument("--usda", action="store_true", help="with a USD format, also write head.usda + textures/")
    parser.add_argument(
        "--lit-texture",
        action="store_true",
        help="use the texture with the views' lighting baked in (albedo_lit.png) instead of the de-lit albedo",
    )
    parser.add_argument(
        "--lod-budgets",
        default=",".join(str(b) for b in DEFAULT_LOD_BUDGETS),
        metavar="N0,N1,...",
        help="maximum triangles per LOD, LOD0 first (default %(default)s)",
    )
    parser.add_argument(
        "--max-texture-size",
        dest="max_texture_size",
        type=int,
        default=None,
        metavar="N",
        help=(
            "LOD0's largest texture side in pixels (scaled down to fit, never up; default: the HeadMesh's size); "
            f"each later LOD's textures are half the previous LOD's, LOD2 onward at most {MOBILE_TEXTURE_SIZE}"
        ),
    )
    # the option's name before the vocabulary was settled; kept so old scripts run
    parser.add_argument("--texture-size", dest="max_texture_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-normal-maps",
        action="store_true",
        help="do not bake per-LOD normal maps from the full-resolution mesh (decimated LODs then shade flatter)",
    )
    parser.add_argument(
        "--normal-map-size",
        type=int,
        default=None,
        metavar="N",
        help=(
            "size of the first decimated LOD's baked normal map, N x N (default: half the albedo size, at least 256); "
            "each later LOD's is half the previous one's"
        ),
    )
    parser.add_argument(
        "--no-roughness-map",
        action="store_true",
        help="one roughness factor (--roughness) instead of a texture estimated from the albedo "
        "(hair rougher than skin)",
    )
    parser.add_argument("--no-preview", action="store_true", help="skip the turntable preview.png")
    parser.add_argument(
        "--lighting-preview",
        action="store_true",
        help="also write lighting.png: LOD0 front and side, de-lit albedo beside the same views relit by recon's "
        "estimated lighting",
    )
    parser.add_argument("--no-validate", action="store_true", help="skip the Khronos glTF validator run")
    parser.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from exporters.config import ExportConfig, parse_lod_budgets
    from exporters.export import export_asset

    config = ExportConfig(
        roughness=args.roughness,
        lod_budgets=parse_lod_budgets(args.lod_budgets),
        max_texture_size=args.max_texture_size,
        preview=not args.no_preview,
        validate=not args.no_validate,
        overwrite=args.overwrite,
        normal_maps=not args.no_normal_maps,
        normal_map_size=args.normal_map_size,
        format=args.format,
        usda=args.usda,
        lit_texture=args.lit_texture,
        roughness_map=not args.no_roughness_map,
        lighting_preview=args.lighting_preview,
    )
    result = export_asset(args.mesh_dir, args.output, config, progress=True)
    report = result.report
    if report.get("synthetic"):
        print(f"warning: {report['warning']} (labelled in preview.png, report.json and every GLB)", file=sys.stderr)
    for lod in report["lods"]:
        if lod["file"] is None:
            continue
        normal = lod["normal_map"]
        print(
            f"{result.asset_dir / lod['file']}: {lod['triangles']} triangles, {lod['vertices']} vertices, "
            f"{lod['bytes'] / 1e6:.2f} MB" + (f", {normal['origin']} normal map {normal['width']} px" if normal else "")
        )
    usd = report.get("usd")
    if usd:
        for name in usd["files"].values():
            print(f"{result.asset_dir / name}: {len(usd['lods'])} LOD variants")
        check = usd["check"]
        print(f"{check['checker']}: {check['errors']} errors, {check['warnings']} warnings")
    if report["preview"]:
        print(f"{result.asset_dir / report['preview']['file']}")
    lighting_preview = report.get("lighting_preview")
    if lighting_preview and lighting_preview.get("file"):
        print(f"{result.asset_dir / lighting_preview['file']}")
    elif lighting_preview:
        print(f"warning: lighting.png not written: {lighting_preview['reason']}", file=sys.stderr)
    validation = report["validation"]
    if validation["ran"]:
        print(
            f"glTF validator {validation['validator']}: {validation['errors']} errors, "
            f"{validation['warnings']} warnings, {validation['infos']} infos"
        )
    else:
        print(f"glTF validator not run: {validation['reason']}")
    print(f"{result.files['report']} ({report['timings_s']['total']:.1f} s)")
    return 0
