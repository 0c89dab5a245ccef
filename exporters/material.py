"""A roughness texture from the de-lit albedo: skin stays a soft sheen, hair goes matte.

One roughness factor makes hair as glossy as skin (or skin as dull as hair). The de-lit albedo tells them
apart well enough for a material, but not by brightness: skin runs from about V = 0.15 (the darkest skin
tones) to 0.95, and dark skin is as smooth as light skin. What differs is texture and colour: hair is busy
(strands: high *relative* local contrast, whatever its level), grey, or darker than any skin; skin is warm,
saturated and smooth. Per texel t, with V = max(R, G, B), S = (V - min) / V, hue h in degrees and τ_t the
local standard deviation of log luminance (a ratio, so the same on dark and light albedo):

    busy   = ramp(τ; 0.08, 0.2)
    w_skin = warm(h) · ramp(S; 0.1, 0.2) · ramp(V; 0.08, 0.14) · (1 - ramp(V; 0.97, 1.0)) · (1 - busy)
    w_hair = max(dark, grey, busy)  with  dark = 1 - ramp(V; 0.05, 0.1),  grey = 1 - ramp(S; 0.06, 0.14)
    η_t = w_hair (1 - w_skin)                                     hairness: hair-like and not skin-like
    r_t = r_skin + (r_hair - r_skin) η_t                          roughness, then a Gaussian blur and a clip
    r_t ∈ [ROUGHNESS_MIN, ROUGHNESS_MAX]

The blur (σ ≈ 1/256 of the texture side) keeps the map smooth so strands do not alias into speckle. The lighting
residual of the de-lighting fit is not in the HeadMesh, so only the albedo is used. The map is stored the glTF
way (metallicRoughnessTexture: G = roughness, B = metallic = 0; R unused, set to 255) and read as channel g
by UsdPreviewSurface.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter

ROUGHNESS_MIN = 0.4
ROUGHNESS_MAX = 0.85
HAIR_ROUGHNESS = 0.8
ESTIMATE_SIDE = 1024
LUMA = np.array([0.2126, 0.7152, 0.0722])


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below lo, 1 above hi, smoothstep between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _hue_deg(rgb: np.ndarray, value: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    c = np.maximum(chroma, 1e-6)
    hue = np.where(value == r, ((g - b) / c) % 6.0, np.where(value == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    return 60.0 * hue


def _warm(hue: np.ndarray) -> np.ndarray:
    """Skin hues: red to orange-yellow (about -10 to 50 degrees), soft edges."""
    h = np.where(hue > 180.0, hue - 360.0, hue)
    return _ramp(h, -25.0, -10.0) * (1.0 - _ramp(h, 50.0, 65.0))


def busyness(rgb: np.ndarray, window: int) -> np.ndarray:
    """busy in [0, 1]: local std τ of log luminance over `window` texels, ramped (strands, not shading)."""
    log_lum = np.log(np.maximum(rgb @ LUMA, 1.0 / 255.0))
    mean = uniform_filter(log_lum, window, mode="nearest")
    tau = np.sqrt(np.maximum(uniform_filter(log_lum**2, window, mode="nearest") - mean**2, 0.0))
    return _ramp(tau, 0.08, 0.2)


def skin_weight(rgb: np.ndarray, busy: np.ndarray | None = None) -> np.ndarray:
    """w_skin in [0, 1] per texel of an (H, W, 3) sRGB image in [0, 1] (busy: from `busyness`, 0 if None)."""
    value = rgb.max(-1)
    chroma = value - rgb.min(-1)
    saturation = chroma / np.maximum(value, 1e-6)
    lit = _ramp(value, 0.08, 0.14) * (1.0 - _ramp(value, 0.97, 1.0))
    smooth = 1.0 if busy is None else 1.0 - busy
    return _warm(_hue_deg(rgb, value, chroma)) * _ramp(saturation, 0.1, 0.2) * lit * smooth


def hair_weight(rgb: np.ndarray, window: int) -> np.ndarray:
    """w_hair in [0, 1]: darker than any skin, grey, or busy (high local contrast over `window` texels)."""
    value = rgb.max(-1)
    saturation = (value - rgb.min(-1)) / np.maximum(value, 1e-6)
    dark = 1.0 - _ramp(value, 0.05, 0.1)
    grey = 1.0 - _ramp(saturation, 0.06, 0.14)
    return np.maximum(np.maximum(dark, grey), busyness(rgb, window))


def roughness_map(albedo: np.ndarray, skin_roughness: float, hair_roughness: float = HAIR_ROUGHNESS) -> np.ndarray:
    """(H, W) float32 roughness in [ROUGHNESS_MIN, ROUGHNESS_MAX] from an (H, W, 3) uint8 de-lit albedo.

    A map larger than ESTIMATE_SIDE is estimated at that side and scaled up: it is blurred anyway, and a 4k
    atlas would otherwise cost seconds of filtering for no visible difference.
    """
    from PIL import Image

    albedo = np.ascontiguousarray(np.asarray(albedo, np.uint8)[..., :3])
    height, width = albedo.shape[:2]
    if max(height, width) <= ESTIMATE_SIDE:
        return _estimate(albedo, skin_roughness, hair_roughness)
    scale = ESTIMATE_SIDE / max(height, width)
    small = Image.fromarray(albedo).resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX
    )
    rough = _estimate(np.asarray(small), skin_roughness, hair_roughness)
    full = Image.fromarray(rough, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(full, np.float32), ROUGHNESS_MIN, ROUGHNESS_MAX)


def _estimate(albedo: np.ndarray, skin_roughness: float, hair_roughness: float) -> np.ndarray:
    """The equations of the module docstring at the albedo's own resolution."""
    rgb = np.asarray(albedo, np.float64)[..., :3] / 255.0
    side = max(rgb.shape[:2])
    window = max(3, side // 128) | 1
    hairness = hair_weight(rgb, window) * (1.0 - skin_weight(rgb, busyness(rgb, window)))
    r_skin = float(np.clip(skin_roughness, ROUGHNESS_MIN, ROUGHNESS_MAX))
    r_hair = float(np.clip(hair_roughness, ROUGHNESS_MIN, ROUGHNESS_MAX))
    rough = r_skin + (r_hair - r_skin) * hairness
    rough = gaussian_filter(rough, sigma=max(1.0, side / 256.0), mode="nearest")
    return np.clip(rough, ROUGHNESS_MIN, ROUGHNESS_MAX).astype(np.float32)


def metallic_roughness_image(roughness: np.ndarray) -> np.ndarray:
    """glTF metallicRoughnessTexture layout, (H, W, 3) uint8: R 255 (unused), G roughness, B metallic 0."""
    out = np.zeros((*roughness.shape, 3), np.uint8)
    out[..., 0] = 255
    out[..., 1] = np.round(np.clip(roughness, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out
