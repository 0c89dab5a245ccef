"""Where the weights live and what is recorded about them.

The weights folder is `--weights DIR`, else $SMR_WEIGHTS, else a per-user cache
($XDG_CACHE_HOME/spin-to-mesh/weights, default ~/.cache/spin-to-mesh/weights). Bookkeeping sits in
`DIR/.spin-to-mesh/`:

    manifest.json   per file: sha256, size, source, how it was verified, licence (read by doctor
                    and copied into report.json / GLB extras)
    partial/        resumable downloads (kept when a fetch is killed, reused by the next one)
    locks/          one lock per file, so several workers fetching at once produce one good copy

A read-only shared folder (render farm) works: nothing is written when every file is present.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spin_io.atomic import atomic_write_json

ENV_VAR = "SMR_WEIGHTS"
MIRROR_ENV = "SMR_WEIGHTS_MIRROR"
STATE_DIR = ".spin-to-mesh"
RECORDS = "manifest.json"
CHUNK = 1 << 20


def default_weights_dir() -> Path:
    """The per-user cache folder used when neither --weights nor $SMR_WEIGHTS is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "spin-to-mesh" / "weights"


def weights_root(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """--weights DIR, else $SMR_WEIGHTS, else the per-user cache (never raises: it may not exist yet)."""
    if weights_dir is not None and str(weights_dir) != "":
        return Path(weights_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    return Path(env).expanduser() if env else default_weights_dir()


def state_dir(root: Path) -> Path:
    """The bookkeeping folder inside a weights folder."""
    return root / STATE_DIR


def read_records(root: Path) -> dict[str, dict[str, Any]]:
    """Recorded facts per relpath ({} when none or unreadable: the code's table still has the licences)."""
    path = state_dir(root) / RECORDS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def write_record(root: Path, relpath: str, record: dict[str, Any]) -> None:
    """Add or replace one file's record, under the records lock, atomically."""
    with file_lock(root, "manifest"):
        files = read_records(root)
        files[relpath] = record
        atomic_write_json(state_dir(root) / RECORDS, {"version": 1, "files": dict(sorted(files.items()))})


@contextlib.contextmanager
def file_lock(root: Path, name: str, timeout: float = -1) -> Iterator[None]:
    """An inter-process lock (filelock: fcntl on POSIX) named `name` inside the weights folder."""
    from filelock import FileLock

    locks = state_dir(root) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{name}.lock"), timeout=timeout):
        yield


def partial_path(root: Path, name: str) -> Path:
    """Where the resumable download of one file accumulates."""
    return state_dir(root) / "partial" / f"{name}.part"


def hash_file(path: Path) -> tuple[str, str, int]:
    """(sha256, git blob sha1, size) of a file, in one read."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sha256.update(block)
            git.update(block)
    return sha256.hexdigest(), git.hexdigest(), size


def now_iso() -> str:
    """UTC timestamp for records."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
