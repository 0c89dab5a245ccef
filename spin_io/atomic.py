"""Atomic writes: write to a temporary sibling, fsync, then rename over the target.

A crash (or Ctrl-C) mid-write leaves at most a `.tmp-*` file, never a half-written result under
the final name that a later run could mistake for a finished one. Results follow the user's umask
(0644 files and 0755 folders under umask 022): mkstemp/mkdtemp create their temporaries 0600/0700,
which on a shared render farm would hide every head from everybody else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Give a temporary made by mkstemp/mkdtemp the mode a plain open()/mkdir() would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def make_temp_dir(final: str | os.PathLike[str]) -> Path:
    """An empty `.tmp-*` sibling folder of `final` (for an atomic swap), with the umask's permissions."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    follow_umask(tmp, directory=True)
    return tmp


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it onto `target`.

    The temporary file keeps the target's suffix so writers that infer the format from the
    extension (Pillow, trimesh, numpy) still work. On any exception the temporary is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        follow_umask(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as indented UTF-8 JSON atomically (numpy scalars and arrays allowed)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return atomic_write_bytes(target, (text + "\n").encode("utf-8"))


def atomic_write_png(target: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a uint8 (H, W), (H, W, 3) or (H, W, 4) array as PNG atomically."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"PNG data must be uint8, got {arr.dtype}")
    with atomic_path(target) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return Path(target)


def replace_dir(tmp: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Move the finished folder `tmp` to `dst`; an older `dst` is moved aside first, deleted after the swap.

    Both renames stay on one file system (tmp must be a sibling of dst), so at every instant `dst` is
    either the complete old folder, absent, or the complete new one.
    """
    tmp, dst = Path(tmp), Path(dst)
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{dst.name}-", dir=dst.parent))
        os.replace(dst, old / dst.name)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)
    return dst


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling of `final`; on success it replaces `final`, on error it is removed."""
    tmp = make_temp_dir(final)
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
