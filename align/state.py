"""Reading the alignment networks' released .pth files: weights only, no code runs."""

from __future__ import annotations

from pathlib import Path

import torch

from align.errors import AlignCheckpointError


def load_torch_state(path: str | Path, what: str, hint: str = "re-download it") -> dict[str, torch.Tensor]:
    """torch.load(weights_only=True), unwrapping a `state_dict` entry and the DataParallel `module.` prefix.

    what names the file in errors ("BiSeNet", "TDDFA (mb1_120x120.pth)"); hint says how to fix a bad file.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise AlignCheckpointError(f"{path}: not a readable {what} checkpoint ({exc}); {hint}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise AlignCheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}
