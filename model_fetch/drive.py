"""Google Drive through gdown (MIT, maintained), with Drive's refusal pages recognised and explained.

Drive answers a busy or over-quota file with an HTML page ("Too many users have viewed or
downloaded this file recently ... up to 24 hours"); gdown turns it into FileURLRetrievalError.
A client that does not recognise it would save the page as the checkpoint, so every Drive download
is also sniffed: a file that starts like HTML is never accepted as weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from model_fetch.download import Progress
from model_fetch.errors import DriveQuotaError, FetchError

# The URL gdown is given; a module attribute so tests can point it at a local server.
DRIVE_FILE_URL = "https://drive.google.com/uc?id={id}"
DRIVE_FOLDER_URL = "https://drive.google.com/drive/folders/{id}"

_QUOTA_MARKERS = ("too many users have viewed or downloaded", "quota exceeded", "download quota",
                  "can't view or download this file at this time", "cannot retrieve the public link")


def looks_like_html(path: Path) -> bool:
    """True when a downloaded 'weights' file is really a web page."""
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<!--"))


def is_quota_text(text: str) -> bool:
    """Whether a Drive page or gdown message is the quota / too-many-users refusal."""
    low = re.sub(r"\s+", " ", text.lower())
    return any(marker in low for marker in _QUOTA_MARKERS)


def quota_error(where: str, target: Path, manual_url: str, detail: str = "") -> DriveQuotaError:
    """The one-line explanation with the manual fallback."""
    why = "Google Drive refused the download: its per-file quota is used up ('too many users')"
    if detail and not is_quota_text(detail):
        why = f"Google Drive served a web page instead of the file ({detail[:120]})"
    return DriveQuotaError(
        f"{why} for {where}. Drive lifts this within 24 hours; meanwhile open {manual_url} in a browser, "
        f"download the file and save it as {target}, then run `spin-to-mesh weights fetch` again to verify it "
        "(or set SMR_WEIGHTS_MIRROR to your studio mirror)"
    )


def _gdown():
    try:
        import gdown
    except ImportError as exc:  # pragma: no cover - gdown is a core dependency
        raise FetchError("Google Drive downloads need gdown: pip install gdown") from exc
    return gdown


def list_folder(folder_id: str) -> dict[str, str]:
    """{file name: file id} of a public Drive folder (gdown scrapes the folder view; max 50 entries)."""
    gdown = _gdown()
    try:
        entries = gdown.download_folder(url=DRIVE_FOLDER_URL.format(id=folder_id), skip_download=True, quiet=True)
    except gdown.exceptions.FileURLRetrievalError as exc:
        if is_quota_text(str(exc)):
            raise quota_error(f"folder {folder_id}", Path("WEIGHTS"), DRIVE_FOLDER_URL.format(id=folder_id)) from exc
        raise FetchError(f"cannot list Google Drive folder {folder_id}: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # gdown raises requests / parsing errors of several kinds here
        raise FetchError(f"cannot list Google Drive folder {folder_id} ({type(exc).__name__}: {exc}); "
                         "check the network or download it by hand") from exc
    return {Path(e.path).name: e.id for e in entries}


def drive_download(file_id: str, staging: Path, label: str, target: Path, manual_url: str) -> Path:
    """Download a public Drive file to `staging` (resuming gdown's own .part files); return `staging`."""
    gdown = _gdown()
    staging.parent.mkdir(parents=True, exist_ok=True)
    progress: Progress | None = None

    def report(done: int, total: int | None) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(label, total)
        progress.set_total(total)
        progress.update(done - progress.done)

    try:
        gdown.download(url=DRIVE_FILE_URL.format(id=file_id), output=str(staging), quiet=True, resume=True,
                       progress=report)
    except gdown.exceptions.FileURLRetrievalError as exc:
        detail = " ".join(str(exc).split())
        if is_quota_text(detail):
            raise quota_error(label, target, manual_url) from exc
        raise FetchError(f"Google Drive would not give {label} ({detail[:160]}); download it by hand from "
                         f"{manual_url} and save it as {target}") from exc
    except gdown.exceptions.DownloadError as exc:
        raise FetchError(f"{label}: Google Drive download failed ({' '.join(str(exc).split())[:160]}); "
                         "run the same command again to resume") from exc
    except OSError as exc:
        raise FetchError(f"{label}: cannot reach Google Drive ({exc}); check the network or set a mirror") from exc
    finally:
        if progress is not None:
            progress.close()
    if looks_like_html(staging):
        text = staging.read_text(encoding="utf-8", errors="replace")
        staging.unlink()
        match = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        raise quota_error(label, target, manual_url, detail="" if is_quota_text(text) else
                          (match.group(1).strip() if match else "unrecognised page"))
    return staging
