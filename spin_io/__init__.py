"""On-disk contracts shared by the stages (docs/DESIGN.md §2) and atomic file writes.

This small package exists so that `recon`, `exporters`, `smr_core` and `flows` can agree on the
files they exchange without importing each other: it depends on numpy and Pillow only.
"""

from spin_io.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_png
from spin_io.errors import ContractError
from spin_io.headmesh import HeadMesh, read_headmesh, write_headmesh

__all__ = [
    "ContractError",
    "HeadMesh",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_png",
    "read_headmesh",
    "write_headmesh",
]
