"""A judge served elsewhere: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, `transformers
serve`) through the `openai` package's AsyncOpenAI client (extra `rewardsvc[openai]`; no torch).

Per prompt, k samples are asked for in one request with `n=k`; servers that ignore `n` (transformers
serve, llama.cpp) return fewer choices, and the rest are then asked for one request each (seed + j,
so they differ when the server honours `seed`). Every HTTP call holds one of `max_concurrency`
slots, has `request_timeout_s` and up to `max_retries` retries (the client's own backoff, on
connection errors, timeouts, 408/409/429 and 5xx), and each prompt's calls together must finish
within `deadline_s`. Failures become a SamplingError whose message names the server and the
setting to change.

The chat endpoint sends the system and user turns only: continuing an assistant turn is not part
of the OpenAI API (vLLM and SGLang each have their own flag for it), so a prompt's `prefill` goes
only to `/v1/completions`, which gets the full rendered text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from rewardsvc.backends.sampling import ChatPrompt, Sample, SamplingError, SamplingParams
from rewardsvc.dataclass_dict import option
from rewardsvc.errors import ConfigError
from rewardsvc.types import ErrorCode

log = logging.getLogger(__name__)


@dataclasses.dataclass
class OpenAIServerConfig:
    """The `openai:` stanza of a scorer whose backend is `openai`."""

    base_url: str = option("", "the server's OpenAI API root, e.g. http://judge-host:8000/v1")
    api_key_env: str = option("", "environment variable holding the API key (empty: no key, sent as 'EMPTY')")
    endpoint: Literal["chat", "completions"] = option(
        "chat", "chat (/v1/chat/completions: the server applies its chat template) or completions "
        "(/v1/completions: the prompt rendered here, with `tokenizer`'s template if set)")
    tokenizer: str = option("", "completions: a local model (directory, bundled:NAME) whose chat template "
                                "renders the prompt; empty: the plain Human/Assistant format")
    max_concurrency: int = option(8, "HTTP requests in flight to the server at once (this scorer)")
    request_timeout_s: float = option(120.0, "seconds one HTTP request may take")
    max_retries: int = option(2, "retries per HTTP request (connection errors, timeouts, 429, 5xx)")
    deadline_s: float = option(600.0, "seconds all of one item's requests (its k samples, retries) may take")
    extra_body: dict[str, Any] = option({}, "extra JSON fields for every request (server-specific, e.g. top_k)")


def openai_unavailable_reason() -> str | None:
    """Why the openai backend can't run here, or None."""
    try:
        import openai  # noqa: F401
    except ImportError as exc:
        return f"the openai package is not installed ({exc}); install the extra: pip install 'rewardsvc[openai]'"
    return None


class OpenAIServerSampler:
    """k critiques per prompt from an OpenAI-compatible server."""

    def __init__(self, config: OpenAIServerConfig, model: str, render: Callable[[ChatPrompt], str],
                 where: str = "") -> None:
        """`model`: the name the server serves the judge under; `render`: the completions endpoint's
        prompt text for a ChatPrompt."""
        reason = openai_unavailable_reason()
        if reason:
            raise ConfigError(f"{where}: backend openai: {reason}")
        if not config.base_url:
            raise ConfigError(f"{where}: backend openai needs `openai: {{base_url: http://HOST:PORT/v1}}`")
        for key in ("max_concurrency",):
            if getattr(config, key) < 1:
                raise ConfigError(f"{where}: openai.{key} must be >= 1")
        for key in ("request_timeout_s", "deadline_s"):
            if not getattr(config, key) > 0:
                raise ConfigError(f"{where}: openai.{key} must be > 0")
        if config.max_retries < 0:
            raise ConfigError(f"{where}: openai.max_retries must be >= 0")
        api_key = "EMPTY"
        if config.api_key_env:
            api_key = os.environ.get(config.api_key_env, "")
            if not api_key:
                raise ConfigError(f"{where}: openai.api_key_env names {config.api_key_env!r}, which is not set "
                                  "in the server's environment")
        import openai

        self.config = config
        self.model = model
        self.render = render
        self.url = config.base_url
        self._openai = openai
        self._client = openai.AsyncOpenAI(base_url=config.base_url, api_key=api_key,
                                          timeout=config.request_timeout_s, max_retries=config.max_retries)
        self._slots = asyncio.Semaphore(config.max_concurrency)
        # Set once the server answers n=k with fewer choices: from then on, k requests of n=1.
        self._ignores_n = False

    async def close(self) -> None:
        await self._client.close()

    async def sample(self, prompts: Sequence[ChatPrompt], params: SamplingParams) -> list[list[Sample] | BaseException]:
        async def one(prompt: ChatPrompt) -> list[Sample] | BaseException:
            try:
                return await asyncio.wait_for(self._prompt(prompt, params), self.config.deadline_s)
            except asyncio.TimeoutError:
                return SamplingError(ErrorCode.TIMEOUT, (
                    f"the judge server at {self.url} did not give {params.k} sample(s) within "
                    f"openai.deadline_s={self.config.deadline_s:g}s: it is overloaded or too slow for "
                    f"max_new_tokens={params.max_new_tokens}; raise deadline_s or lower k / max_new_tokens"))
            except SamplingError as exc:
                return exc
        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def _prompt(self, prompt: ChatPrompt, params: SamplingParams) -> list[Sample]:
        samples: list[Sample] = []
        if not self._ignores_n or params.k == 1:
            samples = await self._call(prompt, params, params.k, params.seed)
            if len(samples) < params.k and not self._ignores_n:
                self._ignores_n = True
                log.warning("the judge server at %s answered n=%d with %d choice(s); asking for the other "
                            "samples one request each", self.url, params.k, len(samples))
        missing = params.k - len(samples)
        if missing > 0:
            offset = len(samples)
            tasks = [asyncio.ensure_future(self._call(
                prompt, params, 1, None if params.seed is None else params.seed + offset + j)) for j in range(missing)]
            try:
                for got in await asyncio.gather(*tasks):
                    samples += got
            except BaseException:  # one failure fails the prompt: stop its other requests
                for t in tasks:
                    t.cancel()
                raise
        return samples[: params.k]

    async def _call(self, prompt: ChatPrompt, params: SamplingParams, n: int, seed: int | None) -> list[Sample]:
        cfg = self.config
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens,
                                  "temperature": params.temperature}
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        if params.top_p < 1.0:
            kwargs["top_p"] = params.top_p
        if cfg.extra_body:
            kwargs["extra_body"] = dict(cfg.extra_body)
        try:
            async with self._slots:
                if cfg.endpoint == "chat":
                    messages: list[Any] = [{"role": "system", "content": prompt.system}] if prompt.system else []
                    messages.append({"role": "user", "content": prompt.user})
                    resp = await self._client.chat.completions.create(messages=messages, **kwargs)
                    texts = [(c.message.content or "" if c.message else "", c.finish_reason) for c in resp.choices]
                else:
                    resp = await self._client.completions.create(prompt=self.render(prompt), **kwargs)
                    texts = [(prompt.prefill + (c.text or ""), c.finish_reason) for c in resp.choices]
        except self._openai.APIError as exc:
            raise self._error(exc) from exc
        used = getattr(getattr(resp, "usage", None), "completion_tokens", None)
        per_choice = used // len(texts) if used is not None and texts else 0
        return [Sample(text=text, tokens=per_choice, finished=reason != "length") for text, reason in texts]

    def _error(self, exc: Exception) -> SamplingError:
        """The item error for a failed request, saying what to do about it."""
        o = self._openai
        cfg = self.config
        tries = f"{cfg.max_retries + 1} attempt(s)"
        if isinstance(exc, o.APITimeoutError):
            return SamplingError(ErrorCode.TIMEOUT, (
                f"the judge server at {self.url} did not answer within openai.request_timeout_s="
                f"{cfg.request_timeout_s:g}s ({tries}): it is overloaded or the reasoning budget is too large "
                "for it; raise request_timeout_s or lower max_new_tokens"))
        if isinstance(exc, o.APIConnectionError):
            cause = exc.__cause__ or exc
            return SamplingError(ErrorCode.INTERNAL, (
                f"cannot reach the judge server at {self.url} ({type(cause).__name__}: {cause}; {tries}): "
                "is it running, and is openai.base_url right?"))
        if isinstance(exc, o.RateLimitError):
            return SamplingError(ErrorCode.RESOURCE_EXHAUSTED, (
                f"the judge server at {self.url} is rate-limiting us (429, {tries}): lower "
                "openai.max_concurrency or retry later"))
        if isinstance(exc, o.APIStatusError):
            detail = _short(exc.body if exc.body is not None else exc.message)
            if exc.status_code in (400, 413, 422):
                return SamplingError(ErrorCode.INVALID_ITEM, (
                    f"the judge server at {self.url} rejected the request ({exc.status_code}): {detail} "
                    f"(check `model: {self.model}`, openai.extra_body and the item's length)"))
            if exc.status_code in (401, 403):
                return SamplingError(ErrorCode.INTERNAL, (
                    f"the judge server at {self.url} refused our credentials ({exc.status_code}): {detail}; "
                    "check openai.api_key_env"))
            return SamplingError(ErrorCode.INTERNAL, (
                f"the judge server at {self.url} failed ({exc.status_code}, {tries}): {detail}"))
        return SamplingError(ErrorCode.INTERNAL, f"the judge server at {self.url}: {type(exc).__name__}: {exc}")


def _short(value: Any, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
