"""Read any ordinary photo into one canonical form: uint8 RGB, upright, alpha composited on white.

Phones store rotation in EXIF, scanners write CMYK or 16-bit, web images come as palettes with
transparency: every later stage assumes none of that, so it is all resolved here, once.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smr_core.align.errors import ImageReadError

MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS)


@dataclass
class SourceImage:
    """The decoded photo and what identifies it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    sha256: str
    name: str


def _white_composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight alpha over white: transparent pixels become background, as the model expects."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer or float samples of any depth to uint8 (16-bit: /257, float: [0, 1] assumed)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        top = 65535.0 if arr.max(initial=0) > 255 or arr.dtype in (np.uint16, np.int32, np.uint32) else 255.0
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageReadError("the image array holds NaN or infinite values")
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)
    raise ImageReadError(f"unsupported image sample type {arr.dtype}")


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """Canonicalise an array image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of any depth -> uint8 RGB."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(_to_uint8(arr)[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = _to_uint8(arr)
        if arr.shape[2] == 4:
            arr = _white_composite(arr[..., :3], arr[..., 3])
    else:
        raise ImageReadError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}")
    if arr.shape[0] < 16 or arr.shape[1] < 16:
        raise ImageReadError(f"the image is only {arr.shape[1]}x{arr.shape[0]} px; a face photo needs far more")
    return np.ascontiguousarray(arr)


def _pil_to_rgb(im) -> np.ndarray:  # noqa: ANN001 - PIL.Image.Image, imported lazily
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)  # orientation tag -> upright pixels
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return array_to_rgb(np.asarray(im).astype(np.uint16 if mode != "I" else np.int64))
    if mode == "F":
        return array_to_rgb(np.asarray(im, np.float32))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"))
        return array_to_rgb(rgba)
    if mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return array_to_rgb(np.asarray(im))


def load_image(source: str | os.PathLike[str] | np.ndarray) -> SourceImage:
    """Decode a path or an array into a SourceImage; anything unreadable raises ImageReadError."""
    if isinstance(source, np.ndarray):
        rgb = array_to_rgb(source)
        digest = hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()
        return SourceImage(rgb=rgb, sha256=digest, name="<array>")
    from PIL import Image, UnidentifiedImageError

    path = Path(source)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the photo's path")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(f"{path}: {w}x{h} px exceeds the {MAX_PIXELS:,}-pixel limit; downscale the photo")
            im.load()
            rgb = _pil_to_rgb(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: too large to decode safely ({exc}); downscale the photo") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc}); use a JPEG or PNG photo") from exc
    return SourceImage(rgb=rgb, sha256=digest, name=path.name)
