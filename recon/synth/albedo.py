"""A procedural albedo on 3-D positions that exposes misregistration and mirroring.

Smooth skin tone + a 3-D sine lattice (period ~ 0.08 units ~ 23 px at 256 px) whose phase
shifts show any texture offset, and two coloured patches on one side only (left cheek red,
right back of the head blue) so a mirrored reconstruction shows up in held-out PSNR.
"""

from __future__ import annotations

import torch


def procedural_albedo(points: torch.Tensor) -> torch.Tensor:
    """(N, 3) ViewSet-unit positions -> (N, 3) linear RGB albedo in [0, 1]."""
    x, y, z = points.unbind(-1)
    base = torch.tensor([0.80, 0.60, 0.50], device=points.device, dtype=points.dtype)
    period = 0.08
    lattice = torch.sin(2 * torch.pi * x / period) * torch.sin(2 * torch.pi * y / period) * torch.sin(
        2 * torch.pi * z / period + 0.7
    )
    stripes = torch.sin(2 * torch.pi * (y + 0.3 * x) / 0.11)
    rgb = base + 0.12 * lattice[:, None] * torch.tensor([1.0, 0.8, 0.6], device=points.device, dtype=points.dtype)
    rgb = rgb + 0.06 * stripes[:, None] * torch.tensor([-0.3, 0.2, 0.8], device=points.device, dtype=points.dtype)
    red = torch.exp(-((x - 0.13) ** 2 + (y + 0.07) ** 2 + (z - 0.12) ** 2) / (2 * 0.05**2))
    blue = torch.exp(-((x + 0.12) ** 2 + (y - 0.1) ** 2 + (z + 0.15) ** 2) / (2 * 0.06**2))
    rgb = rgb + red[:, None] * torch.tensor([0.15, -0.35, -0.3], device=points.device, dtype=points.dtype)
    rgb = rgb + blue[:, None] * torch.tensor([-0.45, -0.2, 0.35], device=points.device, dtype=points.dtype)
    return rgb.clamp(0.0, 1.0)


# The de-lighting sweep's albedos (bench/delight_eval.py --sweep): skin tone x hair colour, sRGB multipliers
# of the procedural pattern / sRGB hair colours. Hair is *albedo*: a de-lit texture must keep it dark.
SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "light": (1.0, 1.0, 1.0),
    "medium": (0.78, 0.66, 0.58),
    "dark": (0.45, 0.38, 0.33),
}
HAIR_COLOURS: dict[str, tuple[float, float, float] | None] = {
    "none": None,  # bald / skin everywhere
    "light": (0.62, 0.48, 0.28),  # blond
    "dark": (0.14, 0.09, 0.06),  # dark brown
}


def skin_hair_albedo(skin: str, hair: str, is_hair=None):
    """An albedo function: the procedural pattern in SKIN_TONES[skin]; where `is_hair(points)` (a bool mask,
    e.g. the head's back and crown regions) strands of HAIR_COLOURS[hair] (none: skin there too)."""
    tone = SKIN_TONES[skin]
    hair_rgb = HAIR_COLOURS[hair]

    def albedo(points: torch.Tensor) -> torch.Tensor:
        rgb = procedural_albedo(points) * torch.tensor(tone, dtype=points.dtype, device=points.device)
        if hair_rgb is None or is_hair is None:
            return rgb.clamp(0.0, 1.0)
        x, y, z = points.unbind(-1)
        strands = 0.5 + 0.5 * torch.sin(2 * torch.pi * (x + 0.35 * z) / 0.012) * torch.sin(2 * torch.pi * y / 0.05)
        strand_rgb = torch.tensor(hair_rgb, dtype=points.dtype, device=points.device) * (0.6 + 0.8 * strands)[:, None]
        mask = torch.as_tensor(is_hair(points.detach().cpu().numpy()), device=points.device)
        return torch.where(mask[:, None], strand_rgb, rgb).clamp(0.0, 1.0)

    return albedo
