"""Fetch, verify and describe the weights: what `weights fetch`, `doctor` and the stages call.

Trust: a file is accepted only when it matches a checksum. In order of preference:
  1. pinned in the code (manifest.py: sha256 and/or git blob sha1);
  2. reported by the Hugging Face hub for a pinned revision (X-Linked-Etag = the LFS sha256, or the
     git blob sha1 of a small file), checked against the downloaded bytes;
  3. otherwise (Google Drive: no checksum published) the sha256 of the first download is recorded in
     DIR/.spin-to-mesh/manifest.json and every later copy must match it ("first-download").
A mismatch deletes the download: nothing unverified is ever placed.

Mirror: SMR_WEIGHTS_MIRROR=URL fetches every file, whatever its source, from URL/<relpath> (the
mirror is a plain HTTP copy of a complete weights folder). Pinned and recorded checksums still apply.
HF_ENDPOINT (huggingface_hub's own setting) redirects only the Hugging Face files.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_fetch import cache, drive, layout
from model_fetch.download import http_download
from model_fetch.errors import ChecksumMismatchError, FetchError, WeightsMissingError
from model_fetch.manifest import MANIFEST, PACKAGED, WeightFile, by_name, select, stages_of

DEMO_COMMAND = "spin-to-mesh run PHOTO -o OUT --views-backend synthetic"
FETCH_COMMAND = "spin-to-mesh weights fetch"
_TRUE = {"1", "on", "yes", "true"}


def is_offline(offline: bool | None = None) -> bool:
    """--offline, else HF_HUB_OFFLINE (read now, not at import, so a wrapper can set it late)."""
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def mirror_url() -> str | None:
    """The studio mirror from SMR_WEIGHTS_MIRROR, without a trailing slash (None when unset)."""
    value = os.environ.get(cache.MIRROR_ENV, "").strip()
    return value.rstrip("/") or None


@dataclass(frozen=True)
class FileStatus:
    """What is on disk for one manifest entry."""

    file: WeightFile
    path: Path
    present: bool
    size: int | None
    record: dict[str, Any] | None  # from DIR/.spin-to-mesh/manifest.json
    verified: bool | None = None  # None: not hashed now; True/False after `verify=True`
    problem: str = ""

    @property
    def sha256(self) -> str | None:
        """The recorded (or pinned) sha256."""
        return (self.record or {}).get("sha256") or self.file.sha256


def _expected(wf: WeightFile, record: dict[str, Any] | None) -> tuple[str | None, str | None, str]:
    """(sha256, git sha1, how) a present copy must match; how = pinned | hub | first-download | none."""
    if wf.pinned:
        return wf.sha256, wf.git_sha1, "pinned"
    if record and record.get("sha256"):
        return record["sha256"], None, record.get("verified_by", "first-download")
    return None, None, "none"


def _check(wf: WeightFile, path: Path, sha256: str | None, git_sha1: str | None,
           downloaded: bool = True) -> tuple[str, str, int]:
    """Hash `path` and compare; raise ChecksumMismatchError on a difference. Returns the hashes and size."""
    got_sha256, got_git, size = cache.hash_file(path)
    what = ("the download was deleted. Run the fetch again; if it repeats, the source changed: report it"
            if downloaded else f"delete {path} and run `{FETCH_COMMAND} --only {wf.name}`")
    if sha256 and got_sha256 != sha256:
        raise ChecksumMismatchError(
            f"{wf.relpath}: sha256 {got_sha256[:16]}... does not match the expected {sha256[:16]}...; {what}"
        )
    if git_sha1 and got_git != git_sha1:
        raise ChecksumMismatchError(
            f"{wf.relpath}: git blob id {got_git[:12]} does not match the pinned {git_sha1[:12]}; {what}"
        )
    return got_sha256, got_git, size


def status(weights_dir: str | os.PathLike[str] | None = None, files: Iterable[WeightFile] | None = None,
           verify: bool = False) -> list[FileStatus]:
    """Every (selected) file: present or missing, size, recorded checksum; hashes them with verify=True."""
    root = cache.weights_root(weights_dir)
    records = cache.read_records(root)
    out = []
    for wf in files if files is not None else MANIFEST:
        path = root / wf.relpath
        record = records.get(wf.relpath)
        if not path.is_file():
            alternative = next((root / a for a in wf.alternatives if (root / a).is_file()), None)
            if alternative is not None:  # e.g. spmr.safetensors, glintr100.onnx: accepted, not ours to verify
                out.append(FileStatus(wf, alternative, True, alternative.stat().st_size, None, None,
                                      f"using {alternative.name} in its place"))
                continue
            out.append(FileStatus(wf, path, False, None, record))
            continue
        size = path.stat().st_size
        verified, problem = None, ""
        if record and record.get("size") not in (None, size):
            verified, problem = False, f"size {size} differs from the recorded {record['size']}"
        elif verify:
            sha256, git_sha1, how = _expected(wf, record)
            try:
                _check(wf, path, sha256, git_sha1)
                verified = how != "none"
                problem = "" if verified else "no checksum known yet (placed by hand): `weights fetch` records one"
            except ChecksumMismatchError as exc:
                verified, problem = False, str(exc).split(";")[0]
        out.append(FileStatus(wf, path, True, size, record, verified, problem))
    return out


def _hub_plan(wf: WeightFile) -> tuple[str, str | None, str | None, int | None, str]:
    """(download URL, sha256, git sha1, size, commit) of a hub file, from huggingface_hub's own metadata."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or None
    url = hf_hub_url(wf.locator, wf.path_in_source, revision=wf.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint, token=False)
    except Exception as exc:  # huggingface_hub raises its own HTTP/offline/network errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FetchError(f"{wf.relpath}: the Hugging Face hub did not answer for {wf.locator} ({first})") from exc
    etag = (meta.etag or "").strip('"').lower()
    sha256 = etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None
    git_sha1 = etag if len(etag) == 40 and all(c in "0123456789abcdef" for c in etag) else None
    if wf.revision and meta.commit_hash and meta.commit_hash != wf.revision:
        raise FetchError(f"{wf.relpath}: the hub answered commit {meta.commit_hash} for pinned {wf.revision}")
    return url, sha256, git_sha1, meta.size, meta.commit_hash or (wf.revision or "")


def _download(wf: WeightFile, root: Path, record: dict[str, Any] | None) -> tuple[Path, dict[str, Any]]:
    """Bring one file into its partial path; return it and the facts to record (not yet verified)."""
    target = root / wf.relpath
    part = cache.partial_path(root, wf.name)
    mirror = mirror_url()
    facts: dict[str, Any] = {"source": wf.source_text()}
    sha256, git_sha1, how = _expected(wf, record)
    if mirror:
        url = f"{mirror}/{urllib.parse.quote(wf.relpath)}"
        facts.update(url=url, mirror=mirror)
        http_download(url, part, wf.relpath)
    elif wf.kind == "hf":
        url, hub_sha256, hub_git, _size, commit = _hub_plan(wf)
        facts.update(url=url, revision=commit)
        if not wf.pinned:
            sha256, git_sha1, how = hub_sha256 or sha256, hub_git, "hub"
        http_download(url, part, wf.relpath)
    elif wf.kind == "url":
        facts["url"] = wf.locator
        http_download(wf.locator, part, wf.relpath)
    else:
        file_id = wf.locator
        manual = drive.DRIVE_FILE_URL.format(id=wf.locator)
        if wf.kind == "gdrive-folder":
            manual = drive.DRIVE_FOLDER_URL.format(id=wf.locator)
            listing = drive.list_folder(wf.locator)
            names = wf.path_in_source.split("|")
            found = next((listing[n] for n in names if n in listing), None)
            if found is None:
                raise FetchError(f"{wf.relpath}: the Drive folder {manual} holds no {' or '.join(names)} "
                                 f"(it lists {', '.join(sorted(listing)) or 'nothing'}); download it by hand")
            file_id = found
        facts.update(url=drive.DRIVE_FILE_URL.format(id=file_id))
        drive.drive_download(file_id, part, wf.relpath, target, manual)
    facts.update(expected_sha256=sha256, expected_git_sha1=git_sha1, verified_by=how)
    return part, facts


def _fetch_one(wf: WeightFile, root: Path) -> str:
    """Make one file present and verified under `root`; returns what happened (for the summary line)."""
    target = root / wf.relpath
    alternative = next((a for a in wf.alternatives if (root / a).is_file()), None)
    if alternative is not None and not target.is_file():
        return f"present as {alternative} (accepted in its place)"
    with cache.file_lock(root, wf.name):
        record = cache.read_records(root).get(wf.relpath)
        if target.is_file():  # another worker may have placed it while we waited for the lock
            sha256, git_sha1, how = _expected(wf, record)
            if how != "none":
                _check(wf, target, sha256, git_sha1, downloaded=False)
                return "present, verified"
            got_sha256, _git, size = cache.hash_file(target)
            cache.write_record(root, wf.relpath, _record(wf, got_sha256, size, "first-download", {}))
            return "present, checksum recorded (placed by hand)"
        part, facts = _download(wf, root, record)
        try:
            got_sha256, _git, size = _check(wf, part, facts.pop("expected_sha256"), facts.pop("expected_git_sha1"))
        except ChecksumMismatchError:
            part.unlink(missing_ok=True)
            raise
        how = facts.pop("verified_by")
        if how == "none":
            how = "first-download"
        target.parent.mkdir(parents=True, exist_ok=True)
        cache_mode = 0o666 & ~_umask()
        os.chmod(part, cache_mode)
        os.replace(part, target)  # same file system (the partial folder is inside the weights folder)
        cache.write_record(root, wf.relpath, _record(wf, got_sha256, size, how, facts))
        return f"fetched, verified ({how})" if how != "first-download" else "fetched, sha256 recorded (first use)"


def _umask() -> int:
    from spin_io.atomic import current_umask

    return current_umask()


def _record(wf: WeightFile, sha256: str, size: int, how: str, facts: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": wf.name, "sha256": sha256, "size": size, "verified_by": how,
                           "fetched_at": cache.now_iso()}
    rec.update(facts)
    rec.update({k: v for k, v in wf.licence_record().items() if k not in ("name", "file")})
    return rec


def missing_message(missing: list[WeightFile], root: Path, offline: bool, failures: dict[str, str]) -> str:
    """One line that says what to do, then each missing file with its source, licence and where to put it."""
    why = "and offline (HF_HUB_OFFLINE / --offline)" if offline else "and could not be fetched"
    network = " with network" if offline else " again"
    lines = [f"{len(missing)} weight file(s) missing in {root} {why}: run `{FETCH_COMMAND}`{network}, put them "
             f"there by hand (below), or run the weights-free demo: {DEMO_COMMAND}"]
    for wf in missing:
        licence = wf.licence + ("" if wf.commercial else " [non-commercial]")
        optional = "" if wf.is_required() else "  [optional: a fallback exists]"
        lines.append(f"  - {wf.relpath}  from {wf.source_text()}  (licence: {licence}){optional}")
        manual = (wf.manual or wf.locator).replace("WEIGHTS", str(root))
        lines.append(f"      by hand: {manual}  ->  {root / wf.relpath}")
        if wf.name in failures:
            lines.append(f"      error: {failures[wf.name]}")
    return "\n".join(lines)


def _converted(root: Path) -> bool:
    """A complete converted folder (`weights convert`) stands in for spmr.ckpt and the encoder."""
    return root.is_dir() and layout.detect_kind(root) == "converted" and not layout.converted_missing(root)


def _fetch_all(files: list[WeightFile], root: Path, report: bool) -> dict[str, str]:
    """Fetch / verify each file; returns {name: error} for those that failed."""
    failures: dict[str, str] = {}
    for wf in files:
        try:
            outcome = _fetch_one(wf, root)
        except FetchError as exc:
            failures[wf.name] = " ".join(str(exc).split())
            outcome = "FAILED"
        except OSError as exc:  # e.g. a read-only shared folder that lacks a file
            failures[wf.name] = f"cannot write in {root} ({exc.strerror or exc})"
            outcome = "FAILED"
        if report:
            tag = "" if wf.is_required() else " (optional)"
            print(f"{wf.relpath}{tag}: {outcome}", file=sys.stderr)
    return failures


def fetch_weights(
    weights_dir: str | os.PathLike[str] | None = None,
    only: Iterable[str] | None = None,
    stages: Iterable[str] | None = None,
    offline: bool | None = None,
    report: bool = True,
) -> Path:
    """Fetch the missing files and verify the present ones (all, or `only` / `stages`); return the folder.

    Raises WeightsMissingError listing every required (or `--only`-named) file that is still missing
    or failed verification (offline, source down, checksum mismatch: the bad download is deleted).
    Optional files that fail are reported on stderr only.
    """
    root = cache.weights_root(weights_dir)
    only = list(only or [])
    files = select(stages, only or None)
    if not only and _converted(root):
        files = [f for f in files if f.needed_for != {"views"}]  # the converted folders stand in for them
    wanted = stages_of(stages) if stages is not None else None
    must = [f for f in files if f.is_required(wanted) or only]
    if is_offline(offline):
        absent = [s.file for s in status(root, files) if not s.present]  # every missing file, optional ones too
        if absent:
            raise WeightsMissingError(missing_message(absent, root, True, {}), tuple(absent))
        return root
    failures = _fetch_all(files, root, report)
    bad = [f for f in must if f.name in failures]
    if bad:
        raise WeightsMissingError(missing_message(bad, root, False, failures), tuple(bad))
    return root


def ensure_weights(
    stages: Iterable[str],
    weights_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    names: Iterable[str] | None = None,
) -> Path:
    """The weights folder holding what `stages` need, fetching missing files first (unless offline).

    `names` narrows the files to those manifest names (e.g. views from an already aligned folder need
    no face detector).

    Call before any heavy work (issue 15: check the weights first). `stages` takes stage or command
    names: "align", "views", "run", "flow". Files already present are trusted as they are (no hashing,
    no writes: a read-only shared folder costs nothing); `weights fetch` and `doctor --verify` hash them.
    Files with a fallback (BiSeNet -> GrabCut, 3DDFA -> landmark refinement; antelopev2 for `align`
    alone -> dlib) are fetched when online but never make this fail.
    Raises WeightsMissingError (exit code 3) naming each missing file, its source, licence, where to
    put it, `spin-to-mesh weights fetch` and the weights-free demo command.
    """
    root = cache.weights_root(weights_dir)
    stages = stages_of(stages)
    chosen = [wf for wf in select(stages) if names is None or wf.name in set(names)]
    statuses = [s for s in status(root, chosen) if not (s.file.needed_for == {"views"} and _converted(root))]
    changed = [s for s in statuses if s.present and s.verified is False]
    if changed:
        raise ChecksumMismatchError(
            "; ".join(f"{s.file.relpath}: {s.problem}" for s in changed)
            + f": the copy changed since it was verified; delete it and run `{FETCH_COMMAND}`"
        )
    absent = [s.file for s in statuses if not s.present]
    required = [f for f in absent if f.is_required(stages)]
    if not absent or (is_offline(offline) and not required):
        return root
    if is_offline(offline):
        raise WeightsMissingError(missing_message(required, root, True, {}), tuple(required))
    failures = _fetch_all(absent, root, report=True)
    bad = [f for f in required if f.name in failures]
    if bad:
        raise WeightsMissingError(missing_message(bad, root, False, failures), tuple(bad))
    return root


def weights_licences(
    weights_dir: str | os.PathLike[str] | None = None,
    names: Iterable[str] | None = None,
    packaged: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Licence records of the weight files a run used, for report.json and GLB asset.extras.

    `names`: manifest names the run used (default: every file present in the folder). `packaged`:
    models shipped in pip packages that the run used ("dlib5", "dlib68"). Each record: name, file,
    licence, commercial_use, source, sha256 (when recorded) and note.
    """
    root = cache.weights_root(weights_dir)
    records = cache.read_records(root)
    table = by_name()
    chosen = [table[n] for n in names if n in table] if names is not None else \
        [wf for wf in MANIFEST if (root / wf.relpath).is_file()]
    out: list[dict[str, Any]] = []
    for wf in chosen:
        rec = wf.licence_record()
        sha256 = (records.get(wf.relpath) or {}).get("sha256") or wf.sha256
        if sha256:
            rec["sha256"] = sha256
        out.append(rec)
    out += [dict(PACKAGED[p]) for p in packaged if p in PACKAGED]
    return out
