"""Errors of the weight fetcher; all derive from FetchError and carry a documented exit code.

model_fetch imports no stage package, so FetchError is a base of its own (a RuntimeError, like the stages'
bases); `spin-to-mesh` counts it among the user errors (flows.errors.user_error_types).
"""

from __future__ import annotations

from spin_io.errors import EXIT_USAGE, EXIT_WEIGHTS


class FetchError(RuntimeError):
    """A weight file could not be fetched or verified; the message says what to do instead."""

    exit_code = EXIT_WEIGHTS


class WeightsMissingError(FetchError):
    """Files a stage needs are absent and cannot be fetched now (offline, or the source failed).

    `missing` keeps the WeightFile entries so callers can list or serialise them.
    """

    def __init__(self, message: str, missing: tuple = ()) -> None:
        super().__init__(message)
        self.missing = missing

    @property
    def summary(self) -> str:
        """The first line alone: what to do (for callers that must print exactly one line)."""
        return str(self).splitlines()[0]


class ChecksumMismatchError(FetchError):
    """A download did not match its pinned or recorded checksum; nothing was kept."""


class DriveQuotaError(FetchError):
    """Google Drive refused the download (quota / "too many users" page) or served a web page instead."""


class UnknownWeightError(FetchError):
    """`--only` or a stage named something the manifest does not know."""

    exit_code = EXIT_USAGE
