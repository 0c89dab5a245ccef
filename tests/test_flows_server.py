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
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prefect")

from _tools import tool_missing  # noqa: E402
from flows_helpers import environment, write_photos  # noqa: E402

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


class Stack:
    """A Prefect server on a free port with the `gpu` process pool and every deployment, plus its workers."""

    def __init__(self, tmp_path: Path, extra_env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(tmp_path / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="false",
            PREFECT_LOGGING_LEVEL="INFO",
            PREFECT_WORKER_QUERY_SECONDS="1",  # the workers poll every second (default 10 s): runs start at once
            **extra_env,
        )
        self.env = env
        self.api = f"http://127.0.0.1:{_free_port()}/api"
        self.client_env = {**env, "PREFECT_API_URL": self.api}
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.logs: list = []
        self.timings: dict[str, float] = {}

    def _log(self, name: str):
        fh = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115
        self.logs.append(fh)
        return fh

    def start(self) -> None:
        t0 = time.perf_counter()
        port = self.api.rsplit(":", 1)[1].split("/")[0]
        self.server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
            cwd=self.tmp_path, env=self.env, stdout=self._log("server"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_healthy(self.api, self.server, timeout=120)
        self.timings["server_start_s"] = time.perf_counter() - t0
        r = _prefect(["work-pool", "create", "gpu", "--type", "process"], self.client_env, 120)
        assert r.returncode == 0, r.stdout + r.stderr
        t0 = time.perf_counter()
        r = _prefect(["--no-prompt", "deploy", "--all"], self.client_env, 180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert all(f"spin-to-mesh/{d}" in r.stdout for d in ("batch", "preview", "demo")), r.stdout
        self.timings["deploy_s"] = time.perf_counter() - t0

    def start_worker(self, name: str = "worker", cpus: set[int] | None = None, **env: str) -> None:
        """`cpus`: pin the worker (and the flow runs it starts) to these CPUs, as a host of its own would be."""
        self.workers.append(subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1"],
            cwd=self.tmp_path, env={**self.client_env, **env}, stdout=self._log(name), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        ))

    def worker_log(self, name: str = "worker") -> str:
        return (self.tmp_path / f"{name}.log").read_text()[-4000:]

    def stop(self) -> None:
        for worker in self.workers:
            _stop(worker, terms=2)
        _stop(self.server, terms=1)
        for fh in self.logs:
            fh.close()
        assert all(w.poll() is not None for w in self.workers)
        assert self.server is None or self.server.poll() is not None


FAST = {
    "align": {"backend": "offline"},
    "views": {"backend": "synthetic", "num_views": 4, "pitch_rings_deg": [0.0], "image_size": 96},
    "recon": {"preset": "preview", "texture_size": 128},
    "export": {"lod_budgets": [2000], "max_texture_size": 128, "validate_gltf": False},
}


@pytest.mark.skipif(PREFECT is None, reason="the prefect command is not on PATH (install the 'flows' extra)")
def test_server_deploy_worker_round_trip(tmp_path):
    photos = write_photos(tmp_path / "photos")
    out = tmp_path / "out"
    stack = Stack(tmp_path, {})
    t_all = time.perf_counter()
    try:
        stack.start()
        stack.start_worker()
        t0 = time.perf_counter()
        r = _prefect(
            ["deployment", "run", "spin-to-mesh/preview", "--param", f"input={photos['face']}",
             "--param", f"output={out}", "--params", json.dumps(FAST), "--watch", "--watch-interval", "1",
             "--watch-timeout", "300"],
            stack.client_env, 330,
        )
        stack.timings["deployment_run_s"] = time.perf_counter() - t0
        text = r.stdout + r.stderr
        assert r.returncode == 0, text + stack.worker_log()
        assert "Completed" in text, text
        glbs = list(out.glob("astronaut-*/asset/head.glb"))
        assert len(glbs) == 1 and glbs[0].read_bytes()[:4] == b"glTF"
        transforms = json.loads((glbs[0].parents[1] / "views" / "transforms.json").read_text())
        assert transforms["generation"]["synthetic"] is True
    finally:
        stack.stop()
        stack.timings["total_s"] = time.perf_counter() - t_all
        print(f"\nserver round trip timings: {json.dumps({k: round(v, 1) for k, v in stack.timings.items()})}")


def _task_runs(env: dict[str, str]) -> list[tuple[str, str]]:
    """(name, state name) of every task run the server knows."""
    code = (
        "import asyncio, json\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as c:\n"
        "        runs = await c.read_task_runs(limit=200)\n"
        "        print(json.dumps([[t.name, t.state.name if t.state else ''] for t in runs]))\n"
        "asyncio.run(main())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [tuple(x) for x in json.loads(r.stdout.strip().splitlines()[-1])]


@pytest.mark.skipif(PREFECT is None, reason="the prefect command is not on PATH (install the 'flows' extra)")
def test_two_workers_on_s3_make_every_head_exactly_once(tmp_path):
    """Issue 16's done-when (about 70 s): two process workers (two "hosts": own CPUs and scratch folders, nothing shared
    but the bucket) run the same batch from S3 to S3 at the same time; every stage of every head runs once."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # the dev extra installs both (scripts/setup.sh); in CI their absence fails
        tool_missing(f"s3fs and moto[server] are needed for the S3 tests: {exc}")
    from PIL import Image
    from skimage import data

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    s3_env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    stack = Stack(tmp_path, s3_env)
    try:
        with environment(s3_env):
            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem()
            fs.mkdir("studio")
        face = data.astronaut()
        wide = np.pad(face, ((0, 0), (64, 64), (0, 0)), mode="edge")
        variants = {"ann.png": face, "ann-mirror.png": face[:, ::-1], "ann-wide.png": wide}
        for name, img in variants.items():
            Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / name)
            fs.put_file(str(tmp_path / name), f"studio/photos/{name}")
        stack.start()
        # each "host" gets its own CPUs where there are two or more: torch sizes its thread pool by the affinity,
        # and two flow runs with a pool as large as the machine each took 20 s instead of 1.5 s for normal fusion
        cpus = sorted(os.sched_getaffinity(0))
        half = len(cpus) // 2
        hosts = ({*cpus[:half]}, {*cpus[half:]}) if half else (None, None)
        stack.start_worker("worker-a", hosts[0], SPIN_TO_MESH_WORK_DIR=str(tmp_path / "host-a"))
        stack.start_worker("worker-b", hosts[1], SPIN_TO_MESH_WORK_DIR=str(tmp_path / "host-b"))
        command = ["deployment", "run", "spin-to-mesh/batch", "--param", "input=s3://studio/photos/",
                   "--param", "output=s3://studio/heads", "--params", json.dumps(FAST),
                   "--watch", "--watch-interval", "1", "--watch-timeout", "500"]
        runs = [subprocess.Popen([PREFECT, *command], cwd=REPO, env=stack.client_env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        texts = [r.communicate(timeout=560)[0] for r in runs]
        logs = stack.worker_log("worker-a") + stack.worker_log("worker-b")
        assert all(r.returncode == 0 for r in runs), "\n".join(texts) + logs
        glbs = fs.glob("studio/heads/*/asset/head.glb")
        assert len(glbs) == 3, glbs
        done = Counter(name for name, state in _task_runs(stack.client_env) if state == "Completed")
        for stage in ("align", "views", "recon", "export"):
            ran = {name: n for name, n in done.items() if name.startswith(stage + " ")}
            assert len(ran) == 3 and set(ran.values()) == {1}, (stage, ran, done)
        assert not fs.glob("studio/heads/.spin-claims/*"), "every claim is released"
        assert all("Completed" in text for text in texts), texts  # a head held by the other run is no failure
    finally:
        stack.stop()
        moto.stop()
