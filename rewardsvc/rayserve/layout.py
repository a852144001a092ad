"""Which Ray Serve deployments a config makes, in what order, with what worker counts: no Ray import."""

from __future__ import annotations

import dataclasses
from typing import Any

from rewardsvc.config import Config, ScorerSpec
from rewardsvc.dataclass_dict import describe_fields
from rewardsvc.errors import ConfigError
from rewardsvc.registry import scorer_class


def deployment_order(config: Config) -> list[str]:
    """Scorer names, each after the scorers it uses (composite components); a loop is a ConfigError."""
    needs = {s.name: peer_names(s) for s in config.scorers}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ConfigError(f"composite scorers refer to each other in a loop: {' -> '.join(path + [name])}")
        if name not in needs:
            raise ConfigError(f"scorer {path[-1]!r} uses {name!r}, which is not in `scorers:`; hosted: {sorted(needs)}")
        state[name] = 1
        for dep in needs[name]:
            visit(dep, path + [name])
        state[name] = 2
        order.append(name)

    for name in needs:
        visit(name, [])
    return order


def peer_names(spec: ScorerSpec) -> list[str]:
    """The other scorers a scorer calls: a composite's components; none for the rest."""
    from rewardsvc.scorers.composite import CompositeScorer

    cls = scorer_class(spec.type)
    if issubclass(cls, CompositeScorer):
        return list(dict.fromkeys(c.scorer for c in cls(spec.name, spec.config)._needed()))
    return []


def fit_workers(spec: ScorerSpec, num_cpus: float) -> ScorerSpec:
    """`workers: 0` means one per core; on Ray that is one per CPU the replica reserved, not per node core."""
    cfg = spec.config
    if getattr(cfg, "workers", None) == 0 and dataclasses.is_dataclass(cfg):
        return dataclasses.replace(spec, config=dataclasses.replace(cfg, workers=max(1, int(num_cpus))))
    return spec


def scorer_infos(config: Config) -> list[dict[str, Any]]:
    out = []
    for spec in config.scorers:
        cls = scorer_class(spec.type)
        out.append({"name": spec.name, "kind": cls.kind, "description": cls.description,
                    "options": describe_fields(cls.Options)})
    return out
