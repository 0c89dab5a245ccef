"""Errors of the orchestration layer."""


class FlowError(RuntimeError):
    """A flow could not run (bad parameters, missing inputs, Prefect not installed)."""
