"""The same LODs as the GLBs, as USD for VFX pipelines: head.usdz (and head.usda + textures/ on request).

Stage layout (metersPerUnit 1, upAxis Y, defaultPrim /head)::

    /head                 Xform, kind component, variant set "lod" = lod0, lod1, ... (lod0 selected)
      mesh                Mesh: points, triangles, vertex normals, primvars:st (vertex), subdivisionScheme none
      Looks/skin          Material -> UsdPreviewSurface (metallic 0, roughness [texture .g], diffuseColor
                          texture, tangent-space normal map)

Every LOD lives in its own variant (mesh and material, since each LOD has its own texture sizes), so a
pipeline switches LOD with one variant selection. st keeps the HeadMesh's bottom-left origin, which is
USD's convention already (the GLB flips v; USD must not). The normal maps are the GLB's: glTF and
UsdPreviewSurface both read +Y as +v (OpenGL convention), so the same PNG works with scale 2, bias -1.

`check_usd` runs usd-core's own validators the way `usdchecker --useNewValidationFramework` selects them
(the Python ComplianceChecker that older `usdchecker` used is gone from usd-core 26), plus the
ComplianceChecker when an older usd-core still ships it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.errors import ExportConfigError
from spin_io.atomic import atomic_write_bytes

USDZ_NAME = "head.usdz"
USDA_NAME = "head.usda"
TEXTURE_DIR = "textures"
LOD_VARIANT_SET = "lod"
ROOT = "/head"


@dataclass
class UsdLod:
    """One LOD as the USD writer needs it: geometry in metres (glTF axes), HeadMesh UVs (v up), PNG textures."""

    vertices: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3), counter-clockwise seen from outside
    uv: np.ndarray  # (n, 2), v up (USD's st convention)
    normals: np.ndarray  # (n, 3) unit
    albedo_png: bytes
    normal_png: bytes | None = None
    roughness_png: bytes | None = None  # roughness in the G channel (the glTF metallicRoughness layout)


@dataclass
class UsdCheck:
    """What usd-core's validators said about one file."""

    checker: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "passed": self.passed,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "messages": (self.errors + self.warnings)[:20],
        }


def require_usd() -> str:
    """usd-core's version; ExportConfigError (before anything is written) when it is not installed."""
    try:
        from pxr import Usd
    except ImportError:
        raise ExportConfigError(
            "--format usd needs usd-core: pip install 'spin-to-mesh[usd]' (or pip install usd-core)"
        ) from None
    return ".".join(str(x) for x in Usd.GetVersion())


def _sdr_input(shader: Any, shader_id: str, name: str) -> Any:
    """Create a shader input with the type usd-core's Sdr registry declares for it (what ShaderSdrCompliance checks)."""
    from pxr import Sdf, Sdr

    node = Sdr.Registry().GetShaderNodeByIdentifier(shader_id)
    sdf_type = node.GetShaderInput(name).GetTypeAsSdfType().GetSdfType()
    return shader.CreateInput(name, Sdf.ValueTypeNames.Find(str(sdf_type)) or sdf_type)


def _texture(stage: Any, path: str, file: str, st: Any, colour_space: str) -> Any:
    """A UsdUVTexture reading `file` at st, clamped at the edges (the atlas has gutters, never wraps)."""
    from pxr import UsdShade

    tex = UsdShade.Shader.Define(stage, path)
    tex.CreateIdAttr("UsdUVTexture")
    _sdr_input(tex, "UsdUVTexture", "file").Set(file)
    _sdr_input(tex, "UsdUVTexture", "st").ConnectToSource(st)
    _sdr_input(tex, "UsdUVTexture", "sourceColorSpace").Set(colour_space)
    _sdr_input(tex, "UsdUVTexture", "wrapS").Set("clamp")
    _sdr_input(tex, "UsdUVTexture", "wrapT").Set("clamp")
    return tex


def _author_lod(stage: Any, lod: UsdLod, level: int, roughness: float, textures: dict[str, str]) -> None:
    """Mesh + material of one LOD at /head/mesh and /head/Looks/skin (inside the current edit target)."""
    from pxr import Gf, Sdf, UsdGeom, UsdShade, Vt

    mesh = UsdGeom.Mesh.Define(stage, f"{ROOT}/mesh")
    points = np.ascontiguousarray(lod.vertices, np.float32)
    faces = np.ascontiguousarray(lod.faces, np.int32)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.reshape(-1)))
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(lod.normals, np.float32)))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)  # a game mesh, not a subdivision cage
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    mesh.CreateDoubleSidedAttr(False)
    lo, hi = points.min(0), points.max(0)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
    st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(lod.uv, np.float32)))

    looks = f"{ROOT}/Looks"
    UsdGeom.Scope.Define(stage, looks)
    material = UsdShade.Material.Define(stage, f"{looks}/skin")
    surface = UsdShade.Shader.Define(stage, f"{looks}/skin/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    _sdr_input(surface, "UsdPreviewSurface", "metallic").Set(0.0)
    _sdr_input(surface, "UsdPreviewSurface", "useSpecularWorkflow").Set(0)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    reader = UsdShade.Shader.Define(stage, f"{looks}/skin/stReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    _sdr_input(reader, "UsdPrimvarReader_float2", "varname").Set("st")
    st_out = reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    base = _texture(stage, f"{looks}/skin/baseColor", textures["albedo"], st_out, "sRGB")
    _sdr_input(surface, "UsdPreviewSurface", "diffuseColor").ConnectToSource(
        base.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    )
    rough = _sdr_input(surface, "UsdPreviewSurface", "roughness")
    if "roughness" in textures:
        tex = _texture(stage, f"{looks}/skin/roughness", textures["roughness"], st_out, "raw")
        rough.ConnectToSource(tex.CreateOutput("g", Sdf.ValueTypeNames.Float))
    else:
        rough.Set(float(roughness))
    if "normal" in textures:
        tex = _texture(stage, f"{looks}/skin/normalMap", textures["normal"], st_out, "raw")
        # tangent-space normal = 2 * texel - 1 (UsdPreviewSurface spec; NormalMapTextureValidator checks it)
        _sdr_input(tex, "UsdUVTexture", "scale").Set(Gf.Vec4f(2.0, 2.0, 2.0, 1.0))
        _sdr_input(tex, "UsdUVTexture", "bias").Set(Gf.Vec4f(-1.0, -1.0, -1.0, 0.0))
        _sdr_input(surface, "UsdPreviewSurface", "normal").ConnectToSource(
            tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
        )
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)


def _write_textures(folder: Path, lods: list[UsdLod]) -> list[dict[str, str]]:
    """Write each LOD's PNGs under folder/textures; return their layer-relative asset paths per LOD."""
    (folder / TEXTURE_DIR).mkdir(parents=True, exist_ok=True)
    out = []
    for level, lod in enumerate(lods):
        paths: dict[str, str] = {}
        for role, png in (("albedo", lod.albedo_png), ("normal", lod.normal_png), ("roughness", lod.roughness_png)):
            if png is None:
                continue
            name = f"{TEXTURE_DIR}/lod{level}_{role}.png"
            (folder / name).write_bytes(png)
            paths[role] = f"./{name}"  # anchored to the layer, so the package and the loose .usda both resolve
        out.append(paths)
    return out


def author_stage(path: Path, lods: list[UsdLod], roughness: float, info: dict[str, Any] | None = None) -> None:
    """Write the stage (LOD variants, materials) to `path` (.usda or .usdc), textures under path's folder."""
    from pxr import Kind, Usd, UsdGeom

    textures = _write_textures(path.parent, lods)
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.meters)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    root = UsdGeom.Xform.Define(stage, ROOT).GetPrim()
    stage.SetDefaultPrim(root)
    Usd.ModelAPI(root).SetKind(Kind.Tokens.component)
    if info:
        root.SetCustomData({k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))})
        stage.GetRootLayer().documentation = str(info.get("generator", ""))
    variants = root.GetVariantSets().AddVariantSet(LOD_VARIANT_SET)
    for level, lod in enumerate(lods):
        name = f"lod{level}"
        variants.AddVariant(name)
        variants.SetVariantSelection(name)
        with variants.GetVariantEditContext():
            _author_lod(stage, lod, level, roughness, textures[level])
    variants.SetVariantSelection("lod0")
    stage.GetRootLayer().Save()


def write_usd(
    asset_dir: Path, lods: list[UsdLod], roughness: float, usda: bool = False, info: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write asset_dir/head.usdz (and head.usda + textures/ when `usda`), each file atomically."""
    from pxr import UsdUtils

    require_usd()
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="spin-usd-") as tmp:
        work = Path(tmp)
        author_stage(work / "head.usdc", lods, roughness, info)
        package = work / "package" / USDZ_NAME
        package.parent.mkdir()
        if not UsdUtils.CreateNewUsdzPackage(str(work / "head.usdc"), str(package)):
            raise RuntimeError(f"usd-core could not package {work / 'head.usdc'} into a usdz")
        files["usdz"] = atomic_write_bytes(asset_dir / USDZ_NAME, package.read_bytes())
        if usda:
            loose = work / "loose"
            loose.mkdir()
            author_stage(loose / USDA_NAME, lods, roughness, info)
            for png in sorted((loose / TEXTURE_DIR).iterdir()):
                atomic_write_bytes(asset_dir / TEXTURE_DIR / png.name, png.read_bytes())
            files["usda"] = atomic_write_bytes(asset_dir / USDA_NAME, (loose / USDA_NAME).read_bytes())
        elif (asset_dir / USDA_NAME).exists():  # an overwrite without --usda: no stale loose copy
            (asset_dir / USDA_NAME).unlink()
            shutil.rmtree(asset_dir / TEXTURE_DIR, ignore_errors=True)
    return files


def check_usd(path: str | Path) -> UsdCheck:
    """Run usd-core's validators on a .usdz/.usda the way `usdchecker --useNewValidationFramework --arkit`
    picks them (every registered validator, package checks included; the root-package-only variant left
    out), on the default variant selection and on every variant of every variant set.

    With an older usd-core that still has the Python UsdUtils.ComplianceChecker (arkit=False), its
    errors and failed checks are added too.
    """
    from pxr import Usd, UsdUtils, UsdValidation

    registry = UsdValidation.ValidationRegistry()
    names = [
        m.name
        for m in registry.GetAllValidatorMetadata()
        if m.name != "usdUtilsValidators:RootPackageValidator" and not m.isSuite
    ]
    context = UsdValidation.ValidationContext(registry.GetOrLoadValidatorsByName(names))
    stage = Usd.Stage.Open(str(path))
    result = UsdCheck(checker=f"usd-core {'.'.join(map(str, Usd.GetVersion()))} UsdValidation")
    if stage is None:
        result.errors.append(f"{path}: usd-core cannot open the stage")
        return result
    selections: list[tuple[Any, str, str] | None] = [None]
    for prim in stage.Traverse():
        sets = prim.GetVariantSets()
        for name in sets.GetNames():
            selections += [(prim, name, v) for v in sets.GetVariantSet(name).GetVariantNames()]
    seen: set[str] = set()
    for choice in selections:
        if choice is not None:
            prim, name, variant = choice
            with Usd.EditContext(stage, stage.GetSessionLayer()):
                prim.GetVariantSets().SetSelection(name, variant)
        where = "" if choice is None else f" [{choice[1]}={choice[2]}]"
        for error in context.Validate(stage):
            text = error.GetErrorAsString() + where
            if text in seen:
                continue
            seen.add(text)
            kind = error.GetType()
            if kind == UsdValidation.ValidationErrorType.Error:
                result.errors.append(text)
            elif kind == UsdValidation.ValidationErrorType.Warn:
                result.warnings.append(text)
            elif kind == UsdValidation.ValidationErrorType.Info:
                result.infos.append(text)
    stage.GetSessionLayer().Clear()
    legacy = getattr(UsdUtils, "ComplianceChecker", None)
    if legacy is not None:
        checker = legacy(arkit=False, skipARKitRootLayerCheck=False, rootPackageOnly=False, skipVariants=False)
        checker.CheckCompliance(str(path))
        result.checker += " + ComplianceChecker"
        result.errors += list(checker.GetErrors()) + list(checker.GetFailedChecks())
        result.warnings += list(checker.GetWarnings())
    return result


def read_usd_lods(path: str | Path) -> list[dict[str, Any]]:
    """Per LOD variant: triangle count, vertex count and bounding box in metres (for reports and tests)."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    root = stage.GetDefaultPrim()
    variants = root.GetVariantSets().GetVariantSet(LOD_VARIANT_SET)
    out = []
    for name in variants.GetVariantNames():
        with Usd.EditContext(stage, stage.GetSessionLayer()):  # never edits the (read-only) package
            variants.SetVariantSelection(name)
        mesh = UsdGeom.Mesh(stage.GetPrimAtPath(f"{ROOT}/mesh"))
        points = np.asarray(mesh.GetPointsAttr().Get(), np.float64)
        counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get())
        lo, hi = points.min(0), points.max(0)
        out.append(
            {
                "variant": name,
                "triangles": int((counts - 2).sum()),
                "vertices": int(len(points)),
                "bounding_box_m": {"min": lo.tolist(), "max": hi.tolist(), "size": (hi - lo).tolist()},
            }
        )
    return out
