"""Shared helpers for the smr_core network/checkpoint/identity tests (tiny random models only)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from smr_core.tiny import write_tiny_weights


def tiny_weights_dir(tmp_path_factory: pytest.TempPathFactory, name: str = "default", **options) -> Path:
    """A tiny official-layout folder, written once per session per `name` (reused across modules)."""
    root = tmp_path_factory.getbasetemp() / f"tiny-weights-{name}"
    if not (root / "models" / "encoder" / "config.json").is_file():
        write_tiny_weights(root, **options)
    return root


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V over the tokens of each group of frames, written out in full.

    q, k, v: (N, L, C) per frame; frames are regrouped as (groups, N/groups * L, C) by concatenating
    consecutive frames along the token axis (SPINMEROUND.md §3.4).
    """
    n, length, channels = q.shape
    d = channels // heads
    out = torch.empty_like(q)
    frames = n // groups
    for g in range(groups):
        rows = slice(g * frames, (g + 1) * frames)
        qg = torch.cat(list(q[rows]), dim=0)  # (frames*L, C)
        kg = torch.cat(list(k[rows]), dim=0)
        vg = torch.cat(list(v[rows]), dim=0)
        heads_out = []
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            scores = qg[:, cols] @ kg[:, cols].T / math.sqrt(d)
            heads_out.append(torch.softmax(scores, dim=-1) @ vg[:, cols])
        out[rows] = torch.cat(heads_out, dim=1).reshape(frames, length, channels)
    return out


class NaiveProcessor:
    """Reference attention processor built on `naive_attention` (multi-view or per-view)."""

    def __init__(self, multiview: bool) -> None:
        self.multiview = multiview

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, num_frames=1):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        n = hidden_states.shape[0]
        if encoder_hidden_states is not None:
            # cross-attention: per frame, queries and keys have different lengths
            d = q.shape[-1] // attn.heads
            qh = q.view(n, -1, attn.heads, d).transpose(1, 2)
            kh = k.view(n, -1, attn.heads, d).transpose(1, 2)
            vh = v.view(n, -1, attn.heads, d).transpose(1, 2)
            w = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)
            out = (w @ vh).transpose(1, 2).reshape(n, -1, attn.heads * d)
        else:
            groups = n // num_frames if self.multiview else n
            out = naive_attention(q, k, v, attn.heads, groups)
        return attn.to_out[1](attn.to_out[0](out))


def unet_inputs(n: int, size: int = 8, width: int = 32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random (x, c_noise, context) for a tiny UNet: x (n, 153, size, size), context (n, 77, width)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 153, size, size, generator=g)
    c_noise = 0.25 * torch.log(torch.rand(n, generator=g) * 10 + 0.01)
    context = torch.randn(n, 77, width, generator=g)
    return x, c_noise, context
