"""Which Ray Serve deployments a config makes, in what order, with what worker counts and what they
reserve on the cluster: no Ray import."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from rewardsvc.config import Config, ScorerSpec
from rewardsvc.rayserve.options import DeploymentOptions, RayConfig
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
    if getattr(cfg, "workers", None) == 0 and dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.replace(spec, config=dataclasses.replace(cfg, workers=max(1, int(num_cpus))))
    return spec


INGRESS_NAME = "Ingress"


def replicas_at_start(d: DeploymentOptions) -> int:
    """How many replicas a deployment asks for when it is deployed."""
    if d.autoscaling is None:
        return 1 if d.num_replicas is None else d.num_replicas
    a = d.autoscaling
    return a.min_replicas if a.initial_replicas is None else a.initial_replicas


def with_cpu_defaults(rc: RayConfig, scorer_names: Sequence[str], local_cpus: float | None) -> RayConfig:
    """`rc` with every deployment's num_cpus set. Unset (null) means 1 CPU per replica on a cluster
    rewardsvc joins; on a Ray that `serve --ray` starts on this machine (`local_cpus` given) the
    ingress, which only converts and forwards, takes none and the scorer replicas share what the
    explicitly sized ones leave, so the default layout fits any machine."""
    def sized(d: DeploymentOptions, cpus: float) -> DeploymentOptions:
        if d.ray_actor_options.num_cpus is not None:
            return d
        return dataclasses.replace(d, ray_actor_options=dataclasses.replace(d.ray_actor_options, num_cpus=cpus))

    scorers = {name: rc.for_scorer(name) for name in scorer_names}
    if local_cpus is None:
        return dataclasses.replace(rc, ingress=sized(rc.ingress, 1.0),
                                   scorers={n: sized(d, 1.0) for n, d in scorers.items()})
    unset = [n for n, d in scorers.items() if d.ray_actor_options.num_cpus is None]
    taken = sum((d.ray_actor_options.num_cpus or 0.0) * replicas_at_start(d) for d in scorers.values())
    taken += (rc.ingress.ray_actor_options.num_cpus or 0.0) * replicas_at_start(rc.ingress)
    shares = sum(max(1, replicas_at_start(scorers[n])) for n in unset)
    # Two decimals, rounded down: Ray accounts CPUs in 1/10000ths, and the sum must not pass what is there.
    each = math.floor(100 * max(0.0, local_cpus - taken) / shares) / 100 if shares else 0.0
    return dataclasses.replace(rc, ingress=sized(rc.ingress, 0.0),
                               scorers={n: sized(d, each) for n, d in scorers.items()})


@dataclasses.dataclass
class Ask:
    """What one deployment reserves on Ray at start: `replicas` x `per_replica` (Ray resource names)."""

    deployment: str
    replicas: int
    per_replica: dict[str, float]

    @property
    def total(self) -> dict[str, float]:
        return {k: v * self.replicas for k, v in self.per_replica.items()}


def replica_resources(d: DeploymentOptions) -> dict[str, float]:
    """One replica's reservation, named as ray.cluster_resources() names them (memory in bytes)."""
    actor = d.ray_actor_options
    out = {"CPU": actor.num_cpus if actor.num_cpus is not None else 1.0, "GPU": actor.num_gpus}
    if actor.memory_mb is not None:
        out["memory"] = actor.memory_mb * 2.0**20
    if actor.accelerator_type:
        out[f"accelerator_type:{actor.accelerator_type}"] = 0.001  # what Ray reserves for the constraint
    out.update(actor.resources)
    return {k: float(v) for k, v in out.items() if v}


def asks(rc: RayConfig, order: Sequence[str]) -> list[Ask]:
    """The scorer deployments in `order`, then the ingress."""
    out = [Ask(name, replicas_at_start(rc.for_scorer(name)), replica_resources(rc.for_scorer(name)))
           for name in order]
    return [*out, Ask(INGRESS_NAME, replicas_at_start(rc.ingress), replica_resources(rc.ingress))]


def shortfall(need: dict[str, float], have: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Resources of which `need` asks for more than `have` holds: {name: (asked, there)}."""
    return {k: (v, have.get(k, 0.0)) for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}


def summed(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


def describe(resources: dict[str, float], keys: Sequence[str] | None = None) -> str:
    """{CPU: 2, GPU: 1, memory: 4.0 GiB}; only `keys` when given (what the asks name)."""
    shown = list(keys) if keys is not None else list(resources)
    parts = []
    for k in shown:
        v = resources.get(k, 0.0)
        parts.append(f"{k}: {v / 2**30:.1f} GiB" if k == "memory" else f"{k}: {v:g}")
    return "{" + ", ".join(parts) + "}" if parts else "nothing"
