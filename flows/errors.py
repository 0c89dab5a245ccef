"""Errors of the orchestration layer."""

import importlib


class FlowError(RuntimeError):
    """A flow could not run (bad parameters, missing inputs, Prefect not installed)."""


class InputNotFoundError(FlowError):
    """The `input` parameter names no photo, folder, glob or manifest that exists."""


class StageUnavailableError(FlowError):
    """A stage's package (or the entry point the flow calls) is not installed in this environment."""


class PhotosFailedError(FlowError):
    """Every photo of a run failed; `summary` (the RunSummary) names each one with its stage and error.

    The flow raises it so the run shows as failed in the Prefect UI; `spin-to-mesh run` prints the
    summary from it instead of Prefect's traceback.
    """

    def __init__(self, message: str, summary: object | None = None) -> None:
        super().__init__(message)
        self.summary = summary


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: retrying cannot help, so they fail at once."""
    types: list[type[BaseException]] = []
    for module, name in (
        ("spin_io.errors", "ContractError"),
        ("align.errors", "AlignError"),
        ("smr_core.errors", "SMRError"),
        ("model_fetch.errors", "FetchError"),
        ("recon.errors", "ReconError"),
        ("exporters.errors", "ExportError"),
        ("flows.errors", "FlowError"),
    ):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)
