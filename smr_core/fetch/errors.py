"""Errors of the weight fetcher; all derive from smr_core's SMRError and carry a documented exit code."""

from __future__ import annotations

from smr_core.errors import SMRError, WeightsNotFoundError
from spin_io.errors import EXIT_USAGE, EXIT_WEIGHTS


class FetchError(SMRError):
    """A weight file could not be fetched or verified; the message says what to do instead."""

    exit_code = EXIT_WEIGHTS


class WeightsMissingError(FetchError, WeightsNotFoundError):
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
