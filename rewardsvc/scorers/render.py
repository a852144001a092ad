"""Model input for reward models and PRMs: one place shared by the scorers and the trainers.

A trained reward model is only as good as the match between the text it was trained on and the
text it is served with, so the trainers import these functions instead of formatting on their own.

Conversations (classifier RMs)
    `prompt` and `response` may each be text or chat messages. Plain text becomes one turn (the
    prompt a `user` turn, the response an `assistant` turn). The conversation is rendered with the
    reward model's own chat template when its tokenizer has one (the policy's template may differ:
    the server renders, not the caller). A tokenizer without a template (BERT-like encoders such as
    MiniLM) gets the plain format of the Anthropic HH-RLHF data set: every turn as
    "\\n\\nHuman: ...", "\\n\\nAssistant: ..." or "\\n\\nSystem: ...", so an HH-RLHF dialogue parsed
    with `hh_messages` renders back to its original text byte for byte.
    Over-long inputs are truncated from the left (the start of the prompt goes first): a reward
    depends most on the response, which is at the end. Special tokens (BOS, [CLS]/[SEP]) are kept.

Step formats (PRMs), one read position per step:
    token_classification  TRL PRMTrainer: [BOS if the tokenizer has one] + prompt ids + for each
                          step (step ids + separator ids), each part tokenised on its own without
                          special tokens; a step's score is read at the last token of its
                          separator (with a separator that tokenises to nothing, such as "\\n" for
                          WordPiece, that is the step's own last token, as in TRL).
    step_tag              Math-Shepherd: f"{prompt} " + join(f"{step} {tag}" for each step), the
                          steps joined with the separator; read at the tag's last token.
    step_token            Qwen2.5-Math-PRM: the assistant turn is tag.join(steps) + tag (tag a
                          special token such as <extra_0>), rendered with the chat template (or the
                          plain format); read at each tag.
    step_chat             RLHFlow PRMs: a chat in which the user sends the prompt + " " + step 1,
                          then each further step, and the assistant answers every step with the
                          positive token ("+"); read at the token before each "+" (where the model
                          predicts it). One pass gives what RLHFlow's re-run per step gives: a causal
                          model's logits at a position don't depend on what follows.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rewardsvc.types import Message, Text, messages_of

#: Role names of the plain (HH-RLHF) format, used when a tokenizer has no chat template.
PLAIN_ROLES = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}

STEP_FORMATS = ("token_classification", "step_tag", "step_token", "step_chat")
#: Default step tag per format when the config leaves `step_tag` empty.
DEFAULT_STEP_TAGS = {"step_tag": "ки", "step_token": "<extra_0>"}

_HH_TURN = re.compile(r"\n\n(Human|Assistant|System): ?")


@dataclass
class Encoded:
    """Token ids for one model input. `positions` are the read positions (one per step for PRMs)."""

    ids: list[int]
    positions: list[int] = field(default_factory=list)
    truncated_tokens: int = 0


class InputTooLongError(ValueError):
    """The part of an input that must be kept (all steps) does not fit in max_length."""


def conversation(prompt: Text, response: Text) -> list[Message]:
    """The prompt and response as one list of chat messages."""
    return messages_of(prompt, "user") + messages_of(response, "assistant")


def render_plain(messages: Sequence[Message]) -> str:
    """The HH-RLHF text format: "\\n\\nHuman: ...\\n\\nAssistant: ..."."""
    return "".join(
        f"\n\n{PLAIN_ROLES.get(m.role.lower(), m.role.capitalize())}: {m.content}" for m in messages
    )


def hh_messages(dialogue: str) -> list[Message]:
    """Parse an HH-RLHF dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...") into chat messages."""
    parts = _HH_TURN.split(dialogue)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not an HH-RLHF dialogue: it must start with '\\n\\nHuman: '")
    roles = {"Human": "user", "Assistant": "assistant", "System": "system"}
    return [Message(roles[parts[i]], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def hh_prompt_response(dialogue: str) -> tuple[list[Message], str]:
    """An HH-RLHF dialogue split into the prompt turns and the final assistant response."""
    messages = hh_messages(dialogue)
    if not messages or messages[-1].role != "assistant":
        raise ValueError("an HH-RLHF dialogue must end with an Assistant turn")
    return messages[:-1], messages[-1].content


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_conversation(tokenizer: Any, prompt: Text, response: Text) -> tuple[str, bool]:
    """(text, templated): the conversation through the tokenizer's chat template, else plain."""
    messages = conversation(prompt, response)
    if has_chat_template(tokenizer):
        dicts = [{"role": m.role, "content": m.content} for m in messages]
        return tokenizer.apply_chat_template(dicts, tokenize=False), True
    return render_plain(messages), False


def render_prompt(tokenizer: Any, prompt: Text) -> str:
    """A prompt alone as text: as given, or chat messages through the template (with the
    generation prompt) or the plain format (ending in "\\n\\nAssistant:")."""
    if isinstance(prompt, str):
        return prompt
    if has_chat_template(tokenizer):
        dicts = [{"role": m.role, "content": m.content} for m in prompt]
        return tokenizer.apply_chat_template(dicts, tokenize=False, add_generation_prompt=True)
    return render_plain(prompt) + "\n\nAssistant:"


_SPECIALS: dict[int, tuple[Any, list[int], list[int]]] = {}


# Splits a prompt into parts tokenised on their own (a private-use character no prompt contains), so a
# shared question keeps the same token ids whatever response follows it (prefix sharing, judge training).
MARK = "\ue000"


def chat_parts(tokenizer: Any, user: str, assistant_prefill: str = "") -> list[list[int]]:
    """A one-turn chat (user message, then the assistant turn started with `assistant_prefill`)
    rendered with the model's template and split at each MARK; each part is tokenised on its own.
    The judge scorer and the judge trainer both use this, so training sees what serving sends."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = f"{user}\n\n"
    parts = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in (text + assistant_prefill).split(MARK)]
    if not parts[0]:  # nothing to condition on: start from BOS (or EOS)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        parts[0] = [int(start)]
    return parts


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prefix, suffix) the tokenizer adds around one sequence, e.g. ([CLS], [SEP]) or ([BOS], [])."""
    cached = _SPECIALS.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1], cached[2]
    probe = "reward"
    plain = tokenizer(probe, add_special_tokens=False, verbose=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            prefix, suffix = list(full[:i]), list(full[i + len(plain) :])
            break
    else:  # a tokenizer that rewrites the text itself: add nothing rather than guess
        prefix, suffix = [], []
    _SPECIALS[id(tokenizer)] = (tokenizer, prefix, suffix)
    return prefix, suffix


def _bos_prefix(tokenizer: Any, ids: list[int]) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if bos is not None and ids[:1] == [bos] else []


def encode_conversation(tokenizer: Any, prompt: Text, response: Text, max_length: int) -> Encoded:
    """Token ids of the rendered conversation, left-truncated to `max_length`."""
    text, templated = render_conversation(tokenizer, prompt, response)
    if templated:
        # The template already wrote the special tokens it wants.
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        prefix = _bos_prefix(tokenizer, ids)
        suffix: list[int] = []
        ids = ids[len(prefix) :]
    else:
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room beside the special tokens")
    cut = max(0, len(ids) - budget)
    return Encoded(ids=prefix + ids[cut:] + suffix, truncated_tokens=cut)


def split_steps(text: str, separator: str) -> list[str]:
    """A response split into steps on `separator`; pieces that are only whitespace are dropped,
    the rest stripped."""
    if not separator:
        raise ValueError("step separator is empty")
    return [s.strip() for s in text.split(separator) if s.strip()]


def encode_steps_trl(
    tokenizer: Any, prompt: Text, steps: Sequence[str], separator: str, max_length: int
) -> Encoded:
    """TRL PRMTrainer's tokenisation; `positions[i]` is where step i's label sits.

    Scoring needs every step, so an over-long input loses the start of its prompt; if the steps
    alone don't fit, InputTooLongError.
    """
    prompt_text = render_prompt(tokenizer, prompt)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False, verbose=False)["input_ids"]
    sep_ids = tokenizer(separator, add_special_tokens=False, verbose=False)["input_ids"] if separator else []
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix = [bos] if bos is not None else []
    completion: list[int] = []
    ends: list[int] = []
    for i, step in enumerate(steps):
        piece = tokenizer(step, add_special_tokens=False, verbose=False)["input_ids"] + sep_ids
        if not piece:
            raise ValueError(f"step {i + 1} tokenises to nothing, so it has no position to score")
        completion += piece
        ends.append(len(completion) - 1)
    budget = max_length - len(prefix) - len(completion)
    if budget < 0:
        raise InputTooLongError(
            f"the {len(steps)} steps take {len(completion) + len(prefix)} tokens; max_length is "
            f"{max_length}: raise max_length or send fewer steps"
        )
    cut = max(0, len(prompt_ids) - budget)
    head = prefix + prompt_ids[cut:]
    return Encoded(ids=head + completion, positions=[len(head) + e for e in ends], truncated_tokens=cut)


def _encode_tagged(tokenizer: Any, text: str, tag_spans: list[tuple[int, int]], keep_from: int,
                   max_length: int, add_special: bool) -> Encoded:
    """Tokenise `text`, find the last token of each tag span, left-truncate before `keep_from`."""
    if len(tag_spans) > max_length:  # every tag keeps at least a token: refuse before tokenising
        raise InputTooLongError(f"{len(tag_spans)} steps can't fit in max_length {max_length}: send fewer steps")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    positions = _last_tokens(offsets, tag_spans)
    prefix, suffix = special_tokens(tokenizer) if add_special else ([], [])
    if not add_special:
        prefix = _bos_prefix(tokenizer, ids)
        ids, positions = ids[len(prefix) :], [p - len(prefix) for p in positions]
        offsets = offsets[len(prefix) :]
    budget = max_length - len(prefix) - len(suffix)
    first_kept = next((j for j, (a, _) in enumerate(offsets) if a >= keep_from), len(ids))
    cut = max(0, len(ids) - budget)
    if cut > first_kept:
        raise InputTooLongError(
            f"the {len(tag_spans)} steps take {len(ids) - first_kept + len(prefix) + len(suffix)} tokens; "
            f"max_length is {max_length}: raise max_length or send fewer steps"
        )
    return Encoded(
        ids=prefix + ids[cut:] + suffix,
        positions=[len(prefix) + p - cut for p in positions],
        truncated_tokens=cut,
    )


def _last_tokens(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """For each span (disjoint, in order), the last token overlapping it. One pass over the tokens,
    each matched to the spans it overlaps by bisection: scanning every token per span was
    quadratic (a flood of one-character steps)."""
    starts, ends = [a for a, _ in spans], [b for _, b in spans]
    last = [-1] * len(spans)
    for j, (a, b) in enumerate(offsets):
        i = bisect.bisect_right(ends, a)  # the first span ending after the token starts
        while i < len(spans) and starts[i] < b:
            last[i] = j
            i += 1
    for (start, end), j in zip(spans, last):
        if j < 0:
            raise ValueError(f"the step tag at characters {start}-{end} produced no token")
    return last


def encode_steps_tagged(
    tokenizer: Any, prompt: Text, steps: Sequence[str], tag: str, separator: str, max_length: int
) -> Encoded:
    """Math-Shepherd style: f"{prompt} {step1} {tag}{sep}{step2} {tag}..."; read at each tag."""
    text = render_prompt(tokenizer, prompt) + " "
    keep_from = len(text)
    spans = []
    for i, step in enumerate(steps):
        if i:
            text += separator
        text += f"{step} "
        spans.append((len(text), len(text) + len(tag)))
        text += tag
    return _encode_tagged(tokenizer, text, spans, keep_from, max_length, add_special=True)


def encode_steps_special(
    tokenizer: Any, prompt: Text, steps: Sequence[str], tag: str, max_length: int, system_prompt: str = ""
) -> Encoded:
    """Qwen2.5-Math-PRM style: assistant turn tag.join(steps) + tag in the chat template."""
    content = tag.join(steps) + tag
    prompt_messages = messages_of(prompt, "user")
    if system_prompt and not any(m.role == "system" for m in prompt_messages):
        prompt_messages = [Message("system", system_prompt), *prompt_messages]
    text, templated = render_conversation(tokenizer, prompt_messages, [Message("assistant", content)])
    at = text.rfind(content)
    if at < 0:
        raise ValueError("the chat template rewrote the step text, so the step tokens can't be located")
    spans, offset = [], at
    for step in steps:
        offset += len(step)
        spans.append((offset, offset + len(tag)))
        offset += len(tag)
    return _encode_tagged(tokenizer, text, spans, at, max_length, add_special=not templated)


def encode_steps_chat(tokenizer: Any, prompt: Text, steps: Sequence[str], positive: str, positive_id: int,
                      max_length: int) -> Encoded:
    """RLHFlow style: user turns carry the steps, each answered `positive`; read where it is predicted."""
    if not has_chat_template(tokenizer):
        raise ValueError("format step_chat needs a tokenizer with a chat template")
    if len(steps) > max_length:  # each step is answered by a token; and the renders below grow with the steps
        raise InputTooLongError(f"{len(steps)} steps can't fit in max_length {max_length}: send fewer steps")
    messages = [{"role": m.role, "content": m.content} for m in messages_of(prompt, "user")]
    if messages and messages[-1]["role"] == "user":
        first = messages.pop()["content"] + " " + steps[0]
    else:
        first = steps[0]
    spans, keep_from = [], -1
    for i, step in enumerate(steps):
        messages.append({"role": "user", "content": first if i == 0 else step})
        # The text up to the assistant's answer: where this step's positive token will start.
        upto = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if i == 0:
            keep_from = upto.rfind(steps[0].strip())  # templates may trim a turn
        messages.append({"role": "assistant", "content": positive})
        spans.append((len(upto), len(upto) + len(positive)))
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    if any(text[a:b] != positive for a, b in spans):
        raise ValueError("the chat template's text for a conversation is not its text for the same turns "
                         "one by one, so the step answers can't be located")
    enc = _encode_tagged(tokenizer, text, spans, max(keep_from, 0), max_length, add_special=False)
    # The answer token itself must be `positive` (not merged with a neighbour); the step is read one
    # position before it.
    if any(enc.ids[p] != positive_id for p in enc.positions):
        raise ValueError(f"{positive!r} is not a token of its own in this chat template's text")
    return Encoded(ids=enc.ids, positions=[p - 1 for p in enc.positions], truncated_tokens=enc.truncated_tokens)
