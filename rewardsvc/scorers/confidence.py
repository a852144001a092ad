"""The `confidence` scorer: training-free rewards read from one causal LM's own probabilities.

Variants (config `variant`, per-request option `variant`), each a probability in [0, 1]:
  crew_mean, crew_min  CRew: mean / min probability of the response's final-answer tokens given the
                       prompt and the reasoning before them (no answer found: 0).
  p_true               P(True): the model is shown the question and the response and asked whether it
                       is correct; P(yes) / (P(yes) + P(no)) over the first tokens of the yes/no words.
  reference_prob       RLPR: the response's final answer is replaced by the reference answer (or the
                       reference is appended in `reference_suffix` when no answer is found); the
                       reward is the mean probability of the reference's tokens given the prompt
                       and the reasoning.
The final-answer span is the last \\boxed{...}, else what follows the last ####, else "the answer
is X", else the last number: the math scorer's extractors (verifiers/math/extract.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from rewardsvc.backends.causal_lm import LogprobRequest
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import Scorer, option
from rewardsvc.scorers.batched import failure
from rewardsvc.scorers.causal import CausalLMConfig, CausalLMScorer, TooLongError, group_key
from rewardsvc.scorers.offload import lock_for, off_loop
from rewardsvc.scorers.render import MARK
from rewardsvc.types import ErrorCode, Item, Result
from rewardsvc.verifiers.math.extract import answer_span  # the math scorer's extractors, one copy

VARIANTS = ("crew_mean", "crew_min", "p_true", "reference_prob")


@dataclasses.dataclass
class ConfidenceConfig(CausalLMConfig):
    variant: Literal["crew_mean", "crew_min", "p_true", "reference_prob"] = option(
        "crew_mean", "crew_mean | crew_min | p_true | reference_prob")
    p_true_template: str = option(
        "Question: {prompt}\n\nProposed answer: {response}\n\nIs the proposed answer correct? Answer Yes or No.",
        "the P(True) question; {prompt} and {response} are filled in")
    yes_words: list[str] = option(["Yes", "yes", "True", "true"], "words meaning yes for P(True)")
    no_words: list[str] = option(["No", "no", "False", "false"], "words meaning no for P(True)")
    reference_suffix: str = option("\nThe answer is {reference}.",
                                   "reference_prob: appended to the response when it has no answer span")


@dataclasses.dataclass
class ConfidenceOptions:
    variant: Literal["", "crew_mean", "crew_min", "p_true", "reference_prob"] = option(
        "", "override the config's variant")


def token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """Indices of the tokens overlapping characters [start, end)."""
    return [j for j, (a, b) in enumerate(offsets) if a < end and b > start]


class ConfidenceScorer(CausalLMScorer):
    kind = "confidence"
    description = (
        "Training-free confidence rewards from one causal LM, each a probability in [0, 1]: CRew "
        "(mean/min probability of the final-answer tokens), P(True), RLPR reference-answer probability."
    )
    Config = ConfidenceConfig
    Options = ConfidenceOptions
    item_format = (
        '`prompt`, `response` (with a final answer for crew_*: `\\boxed{}`, `####`, "the answer is"). '
        '`reference`: the reference answer, needed by `reference_prob` only. `score`: a probability in [0, '
        '1].'
    )

    async def start(self, peers: Mapping[str, Scorer]) -> None:
        cfg: ConfidenceConfig = self.config
        for key, template, fields in (("p_true_template", cfg.p_true_template, ("prompt", "response")),
                                      ("reference_suffix", cfg.reference_suffix, ("reference",))):
            try:
                template.format(**{f: "" for f in fields})
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"scorer {self.name!r}: {key} may use only {{{'}, {'.join(fields)}}}: {exc!r}") from None
            if "{" + fields[-1] + "}" not in template:
                raise ConfigError(f"scorer {self.name!r}: {key} must contain {{{fields[-1]}}}")
        await super().start(peers)

    def check_item(self, item: Item) -> str | None:
        if not item.response_text.strip():
            return "the response is empty"
        return None

    async def score(self, items: Sequence[Item], options: ConfidenceOptions) -> list[Result]:
        cfg: ConfidenceConfig = self.config
        variant = options.variant or cfg.variant
        results: list[Result | None] = [None] * len(items)
        requests: list[LogprobRequest] = []
        plans: list[tuple[int, dict]] = []
        yes_ids, no_ids = self.first_token_ids(cfg.yes_words), self.first_token_ids(cfg.no_words)
        overlap = set(yes_ids) & set(no_ids)
        if overlap:
            raise ValueError(f"yes_words and no_words share first tokens {sorted(overlap)}; pick distinct words")

        def build() -> None:  # answer spans, rendering, tokenising: per-item text work, off the loop
            with lock_for(self.tokenizer):
                for i, item in enumerate(items):
                    try:
                        built = self._build(item, variant, yes_ids + no_ids)
                    except (TooLongError, ValueError) as exc:
                        results[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, str(exc))
                        continue
                    if isinstance(built, Result):
                        results[i] = built
                        continue
                    request, plan = built
                    requests.append(request)
                    plans.append((i, plan))

        await off_loop(build)
        outputs = await self.run_logprobs(requests)
        for (i, plan), out in zip(plans, outputs):
            item = items[i]
            if isinstance(out, BaseException):
                results[i] = failure(item.id, out, f"scorer {self.name!r}")
                continue
            details: dict = {"variant": variant, **plan.get("details", {})}
            if variant == "p_true":
                probs = [math.exp(x) for x in out.candidates]
                p_yes, p_no = sum(probs[: len(yes_ids)]), sum(probs[len(yes_ids):])
                value = p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5
                details.update(p_yes=p_yes, p_no=p_no)
            else:
                probs = [math.exp(out.target[j]) for j in plan["span_tokens"]]
                value = min(probs) if variant == "crew_min" else sum(probs) / len(probs)
                details["token_probs"] = probs
            results[i] = Result(id=item.id, score=float(min(1.0, max(0.0, value))), details=details)
        return [r for r in results if r is not None]

    def _build(self, item: Item, variant: str, candidates: list[int]) -> tuple[LogprobRequest, dict] | Result:
        """The log-prob request for one item and what to read from its result."""
        cfg: ConfidenceConfig = self.config
        group = group_key(item.group_id)
        if variant == "p_true":
            template = cfg.p_true_template
            # Split at the response so the part before it (the question) is a prefix a group shares.
            head, tail = template.split("{response}", 1)
            user = (head.format(prompt=item.prompt_text) + MARK + item.response_text
                    + tail.format(prompt=item.prompt_text))
            parts = self.chat_parts(user)
            context = [t for p in parts for t in p]
            self.check_length(len(context))
            return LogprobRequest(context=context, candidates=candidates, group=group,
                                  shared_prefix=len(parts[0])), {}
        response = item.response_text
        details: dict = {}
        if variant == "reference_prob":
            if item.reference is None or not item.reference.strip():
                raise ValueError("reference_prob needs the item's `reference` (the reference answer)")
            reference = item.reference.strip()
            span = answer_span(response)
            if span is not None:
                start = span[0]
                text = response[:start] + reference + response[span[1]:]
                details.update(answer_found=span[2], replaced=response[span[0]:span[1]])
            else:
                suffix = cfg.reference_suffix
                text = response + suffix.split("{reference}", 1)[0]
                start = len(text)
                text = response + suffix.format(reference=reference)
                details.update(answer_found=None)
            end = start + len(reference)
        else:
            span = answer_span(response)
            if span is None:
                return Result(id=item.id, score=0.0, details={"variant": variant, "verdict": "no_answer",
                                                              "why": "no final answer found in the response"})
            text, (start, end) = response, span[:2]
            details.update(answer=response[start:end], answer_found=span[2])
        context = self.prompt_ids(item.prompt)
        ids, offsets = self.encode_with_offsets(text)
        span_tokens = token_span(offsets, start, end)
        if not span_tokens:
            raise ValueError("the answer span produced no tokens")
        target = ids[: span_tokens[-1] + 1]  # tokens after the answer don't matter
        self.check_length(len(context) + len(target))
        request = LogprobRequest(context=context, target=target, group=group, shared_prefix=len(context))
        return request, {"span_tokens": span_tokens, "details": details}
