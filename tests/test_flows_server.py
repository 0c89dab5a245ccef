"""A real round trip: Prefect server -> work pool `gpu` -> `prefect deploy` -> process worker -> a GLB on disk.

Everything listens on 127.0.0.1 only and lives in a temporary PREFECT_HOME; every process started
here is stopped by its process id (the worker twice: its first SIGTERM only starts a graceful
shutdown). The preview deployment runs with fast CPU parameters (synthetic views, the preview
recon preset, a small texture), passed the way a user would: --param / --params.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from flows_helpers import write_photos  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PREFECT = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited early with status {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.5)
    raise TimeoutError(f"prefect server did not answer {url}/health within {timeout} s")


def _stop(proc: subprocess.Popen | None, terms: int, grace: float = 20.0) -> None:
    """SIGTERM the process group `terms` times (1 s apart), then SIGKILL it if it is still there."""
    if proc is None or proc.poll() is not None:
        return
    for i in range(terms):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        if i + 1 < terms:
            time.sleep(1.0)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _prefect(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(PREFECT is None, reason="the prefect command is not on PATH (install the 'flows' extra)")
def test_server_deploy_worker_round_trip(tmp_path):
    photos = write_photos(tmp_path / "photos")
    out = tmp_path / "out"
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    client_env = {**env, "PREFECT_API_URL": api}
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("server", "worker")}  # noqa: SIM115
    server = worker = None
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    try:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=logs["server"], stderr=subprocess.STDOUT, start_new_session=True,
        )
        _wait_healthy(api, server, timeout=120)
        timings["server_start_s"] = time.perf_counter() - t_all

        r = _prefect(["work-pool", "create", "gpu", "--type", "process"], client_env, 120)
        assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.perf_counter()
        r = _prefect(["--no-prompt", "deploy", "--all"], client_env, 180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert all(f"spin-to-mesh/{d}" in r.stdout for d in ("batch", "preview", "demo")), r.stdout
        timings["deploy_s"] = time.perf_counter() - t0

        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1"],
            cwd=tmp_path, env=client_env, stdout=logs["worker"], stderr=subprocess.STDOUT, start_new_session=True,
        )
        fast = {
            "align": {"backend": "offline"},
            "views": {"backend": "synthetic", "num_views": 4, "pitch_rings_deg": [0.0], "image_size": 96},
            "recon": {"preset": "preview", "texture_size": 128},
            "export": {"lod_budgets": [2000], "max_texture_size": 128, "validate_gltf": False},
        }
        t0 = time.perf_counter()
        r = _prefect(
            ["deployment", "run", "spin-to-mesh/preview", "--param", f"input={photos['face']}",
             "--param", f"output={out}", "--params", json.dumps(fast), "--watch", "--watch-timeout", "300"],
            client_env, 330,
        )
        timings["deployment_run_s"] = time.perf_counter() - t0
        text = r.stdout + r.stderr
        assert r.returncode == 0, text + (tmp_path / "worker.log").read_text()[-4000:]
        assert "Completed" in text, text
        glbs = list(out.glob("astronaut-*/asset/head.glb"))
        assert len(glbs) == 1 and glbs[0].read_bytes()[:4] == b"glTF"
        transforms = json.loads((glbs[0].parents[1] / "views" / "transforms.json").read_text())
        assert transforms["generation"]["synthetic"] is True
    finally:
        _stop(worker, terms=2)
        _stop(server, terms=1)
        for fh in logs.values():
            fh.close()
        timings["total_s"] = time.perf_counter() - t_all
        print(f"\nserver round trip timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    assert worker.poll() is not None and server.poll() is not None
