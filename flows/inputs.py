"""Turn the `input` parameter (a photo, a folder, a glob or a manifest) into the list of photos to run.

No Prefect here: the CLI uses it to refuse a bad input before any flow starts.
"""

from __future__ import annotations

import glob
import json
import re
import unicodedata
from pathlib import Path

from flows.errors import InputNotFoundError
from spin_io.hashing import file_sha256

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".txt", ".json", ".lst")
_GLOB_CHARS = re.compile(r"[*?\[]")


def sha256_file(path: str | Path) -> str:
    """The photo's content hash (its id and cache key)."""
    return file_sha256(path)


def photo_id(path: Path, sha256: str) -> str:
    """'<stem>-<8 hex>': readable, and two different photos with the same name never share a folder."""
    # letters of any script are kept (NFC, so 'é' typed either way names one folder); only separators go
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", path.stem)).strip("._") or "photo"
    return f"{stem[:48]}-{sha256[:8]}"


def _read_manifest(path: Path) -> list[Path]:
    text = path.read_text("utf-8")
    if path.suffix.lower() == ".json":
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputNotFoundError(f"{path}: manifest is not valid JSON ({exc}); give a JSON list of paths") from exc
        if isinstance(entries, dict):
            entries = entries.get("photos")
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise InputNotFoundError(f"{path}: a JSON manifest must be a list of paths (or {{\"photos\": [...]}})")
    else:
        entries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    photos: list[Path] = []
    for entry in entries:
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else path.parent / p
        if _GLOB_CHARS.search(str(entry)):
            photos.extend(_expand_glob(str(p)))
        else:
            photos.append(p)
    missing = [str(p) for p in photos if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputNotFoundError(f"{path}: manifest lists photos that do not exist: {shown}; fix the manifest")
    return photos


def _expand_glob(pattern: str) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]


def resolve_photos(input_spec: str) -> list[Path]:
    """The photos named by `input_spec`, in a stable order, each once; raises InputNotFoundError."""
    spec = input_spec.strip()
    path = Path(spec).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in MANIFEST_SUFFIXES:
            photos = _read_manifest(path)
        elif suffix in IMAGE_SUFFIXES:
            photos = [path]
        else:
            raise InputNotFoundError(
                f"{path}: neither a photo ({', '.join(IMAGE_SUFFIXES)}) nor a manifest ({', '.join(MANIFEST_SUFFIXES)})"
            )
    elif path.is_dir():
        photos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif _GLOB_CHARS.search(spec):
        photos = _expand_glob(str(path))
    else:
        raise InputNotFoundError(f"{spec}: no such photo, folder, glob or manifest; check the path")
    if not photos:
        raise InputNotFoundError(f"{spec}: matches no photos ({', '.join(IMAGE_SUFFIXES)})")
    seen: set[Path] = set()
    unique = []
    for p in photos:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return unique


def run_name_for(input_spec: str, shard_index: int = 0, shard_count: int = 1, width: int = 80) -> str:
    """A flow run's name from what it processes, so the run list reads 'astronaut', 'heads.txt shard 2 of 8'.

    Decided from the text alone (the name is given before the worker looks at any file): a photo gives its
    stem, a manifest its file name, a glob its folder and pattern, anything else is a folder's name.
    """
    if not input_spec.strip():
        return "no input"
    spec = input_spec.strip().rstrip("/\\") or input_spec.strip()
    path = Path(spec)
    suffix = path.suffix.lower()
    if _GLOB_CHARS.search(spec):
        parent = next((p for p in reversed(path.parent.parts) if not _GLOB_CHARS.search(p)), "")
        name = f"{parent} {path.name}".strip()
    elif suffix in IMAGE_SUFFIXES:
        name = path.stem
    elif suffix in MANIFEST_SUFFIXES:
        name = path.name
    else:
        name = f"{path.name or spec} folder"
    if shard_count > 1:
        name = f"{name} shard {shard_index} of {shard_count}"
    return name if len(name) <= width else name[: width - 3] + "..."
