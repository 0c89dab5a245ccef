"""Finding SpinMeRound weights on disk: the official release layout or our converted folder.

Official (SPINMEROUND.md §2.1), DIR from --weights or $SMR_WEIGHTS:
    DIR/spmr.ckpt (or spmr.safetensors)   diffusion model: UNet + VAE (+ optional conditioner)
    DIR/models/encoder/                   Arc2Face CLIP text encoder (config.json + weights)
    DIR/models/antelopev2/*.onnx          face detection + ArcFace (alignment only)
    DIR/79999_iter.pth                    BiSeNet face parsing (alignment only)
Converted (`spin-to-mesh weights convert`):
    DIR/spinmeround.json, DIR/unet/, DIR/vae/, DIR/text_encoder/ (diffusers/transformers folders)
    plus the same alignment files if they were copied along.

Missing files raise ONE WeightsNotFoundError that lists every file and where to get it.
Fetching them (sources, checksums, licences) is model_fetch: `spin-to-mesh weights fetch`; the file names
of the alignment components and of the converted folders are model_fetch.layout's (shared with align and
the fetcher).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from model_fetch.layout import (
    ANTELOPE_DIR,
    CONVERTED_MANIFEST,
    DETECTOR_FILES,
    DIFFUSERS_WEIGHT_NAMES,
    PARSER_FILE,
    RECOGNITION_FILES,
    WEIGHT_FILE_NAMES,
    WHERE_TO_GET,
    converted_missing,
    detect_kind,
    find_align_weights,
    has_weights,
)
from smr_core.errors import WeightsNotFoundError

ENV_VAR = "SMR_WEIGHTS"
MANIFEST = CONVERTED_MANIFEST
CHECKPOINT_NAMES = ("spmr.ckpt", "spmr.safetensors")
ENCODER_DIR = Path("models") / "encoder"
BISENET_FILE = PARSER_FILE

SOURCES = {
    "spmr.ckpt": "the SpinMeRound authors' release (Google Drive link in the README of "
    "https://github.com/spin-me-round/SpinMeRound)",
    "encoder": "Hugging Face FoivosPar/Arc2Face, subfolder 'encoder' (config.json + pytorch_model.bin)",
}
FETCH_LINE = (
    "`spin-to-mesh weights fetch` downloads and verifies them (into $SMR_WEIGHTS or ~/.cache/spin-to-mesh/weights); "
    "without weights, try the demo: spin-to-mesh run PHOTO -o OUT --views-backend synthetic"
)


@dataclass(frozen=True)
class MissingFile:
    """One absent file or folder: where it should be, what needs it, where to get it."""

    path: Path
    needed_for: Literal["diffusion", "alignment"]
    source: str

    def line(self) -> str:
        return f"  - {self.path} ({self.needed_for}): get it from {self.source}"


@dataclass(frozen=True)
class WeightsLayout:
    """What `find_weights` found: the layout kind and the path of each component."""

    root: Path
    kind: Literal["official", "converted"]
    checkpoint: Path | None  # official: spmr.ckpt / spmr.safetensors
    encoder: Path | None  # official: models/encoder/; converted: text_encoder/
    unet: Path | None = None  # converted only
    vae: Path | None = None  # converted only
    antelopev2: Path | None = None
    bisenet: Path | None = None
    missing: tuple[MissingFile, ...] = field(default=())

    @property
    def diffusion_complete(self) -> bool:
        return not any(m.needed_for == "diffusion" for m in self.missing)

    @property
    def alignment_complete(self) -> bool:
        return not any(m.needed_for == "alignment" for m in self.missing)


def _alignment(root: Path) -> tuple[Path | None, Path | None, list[MissingFile]]:
    """Alignment files, judged by the shared lookup (model_fetch.layout: one source of truth for their names)."""
    found = find_align_weights(root)
    pack = root / ANTELOPE_DIR
    missing: list[MissingFile] = []
    if found.detector is None:
        missing.append(MissingFile(pack / DETECTOR_FILES[0], "alignment", WHERE_TO_GET["antelopev2"]))
    if found.recognition is None:
        names = " or ".join(reversed(RECOGNITION_FILES))
        missing.append(MissingFile(pack / f"{{{names}}}", "alignment", WHERE_TO_GET["arcface"]))
    if found.parser is None:
        missing.append(MissingFile(root / BISENET_FILE, "alignment", WHERE_TO_GET["parser"]))
    antelope = pack if found.detector is not None and found.recognition is not None else None
    return antelope, found.parser, missing


def inspect_weights(root: str | os.PathLike[str]) -> WeightsLayout:
    """Describe a weights folder without raising: what is found where and what is missing."""
    root = Path(root).expanduser()
    antelope, bisenet, missing = _alignment(root)
    if detect_kind(root) == "converted":
        again = "`spin-to-mesh weights convert` (re-run it)"
        missing = [MissingFile(path, "diffusion", again) for path in converted_missing(root)] + missing
        encoder, unet, vae = root / "text_encoder", root / "unet", root / "vae"
        return WeightsLayout(
            root=root,
            kind="converted",
            checkpoint=None,
            encoder=encoder if has_weights(encoder, WEIGHT_FILE_NAMES) else None,
            unet=unet if has_weights(unet, DIFFUSERS_WEIGHT_NAMES) else None,
            vae=vae if has_weights(vae, DIFFUSERS_WEIGHT_NAMES) else None,
            antelopev2=antelope,
            bisenet=bisenet,
            missing=tuple(missing),
        )
    diffusion_missing: list[MissingFile] = []
    checkpoint = next((root / n for n in CHECKPOINT_NAMES if (root / n).is_file()), None)
    if checkpoint is None:
        diffusion_missing.append(MissingFile(root / CHECKPOINT_NAMES[0], "diffusion", SOURCES["spmr.ckpt"]))
    encoder = root / ENCODER_DIR
    encoder_found = encoder if has_weights(encoder, WEIGHT_FILE_NAMES) else None
    if encoder_found is None:
        diffusion_missing.append(
            MissingFile(encoder / "{config.json, model.safetensors}", "diffusion", SOURCES["encoder"])
        )
    return WeightsLayout(
        root=root,
        kind="official",
        checkpoint=checkpoint,
        encoder=encoder_found,
        antelopev2=antelope,
        bisenet=bisenet,
        missing=tuple(diffusion_missing + missing),
    )


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None) -> Path:
    """--weights DIR, else $SMR_WEIGHTS; neither -> WeightsNotFoundError saying what to set."""
    if weights_dir is not None and str(weights_dir) != "":
        return Path(weights_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    needed = [
        MissingFile(Path("DIR") / CHECKPOINT_NAMES[0], "diffusion", SOURCES["spmr.ckpt"]),
        MissingFile(Path("DIR") / ENCODER_DIR, "diffusion", SOURCES["encoder"]),
        MissingFile(Path("DIR") / ANTELOPE_DIR / "*.onnx", "alignment", WHERE_TO_GET["antelopev2"]),
        MissingFile(Path("DIR") / BISENET_FILE, "alignment", WHERE_TO_GET["parser"]),
    ]
    raise WeightsNotFoundError(
        f"no weights folder given: pass --weights DIR or set {ENV_VAR}=DIR, where DIR holds\n"
        + "\n".join(m.line() for m in needed)
        + f"\n{FETCH_LINE}"
    )


def find_weights(weights_dir: str | os.PathLike[str] | None = None, require_alignment: bool = False) -> WeightsLayout:
    """Locate the weights; raise one WeightsNotFoundError listing every missing file.

    Alignment files (antelopev2, BiSeNet) are only required with require_alignment=True; otherwise
    they are reported in `layout.missing` for the caller to mention.
    """
    root = resolve_weights_dir(weights_dir)
    if not root.is_dir():
        raise WeightsNotFoundError(
            f"weights folder {root} does not exist: run `spin-to-mesh weights fetch --weights {root}`, or pass "
            f"--weights DIR / set {ENV_VAR} to the folder holding them; or run the weights-free demo: "
            "spin-to-mesh run PHOTO -o OUT --views-backend synthetic"
        )
    layout = inspect_weights(root)
    fatal = [m for m in layout.missing if m.needed_for == "diffusion" or require_alignment]
    if fatal:
        # list every missing file, the optional ones too, so one download round fixes the folder
        raise WeightsNotFoundError(
            f"incomplete {layout.kind} weights folder {root}; missing:\n"
            + "\n".join(m.line() for m in layout.missing)
            + f"\n{FETCH_LINE}"
        )
    return layout
