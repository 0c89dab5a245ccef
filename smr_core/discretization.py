"""Noise-level schedules (SPINMEROUND.md §5.2, §2.4): functions returning descending sigma tensors.

Both follow sgm's numerics (float32 EDM ramp; DDPM alphas in float64, the ratio cast to float32 before the
square root) so that the 50 values match the official run to the last bit. A trailing 0 is appended by default:
the last Euler step lands on the clean sample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from smr_core.errors import InputError

EDM_SIGMA_MIN = 0.002
EDM_SIGMA_MAX = 700.0
EDM_RHO = 7.0


def append_zero(sigmas: Tensor) -> Tensor:
    """Append sigma = 0 so the final step returns the denoised estimate."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def edm_sigmas(
    n: int = 50,
    sigma_min: float = EDM_SIGMA_MIN,
    sigma_max: float = EDM_SIGMA_MAX,
    rho: float = EDM_RHO,
    *,
    append_zero_sigma: bool = True,
) -> Tensor:
    """Karras et al. (2022) eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.

    SpinMeRound's multi-view pass uses sigma_max = 700 (not EDM's 80): 700, 620.33, ..., 0.00405, 0.002, 0.
    """
    if n < 2:
        raise InputError(f"edm_sigmas needs n >= 2 steps, got {n}")
    if not 0 < sigma_min < sigma_max or rho <= 0:
        raise InputError(
            f"edm_sigmas needs 0 < sigma_min < sigma_max and rho > 0, got {sigma_min=}, {sigma_max=}, {rho=}"
        )
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas) if append_zero_sigma else sigmas


def legacy_ddpm_alphas_cumprod(
    linear_start: float = 0.00085, linear_end: float = 0.012, num_timesteps: int = 1000
) -> np.ndarray:
    """SD-1.5's "linear" schedule: beta linear in sqrt-space, alpha_bar_t = prod_{s<=t} (1 - beta_s), float64."""
    betas = (torch.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=torch.float64) ** 2).numpy()
    return np.cumprod(1.0 - betas)


def ddpm_timesteps(n: int = 50, num_timesteps: int = 1000) -> np.ndarray:
    """The n training steps sgm picks, descending: floor of linspace(T-1, 0, n, endpoint=False) (999, 979, ..., 19).

    Note the truncation towards zero and the excluded endpoint: the last step is 19, not 0.
    """
    if not 1 <= n <= num_timesteps:
        raise InputError(f"ddpm_timesteps needs 1 <= n <= {num_timesteps}, got {n}")
    if n == num_timesteps:
        return np.arange(num_timesteps - 1, -1, -1)
    return np.linspace(num_timesteps - 1, 0, n, endpoint=False).astype(int)


def legacy_ddpm_sigmas(
    n: int = 50,
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    num_timesteps: int = 1000,
    *,
    append_zero_sigma: bool = True,
) -> Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) at the selected steps, descending (14.6146 ... 0.1344, 0).

    Used by the normals-retrieval run (§2.4), which keeps SD's schedule instead of the EDM one.
    """
    alphas_cumprod = legacy_ddpm_alphas_cumprod(linear_start, linear_end, num_timesteps)
    alpha_bar = alphas_cumprod[ddpm_timesteps(n, num_timesteps)]
    sigmas = torch.tensor((1 - alpha_bar) / alpha_bar, dtype=torch.float32) ** 0.5
    return append_zero(sigmas) if append_zero_sigma else sigmas


def get_sigmas(kind: Literal["edm", "legacy_ddpm"], n: int = 50) -> Tensor:
    """The schedule by name with the released defaults (multi-view: "edm"; normals: "legacy_ddpm")."""
    if kind == "edm":
        return edm_sigmas(n)
    if kind == "legacy_ddpm":
        return legacy_ddpm_sigmas(n)
    raise InputError(f"unknown discretisation {kind!r}; use 'edm' or 'legacy_ddpm'")
