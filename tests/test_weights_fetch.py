"""`spin-to-mesh weights fetch` without network: a local HTTP server and a local hub-compatible endpoint.

The server serves tiny files by path, honours Range (206), can cut a transfer short or stall it
(to kill a download midway), can answer like Hugging Face's /resolve/ endpoint (X-Repo-Commit,
X-Linked-Etag = sha256) and like Google Drive's quota page. Every request is logged so the tests
can assert what was asked for (Range offsets, mirror paths, how many times a file was sent).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.cli import main as cli_main
from model_fetch import (
    ChecksumMismatchError,
    DriveQuotaError,
    WeightsMissingError,
    ensure_weights,
    fetch_weights,
    status,
    weights_licences,
)
from model_fetch import api as fetch_api
from model_fetch import drive as fetch_drive
from model_fetch import manifest as fetch_manifest
from model_fetch.manifest import MANIFEST, WeightFile

REPO_ROOT = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p>
<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try accessing the
file again later. If the file you are trying to access is particularly large or is shared with many people, it may
take up to 24 hours to be able to view or download the file. If you still can't access a file after 24 hours,
contact your domain administrator.</p></body></html>"""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeServer:
    """Tiny files by URL path; modes per path: 'ok', 'cut' (half then close), 'stall' (half then wait)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hub: dict[str, str] = {}  # path -> sha256 announced by HEAD (a hub file)
        self.html: dict[str, str] = {}  # path -> page served as text/html
        self.mode: dict[str, str] = {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.sent: dict[str, int] = {}  # path -> bytes sent
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _path(self) -> str:
                return self.path.split("?", 1)[0]

            def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = self._path()
                server.log.append((self.command, self.path, self.headers.get("Range")))
                if path in server.html:
                    page = server.html[path].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    if body:
                        self.wfile.write(page)
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and body:
                    start = int(rng[6:].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                if path in server.hub:
                    self.send_header("X-Repo-Commit", REVISION)
                    self.send_header("X-Linked-Etag", f'"{server.hub[path]}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("ETag", f'"{server.hub[path]}"')
                self.end_headers()
                if not body:
                    return
                chunk = data[start:]
                mode = server.mode.get(path, "ok")
                if mode in ("cut", "stall"):
                    half = len(data) // 2 - start
                    self.wfile.write(chunk[:half])
                    self.wfile.flush()
                    server.sent[path] = server.sent.get(path, 0) + half
                    if mode == "stall":
                        server.release.wait(30)
                    self.close_connection = True
                    return
                if mode == "slow":
                    time.sleep(0.5)
                self.wfile.write(chunk)
                server.sent[path] = server.sent.get(path, 0) + len(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path_prefix: str) -> list[tuple[str, str, str | None]]:
        return [entry for entry in self.log if entry[0] == "GET" and entry[1].startswith(path_prefix)]


@pytest.fixture
def server(monkeypatch):
    srv = FakeServer()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("SMR_WEIGHTS_MIRROR", raising=False)
    monkeypatch.delenv("SMR_WEIGHTS", raising=False)
    yield srv
    srv.close()


@pytest.fixture
def online(monkeypatch):
    """Undo conftest's HF_HUB_OFFLINE=1 for a test that talks to a local server only."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def _use_manifest(monkeypatch, files: tuple[WeightFile, ...]) -> None:
    monkeypatch.setattr(fetch_manifest, "MANIFEST", files)
    monkeypatch.setattr(fetch_api, "MANIFEST", files)


def _tiny(name: str, relpath: str, kind: str, locator: str, **kw: object) -> WeightFile:
    defaults: dict[str, object] = {"licence": "MIT", "commercial": True, "needed_for": frozenset({"views"})}
    defaults.update(kw)
    defaults.setdefault("required_for", defaults["needed_for"])
    return WeightFile(name=name, relpath=relpath, kind=kind, locator=locator, **defaults)  # type: ignore[arg-type]


def _records(root: Path) -> dict:
    return json.loads((root / ".spin-to-mesh" / "manifest.json").read_text())["files"]


# --------------------------------------------------------------------------- the real table


def test_manifest_table_is_complete_and_licences_are_marked():
    names = [f.name for f in MANIFEST]
    assert len(names) == len(set(names))
    relpaths = {f.relpath for f in MANIFEST}
    # the layout model_fetch.layout (for smr_core.weights and align.weights) looks for
    assert {"spmr.ckpt", "models/encoder/config.json", "models/antelopev2/scrfd_10g_bnkps.onnx",
            "models/antelopev2/arcface.onnx", "79999_iter.pth", "3ddfa/mb1_120x120.pth",
            "3ddfa/bfm_noneck_v3.pkl", "3ddfa/FaceBoxesProd.pth",
            "3ddfa/param_mean_std_62d_120x120.pkl"} <= relpaths
    by = {f.name: f for f in MANIFEST}
    assert by["scrfd"].commercial is False and "non-commercial" in by["scrfd"].licence
    assert by["bfm"].commercial is False
    for wf in MANIFEST:
        assert wf.licence and wf.licence_source and wf.manual, wf.name
        if wf.kind == "hf":
            assert wf.revision and len(wf.revision) == 40, wf.name  # pinned commit
        if wf.sha256 is not None:
            assert len(wf.sha256) == 64
        # Drive files publish no checksum: trust on first use, and the code says so
        if wf.kind.startswith("gdrive"):
            assert not wf.pinned and "first use" in wf.note


def test_offline_cli_fails_fast_listing_each_file_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SMR_WEIGHTS": str(tmp_path / "w")}
    env.pop("SMR_WEIGHTS_MIRROR", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "weights", "fetch"], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 3, proc.stderr
    assert elapsed < 20
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith("spin-to-mesh weights: error: ")
    assert "offline" in first and "spin-to-mesh weights fetch" in first and "--views-backend synthetic" in first
    for wf in MANIFEST:
        if wf.is_required():
            line = next(ln for ln in proc.stderr.splitlines() if ln.strip().startswith(f"- {wf.relpath} "))
            assert wf.source_text() in line and wf.licence in line
    assert "[non-commercial]" in proc.stderr
    assert str(tmp_path / "w" / "spmr.ckpt") in proc.stderr  # where to put it by hand
    assert not (tmp_path / "w").exists()  # offline writes nothing


def test_offline_flag_and_stage_selection(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # align alone falls back (dlib, GrabCut, landmark refinement): nothing is required
    assert ensure_weights(["align"], tmp_path, offline=True) == tmp_path
    with pytest.raises(WeightsMissingError) as info:
        ensure_weights(["run"], tmp_path, offline=True)
    text = str(info.value)
    listed = {wf.relpath for wf in info.value.missing}
    assert listed == {"spmr.ckpt", "models/encoder/config.json", "models/encoder/pytorch_model.bin",
                      "models/antelopev2/arcface.onnx", "models/antelopev2/scrfd_10g_bnkps.onnx"}
    assert "79999_iter.pth" not in text and "3ddfa" not in text  # files with a fallback never make a stage fail
    assert info.value.exit_code == 3 and "weights fetch" in info.value.summary
    assert "--views-backend synthetic" in info.value.summary and "\n" not in info.value.summary


def test_unknown_only_name_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["weights", "fetch", "--weights", str(tmp_path), "--only", "nope", "--offline"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "spmr" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- fetching from local servers


def test_fresh_fetch_from_hub_and_url(server, online, tmp_path, monkeypatch, capsys):
    enc, onnx, url_file = b"E" * 3000, b"O" * 2000, b"U" * 1000
    server.files[f"/org/tiny/resolve/{REVISION}/encoder/model.bin"] = enc
    server.hub[f"/org/tiny/resolve/{REVISION}/encoder/model.bin"] = _sha(enc)
    server.files[f"/org/tiny/resolve/{REVISION}/face.onnx"] = onnx
    server.hub[f"/org/tiny/resolve/{REVISION}/face.onnx"] = _sha(onnx)
    server.files["/raw/tddfa.pth"] = url_file
    files = (
        _tiny("enc", "models/encoder/model.bin", "hf", "org/tiny", path_in_source="encoder/model.bin",
              revision=REVISION),
        _tiny("face", "models/antelopev2/face.onnx", "hf", "org/tiny", path_in_source="face.onnx", revision=REVISION,
              licence="non-commercial research only", commercial=False, needed_for=frozenset({"align"})),
        _tiny("tddfa", "3ddfa/tddfa.pth", "url", server.url + "/raw/tddfa.pth", sha256=_sha(url_file),
              needed_for=frozenset({"align"})),
    )
    _use_manifest(monkeypatch, files)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    root = tmp_path / "weights"
    assert ensure_weights(["run"], root) == root
    assert (root / "models/encoder/model.bin").read_bytes() == enc
    assert (root / "models/antelopev2/face.onnx").read_bytes() == onnx
    assert (root / "3ddfa/tddfa.pth").read_bytes() == url_file
    rec = _records(root)
    assert rec["models/encoder/model.bin"]["sha256"] == _sha(enc)
    assert rec["models/encoder/model.bin"]["verified_by"] == "hub" and rec["models/encoder/model.bin"]["revision"]
    assert rec["3ddfa/tddfa.pth"]["verified_by"] == "pinned"
    assert rec["models/antelopev2/face.onnx"]["commercial_use"] is False
    # licences for report.json / GLB extras, with the checksum of the copy used
    lic = {r["name"]: r for r in weights_licences(root)}
    assert lic["face"]["commercial_use"] is False and lic["face"]["sha256"] == _sha(onnx)
    # the partial folder is empty once everything is placed
    assert not any((root / ".spin-to-mesh" / "partial").iterdir())
    # a second ensure neither downloads nor hashes
    n = len(server.log)
    ensure_weights(["run"], root)
    assert len(server.log) == n
    # results follow the umask like every other output
    mode = (root / "3ddfa/tddfa.pth").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    from spin_io.atomic import current_umask

    return current_umask()


def test_checksum_mismatch_is_refused_and_nothing_kept(server, online, tmp_path, monkeypatch):
    server.files["/raw/a.pth"] = b"tampered bytes"
    files = (_tiny("a", "a.pth", "url", server.url + "/raw/a.pth", sha256=_sha(b"the real bytes")),)
    _use_manifest(monkeypatch, files)
    root = tmp_path / "w"
    with pytest.raises(WeightsMissingError) as info:
        fetch_weights(root)
    assert "does not match" in str(info.value) and info.value.exit_code == 3
    assert not (root / "a.pth").exists()
    assert not any((root / ".spin-to-mesh" / "partial").glob("*"))
    assert not (root / ".spin-to-mesh" / "manifest.json").exists()


def test_hub_reported_sha256_is_enforced(server, online, tmp_path, monkeypatch):
    path = f"/org/tiny/resolve/{REVISION}/m.bin"
    server.files[path] = b"what the CDN sent"
    server.hub[path] = _sha(b"what the hub announced")
    _use_manifest(monkeypatch, (_tiny("m", "m.bin", "hf", "org/tiny", path_in_source="m.bin", revision=REVISION),))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    with pytest.raises(WeightsMissingError, match="does not match"):
        fetch_weights(tmp_path)
    assert not (tmp_path / "m.bin").exists()


def test_first_download_is_recorded_then_enforced(server, online, tmp_path, monkeypatch):
    server.files["/mirror/spmr.ckpt"] = b"release v1"
    _use_manifest(monkeypatch, (_tiny("spmr", "spmr.ckpt", "gdrive-folder", "FOLDER", path_in_source="spmr.ckpt"),))
    monkeypatch.setenv("SMR_WEIGHTS_MIRROR", server.url + "/mirror")
    fetch_weights(tmp_path)
    assert _records(tmp_path)["spmr.ckpt"]["verified_by"] == "first-download"
    # the copy is replaced behind our back: the next verification catches it
    (tmp_path / "spmr.ckpt").write_bytes(b"release v2")
    with pytest.raises(WeightsMissingError, match="does not match"):
        fetch_weights(tmp_path)
    # a fresh download that differs from the recorded one is refused as well
    (tmp_path / "spmr.ckpt").unlink()
    server.files["/mirror/spmr.ckpt"] = b"release v2"
    with pytest.raises(WeightsMissingError, match="does not match"):
        fetch_weights(tmp_path)
    assert not (tmp_path / "spmr.ckpt").exists()
    st = {s.file.name: s for s in status(tmp_path)}
    assert st["spmr"].present is False and st["spmr"].sha256 == _sha(b"release v1")


def test_mirror_setting_points_every_source_at_the_mirror(server, online, tmp_path, monkeypatch):
    blobs = {"spmr.ckpt": b"S" * 100, "models/encoder/config.json": b"{}", "79999_iter.pth": b"B" * 50,
             "3ddfa/x.pkl": b"X" * 10}
    for rel, data in blobs.items():
        server.files[f"/studio/weights/{rel}"] = data
    files = (
        _tiny("spmr", "spmr.ckpt", "gdrive-folder", "FOLDER", path_in_source="spmr.ckpt"),
        _tiny("cfg", "models/encoder/config.json", "hf", "org/tiny", path_in_source="encoder/config.json",
              revision=REVISION),
        _tiny("bisenet", "79999_iter.pth", "gdrive", "FILEID"),
        _tiny("x", "3ddfa/x.pkl", "url", "https://example.invalid/x.pkl", sha256=_sha(b"X" * 10)),
    )
    _use_manifest(monkeypatch, files)
    monkeypatch.setenv("SMR_WEIGHTS_MIRROR", server.url + "/studio/weights/")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # must not be used
    monkeypatch.setattr(fetch_drive, "DRIVE_FILE_URL", "http://127.0.0.1:9/uc?id={id}")  # must not be used
    fetch_weights(tmp_path)
    for rel, data in blobs.items():
        assert (tmp_path / rel).read_bytes() == data
    asked = sorted(p for method, p, _r in server.log if method == "GET")
    assert asked == sorted(f"/studio/weights/{rel}" for rel in blobs)
    assert _records(tmp_path)["3ddfa/x.pkl"]["verified_by"] == "pinned"  # pins still apply to mirrored files
    assert _records(tmp_path)["spmr.ckpt"]["mirror"] == server.url + "/studio/weights"


def test_resume_after_a_cut_connection(server, online, tmp_path, monkeypatch):
    data = bytes(range(256)) * 64  # 16 KiB
    server.files["/m/big.bin"] = data
    server.mode["/m/big.bin"] = "cut"
    _use_manifest(monkeypatch, (_tiny("big", "big.bin", "url", server.url + "/m/big.bin", sha256=_sha(data)),))
    with pytest.raises(WeightsMissingError, match="again to resume"):
        fetch_weights(tmp_path)
    part = tmp_path / ".spin-to-mesh" / "partial" / "big.part"
    assert part.stat().st_size == len(data) // 2 and not (tmp_path / "big.bin").exists()
    server.mode["/m/big.bin"] = "ok"
    fetch_weights(tmp_path)
    assert (tmp_path / "big.bin").read_bytes() == data
    assert server.gets("/m/big.bin")[-1][2] == f"bytes={len(data) // 2}-"
    assert server.sent["/m/big.bin"] == len(data)  # half, then the other half: nothing sent twice


_CHILD = """
import sys
from model_fetch import fetch_weights
fetch_weights(sys.argv[1], only=["spmr"])
"""


def _child(root: Path, server: FakeServer) -> subprocess.Popen:
    env = {**os.environ, "SMR_WEIGHTS_MIRROR": server.url + "/studio", "NO_PROXY": "127.0.0.1"}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(root)], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_resume_after_the_fetcher_is_killed(server, online, tmp_path, monkeypatch):
    data = os.urandom(64 * 1024)
    server.files["/studio/spmr.ckpt"] = data
    server.mode["/studio/spmr.ckpt"] = "stall"
    child = _child(tmp_path, server)
    part = tmp_path / ".spin-to-mesh" / "partial" / "spmr.part"
    try:
        _wait_for(lambda: part.exists() and part.stat().st_size == len(data) // 2)
        child.kill()  # SIGKILL: no cleanup code runs
        child.wait(30)
    finally:
        server.release.set()
    assert not (tmp_path / "spmr.ckpt").exists()
    server.mode["/studio/spmr.ckpt"] = "ok"
    _use_manifest(monkeypatch, tuple(f for f in MANIFEST if f.name == "spmr"))
    monkeypatch.setenv("SMR_WEIGHTS_MIRROR", server.url + "/studio")
    fetch_weights(tmp_path, only=["spmr"])
    assert (tmp_path / "spmr.ckpt").read_bytes() == data
    assert server.gets("/studio/spmr.ckpt")[-1][2] == f"bytes={len(data) // 2}-"
    assert _records(tmp_path)["spmr.ckpt"]["sha256"] == _sha(data)


def test_two_fetchers_at_once_make_one_good_copy(server, tmp_path):
    data = os.urandom(32 * 1024)
    server.files["/studio/spmr.ckpt"] = data
    server.mode["/studio/spmr.ckpt"] = "slow"
    children = [_child(tmp_path, server) for _ in range(2)]
    outs = [c.communicate(timeout=60) for c in children]
    assert [c.returncode for c in children] == [0, 0], outs
    assert (tmp_path / "spmr.ckpt").read_bytes() == data
    assert len(server.gets("/studio/spmr.ckpt")) == 1  # the second waited on the lock, then found the file
    assert sum("present, verified" in err for _out, err in outs) == 1
    assert _records(tmp_path)["spmr.ckpt"]["sha256"] == _sha(data)


# --------------------------------------------------------------------------- Google Drive


def test_gdown_quota_message_is_recognised_and_explained(tmp_path):
    import importlib

    import gdown

    gdown_download = importlib.import_module("gdown.download")  # the module (gdown.download is also a function)
    with pytest.raises(gdown.exceptions.FileURLRetrievalError) as info:
        gdown_download.get_url_from_gdrive_confirmation(QUOTA_PAGE)  # gdown's own parser of Drive's page
    assert fetch_drive.is_quota_text(str(info.value))
    err = fetch_drive.quota_error("spmr.ckpt", tmp_path / "spmr.ckpt", "https://drive.google.com/x")
    assert isinstance(err, DriveQuotaError) and err.exit_code == 3
    text = str(err)
    assert "too many users" in text and "24 hours" in text and str(tmp_path / "spmr.ckpt") in text
    assert "weights fetch" in text and "\n" not in text


def test_drive_quota_page_is_refused_with_the_manual_fallback(server, online, tmp_path, monkeypatch):
    server.html["/uc"] = QUOTA_PAGE
    monkeypatch.setattr(fetch_drive, "DRIVE_FILE_URL", server.url + "/uc?id={id}")
    _use_manifest(monkeypatch, (_tiny("bisenet", "79999_iter.pth", "gdrive", "FILEID",
                                      needed_for=frozenset({"align"})),))
    with pytest.raises(WeightsMissingError) as info:
        ensure_weights(["align"], tmp_path)
    text = str(info.value)
    assert "too many users" in text and "drive.google.com/uc?id=FILEID" in text and "24 hours" in text
    assert not (tmp_path / "79999_iter.pth").exists()
    assert not [p for p in (tmp_path / ".spin-to-mesh" / "partial").iterdir()]  # the page was not kept


def test_drive_download_goes_through_gdown_and_is_recorded(server, online, tmp_path, monkeypatch):
    data = b"\x80\x02parsing weights" * 100
    server.files["/uc"] = data
    monkeypatch.setattr(fetch_drive, "DRIVE_FILE_URL", server.url + "/uc?id={id}")
    _use_manifest(monkeypatch, (_tiny("bisenet", "79999_iter.pth", "gdrive", "FILEID"),))
    fetch_weights(tmp_path)
    assert (tmp_path / "79999_iter.pth").read_bytes() == data
    rec = _records(tmp_path)["79999_iter.pth"]
    assert rec["verified_by"] == "first-download" and rec["sha256"] == _sha(data)


# --------------------------------------------------------------------------- shared folders and hand-placed files


def test_read_only_shared_folder_needs_no_writes(tmp_path, monkeypatch):
    files = (_tiny("a", "a.bin", "url", "http://127.0.0.1:9/a"),)
    _use_manifest(monkeypatch, files)
    (tmp_path / "a.bin").write_bytes(b"a")
    monkeypatch.setenv("SMR_WEIGHTS", str(tmp_path))
    assert ensure_weights(["views"], offline=False) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no lock, no record, no partial folder


def test_hand_placed_file_gets_its_checksum_recorded(tmp_path, monkeypatch):
    _use_manifest(monkeypatch, (_tiny("a", "a.bin", "url", "http://127.0.0.1:9/a"),))
    (tmp_path / "a.bin").write_bytes(b"placed by hand")
    fetch_weights(tmp_path, offline=False)
    assert _records(tmp_path)["a.bin"]["sha256"] == _sha(b"placed by hand")
    assert status(tmp_path, verify=True)[0].verified is True


def test_accepted_alternatives_and_converted_folders_are_not_refetched(tmp_path, monkeypatch):
    monkeypatch.delenv("SMR_WEIGHTS_MIRROR", raising=False)
    root = tmp_path / "w"
    (root / "models/antelopev2").mkdir(parents=True)
    (root / "spmr.safetensors").write_bytes(b"s")  # what `weights convert --safetensors`-style folders hold
    (root / "models/antelopev2/glintr100.onnx").write_bytes(b"g")  # antelopev2's own recogniser
    with pytest.raises(WeightsMissingError) as info:
        ensure_weights(["run"], root, offline=True)
    listed = {wf.relpath for wf in info.value.missing}
    assert "spmr.ckpt" not in listed and "models/antelopev2/arcface.onnx" not in listed
    assert "models/antelopev2/scrfd_10g_bnkps.onnx" in listed
    # a converted folder (spin-to-mesh weights convert) stands in for spmr.ckpt and the encoder
    conv = tmp_path / "conv"
    (conv / "models/antelopev2").mkdir(parents=True)
    (conv / "spinmeround.json").write_text("{}")
    for sub, name in (("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
                      ("text_encoder", "model.safetensors")):
        (conv / sub).mkdir()
        (conv / sub / "config.json").write_text("{}")
        (conv / sub / name).write_bytes(b"x")
    for name in ("scrfd_10g_bnkps.onnx", "arcface.onnx"):
        (conv / "models/antelopev2" / name).write_bytes(b"o")
    assert ensure_weights(["run"], conv, offline=True) == conv


def test_a_changed_copy_stops_the_stage(server, online, tmp_path, monkeypatch):
    server.files["/mirror/spmr.ckpt"] = b"release v1"
    _use_manifest(monkeypatch, (_tiny("spmr", "spmr.ckpt", "gdrive-folder", "FOLDER", path_in_source="spmr.ckpt"),))
    monkeypatch.setenv("SMR_WEIGHTS_MIRROR", server.url + "/mirror")
    ensure_weights(["views"], tmp_path)
    (tmp_path / "spmr.ckpt").write_bytes(b"truncated")
    with pytest.raises(ChecksumMismatchError, match="delete it and run `spin-to-mesh weights fetch`") as info:
        ensure_weights(["views"], tmp_path)
    assert info.value.exit_code == 3
