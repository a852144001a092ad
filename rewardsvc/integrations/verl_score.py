"""The veRL adapter's implementation; veRL loads `rewardsvc/integrations/verl.py` (see its docstring)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardsvc.client import AsyncRewardClient, RewardClient
from rewardsvc.integrations.batching import Coalescer
from rewardsvc.integrations.common import DEFAULT_ADDRESS, group_ids, stable_key, to_reference
from rewardsvc.types import Item, Result

log = logging.getLogger(__name__)

# veRL's own routing (verl/utils/reward_score/__init__.py, default_compute_score) for the sources
# rewardsvc has scorers for; geometry3k and the search-R1 QA sources have none.
MATH_SOURCES = frozenset({
    "openai/gsm8k", "gsm8k", "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500",
    "math_dapo", "math", "math_dapo_reasoning", "numina_aops_forum", "numina_synthetic_math", "numina_amc_aime",
    "numina_synthetic_amc", "numina_cn_k12", "numina_olympiads"})
CODE_SOURCES = frozenset({"codecontests", "apps", "codeforces", "taco"})

SETTINGS = ("address", "token", "scorer", "data_source_scorers", "scorer_options", "timeout_s", "connect_timeout_s",
            "error_score", "details")
# Passed by veRL itself in some set-ups; nothing for rewardsvc to do with them.
VERL_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer", "sandbox_fusion_url",
                         "concurrent_semaphore", "memory_limit_mb"})


@dataclass(frozen=True)
class Settings:
    address: str = DEFAULT_ADDRESS
    token: str | None = None
    scorer: str | None = None
    data_source_scorers: tuple[tuple[str, str], ...] = ()
    scorer_options: str = "{}"  # JSON, so the settings stay hashable (one client per distinct set)
    timeout_s: float = 600.0
    connect_timeout_s: float = 20.0
    error_score: float = 0.0
    details: tuple[str, ...] = ("verdict",)

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Settings:
        unknown = set(kwargs) - set(SETTINGS) - VERL_KWARGS
        if unknown:
            raise TypeError(f"rewardsvc compute_score: unknown argument(s) {sorted(unknown)}; "
                            f"custom_reward_function.reward_kwargs accepts {list(SETTINGS)}")
        env = os.environ
        mapping = dict(_mapping(env.get("REWARDSVC_DATA_SOURCE_SCORERS"), "$REWARDSVC_DATA_SOURCE_SCORERS"))
        mapping.update(_mapping(kwargs.get("data_source_scorers"), "reward_kwargs.data_source_scorers"))
        options = kwargs.get("scorer_options") or {}
        if not isinstance(options, Mapping) or not all(isinstance(v, Mapping) for v in options.values()):
            raise TypeError("reward_kwargs.scorer_options must map scorer names to option mappings, "
                            "e.g. {code: {all_or_nothing: true}}")
        details = kwargs.get("details", ("verdict",))
        if isinstance(details, str) or not all(isinstance(d, str) for d in details):
            raise TypeError("reward_kwargs.details must be a list of detail keys, e.g. [verdict, extracted_answer]")
        return cls(
            address=str(kwargs.get("address") or env.get("REWARDSVC_ADDRESS") or DEFAULT_ADDRESS),
            token=kwargs.get("token") or env.get("REWARDSVC_AUTH_TOKEN") or None,
            scorer=kwargs.get("scorer") or env.get("REWARDSVC_SCORER") or None,
            data_source_scorers=tuple(sorted(mapping.items())),
            scorer_options=json.dumps({k: dict(v) for k, v in options.items()}, sort_keys=True),
            timeout_s=float(kwargs.get("timeout_s") or env.get("REWARDSVC_TIMEOUT_S") or 600.0),
            connect_timeout_s=float(kwargs.get("connect_timeout_s") or env.get("REWARDSVC_CONNECT_TIMEOUT_S") or 20.0),
            error_score=float(kwargs.get("error_score", 0.0)),
            details=tuple(details),
        )

    def scorer_for(self, data_source: Any) -> str:
        if self.scorer:
            return self.scorer
        source = str(data_source)
        mapped = dict(self.data_source_scorers).get(source)
        if mapped:
            return mapped
        if source in MATH_SOURCES or source.startswith("aime"):
            return "math"
        if source in CODE_SOURCES:
            return "code"
        raise ValueError(
            f"rewardsvc has no scorer for data_source {source!r}: map it in custom_reward_function.reward_kwargs."
            f"data_source_scorers (e.g. {{{source!r}: math}}) or $REWARDSVC_DATA_SOURCE_SCORERS, or send every "
            "sample to one scorer with reward_kwargs.scorer; built in: veRL's math sources -> math, "
            f"{sorted(CODE_SOURCES)} -> code")

    def options(self, scorer: str) -> dict[str, Any]:
        return dict(json.loads(self.scorer_options).get(scorer, {}))

    def client_kwargs(self) -> dict[str, Any]:
        return {"token": self.token, "timeout_s": self.timeout_s, "connect_timeout_s": self.connect_timeout_s}


def _mapping(value: Any, where: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{where} is not JSON ({exc}); expected an object data_source -> scorer") from None
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must map data_source names to scorer names")
    return {str(k): str(v) for k, v in value.items()}


def _item(index: int, data_source: Any, solution: Any, ground_truth: Any, extra_info: Any) -> Item:
    info = extra_info if isinstance(extra_info, Mapping) else {}
    prompt = info.get("question") or info.get("prompt") or ""
    return Item(id=str(index), prompt=prompt if isinstance(prompt, str) else "", response=str(solution),
                reference=to_reference(ground_truth))


def _answer(result: Result, settings: Settings) -> dict[str, Any]:
    score = result.score if result.ok else settings.error_score
    out: dict[str, Any] = {"score": score, "acc": score,
                           "error": f"{result.error.code.value}: {result.error.message}" if result.error else ""}
    for key in settings.details:
        value = result.details.get(key)
        out[key] = value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)
    return out


def _warn(results: Sequence[Result], settings: Settings) -> None:
    failed = [r.error for r in results if r.error is not None]
    if failed:
        log.warning("rewardsvc: %d of %d samples could not be scored (score %s, see reward_extra_info['error']); "
                    "first: %s", len(failed), len(results), settings.error_score, failed[0].message[:300])


# -- clients, one per settings (and per event loop for asyncio), per process ----------------------
_clients: dict[tuple[int, Settings], RewardClient] = {}
_clients_lock = threading.Lock()
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Settings, Coalescer]] = weakref.WeakKeyDictionary()


def _client(settings: Settings) -> RewardClient:
    key = (os.getpid(), settings)  # a forked worker must not reuse its parent's channel
    with _clients_lock:  # the reward loop calls a sync function from its executor's threads
        if key not in _clients:
            _clients[key] = RewardClient(settings.address, **settings.client_kwargs())
        return _clients[key]


def _coalescer(settings: Settings) -> Coalescer:
    per_loop = _async.setdefault(asyncio.get_running_loop(), {})
    if settings not in per_loop:
        per_loop[settings] = Coalescer(AsyncRewardClient(settings.address, **settings.client_kwargs()))
    return per_loop[settings]


def _score_batch(settings: Settings, items: list[Item], sources: Sequence[Any]) -> list[Result]:
    results: list[Result | None] = [None] * len(items)
    by_scorer: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        by_scorer.setdefault(settings.scorer_for(source), []).append(i)
    client = _client(settings)
    for scorer, idx in by_scorer.items():
        for i, r in zip(idx, client.score(scorer, [items[i] for i in idx], **settings.options(scorer))):
            results[i] = r
    return [r for r in results if r is not None]


def compute_score(data_source: Any = None, solution_str: Any = None, ground_truth: Any = None,
                  extra_info: Any = None, *, data_sources: Any = None, solution_strs: Any = None,
                  ground_truths: Any = None, extra_infos: Any = None, **kwargs: Any) -> Any:
    """veRL `custom_reward_function` (`path`: this file, `name: compute_score`).

    One sample (naive managers, reward loop) -> a dict; the batch manager's plural keywords -> a
    list of dicts. See the module docstring for settings and the keys of each dict."""
    settings = Settings.of(kwargs)
    if solution_strs is not None:
        n = len(solution_strs)
        sources = list(data_sources) if data_sources is not None else [None] * n
        truths = list(ground_truths) if ground_truths is not None else [None] * n
        infos = list(extra_infos) if extra_infos is not None else [{}] * n
        if not len(sources) == len(truths) == len(infos) == n:
            raise ValueError(f"batch of {n} solutions with {len(sources)} data_sources, {len(truths)} ground_truths "
                             f"and {len(infos)} extra_infos")
        items = [_item(i, sources[i], solution_strs[i], truths[i], infos[i]) for i in range(n)]
        keys = [stable_key([str(sources[i]), _prompt_key(infos[i]), items[i].reference]) for i in range(n)]
        for item, gid in zip(items, group_ids(keys)):
            item.group_id = gid
        results = _score_batch(settings, items, sources)
        _warn(results, settings)
        return [_answer(r, settings) for r in results]
    if solution_str is None:
        raise TypeError("compute_score needs solution_str (one sample) or solution_strs (the batch manager's form)")
    item = _item(0, data_source, solution_str, ground_truth, extra_info)
    (result,) = _score_batch(settings, [item], [data_source])
    _warn([result], settings)
    return _answer(result, settings)


async def compute_score_async(data_source: Any = None, solution_str: Any = None, ground_truth: Any = None,
                              extra_info: Any = None, **kwargs: Any) -> dict[str, Any]:
    """veRL reward loop, `name: compute_score_async`: awaited on the loop's event loop; samples
    scored at the same moment on one loop go to the server together (one request, not one each)."""
    if solution_str is None:
        raise TypeError("compute_score_async scores one sample (reward loop); the batch manager calls compute_score")
    settings = Settings.of(kwargs)
    scorer = settings.scorer_for(data_source)
    item = _item(0, data_source, solution_str, ground_truth, extra_info)
    result = await _coalescer(settings).score(scorer, item, settings.options(scorer))
    _warn([result], settings)
    return _answer(result, settings)


def _prompt_key(extra_info: Any) -> Any:
    info = extra_info if isinstance(extra_info, Mapping) else {}
    return info.get("index", info.get("question", info.get("prompt")))
