"""The config's optional `ray:` section: how `rewardsvc serve --ray` lays the scorers out on Ray Serve.

    ray:
      address: auto                  # join the running cluster (default: $RAY_ADDRESS, else a local Ray)
      ingress: {num_replicas: 2}
      scorers:                       # keys are scorer names from `scorers:`; unlisted ones get defaults
        math: {num_replicas: 2, ray_actor_options: {num_cpus: 4}}
        rm:
          autoscaling: {min_replicas: 1, max_replicas: 8, target_ongoing_requests: 4}
          ray_actor_options: {num_gpus: 1, num_cpus: 4}

Plain dataclasses, no Ray import: a config with a `ray:` section is validated (typos included) by every
command, with or without the `rewardsvc[ray]` extra installed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from rewardsvc.dataclass_dict import from_dict
from rewardsvc.errors import ConfigError
from rewardsvc.scorers.base import option

PROXY_LOCATIONS = ("EveryNode", "HeadOnly")


@dataclasses.dataclass
class ActorOptions:
    """Ray resources reserved by each replica (Ray's `ray_actor_options`)."""

    num_cpus: float | None = option(
        None, "CPUs per replica; a verifier with `workers: 0` starts one worker per CPU here. null: 1 on a "
        "cluster rewardsvc joins; on a local Ray that `serve --ray` starts, the ingress takes 0 and scorer "
        "replicas share the machine's CPUs")
    num_gpus: float = option(0.0, "GPUs per replica; fractions share a GPU (e.g. 0.5 = two replicas per GPU)")
    memory_mb: int | None = option(None, "memory reserved per replica for scheduling (null = none)")
    accelerator_type: str | None = option(None, "schedule only on nodes with this accelerator, e.g. H100")
    resources: dict[str, float] = option({}, "custom Ray resources per replica")
    env_vars: dict[str, str] = option({}, "environment variables of the replica processes (e.g. HF_HOME)")


@dataclasses.dataclass
class Autoscaling:
    """Ray Serve autoscaling on ongoing requests per replica."""

    min_replicas: int = option(1, "never fewer replicas (0 = scale to zero when idle)")
    max_replicas: int = option(4, "never more replicas")
    initial_replicas: int | None = option(None, "replicas at deploy time (null = min_replicas)")
    target_ongoing_requests: float = option(2.0, "scale so each replica has about this many requests in flight")
    upscale_delay_s: float = option(30.0, "load must stay high this long before adding replicas")
    downscale_delay_s: float = option(600.0, "load must stay low this long before removing replicas")


@dataclasses.dataclass
class DeploymentOptions:
    """One Ray Serve deployment: the ingress, or one scorer."""

    num_replicas: int | None = option(None, "fixed replica count (null = 1, or autoscaling when set)")
    autoscaling: Autoscaling | None = option(None, "scale on load instead of a fixed num_replicas")
    max_ongoing_requests: int = option(
        32, "requests one replica works on at once; batched scorers need several to fill batches"
    )
    ray_actor_options: ActorOptions = dataclasses.field(
        default_factory=ActorOptions, metadata={"help": "Ray resources per replica"}
    )
    health_check_period_s: float = option(10.0, "how often Ray checks a replica is alive")
    graceful_shutdown_timeout_s: float = option(30.0, "in-flight requests get this long when a replica stops")

    def to_serve(self) -> dict[str, Any]:
        """Keyword arguments for `serve.deployment(...).options(...)`."""
        actor = self.ray_actor_options
        num_cpus = 1.0 if actor.num_cpus is None else actor.num_cpus  # null: resolved by with_cpu_defaults
        ray_actor_options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": actor.num_gpus}
        if actor.memory_mb is not None:
            ray_actor_options["memory"] = actor.memory_mb * 2**20
        if actor.accelerator_type:
            ray_actor_options["accelerator_type"] = actor.accelerator_type
        if actor.resources:
            ray_actor_options["resources"] = dict(actor.resources)
        if actor.env_vars:
            ray_actor_options["runtime_env"] = {"env_vars": dict(actor.env_vars)}
        out: dict[str, Any] = {
            "ray_actor_options": ray_actor_options,
            "max_ongoing_requests": self.max_ongoing_requests,
            "health_check_period_s": self.health_check_period_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
        }
        if self.autoscaling is not None:
            out["autoscaling_config"] = {k: v for k, v in dataclasses.asdict(self.autoscaling).items() if v is not None}
        else:
            out["num_replicas"] = 1 if self.num_replicas is None else self.num_replicas
        return out


@dataclasses.dataclass
class RayConfig:
    address: str | None = option(None, "Ray cluster: auto, ray://host:10001, or null ($RAY_ADDRESS, else a local Ray)")
    app_name: str = option("rewardsvc", "Ray Serve application name")
    grpc_port: int | None = option(None, "gRPC ingress port on every proxy node (null = server.port)")
    http_port: int = option(8000, "Ray Serve's own HTTP proxy port (Serve always runs one; rewardsvc uses gRPC)")
    proxy_location: str = option("EveryNode", "EveryNode or HeadOnly: where Ray runs gRPC proxies")
    request_timeout_s: float | None = option(None, "end-to-end limit per call at the proxy (null = none)")
    start_timeout_s: float = option(
        300.0, "`serve --ray` fails when the deployments are not all running after this long, saying which "
        "replicas wait and what they ask for against what the cluster has")
    ingress: DeploymentOptions = dataclasses.field(
        default_factory=DeploymentOptions, metadata={"help": "the gRPC ingress deployment (converts and forwards)"}
    )
    scorers: dict[str, DeploymentOptions] = option({}, "per scorer name: replicas, autoscaling, resources")

    def for_scorer(self, name: str) -> DeploymentOptions:
        return self.scorers.get(name) or DeploymentOptions()


def parse_ray_section(data: Any, scorer_names: Iterable[str], where: str) -> RayConfig:
    """Validate the `ray:` mapping against the dataclasses above and the hosted scorer names."""
    try:
        cfg = from_dict(RayConfig, data or {}, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    names = set(scorer_names)
    unknown = sorted(set(cfg.scorers) - names)
    if unknown:
        raise ConfigError(f"{where}.scorers: {unknown} not in `scorers:`; hosted: {sorted(names)}")
    if cfg.proxy_location not in PROXY_LOCATIONS:
        raise ConfigError(f"{where}.proxy_location: {cfg.proxy_location!r}; use one of {list(PROXY_LOCATIONS)}")
    for label, dep in [("ingress", cfg.ingress)] + [(f"scorers.{n}", d) for n, d in cfg.scorers.items()]:
        at = f"{where}.{label}"
        if dep.num_replicas is not None and dep.autoscaling is not None:
            raise ConfigError(f"{at}: set num_replicas or autoscaling, not both")
        if dep.num_replicas is not None and dep.num_replicas < 1:
            raise ConfigError(f"{at}.num_replicas must be at least 1 (use autoscaling with min_replicas: 0)")
        auto = dep.autoscaling
        if auto is not None and not (0 <= auto.min_replicas <= auto.max_replicas and auto.max_replicas >= 1):
            raise ConfigError(f"{at}.autoscaling: need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if dep.max_ongoing_requests < 1:
            raise ConfigError(f"{at}.max_ongoing_requests must be at least 1")
        actor = dep.ray_actor_options
        if (actor.num_cpus or 0.0) < 0 or actor.num_gpus < 0:
            raise ConfigError(f"{at}.ray_actor_options: num_cpus and num_gpus must be >= 0")
    if cfg.start_timeout_s <= 0:
        raise ConfigError(f"{where}.start_timeout_s must be > 0 seconds")
    return cfg
