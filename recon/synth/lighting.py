"""Known lighting for ground-truth renders (issue 17): ambient + directional lights, applied in linear RGB.

A rendered pixel is encode(decode(albedo(p)) * E(n)) with the irradiance

    E(n) = ambient + Σ_k colour_k max(0, n·l_k)

(Lambertian, distant lights, no cast shadows; l_k points towards light k, ViewSet axes: +Y up, face +Z,
the subject's left ear on +X). The albedo function's values are the sRGB-encoded base colour, i.e. what
a perfect de-lit albedo.png holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DirectionalLight:
    direction: tuple[float, float, float]  # towards the light
    colour: tuple[float, float, float]  # linear RGB intensity


@dataclass(frozen=True)
class SceneLighting:
    """Ambient plus directional lights."""

    name: str
    ambient: tuple[float, float, float]
    lights: tuple[DirectionalLight, ...] = ()

    def irradiance(self, normals: torch.Tensor) -> torch.Tensor:
        """E(n) for (N, 3) unit normals -> (N, 3) linear RGB."""
        out = torch.tensor(self.ambient, dtype=normals.dtype, device=normals.device).expand(len(normals), 3).clone()
        for light in self.lights:
            d = torch.tensor(light.direction, dtype=normals.dtype, device=normals.device)
            d = d / d.norm()
            colour = torch.tensor(light.colour, dtype=normals.dtype, device=normals.device)
            out = out + (normals @ d).clamp(min=0)[:, None] * colour[None]
        return out

    def irradiance_np(self, normals: np.ndarray) -> np.ndarray:
        return self.irradiance(torch.tensor(np.asarray(normals), dtype=torch.float64)).numpy()

    def key_direction(self) -> np.ndarray:
        """The brightest light's unit direction (for n·l shading correlations)."""
        key = max(self.lights, key=lambda light: sum(light.colour))
        d = np.asarray(key.direction, np.float64)
        return d / np.linalg.norm(d)


def srgb_decode(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_encode(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(min=0.0)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def lit(albedo: torch.Tensor, normals: torch.Tensor, lighting: SceneLighting) -> torch.Tensor:
    """sRGB albedo (N, 3) under `lighting` at unit normals (N, 3) -> sRGB pixel colours in [0, 1]."""
    return srgb_encode(srgb_decode(albedo) * lighting.irradiance(normals)).clamp(0.0, 1.0)


# The benchmark's lightings (bench/delight_eval.py): mean irradiance over the head is roughly 0.6-0.8.
LIGHTINGS = {
    "ambient_directional": SceneLighting(
        "ambient_directional", (0.35, 0.35, 0.35), (DirectionalLight((0.5, 0.6, 0.65), (0.75, 0.75, 0.75)),)
    ),
    "coloured": SceneLighting(
        "coloured",
        (0.15, 0.15, 0.18),
        (
            DirectionalLight((0.8, 0.4, 0.45), (0.85, 0.6, 0.35)),  # warm key from the subject's left
            DirectionalLight((-0.9, 0.1, 0.3), (0.2, 0.35, 0.6)),  # cool fill from the right
        ),
    ),
    "hard_side": SceneLighting("hard_side", (0.1, 0.1, 0.1), (DirectionalLight((1.0, 0.15, 0.05), (1.0, 1.0, 1.0)),)),
}
