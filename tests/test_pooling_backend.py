"""PoolingBackend: batched forward passes equal single-item ones, with left and right padding.

Random-init heads on real backbones: these tests check shapes and batching equivalence only, which
hold for any weights. The backbones: all-MiniLM-L6-v2 (an encoder) and, for the decoder cases,
SmolLM2 cut to its first two layers (`smollm_layers(2)`: real weights and tokenizer, ~1/10 of the
full model's forward).
"""

from __future__ import annotations

import pytest
from causal_support import smollm_layers
from encoder_models import minilm_dir, read_jsonl

from rewardsvc.backends.pooling import PoolingBackend, is_decoder_config
from rewardsvc.scorers.render import encode_conversation, hh_prompt_response

pytestmark = pytest.mark.slow

ATOL = 1e-4


def conversations(n: int = 4) -> list[tuple]:
    pairs = read_jsonl("hh-rlhf-sample.jsonl")
    out = []
    for row in pairs[:n]:
        out.append(hh_prompt_response(row["chosen"]))
    return out


@pytest.fixture(scope="module")
def minilm_seq() -> PoolingBackend:
    return PoolingBackend(str(minilm_dir("sequence", 1)), "sequence_classification", device="cpu")


@pytest.fixture(scope="module")
def smollm_seq(tmp_path_factory: pytest.TempPathFactory) -> PoolingBackend:
    """The cut SmolLM2 with a seeded one-logit sequence-classification head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src, out = smollm_layers(2), tmp_path_factory.mktemp("smollm-seq")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return PoolingBackend(str(out), "sequence_classification", device="cpu")


@pytest.fixture(scope="module")
def minilm_tok() -> PoolingBackend:
    return PoolingBackend(str(minilm_dir("token", 2)), "token_classification", device="cpu")


@pytest.fixture(scope="module")
def smollm_lm() -> PoolingBackend:
    return PoolingBackend(smollm_layers(2), "lm_logits", device="cpu")


def token_batches(backend: PoolingBackend, max_length: int) -> list[list[int]]:
    # Different limits per item, so that every batch mixes lengths and pads.
    batch = [
        encode_conversation(backend.tokenizer, p, r, max_length - 7 * i).ids
        for i, (p, r) in enumerate(conversations())
    ]
    lengths = sorted(len(ids) for ids in batch)
    assert lengths[0] < lengths[-1], "the test needs inputs of different lengths, so that some are padded"
    return batch


def test_architecture_detection(minilm_seq: PoolingBackend, smollm_seq: PoolingBackend) -> None:
    assert not is_decoder_config(minilm_seq.model.config)
    assert is_decoder_config(smollm_seq.model.config)
    assert (minilm_seq.padding_side, smollm_seq.padding_side) == ("right", "left")


@pytest.mark.parametrize("backend_name,padding_sides", [
    ("minilm_seq", ["right"]), ("smollm_seq", ["left", "right"]),
])
def test_sequence_batched_equals_single(request: pytest.FixtureRequest, backend_name: str,
                                        padding_sides: list[str]) -> None:
    backend: PoolingBackend = request.getfixturevalue(backend_name)
    batch = token_batches(backend, 48)
    single = [backend.sequence_logits([ids])[0][0] for ids in batch]  # no padding at all
    assert len(set(round(s, 6) for s in single)) == len(single), "distinct inputs should get distinct scores"
    assert max(single) - min(single) > 100 * ATOL, single  # by far more than the tolerance
    default = backend.padding_side
    try:
        for side in padding_sides:
            backend.padding_side = side
            batched = [row[0] for row in backend.sequence_logits(batch)]
            reversed_ = [row[0] for row in backend.sequence_logits(batch[::-1])][::-1]
            assert batched == pytest.approx(single, abs=ATOL), side
            assert reversed_ == pytest.approx(single, abs=ATOL), side
    finally:
        backend.padding_side = default


def test_sequence_matches_plain_hf_forward(smollm_seq: PoolingBackend, minilm_seq: PoolingBackend) -> None:
    """Our explicit masks and position ids give what the HF model gives an unpadded input."""
    import torch

    for backend in (smollm_seq, minilm_seq):
        ids = token_batches(backend, 40)[0]
        with torch.inference_mode():
            expected = backend.model(input_ids=torch.tensor([ids])).logits[0, 0].item()
        assert backend.sequence_logits([ids])[0][0] == pytest.approx(expected, abs=ATOL)


def test_a_bare_backbone_is_not_served_with_a_blank_head() -> None:
    from rewardsvc.model_refs import resolve_model_path

    with pytest.raises(ValueError, match="no trained weights"):
        PoolingBackend(str(resolve_model_path("bundled:all-minilm-l6-v2")), "sequence_classification", device="cpu")


def test_encoder_sequence_classifier_refuses_left_padding() -> None:
    with pytest.raises(ValueError, match="left padding"):
        PoolingBackend(str(minilm_dir("sequence", 1)), "sequence_classification", device="cpu",
                       padding_side="left")


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_logits_batched_equals_single(minilm_tok: PoolingBackend, padding_side: str) -> None:
    minilm_tok.padding_side = padding_side
    try:
        batch = token_batches(minilm_tok, 48)
        positions = [[0, len(ids) // 2, len(ids) - 1] for ids in batch]
        batched = minilm_tok.token_logits(batch, positions)
        single = [minilm_tok.token_logits([ids], [pos])[0] for ids, pos in zip(batch, positions)]
    finally:
        minilm_tok.padding_side = "right"
    assert [len(x) for x in batched] == [3] * len(batch)
    assert all(len(row) == 2 for item in batched for row in item)
    for b, s in zip(batched, single):
        assert sum(b, []) == pytest.approx(sum(s, []), abs=ATOL)


def test_lm_token_logits_batched_equals_full_forward(smollm_lm: PoolingBackend) -> None:
    import torch

    vocab = [smollm_lm.token_id("+"), smollm_lm.token_id("-")]
    batch = token_batches(smollm_lm, 40)[:3]
    positions = [[1, len(ids) - 1] for ids in batch]
    expected = []
    for ids, pos in zip(batch, positions):
        with torch.inference_mode():
            full = smollm_lm.model(input_ids=torch.tensor([ids])).logits[0]
        expected += [full[p, v].item() for p in pos for v in vocab]
    try:
        for side in ("left", "right"):
            smollm_lm.padding_side = side
            got = smollm_lm.lm_token_logits(batch, positions, vocab)
            assert [x for item in got for row in item for x in row] == pytest.approx(expected, abs=1e-3), side
    finally:
        smollm_lm.padding_side = "left"


def test_token_id_must_be_one_token(smollm_lm: PoolingBackend) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        smollm_lm.token_id("definitely not one token")
