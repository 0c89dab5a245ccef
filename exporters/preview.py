"""Turntable contact sheet: the textured head from evenly spaced yaw angles, rendered in software.

Orthographic views (the same scale in every tile, so proportions can be compared), a headlight
with ambient term so the shape reads, 2x supersampling for clean edges. `lighting_sheet` (lighting.png,
--lighting-preview) renders the de-lit albedo beside the same views relit by recon's estimated lighting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from exporters.geometry import vertex_normals
from exporters.raster import rasterize, sample_texture

BACKGROUND = np.array([0.86, 0.86, 0.86], np.float32)
LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])


def yaw_matrix(yaw_deg: float) -> np.ndarray:
    """Rotation about +Y (the turntable axis) by yaw degrees; yaw 0 shows the face (+Z toward the camera)."""
    t = np.deg2rad(yaw_deg)
    return np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])


def render_view(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
    yaw_deg: float,
    size: int,
    centre: np.ndarray,
    radius: float,
    normals: np.ndarray | None = None,
    lit: bool = True,
    supersample: int = 2,
    shader: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one orthographic view looking down -Z after turning the head by yaw_deg.

    The sphere (centre, radius) fills 95 % of the tile, so tiles of meshes with the same bounds
    line up pixel for pixel. `shader(albedo, normals)` replaces the headlight: it gets the fragments'
    albedo (Q, 3) and unit normals (Q, 3) in the mesh's own axes (a light fixed to the head, as recon
    estimated it) and returns their colours. Returns (image (size, size, 3) float32 in [0, 1], coverage).
    """
    s = size * supersample
    rot = yaw_matrix(yaw_deg)
    p = (np.asarray(vertices, np.float64) - centre) @ rot.T
    scale = 0.95 * s / (2.0 * radius)
    xy = np.stack([s / 2 + scale * p[:, 0], s / 2 - scale * p[:, 1]], axis=1)
    face_id, bary = rasterize(xy, -p[:, 2], faces, s, s)
    covered = face_id >= 0
    colour = np.tile(BACKGROUND, (s, s, 1))
    fid = face_id[covered]
    lam = bary[covered].astype(np.float64)
    tri = faces[fid]
    frag_uv = np.einsum("qc,qcd->qd", lam, np.asarray(uv, np.float64)[tri])
    albedo = sample_texture(texture, frag_uv)[:, :3]
    if lit or shader is not None:
        n = normals if normals is not None else vertex_normals(vertices, faces)
        frag_n = np.einsum("qc,qcd->qd", lam, np.asarray(n, np.float64)[tri])
        frag_n /= np.maximum(np.linalg.norm(frag_n, axis=1, keepdims=True), 1e-12)
    if shader is not None:
        albedo = np.asarray(shader(albedo, frag_n), np.float32)
    elif lit:
        frag_n = frag_n @ rot.T
        shade = 0.3 + 0.7 * np.clip(frag_n @ LIGHT, 0.0, 1.0)
        albedo = albedo * shade[:, None].astype(np.float32)
    colour[covered] = albedo
    if supersample > 1:
        colour = colour.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
        covered = covered.reshape(size, supersample, size, supersample).mean(axis=(1, 3)) >= 0.5
    return colour.astype(np.float32), covered


def bounding_sphere(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of the bounding box and the largest distance from it (a sphere every yaw fits in)."""
    v = np.asarray(vertices, np.float64)
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    return centre, max(radius, 1e-9)


def turntable_sheet(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
    views: int = 8,
    tile: int = 256,
    columns: int | None = None,
    normals: np.ndarray | None = None,
    labels: bool = True,
) -> np.ndarray:
    """A grid of `views` tiles at yaw 0, 360/views, ... degrees; returns an RGB uint8 image."""
    columns = columns or min(views, 4)
    rows = -(-views // columns)
    centre, radius = bounding_sphere(vertices)
    if normals is None:
        normals = vertex_normals(vertices, faces)
    sheet = np.tile(BACKGROUND, (rows * tile, columns * tile, 1))
    yaws = [360.0 * k / views for k in range(views)]
    for k, yaw in enumerate(yaws):
        image, _ = render_view(vertices, faces, uv, texture, yaw, tile, centre, radius, normals=normals)
        r, c = divmod(k, columns)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = image
    out = (np.clip(sheet, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if labels:
        from PIL import Image, ImageDraw

        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        for k, yaw in enumerate(yaws):
            r, c = divmod(k, columns)
            draw.text((c * tile + 6, r * tile + 4), f"yaw {yaw:g}", fill=(40, 40, 40))
        out = np.asarray(pil)
    return out


def lighting_sheet(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    albedo: np.ndarray,
    lighting: dict[str, Any],
    tile: int = 256,
    normals: np.ndarray | None = None,
) -> np.ndarray:
    """lighting.png: [de-lit front | de-lit side | relit front | relit side], one row of `tile`-px tiles.

    The left half is the albedo as exported (no shading at all), the right half the same views shaded by
    the lighting recon estimated and divided out (exporters/lighting.py), so one can judge whether the
    estimate explains the photo's light. The light is fixed to the head; the side view shows the side the
    key light comes from (+X: yaw -90, else -X: yaw 90), where its terminator is.
    """
    from exporters.lighting import relight

    centre, radius = bounding_sphere(vertices)
    if normals is None:
        normals = vertex_normals(vertices, faces)

    def shade(colours: np.ndarray, frag_normals: np.ndarray) -> np.ndarray:
        return relight(colours, frag_normals, lighting)

    key = lighting.get("key_light_direction")
    side = "+X" if key is not None and float(key[0]) > 0 else "-X"
    yaws = (0.0, -90.0 if side == "+X" else 90.0)
    tiles = []
    for shader in (None, shade):
        for yaw in yaws:
            image, _ = render_view(
                vertices, faces, uv, albedo, yaw, tile, centre, radius, normals=normals, lit=False, shader=shader
            )
            tiles.append(image)
    out = (np.clip(np.concatenate(tiles, axis=1), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    from PIL import Image, ImageDraw

    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    names = [f"{kind} {view}" for kind in ("de-lit", "relit") for view in ("front", f"side {side}")]
    for k, name in enumerate(names):
        draw.text((k * tile + 6, 4), name, fill=(40, 40, 40))
    return np.asarray(pil)


SYNTHETIC_BANNER = "SYNTHETIC HEAD - not from the photo"  # ASCII: the bundled font has no em dash
_BANNER_RED = (200, 16, 16)


def _banner_font(height: int):  # -> ImageFont.FreeTypeFont | ImageFont.ImageFont
    """A font about `height` px tall: Pillow's bundled scalable font where FreeType is available."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=height)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def label_synthetic(sheet: np.ndarray, tile: int, text: str = SYNTHETIC_BANNER) -> np.ndarray:
    """Add a red banner above the sheet, a red frame, and a tag on every `tile`-px tile, so that a synthetic
    head (a procedural stand-in, not reconstructed from the photo) cannot pass for a result, even cropped."""
    from PIL import Image, ImageDraw

    height, width = sheet.shape[:2]
    band = max(28, min(96, width // 16))
    canvas = Image.new("RGB", (width, height + band), _BANNER_RED)
    canvas.paste(Image.fromarray(sheet), (0, band))
    draw = ImageDraw.Draw(canvas)
    font = _banner_font(int(band * 0.6))
    box = draw.textbbox((0, 0), text, font=font)
    if box[2] - box[0] > width - 8:  # a narrow sheet: the short form
        text = "SYNTHETIC HEAD"
        box = draw.textbbox((0, 0), text, font=font)
    x = (width - (box[2] - box[0])) // 2 - box[0]
    draw.text((x, (band - (box[3] - box[1])) // 2 - box[1]), text, fill=(255, 255, 255), font=font)
    frame = max(2, band // 12)
    draw.rectangle((0, 0, width - 1, height + band - 1), outline=_BANNER_RED, width=frame)
    tag_font = _banner_font(max(10, tile // 12))
    for r in range(max(1, height // tile)):
        for c in range(max(1, width // tile)):
            x, y = c * tile + frame + 4, band + (r + 1) * tile - frame - 4
            box = draw.textbbox((x, y), "SYNTHETIC", font=tag_font, anchor="ls")
            draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=_BANNER_RED)
            draw.text((x, y), "SYNTHETIC", fill=(255, 255, 255), font=tag_font, anchor="ls")
    return np.asarray(canvas)
