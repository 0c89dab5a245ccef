"""On-disk contracts shared by the stages (docs/DESIGN.md §2) and atomic file writes.

This small package exists so that `recon`, `exporters`, `smr_core` and `flows` can agree on the
files they exchange without importing each other: it depends on numpy and Pillow only.
"""

from spin_io.aligned import AlignedFace, read_aligned, write_aligned
from spin_io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_png
from spin_io.errors import ContractError
from spin_io.headmesh import HeadMesh, read_headmesh, write_headmesh
from spin_io.viewset import ViewFrame, ViewSet, read_viewset, validate_viewset, write_viewset

__all__ = [
    "AlignedFace",
    "ContractError",
    "HeadMesh",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_png",
    "ViewFrame",
    "ViewSet",
    "read_aligned",
    "read_headmesh",
    "read_viewset",
    "validate_viewset",
    "write_aligned",
    "write_headmesh",
    "write_viewset",
]
