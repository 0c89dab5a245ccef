"""Fine-tuning SpinMeRound with the paper's EDM objective (SPINMEROUND.md §5.1; docs/TRAINING.md).

Modules, one job each: `config` (typed run configuration), `data` (multi-view subjects -> groups of F
frames with 0, 1 or 3 conditioning views), `objective` (sigma sampling, v-target, weighted loss, sigma
buckets), `init` (models: tiny, SpinMeRound release, or an Arc2Face UNet widened to 153/8 channels),
`ema`, `state` (atomic checkpoints with every RNG state, resume, export), `loop` (the accelerate loop),
`filtering` (ArcFace-based data filtering). Submodules import torch; this package file does not.
"""
