"""Step-preserving windows: a PRM input longer than max_length is scored in pieces, every step once.

The real MiniLM tokenizer (what the default PRM reads with) on PRMBench and MATH-style steps. The
scorer test runs a seeded random token-classification head on MiniLM cut to its first encoder layer:
it checks that every step of a 4096-token solution gets a score, which holds for any weights.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest
from encoder_models import minilm_dir, read_jsonl

from rewardsvc.config import parse_config
from rewardsvc.model_refs import resolve_model_path
from rewardsvc.scorers.render import encode_steps_trl
from rewardsvc.scorers.step_windows import PROMPT_SHARE, encode_steps_windows, merge_windows
from rewardsvc.service import ScoringService
from rewardsvc.types import Item


@functools.cache
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("bundled:all-minilm-l6-v2"))


def long_solution(n_tokens: int) -> tuple[str, list[str]]:
    """A PRMBench question with its steps repeated until the solution passes n_tokens."""
    row = read_jsonl("prmbench-sample.jsonl")[0]
    steps: list[str] = []
    while len(tokenizer()("\n".join(steps), add_special_tokens=False)["input_ids"]) < n_tokens:
        steps += [f"({len(steps)}) {s}" for s in row["original_process"]]
    return row["question"], steps


def test_a_solution_that_fits_is_the_plain_trl_encoding() -> None:
    row = read_jsonl("prmbench-sample.jsonl")[0]
    [window] = encode_steps_windows(tokenizer(), row["question"], row["original_process"], "\n", 512)
    plain = encode_steps_trl(tokenizer(), row["question"], row["original_process"], "\n", 512)
    assert (window.ids, window.positions, window.steps) == (plain.ids, plain.positions,
                                                            list(range(len(row["original_process"]))))


def test_4096_tokens_in_512_token_windows_score_every_step_once() -> None:
    tok = tokenizer()
    prompt, steps = long_solution(4096)
    windows = encode_steps_windows(tok, prompt, steps, "\n", 512)
    assert len(windows) > 8
    assert [k for w in windows for k in w.steps] == list(range(len(steps)))
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    head = prompt_ids[-(512 // PROMPT_SHARE):]
    sep = tok("\n", add_special_tokens=False)["input_ids"]
    for w in windows:
        assert len(w.ids) <= 512
        assert w.ids[: len(head)] == head, "every window starts with the prompt's tail"
        for k, pos in zip(w.steps, w.positions):
            piece = tok(steps[k], add_special_tokens=False)["input_ids"] + sep
            assert w.ids[pos - len(piece) + 1: pos + 1] == piece, "read at the end of the step's own tokens"
    # Later windows carry the step just before the first one they score, after the prompt's tail.
    for w in windows[1:]:
        before = tok(steps[w.steps[0] - 1], add_special_tokens=False)["input_ids"] + sep
        first = tok(steps[w.steps[0]], add_special_tokens=False)["input_ids"] + sep
        start = w.positions[0] - len(first) + 1
        assert w.ids[start - len(before): start] == before
    assert merge_windows(windows, [[float(k) for k in w.steps] for w in windows], len(steps)) == \
        [float(k) for k in range(len(steps))]


def test_a_step_longer_than_the_window_keeps_its_end() -> None:
    tok = tokenizer()
    huge = " ".join(["the sum of the first numbers is computed again"] * 80)
    steps = ["First step.", huge, "Done."]
    windows = encode_steps_windows(tok, "What is it?", steps, "\n", 128)
    assert [k for w in windows for k in w.steps] == [0, 1, 2]
    cut = next(w for w in windows if w.steps == [1])
    tail = (tok(huge, add_special_tokens=False)["input_ids"] + tok("\n", add_special_tokens=False)["input_ids"])
    assert len(cut.ids) == 128 and cut.ids[-10:] == tail[-10:]


def one_layer_token_prm(out: Path) -> Path:
    """MiniLM's first encoder layer under minilm_dir's seeded two-label token head (real embeddings and
    tokenizer): a forward over 4096 tokens costs ~1/4 of the six-layer model's."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    src = minilm_dir("token", 2)
    model = AutoModelForTokenClassification.from_pretrained(src)
    model.bert.encoder.layer = model.bert.encoder.layer[:1]
    model.config.num_hidden_layers = 1
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


@pytest.mark.slow
def test_prm_scorer_scores_a_4096_token_solution_instead_of_rejecting_it(tmp_path: Path) -> None:
    prompt, steps = long_solution(4096)
    short = Item(id="short", prompt=prompt, steps=steps[:3])
    long = Item(id="long", prompt=prompt, steps=steps)
    cfg = {"scorers": {"prm": {"type": "prm", "model": str(one_layer_token_prm(tmp_path / "prm")), "device": "cpu",
                               "max_length": 512}}}

    async def main() -> list[Any]:
        async with ScoringService(parse_config(cfg)) as svc:
            return await svc.score("prm", [short, long])

    short_r, long_r = asyncio.run(main())
    assert long_r.error is None and len(long_r.step_scores) == len(steps)
    assert long_r.details["windows"] > 8 and long_r.details["tokens"] > 4096
    assert all(0.0 <= p <= 1.0 for p in long_r.step_scores) and short_r.details.get("windows") is None
