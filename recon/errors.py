"""The exception hierarchy of `recon`: every error a user can act on derives from ReconError."""


class ReconError(RuntimeError):
    """Base class of recon errors; the message says what to do next."""


class ViewSetInputError(ReconError):
    """The ViewSet cannot be reconstructed (too few views, empty masks, NaN normals, no normals)."""


class ConventionError(ReconError):
    """The declared yaw direction or normal frame contradicts the data."""


class DegenerateResultError(ReconError):
    """Reconstruction produced a mesh that must not be exported (empty hull, non-manifold, self-intersecting)."""
