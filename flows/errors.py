"""Errors of the orchestration layer."""


class FlowError(RuntimeError):
    """A flow could not run (bad parameters, missing inputs, Prefect not installed)."""


class InputNotFoundError(FlowError):
    """The `input` parameter names no photo, folder, glob or manifest that exists."""


class StageUnavailableError(FlowError):
    """A stage's package (or the entry point the flow calls) is not installed in this environment."""


class PhotosFailedError(FlowError):
    """Some photos of a run failed; the summary names each one with its stage and error."""
