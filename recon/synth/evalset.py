"""The held-out style evaluation set (issue 12): people heads x variants x view counts x image sizes.

Views are the product's: rings of 8 at elevations 0, +20 and -15 degrees (`spin-to-mesh views --views 8
--pitch 20,-15`, 24 views); 16 views are the rings at 0 and +20. Variants:

* "clean": exact renders, normals stored in world axes;
* "as_generated": `Perturbation.as_generated()` (camera error, rotated and noisy normals, exposure and
  white-balance drift, smooth per-view shape disagreement), normals in camera axes as the product writes them;
* "camera_normals": exact renders with normals in camera axes (the other declared frame, no noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon.synth.heads import GroundTruthHead
from recon.synth.perturb import Perturbation
from recon.synth.render import ViewSpec, render_viewset, ring_views
from spin_io.viewset import ViewSet

PRODUCT_RINGS_DEG = (0.0, 20.0, -15.0)
VIEWS_PER_RING = 8
VARIANTS = ("clean", "as_generated", "camera_normals")
VIEW_COUNTS = (16, 24)
SIZES = (256, 512)


def product_views(count: int = 24, per_ring: int = VIEWS_PER_RING) -> list[ViewSpec]:
    """The product's camera rings: count / per_ring rings, in the order 0, +20, -15 degrees."""
    rings = count // per_ring
    if count % per_ring or not 1 <= rings <= len(PRODUCT_RINGS_DEG):
        raise ValueError(f"{count} views is not a whole number of the product's rings of {per_ring} (8, 16 or 24)")
    return [v for e in PRODUCT_RINGS_DEG[:rings] for v in ring_views(per_ring, e)]


def variant_settings(variant: str) -> tuple[Perturbation | None, str]:
    """(perturbation, normal frame) of a variant."""
    if variant == "clean":
        return None, "world"
    if variant == "as_generated":
        return Perturbation.as_generated(), "camera"
    if variant == "camera_normals":
        return None, "camera"
    raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")


@dataclass(frozen=True)
class EvalCase:
    """One ViewSet of the evaluation set."""

    head: str
    variant: str
    views: int
    size: int
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.head}-{self.variant}-{self.views}v-{self.size}px"


def eval_cases(
    heads: tuple[str, ...] | list[str],
    variants: tuple[str, ...] | list[str] = VARIANTS,
    views: tuple[int, ...] | list[int] = VIEW_COUNTS,
    sizes: tuple[int, ...] | list[int] = SIZES,
    seed: int = 0,
) -> list[EvalCase]:
    """Every combination, heads outermost (so a head is built once per run)."""
    return [EvalCase(h, v, n, s, seed) for h in heads for v in variants for n in views for s in sizes]


def render_case(
    head: GroundTruthHead, variant: str, views: int, size: int, seed: int = 0, device: str | torch.device = "cpu"
) -> ViewSet:
    """Render one evaluation ViewSet of `head` (in memory; write it with spin_io.viewset.write_viewset)."""
    perturb, frame = variant_settings(variant)
    vs = render_viewset(head, product_views(views), size=size, normal_frame=frame, perturb=perturb, seed=seed,
                        device=device)
    vs.generation["evalset"] = {"head": head.name, "variant": variant, "views": views, "size": size, "seed": seed}
    return vs
