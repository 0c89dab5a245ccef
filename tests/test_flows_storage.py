"""Issue 16, item 9 "Several hosts": input, output and stage cache on S3-compatible storage (fsspec URIs).

A real S3 server (moto's server mode, on a free localhost port) is started for the module; s3fs reaches it
through AWS_ENDPOINT_URL. The flow runs for real in prefect_test_harness; "hosts" are runs with different
local scratch folders (options.work_dir), sharing nothing but the bucket.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter as Tally
from pathlib import Path

import pytest

pytest.importorskip("prefect")

from _tools import tool_missing  # noqa: E402
from flows_helpers import FakeRecon, environment, fast_kwargs, prefect_server, write_photos  # noqa: E402

from flows import stages, storage  # noqa: E402
from flows.params import RunOptions  # noqa: E402
from flows.records import AlignedRecord, AssetRecord, RunSummary, ViewsRecord, from_uri, to_uri  # noqa: E402

BUCKET = "spin-heads"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """An S3-compatible server for the module, with one bucket; yields an s3fs filesystem on it."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # the dev extra installs both (scripts/setup.sh); in CI their absence fails
        tool_missing(f"s3fs and moto[server] are needed for the S3 tests: {exc}")

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with environment({**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}):
            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem()
            fs.mkdir(BUCKET)
            yield fs
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def harness(tmp_path_factory, s3):
    with prefect_server(tmp_path_factory.mktemp("prefect-home")):
        yield


class PerPhoto:
    """Wraps a stage function: counts its executions per photo id (a cache hit does not call it)."""

    def __init__(self, fn, delay_s: float = 0.0) -> None:
        self.fn = fn
        self.delay_s = delay_s
        self.calls: Tally = Tally()
        self.lock = threading.Lock()

    def __call__(self, record, *args, **kwargs):
        with self.lock:
            self.calls[record.photo_id] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.fn(record, *args, **kwargs)


def _upload(fs, local: Path, key: str) -> str:
    fs.put_file(str(local), f"{BUCKET}/{key}")
    return f"s3://{BUCKET}/{key}"


# ---------------------------------------------------------------- unit: claims and published folders


def test_a_claim_is_exclusive_renewed_released_and_taken_over_when_expired(s3):
    out = f"s3://{BUCKET}/claims-unit"
    first = storage.claim(out, "ann-1", "run-a", ttl_s=30)
    assert isinstance(first, storage.Claim)
    other = storage.claim(out, "ann-1", "run-b", ttl_s=30)
    assert isinstance(other, dict) and other["run_id"] == "run-a", "a live claim of another run is refused"
    again = storage.claim(out, "ann-1", "run-a", ttl_s=30)
    assert isinstance(again, storage.Claim), "the same flow run (restarted) gets its head back"
    again.release()
    first.release()
    assert not s3.exists(f"{BUCKET}/claims-unit/.spin-claims/ann-1.json"), "release removes the claim"

    # a dead worker's claim: expired, never renewed -> taken over with a conditional overwrite
    s3.pipe_file(f"{BUCKET}/claims-unit/.spin-claims/bob-2.json",
                 json.dumps({"token": "x", "run_id": "dead", "expires_at": time.time() - 1}).encode())
    taken = storage.claim(out, "bob-2", "run-b", ttl_s=30)
    assert isinstance(taken, storage.Claim)
    taken.release()


def test_of_many_concurrent_claimants_exactly_one_wins(s3):
    out = f"s3://{BUCKET}/claims-race"
    results: list = []
    barrier = threading.Barrier(6)

    def contend(i: int) -> None:
        barrier.wait()
        results.append(storage.claim(out, "cyd-3", f"run-{i}", ttl_s=30))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, storage.Claim)]
    assert len(winners) == 1, results
    winners[0].release()


def test_a_claim_is_renewed_while_its_head_runs(s3):
    c = storage.claim(f"s3://{BUCKET}/claims-renew", "dee-4", "run-a", ttl_s=1.5)
    assert isinstance(c, storage.Claim)
    time.sleep(2.5)  # longer than the ttl: only renewal keeps it
    assert isinstance(storage.claim(f"s3://{BUCKET}/claims-renew", "dee-4", "run-b", ttl_s=1.5), dict)
    c.release()


def test_a_folder_without_its_completion_marker_is_not_trusted(s3, tmp_path):
    folder = tmp_path / "views"
    folder.mkdir()
    (folder / "transforms.json").write_text("{}")
    sha = stages.tree_sha256(folder)
    uri = f"s3://{BUCKET}/pub/p-1/views"
    storage.publish_dir(folder, uri, sha)
    assert storage.published(uri, sha256=sha)
    assert not storage.published(uri, sha256="0" * 64)
    s3.rm_file(f"{BUCKET}/pub/p-1/views/{storage.MARKER}")
    assert not storage.published(uri), "files without a marker: a half-finished upload"
    with pytest.raises(FileNotFoundError):
        storage.download_dir(uri, tmp_path / "copy" / "views", sha)


def test_plain_paths_and_file_uris_stay_local(tmp_path):  # no server needed
    assert not storage.is_remote(str(tmp_path)) and not storage.is_remote(tmp_path.as_uri())
    assert not storage.is_remote("C:/photos") and storage.is_remote("s3://b/k") and storage.is_remote("gs://b/k")
    assert storage.local_path(tmp_path.as_uri()) == tmp_path


# ---------------------------------------------------------------- the flow on S3


def test_s3_in_s3_out_then_a_second_host_reuses_every_stage(harness, s3, tmp_path, monkeypatch):
    """Photo from s3://, head to s3://; a run with another scratch folder takes all four stages from the cache."""
    from flows.pipeline import spin_to_mesh

    face = write_photos(tmp_path / "photos")["face"]
    source = _upload(s3, face, "in/astronaut.png")
    out = f"s3://{BUCKET}/heads"
    counted = {name: PerPhoto(getattr(stages, f"run_{name}")) for name in ("align", "views", "export")}
    for name, wrapper in counted.items():
        monkeypatch.setattr(stages, f"run_{name}", wrapper)
    recon = FakeRecon()
    monkeypatch.setattr(stages, "run_recon", recon)

    def run(host: str):
        options = RunOptions(retries=0, work_dir=str(tmp_path / host))
        return spin_to_mesh(input=f"s3://{BUCKET}/in/", output=out, **fast_kwargs(options), return_state=True)

    state = run("host-a")
    assert state.is_completed(), state
    summary: RunSummary = state.result()
    (photo,) = summary.photos
    assert summary.output_uri == out
    assert photo.status == "completed" and photo.source == source
    assert photo.glb_uri == f"{out}/{photo.photo_id}/asset/head.glb"
    assert s3.exists(f"{BUCKET}/heads/{photo.photo_id}/asset/head.glb")
    for folder in ("aligned", "views", "mesh", "asset"):
        assert storage.read_marker(f"{out}/{photo.photo_id}/{folder}") is not None, folder
    assert s3.ls(f"{BUCKET}/heads/.spin-cache"), "the stage cache is on the bucket"
    assert not s3.exists(f"{BUCKET}/heads/.spin-claims/{photo.photo_id}.json"), "the claim is released"
    assert [c.calls[photo.photo_id] for c in counted.values()] == [1, 1, 1] and recon.calls == 1

    # "another host": a fresh scratch folder, nothing shared but the bucket and the Prefect server
    state = run("host-b")
    assert state.is_completed(), state
    (again,) = state.result().photos
    assert again.cached_stages == ["align", "views", "recon", "export"]
    assert [c.calls[photo.photo_id] for c in counted.values()] == [1, 1, 1] and recon.calls == 1
    assert not any((tmp_path / "host-b").rglob("head.glb")), "a cache hit downloads nothing"

    # a published folder whose marker is gone is not trusted: only export runs again (from the bucket's mesh)
    s3.rm_file(f"{BUCKET}/heads/{photo.photo_id}/asset/{storage.MARKER}")
    state = run("host-b")
    assert state.is_completed(), state
    assert state.result().photos[0].cached_stages == ["align", "views", "recon"]
    assert counted["export"].calls[photo.photo_id] == 2 and recon.calls == 1
    assert storage.read_marker(f"{out}/{photo.photo_id}/asset") is not None


# stand-in stages for the concurrency test: milliseconds each, plus a delay so that two runs overlap


def _fake_align(photo, params, weights=None, device="cpu") -> AlignedRecord:
    out = from_uri(photo.work_uri) / "aligned"
    assert from_uri(photo.uri).is_file(), "the photo was fetched from the bucket"
    with stages.staged_dir(out) as tmp:
        (tmp / "crop.txt").write_text(photo.photo_id)
    return AlignedRecord(photo_id=photo.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                         backend="stand-in", has_identity=False)


def _fake_views(aligned, params, work_uri, device="auto", weights=None) -> ViewsRecord:
    assert (from_uri(aligned.dir_uri) / "crop.txt").is_file()
    out = from_uri(work_uri) / "views"
    with stages.staged_dir(out) as tmp:
        (tmp / "transforms.json").write_text(json.dumps({"frames": []}))
    return ViewsRecord(photo_id=aligned.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out),
                       backend="synthetic", synthetic=True, n_views=0, weights_id="synthetic")


def _fake_recon(views, params, work_uri, device="auto", log=None, progress=False):
    from flows.records import MeshRecord

    out = from_uri(work_uri) / "mesh"
    with stages.staged_dir(out) as tmp:
        (tmp / "mesh.txt").write_text(views.photo_id)
    return MeshRecord(photo_id=views.photo_id, dir_uri=to_uri(out), sha256=stages.tree_sha256(out))


def _fake_export(mesh, params, work_uri) -> AssetRecord:
    out = from_uri(work_uri) / "asset"
    with stages.staged_dir(out) as tmp:
        (tmp / "head.glb").write_bytes(b"glTF stand-in " + mesh.photo_id.encode())
    glb = out / "head.glb"
    return AssetRecord(photo_id=mesh.photo_id, dir_uri=to_uri(out), glb_uri=to_uri(glb),
                       glb_sha256=stages.file_sha256(glb), files={"lod0": to_uri(glb)}, summary={})


def test_two_workers_on_one_s3_batch_make_every_head_exactly_once(harness, s3, tmp_path, monkeypatch):
    from PIL import Image

    from flows.pipeline import spin_to_mesh

    names = ("ann", "bob", "cyd", "dee")
    for i, name in enumerate(names):
        Image.new("RGB", (32, 32), (50 * i, 90, 200)).save(tmp_path / f"{name}.png")
        _upload(s3, tmp_path / f"{name}.png", f"batch/{name}.png")
    s3.pipe_file(f"{BUCKET}/batch/heads.txt", "\n".join(f"{n}.png" for n in names).encode())
    fakes = {"align": _fake_align, "views": _fake_views, "recon": _fake_recon, "export": _fake_export}
    counted = {name: PerPhoto(fn, delay_s=0.3) for name, fn in fakes.items()}
    for name, wrapper in counted.items():
        monkeypatch.setattr(stages, f"run_{name}", wrapper)
    out = f"s3://{BUCKET}/two-workers"
    states: dict[str, object] = {}

    def worker(host: str) -> None:
        options = RunOptions(retries=0, work_dir=str(tmp_path / host), claim_ttl_s=60)
        states[host] = spin_to_mesh(input=f"s3://{BUCKET}/batch/heads.txt", output=out, **fast_kwargs(options),
                                    return_state=True)

    threads = [threading.Thread(target=worker, args=(h,)) for h in ("host-a", "host-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(s.is_completed() for s in states.values()), states
    results = [p for s in states.values() for p in s.result().photos]
    pids = {p.photo_id for p in results}
    assert len(pids) == len(names)
    for stage, wrapper in counted.items():
        assert dict(wrapper.calls) == dict.fromkeys(pids, 1), f"{stage} ran more than once for a head"
    made_here = Tally(p.photo_id for p in results if p.status == "completed" and "align" not in p.cached_stages)
    assert made_here == Tally(dict.fromkeys(pids, 1)), "each head was made by exactly one of the two runs"
    for p in results:  # the other run either skipped the head (claimed) or took it from the cache
        assert p.status in ("completed", "skipped"), p
        if p.status == "skipped":
            assert p.error.startswith("claimed by flow run "), p.error
    for pid in pids:
        glb = s3.cat_file(f"{BUCKET}/two-workers/{pid}/asset/head.glb")
        assert glb == b"glTF stand-in " + pid.encode()
    assert not s3.exists(f"{BUCKET}/two-workers/.spin-claims") or not s3.ls(f"{BUCKET}/two-workers/.spin-claims")


# ---------------------------------------------------------------- bad URIs: one line, a documented code, no retry


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from flows.cli import main

    code = main(["run", *argv, "--views-backend", "synthetic", "--align-backend", "offline", "--offline"])
    err = capsys.readouterr().err.strip()
    return code, err


def test_bad_storage_uris_end_in_one_line_with_a_documented_exit_code(s3, tmp_path, capsys):
    from flows.caching import is_transient
    from spin_io.errors import EXIT_OUTPUT, EXIT_USAGE

    photo = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(photo)
    cases = [
        ([str(photo), "-o", "nosuchscheme://bucket/heads"], EXIT_OUTPUT, "storage scheme 'nosuchscheme://' is not"),
        ([str(photo), "-o", "s3://no-such-bucket/heads"], EXIT_OUTPUT, "not found"),
        (["s3://no-such-bucket/photos/", "-o", str(tmp_path / "out")], EXIT_USAGE, "not found"),
        ([str(photo), "-o", str(tmp_path / "out"), "--cache-dir", "s3://no-such-bucket/c"], EXIT_OUTPUT, "cache"),
    ]
    for argv, expected, words in cases:
        code, err = _cli(argv, capsys)
        assert code == expected, (argv, code, err)
        assert len(err.splitlines()) == 1 and err.startswith("spin-to-mesh run: error: ") and words in err, err

    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with environment({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None,
                   "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}):
            code, err = _cli([str(photo), "-o", f"s3://{BUCKET}/heads"], capsys)
            assert code == EXIT_OUTPUT and len(err.splitlines()) == 1 and "no credentials" in err, err
            with pytest.raises(storage.StorageError) as caught:
                storage.check_output(f"s3://{BUCKET}/heads")
            assert not is_transient(caught.value), "a storage refusal is never retried"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
