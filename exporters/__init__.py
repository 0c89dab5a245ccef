"""GLB export of a textured head: LODs, turntable preview, report.json, glTF validation (DESIGN.md §2 Asset).

    from exporters import ExportConfig, export_asset
    result = export_asset("mesh/", "asset/", ExportConfig(roughness=0.6))

Pure numpy/scipy plus trimesh-free GLB writing; no torch, no display.
"""

from exporters.config import ExportConfig, lod_filename, parse_lod_budgets
from exporters.errors import (
    EmptyMeshError,
    ExportConfigError,
    ExportError,
    FaceIndexError,
    MeshInputError,
    NonFiniteVerticesError,
    OutputExistsError,
    TextureError,
    UVError,
    ValidationFailedError,
    ValidatorUnavailableError,
)
from exporters.export import ExportResult, export_asset

__all__ = [
    "EmptyMeshError",
    "ExportConfig",
    "ExportConfigError",
    "ExportError",
    "ExportResult",
    "FaceIndexError",
    "MeshInputError",
    "NonFiniteVerticesError",
    "OutputExistsError",
    "TextureError",
    "UVError",
    "ValidationFailedError",
    "ValidatorUnavailableError",
    "export_asset",
    "lod_filename",
    "parse_lod_budgets",
]
