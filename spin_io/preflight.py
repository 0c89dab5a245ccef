"""Checks that run before any heavy work: can the output be written, does the device exist.

Both used to fail only after minutes of alignment and diffusion (and a PermissionError was retried
as if transient). Each raises one user error whose message says what to do.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from spin_io.errors import DeviceUnavailableError, OutputNotWritableError


def check_output_writable(path: str | os.PathLike[str], *, create: bool = True) -> Path:
    """Prove a file can be written in `path` (created if needed); returns the resolved folder.

    With create=False nothing is left behind: a missing folder is judged by its nearest existing
    parent, so a stage whose contract is "nothing written on error" can still check before its work.
    """
    folder = Path(path).expanduser()
    probe_dir = folder
    if not create:
        while not probe_dir.exists() and probe_dir.parent != probe_dir:
            probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        what = f"{probe_dir}" if probe_dir == folder else f"{folder}: {probe_dir}"
        raise OutputNotWritableError(f"output {what} is a file, not a folder: choose a folder with -o/--output")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-write-check-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
                  errno.ENOSPC: "no space left on the device"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise OutputNotWritableError(
            f"cannot write to output folder {folder} ({reason}): choose another with -o/--output "
            "or fix its permissions"
        ) from None
    return folder.resolve()


def resolve_device(device: str | None) -> str:
    """'auto' (or None) -> 'cuda' when torch sees a GPU, else 'cpu'; an unavailable device is a user error.

    Accepts what torch accepts ('cpu', 'cuda', 'cuda:1', 'mps'); checks that it exists here, so a
    missing GPU is one line at start-up instead of an AssertionError deep inside a stage.
    """
    import torch  # every caller already depends on torch; spin_io itself does not

    name = (device or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceUnavailableError(
            f"unknown device {device!r}: use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"--device {device} asked for CUDA, but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA): "
                "use --device cpu (or auto)"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceUnavailableError(
                f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError(f"--device {device}: MPS is not available here: use --device cpu")
    elif dev.type != "cpu":
        raise DeviceUnavailableError(f"--device {device}: unsupported device type; use auto, cpu or cuda")
    return str(dev)
