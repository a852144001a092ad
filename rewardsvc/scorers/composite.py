"""The `composite` scorer: a reward built in config from other hosted scorers.

Modes (`mode:` in the stanza):
    weighted_sum  score = sum_k w_k r_k over `components`
    gated         outcome-gated process reward: score = w_o r_outcome + w_p r_process * 1[correct],
                  correct = r_outcome >= correct_threshold. The process scorer only runs on the
                  correct items (a PRM forward is the expensive part); its step_scores pass through.
    zscore        the weighted sum, standardised within each group_id of the request:
                  (r - mean_g) / (std_g + eps), std with n-1 as TRL's GRPO; items without a
                  group_id form one group; a group with one scored item gets 0
    shaping       bounded shaping of the weighted sum: sigmoid((r - c) / temperature), with the
                  centre c = the group's mean (`center: group`), the reward of the item's
                  `reference` scored as a response (`center: reference`, as in Preference-As-Reward),
                  or a number
    progress      Rewarding Progress (scorers/progress_rewards.py): the weighted sum is a value
                  V(prefix) scored on every prefix of the item's steps (`steps`, or the response
                  split on `step_separator`); step_scores = A_t = V_t - V_(t-1), V_0 =
                  `initial_value`, score = their sum; `thoughts` merges same-verdict runs first
An item that fails in any component it needs gets that component's error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rewardsvc.dataclass_dict import from_dict
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import NoOptions, Scorer, option
from rewardsvc.scorers.dedupe import score_unique
from rewardsvc.scorers.progress_rewards import progress, thought_units, unit_values
from rewardsvc.scorers.render import split_steps
from rewardsvc.types import ErrorCode, Item, ItemError, Result

MODES = ("weighted_sum", "gated", "zscore", "shaping", "progress")


@dataclasses.dataclass
class Component:
    scorer: str = option("", "name of another scorer hosted by this server")
    weight: float = option(1.0, "its weight in the sum")
    options: dict[str, Any] = option({}, "per-request options passed to that scorer")


@dataclasses.dataclass
class CompositeConfig:
    mode: str = option("weighted_sum", "weighted_sum, gated, zscore, shaping or progress")
    components: list[Component] = option([], "weighted_sum/zscore/shaping: the scorers summed")
    outcome: Component | None = option(None, "gated: the outcome verifier (e.g. math)")
    process: Component | None = option(None, "gated: the process scorer (e.g. prm)")
    correct_threshold: float = option(0.5, "gated: outcome score at or above this counts as correct")
    zscore_eps: float = option(1e-4, "zscore: added to the group's std")
    center: float | str = option("group", "shaping: group, reference, or a number")
    temperature: float = option(1.0, "shaping: sigmoid((r - center) / temperature)")
    dedupe: bool = option(True, "score identical work in a component once (as the server's `dedupe`)")
    step_separator: str = option("\n", "progress: splits `response` into steps when an item has no `steps`")
    initial_value: float = option(0.0, "progress: the value before the first step")
    thoughts: bool = option(False, "progress: one unit per run of steps on the same side of thought_threshold")
    thought_threshold: float = option(0.5, "progress: a prefix value at or above this is a good step")


def _check_stanza(where: str, cfg: CompositeConfig) -> None:
    """What the stanza alone can get wrong (the components' names and options need the peers)."""
    if cfg.mode not in MODES:
        raise ConfigError(f"{where}: mode {cfg.mode!r}: use one of {list(MODES)}")
    if cfg.mode == "gated":
        if cfg.outcome is None or cfg.process is None:
            raise ConfigError(f"{where}: mode gated needs `outcome:` and `process:` components")
    elif not cfg.components:
        raise ConfigError(f"{where}: mode {cfg.mode} needs at least one entry in `components:`")
    if cfg.mode == "progress" and not cfg.step_separator:
        raise ConfigError(f"{where}: step_separator must not be empty")
    if cfg.mode == "shaping":
        if isinstance(cfg.center, str) and cfg.center not in ("group", "reference"):
            raise ConfigError(f"{where}: center {cfg.center!r}: use group, reference or a number")
        if not cfg.temperature > 0:
            raise ConfigError(f"{where}: temperature must be > 0")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _component_error(comp: Component, res: Result) -> Result:
    assert res.error is not None
    return Result(
        id=res.id, error=ItemError(res.error.code, f"component {comp.scorer!r}: {res.error.message}"),
        details={"component": comp.scorer},
    )


class CompositeScorer(Scorer):
    kind = "composite"
    description = (
        "A reward combined from other hosted scorers: weighted sum, outcome-gated process reward, "
        "z-score within group_id, or bounded sigmoid shaping."
    )
    Config = CompositeConfig
    Options = NoOptions
    item_format = (
        "What its components need (an item they refuse is refused with the component's reason); gated and "
        'progress modes also read `steps`; `group_id` groups items for zscore and `center: group`; `center: '
        "reference` scores the item's `reference` as a response. `details`: each component's score."
    )

    def __init__(self, name: str, config: CompositeConfig) -> None:
        super().__init__(name, config)
        _check_stanza(f"scorer {name!r}", config)  # at config load: before any scorer starts
        self.peers: dict[str, Scorer] = {}
        # Parsed options per Component object (one scorer may appear twice with different options).
        self.options: dict[int, Any] = {}

    def _needed(self) -> list[Component]:
        cfg: CompositeConfig = self.config
        if cfg.mode == "gated":
            return [c for c in (cfg.outcome, cfg.process) if c is not None]
        return list(cfg.components)

    def uses(self) -> list[str]:
        return list(dict.fromkeys(c.scorer for c in self._needed()))

    def check_peers(self, peers: Mapping[str, Scorer]) -> None:
        """Each component's scorer and its parsed options, kept for scoring: the service calls this once,
        before it starts any scorer, so nothing is left for `start`."""
        where = f"scorer {self.name!r}"
        for comp in self._needed():
            peer = peers.get(comp.scorer)
            if peer is None:
                raise ConfigError(
                    f"{where}: component {comp.scorer!r} is not a scorer on this server; "
                    f"hosted: {sorted(peers)}"
                )
            try:
                self.options[id(comp)] = from_dict(
                    peer.Options, comp.options, f"{where}: options for component {comp.scorer!r}"
                )
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            self.peers[comp.scorer] = peer

    def check_item(self, item: Item) -> str | None:
        cfg: CompositeConfig = self.config
        if cfg.mode == "progress" and not item.steps and not split_steps(item.response_text, cfg.step_separator):
            return f"no steps: send `steps`, or a response with text between step separators ({cfg.step_separator!r})"
        if cfg.mode == "shaping" and cfg.center == "reference" and item.reference is None:
            return "shaping with center: reference needs the item's `reference` (a reference response)"
        for comp in self._needed():
            why = self.peers[comp.scorer].check_item(item)
            if why:
                return f"component {comp.scorer!r}: {why}"
        return None

    async def _run(self, comp: Component, items: Sequence[Item]) -> list[Result]:
        """One component's results for `items` (its own item checks included), in order."""
        peer = self.peers[comp.scorer]
        results: list[Result | None] = [None] * len(items)
        todo = []
        for i, item in enumerate(items):
            why = peer.check_item(item)
            if why:
                results[i] = Result.failed(item.id, ErrorCode.INVALID_ITEM, why)
            else:
                todo.append(i)
        if todo:
            scored, _ = await score_unique(peer, [items[i] for i in todo], self.options[id(comp)],
                                           self.config.dedupe)
            if len(scored) != len(todo):
                raise RuntimeError(
                    f"component {comp.scorer!r} returned {len(scored)} results for {len(todo)} items"
                )
            for i, res in zip(todo, scored):
                res.id = items[i].id
                results[i] = res
        return [r for r in results if r is not None]

    async def _weighted(self, items: Sequence[Item]) -> list[Result]:
        """The weighted sum of `components` per item, with each component's score in details."""
        comps = self.config.components
        per_comp = await asyncio.gather(*(self._run(c, items) for c in comps))
        out = []
        for i, item in enumerate(items):
            parts = [(c, rs[i]) for c, rs in zip(comps, per_comp)]
            bad = next((r for _, r in parts if r.error is not None), None)
            if bad is not None:
                out.append(_component_error(next(c for c, r in parts if r is bad), bad))
                continue
            total = sum(c.weight * r.score for c, r in parts)
            details = {"components": {c.scorer: r.score for c, r in parts}}
            out.append(Result(id=item.id, score=total, details=details))
        return out

    async def score(self, items: Sequence[Item], options: Any) -> list[Result]:
        mode = self.config.mode
        if mode == "gated":
            return await self._gated(items)
        if mode == "progress":
            return await self._progress(items)
        base = await self._weighted(items)
        if mode == "weighted_sum":
            return base
        if mode == "zscore":
            return self._zscore(items, base)
        return await self._shaping(items, base)

    async def _gated(self, items: Sequence[Item]) -> list[Result]:
        cfg: CompositeConfig = self.config
        outcome, process = cfg.outcome, cfg.process
        assert outcome is not None and process is not None
        outcomes = await self._run(outcome, items)
        correct = [i for i, r in enumerate(outcomes) if r.error is None and r.score >= cfg.correct_threshold]
        processed: dict[int, Result] = {}
        if correct:
            processed = dict(zip(correct, await self._run(process, [items[i] for i in correct])))
        out = []
        for i, (item, o) in enumerate(zip(items, outcomes)):
            if o.error is not None:
                out.append(_component_error(outcome, o))
                continue
            details: dict[str, Any] = {"outcome": o.score, "correct": i in processed}
            if "verdict" in o.details:
                details["verdict"] = o.details["verdict"]
            score = outcome.weight * o.score
            step_scores: list[float] = []
            p = processed.get(i)
            if p is not None:
                if p.error is not None:
                    out.append(_component_error(process, p))
                    continue
                details["process"] = p.score
                score += process.weight * p.score
                step_scores = list(p.step_scores)
            out.append(Result(id=item.id, score=score, step_scores=step_scores, details=details))
        return out

    async def _progress(self, items: Sequence[Item]) -> list[Result]:
        cfg: CompositeConfig = self.config
        steps_of = [list(it.steps) or split_steps(it.response_text, cfg.step_separator) for it in items]
        prefixes = [dataclasses.replace(it, id=f"{it.id}#{t}", steps=steps[:t],
                                        response=cfg.step_separator.join(steps[:t]))
                    for it, steps in zip(items, steps_of) for t in range(1, len(steps) + 1)]
        values = iter(await self._weighted(prefixes))
        out = []
        for item, steps in zip(items, steps_of):
            scored = [next(values) for _ in steps]
            bad = next((r for r in scored if r.error is not None), None)
            if not steps:
                out.append(Result.failed(item.id, ErrorCode.INVALID_ITEM, "no steps: send `steps`, or a response "
                                         f"with text between step separators ({cfg.step_separator!r})"))
            elif bad is not None:
                assert bad.error is not None
                k = scored.index(bad) + 1
                msg = f"scoring the prefix of {k} step(s): {bad.error.message}"
                out.append(Result(id=item.id, error=ItemError(bad.error.code, msg), details=bad.details))
            else:
                v = [r.score for r in scored]
                details: dict[str, Any] = {"values": v, "initial_value": cfg.initial_value}
                if cfg.thoughts:
                    units = thought_units(v, cfg.thought_threshold)
                    details["thoughts"] = [list(u) for u in units]
                    v = unit_values(v, units)
                advantages = progress(v, cfg.initial_value)
                out.append(Result(id=item.id, score=sum(advantages), step_scores=advantages, details=details))
        return out

    @staticmethod
    def _groups(items: Sequence[Item], base: Sequence[Result]) -> dict[str | None, list[int]]:
        """Indices of the successfully scored items per group_id."""
        groups: dict[str | None, list[int]] = {}
        for i, (item, r) in enumerate(zip(items, base)):
            if r.error is None:
                groups.setdefault(item.group_id, []).append(i)
        return groups

    def _zscore(self, items: Sequence[Item], base: list[Result]) -> list[Result]:
        eps = self.config.zscore_eps
        for idx in self._groups(items, base).values():
            values = [base[i].score for i in idx]
            mean = sum(values) / len(values)
            n = len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
            for i in idx:
                r = base[i]
                r.details.update(raw_score=r.score, group_mean=mean, group_std=std, group_size=len(idx))
                r.score = (r.score - mean) / (std + eps) if len(idx) > 1 else 0.0
        return base

    async def _shaping(self, items: Sequence[Item], base: list[Result]) -> list[Result]:
        cfg: CompositeConfig = self.config
        centers: list[float | None] = [None] * len(items)
        if cfg.center == "reference":
            refs = [dataclasses.replace(it, response=it.reference or "") for it in items]
            ref_results = await self._weighted(refs)
            for i, rr in enumerate(ref_results):
                if rr.error is not None and base[i].error is None:
                    msg = f"scoring the reference: {rr.error.message}"
                    base[i] = Result(id=items[i].id, error=ItemError(rr.error.code, msg))
                centers[i] = rr.score
        elif cfg.center == "group":
            for idx in self._groups(items, base).values():
                mean = sum(base[i].score for i in idx) / len(idx)
                for i in idx:
                    centers[i] = mean
        else:
            centers = [float(cfg.center)] * len(items)
        for r, c in zip(base, centers):
            if r.error is None and c is not None:
                r.details.update(raw_score=r.score, center=c)
                r.score = _sigmoid((r.score - c) / cfg.temperature)
        return base
