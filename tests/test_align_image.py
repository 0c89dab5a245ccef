"""Photo decoding: every common file flavour becomes upright uint8 RGB; bad files give ImageReadError."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from align.errors import ImageReadError
from align.image import array_to_rgb, load_image


def _pattern(h: int = 60, w: int = 80) -> np.ndarray:
    """An asymmetric RGB image: a red block in the top-left corner on grey."""
    img = np.full((h, w, 3), 128, np.uint8)
    img[:10, :20] = (255, 0, 0)
    return img


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_pattern())
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    rgb = load_image(path).rgb
    assert rgb.shape == (80, 60, 3)  # width and height swapped
    assert rgb[:20, -10:, 0].mean() > 200 and rgb[:20, -10:, 2].mean() < 60  # red block now top-right


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "1"])
def test_colour_modes_become_rgb(tmp_path, mode):
    path = tmp_path / f"x.{'tif' if mode == 'CMYK' else 'png'}"
    Image.fromarray(_pattern()).convert(mode).save(path)
    rgb = load_image(path).rgb
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    if mode in ("CMYK", "P"):
        assert rgb[5, 5, 0] > 200 and rgb[5, 5, 1] < 60  # the red block survives
    if mode == "L":
        assert np.all(rgb[..., 0] == rgb[..., 1])


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., :3] = 50
    rgba[:, :40, 3] = 255  # left half opaque, right half transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = load_image(path).rgb
    assert np.all(rgb[:, :40] == 50) and np.all(rgb[:, 40:] == 255)
    pal = Image.fromarray(rgba, "RGBA").convert("P", palette=Image.Palette.ADAPTIVE)
    pal.info["transparency"] = pal.getpixel((70, 10))
    pal.save(tmp_path / "p.png", transparency=pal.getpixel((70, 10)))
    assert load_image(tmp_path / "p.png").rgb[10, 70].tolist() == [255, 255, 255]


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 80).astype(np.uint16), (60, 1))
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    rgb = load_image(path).rgb
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 <= rgb[0, 40, 0] <= 135


def test_arrays_of_any_depth():
    assert array_to_rgb(np.full((20, 20), 65535, np.uint16))[0, 0].tolist() == [255, 255, 255]
    assert array_to_rgb(np.full((20, 20, 3), 0.5, np.float32))[0, 0].tolist() == [128, 128, 128]
    src = load_image(_pattern())
    assert src.sha256 == hashlib.sha256(_pattern().tobytes()).hexdigest()
    with pytest.raises(ImageReadError, match="shape"):
        array_to_rgb(np.zeros((20, 20, 2)))
    with pytest.raises(ImageReadError, match="NaN"):
        array_to_rgb(np.full((20, 20), np.nan))
    with pytest.raises(ImageReadError, match="only 8x8 px"):
        array_to_rgb(np.zeros((8, 8, 3), np.uint8))


def test_file_hash_is_of_the_file_bytes(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(_pattern()).save(path)
    assert load_image(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_files_say_why(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("hello, not a photo")
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_image(tmp_path / "notes.txt")
    Image.fromarray(_pattern(300, 300)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="cut.jpg: not a readable image"):
        load_image(tmp_path / "cut.jpg")


def test_warp_minified_averages_what_bilinear_sampling_aliases():
    """A 4:1 rotated reduction of 1-px stripes is their mean (bilinear alone reads single stripes), a smooth ramp
    lands where the affine map says (pixel centres kept), and the photo at half resolution gives the same input."""
    import cv2

    from align.facemesh import roi_matrix
    from align.image import warp_minified

    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255
    m = roi_matrix(np.array([400.0, 400.0]), 768.0, 0.3)  # 768 px square -> 192 px, turned 0.3 rad
    inner = (slice(20, 172), slice(20, 172))
    assert np.abs(warp_minified(stripes, m, 192)[inner].astype(float) - 127.5).max() < 8
    assert np.abs(cv2.warpAffine(stripes, m, (192, 192)).astype(float)[inner] - 127.5).max() > 60
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 800)[None, :, None], 800, 0), 3, 2).astype(np.uint8)
    out = warp_minified(ramp, m, 192)[..., 0].astype(float)
    inverse = cv2.invertAffineTransform(m)
    q = np.stack(np.meshgrid(np.arange(192.0), np.arange(192.0)), -1)
    expected = (q @ inverse[:, :2].T + inverse[:, 2])[..., 0] * 255 / 799
    assert np.abs(out - expected)[inner].max() < 1.5
    photo = np.random.default_rng(0).integers(0, 256, (800, 800, 3)).astype(np.uint8)
    photo = cv2.GaussianBlur(photo, (0, 0), 3)
    half = cv2.resize(photo, (400, 400), interpolation=cv2.INTER_AREA)
    m_half = roi_matrix(np.array([199.75, 199.75]), 384.0, 0.3)
    diff = warp_minified(photo, m, 192).astype(float) - warp_minified(half, m_half, 192).astype(float)
    assert np.abs(diff[inner]).mean() < 1.0
