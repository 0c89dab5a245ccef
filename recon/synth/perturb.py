"""Perturbations that imitate a multi-view diffusion model's inconsistencies (issue 5, item 3; issue 12)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Perturbation:
    """Per-view corruptions; angles in degrees, noise as a fraction of the 0..1 range."""

    normal_rotation_deg: float = 3.0  # each view's normals rotated by up to this, random axis
    pixel_noise: float = 0.02  # Gaussian noise on RGB and normals
    mask_jitter_px: int = 1  # each mask eroded or dilated by up to this
    brightness: float = 0.05  # RGB scaled by 1 +- this
    camera_jitter_deg: float = 1.0  # images rendered from cameras rotated by up to this about the origin
    inconsistent_back_view: bool = True  # the view nearest azimuth 180 shows a deformed head
    back_bulge_units: float = 0.015  # size of that deformation (6 mm at 0.4 m/unit)
    back_normal_rotation_deg: float = 8.0
    white_balance: float = 0.0  # each view's RGB channels scaled by their own 1 +- this (on top of brightness)
    shape_noise_mm: float = 0.0  # each view renders the head moved along its normals by its own smooth field
    shape_wavelength_mm: float = 150.0  # shortest wavelength of that field (low frequency: whole-head swells)

    @classmethod
    def none(cls) -> Perturbation:
        return cls(0.0, 0.0, 0, 0.0, 0.0, False, 0.0, 0.0)

    @classmethod
    def as_generated(cls) -> Perturbation:
        """What generated views look like (issue 12): +-1.5 deg camera error, rotated and noisy normals,
        per-view exposure and white balance, and 2.5 mm of smooth shape disagreement between views."""
        return cls(
            normal_rotation_deg=4.0,
            pixel_noise=0.02,
            mask_jitter_px=1,
            brightness=0.08,
            camera_jitter_deg=1.5,
            inconsistent_back_view=False,
            back_bulge_units=0.0,
            back_normal_rotation_deg=0.0,
            white_balance=0.06,
            shape_noise_mm=2.5,
        )
