"""Synthetic ground truth for recon: heads (fsaverage, procedural, people), albedo, ViewSet renderer, perturbations."""

from recon.synth.albedo import procedural_albedo
from recon.synth.evalset import VARIANTS, EvalCase, eval_cases, product_views, render_case, variant_settings
from recon.synth.heads import REGIONS, GroundTruthHead, fsaverage_head, geometric_regions, procedural_head
from recon.synth.lighting import LIGHTINGS, DirectionalLight, SceneLighting
from recon.synth.people import HELD_OUT, PEOPLE, TUNED_ON, people_heads, person_head
from recon.synth.perturb import Perturbation
from recon.synth.render import ViewSpec, render_viewset, ring_views, shape_field

__all__ = [
    "HELD_OUT",
    "LIGHTINGS",
    "PEOPLE",
    "REGIONS",
    "VARIANTS",
    "DirectionalLight",
    "EvalCase",
    "GroundTruthHead",
    "Perturbation",
    "SceneLighting",
    "TUNED_ON",
    "ViewSpec",
    "eval_cases",
    "fsaverage_head",
    "geometric_regions",
    "people_heads",
    "person_head",
    "procedural_albedo",
    "procedural_head",
    "product_views",
    "render_case",
    "render_viewset",
    "ring_views",
    "shape_field",
    "variant_settings",
]
