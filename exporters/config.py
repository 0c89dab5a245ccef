"""Typed export settings; invalid values fail here, before anything is read or written."""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporters.errors import ExportConfigError

DEFAULT_LOD_BUDGETS = (25_000, 7_000, 2_500)
MAX_TEXTURE_SIZE = 16_384
# LOD2 and later are for distance and phones: their textures never exceed this side.
MOBILE_TEXTURE_SIZE = 512
FORMATS = ("glb", "usd", "both")


@dataclass(frozen=True)
class ExportConfig:
    """What the exporter writes. Defaults give a game-ready head with three LODs and a preview.

    lod_budgets: maximum triangle count per LOD file, LOD0 first (head.glb, head_lod1.glb, ...).
    max_texture_size: LOD0's largest texture side (the albedo is scaled down to fit, never up); None keeps
        the source size. Every later LOD's textures are at most half the previous LOD's (lod_texture_sizes),
        and LOD2 onward at most MOBILE_TEXTURE_SIZE, because a far-away LOD shows fewer texels.
    texture_size: the old name of max_texture_size (kept for callers written before it was renamed).
    validate: run the Khronos glTF validator on every written GLB when Node.js + the package exist.
    normal_maps: bake a tangent-space normal map from the full-resolution mesh into every decimated LOD
        (exporters/normalbake.py), so low-poly LODs keep the source's shading detail. An undecimated LOD
        needs none (it *is* the source) and keeps the HeadMesh's own normal map, if any.
    normal_map_size: N x N size of the first LOD's baked map; each later LOD's normal map is half the
        previous one's. None: half LOD0's albedo size, at least 256, and at least the HeadMesh's own normal
        map size when it has one (so its detail survives the bake), but never more than half a normal map
        the previous LOD embeds.
    format: "glb" (head.glb + LOD files), "usd" (head.usdz with the LODs as variants, exporters/usd.py)
        or "both".
    usda: with a USD format, also write head.usda + textures/ (a loose, human-readable copy).
    lit_texture: use the HeadMesh's lit texture (albedo_lit.png, lighting baked in) instead of the de-lit
        albedo; a HeadMesh without one has only the texture it has.
    roughness_map: a roughness texture estimated from the de-lit albedo (skin about `roughness`, hair
        matte, exporters/material.py) instead of one factor; `roughness` is then the skin's level.
    lighting_preview: also write lighting.png, LOD0 front and side with the de-lit albedo beside the same
        views shaded by the lighting recon estimated (needs a HeadMesh with "lighting" in its metadata).
    """

    roughness: float = 0.55  # skin: a soft, slightly oily dielectric
    lod_budgets: tuple[int, ...] = DEFAULT_LOD_BUDGETS
    max_texture_size: int | None = None
    texture_size: int | None = None
    preview: bool = True
    preview_views: int = 8
    preview_tile: int = 256
    validate: bool = True
    overwrite: bool = False
    normal_maps: bool = True
    normal_map_size: int | None = None
    format: str = "glb"
    usda: bool = False
    lit_texture: bool = False
    roughness_map: bool = True
    lighting_preview: bool = False

    @property
    def writes_glb(self) -> bool:
        return self.format in ("glb", "both")

    @property
    def writes_usd(self) -> bool:
        return self.format in ("usd", "both")

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.usda and not self.writes_usd:
            raise ExportConfigError("--usda writes a USD copy: give it with --format usd or --format both")
        if not (isinstance(self.roughness, (int, float)) and math.isfinite(self.roughness)):
            raise ExportConfigError(f"roughness must be a number in [0, 1], got {self.roughness!r}")
        if not 0.0 <= self.roughness <= 1.0:
            raise ExportConfigError(f"roughness must be in [0, 1], got {self.roughness}")
        budgets = tuple(self.lod_budgets)
        if not 1 <= len(budgets) <= 8:
            raise ExportConfigError(f"give 1 to 8 LOD triangle budgets, got {len(budgets)}")
        for i, b in enumerate(budgets):
            if isinstance(b, bool) or not isinstance(b, int) or b < 4:
                raise ExportConfigError(f"LOD{i} triangle budget must be an integer >= 4, got {b!r}")
        if any(b > a for a, b in zip(budgets, budgets[1:], strict=False)):
            raise ExportConfigError(f"LOD budgets must not increase from LOD0 to the last LOD, got {list(budgets)}")
        object.__setattr__(self, "lod_budgets", budgets)
        if self.texture_size is not None and self.max_texture_size is None:
            object.__setattr__(self, "max_texture_size", self.texture_size)
        elif self.texture_size is not None and self.texture_size != self.max_texture_size:
            raise ExportConfigError(
                f"texture_size ({self.texture_size}) is the old name of max_texture_size ({self.max_texture_size}); "
                "give only max_texture_size"
            )
        size = self.max_texture_size
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= MAX_TEXTURE_SIZE
        ):
            raise ExportConfigError(f"texture size must be an integer in [16, {MAX_TEXTURE_SIZE}] pixels, got {size!r}")
        object.__setattr__(self, "texture_size", size)
        if self.normal_map_size is not None and (
            isinstance(self.normal_map_size, bool)
            or not isinstance(self.normal_map_size, int)
            or not 16 <= self.normal_map_size <= MAX_TEXTURE_SIZE
        ):
            raise ExportConfigError(
                f"normal map size must be an integer in [16, {MAX_TEXTURE_SIZE}] pixels, got {self.normal_map_size!r}"
            )
        if not 1 <= self.preview_views <= 64:
            raise ExportConfigError(f"preview views must be in [1, 64], got {self.preview_views}")
        if not 32 <= self.preview_tile <= 2048:
            raise ExportConfigError(f"preview tile size must be in [32, 2048] pixels, got {self.preview_tile}")


def default_normal_map_size(albedo_size: int, source_normal_map_size: int | None = None) -> int:
    """Half the albedo (a normal map's detail needs fewer texels than colour), at least 256, and no
    smaller than a normal map the HeadMesh already carries."""
    size = max(256, albedo_size // 2)
    if source_normal_map_size is not None:
        size = max(size, source_normal_map_size)
    return min(size, MAX_TEXTURE_SIZE)


def lod_texture_sizes(lod0_size: int, levels: int) -> list[int]:
    """Texture side per LOD: LOD0's as given, then at most half the previous LOD's, and LOD2 onward at most
    MOBILE_TEXTURE_SIZE, so a LOD that is only seen small does not carry (and download) full-size textures."""
    sizes = [int(lod0_size)]
    for level in range(1, levels):
        size = max(1, sizes[-1] // 2)
        if level >= 2:
            size = min(size, MOBILE_TEXTURE_SIZE)
        sizes.append(size)
    return sizes


def parse_lod_budgets(text: str) -> tuple[int, ...]:
    """Parse '25000,7000,2500' (the CLI form); a bad entry raises ExportConfigError naming it."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ExportConfigError("--lod-budgets is empty; give comma-separated triangle counts, e.g. 25000,7000,2500")
    budgets = []
    for p in parts:
        try:
            budgets.append(int(p.replace("_", "")))
        except ValueError:
            raise ExportConfigError(
                f"--lod-budgets: {p!r} is not an integer; give comma-separated triangle counts, e.g. 25000,7000,2500"
            ) from None
    return tuple(budgets)


def lod_filename(level: int) -> str:
    """head.glb for LOD0, head_lod{k}.glb after (DESIGN.md §2 Asset)."""
    return "head.glb" if level == 0 else f"head_lod{level}.glb"
