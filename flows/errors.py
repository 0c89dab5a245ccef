"""Errors of the orchestration layer."""

import importlib


class FlowError(RuntimeError):
    """A flow could not run (bad parameters, missing inputs, Prefect not installed)."""


class InputNotFoundError(FlowError):
    """The `input` parameter names no photo, folder, glob or manifest that exists."""


class StageUnavailableError(FlowError):
    """A stage's package (or the entry point the flow calls) is not installed in this environment."""


class PhotosFailedError(FlowError):
    """Some photos of a run failed; the summary names each one with its stage and error."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: retrying cannot help, so they fail at once."""
    types: list[type[BaseException]] = []
    for module, name in (
        ("spin_io.errors", "ContractError"),
        ("smr_core.errors", "SMRError"),
        ("recon.errors", "ReconError"),
        ("exporters.errors", "ExportError"),
        ("flows.errors", "FlowError"),
    ):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)
