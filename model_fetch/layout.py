"""Where files sit in a weights folder: the lookups several stages share (no stage package imported).

Alignment components (the release's `weights/` folder, SPINMEROUND.md §2.1), used by `align` to run
them and by `smr_core` to list what a folder lacks and to measure identity::

    WEIGHTS/
      models/antelopev2/scrfd_10g_bnkps.onnx   face detector + 5 keypoints (insightface antelopev2)
      models/antelopev2/glintr100.onnx         ArcFace (or Arc2Face's arcface.onnx in its place)
      79999_iter.pth                           BiSeNet face parsing (zllrunning/face-parsing.PyTorch)

Converted diffusion folders (`spin-to-mesh weights convert`), read by `smr_core.weights` and by the
fetcher (a complete one stands in for spmr.ckpt and the encoder)::

    WEIGHTS/spinmeround.json, WEIGHTS/unet/, WEIGHTS/vae/, WEIGHTS/text_encoder/
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# ------------------------------------------------------------------------------------ alignment

DETECTOR_FILES = ("scrfd_10g_bnkps.onnx",)
RECOGNITION_FILES = ("arcface.onnx", "glintr100.onnx")  # Arc2Face's README swaps glintr100 for arcface.onnx
PARSER_FILE = "79999_iter.pth"
ANTELOPE_DIR = Path("models") / "antelopev2"  # under the weights folder

FETCH_HINT = "`spin-to-mesh weights fetch` downloads and verifies them (model_fetch)"

WHERE_TO_GET = {
    "antelopev2": "scrfd_10g_bnkps.onnx of insightface's antelopev2 pack (non-commercial; "
    f"{FETCH_HINT}, or unzip it from insightface's v0.7 GitHub release) in WEIGHTS/models/antelopev2/",
    "arcface": "Arc2Face's arcface.onnx (huggingface FoivosPar/Arc2Face; or antelopev2's glintr100.onnx) in "
    f"WEIGHTS/models/antelopev2/; {FETCH_HINT}",
    "parser": "79999_iter.pth of zllrunning/face-parsing.PyTorch (Google Drive link in its README) in WEIGHTS/; "
    f"{FETCH_HINT}",
}


@dataclass(frozen=True)
class AlignWeights:
    """Resolved paths of the production alignment components (None where absent)."""

    root: Path
    detector: Path | None
    recognition: Path | None
    parser: Path | None

    @property
    def complete(self) -> bool:
        return self.detector is not None and self.recognition is not None and self.parser is not None

    def missing(self) -> list[str]:
        """One line per missing component: the path expected and where to get it."""
        pack = self.root / ANTELOPE_DIR
        lines = []
        if self.detector is None:
            lines.append(f"{pack / DETECTOR_FILES[0]}: {WHERE_TO_GET['antelopev2']}")
        if self.recognition is None:
            lines.append(f"{pack / RECOGNITION_FILES[1]} (or {RECOGNITION_FILES[0]}): {WHERE_TO_GET['arcface']}")
        if self.parser is None:
            lines.append(f"{self.root / PARSER_FILE}: {WHERE_TO_GET['parser']}")
        return lines


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None) -> Path | None:
    """The explicit folder, else $SMR_WEIGHTS, else None."""
    if weights_dir is not None:
        return Path(weights_dir)
    env = os.environ.get("SMR_WEIGHTS")
    return Path(env) if env else None


def find_align_weights(root: Path) -> AlignWeights:
    """Look up each component under `root` without raising."""
    pack = root / ANTELOPE_DIR

    def first(names: tuple[str, ...], folder: Path) -> Path | None:
        return next((folder / n for n in names if (folder / n).is_file()), None)

    return AlignWeights(
        root=root,
        detector=first(DETECTOR_FILES, pack),
        recognition=first(RECOGNITION_FILES, pack),
        parser=first((PARSER_FILE,), root),
    )


# ------------------------------------------------------------------------ converted diffusion folders

CONVERTED_MANIFEST = "spinmeround.json"
WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
DIFFUSERS_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def has_weights(folder: Path, names: tuple[str, ...]) -> bool:
    """A diffusers/transformers folder: config.json and one of the weight files `names`."""
    return (folder / "config.json").is_file() and any((folder / n).is_file() for n in names)


def detect_kind(root: Path) -> Literal["official", "converted"]:
    """A folder with spinmeround.json or unet/ is ours; anything else is read as the official layout."""
    if (root / CONVERTED_MANIFEST).is_file() or (root / "unet").is_dir():
        return "converted"
    return "official"


def converted_missing(root: Path) -> list[Path]:
    """What a converted folder lacks for diffusion, in the order it is reported: manifest, text encoder, VAE, UNet."""
    missing = [] if (root / CONVERTED_MANIFEST).is_file() else [root / CONVERTED_MANIFEST]
    for name, names in (("text_encoder", WEIGHT_FILE_NAMES), ("vae", DIFFUSERS_WEIGHT_NAMES),
                        ("unet", DIFFUSERS_WEIGHT_NAMES)):
        if not has_weights(root / name, names):
            missing.append(root / name)
    return missing
