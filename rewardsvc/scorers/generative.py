"""The `generative` scorer: a judge model that writes a critique, then a verdict (RM-R1, DeepSeek-GRM,
J1, Prometheus 2; ThinkPRM as a generative PRM).

Modes (`mode:`, or per request): pointwise (one response), reference (the item's `reference` is the
reference answer), pairwise (the item's `reference` is a baseline response; asked in both orders so
position bias cancels) and step (a generative PRM: one verdict per step into `step_scores`).
Prompts and verdict formats come from a preset (scorers/generative_presets.py), each part
replaceable per mode in the stanza. Scores and their ranges: scorers/generative_aggregate.py.

Inference-time scaling: `k` samples per item (per order) at `temperature`, aggregated by mean,
vote, or meta (a meta reward model, another hosted scorer named by `meta_rm`, scores each critique;
the best `k_meta` are kept, then voted). Reasoning budget: `max_new_tokens` per sample; a critique
the budget cut off counts as no verdict (`truncated: discard`, default) or is read as it is
(`truncated: parse`). A sample without a usable verdict never fails the item: details list each
sample's status and the tail of its text, and an item without any usable sample scores 0.

Backends: transformers (in process; the k samples share one pass over the prompt), vllm, or openai
(a judge served elsewhere, backends/openai_server.py). Master keys (empty, punctuation-only or
opener-only responses; master_keys.py) get -1 in every mode without asking the judge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

from rewardsvc.backends.causal_lm import GenerateRequest
from rewardsvc.backends.openai_server import OpenAIServerConfig, OpenAIServerSampler
from rewardsvc.backends.sampling import ChatPrompt, Sample, SamplingError, SamplingParams, TextSampler
from rewardsvc.dataclass_dict import from_dict
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import failure, make_batcher, run_batched
from rewardsvc.scorers.causal import CausalLMConfig, CausalLMScorer
from rewardsvc.scorers.generative_aggregate import (
    SAMPLE_AGGREGATIONS,
    Judged,
    pairwise_score,
    pointwise_score,
    select_by_meta,
    step_score,
)
from rewardsvc.scorers.generative_presets import MODE_FIELDS, MODES, PRESETS, ModeFormat
from rewardsvc.scorers.master_keys import master_key_reason
from rewardsvc.scorers.offload import lock_for, off_loop
from rewardsvc.scorers.prm import AGGREGATIONS
from rewardsvc.scorers.render import render_prompt, split_steps
from rewardsvc.scorers.verdicts import DEFAULTS, Verdict, check_format, merge, parse_pair, parse_score, parse_steps
from rewardsvc.types import ErrorCode, Item, Message, Result

log = logging.getLogger(__name__)

Mode = Literal["pointwise", "pairwise", "reference", "step"]


@dataclasses.dataclass
class GenerativeConfig(CausalLMConfig):
    model: str = option("bundled:smollm2-135m-instruct",
                        "transformers/vllm: local HF directory, .gguf, bundled:NAME or cache:NAME; "
                        "openai: the model name the server serves")
    backend: Literal["transformers", "vllm", "openai"] = option(  # type: ignore[assignment]
        "transformers", "transformers (in process), vllm (GPU), openai (a server elsewhere: see `openai:`)")
    prefix_sharing: bool = option(True, "transformers: an item's k samples run its prompt once")
    mode: Mode = option("pointwise", "pointwise | pairwise | reference | step")
    preset: str = option("default", f"prompt and verdict formats: {', '.join(PRESETS)}")
    formats: dict[str, ModeFormat] = option({}, "per mode, parts replacing the preset's: template, system, "
                                                "prefill, step_line, verdict")
    k: int = option(1, "samples per item (pairwise: per order)")
    max_k: int = option(32, "the largest k a request may ask for")
    temperature: float = option(0.0, "sampling temperature (0: greedy; k > 1 needs > 0)")
    top_p: float = option(1.0, "nucleus sampling")
    max_new_tokens: int = option(512, "reasoning budget: tokens per sample")
    truncated: Literal["discard", "parse"] = option(
        "discard", "a critique the budget cut off: discard (no verdict) or parse it as it is")
    sample_aggregation: Literal["mean", "vote", "meta"] = option(
        "mean", "mean, vote, or meta (keep the k_meta critiques meta_rm scores best, then vote)")
    meta_rm: str = option("", "meta: another hosted scorer that scores each critique (as the response to the "
                              "judge's question)")
    k_meta: int = option(0, "meta: critiques kept (per order); 0 = half of k, at least 1")
    meta_options: dict[str, Any] = option({}, "meta: per-request options for meta_rm")
    aggregation: str = option("min", "step mode: steps -> item, as the prm scorer: min, last, product, mean, pure")
    step_separator: str = option("\n", "step mode: splits `response` into steps when an item has no `steps`")
    reject_master_keys: bool = option(True, "empty / punctuation-only / opener-only responses get -1 unasked")
    return_critiques: bool = option(False, "details carry every sample's whole critique (else only the tail of "
                                           "samples without a usable verdict)")
    openai: OpenAIServerConfig = dataclasses.field(
        default_factory=OpenAIServerConfig, metadata={"help": "backend openai: the server and its limits"})


@dataclasses.dataclass
class GenerativeOptions:
    mode: Literal["", "pointwise", "pairwise", "reference", "step"] = option("", "override the config's mode")
    k: int | None = option(None, "samples per item (pairwise: per order)")
    temperature: float | None = option(None, "sampling temperature")
    max_new_tokens: int | None = option(None, "reasoning budget: tokens per sample")
    sample_aggregation: Literal["", "mean", "vote", "meta"] = option("", "mean, vote or meta")
    k_meta: int | None = option(None, "meta: critiques kept (per order)")
    aggregation: Literal["", "min", "last", "product", "mean", "pure"] = option("", "step mode: steps -> item")
    pure_temperature: float = option(0.1, "step mode, pure: T of softmax(-r/T)")
    seed: int | None = option(None, "sampling seed (the same request with the same seed repeats on one backend)")


@dataclasses.dataclass
class Plan:
    """One request's settings, resolved from the config and the options."""

    mode: str
    fmt: ModeFormat
    params: SamplingParams
    sample_aggregation: str
    k_meta: int
    aggregation: str
    pure_temperature: float


class GenerativeScorer(CausalLMScorer):
    kind = "generative"
    description = (
        "Generative reward model: a judge writes a critique, then a verdict (pointwise, pairwise in both orders, "
        "reference-guided, or per step); presets rm-r1, deepseek-grm, thinkprm, j1, prometheus; k samples "
        "aggregated by mean, vote or a meta-RM; in process or on an OpenAI-compatible server; score in [-1, 1]."
    )
    Config = GenerativeConfig
    Options = GenerativeOptions
    item_format = (
        '`prompt`, `response`. `reference`: pairwise: the other response; reference mode: the reference '
        'answer; pointwise: none. Step mode: `steps` or a `response` split on `step_separator`. `score` in '
        "[-1, 1]; `step_scores` in step mode; each sample's verdict and status in `details`."
    )
    stochastic = True  # sampled critiques; a server's greedy decoding need not repeat either

    def __init__(self, name: str, config: GenerativeConfig) -> None:
        super().__init__(name, config)
        self.formats: dict[str, ModeFormat] = {}
        self.sampler: TextSampler | None = None
        self.sample_batcher: Any = None
        self.meta: Scorer | None = None
        self.meta_options: Any = None
        self._render_tokenizer: Any = None

    def uses(self) -> list[str]:
        return [self.config.meta_rm] if self.config.meta_rm else []

    # ------------------------------------------------------------ lifetime

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: GenerativeConfig = self.config
        where = f"scorer {self.name!r}"
        self.formats = resolve_formats(cfg, where)
        plan = self.plan(GenerativeOptions())
        if isinstance(plan, str):
            raise ConfigError(f"{where}: {plan}")
        if cfg.meta_rm:
            peer = peers.get(cfg.meta_rm)
            if peer is None:
                raise ConfigError(f"{where}: meta_rm {cfg.meta_rm!r} is not a scorer on this server; hosted: "
                                  f"{sorted(peers)}")
            try:
                self.meta_options = from_dict(peer.Options, cfg.meta_options, f"{where}: meta_options")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            self.meta = peer
        if not cfg.step_separator:
            raise ConfigError(f"{where}: step_separator must not be empty")
        if cfg.backend == "openai":
            dropped = sorted(m for m, f in self.formats.items() if f.prefill and cfg.openai.endpoint == "chat")
            if dropped:
                log.warning("%s: the chat endpoint does not send the %s prefill(s) of preset %r; use endpoint "
                            "completions to send them", where, "/".join(dropped), cfg.preset)
            if cfg.openai.endpoint == "completions" and cfg.openai.tokenizer:
                self._render_tokenizer = await asyncio.to_thread(_load_tokenizer, cfg.openai.tokenizer)
            self.sampler = OpenAIServerSampler(cfg.openai, cfg.model, self.render, where)
            return
        await super().start(peers)
        assert self.lm is not None
        self._render_tokenizer = self.lm.tokenizer
        device = getattr(self.lm, "device", "cuda")
        self.sample_batcher = make_batcher(self.lm.sample, cfg.batching, device, f"{self.name}-sample")
        self.sampler = LocalSampler(self)

    async def close(self) -> None:
        if self.sampler is not None:
            await self.sampler.close()
            self.sampler = None
        await super().close()

    def batchers(self) -> Sequence[Any]:
        return tuple(super().batchers()) + ((self.sample_batcher,) if self.sample_batcher is not None else ())

    def dedupe_key(self, item: Item, options: Any) -> Hashable | None:
        temperature = options.temperature if options.temperature is not None else self.config.temperature
        return super().dedupe_key(item, options) if temperature == 0 and self.config.backend != "openai" else None

    # ------------------------------------------------------------ requests

    def plan(self, options: GenerativeOptions) -> Plan | str:
        """The request's settings, or why they can't be used."""
        cfg: GenerativeConfig = self.config
        mode = options.mode or cfg.mode
        fmt = self.formats.get(mode)
        if fmt is None:
            return (f"preset {cfg.preset!r} has no {mode} format: give one under `formats: {{{mode}: {{template: ..., "
                    f"verdict: {{pattern: ...}}}}}}` or use a mode it has: {sorted(self.formats)}")
        k = options.k if options.k is not None else cfg.k
        temperature = options.temperature if options.temperature is not None else cfg.temperature
        max_new = options.max_new_tokens if options.max_new_tokens is not None else cfg.max_new_tokens
        how = options.sample_aggregation or cfg.sample_aggregation
        k_meta = options.k_meta if options.k_meta is not None else cfg.k_meta
        aggregation = options.aggregation or cfg.aggregation
        if not 1 <= k <= cfg.max_k:
            return f"k={k}: use 1..{cfg.max_k} (max_k in the config)"
        if temperature < 0:
            return f"temperature must be >= 0, got {temperature}"
        if k > 1 and temperature == 0:
            return f"k={k} samples at temperature 0 would all be the same greedy critique: set temperature > 0"
        if max_new < 1:
            return f"max_new_tokens must be >= 1, got {max_new}"
        if how not in SAMPLE_AGGREGATIONS:
            return f"sample_aggregation {how!r}: use one of {list(SAMPLE_AGGREGATIONS)}"
        if how == "meta" and not cfg.meta_rm:
            return "sample_aggregation meta needs `meta_rm:` (a hosted scorer's name) in the scorer's config"
        if k_meta < 0:
            return f"k_meta must be >= 0, got {k_meta}"
        if aggregation not in AGGREGATIONS:
            return f"aggregation {aggregation!r}: use one of {list(AGGREGATIONS)}"
        if not options.pure_temperature > 0:
            return f"pure_temperature must be > 0, got {options.pure_temperature}"
        params = SamplingParams(k=k, max_new_tokens=max_new, temperature=temperature,
                                top_p=cfg.top_p if temperature > 0 else 1.0, seed=options.seed)
        return Plan(mode, fmt, params, how, k_meta or max(1, k // 2), aggregation, options.pure_temperature)

    def render(self, prompt: ChatPrompt) -> str:
        """A prompt as text for the model: its chat template (or the plain format), then the prefill."""
        messages = ([Message("system", prompt.system)] if prompt.system else []) + [Message("user", prompt.user)]
        return render_prompt(self._render_tokenizer, messages) + prompt.prefill

    def steps_of(self, item: Item) -> list[str]:
        return list(item.steps) if item.steps else split_steps(item.response_text, self.config.step_separator)

    def prompts_for(self, item: Item, plan: Plan) -> list[tuple[str, ChatPrompt]]:
        """(order, prompt) per judge call for `item`: one, or two for pairwise (the response first, then second)."""
        fmt = plan.fmt
        make = lambda user: ChatPrompt(user=user, system=fmt.system or "", prefill=fmt.prefill or "")  # noqa: E731
        template = fmt.template or ""
        prompt, response = item.prompt_text, item.response_text
        if plan.mode == "pointwise":
            return [("", make(template.format(prompt=prompt, response=response)))]
        if plan.mode == "reference":
            return [("", make(template.format(prompt=prompt, response=response, reference=item.reference or "")))]
        if plan.mode == "pairwise":
            other = item.reference or ""
            return [("AB", make(template.format(prompt=prompt, a=response, b=other))),
                    ("BA", make(template.format(prompt=prompt, a=other, b=response)))]
        lines = [(fmt.step_line or "{step}").format(i=i + 1, step=s) for i, s in enumerate(self.steps_of(item))]
        return [("", make(template.format(prompt=prompt, steps="\n".join(lines))))]

    def item_problem(self, item: Item, mode: str) -> str | None:
        if mode in ("pairwise", "reference") and not (item.reference or "").strip():
            what = "a baseline response" if mode == "pairwise" else "the reference answer"
            return f"generative mode {mode!r} needs the item's `reference` ({what})"
        if mode == "step" and not self.steps_of(item):
            return "step mode needs `steps`, or a response with text between step separators"
        return None

    async def score(self, items: Sequence[Item], options: GenerativeOptions) -> list[Result]:
        assert self.sampler is not None, "start() first"
        plan = self.plan(options)
        if isinstance(plan, str):  # every item would fail the same way; the contract wants it per item
            return [Result.failed(it.id, ErrorCode.INVALID_ITEM, plan) for it in items]
        cfg: GenerativeConfig = self.config
        results: list[Result | None] = [None] * len(items)
        calls: list[tuple[int, str, ChatPrompt]] = []

        def build() -> None:  # master-key checks and prompts: per-item text work, off the event loop
            for i, item in enumerate(items):
                text = "\n".join(item.steps) if plan.mode == "step" and item.steps else item.response_text
                reason = master_key_reason(text) if cfg.reject_master_keys else None
                if reason is not None:
                    results[i] = self.master_key_result(item, plan, reason)
                    continue
                problem = self.item_problem(item, plan.mode)
                if problem is not None:
                    results[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, problem)
                    continue
                calls.extend((i, order, p) for order, p in self.prompts_for(item, plan))

        await off_loop(build)
        sampled = await self.sampler.sample([p for _, _, p in calls], plan.params)
        judged: dict[int, list[Judged]] = {}

        def judge_all() -> None:  # parsing critiques (k per item) off the loop too
            for (i, order, _), got in zip(calls, sampled):
                if results[i] is not None:
                    continue  # the item's other order already failed
                if isinstance(got, BaseException):
                    results[i] = self.sampling_failure(items[i].id, got)
                    judged.pop(i, None)
                    continue
                n_steps = len(self.steps_of(items[i])) if plan.mode == "step" else 0
                judged.setdefault(i, []).extend(self.judge(s, plan, order, n_steps) for s in got)

        await off_loop(judge_all)
        if plan.sample_aggregation == "meta" and judged:
            await self.meta_filter(items, calls, judged, plan)
        for i, samples in judged.items():
            if results[i] is None:
                results[i] = self.item_result(items[i], samples, plan)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------ pieces

    def judge(self, sample: Sample, plan: Plan, order: str, n_steps: int) -> Judged:
        """One sample's verdict, with the reasoning budget's rule applied."""
        verdict_fmt = plan.fmt.verdict or DEFAULTS
        budget = plan.params.max_new_tokens
        if not sample.finished and self.config.truncated == "discard":
            return Judged(Verdict("truncated", note=f"the critique reached max_new_tokens={budget}"), sample.text,
                          sample.tokens, order)
        if plan.mode == "pairwise":
            verdict = parse_pair(sample.text, verdict_fmt)
        elif plan.mode == "step":
            verdict = parse_steps(sample.text, verdict_fmt, n_steps)
        else:
            verdict = parse_score(sample.text, verdict_fmt)
        if not verdict.ok and not sample.finished:
            verdict = Verdict("truncated", note=f"cut off at max_new_tokens={budget} before a usable verdict "
                                                f"({verdict.status}: {verdict.note})")
        return Judged(verdict, sample.text, sample.tokens, order)

    def master_key_result(self, item: Item, plan: Plan, reason: str) -> Result:
        details: dict[str, Any] = {"mode": plan.mode, "verdict": "master_key", "why": reason}
        if plan.mode != "step":
            return Result(id=item.id, score=-1.0, details=details)
        n = max(1, len(self.steps_of(item)))
        return Result(id=item.id, score=-1.0, step_scores=[0.0] * n, details=details)

    def sampling_failure(self, item_id: str, exc: BaseException) -> Result:
        if isinstance(exc, SamplingError):
            return Result.failed(item_id, exc.code, f"scorer {self.name!r}: {exc}")
        return failure(item_id, exc, f"scorer {self.name!r}")

    def item_result(self, item: Item, samples: list[Judged], plan: Plan) -> Result:
        details: dict[str, Any] = {"mode": plan.mode, "preset": self.config.preset, "k": plan.params.k,
                                   "sample_aggregation": plan.sample_aggregation}
        step_scores: list[float] = []
        how = "vote" if plan.sample_aggregation == "meta" else plan.sample_aggregation
        if plan.mode == "pairwise":
            score, more = pairwise_score(samples, how)
        elif plan.mode == "step":
            score, step_scores, more = step_score(samples, how, plan.aggregation, plan.pure_temperature)
        else:
            scale = (plan.fmt.verdict.scale if plan.fmt.verdict and plan.fmt.verdict.scale else DEFAULTS.scale)
            score, more = pointwise_score(samples, how, scale or [1.0, 10.0])
        details.update(more)
        details["samples"] = [s.details(self.config.return_critiques) for s in samples]
        return Result(id=item.id, score=score, step_scores=step_scores, details=details)

    async def meta_filter(self, items: Sequence[Item], calls: Sequence[tuple[int, str, ChatPrompt]],
                          judged: dict[int, list[Judged]], plan: Plan) -> None:
        """Score every usable critique with the meta reward model, keep the best k_meta per order."""
        assert self.meta is not None
        question = {(i, order): p for i, order, p in calls}
        asked: list[tuple[Judged, Item]] = []
        for i, samples in judged.items():
            for j, s in enumerate(samples):
                if s.verdict.ok:
                    p = question[(i, s.order)]
                    prompt = ([Message("system", p.system)] if p.system else []) + [Message("user", p.user)]
                    meta_item = Item(id=f"{items[i].id}/sample{j}", prompt=prompt, response=s.text)
                    if self.meta.check_item(meta_item) is None:
                        asked.append((s, meta_item))
        if asked:
            scored = await self.meta.score([it for _, it in asked], self.meta_options)
            for (s, _), res in zip(asked, scored):
                s.meta = res.score if res.ok else None
                s.meta_error = res.error.message if res.error is not None else ""
        for samples in judged.values():
            select_by_meta(samples, plan.k_meta)


class LocalSampler:
    """In-process sampling: prompts tokenised here, sampled through the scorer's batcher (so concurrent
    requests share batches), k samples per prompt sharing its prefill unless prefix_sharing is off."""

    def __init__(self, scorer: GenerativeScorer) -> None:
        self.scorer = scorer

    async def sample(self, prompts: Sequence[ChatPrompt], params: SamplingParams) -> list[list[Sample] | BaseException]:
        s = self.scorer
        share = s.config.prefix_sharing
        out: list[list[Sample] | BaseException | None] = [None] * len(prompts)
        requests: list[GenerateRequest] = []
        owners: list[int] = []

        def build() -> None:  # rendering and tokenising, off the event loop
            with lock_for(s.tokenizer):
                for i, prompt in enumerate(prompts):
                    ids = s.encode(s.render(prompt)) or [_start_token(s.tokenizer)]
                    if len(ids) + params.max_new_tokens > s.config.max_length:
                        out[i] = SamplingError(ErrorCode.INVALID_ITEM, (
                            f"the judge prompt is {len(ids)} tokens and the reasoning budget {params.max_new_tokens};"
                            f" this scorer's max_length is {s.config.max_length}: shorten the item, lower "
                            "max_new_tokens or raise max_length"))
                        continue
                    copies = [(params.k, params.seed)] if share else [
                        (1, None if params.seed is None else params.seed + j) for j in range(params.k)]
                    for n, seed in copies:
                        requests.append(GenerateRequest(context=ids, max_new_tokens=params.max_new_tokens,
                                                        temperature=params.temperature, top_p=params.top_p,
                                                        seed=seed, n=n))
                        owners.append(i)

        await off_loop(build)
        costs = [len(r.context) + r.n * r.max_new_tokens for r in requests]
        got = await run_batched(s.sample_batcher, requests, costs)

        def decode() -> None:
            with lock_for(s.tokenizer):
                for i, res in zip(owners, got):
                    if isinstance(out[i], BaseException):
                        continue
                    if isinstance(res, BaseException):
                        out[i] = res
                        continue
                    prior = out[i]
                    samples: list[Sample] = prior if isinstance(prior, list) else []
                    for toks in res:
                        text = prompts[i].prefill + s.tokenizer.decode(toks, skip_special_tokens=True)
                        samples.append(Sample(text=text, tokens=len(toks),
                                              finished=len(toks) < params.max_new_tokens))
                    out[i] = samples

        await off_loop(decode)
        return [o if o is not None else [] for o in out]

    async def close(self) -> None:
        pass


def resolve_formats(cfg: GenerativeConfig, where: str) -> dict[str, ModeFormat]:
    """The mode formats of the preset with the stanza's replacements applied, each checked."""
    if cfg.preset not in PRESETS:
        raise ConfigError(f"{where}: preset {cfg.preset!r}: use one of {sorted(PRESETS)}")
    unknown = sorted(set(cfg.formats) - set(MODES))
    if unknown:
        raise ConfigError(f"{where}: formats has unknown mode(s) {unknown}; modes: {list(MODES)}")
    out: dict[str, ModeFormat] = {}
    for mode in MODES:
        base, mine = PRESETS[cfg.preset].get(mode), cfg.formats.get(mode)
        if base is None and mine is None:
            continue
        fmt = merge(merge(mine, base), ModeFormat(template="", system="", prefill="", step_line="Step {i}: {step}"))
        fmt = dataclasses.replace(fmt, verdict=merge(fmt.verdict, DEFAULTS))
        problem = check_mode_format(mode, fmt)
        if problem:
            raise ConfigError(f"{where}: formats.{mode}: {problem}")
        out[mode] = fmt
    return out


def check_mode_format(mode: str, fmt: ModeFormat) -> str | None:
    required, optional = MODE_FIELDS[mode]
    template = fmt.template or ""
    try:
        template.format(**{f: "" for f in required + optional})
    except (KeyError, IndexError, ValueError) as exc:
        return f"template may use only {{{'}, {'.join(required + optional)}}} (double literal braces): {exc!r}"
    missing = [f for f in required if "{" + f + "}" not in template]
    if missing:
        return f"template must contain {', '.join('{' + f + '}' for f in missing)}"
    if mode == "step":
        try:
            (fmt.step_line or "").format(i=1, step="")
        except (KeyError, IndexError, ValueError) as exc:
            return f"step_line may use only {{i}} and {{step}}: {exc!r}"
    return check_format(fmt.verdict or DEFAULTS)


def _start_token(tokenizer: Any) -> int:
    return int(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)


def _load_tokenizer(ref: str) -> Any:
    from transformers import AutoTokenizer

    from rewardsvc.backends.gguf import model_dir

    return AutoTokenizer.from_pretrained(str(model_dir(ref)))
