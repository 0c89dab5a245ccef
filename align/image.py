"""Read any ordinary photo into one canonical form: uint8 RGB, upright, alpha composited on white.

Phones store rotation in EXIF, scanners write CMYK or 16-bit, web images come as palettes with
transparency: every later stage assumes none of that, so it is all resolved here, once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from align.errors import ImageReadError

log = logging.getLogger(__name__)

MAX_PIXELS = 178_956_970  # refused above this: Pillow's own decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS)
LARGE_PIXELS = 89_478_485  # downscaled on load above this (Pillow's warning threshold): a 100 Mpx DSLR photo is fine


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


def check_photo_path(source: str | os.PathLike[str], command: str | None = None) -> Path:
    """The photo's path if it names one readable file; otherwise one ImageReadError that says what to give.

    Called by the commands (`command` names the sub-command in the message) before any model is
    loaded, and by load_image.
    """
    path = Path(source)
    if path.is_dir():
        who = f"`spin-to-mesh {command}`" if command else "this step"
        raise ImageReadError(
            f"{path} is a folder: {who} takes one photo; for a folder or glob of photos use "
            f"`spin-to-mesh run {path} -o OUT`"
        )
    if not path.is_file():
        hint = " (`spin-to-mesh run` takes folders and globs)" if any(c in str(path) for c in "*?[") else ""
        raise ImageReadError(f"{path}: no such file; check the photo's path{hint}")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"{path}: cannot be read (permission denied); fix its permissions")
    return path


def _reduction(width: int, height: int) -> int:
    """Smallest integer factor that brings a large photo under LARGE_PIXELS (1 for ordinary photos)."""
    pixels = width * height
    return 1 if pixels <= LARGE_PIXELS else math.ceil(math.sqrt(pixels / LARGE_PIXELS))


def _decode(path: Path, data: bytes) -> np.ndarray:
    """Decode the file's bytes to canonical RGB, halving (or more) a photo above LARGE_PIXELS on load."""
    from PIL import Image

    with warnings.catch_warnings():
        # Above LARGE_PIXELS Pillow warns (DecompressionBombWarning); we downscale such photos instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise _too_large(path, w * h, f"{w}x{h} px, ")
            factor = _reduction(w, h)
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB", (math.ceil(w / factor), math.ceil(h / factor)))  # DCT-domain scaling: cheap
            im.load()
            rgb = _pil_to_rgb(_reduce(im) if factor > 1 else im)
    if factor > 1:
        log.warning(
            "%s: %dx%d px (%.0f Mpx) is over %.0f Mpx, so it was downscaled to %dx%d px on load",
            path, w, h, w * h / 1e6, LARGE_PIXELS / 1e6, rgb.shape[1], rgb.shape[0],
        )
    return rgb


def _reduce(im):  # noqa: ANN001, ANN202 - PIL.Image.Image, imported lazily
    """Average k x k blocks of a decoded image still over LARGE_PIXELS (upright first: EXIF may rotate it)."""
    from PIL import ImageOps

    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation; exif_transpose would copy even when upright
        im = ImageOps.exif_transpose(im)
    factor = _reduction(*im.size)
    if factor == 1:  # a JPEG the decoder already scaled (draft)
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        im = im.convert("I")  # exact; reduce() has no 16-bit kernel
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # palette, CMYK...: averaging needs colours
        im = im.convert("RGBA" if "transparency" in im.info or im.mode.endswith("A") else "RGB")
    return im.reduce(factor)


def _too_large(path: Path, pixels: int, size: str = "") -> ImageReadError:
    return ImageReadError(
        f"{path}: {size}{pixels / 1e6:.0f} Mpx is over the {MAX_PIXELS / 1e6:.0f} Mpx limit; "
        "downscale the photo (4096 px on the long side is plenty)"
    )


def load_image(source: str | os.PathLike[str] | np.ndarray) -> SourceImage:
    """Decode a path or an array into a SourceImage; anything unreadable raises ImageReadError naming the file.

    Photos over LARGE_PIXELS are downscaled on load (one log line); over MAX_PIXELS they are refused.
    """
    if isinstance(source, np.ndarray):
        rgb = array_to_rgb(source)
        digest = hashlib.sha256(np.ascontiguousarray(source).tobytes()).hexdigest()
        return SourceImage(rgb=rgb, sha256=digest, name="<array>")
    from PIL import Image, UnidentifiedImageError

    path = check_photo_path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ImageReadError(f"{path}: cannot be read ({reason}); check the file and its permissions") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        rgb = _decode(path, data)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, int(found.group(1)) if found else MAX_PIXELS + 1) from None
    except UnidentifiedImageError:
        # Pillow's own text names the in-memory buffer (<_io.BytesIO object at ...>), not the file
        raise ImageReadError(
            f"{path}: not a readable image (not a format Pillow knows); use a JPEG or PNG photo"
        ) from None
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        reason = " ".join(re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the file", str(exc)).split())
        raise ImageReadError(
            f"{path}: not a readable image (damaged or truncated: {reason or type(exc).__name__}); "
            "re-export or re-copy the photo"
        ) from None
    return SourceImage(rgb=rgb, sha256=digest, name=path.name)


def warp_minified(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """cv2.warpAffine onto a `size` square with zero borders, averaging the source pixels each output pixel
    covers when the map shrinks the photo (INTER_AREA first, then bilinear at about 1:1).

    Bilinear sampling alone reads one source pixel in k at a k:1 reduction, so a model's input, and the
    landmarks it gives, changed with the photo's resolution (aliasing), not with the face.
    """
    import cv2

    matrix = np.asarray(matrix, np.float64)
    k = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))  # output px per source px
    warp = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if k >= 0.75:
        return cv2.warpAffine(rgb, matrix, (size, size), **warp)
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) @ inverse[:, :2].T + inverse[:, 2]
    h, w = rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return cv2.warpAffine(rgb, matrix, (size, size), **warp)
    out_w, out_h = max(2, round((x1 - x0) * k)), max(2, round((y1 - y0) * k))
    small = cv2.resize(rgb[y0:y1, x0:x1], (out_w, out_h), interpolation=cv2.INTER_AREA)
    s = np.array([out_w / (x1 - x0), out_h / (y1 - y0)])
    # a pixel centre q of `small` is the source point (q + 0.5) / s - 0.5 + (x0, y0)
    linear = matrix[:, :2] / s[None, :]
    offset = matrix[:, :2] @ (0.5 / s - 0.5 + np.array([x0, y0])) + matrix[:, 2]
    return cv2.warpAffine(small, np.concatenate([linear, offset[:, None]], 1), (size, size), **warp)
