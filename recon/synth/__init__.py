"""Synthetic ground truth for recon: heads (fsaverage, procedural), albedo, ViewSet renderer, perturbations."""

from recon.synth.albedo import procedural_albedo
from recon.synth.heads import GroundTruthHead, fsaverage_head, procedural_head
from recon.synth.perturb import Perturbation
from recon.synth.render import ViewSpec, render_viewset, ring_views

__all__ = [
    "GroundTruthHead",
    "Perturbation",
    "ViewSpec",
    "fsaverage_head",
    "procedural_albedo",
    "procedural_head",
    "render_viewset",
    "ring_views",
]
