"""Shared pieces of the flows tests: input photos, fast parameters, a quick stand-in for recon."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flows.params import AlignParams, ExportParams, ReconParams, RunOptions, ViewsParams
from flows.records import MeshRecord, ViewsRecord, from_uri, to_uri

FAST_VIEWS = ViewsParams(backend="synthetic", num_views=4, pitch_rings_deg=[0.0], image_size=64)
FAST_ALIGN = AlignParams(backend="offline")
FAST_RECON = ReconParams(preset="preview", texture_size=128)
FAST_EXPORT = ExportParams(lod_budgets=[1500, 400], validate_gltf=False)


def fast_kwargs(options: RunOptions | None = None) -> dict:
    """Flow keyword arguments that run in seconds on a CPU (synthetic views, small textures)."""
    return {"align": FAST_ALIGN, "views": FAST_VIEWS, "recon": FAST_RECON, "export": FAST_EXPORT,
            "options": options or RunOptions(retries=0)}


def write_photos(folder: Path) -> dict[str, Path]:
    """A real portrait (skimage's astronaut) and a small flat image with no face."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    face = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(face)
    flat = folder / "flat.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(flat)
    return {"face": face, "flat": flat}


def sphere_headmesh(mesh_dir: Path) -> None:
    """A 10 cm textured sphere as a HeadMesh: enough for the exporter, in milliseconds."""
    import trimesh

    from spin_io import HeadMesh, write_headmesh

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    v = np.asarray(s.vertices)
    u = 0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi)
    w = 0.5 + np.arcsin(np.clip(v[:, 1] / 0.1, -1, 1)) / np.pi
    albedo = np.zeros((64, 64, 3), np.uint8)
    albedo[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None]
    write_headmesh(mesh_dir, HeadMesh(v, np.asarray(s.faces), np.stack([u, w], 1), albedo), {"stand_in": 1.0})


class FakeRecon:
    """Replaces flows.stages.run_recon: counts calls, can fail the first `fail_times` calls with `error`."""

    def __init__(self, error: BaseException | None = None, fail_times: int = 0) -> None:
        self.calls = 0
        self.error = error
        self.fail_times = fail_times

    def __call__(
        self, views: ViewsRecord, params: ReconParams, work_uri: str, device: str = "auto", log=None,
        progress: bool = False,
    ) -> MeshRecord:
        from flows import stages

        self.calls += 1
        assert from_uri(views.dir_uri).joinpath("transforms.json").is_file()
        if self.error is not None and self.calls <= self.fail_times:
            raise self.error
        out = from_uri(work_uri) / "mesh"
        with stages.staged_dir(out) as tmp:
            sphere_headmesh(tmp)
        return MeshRecord(photo_id=views.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                          metrics={"stand_in": 1.0})


class Counter:
    """Wraps a stage function and counts how often it really ran (a cache hit does not call it)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the block; the previous values are restored after."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def prefect_server(home: Path, on_start=None) -> Iterator[None]:
    """A Prefect test server with Prefect's home in `home` and telemetry off; the environment is restored after."""
    from prefect.testing.utilities import prefect_test_harness

    with environment({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}):
        with prefect_test_harness(server_startup_timeout=180):
            if on_start is not None:
                on_start()
            yield
