"""Arc2Face identity conditioning: an ArcFace vector -> the (N, 77, 768) cross-attention context.

SPINMEROUND.md §3.8. The prompt "photo of a id person" is tokenised; the token embedding at the
position of the "id" token is replaced by the L2-normalised 512-d ArcFace vector, zero-padded to
the text width; the CLIP ViT-L/14 text transformer (position embeddings, causal mask, final
LayerNorm) runs from these embeddings and all 77 hidden states are the context. The
unconditional context is the same (Arc2Face-fine-tuned) encoder applied to "".

Written against transformers 5.x, whose CLIPTextModel has no `text_model` sub-module and no
`inputs_embeds` argument, so the token-replacement forward is ours (§4.5).

Tokeniser: only two prompts are ever encoded, so their token ids are constants, and no
tokenizer is fetched from the hub (the release downloads "openai/clip-vit-large-patch14" at
start-up). The ids are facts of the CLIP BPE vocabulary (vocab.json of the openai CLIP
tokenizer, as shipped in every SD-1.x `tokenizer/` folder): "<|startoftext|>" 49406,
"<|endoftext|>" 49407, "photo</w>" 1125, "of</w>" 539, "a</w>" 320, "id</w>" 1014,
"person</w>" 2533; CLIP ViT-L/14's tokenizer pads with "<|endoftext|>" (pad_token), i.e. 49407.
Checked with transformers' CLIPTokenizer (padding="max_length", max_length=77) on that
vocabulary; `check_tokenizer` repeats the check whenever a real tokenizer is available locally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from smr_core.errors import CheckpointError, InputError

BOS_TOKEN_ID = 49406  # <|startoftext|>
EOS_TOKEN_ID = 49407  # <|endoftext|>
PAD_TOKEN_ID = 49407  # CLIP ViT-L/14 pads with <|endoftext|>
ID_TOKEN_ID = 1014  # "id</w>": the placeholder that the ArcFace vector replaces
MAX_LENGTH = 77
ID_PROMPT = "photo of a id person"
EMPTY_PROMPT = ""
ARCFACE_DIM = 512
HUB_TOKENIZER = "openai/clip-vit-large-patch14"  # what the release fetches at start-up

_PROMPT_TOKENS: dict[str, tuple[int, ...]] = {
    ID_PROMPT: (BOS_TOKEN_ID, 1125, 539, 320, ID_TOKEN_ID, 2533, EOS_TOKEN_ID),
    EMPTY_PROMPT: (BOS_TOKEN_ID, EOS_TOKEN_ID),
}
ID_TOKEN_POSITION = _PROMPT_TOKENS[ID_PROMPT].index(ID_TOKEN_ID)  # 4


def arc2face_text_config(**overrides: Any) -> CLIPTextConfig:
    """CLIP ViT-L/14 text tower (§4.5); the Arc2Face folder's own config.json takes precedence."""
    values: dict[str, Any] = {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }
    values.update(overrides)
    return CLIPTextConfig(**values)


def prompt_token_ids(prompt: str) -> torch.Tensor:
    """Token ids (77,) of one of the two prompts SpinMeRound uses, padded like CLIPTokenizer."""
    if prompt not in _PROMPT_TOKENS:
        raise InputError(f"only the prompts {sorted(_PROMPT_TOKENS)} are supported without a tokenizer, got {prompt!r}")
    tokens = _PROMPT_TOKENS[prompt]
    return torch.tensor(tokens + (PAD_TOKEN_ID,) * (MAX_LENGTH - len(tokens)), dtype=torch.long)


def check_tokenizer(tokenizer: Any) -> None:
    """Raise CheckpointError if a real CLIP tokenizer disagrees with our constant token ids."""
    for prompt in _PROMPT_TOKENS:
        ids = tokenizer(prompt, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        expected = prompt_token_ids(prompt).tolist()
        if list(ids) != expected:
            raise CheckpointError(
                f"the tokenizer found next to the weights tokenises {prompt!r} as {list(ids)[:8]}..., "
                f"not as CLIP ViT-L/14 does ({expected[:8]}...); remove or replace that tokenizer folder"
            )


def find_local_tokenizer(search_dirs: list[Path]) -> Any | None:
    """A CLIPTokenizer from a local folder or the HF cache, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache
    from transformers import CLIPTokenizer

    folders = list(search_dirs)
    cached = try_to_load_from_cache(HUB_TOKENIZER, "vocab.json")
    if isinstance(cached, str):
        folders.append(Path(cached).parent)
    for folder in folders:
        # transformers 5 silently builds an EMPTY tokenizer when the files are absent: look first
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    return None


class IdentityEncoder(torch.nn.Module):
    """Arc2Face's token-replacement CLIP text encoder (§3.8) on a transformers 5.x CLIPTextModel."""

    def __init__(self, text_model: CLIPTextModel) -> None:
        super().__init__()
        if text_model.config.max_position_embeddings < MAX_LENGTH:
            raise ValueError(f"the text encoder needs {MAX_LENGTH} positions")
        self.text_model = text_model

    @property
    def hidden_size(self) -> int:
        return int(self.text_model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.text_model.embeddings.token_embedding.weight.device

    def encode_embeddings(self, token_embeds: torch.Tensor) -> torch.Tensor:
        """Token embeddings (N, 77, D) -> last hidden state (N, 77, D) after the final LayerNorm."""
        from transformers.masking_utils import create_causal_mask

        hidden = self.text_model.embeddings(inputs_embeds=token_embeds)
        mask = create_causal_mask(config=self.text_model.config, inputs_embeds=hidden, attention_mask=None, cache=None)
        hidden = self.text_model.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        return self.text_model.final_layer_norm(hidden)

    def encode_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Plain text encoding of token ids (N, 77) -> (N, 77, D)."""
        return self.encode_embeddings(self.text_model.embeddings.token_embedding(input_ids.to(self.device)))

    def id_vector(self, id_emb: torch.Tensor) -> torch.Tensor:
        """(N, 512) ArcFace -> (N, D): L2-normalised, zero-padded to the text width.

        Inputs are normalised here too (idempotent for the L2-normalised arcface.npy) so that a raw
        insightface embedding cannot silently change the conditioning scale. Test-size encoders
        narrower than the vector keep its first D components.
        """
        if id_emb.ndim != 2:
            raise InputError(f"identity embeddings must be (N, {ARCFACE_DIM}), got shape {tuple(id_emb.shape)}")
        v = id_emb.to(torch.float32)
        norm = v.norm(dim=1, keepdim=True)
        if not torch.all(torch.isfinite(norm)) or torch.any(norm == 0):
            raise InputError("identity embedding is zero or not finite; re-run face alignment on a photo with a face")
        v = v / norm
        width = self.hidden_size
        if v.shape[1] < width:
            v = torch.nn.functional.pad(v, (0, width - v.shape[1]))
        return v[:, :width]

    def forward(self, id_emb: torch.Tensor) -> torch.Tensor:
        """ArcFace vectors (N, 512) -> Arc2Face context (N, 77, D)."""
        ids = prompt_token_ids(ID_PROMPT).to(self.device).expand(id_emb.shape[0], -1)
        token_embeds = self.text_model.embeddings.token_embedding(ids).clone()
        vector = self.id_vector(id_emb).to(device=self.device, dtype=token_embeds.dtype)
        token_embeds[:, ID_TOKEN_POSITION] = vector
        return self.encode_embeddings(token_embeds)

    def unconditional(self, batch: int = 1) -> torch.Tensor:
        """Arc2Face encoding of the empty prompt "" (§2.5 uc), (batch, 77, D)."""
        ids = prompt_token_ids(EMPTY_PROMPT).to(self.device).expand(batch, -1)
        return self.encode_ids(ids)
