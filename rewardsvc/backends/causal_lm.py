"""transformers causal-LM backend: batched token log-probs, next-token log-probs, generation.

One request type covers every causal-LM scorer: the log-probs of `target` tokens given `context`,
plus the log-probs of some `candidates` tokens right after context+target (a verdict token, "Yes"
or "No"). Requests in one batch are padded on the configured side with explicit position ids, so a
request scores the same alone or in any batch (float tolerance).

Prefix sharing (GRPO groups): requests with the same `group` whose first `shared_prefix` tokens are
equal run that prefix once; its KV cache is then copied to each member, which runs only its own
tokens on top. Logits are computed only where a log-prob is wanted, in chunks, so the vocabulary
(49k for SmolLM2) never makes a batch x length x vocab tensor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Padding = Literal["left", "right"]
_LOGIT_CHUNK = 512  # positions per lm_head call: bounds the [positions, vocab] tensor


@dataclass
class LogprobRequest:
    """Log-probs of `target` given `context`, and of each of `candidates` right after both."""

    context: Sequence[int]
    target: Sequence[int] = ()
    candidates: Sequence[int] = ()
    #: Requests with the same `group` and the same first `shared_prefix` context tokens compute
    #: those tokens once (0: nothing shared).
    group: Hashable | None = None
    shared_prefix: int = 0

    def __post_init__(self) -> None:
        if not self.context:
            raise ValueError("a log-prob request needs at least one context token (e.g. BOS or a chat header)")
        if not 0 <= self.shared_prefix <= len(self.context):
            raise ValueError(f"shared_prefix {self.shared_prefix} is outside the context (length {len(self.context)})")

    @property
    def length(self) -> int:
        return len(self.context) + len(self.target)


@dataclass
class LogprobResult:
    target: list[float] = field(default_factory=list)
    candidates: list[float] = field(default_factory=list)


@dataclass
class GenerateRequest:
    context: Sequence[int]
    max_new_tokens: int = 16
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    #: Samples of this context (`sample()`); they share one pass over the context.
    n: int = 1


class CausalLMBackend(Protocol):
    """What the causal-LM scorers need from a backend (transformers or vLLM)."""

    tokenizer: Any
    name: str

    def logprobs(self, requests: Sequence[LogprobRequest], padding_side: Padding = "right",
                 share_prefixes: bool = True) -> list[LogprobResult]: ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]: ...

    def sample(self, requests: Sequence[GenerateRequest]) -> list[list[list[int]]]: ...


@dataclass
class ForwardStats:
    """Counters the benchmarks read: how many tokens actually went through the model."""

    forward_tokens: int = 0
    padded_tokens: int = 0
    shared_prefix_tokens_saved: int = 0


class TransformersCausalLM:
    """A causal LM loaded with transformers, fp32 on CPU / bf16 on GPU unless configured."""

    def __init__(self, path: str | Path, device: str = "auto", dtype: str = "auto", name: str = "",
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rewardsvc.backends.device import resolve_device, resolve_dtype
        from rewardsvc.backends.pooling import remote_code_error

        self.name = name or str(path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        t0 = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=self.dtype,
                                                         trust_remote_code=trust_remote_code)
            self.model = model.to(self.device).eval()
        except ValueError as exc:
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise remote_code_error(self.name, "see its config.json") from None
            raise
        self.pad_id = self._pad_id()
        self._base = self.model.base_model
        self._head = self.model.get_output_embeddings()
        self._softcap = getattr(self.model.config, "final_logit_softcapping", None)
        # One forward at a time: two threads sharing the CPU cores run slower than one after the other.
        self._lock = threading.Lock()
        self.stats = ForwardStats()
        self._torch = torch
        log.info("loaded %s on %s (%s) in %.1fs", self.name, self.device, self.dtype, time.perf_counter() - t0)

    def _pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    # ---------------------------------------------------------------- log-probs

    def logprobs(self, requests: Sequence[LogprobRequest], padding_side: Padding = "right",
                 share_prefixes: bool = True) -> list[LogprobResult]:
        """Log-probs for each request, in order. Pads on `padding_side`; shares prefixes within groups."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if not requests:
            return []
        with self._lock, self._torch.inference_mode():
            return self._logprobs(list(requests), padding_side, share_prefixes)

    def _logprobs(self, reqs: list[LogprobRequest], side: Padding, share: bool) -> list[LogprobResult]:
        torch = self._torch
        # Which requests share a prefix: only groups of two or more are worth a cache.
        split = [0] * len(reqs)
        prefix_of: list[int] = [-1] * len(reqs)
        prefixes: list[Sequence[int]] = []
        if share:
            members: dict[Any, list[int]] = {}
            for i, r in enumerate(reqs):
                if r.group is not None and r.shared_prefix > 0:
                    members.setdefault((r.group, tuple(r.context[: r.shared_prefix])), []).append(i)
            for (_, prefix), idx in members.items():
                if len(idx) < 2:
                    continue
                for i in idx:
                    split[i] = len(prefix)
                    prefix_of[i] = len(prefixes)
                prefixes.append(prefix)
                self.stats.shared_prefix_tokens_saved += len(prefix) * (len(idx) - 1)

        # Each position p (in full-sequence coordinates) whose next-token distribution we need, per request.
        wanted: list[list[int]] = []
        for r in reqs:
            c, t = len(r.context), len(r.target)
            pos = list(range(c - 1, c + t - 1))
            if r.candidates:
                pos.append(c + t - 1)
            wanted.append(pos)

        cache = None
        prefix_mask = None
        prefix_last_hidden = None
        if prefixes:
            ids, mask, pos_ids, offsets = self._pad([list(p) for p in prefixes], side, start=[0] * len(prefixes))
            self.stats.forward_tokens += int(mask.sum())
            self.stats.padded_tokens += mask.numel()
            out = self._base(input_ids=ids, attention_mask=mask, position_ids=pos_ids, use_cache=True)
            cache = out.past_key_values
            lengths = mask.sum(1)
            last = offsets + lengths - 1
            prefix_last_hidden = out.last_hidden_state[torch.arange(len(prefixes), device=ids.device), last]
            # Requests without a shared prefix get an all-masked cache row (index of any prefix, mask 0).
            select = torch.tensor([max(k, 0) for k in prefix_of], device=ids.device)
            cache.batch_select_indices(select)
            prefix_mask = mask[select].clone()
            for i, k in enumerate(prefix_of):
                if k < 0:
                    prefix_mask[i] = 0

        seqs = [list(r.context[split[i]:]) + list(r.target) for i, r in enumerate(reqs)]
        ids, mask, pos_ids, offsets = self._pad(seqs, side, start=split)
        self.stats.forward_tokens += int(mask.sum())
        self.stats.padded_tokens += mask.numel()
        full_mask = mask if prefix_mask is None else torch.cat([prefix_mask, mask], dim=1)
        hidden = None
        if ids.shape[1] > 0:
            out = self._base(input_ids=ids, attention_mask=full_mask, position_ids=pos_ids,
                             past_key_values=cache, use_cache=cache is not None)
            hidden = out.last_hidden_state
        del cache

        # The hidden state at each wanted position and the token ids whose log-probs it yields.
        rows: list[tuple[Any, Sequence[int]]] = []
        for i, (r, pos) in enumerate(zip(reqs, wanted)):
            for j, p in enumerate(pos):
                if p < split[i]:  # the last prefix token: its hidden state came from the prefix pass
                    assert p == split[i] - 1 and prefix_last_hidden is not None
                    h = prefix_last_hidden[prefix_of[i]]
                else:
                    assert hidden is not None
                    h = hidden[i, int(offsets[i]) + p - split[i]]
                rows.append((h, [r.target[j]] if j < len(r.target) else r.candidates))
        values = iter(self._read_logprobs(rows))
        results = []
        for r in reqs:
            target = [next(values)[0] for _ in r.target]
            results.append(LogprobResult(target=target, candidates=next(values) if r.candidates else []))
        return results

    def _read_logprobs(self, rows: list[tuple[Any, Sequence[int]]]) -> list[list[float]]:
        """Per (hidden state, token ids): the ids' log-probs under the LM head, in chunks of rows."""
        torch = self._torch
        out: list[list[float]] = []
        for start in range(0, len(rows), _LOGIT_CHUNK):
            chunk = rows[start:start + _LOGIT_CHUNK]
            logits = self._head(torch.stack([h for h, _ in chunk])).float()
            if self._softcap:
                logits = torch.tanh(logits / self._softcap) * self._softcap
            logp = torch.log_softmax(logits, dim=-1)
            row_idx = torch.tensor([k for k, (_, ids) in enumerate(chunk) for _ in ids], dtype=torch.long)
            col_idx = torch.tensor([t for _, ids in chunk for t in ids], dtype=torch.long)
            flat = logp[row_idx.to(logp.device), col_idx.to(logp.device)].tolist()
            k = 0
            for _, ids in chunk:
                out.append(flat[k:k + len(ids)])
                k += len(ids)
        return out

    def _pad(self, seqs: list[list[int]], side: Padding, start: list[int]) -> tuple[Any, Any, Any, Any]:
        """Pad `seqs`; position ids continue from `start` (the shared prefix length) for each row."""
        torch = self._torch
        n = len(seqs)
        width = max((len(s) for s in seqs), default=0)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        offsets = torch.zeros(n, dtype=torch.long)
        for i, s in enumerate(seqs):
            off = width - len(s) if side == "left" else 0
            offsets[i] = off
            if s:
                ids[i, off:off + len(s)] = torch.tensor(s, dtype=torch.long)
                mask[i, off:off + len(s)] = 1
                pos[i, off:off + len(s)] = torch.arange(start[i], start[i] + len(s))
        dev = self.device
        return ids.to(dev), mask.to(dev), pos.to(dev), offsets.to(dev)

    # ---------------------------------------------------------------- generation

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        """New token ids per request (up to EOS, which is not included). Requests with the same sampling
        settings run as one left-padded batch; greedy is deterministic, sampling is seeded per batch."""
        if not requests:
            return []
        out: list[list[int] | None] = [None] * len(requests)
        by_params: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if not r.context:
                raise ValueError("a generation request needs at least one context token")
            by_params.setdefault((r.max_new_tokens, r.temperature, r.top_p, r.seed), []).append(i)
        with self._lock, self._torch.inference_mode():
            for (max_new, temperature, top_p, seed), idx in by_params.items():
                for i, toks in zip(idx, self._generate([list(requests[i].context) for i in idx],
                                                        max_new, temperature, top_p, seed)):
                    out[i] = toks
        return [o or [] for o in out]

    def _generate(self, contexts: list[list[int]], max_new: int, temperature: float, top_p: float,
                  seed: int | None) -> list[list[int]]:
        torch = self._torch
        ids, mask, _, _ = self._pad(contexts, "left", start=[0] * len(contexts))
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.pad_id}
        if temperature > 0:
            if seed is not None:
                torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        gen = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = gen[:, ids.shape[1]:].tolist()
        stops = self._stop_ids()
        result = []
        for row in new:
            cut = next((j for j, t in enumerate(row) if t in stops), len(row))
            result.append(row[:cut])
        return result

    def sample(self, requests: Sequence[GenerateRequest]) -> list[list[list[int]]]:
        """`r.n` samples per request (new token ids up to EOS, which is not included). The context
        runs once: its KV cache is copied to the n rows, which then decode as one batch. Requests
        with the same settings share a left-padded batch; sampling is seeded per batch."""
        if not requests:
            return []
        out: list[list[list[int]] | None] = [None] * len(requests)
        by_params: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if not r.context:
                raise ValueError("a generation request needs at least one context token")
            if r.n < 1:
                raise ValueError(f"a generation request needs n >= 1 samples, got {r.n}")
            by_params.setdefault((r.max_new_tokens, r.temperature, r.top_p, r.seed, r.n), []).append(i)
        with self._lock, self._torch.inference_mode():
            for (max_new, temperature, top_p, seed, n), idx in by_params.items():
                contexts = [list(requests[i].context) for i in idx]
                if temperature <= 0 or n == 1:  # greedy samples are all the same: decode once
                    rows = self._generate(contexts, max_new, temperature, top_p, seed)
                    for i, toks in zip(idx, rows):
                        out[i] = [list(toks) for _ in range(n)]
                    continue
                rows = self._sample_shared(contexts, n, max_new, temperature, top_p, seed)
                for k, i in enumerate(idx):
                    out[i] = rows[k * n:(k + 1) * n]
        return [o or [] for o in out]

    def _sample_shared(self, contexts: list[list[int]], n: int, max_new: int, temperature: float, top_p: float,
                       seed: int | None) -> list[list[int]]:
        """n sampled rows per context (context-major), the contexts' KV cache computed once."""
        torch = self._torch
        ids, mask, pos, _ = self._pad(contexts, "left", start=[0] * len(contexts))
        cache = None
        if ids.shape[1] > 1:
            # All but the last token: generate() needs at least one uncached token to start from.
            self.stats.forward_tokens += int(mask[:, :-1].sum())
            self.stats.padded_tokens += mask[:, :-1].numel()
            cache = self._base(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                               use_cache=True).past_key_values
            cache.batch_repeat_interleave(n)
            self.stats.shared_prefix_tokens_saved += int(mask[:, :-1].sum()) * (n - 1)
        rep_ids, rep_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        if seed is not None:
            torch.manual_seed(seed)
        gen = self.model.generate(input_ids=rep_ids, attention_mask=rep_mask, past_key_values=cache,
                                  max_new_tokens=max_new, pad_token_id=self.pad_id, do_sample=True,
                                  temperature=temperature, top_p=top_p, top_k=0)
        stops = self._stop_ids()
        result = []
        for row in gen[:, ids.shape[1]:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stops), len(row))
            result.append(row[:cut])
        return result

    def _stop_ids(self) -> set[int]:
        stops: set[int] = set()
        eos = self.model.generation_config.eos_token_id
        if isinstance(eos, int):
            stops.add(eos)
        elif eos:
            stops.update(int(e) for e in eos)
        if self.tokenizer.eos_token_id is not None:
            stops.add(int(self.tokenizer.eos_token_id))
        return stops


# ---------------------------------------------------------------- shared instances

_shared: dict[tuple[str, ...], list[Any]] = {}
_shared_lock = threading.Lock()


def acquire(model: str, device: str = "auto", dtype: str = "auto", backend: str = "transformers",
            trust_remote_code: bool = False, **backend_options: Any) -> CausalLMBackend:
    """A loaded backend for `model`, shared by every scorer that asks for the same one (ref-counted)."""
    key = (backend, model, device, dtype, str(trust_remote_code), repr(sorted(backend_options.items())))
    with _shared_lock:
        entry = _shared.get(key)
        if entry is None:
            entry = [_load(model, device, dtype, backend, trust_remote_code, backend_options), 0]
            _shared[key] = entry
        entry[1] += 1
        return entry[0]


def release(lm: CausalLMBackend) -> None:
    """Drop one reference taken by `acquire`; the model is freed when none remain."""
    with _shared_lock:
        for key, entry in list(_shared.items()):
            if entry[0] is lm:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _shared[key]
                    close = getattr(lm, "close", None)
                    if close is not None:
                        close()
                return


def _load(model: str, device: str, dtype: str, backend: str, trust_remote_code: bool,
          options: dict[str, Any]) -> CausalLMBackend:
    from rewardsvc.backends.gguf import model_dir

    path = model_dir(model)
    if backend == "transformers":
        return TransformersCausalLM(path, device=device, dtype=dtype, name=model, trust_remote_code=trust_remote_code)
    if backend == "vllm":
        from rewardsvc.backends.vllm_backend import VLLMCausalLM

        return VLLMCausalLM(path, device=device, dtype=dtype, name=model, trust_remote_code=trust_remote_code,
                            **options)
    raise ValueError(f"unknown causal-LM backend {backend!r}; use 'transformers' or 'vllm'")
