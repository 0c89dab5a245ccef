"""The lighting model recon records with a HeadMesh ("lighting" in mesh.json/metrics.json), shared so that
recon (which fits it) and exporters (which re-light previews with it) evaluate the same basis.

    s_c(n) = Σ_k ℓ_{c,k} Y_k(n) + d_c max(0, n·l)         2nd-order real SH + one clamped-cosine key light

(d_c may be below zero in one channel: a fill light opposite the key, max(0, -n·l) = max(0, n·l) - n·l;
only the key's luminance is positive.)

Colours are fitted in linear RGB (IEC 61966-2-1 transfer functions below).
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear (IEC 61966-2-1)."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """linear [0, 1] -> sRGB-encoded."""
    c = np.clip(np.asarray(c, np.float64), 0.0, None)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """Real spherical harmonics up to order 2 at (N, 3) unit normals -> (N, 9)."""
    x, y, z = np.asarray(normals, np.float64).T
    return np.stack(
        [
            np.full_like(x, 0.282095),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3 * z * z - 1),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        1,
    )
