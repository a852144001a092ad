"""Model input formats (scorers/render.py): HH-RLHF plain format, truncation, PRM step positions.

Tokenizers only (no forward passes): fast.
"""

from __future__ import annotations

import pytest

from encoder_models import read_jsonl, smollm_dir
from rewardsvc.model_refs import resolve_model_path
from rewardsvc.scorers.render import (
    InputTooLongError,
    encode_conversation,
    encode_steps_special,
    encode_steps_tagged,
    encode_steps_trl,
    hh_messages,
    hh_prompt_response,
    render_conversation,
    render_plain,
    split_steps,
)
from rewardsvc.types import Message


@pytest.fixture(scope="module")
def bert_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("bundled:all-minilm-l6-v2"))


@pytest.fixture(scope="module")
def smollm_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_dir())


def test_hh_dialogues_round_trip_through_the_plain_format() -> None:
    for row in read_jsonl("hh-rlhf-sample.jsonl"):
        for text in (row["chosen"], row["rejected"]):
            assert render_plain(hh_messages(text)) == text
            prompt, response = hh_prompt_response(text)
            assert prompt[-1].role == "user" and text.endswith(response)


def test_hh_parser_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="HH-RLHF"):
        hh_messages("just some text")


def test_plain_text_and_messages_render_alike(bert_tok) -> None:
    as_text, templated = render_conversation(bert_tok, "What is 2+2?", "4")
    as_messages, _ = render_conversation(bert_tok, [Message("user", "What is 2+2?")], [Message("assistant", "4")])
    assert not templated
    assert as_text == as_messages == "\n\nHuman: What is 2+2?\n\nAssistant: 4"


def test_chat_template_is_the_reward_models_own(smollm_tok) -> None:
    text, templated = render_conversation(smollm_tok, "What is 2+2?", "4")
    assert templated
    assert text == smollm_tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}], tokenize=False
    )
    enc = encode_conversation(smollm_tok, "What is 2+2?", "4", 512)
    assert enc.ids == smollm_tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("tok_name", ["bert_tok", "smollm_tok"])
def test_truncation_keeps_the_response_end_and_special_tokens(request, tok_name: str) -> None:
    tok = request.getfixturevalue(tok_name)
    prompt = " ".join(f"word{i}" for i in range(400))
    full = encode_conversation(tok, prompt, "The final answer is forty-two.", 4096)
    cut = encode_conversation(tok, prompt, "The final answer is forty-two.", 64)
    assert len(cut.ids) == 64 and cut.truncated_tokens == len(full.ids) - 64
    assert tok.decode(cut.ids).rstrip().endswith(tok.decode(full.ids[-8:]).rstrip())
    if tok_name == "bert_tok":
        assert (cut.ids[0], cut.ids[-1]) == (tok.cls_token_id, tok.sep_token_id)


def test_trl_step_positions_sit_on_each_separator(bert_tok, smollm_tok) -> None:
    """TRL PRMTrainer's layout (TRL 1.16 no longer ships the trainer, so it is spelled out here):
    [BOS] + prompt + (step + separator)*, each part tokenised alone, label on the separator's last
    token; a separator that tokenises to nothing (WordPiece "\\n") puts it on the step's last token."""
    for row in read_jsonl("prmbench-sample.jsonl")[:6]:
        steps = row["modified_process"]
        for tok in (bert_tok, smollm_tok):
            def ids(text: str) -> list[int]:
                return tok(text, add_special_tokens=False)["input_ids"]

            enc = encode_steps_trl(tok, row["question"], steps, "\n", 4096)
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
            expected = bos + ids(row["question"])
            positions = []
            for step in steps:
                expected += ids(step) + ids("\n")
                positions.append(len(expected) - 1)
            assert enc.ids == expected
            assert enc.positions == positions and len(positions) == len(steps)
    assert bert_tok("\n", add_special_tokens=False)["input_ids"] == []
    assert smollm_tok("\n", add_special_tokens=False)["input_ids"] != []


def test_trl_steps_cut_the_prompt_not_the_steps(bert_tok) -> None:
    steps = ["one plus one is two", "so the answer is two"]
    full = encode_steps_trl(bert_tok, "long question " * 50, steps, "\n", 4096)
    cut = encode_steps_trl(bert_tok, "long question " * 50, steps, "\n", 40)
    assert len(cut.ids) == 40 and cut.truncated_tokens == len(full.ids) - 40
    assert [cut.ids[p] for p in cut.positions] == [full.ids[p] for p in full.positions]
    with pytest.raises(InputTooLongError, match="max_length"):
        encode_steps_trl(bert_tok, "q", steps * 10, "\n", 20)


def test_step_tag_positions_sit_on_the_tag(smollm_tok) -> None:
    steps = ["Step 1: 3 + 4 = 7.", "Step 2: 7 * 2 = 14.", "Step 3: The answer is 14."]
    enc = encode_steps_tagged(smollm_tok, "What is (3+4)*2?", steps, "ки", "\n", 512)
    assert len(enc.positions) == 3
    tag_last = smollm_tok("ки", add_special_tokens=False)["input_ids"][-1]
    assert [enc.ids[p] for p in enc.positions] == [tag_last] * 3
    # Math-Shepherd's own reading: every position whose token is the tag id.
    assert enc.positions == [i for i, t in enumerate(enc.ids) if t == tag_last]


def test_step_token_positions_in_the_chat_template(smollm_tok) -> None:
    tag = "<|endoftext|>"  # any atomic special token plays Qwen-PRM's <extra_0>
    tag_id = smollm_tok.convert_tokens_to_ids(tag)
    steps = ["3 + 4 = 7", "7 * 2 = 14", "The answer is 14"]
    enc = encode_steps_special(smollm_tok, "What is (3+4)*2?", steps, tag, 512, system_prompt="Reason step by step.")
    assert [enc.ids[p] for p in enc.positions] == [tag_id] * 3
    text = smollm_tok.decode(enc.ids)
    assert "Reason step by step." in text and text.count(tag) == 3


def test_split_steps() -> None:
    assert split_steps("a\n\nb\n  \nc\n", "\n") == ["a", "b", "c"]
    assert split_steps("one. two.", "\n") == ["one. two."]
    with pytest.raises(ValueError):
        split_steps("x", "")
