"""Reconstruction: fit one closed, textured head mesh to a ViewSet (posed RGB + normals + masks).

Pipeline (recon.pipeline.reconstruct): convention check -> visual hull -> marching cubes ->
simplification -> explicit normal fusion -> planar neck cut -> xatlas UVs -> texture baking.
Everything is pure torch on the device passed in, so the same code runs on CPU and CUDA.
"""

from recon.errors import ConventionError, DegenerateResultError, ReconError, ViewSetInputError

__all__ = ["ConventionError", "DegenerateResultError", "ReconError", "ViewSetInputError"]
