"""Content hashes shared by the stages (photo ids, cache keys, weight checks, report.json)."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks (multi-GB checkpoints never sit in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()
