"""SpinMeRound diffusion core: network, conditioning, denoiser, samplers, checkpoints, alignment.

CUDA-first, CPU-testable. Submodules are imported on demand (torch and diffusers are heavy).
"""
