"""transformers causal-LM backend: log-probs against a plain forward, padding and prefix sharing that
don't change results, generation, and the cached GGUF conversion.

Model: SmolLM2 cut to its first two layers (`smollm_layers(2)`: real weights and tokenizer, ~1/10 of
the forward). Every check compares the backend with a plain forward of the same weights (or batched
with single), which holds for any weights; greedy generation is checked token by token against the
plain forward's argmax rather than against what the full model knows."""

from __future__ import annotations

import pytest
from causal_support import SMOLLM, smollm_layers

torch = pytest.importorskip("torch")

from rewardsvc.backends.causal_lm import GenerateRequest, LogprobRequest, acquire, release  # noqa: E402

pytestmark = pytest.mark.slow
TOL = 2e-4


@pytest.fixture(scope="module")
def lm():
    lm = acquire(smollm_layers(2))
    yield lm
    release(lm)


def _enc(lm, text: str) -> list[int]:
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def requests(lm) -> list[LogprobRequest]:
    """Two GRPO-like groups of different prompt lengths, a lone item, a candidates-only request."""
    p1 = _enc(lm, "Question: what is 2+3? Answer:")
    p2 = _enc(lm, "Write one sentence about a cat named Bob who likes fish and naps.")
    yes, no = _enc(lm, " Yes")[0], _enc(lm, " No")[0]
    reqs = [LogprobRequest(context=p1, target=_enc(lm, r), candidates=[yes, no], group="g1", shared_prefix=len(p1))
            for r in (" 5", " It is 6 because 2+3=6.", " five")]
    reqs += [LogprobRequest(context=p2, target=_enc(lm, r), group="g2", shared_prefix=len(p2))
             for r in (" Bob swam.", " Bob the cat sleeps all day long.")]
    reqs.append(LogprobRequest(context=p1, candidates=[yes, no], group="g1", shared_prefix=len(p1)))
    reqs.append(LogprobRequest(context=p2[:4], target=p2[4:]))  # no group: never shared
    return reqs


def _reference(lm, r: LogprobRequest) -> tuple[list[float], list[float]]:
    """Log-probs from one unpadded full forward with the whole vocabulary's logits."""
    ids = torch.tensor([list(r.context) + list(r.target)])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].float(), dim=-1)
    c, t = len(r.context), len(r.target)
    return ([float(logp[c - 1 + j, tok]) for j, tok in enumerate(r.target)],
            [float(logp[c + t - 1, tok]) for tok in r.candidates])


@pytest.fixture(scope="module")
def expected(lm, requests):
    out = [_reference(lm, r) for r in requests]
    # The requests' log-probs differ by far more than TOL: a padding or sharing bug would show.
    firsts = [target[0] if target else cands[0] for target, cands in out]
    assert max(firsts) - min(firsts) > 100 * TOL, firsts
    return out


def _assert_close(results, expected) -> None:
    for res, (target, cands) in zip(results, expected, strict=True):
        assert len(res.target) == len(target) and len(res.candidates) == len(cands)
        assert res.target == pytest.approx(target, abs=TOL)
        assert res.candidates == pytest.approx(cands, abs=TOL)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("share", [True, False])
def test_batched_logprobs_match_plain_forward(lm, requests, expected, side, share):
    before = lm.stats.shared_prefix_tokens_saved
    _assert_close(lm.logprobs(requests, side, share), expected)
    saved = lm.stats.shared_prefix_tokens_saved - before
    # Group g1 has four members (three targets + the candidates-only one), g2 two.
    p1, p2 = len(requests[0].context), len(requests[3].context)
    assert saved == ((3 * p1 + p2) if share else 0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_single_requests_match_plain_forward(lm, requests, expected, side):
    _assert_close([lm.logprobs([r], side)[0] for r in requests], expected)


def test_results_keep_input_order(lm, requests, expected):
    order = list(reversed(range(len(requests))))
    _assert_close(lm.logprobs([requests[i] for i in order]), [expected[i] for i in order])


def test_request_without_context_is_refused():
    with pytest.raises(ValueError, match="context token"):
        LogprobRequest(context=[], target=[1, 2])


def test_greedy_generation_batched_equals_single_and_is_the_argmax(lm):
    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    reqs = [GenerateRequest(context=_enc(lm, p), max_new_tokens=4) for p in prompts]
    batched = lm.generate(reqs)
    single = [lm.generate([r])[0] for r in reqs]
    assert batched == single
    assert all(0 < len(g) <= 4 for g in batched)
    assert batched[0] != batched[1]  # so rows swapped would show
    # Each new token is the argmax of a plain unpadded forward over the context and the tokens before it.
    for r, gen in zip(reqs, batched):
        with torch.no_grad():
            logits = lm.model(torch.tensor([list(r.context) + gen])).logits[0].float()
        for j, tok in enumerate(gen):
            row = logits[len(r.context) - 1 + j]
            assert float(row[tok]) >= float(row.max()) - 1e-4, (j, tok, int(row.argmax()))
    # Greedy continuation is the argmax of the next-token distribution.
    first = lm.logprobs([LogprobRequest(context=reqs[1].context, candidates=list(range(len(lm.tokenizer))))])[0]
    assert batched[1][0] == max(range(len(first.candidates)), key=first.candidates.__getitem__)


def test_sampled_generation_is_seeded(lm):
    req = GenerateRequest(context=_enc(lm, "My favourite colour is"), max_new_tokens=3, temperature=1.0, seed=7)
    assert lm.generate([req]) == lm.generate([req])


def test_gguf_conversion_is_cached():
    from rewardsvc.backends.gguf import converted_dir, model_dir
    from rewardsvc.model_refs import resolve_model_path

    gguf = resolve_model_path(SMOLLM)
    assert gguf.suffix == ".gguf"
    path = model_dir(SMOLLM)  # converted by the session fixture or `make install`: returns at once
    assert path == converted_dir(gguf)
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    assert model_dir(str(path)) == path  # an HF directory is used as is
