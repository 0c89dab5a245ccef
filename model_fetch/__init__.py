"""Fetching, verifying and crediting the model weights (issue 14), shared by every stage.

It imports only `spin_io` (docs/DESIGN.md §1): `align`, `smr_core`, `recon`, `exporters` and `flows` may
import it. `model_fetch.layout` holds the weights-folder lookups several stages share (the alignment
components, the converted diffusion folders).

Public API (everything else is internal):

    ensure_weights(stages, weights_dir=None, offline=None) -> Path
        Before a stage runs: make sure the files it needs are in the weights folder (fetching them
        unless offline) and return the folder; raises WeightsMissingError (exit code 3) otherwise.
    fetch_weights(weights_dir=None, only=None, stages=None, offline=None) -> Path
        `spin-to-mesh weights fetch`: fetch what is missing, verify what is present.
    weights_licences(weights_dir=None, names=None, packaged=()) -> list[dict]
        Licence records to copy into report.json and GLB asset.extras.
    status(weights_dir=None, files=None, verify=False) -> list[FileStatus]
        Present / missing, size, checksum per file (doctor).
    weights_root(weights_dir=None) -> Path
        --weights DIR, else $SMR_WEIGHTS, else the per-user cache.
"""

from model_fetch.api import (
    DEMO_COMMAND,
    FETCH_COMMAND,
    FileStatus,
    ensure_weights,
    fetch_weights,
    is_offline,
    status,
    weights_licences,
)
from model_fetch.cache import default_weights_dir, weights_root
from model_fetch.errors import (
    ChecksumMismatchError,
    DriveQuotaError,
    FetchError,
    UnknownWeightError,
    WeightsMissingError,
)
from model_fetch.manifest import MANIFEST, WeightFile

__all__ = [
    "DEMO_COMMAND",
    "FETCH_COMMAND",
    "MANIFEST",
    "ChecksumMismatchError",
    "DriveQuotaError",
    "FetchError",
    "FileStatus",
    "UnknownWeightError",
    "WeightFile",
    "WeightsMissingError",
    "default_weights_dir",
    "ensure_weights",
    "fetch_weights",
    "is_offline",
    "status",
    "weights_licences",
    "weights_root",
]
