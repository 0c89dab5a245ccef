"""The exception hierarchy of `recon`: every error a user can act on derives from ReconError.

Each class carries its documented exit code (`spin_io.errors.EXIT_CODES`): all of them are about the
ViewSet given (or the options), so EXIT_USAGE.
"""

from spin_io.errors import EXIT_USAGE


class ReconError(RuntimeError):
    """Base class of recon errors; the message says what to do next."""

    exit_code = EXIT_USAGE


class ViewSetInputError(ReconError):
    """The ViewSet cannot be reconstructed (too few views, empty masks, NaN normals, no normals)."""


class ConventionError(ReconError):
    """The declared yaw direction or normal frame contradicts the data."""


class DegenerateResultError(ReconError):
    """Reconstruction produced a mesh that must not be exported (empty hull, non-manifold, self-intersecting)."""
