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


# The de-lighting sweep (bench/delight_eval.py --sweep): harder and more varied than LIGHTINGS, which the fit
# was tuned on. Key directions towards the light (ViewSet axes), including from below and from behind.
SWEEP_KEY_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "front_high": (0.35, 0.65, 0.7),
    "left": (1.0, 0.15, 0.05),
    "right_high": (-0.75, 0.55, 0.35),
    "top": (0.05, 1.0, 0.1),
    "below_front": (0.25, -0.75, 0.6),
    "below_side": (-0.8, -0.5, 0.3),
    "behind_side": (0.75, 0.25, -0.65),
    "behind_below": (-0.5, -0.45, -0.75),
}
# (key colour, fill colour or None): the fill comes from roughly the other side of the head
SWEEP_COLOURS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float] | None]] = {
    "white": ((0.9, 0.9, 0.9), None),
    "white_fill": ((0.8, 0.8, 0.8), (0.3, 0.3, 0.3)),
    "warm_key_cool_fill": ((0.95, 0.68, 0.4), (0.18, 0.3, 0.6)),
    "cool_key_warm_fill": ((0.5, 0.68, 1.0), (0.55, 0.35, 0.15)),
    "green_key_magenta_fill": ((0.6, 0.95, 0.5), (0.45, 0.15, 0.45)),
}
SWEEP_AMBIENTS: dict[str, tuple[float, float, float]] = {
    "dark": (0.03, 0.03, 0.03),
    "low": (0.12, 0.12, 0.12),
    "sky": (0.12, 0.16, 0.26),
    "bright": (0.4, 0.4, 0.4),
}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def sweep_lighting(
    key: str, colours: str, ambient: str, jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> SceneLighting:
    """One sweep lighting: SWEEP_KEY_DIRECTIONS[key] (+ jitter, then normalised), SWEEP_COLOURS[colours] (a fill
    from the mirrored side: the key's direction with x and z negated, raised a little), SWEEP_AMBIENTS[ambient]."""
    d = _unit(np.asarray(SWEEP_KEY_DIRECTIONS[key]) + np.asarray(jitter))
    key_rgb, fill_rgb = SWEEP_COLOURS[colours]
    lights = [DirectionalLight(tuple(float(x) for x in d), key_rgb)]
    if fill_rgb is not None:
        f = _unit([-d[0], 0.3 - 0.5 * d[1], -d[2]])
        lights.append(DirectionalLight(tuple(float(x) for x in f), fill_rgb))
    return SceneLighting(f"{key}/{colours}/{ambient}", SWEEP_AMBIENTS[ambient], tuple(lights))
