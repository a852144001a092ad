"""The `judge` scorer: a generative LM as judge, pointwise, pairwise or reference-guided.

Every mode's `score` is centred in [-1, 1], 0 meaning "can't tell", so a judge that is fooled only
a little still can't hand out positive reward for nothing:
  pointwise  the judge writes a 1-10 rating (greedy; parsed from "7", "7/10", "[[7]]", "Rating: 7",
             ...); score = (rating - 5.5) / 4.5; no rating found: 0.
  pairwise   the response against the item's `reference` (a baseline response), asked in both orders
             to cancel position bias; p = mean of P(response's letter) read from the verdict-token
             logits (softmax over the A/B tokens); score = 2p - 1.
  reference  reference-guided correctness, score = 2p - 1, with p by `reference_method`:
             extract: the judge is asked which final answer the response gives and p is the mean
               probability of the reference answer's tokens as its reply (teacher-forced after
               "The final answer is "); the judge never sees the reference in its prompt.
             yes_no: P(yes) / (P(yes) + P(no)) for "is the response's final answer the reference?".
             A small judge (SmolLM2-135M) can't compare answers in a yes/no question (chance level on
             GSM8K) but reads the final answer out reliably, so `extract` is the default.
Master keys (empty, only punctuation, only a reasoning opener such as "Thought process:"; see
master_keys.py) get -1 without asking the model. The raw probability or rating is in `details`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rewardsvc.backends.causal_lm import GenerateRequest, LogprobRequest
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import failure
from rewardsvc.scorers.causal import CausalLMConfig, CausalLMScorer, TooLongError, group_key
from rewardsvc.scorers.master_keys import master_key_reason
from rewardsvc.scorers.offload import lock_for, off_loop
from rewardsvc.scorers.render import MARK
from rewardsvc.types import ErrorCode, Item, Result

MODES = ("pointwise", "pairwise", "reference")

POINTWISE_TEMPLATE = (
    "[Question]\n{prompt}\n\n[Response]\n{response}\n\n"
    "Rate the correctness and quality of the response on a scale of 1 to 10. Reply with the rating only."
)
PAIRWISE_TEMPLATE = (
    "[Question]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Which response answers the question correctly? Reply with A or B."
)
EXTRACT_TEMPLATE = (
    "[Question]\n{prompt}\n\n[Response]\n{response}\n\n"
    "What final answer does the response give? Reply with the answer only."
)
REFERENCE_TEMPLATE = (
    "[Question]\n{prompt}\n\n[Reference answer]\n{reference}\n\n[Response]\n{response}\n\n"
    "Is the response's final answer the same as the reference answer? Answer Yes or No."
)

_RATING_PATTERNS = [
    re.compile(r"\[\[\s*(10|[1-9])(?:\.\d+)?\s*\]\]"),
    re.compile(r"(?<![\d.])(10|[1-9])(?:\.\d+)?\s*(?:/|out of)\s*10\b", re.IGNORECASE),
    re.compile(r"(?:rating|score)\s*(?:is|of|[:=])?\s*[*\s]*(10|[1-9])(?![\d])", re.IGNORECASE),
    re.compile(r"(?<![\d.])(10|[1-9])(?![\d])"),
]


def parse_rating(text: str) -> int | None:
    """A 1-10 rating from judge output, or None; explicit forms win over a bare number."""
    for pattern in _RATING_PATTERNS:
        m = pattern.search(text)
        if m:
            return int(m.group(1))
    return None


@dataclasses.dataclass
class JudgeConfig(CausalLMConfig):
    mode: Literal["pointwise", "pairwise", "reference"] = option("reference", "pointwise | pairwise | reference")
    pointwise_template: str = option(POINTWISE_TEMPLATE, "pointwise question; {prompt} {response}")
    pairwise_template: str = option(PAIRWISE_TEMPLATE, "pairwise question; {prompt} {a} {b}")
    reference_method: Literal["extract", "yes_no"] = option("extract", "reference mode: extract | yes_no")
    extract_template: str = option(EXTRACT_TEMPLATE, "reference mode, extract: the question; {prompt} {response}")
    extract_prefill: str = option(
        "The final answer is ", "reference mode, extract: the reply's start, before the reference")
    reference_template: str = option(
        REFERENCE_TEMPLATE, "reference mode, yes_no: the question; {prompt} {reference} {response}")
    pointwise_prefill: str = option("Rating: ", "the judge's reply starts with this; it writes the rest")
    max_new_tokens: int = option(8, "pointwise: tokens the judge may write")
    yes_words: list[str] = option(["Yes", "yes"], "reference mode: verdict words for yes (first tokens)")
    no_words: list[str] = option(["No", "no"], "reference mode: verdict words for no")
    a_words: list[str] = option(["A"], "pairwise: verdict words for response A")
    b_words: list[str] = option(["B"], "pairwise: verdict words for response B")
    reject_master_keys: bool = option(True, "empty / punctuation-only / opener-only responses get -1")


@dataclasses.dataclass
class JudgeOptions:
    mode: Literal["", "pointwise", "pairwise", "reference"] = option("", "override the config's mode")
    reference_method: Literal["", "extract", "yes_no"] = option("", "override the config's reference_method")


class JudgeScorer(CausalLMScorer):
    kind = "judge"
    description = (
        "LLM judge: pointwise 1-10 rating, pairwise vs. the reference response (both orders, verdict-token "
        "probabilities) or reference-guided yes/no; score centred in [-1, 1]; master-key responses get -1."
    )
    Config = JudgeConfig
    Options = JudgeOptions
    item_format = (
        '`prompt`, `response`. `reference`: pairwise: the other response to compare with; reference mode: the '
        'reference answer (e.g. `"42"`); pointwise: none. `score` in [-1, 1], 0 = can\'t tell; the rating or '
        'probability is in `details`.'
    )

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: JudgeConfig = self.config
        checks = {
            "pointwise_template": (cfg.pointwise_template, ("prompt", "response")),
            "pairwise_template": (cfg.pairwise_template, ("prompt", "a", "b")),
            "extract_template": (cfg.extract_template, ("prompt", "response")),
            "reference_template": (cfg.reference_template, ("prompt", "reference", "response")),
        }
        for key, (template, fields) in checks.items():
            try:
                template.format(**{f: "" for f in fields})
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"scorer {self.name!r}: {key} may use only {{{'}, {'.join(fields)}}}: {exc!r}") from None
            for needed in fields[1:]:
                if "{" + needed + "}" not in template and not (key == "extract_template" and needed == "reference"):
                    raise ConfigError(f"scorer {self.name!r}: {key} must contain {{{needed}}}")
        if cfg.pairwise_template.index("{a}") > cfg.pairwise_template.index("{b}"):
            raise ConfigError(f"scorer {self.name!r}: pairwise_template must have {{a}} before {{b}}")
        await super().start(peers)

    def _first_ids(self, words: Sequence[str]) -> list[int]:
        ids = self.first_token_ids(words)
        if not ids:
            raise ValueError(f"verdict words {list(words)} tokenise to nothing")
        return ids

    def _verdict_pairs(self, pos_words: Sequence[str], neg_words: Sequence[str]) -> tuple[list[int], list[int]]:
        pos, neg = self._first_ids(pos_words), self._first_ids(neg_words)
        if set(pos) & set(neg):
            raise ValueError(f"verdict words {list(pos_words)} and {list(neg_words)} share a first token")
        return pos, neg

    async def score(self, items: Sequence[Item], options: JudgeOptions) -> list[Result]:
        cfg: JudgeConfig = self.config
        mode = options.mode or cfg.mode
        results: list[Result | None] = [None] * len(items)
        todo: list[int] = []
        # Reading every response is per-item text work: off the event loop.
        reasons = (await off_loop(lambda: [master_key_reason(it.response_text) for it in items])
                   if cfg.reject_master_keys else [None] * len(items))
        for i, (item, reason) in enumerate(zip(items, reasons)):
            if reason is not None:
                results[i] = Result(id=item.id, score=-1.0,
                                    details={"mode": mode, "verdict": "master_key", "why": reason})
            elif mode in ("pairwise", "reference") and not (item.reference or "").strip():
                what = "a baseline response" if mode == "pairwise" else "the reference answer"
                results[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM,
                                           f"judge mode {mode!r} needs the item's `reference` ({what})")
            else:
                todo.append(i)
        if mode == "pointwise":
            scored = await self._pointwise([items[i] for i in todo])
        elif mode == "pairwise":
            scored = await self._pairwise([items[i] for i in todo])
        else:
            scored = await self._reference([items[i] for i in todo], options.reference_method or cfg.reference_method)
        for i, res in zip(todo, scored):
            res.details.setdefault("mode", mode)
            results[i] = res
        return [r for r in results if r is not None]

    # ------------------------------------------------------------ modes

    async def _pointwise(self, items: Sequence[Item]) -> list[Result]:
        cfg: JudgeConfig = self.config
        head, tail = cfg.pointwise_template.split("{response}", 1)
        requests, built = [], []
        out: list[Result | None] = [None] * len(items)

        def build() -> None:  # rendering and tokenising: per-item text work, off the event loop
            with lock_for(self.tokenizer):
                for i, item in enumerate(items):
                    prompt = item.prompt_text
                    user = head.format(prompt=prompt) + MARK + item.response_text + tail.format(prompt=prompt)
                    context = [t for p in self.chat_parts(user, cfg.pointwise_prefill) for t in p]
                    try:
                        self.check_length(len(context) + cfg.max_new_tokens)
                    except TooLongError as exc:
                        out[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
                        continue
                    requests.append(GenerateRequest(context=context, max_new_tokens=cfg.max_new_tokens))
                    built.append(i)

        await off_loop(build)
        generated = await self.run_generate(requests)
        for i, gen in zip(built, generated):
            item = items[i]
            if isinstance(gen, BaseException):
                out[i] = failure(item.id, gen, f"scorer {self.name!r}")
                continue
            text = self.tokenizer.decode(gen, skip_special_tokens=True)
            rating = parse_rating(cfg.pointwise_prefill + text)
            if rating is None:
                out[i] = Result(id=item.id, score=0.0, details={"verdict": "unparsed", "judge_output": text})
            else:
                out[i] = Result(id=item.id, score=(rating - 5.5) / 4.5,
                                details={"rating": rating, "judge_output": text})
        return [r for r in out if r is not None]

    async def _pairwise(self, items: Sequence[Item]) -> list[Result]:
        cfg: JudgeConfig = self.config
        a_ids, b_ids = self._verdict_pairs(cfg.a_words, cfg.b_words)
        head, rest = cfg.pairwise_template.split("{a}", 1)
        middle, tail = rest.split("{b}", 1)

        def parts(prompt: str, first: str, second: str) -> list[list[int]]:
            user = (head.format(prompt=prompt) + MARK + first + middle.format(prompt=prompt) + MARK + second
                    + tail.format(prompt=prompt))
            return self.chat_parts(user)

        requests: list[LogprobRequest] = []
        built: list[int] = []
        out: list[Result | None] = [None] * len(items)

        def build() -> None:  # rendering and tokenising: per-item text work, off the event loop
            with lock_for(self.tokenizer):
                for i, item in enumerate(items):
                    group = group_key(item.group_id)
                    pair = []
                    response, reference = item.response_text, item.reference or ""
                    for first, second in ((response, reference), (reference, response)):
                        ps = parts(item.prompt_text, first, second)
                        context = [t for p in ps for t in p]
                        pair.append(LogprobRequest(context=context, candidates=a_ids + b_ids, group=group,
                                                   shared_prefix=len(ps[0])))
                    try:
                        self.check_length(max(r.length for r in pair))
                    except TooLongError as exc:
                        out[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
                        continue
                    requests.extend(pair)
                    built.append(i)

        await off_loop(build)
        logps = await self.run_logprobs(requests)
        for k, i in enumerate(built):
            item = items[i]
            first, second = logps[2 * k], logps[2 * k + 1]
            if isinstance(first, BaseException):
                out[i] = failure(item.id, first, f"scorer {self.name!r}")
                continue
            if isinstance(second, BaseException):
                out[i] = failure(item.id, second, f"scorer {self.name!r}")
                continue
            p_as_a = _share(first.candidates, len(a_ids))          # response shown as A
            p_as_b = 1.0 - _share(second.candidates, len(a_ids))   # response shown as B
            p = (p_as_a + p_as_b) / 2
            out[i] = Result(id=item.id, score=2 * p - 1, details={
                "probability": p, "p_as_a": p_as_a, "p_as_b": p_as_b,
                "consistent": (p_as_a > 0.5) == (p_as_b > 0.5),
            })
        return [r for r in out if r is not None]

    async def _reference(self, items: Sequence[Item], method: str) -> list[Result]:
        cfg: JudgeConfig = self.config
        extract = method == "extract"
        if extract:
            head, tail = cfg.extract_template.split("{response}", 1)
        else:
            yes_ids, no_ids = self._verdict_pairs(cfg.yes_words, cfg.no_words)
            head, tail = cfg.reference_template.split("{response}", 1)
        requests: list[LogprobRequest] = []
        built: list[int] = []
        out: list[Result | None] = [None] * len(items)

        def build() -> None:  # rendering and tokenising: per-item text work, off the event loop
            with lock_for(self.tokenizer):
                for i, item in enumerate(items):
                    reference = (item.reference or "").strip()
                    fill: dict[str, Any] = {"prompt": item.prompt_text, "reference": reference}
                    user = head.format(**fill) + MARK + item.response_text + tail.format(**fill)
                    ps = self.chat_parts(user, cfg.extract_prefill if extract else "")
                    context = [t for p in ps for t in p]
                    target = self.encode(reference) if extract else []
                    try:
                        self.check_length(len(context) + len(target))
                    except TooLongError as exc:
                        out[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
                        continue
                    requests.append(LogprobRequest(context=context, target=target,
                                                   candidates=[] if extract else yes_ids + no_ids,
                                                   group=group_key(item.group_id), shared_prefix=len(ps[0])))
                    built.append(i)

        await off_loop(build)
        logps = await self.run_logprobs(requests)
        for i, lp in zip(built, logps):
            item = items[i]
            if isinstance(lp, BaseException):
                out[i] = failure(item.id, lp, f"scorer {self.name!r}")
                continue
            if extract:
                probs = [math.exp(x) for x in lp.target]
                p = sum(probs) / len(probs)
            else:
                p = _share(lp.candidates, len(yes_ids))
            out[i] = Result(id=item.id, score=2 * p - 1, details={
                "probability": p, "method": method, "verdict": "correct" if p > 0.5 else "incorrect"})
        return [r for r in out if r is not None]


def _share(logps: Sequence[float], n_first: int) -> float:
    """Probability mass of the first `n_first` candidates relative to all candidates."""
    probs = [math.exp(x) for x in logps]
    total = sum(probs)
    return sum(probs[:n_first]) / total if total > 0 else 0.5
