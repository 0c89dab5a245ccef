"""AlignedFace contract (docs/DESIGN.md §2): the model's input view, written by `align`.

Folder layout::

    aligned/
      crop.png     512x512 RGB uint8, white background: exactly what the diffusion model sees
      mask.png     512x512 L uint8, 255 = head/hair/neck/clothes kept, 0 = background made white
      face.json    schema_version, source sha256 and size, which backend, detector scores, the
                   5 keypoints (source and crop pixels), the source->crop affine transform,
                   the estimated head pose, and whether an identity embedding exists
      arcface.npy  (512,) float32, L2-normalised ArcFace embedding; absent when the backend that
                   aligned the photo has no ArcFace model (face.json says why)

Keypoint order is the insightface/antelopev2 one: left eye, right eye, nose tip, left mouth
corner, right mouth corner, where "left" means the image's left (the subject's right).
Pixel coordinates put pixel centres on integers (OpenCV's convention).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spin_io.atomic import atomic_path, atomic_write_json, atomic_write_png
from spin_io.errors import ContractError

SCHEMA_VERSION = 1
CROP_SIZE = 512
EMBEDDING_DIM = 512
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
_NORM_TOLERANCE = 1e-3
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class AlignedFace:
    """One aligned face photo: the crop the model sees plus how it was obtained.

    `keypoints` are in source-image pixels; `crop_transform` maps a source pixel (x, y, 1) to
    crop pixels, so `keypoints_crop` is derived, not stored twice by hand.
    """

    crop: np.ndarray
    mask: np.ndarray
    source_sha256: str
    keypoints: np.ndarray
    crop_transform: np.ndarray
    head_pose: dict[str, float]
    backend: dict[str, Any]
    detector_scores: list[float]
    face_index: int = 0
    source_size: tuple[int, int] = (0, 0)
    arcface: np.ndarray | None = None
    identity_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def keypoints_crop(self) -> np.ndarray:
        """The 5 keypoints mapped into crop pixels by `crop_transform`."""
        kps = np.asarray(self.keypoints, np.float64)
        return kps @ self.crop_transform[:, :2].T + self.crop_transform[:, 2]


def warning_list(items: Any) -> list[str]:
    """The warnings in a list read from face.json or a ViewSet (its non-empty strings; [] for anything else), as
    every stage that carries the alignment's warnings toward report.json keeps them."""
    return [w for w in items if isinstance(w, str) and w] if isinstance(items, list) else []


def _validate(face: AlignedFace) -> None:
    """Raise ContractError for anything a reader could not trust; called before writing anything."""
    crop = np.asarray(face.crop)
    if crop.shape != (CROP_SIZE, CROP_SIZE, 3) or crop.dtype != np.uint8:
        raise ContractError(f"crop must be a {CROP_SIZE}x{CROP_SIZE}x3 uint8 image, got {crop.shape} {crop.dtype}")
    mask = np.asarray(face.mask)
    if mask.shape != (CROP_SIZE, CROP_SIZE) or mask.dtype != np.uint8:
        raise ContractError(f"mask must be a {CROP_SIZE}x{CROP_SIZE} uint8 image, got {mask.shape} {mask.dtype}")
    if not isinstance(face.source_sha256, str) or not _SHA256.match(face.source_sha256):
        raise ContractError(f"source_sha256 must be 64 lowercase hex digits, got {face.source_sha256!r}")
    kps = np.asarray(face.keypoints)
    if kps.shape != (5, 2) or not np.all(np.isfinite(kps)):
        raise ContractError(f"keypoints must be 5 finite (x, y) pairs, got shape {kps.shape}")
    mat = np.asarray(face.crop_transform)
    if mat.shape != (2, 3) or not np.all(np.isfinite(mat)) or abs(np.linalg.det(mat[:, :2])) < 1e-12:
        raise ContractError("crop_transform must be a finite, invertible 2x3 affine matrix")
    for key in ("yaw_deg", "pitch_deg", "roll_deg"):
        value = face.head_pose.get(key)
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ContractError(f"head_pose needs a finite '{key}', got {value!r}")
    if not isinstance(face.backend, dict) or "name" not in face.backend:
        raise ContractError("backend must be a dict with at least a 'name'")
    if face.arcface is not None:
        _check_embedding(np.asarray(face.arcface), "arcface")
    elif not face.identity_note:
        raise ContractError("an AlignedFace without an ArcFace embedding must say why (identity_note)")


def _check_embedding(emb: np.ndarray, where: str) -> None:
    if emb.shape != (EMBEDDING_DIM,) or emb.dtype != np.float32:
        raise ContractError(
            f"{where}: the ArcFace embedding must be ({EMBEDDING_DIM},) float32, got {emb.shape} {emb.dtype}"
        )
    if not np.all(np.isfinite(emb)):
        raise ContractError(f"{where}: the ArcFace embedding has NaN or infinite values")
    norm = float(np.linalg.norm(emb))
    if abs(norm - 1.0) > _NORM_TOLERANCE:
        raise ContractError(f"{where}: the ArcFace embedding must be L2-normalised (norm {norm:.4f}); re-run alignment")


def write_aligned(out_dir: str | Path, face: AlignedFace) -> Path:
    """Validate `face`, then write it into `out_dir` atomically (face.json last, marking completion).

    A stale arcface.npy from an earlier run is removed when `face` has no embedding, so the
    folder never pairs a new crop with an old identity.
    """
    _validate(face)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_png(out_dir / "crop.png", np.asarray(face.crop, np.uint8))
    atomic_write_png(out_dir / "mask.png", np.asarray(face.mask, np.uint8))
    emb_path = out_dir / "arcface.npy"
    if face.arcface is not None:
        with atomic_path(emb_path) as tmp:
            np.save(tmp, np.asarray(face.arcface, np.float32), allow_pickle=False)
    elif emb_path.exists():
        emb_path.unlink()
    mat = np.asarray(face.crop_transform, np.float64)
    info = {
        "schema_version": SCHEMA_VERSION,
        "source": {"sha256": face.source_sha256, "width": int(face.source_size[0]), "height": int(face.source_size[1])},
        "backend": face.backend,
        "detector": {"scores": [float(s) for s in face.detector_scores], "face_index": int(face.face_index)},
        "keypoints": {
            "order": list(KEYPOINT_NAMES),
            "source_px": np.asarray(face.keypoints, np.float64).round(3).tolist(),
            "crop_px": face.keypoints_crop.round(3).tolist(),
        },
        "crop_transform": {
            "matrix": mat.tolist(),
            "maps": "source pixel (x, y, 1) -> crop pixel (x, y); pixel centres at integers",
            "crop_size": CROP_SIZE,
        },
        "head_pose": {
            **{k: float(face.head_pose[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg")},
            "convention": "yaw > 0: face turned toward the image's right; pitch > 0: face looks up; "
            "roll > 0: counter-clockwise in the image",
        },
        "identity": {
            "file": "arcface.npy" if face.arcface is not None else None,
            "note": face.identity_note,
        },
        "extra": face.extra,
    }
    atomic_write_json(out_dir / "face.json", info)
    return out_dir


def _load_png(path: Path, mode: str, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ContractError(f"{path}: missing; re-run `spin-to-mesh align` to regenerate the aligned folder")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != mode:
                raise ContractError(f"{path}: expected a {mode} PNG, found mode {im.mode}")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ContractError(f"{path}: not a readable PNG ({exc}); re-run alignment") from exc
    if arr.shape != shape:
        raise ContractError(f"{path}: expected shape {shape}, found {arr.shape}")
    return arr


def read_aligned(in_dir: str | Path) -> AlignedFace:
    """Read and validate an AlignedFace folder; any missing or malformed file raises ContractError."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise ContractError(f"{in_dir}: no such aligned folder (create it with `spin-to-mesh align PHOTO -o DIR`)")
    json_path = in_dir / "face.json"
    if not json_path.is_file():
        raise ContractError(f"{json_path}: missing; the folder is incomplete, re-run alignment")
    try:
        info = json.loads(json_path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{json_path}: invalid JSON ({exc})") from exc
    version = info.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ContractError(
            f"{json_path}: schema_version {version!r} is not one this spin-to-mesh reads (<= {SCHEMA_VERSION}); "
            "upgrade spin-to-mesh or re-run alignment"
        )
    try:
        source = info["source"]
        identity = info["identity"]
        face = AlignedFace(
            crop=_load_png(in_dir / "crop.png", "RGB", (CROP_SIZE, CROP_SIZE, 3)),
            mask=_load_png(in_dir / "mask.png", "L", (CROP_SIZE, CROP_SIZE)),
            source_sha256=source["sha256"],
            source_size=(int(source["width"]), int(source["height"])),
            keypoints=np.asarray(info["keypoints"]["source_px"], np.float64),
            crop_transform=np.asarray(info["crop_transform"]["matrix"], np.float64),
            head_pose={k: info["head_pose"][k] for k in ("yaw_deg", "pitch_deg", "roll_deg")},
            backend=info["backend"],
            detector_scores=list(info["detector"]["scores"]),
            face_index=int(info["detector"]["face_index"]),
            identity_note=identity.get("note", ""),
            extra=info.get("extra", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError(f"{json_path}: missing or malformed field ({exc!r}); re-run alignment") from exc
    if identity.get("file"):
        emb_path = in_dir / identity["file"]
        if not emb_path.is_file():
            raise ContractError(f"{emb_path}: face.json names this embedding but the file is missing; re-run alignment")
        try:
            emb = np.load(emb_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ContractError(f"{emb_path}: not a readable .npy file ({exc})") from exc
        _check_embedding(emb, str(emb_path))
        face.arcface = emb
    try:
        _validate(face)
    except ContractError as exc:
        raise ContractError(f"{json_path}: {exc}") from exc
    return face
