"""Text in, k sampled texts out: the interface the generative scorer's backends share.

The generative scorer asks a judge model for k critiques of one rendered prompt. Where the model
runs is a backend's business: in this process (transformers, vLLM: the scorer tokenises and feeds
its batcher) or on a server elsewhere (an OpenAI-compatible `/v1/chat/completions` or
`/v1/completions`, backends/openai_server.py). Every backend returns, per prompt, either its
samples or the exception that stopped it, so one prompt's failure is one item's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rewardsvc.types import ErrorCode


@dataclass
class ChatPrompt:
    """One judge call: an optional system turn, the user turn, and the start of the judge's reply."""

    user: str
    system: str = ""
    #: The assistant turn starts with this text (in-process and `/v1/completions` only; see
    #: openai_server.py for why the chat endpoint does not send it).
    prefill: str = ""


@dataclass
class Sample:
    """One generated critique."""

    #: The judge's reply: the prompt's prefill where the backend sent it, then the generated text.
    text: str
    tokens: int
    #: False when the reasoning budget (max_new_tokens) cut the text off.
    finished: bool


@dataclass
class SamplingParams:
    k: int
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


class SamplingError(Exception):
    """A prompt the backend could not sample: `code` is the item error it becomes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class TextSampler(Protocol):
    """What the generative scorer needs from a backend."""

    async def sample(self, prompts: Sequence[ChatPrompt], params: SamplingParams) -> list[list[Sample] | BaseException]:
        """`params.k` samples per prompt, in order; a prompt that failed gets its exception."""
        ...

    async def close(self) -> None: ...
