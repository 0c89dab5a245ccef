"""Input, output and stage cache on shared storage: fsspec URIs (s3://, gs://, ...) besides local paths.

Stages work on local folders (they write atomically with spin_io.atomic). For a remote output this
layer gives each run a local scratch folder (`options.work_dir`), stages a head's inputs there from
the URI, lets the stage run locally, and then *publishes* the finished stage folder to the URI:
every file is uploaded first and a completion marker (`.spin-complete.json`, listing each file's
sha256) is written last. Readers trust only folders with a marker whose hashes match the record:
an object store has no atomic rename, so a half-uploaded folder is one without a marker.

Plain paths and file:// URIs are local: nothing is copied, and the flow behaves exactly as before.

Exactly-once on shared storage: before a head's first stage, its run takes a *claim*, an object
`<output>/.spin-claims/<photo id>.json` created with a conditional put (S3 `If-None-Match: *`), so
of two workers only one gets it. The claim names the flow run and host and expires after
`options.claim_ttl_s` unless renewed (a thread renews it while the head runs), so a dead worker's
claim is taken over after at most that long (S3: a conditional overwrite `If-Match: <etag>`). A head
that another live run holds is skipped; a head that is done comes out of the (shared) stage cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flows.errors import FlowError
from spin_io.errors import EXIT_OUTPUT, EXIT_USAGE

MARKER = ".spin-complete.json"
CLAIMS_DIRNAME = ".spin-claims"
INPUTS_DIRNAME = ".spin-inputs"
WORK_DIR_ENV = "SPIN_TO_MESH_WORK_DIR"
_log = logging.getLogger("spin_to_mesh.storage")


class StorageError(FlowError):
    """A storage URI cannot be used: unknown scheme, missing bucket, no credentials, no permission.

    A user error (never retried); `exit_code` is EXIT_OUTPUT for the output or the cache, EXIT_USAGE for the input.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the client library said
        self.exit_code = exit_code


# ---------------------------------------------------------------- locations


def is_remote(location: str | Path) -> bool:
    """True for fsspec URIs other than file:// ('s3://b/k', 'gs://b/k', 'memory://x'); plain paths are local."""
    scheme = urlsplit(str(location)).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def local_path(location: str | Path) -> Path:
    """The local path of a plain path or a file:// URI."""
    text = str(location)
    if urlsplit(text).scheme == "file":
        from flows.records import from_uri

        return from_uri(text)
    return Path(text).expanduser()


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def filesystem(uri: str, role: str = "input") -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of `uri`; an unknown scheme or a missing driver is a StorageError."""
    import fsspec

    code = EXIT_USAGE if role == "input" else EXIT_OUTPUT
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as exc:
        scheme = urlsplit(uri).scheme
        hint = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(scheme)
        extra = f" (pip install {hint})" if hint else ""
        raise StorageError(f"{role} {uri}: storage scheme '{scheme}://' is not available{extra}: {exc}", code) from None
    # fsspec shares one instance per store and caches its listings: several runs (threads) of this process write
    # the same prefixes, so every lookup here asks the store itself
    fs.invalidate_cache()
    return fs, path.rstrip("/")


def _explain(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if "credential" in name.lower() or "credential" in text.lower():
        return f"no credentials ({text}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the store's) on the worker"
    if isinstance(exc, FileNotFoundError):
        return f"not found ({text}): check the bucket and the path"
    if isinstance(exc, PermissionError):
        return f"access denied ({text}): check the credentials and the bucket's policy"
    return f"{name}: {text}"


def check_output(uri: str, role: str = "output") -> str:
    """Refuse an output (or cache) URI that cannot be written, in one request or two: a probe object, removed."""
    fs, path = filesystem(uri, role)
    probe = join(path, f".spin-probe-{uuid.uuid4().hex}")
    try:
        fs.pipe_file(probe, b"probe")
        fs.rm_file(probe)
    except Exception as exc:  # botocore's NoCredentialsError is no OSError: any failure here is the user's to fix
        raise StorageError(f"{role} {uri}: cannot write: {_explain(exc)}", EXIT_OUTPUT) from None
    return uri.rstrip("/")


def scratch_root(work_dir: str | None, output: str) -> Path:
    """This worker's local folder for a remote output: <work dir>/<hash of the output URI>."""
    base = Path(work_dir or os.environ.get(WORK_DIR_ENV) or Path(tempfile.gettempdir()) / "spin-to-mesh-work")
    root = base.expanduser().resolve() / hashlib.sha256(output.rstrip("/").encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    return root


# ---------------------------------------------------------------- inputs

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST_SUFFIXES = (".txt", ".json", ".lst")
_GLOB = re.compile(r"[*?\[]")


def resolve_remote_photos(spec: str) -> list[str]:
    """The photo URIs named by a remote input: a photo, a folder (prefix), a glob or a manifest, in a stable order."""
    from flows.errors import InputNotFoundError

    fs, path = filesystem(spec, "input")
    try:
        if _GLOB.search(path):
            found = sorted(fs.glob(path))
            photos = [p for p in found if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        elif fs.isfile(path):
            suffix = Path(path).suffix.lower()
            if suffix in MANIFEST_SUFFIXES:
                photos = _remote_manifest(fs, path)
            elif suffix in IMAGE_SUFFIXES:
                photos = [path]
            else:
                raise InputNotFoundError(f"{spec}: neither a photo nor a manifest ({', '.join(MANIFEST_SUFFIXES)})")
        elif fs.isdir(path):
            photos = sorted(p for p in fs.ls(path, detail=False) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        elif not fs.exists(path.split("/")[0]):
            raise StorageError(f"input {spec}: not found (bucket '{path.split('/')[0]}' does not exist or cannot be "
                               "seen with these credentials): check the bucket and the path", EXIT_USAGE)
        else:
            raise InputNotFoundError(f"{spec}: no such photo, folder, glob or manifest; check the URI")
    except FlowError:
        raise
    except Exception as exc:
        raise StorageError(f"input {spec}: cannot read: {_explain(exc)}", EXIT_USAGE) from None
    if not photos:
        raise InputNotFoundError(f"{spec}: matches no photos ({', '.join(IMAGE_SUFFIXES)})")
    return list(dict.fromkeys(fs.unstrip_protocol(p) for p in photos))


def _remote_manifest(fs: Any, path: str) -> list[str]:
    from flows.errors import InputNotFoundError

    text = fs.cat_file(path).decode("utf-8")
    if path.lower().endswith(".json"):
        entries = json.loads(text)
        entries = entries.get("photos") if isinstance(entries, dict) else entries
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise InputNotFoundError(f"{path}: a JSON manifest must be a list of paths (or {{\"photos\": [...]}})")
    else:
        entries = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    parent = path.rsplit("/", 1)[0]
    photos = []
    for entry in entries:
        p = fs._strip_protocol(entry) if "://" in entry else join(parent, entry)
        photos.extend(sorted(fs.glob(p)) if _GLOB.search(p) else [p])
    missing = [p for p in photos if not fs.isfile(p)]
    if missing:
        raise InputNotFoundError(f"{path}: manifest lists photos that do not exist: {', '.join(missing[:5])}")
    return photos


def fetch_photo(uri: str, root: Path, sha256: str | None = None) -> Path:
    """A local copy of a remote photo under `root`/.spin-inputs (reused when its sha256 matches)."""
    from spin_io.hashing import file_sha256

    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if sha256 is not None:
        local = root / INPUTS_DIRNAME / sha256 / name
        if local.is_file() and file_sha256(local) == sha256:
            return local
    fs, path = filesystem(uri, "input")
    tmp_dir = root / INPUTS_DIRNAME / f".tmp-{uuid.uuid4().hex}"
    tmp_dir.mkdir(parents=True)
    try:
        try:
            fs.get_file(path, str(tmp_dir / name))
        except Exception as exc:
            raise StorageError(f"input {uri}: cannot read: {_explain(exc)}", EXIT_USAGE) from None
        sha = file_sha256(tmp_dir / name)
        final = root / INPUTS_DIRNAME / sha / name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir / name, final)
        return final
    finally:
        import shutil

        shutil.rmtree(tmp_dir, ignore_errors=True)


# ---------------------------------------------------------------- stage folders


def _local_files(folder: Path) -> dict[str, str]:
    from spin_io.hashing import file_sha256

    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".tmp-")}


def read_marker(uri: str) -> dict[str, Any] | None:
    """The completion marker of a published folder, or None (no marker: not finished, whatever files are there)."""
    fs, path = filesystem(uri, "output")
    try:
        return json.loads(fs.cat_file(join(path, MARKER)))
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def published(uri: str, sha256: str | None = None, file: str | None = None, file_sha256: str | None = None) -> bool:
    """Whether `uri` is a finished folder: a marker, whose tree hash (or one file's hash) is the one expected."""
    marker = read_marker(uri)
    if marker is None:
        return False
    if sha256 is not None and marker.get("sha256") != sha256:
        return False
    return file is None or marker.get("files", {}).get(file) == file_sha256


def publish_dir(local: Path, uri: str, sha256: str) -> None:
    """Upload a finished local stage folder to `uri`: old marker and stale files out, every file up, marker last."""
    fs, path = filesystem(uri, "output")
    files = _local_files(local)
    marker_path = join(path, MARKER)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(marker_path)  # from here on readers see an unfinished folder
    with contextlib.suppress(FileNotFoundError):
        for old in fs.find(path):
            if old.rstrip("/")[len(path) + 1:] not in files:
                fs.rm_file(old)
    for rel in files:
        fs.put_file(str(local / rel), join(path, rel))
    marker = {"sha256": sha256, "files": files, "host": socket.gethostname(), "time": time.time()}
    fs.pipe_file(marker_path, json.dumps(marker, sort_keys=True).encode())


def download_dir(uri: str, local: Path, sha256: str) -> Path:
    """A local copy of a published folder (reused when the local one already has its content), written atomically."""
    from flows.stages import tree_sha256
    from spin_io.atomic import atomic_dir
    from spin_io.hashing import file_sha256

    if local.is_dir() and tree_sha256(local) == sha256:
        return local
    marker = read_marker(uri)
    if marker is None or marker.get("sha256") != sha256:
        raise FileNotFoundError(f"{uri} is not a finished stage folder (no completion marker with sha256 {sha256})")
    fs, path = filesystem(uri, "output")
    with atomic_dir(local) as tmp:
        for rel, digest in marker["files"].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(join(path, rel), str(target))
            if file_sha256(target) != digest:
                raise OSError(f"{join(uri, rel)} changed while it was downloaded")
    return local


# ---------------------------------------------------------------- claims


@dataclass
class Claim:
    """A held claim on one head; `release()` gives it up, a thread renews it until then."""

    uri: str
    token: str
    ttl_s: float
    etag: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _body(self, run_id: str) -> bytes:
        return json.dumps({"token": self.token, "run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires_at": time.time() + self.ttl_s}).encode()

    def start_renewing(self, run_id: str) -> None:
        def renew() -> None:
            while not self._stop.wait(max(0.05, self.ttl_s / 3)):
                try:
                    self.etag = _put(self.uri, self._body(run_id), if_match=self.etag)
                except Exception as exc:  # taken over (we were too slow) or the store is unreachable: say so
                    _log.warning("could not renew the claim %s: %s", self.uri, exc)

        self._thread = threading.Thread(target=renew, name="spin-claim-renewal", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        fs, path = filesystem(self.uri, "output")
        with contextlib.suppress(Exception):
            if json.loads(fs.cat_file(path)).get("token") == self.token:
                fs.rm_file(path)


def _supports_conditional_put(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in ("s3", "s3a") for p in protocols)


def _put(uri: str, body: bytes, create: bool = False, if_match: str | None = None) -> str | None:
    """Write a small object; S3: conditionally (create: If-None-Match *, else If-Match etag). Returns its etag."""
    fs, path = filesystem(uri, "output")
    if _supports_conditional_put(fs):
        if create:
            fs.pipe_file(path, body, mode="create")  # FileExistsError when another writer was first
        elif if_match is not None:
            fs.pipe_file(path, body, IfMatch=if_match)  # fails when someone else wrote it meanwhile
        else:
            fs.pipe_file(path, body)
        return fs.info(path, refresh=True).get("ETag")
    if create and fs.exists(path):
        raise FileExistsError(uri)
    fs.pipe_file(path, body)
    return None


def claim(output: str, photo_id: str, run_id: str, ttl_s: float) -> Claim | dict[str, Any]:
    """Claim the head `photo_id` of `output` for the run `run_id`: the held Claim, or the live holder's claim body.

    A claim of the same run id (the same flow run, started again) or an expired one is taken over.
    Stores without conditional puts (all but S3 here) get a write-then-read check: best effort.
    """
    uri = join(output, CLAIMS_DIRNAME, f"{photo_id}.json")
    held = Claim(uri=uri, token=uuid.uuid4().hex, ttl_s=ttl_s)
    fs, path = filesystem(uri, "output")
    for _ in range(3):
        try:
            held.etag = _put(uri, held._body(run_id), create=True)
        except FileExistsError:
            try:
                etag = fs.info(path, refresh=True).get("ETag")
                current = json.loads(fs.cat_file(path))
            except FileNotFoundError:
                continue  # released meanwhile: try to create it again
            if current.get("run_id") != run_id and float(current.get("expires_at", 0)) > time.time():
                return current
            try:
                held.etag = _put(uri, held._body(run_id), if_match=etag or "*")
            except OSError:
                continue  # someone else took it over first: look again
        if not _supports_conditional_put(fs):
            time.sleep(0.2)  # a concurrent writer's put lands in this window; the last one wins and keeps it
            current = json.loads(fs.cat_file(path))
            if current.get("token") != held.token:
                return current
        held.start_renewing(run_id)
        return held
    current = json.loads(fs.cat_file(path))
    return current



# ---------------------------------------------------------------- records between the local scratch and the URI


def local_work(work_uri: str, scratch: str | Path) -> Path:
    """The local folder of a photo's remote work folder on this worker: <scratch>/<photo id>."""
    return Path(scratch) / work_uri.rstrip("/").rsplit("/", 1)[-1]


def localise_photo(photo: Any, scratch: str | Path) -> Any:
    """The PhotoRecord with a local photo (fetched when remote) and its local work folder."""
    from flows.records import to_uri

    update = {"work_uri": to_uri(local_work(photo.work_uri, scratch))}
    if is_remote(photo.uri):
        update["uri"] = to_uri(fetch_photo(photo.uri, Path(scratch), photo.sha256))
    return photo.model_copy(update=update)


def localise(record: Any, scratch: str | Path) -> Any:
    """A stage record whose folder is remote -> the same record on a local copy (downloaded unless already here)."""
    from flows.records import to_uri

    if not is_remote(record.dir_uri):
        return record
    pid, folder = record.dir_uri.rstrip("/").rsplit("/", 2)[-2:]
    local = Path(scratch) / pid / folder
    download_dir(record.dir_uri, local, record.sha256)
    return record.model_copy(update={"dir_uri": to_uri(local)})


def publish(record: Any, scratch: str | Path, work_uri: str) -> Any:
    """Publish the stage folder a local record points at to the photo's remote work folder; the remote record."""
    from flows.records import from_uri, to_uri
    from flows.stages import tree_sha256

    local_root = to_uri(local_work(work_uri, scratch))
    folder = from_uri(record.dir_uri)
    sha = getattr(record, "sha256", None) or tree_sha256(folder)

    def remote(uri: str | None) -> str | None:
        if uri is None or not uri.startswith(local_root + "/"):
            return uri
        return work_uri.rstrip("/") + uri[len(local_root):]

    publish_dir(folder, remote(record.dir_uri), sha)
    update: dict[str, Any] = {"dir_uri": remote(record.dir_uri)}
    for name in ("glb_uri", "preview_uri"):
        if hasattr(record, name):
            update[name] = remote(getattr(record, name))
    if hasattr(record, "files"):
        update["files"] = {role: remote(uri) for role, uri in record.files.items()}
    return record.model_copy(update=update)


def intact(record: Any) -> bool:
    """Whether a cached record's remote folder is still finished and unchanged (its marker says so)."""
    if hasattr(record, "glb_sha256"):
        glb = record.glb_uri.rstrip("/").rsplit("/", 1)[-1]
        return published(record.dir_uri, file=glb, file_sha256=record.glb_sha256)
    return published(record.dir_uri, sha256=record.sha256)


def result_storage(cache: str) -> Any:
    """Prefect result storage of a cache location: a local Path, or a saved RemoteFileSystem block for a URI.

    Prefect accepts only server-side blocks as task result storage; the block is saved by each run (a server may
    be new), named after the URI's hash, and holds no credentials (the worker's environment or fsspec
    configuration supplies them).
    """
    if not is_remote(cache):
        return local_path(cache)
    from prefect.filesystems import RemoteFileSystem

    block = RemoteFileSystem(basepath=cache.rstrip("/"))
    block.save(f"spin-cache-{hashlib.sha256(cache.encode()).hexdigest()[:16]}", overwrite=True)  # once per run
    return block
