"""Reconstruction: fit one closed, textured head mesh to a ViewSet (posed RGB + normals + masks).

Pipeline (recon.pipeline.reconstruct): convention check -> visual hull on a grid, cut flat where
the views stop seeing the neck -> per-view depth from normals (recon.depth) fused inside the hull
as a truncated signed distance (recon.volume) -> marching cubes -> simplification (first at 128 px:
each view's camera turned onto that consensus, recon.camera_align, then the hull and depth again from
the turned cameras, and depth once more anchored on that fused shape where the hull is not tangent) -> each
view's normal map turned onto that shape (recon.normal_align) ->
explicit normal fusion -> UV charts (recon.unwrap) -> texture baking -> per-view self-check (recon.selfcheck).
Everything is pure torch on the device passed in, so the same code runs on CPU and CUDA.
"""

from recon.errors import ConventionError, DegenerateResultError, ReconError, ViewSetInputError

__all__ = ["ConventionError", "DegenerateResultError", "ReconError", "ViewSetInputError"]
