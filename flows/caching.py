"""Cache keys and retry rules of the stage tasks.

A stage's cache key is the hash of: the stage name, its inputs (upstream records carry the content
sha256 of their folders; parameters; the weights id), and the code version (the package version
plus a hash of the source files the stage runs). So a result is reused exactly when nothing that
could change it has changed, and a re-run after a recon failure gets align and views back from
the cache instead of paying for diffusion again.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flows.errors import user_error_types

# Task arguments that cannot change a stage's result: where it runs, the weights *path* (the weights *id* is an
# argument of its own and is part of the key), and the worker's local scratch folder for a remote output (the
# records carry the remote URIs, so two hosts with different scratch folders share one key).
KEY_EXCLUDED_ARGUMENTS = frozenset({"device", "weights", "gpu_limit", "scratch"})

# The packages whose code each stage runs (besides flows.stages, which every stage runs).
STAGE_PACKAGES: dict[str, tuple[str, ...]] = {
    "align": ("smr_core", "spin_io"),
    "views": ("smr_core", "recon", "spin_io"),
    "recon": ("recon", "spin_io"),
    "export": ("exporters", "spin_io"),
}


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_version() -> str:
    try:
        from importlib.metadata import version

        return version("spin-to-mesh")
    except Exception:  # running from a checkout that is not installed
        return "unknown"


@functools.cache
def code_version(stage: str) -> str:
    """Hash of the spin-to-mesh version and every source file the stage runs (computed once per process)."""
    h = hashlib.sha256(_distribution_version().encode())
    sources = [Path(__file__).with_name("stages.py")]
    for package in STAGE_PACKAGES.get(stage, ()):
        root = _package_dir(package)
        if root is not None:
            sources.extend(sorted(root.rglob("*.py")))
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    return value


def stage_key(stage: str, arguments: dict[str, Any]) -> str:
    """The cache key of `stage` for these task arguments (see the module docstring)."""
    inputs = {k: _jsonable(v) for k, v in sorted(arguments.items()) if k not in KEY_EXCLUDED_ARGUMENTS}
    payload = json.dumps({"stage": stage, "code": code_version(stage), "inputs": inputs}, sort_keys=True, default=str)
    return f"spin-to-mesh-{stage}-{hashlib.sha256(payload.encode()).hexdigest()}"


def stage_cache_key(context: Any, arguments: dict[str, Any]) -> str:
    """Prefect `cache_key_fn`: the task's name is the stage."""
    return stage_key(context.task.name, arguments)


# OSErrors that the same attempt would meet again: permissions, a read-only or full disk, a missing path.
PERSISTENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                               errno.ENOTDIR, errno.EISDIR})


def is_transient(exc: BaseException | None) -> bool:
    """Worth a retry: not a user error, not a timeout (a stage that ran out of time would again), and not a
    file-system refusal such as PermissionError (retrying an unwritable output only wastes the backoff)."""
    if exc is None:
        return True
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in PERSISTENT_ERRNOS):
        return False
    return not isinstance(exc, (*user_error_types(), TimeoutError))


def retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only transient errors."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    return is_transient(exc)
