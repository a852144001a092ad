"""Which Ray Serve deployments a config makes, in what order, with what worker counts: no Ray import."""

from __future__ import annotations

import dataclasses

from rewardsvc.config import Config, ScorerSpec
from rewardsvc.registry import dependency_order, scorer_class, uses_of


def deployment_order(config: Config) -> list[str]:
    """Scorer names, each after the scorers it uses; a loop is a ConfigError."""
    return dependency_order(uses_of(config.scorers))


def peer_names(spec: ScorerSpec) -> list[str]:
    """The other scorers a scorer calls (`Scorer.uses()`): their deployment handles go to its replicas."""
    return scorer_class(spec.type)(spec.name, spec.config).uses()


def fit_workers(spec: ScorerSpec, num_cpus: float) -> ScorerSpec:
    """`workers: 0` means one per core; on Ray that is one per CPU the replica reserved, not per node core."""
    cfg = spec.config
    if getattr(cfg, "workers", None) == 0 and dataclasses.is_dataclass(cfg):
        return dataclasses.replace(spec, config=dataclasses.replace(cfg, workers=max(1, int(num_cpus))))
    return spec
