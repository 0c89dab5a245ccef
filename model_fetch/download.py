"""Resumable HTTP download with a progress bar: the one transfer path for hub, GitHub and mirror URLs.

A killed download leaves `partial/NAME.part`; the next attempt asks for the rest with a Range
header and appends (a server that ignores Range sends the whole file, which then replaces the part).
Google Drive goes through gdown (drive.py), which resumes the same way.
"""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from model_fetch.errors import FetchError

CHUNK = 1 << 20
USER_AGENT = "spin-to-mesh-weights/1"


class Progress:
    """A tqdm bar on a terminal; plain lines every 10% otherwise (logs of a render farm stay readable)."""

    def __init__(self, label: str, total: int | None, initial: int = 0) -> None:
        self.label = label
        self.total = total
        self.done = initial
        self._bar = None
        self._next_tenth = 1
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=label, file=sys.stderr, leave=True)
        else:
            start = f" (resuming at {_mb(initial)})" if initial else ""
            print(f"fetch {label}: {_mb(total) if total else 'unknown size'}{start}", file=sys.stderr)
            if total:
                self._next_tenth = initial * 10 // total + 1

    def update(self, n: int) -> None:
        """Count `n` more bytes."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total:
            while self._next_tenth <= 10 and self.done * 10 >= self._next_tenth * self.total:
                print(f"fetch {self.label}: {self._next_tenth * 10}%", file=sys.stderr)
                self._next_tenth += 1

    def set_total(self, total: int | None) -> None:
        """Learn the size late (gdown reports it with the first chunk)."""
        if total and self.total != total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def _total_from(response: object, offset: int) -> int | None:
    headers = getattr(response, "headers", {})
    content_range = headers.get("Content-Range", "")
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isdigit() else None
    length = headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def http_download(
    url: str,
    part: Path,
    label: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download `url` into `part`, resuming from its current size; return `part` when complete.

    Raises FetchError (partial bytes kept for the next attempt) on network errors and HTTP errors.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                                                   **(headers or {})})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from our table
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part is already complete
            return part
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url}: cannot connect ({reason}); check the network or set a mirror") from exc
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start over
        total = _total_from(response, offset)
        progress = Progress(label, total, initial=offset)
        try:
            with open(part, "ab" if offset else "wb") as out:
                while True:
                    try:
                        block = response.read1(CHUNK)  # what has arrived (read() waits for CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as exc:
                        raise FetchError(
                            f"{url}: connection lost after {_mb(out.tell())}; run the same command again "
                            "to resume"
                        ) from exc
                    if not block:
                        break
                    out.write(block)
                    out.flush()  # a killed fetch keeps every byte it received
                    progress.update(len(block))
        finally:
            progress.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise FetchError(f"{url}: got {size} of {total} bytes; run the same command again to resume")
    return part
