"""MediaPipe's face and selfie models, taken out of the mediapipe==0.10.21 wheel on PyPI, never installed.

Why this way: the 0.10.21 wheel (Apache-2.0, commercial use allowed) is the last one that carries the
.tflite files, and it pins numpy<2, so it cannot live beside this project. A wheel is a zip file: we
download the one pinned wheel with pip (the registry's ordinary client, so pip's index and proxy
settings apply), check its sha256, extract the few members we use, check each member's sha256 and
move them atomically into the per-user cache ($XDG_CACHE_HOME/spin-to-mesh/mediapipe-0.10.21).
They run on ai-edge-litert (Google's TFLite runtime, numpy 2 compatible).

Offline installs: download the wheel elsewhere and point $SMR_MEDIAPIPE_WHEEL at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.errors import AlignWeightsNotFoundError
from spin_io.hashing import file_sha256

MEDIAPIPE_VERSION = "0.10.21"
WHEEL_NAME = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
WHEEL_ENV = "SMR_MEDIAPIPE_WHEEL"
LITERT_SPEC = "ai-edge-litert==2.3.0"


@dataclass(frozen=True)
class MediapipeModel:
    """One member of the wheel: where it is inside it, its pinned sha256 and what it does."""

    name: str
    member: str
    sha256: str
    purpose: str

    @property
    def filename(self) -> str:
        return Path(self.member).name

    def licence_record(self) -> dict[str, object]:
        """The licence fields face.json, report.json and the GLB carry (same shape as model_fetch)."""
        return {
            "name": self.name,
            "file": self.member,
            "licence": "Apache-2.0 (MediaPipe)",
            "commercial_use": True,
            "source": f"pip mediapipe=={MEDIAPIPE_VERSION} wheel (extracted, sha256-verified; mediapipe not installed)",
            "sha256": self.sha256,
        }


MODELS: dict[str, MediapipeModel] = {
    m.name: m
    for m in (
        MediapipeModel(
            "mediapipe-face-landmark",
            "mediapipe/modules/face_landmark/face_landmark.tflite",
            "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
            "468-point 3-D face mesh (192x192 input)",
        ),
        MediapipeModel(
            "mediapipe-selfie-segmentation",
            "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
            "soft person mask (256x256 input)",
        ),
        MediapipeModel(
            "mediapipe-face-detection-short",
            "mediapipe/modules/face_detection/face_detection_short_range.tflite",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            "BlazeFace short-range face detector (128x128 input)",
        ),
        MediapipeModel(
            "mediapipe-face-detection-full",
            "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
            "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            "BlazeFace full-range face detector (192x192 input)",
        ),
        MediapipeModel(
            "mediapipe-licence",
            "mediapipe-0.10.21.dist-info/LICENSE",
            "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8",
            "the wheel's Apache-2.0 licence text, kept beside the models",
        ),
    )
}
ALL = tuple(MODELS)


def models_dir() -> Path:
    """Per-user cache folder of the extracted files (one per pinned MediaPipe version)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "spin-to-mesh" / f"mediapipe-{MEDIAPIPE_VERSION}"


def _sha256(path: Path) -> str:
    return file_sha256(path)


def find_models(names: tuple[str, ...] | list[str] = ALL, root: Path | None = None) -> dict[str, Path] | None:
    """The cached files when every named one is there with its pinned sha256, else None (never downloads)."""
    root = root or models_dir()
    out: dict[str, Path] = {}
    for name in names:
        model = MODELS[name]
        path = root / model.filename
        if not path.is_file() or _sha256(path) != model.sha256:
            return None
        out[name] = path
    return out


def _download_wheel(dest: Path) -> Path:
    """pip download of the one pinned wheel into `dest` (pip's own index/proxy settings apply)."""
    cmd = [
        sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}", "--no-deps",
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        "--platform", "manylinux_2_28_x86_64", "--disable-pip-version-check", "-q", "-d", str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AlignWeightsNotFoundError(_fetch_failed(f"pip could not run ({exc})")) from None
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise AlignWeightsNotFoundError(_fetch_failed(last[-1] if last else f"pip exited {proc.returncode}"))
    return wheel


def _fetch_failed(reason: str) -> str:
    return (
        f"the MediaPipe models could not be fetched from PyPI ({reason}); with network access run "
        f"`spin-to-mesh align` again, or download {WHEEL_NAME} and set {WHEEL_ENV}=/path/to/it"
    )


def extract_models(wheel: Path, names: tuple[str, ...] | list[str] = ALL, root: Path | None = None) -> dict[str, Path]:
    """Verify the wheel, then extract, verify and atomically place each named member into `root`."""
    root = root or models_dir()
    if _sha256(wheel) != WHEEL_SHA256:
        raise AlignWeightsNotFoundError(
            f"{wheel}: not the pinned {WHEEL_NAME} (sha256 differs); delete it and fetch again"
        )
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in names:
            model = MODELS[name]
            target = root / model.filename
            fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{model.filename}-", dir=root)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as f, zf.open(model.member) as src:
                    shutil.copyfileobj(src, f)
                if _sha256(tmp) != model.sha256:
                    raise AlignWeightsNotFoundError(
                        f"{model.member} in {wheel.name} does not match its pinned sha256; the wheel is not the "
                        "expected release: report this"
                    )
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            out[name] = target
    return out


def ensure_models(
    names: tuple[str, ...] | list[str] = ALL, *, offline: bool = False, root: Path | None = None
) -> dict[str, Path]:
    """The named model files, fetched once from the pinned PyPI wheel when missing (or AlignWeightsNotFoundError).

    `offline=True` never downloads; $SMR_MEDIAPIPE_WHEEL (a local copy of the wheel) is used when set.
    Concurrent callers share one download (a file lock in the cache folder).
    """
    root = root or models_dir()
    found = find_models(names, root)
    if found is not None:
        return found
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".fetch.lock")):
        found = find_models(names, root)
        if found is not None:
            return found
        local = os.environ.get(WHEEL_ENV, "")
        if local:
            return extract_models(Path(local).expanduser(), names, root)
        if offline:
            raise AlignWeightsNotFoundError(
                f"the MediaPipe models are not in {root} and downloads are off (--offline); run once with network "
                f"access, or download {WHEEL_NAME} and set {WHEEL_ENV}=/path/to/it"
            )
        with tempfile.TemporaryDirectory(prefix=".wheel-", dir=root) as tmp:
            wheel = _download_wheel(Path(tmp))
            return extract_models(wheel, names, root)


def litert_available() -> bool:
    """Whether the TFLite runtime (ai-edge-litert) can be imported."""
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def interpreter(path: Path, threads: int | None = None) -> Any:
    """An ai-edge-litert Interpreter for one .tflite file (AlignWeightsNotFoundError when the runtime is absent)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise AlignWeightsNotFoundError(
            f"the MediaPipe models need the TFLite runtime: pip install '{LITERT_SPEC}' (the project's `align` extra)"
        ) from None
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    with _quiet_native_stderr():  # the runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    return it


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (a user's terminal shows only our lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def run(it: Any, x: Any) -> list[Any]:
    """Run an interpreter on one float32 input; outputs in the model's output order."""
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


if __name__ == "__main__":  # `python -m align.mediapipe_models`: pre-fetch (scripts/setup.sh, CI)
    paths = ensure_models()
    print(f"MediaPipe {MEDIAPIPE_VERSION} models ready in {models_dir()}: {', '.join(p.name for p in paths.values())}")
