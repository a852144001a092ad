"""Step-preserving windows: a solution longer than the model's context, scored in overlapping pieces.

A PRM in the TRL layout (scorers/render.py `encode_steps_trl`) reads step i at the end of step i's
tokens, so a step needs the tokens before it, not the ones after it. When a solution's steps don't
fit `max_length`, it is cut into windows at step boundaries; each window holds

    [BOS] + the prompt's last tokens (at most a quarter of the window)
          + context: whole steps before the first scored one (at most a quarter of what is left)
          + the steps it scores, whole, as many as fit

so every step is scored exactly once, with the question and the steps just before it in view. A
single step longer than a window keeps its last tokens (where its label is read). The trainer cuts
long training solutions the same way, so the model is trained on what it is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardsvc.scorers.render import Encoded, InputTooLongError, encode_steps_trl, render_prompt
from rewardsvc.types import Text

#: Shares of a window: the prompt's tail, then the context steps (of what the prompt leaves).
PROMPT_SHARE = 4
CONTEXT_SHARE = 4


@dataclass
class Window(Encoded):
    """One window's ids; `positions[k]` is where step `steps[k]` (an index into the solution) is read."""

    steps: list[int] | None = None


def encode_steps_windows(tokenizer: Any, prompt: Text, steps: Sequence[str], separator: str,
                         max_length: int) -> list[Window]:
    """The TRL encoding of the whole solution when its steps fit `max_length` (one window, the
    prompt's start cut if need be), else step-preserving windows that together score every step."""
    try:
        whole = encode_steps_trl(tokenizer, prompt, steps, separator, max_length)
        return [Window(whole.ids, whole.positions, whole.truncated_tokens, list(range(len(steps))))]
    except InputTooLongError:
        pass
    prompt_ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False, verbose=False)["input_ids"]
    sep_ids = tokenizer(separator, add_special_tokens=False, verbose=False)["input_ids"] if separator else []
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix = [bos] if bos is not None else []
    pieces = []
    for i, step in enumerate(steps):
        piece = tokenizer(step, add_special_tokens=False, verbose=False)["input_ids"] + sep_ids
        if not piece:
            raise ValueError(f"step {i + 1} tokenises to nothing, so it has no position to score")
        pieces.append(piece)
    budget = max_length - len(prefix)
    head = prompt_ids[len(prompt_ids) - min(len(prompt_ids), budget // PROMPT_SHARE):]
    room = budget - len(head)
    if room < 2:
        raise InputTooLongError(f"max_length {max_length} leaves no room for steps")
    windows: list[Window] = []
    i = 0
    while i < len(pieces):
        context: list[int] = []
        j = i
        while i and j > 0 and len(context) + len(pieces[j - 1]) <= room // CONTEXT_SHARE:
            context = pieces[j - 1] + context
            j -= 1
        ids = prefix + head + context
        positions, scored = [], []
        k = i
        while k < len(pieces) and len(ids) + len(pieces[k]) <= max_length:
            ids += pieces[k]
            positions.append(len(ids) - 1)
            scored.append(k)
            k += 1
        if not scored:  # one step longer than the room left: keep its end, where it is read
            ids += pieces[i][len(ids) - max_length:]
            positions, scored, k = [len(ids) - 1], [i], i + 1
        windows.append(Window(ids, positions, len(prompt_ids) - len(head), scored))
        i = k
    return windows


def merge_windows(windows: Sequence[Window], scores: Sequence[Sequence[float]], n_steps: int) -> list[float]:
    """Each step's score from the window that scored it."""
    out: list[float | None] = [None] * n_steps
    for window, values in zip(windows, scores):
        for step, value in zip(window.steps or [], values):
            out[step] = value
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        raise RuntimeError(f"steps {missing} were in no window")
    return [float(v) for v in out if v is not None]
