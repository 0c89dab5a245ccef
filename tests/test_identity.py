"""Arc2Face identity encoder: constant token ids, token replacement, causal independence, uncond."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextModel

from smr_core.errors import CheckpointError, InputError
from smr_core.identity import (
    BOS_TOKEN_ID,
    EOS_TOKEN_ID,
    ID_PROMPT,
    ID_TOKEN_ID,
    ID_TOKEN_POSITION,
    PAD_TOKEN_ID,
    IdentityEncoder,
    arc2face_text_config,
    check_tokenizer,
    find_local_tokenizer,
    prompt_token_ids,
)
from smr_core.tiny import tiny_text_config


@pytest.fixture(scope="module")
def encoder() -> IdentityEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        model = CLIPTextModel(tiny_text_config())
    return IdentityEncoder(model.eval()).eval()


def _arcface(n: int, seed: int = 0) -> torch.Tensor:
    v = torch.randn(n, 512, generator=torch.Generator().manual_seed(seed))
    return v / v.norm(dim=1, keepdim=True)


def test_prompt_token_ids_are_clip_vit_l14_facts():
    ids = prompt_token_ids(ID_PROMPT)
    assert ids.shape == (77,)
    assert ids[:7].tolist() == [BOS_TOKEN_ID, 1125, 539, 320, ID_TOKEN_ID, 2533, EOS_TOKEN_ID]
    assert (ids[7:] == PAD_TOKEN_ID).all() and PAD_TOKEN_ID == EOS_TOKEN_ID == 49407
    assert ID_TOKEN_POSITION == 4 and ids[ID_TOKEN_POSITION] == 1014
    empty = prompt_token_ids("")
    assert empty[0] == 49406 and (empty[1:] == 49407).all()
    with pytest.raises(InputError, match="only the prompts"):
        prompt_token_ids("a photo of a cat")


class _FakeTokenizer:
    def __init__(self, table):
        self.table = table

    def __call__(self, prompt, padding, max_length, truncation):
        assert (padding, max_length, truncation) == ("max_length", 77, True)

        class Out:
            input_ids = self.table[prompt]

        return Out()


def test_check_tokenizer_accepts_agreement_and_names_a_disagreement():
    good = {p: prompt_token_ids(p).tolist() for p in (ID_PROMPT, "")}
    check_tokenizer(_FakeTokenizer(good))
    bad = dict(good)
    bad[ID_PROMPT] = [49406, 1125, 539, 320, 888, 2533] + [49407] * 71
    with pytest.raises(CheckpointError, match="photo of a id person"):
        check_tokenizer(_FakeTokenizer(bad))


def test_no_local_tokenizer_means_none_not_an_empty_one(tmp_path):
    # transformers 5 would build an empty CLIPTokenizer from a folder without vocab files
    assert find_local_tokenizer([tmp_path, tmp_path / "tokenizer"]) is None


def test_unconditional_is_the_plain_encoder_on_the_empty_prompt(encoder):
    with torch.no_grad():
        ours = encoder.unconditional(batch=2)
        stock = encoder.text_model(input_ids=prompt_token_ids("")[None].expand(2, -1)).last_hidden_state
    assert ours.shape == (2, 77, 32)
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-6)


def test_identity_equals_the_stock_encoder_with_the_id_row_replaced(encoder):
    """Independent check: write the vector into the embedding table at id 1014, run stock CLIP."""
    vec = _arcface(1)
    with torch.no_grad():
        ours = encoder(vec)
        patched = CLIPTextModel(encoder.text_model.config).eval()
        patched.load_state_dict(encoder.text_model.state_dict())
        patched.embeddings.token_embedding.weight[ID_TOKEN_ID] = vec[0, :32]
        stock = patched(input_ids=prompt_token_ids(ID_PROMPT)[None]).last_hidden_state
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-6)


def test_replacement_changes_only_positions_from_the_id_token_on(encoder):
    """Causal mask: positions 0-3 never see the ArcFace vector; position 4 onwards do."""
    with torch.no_grad():
        a = encoder(_arcface(1, seed=1))
        b = encoder(_arcface(1, seed=2))
    assert torch.equal(a[:, :ID_TOKEN_POSITION], b[:, :ID_TOKEN_POSITION])
    assert ((a - b).abs().amax(dim=-1)[0, ID_TOKEN_POSITION:] > 1e-4).all()


def test_batch_rows_are_independent_and_scale_is_normalised_away(encoder):
    vecs = _arcface(3, seed=5)
    with torch.no_grad():
        batch = encoder(vecs)
        single = encoder(vecs[1:2])
        scaled = encoder(7.5 * vecs[1:2])
    assert batch.shape == (3, 77, 32)
    torch.testing.assert_close(batch[1:2], single, rtol=0, atol=1e-6)
    torch.testing.assert_close(scaled, single, rtol=0, atol=1e-6)


def test_id_vector_is_normalised_and_zero_padded_to_the_text_width():
    with torch.device("meta"):
        full = IdentityEncoder(CLIPTextModel(arc2face_text_config()))
    vec = 3.0 * _arcface(2)
    padded = full.id_vector(vec)
    assert padded.shape == (2, 768)
    torch.testing.assert_close(padded[:, :512], vec / 3.0)
    assert torch.all(padded[:, 512:] == 0)


def test_bad_identity_vectors_are_refused(encoder):
    with pytest.raises(InputError, match="zero or not finite"):
        encoder(torch.zeros(1, 512))
    with pytest.raises(InputError, match=r"\(N, 512\)"):
        encoder(torch.ones(512))
