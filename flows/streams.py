"""Keep a flow run alive when the reader of its stdout/stderr pipe dies (a worker killed by a second SIGTERM).

A process worker starts each flow run with stdout and stderr piped to itself. When the worker dies (a second
SIGTERM makes it SIGKILL itself), the flow run goes on as an orphan, and its next write to the pipe (a tqdm bar,
a console log line, the interpreter's final flush) raised BrokenPipeError: the run crashed although its head was
fine and its logs still reach the server through the API. `guard_pipes()` wraps the piped streams: at the first
EPIPE the file descriptor is pointed at /dev/null and the run carries on, its state reported as usual.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import sys
from typing import Any


def _is_pipe(stream: Any) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _reader_gone(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)


class PipeGuard(io.TextIOBase):
    """A text stream that forwards to `stream` until its pipe breaks, then silently to /dev/null."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def _silence(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # C-level writers and the final flush land there too
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except OSError as exc:
                if not _reader_gone(exc):
                    raise
                self._silence()
        return len(text)

    def flush(self) -> None:
        if self.broken:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()  # what was buffered goes to /dev/null now
            return
        try:
            self._stream.flush()
        except OSError as exc:
            if not _reader_gone(exc):
                raise
            self._silence()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_pipes() -> list[str]:
    """Wrap sys.stdout/sys.stderr in a PipeGuard when they are pipes (idempotent); returns the names wrapped."""
    wrapped = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, PipeGuard) or not _is_pipe(stream):
            continue
        guard = PipeGuard(stream)
        setattr(sys, name, guard)
        wrapped.append(name)
        # the console handlers of Prefect's logging hold the stream itself: they get the guard too
        import logging

        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            for handler in getattr(logger, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is stream:
                    handler.setStream(guard)
    return wrapped
