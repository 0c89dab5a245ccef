"""The lighting recon estimated, re-evaluated from its report entry (mesh.json / metrics.json "lighting").

exporters do not import recon (recon pulls in torch; an export must not), so the shading model documented in
recon/delight.py is evaluated here from the recorded coefficients with the basis both share (spin_io.lighting),
in linear RGB at unit normals n
(HeadMesh axes, which are the ViewSet axes recon fitted in):

    s_c(n) = Σ_k ℓ_{c,k} Y_k(n) + d_c max(0, n·l)         2nd-order real SH + one clamped-cosine key light
    relit_t = a_t ⊙ s(n_t)                                 the de-lit albedo shaded by the estimate

(d_c may be below zero in one channel: a fill light opposite the key, max(0, -n·l) = max(0, n·l) - n·l;
only the key's luminance is positive.)

tests/test_export_material.py checks this copy against recon.delight.Lighting.shading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spin_io.lighting import linear_to_srgb, sh_basis, srgb_to_linear  # noqa: F401  (re-exported)


def has_lighting(lighting: dict[str, Any] | None) -> bool:
    """True when the entry carries SH coefficients this module can evaluate (3 channels x 9)."""
    if not isinstance(lighting, dict):
        return False
    try:
        return np.asarray(lighting.get("sh"), np.float64).shape == (3, 9)
    except (TypeError, ValueError):
        return False


def shading(lighting: dict[str, Any], normals: np.ndarray) -> np.ndarray:
    """s(n) for (N, 3) unit normals -> (N, 3) linear RGB, from a report entry's "sh" and key light."""
    sh = np.asarray(lighting["sh"], np.float64)  # (3, 9)
    ambient = sh_basis(normals) @ sh.T
    direction, rgb = lighting.get("key_light_direction"), lighting.get("key_light_rgb")
    if direction is None or rgb is None:
        return ambient
    cosine = np.clip(np.asarray(normals, np.float64) @ np.asarray(direction, np.float64), 0.0, None)
    return ambient + cosine[:, None] * np.asarray(rgb, np.float64)[None]


def relight(albedo_srgb: np.ndarray, normals: np.ndarray, lighting: dict[str, Any]) -> np.ndarray:
    """sRGB albedo (N, 3) in [0, 1] shaded by the estimate at (N, 3) normals -> sRGB (N, 3) in [0, 1]."""
    lit = srgb_to_linear(albedo_srgb) * np.clip(shading(lighting, normals), 0.0, None)
    return np.clip(linear_to_srgb(lit), 0.0, 1.0)
