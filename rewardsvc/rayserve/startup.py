"""`serve --ray` start-up: what the layout reserves against what the cluster has, progress per deployment
while replicas start, and a clear failure after `ray.start_timeout_s` when they can't all run (at once,
when they can never all fit on a local Ray: before it starts for CPUs, before anything deploys for the rest).

Ray Serve itself waits without a word for replicas the cluster can't place (`serve.run` blocks until
the application runs); here the wait is watched through `serve.status()` and explained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray import serve

from rewardsvc.errors import RewardServiceError
from rewardsvc.rayserve.layout import Ask, describe, shortfall, summed

Say = Callable[[str], None]
POLL_S = 0.5


class RayStartError(RewardServiceError):
    """The application did not come up on Ray (replicas unschedulable, failing, or too slow)."""

    grpc_code = "UNAVAILABLE"


def serve_failed(exc: Exception, where: str, http_port: int, grpc_port: int) -> RayStartError:
    """Ray Serve's own start-up failing (its proxies can't bind their ports, or aren't ready within Ray's
    fixed 60 s on a busy machine) as a RayStartError naming the cause instead of a Ray traceback."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps what the actor raised
    text = str(cause).strip().splitlines()
    last = text[-1].rstrip(".") if text else "(no message)"
    return RayStartError(
        f"Ray Serve did not start on {where}: {type(cause).__name__}: {last}. Its proxies "
        f"listen on ray.http_port={http_port} and gRPC port {grpc_port}: free them or pick others; on a busy "
        "machine, retry. Ray Serve's logs: /tmp/ray/session_latest/logs/serve")


def cluster_resources() -> tuple[dict[str, float], dict[str, float]]:
    """(in all, free now) as Ray counts them."""
    return dict(ray.cluster_resources()), dict(ray.available_resources())


def plan_lines(plan: Sequence[Ask], have: dict[str, float], where: str, timeout_s: float,
               can_grow: bool = True) -> list[str]:
    """What each deployment reserves; a warning when the sum passes what a cluster that `can_grow` has
    (on one that can't, `never_fits` is the error that follows)."""
    keys = sorted({k for a in plan for k in a.per_replica}, key=lambda k: (k != "CPU", k != "GPU", k))
    lines = [f"rewardsvc ray: deploying on {where} with {describe(have, keys or ['CPU'])} in all:"]
    lines += [f"  {a.deployment}: {a.replicas} x {describe(a.per_replica)}" for a in plan]
    short = shortfall(summed([a.total for a in plan]), have)
    if short and can_grow:
        asked, there = _asked_and_there(short)
        lines.append(f"rewardsvc ray: warning: the replicas ask for {{{asked}}} and the cluster has {{{there}}}: "
                     "those that don't fit wait for resources (an autoscaling cluster may add nodes); start "
                     f"fails after ray.start_timeout_s={timeout_s:g}s")
    return lines


def _asked_and_there(short: dict[str, tuple[float, float]]) -> tuple[str, str]:
    return (", ".join(f"{k}: {need:g}" for k, (need, _) in short.items()),
            ", ".join(f"{k}: {got:g}" for k, (_, got) in short.items()))


def never_fits(plan: Sequence[Ask], have: dict[str, float]) -> RayStartError | None:
    """The error for a plan that asks for more than a cluster that can't grow (a local Ray this process
    started: no autoscaler, nothing else frees resources) holds in all; None when it fits. Ray Serve
    would wait for those replicas forever; failing before anything deploys saves ray.start_timeout_s."""
    short = shortfall(summed([a.total for a in plan]), have)
    if not short:
        return None
    asked, there = _asked_and_there(short)
    return RayStartError(
        f"the replicas ask for {{{asked}}} in all and this local Ray has {{{there}}}: they can never all run "
        "here (a local Ray does not grow). Ask for less (ray.scorers.NAME.num_replicas, ray_actor_options."
        "num_cpus / num_gpus / memory_mb), leave num_cpus unset so the replicas share this machine's CPUs, "
        "or join a bigger cluster (--ray-address or ray.address).")


def _count(states: dict[Any, int], name: str) -> int:
    return sum(n for state, n in states.items() if getattr(state, "value", state) == name)


def _progress(ask: Ask, deployment: Any) -> str:
    if deployment is None:
        return f"rewardsvc ray: {ask.deployment}: waiting to be created"
    states = deployment.replica_states
    running = _count(states, "RUNNING")
    others = {getattr(s, "value", s): n for s, n in states.items() if getattr(s, "value", s) != "RUNNING" and n}
    rest = ", ".join(f"{n} {s.lower()}" for s, n in sorted(others.items()))
    status = getattr(deployment.status, "value", deployment.status)
    return (f"rewardsvc ray: {ask.deployment}: {running}/{ask.replicas} replicas running"
            + (f", {rest}" if rest else "") + (" (ready)" if status == "HEALTHY" else ""))


def explain(app_name: str, plan: Sequence[Ask], app: Any, timeout_s: float) -> str:
    """Why the application is not running: per waiting deployment, its ask against the cluster."""
    total, free = cluster_resources()
    lines = [f"Ray Serve did not start application {app_name!r} within {timeout_s:g}s (ray.start_timeout_s):"]
    blocked = False
    for ask in plan:
        d = app.deployments.get(ask.deployment) if app is not None else None
        running = _count(d.replica_states, "RUNNING") if d is not None else 0
        if running >= ask.replicas:
            lines.append(f"  {ask.deployment}: {running}/{ask.replicas} replicas running")
            continue
        keys = list(ask.per_replica) or ["CPU"]
        line = (f"  {ask.deployment}: {running}/{ask.replicas} replicas running; each asks for "
                f"{describe(ask.per_replica)}, all {ask.replicas} {describe(ask.total)}")
        if shortfall(ask.per_replica, free):
            blocked = True
            line += f"; the cluster has {describe(total, keys)} in all, {describe(free, keys)} free: can't be scheduled"
        else:
            line += "; resources are free: its replicas are starting (loading models?) or failing"
        if d is not None and d.message:
            line += f"\n    Ray Serve says: {d.message.strip()}"
        lines.append(line)
    if blocked:
        lines.append("Ask for less (ray.scorers.NAME.num_replicas, ray_actor_options.num_cpus / num_gpus / "
                     "memory_mb), give Ray more (more CPUs, more nodes), or leave num_cpus unset on a local Ray "
                     "so the replicas share this machine's CPUs.")
    else:
        lines.append("If replicas only load slowly, raise ray.start_timeout_s; `serve status` and the replica "
                     "logs under /tmp/ray/session_latest/logs/serve say more.")
    return "\n".join(lines)


def wait_running(app_name: str, plan: Sequence[Ask], timeout_s: float, say: Say) -> None:
    """Report each deployment's replicas as they change until the application runs; RayStartError when
    it fails to deploy or is not running after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    while True:
        app = serve.status().applications.get(app_name)
        for ask in plan:
            line = _progress(ask, app.deployments.get(ask.deployment) if app is not None else None)
            if shown.get(ask.deployment) != line:
                shown[ask.deployment] = line
                say(line)
        status = getattr(app.status, "value", app.status) if app is not None else ""
        if status == "RUNNING":
            return
        if app is not None and status == "DEPLOY_FAILED":
            raise RayStartError(f"Ray Serve could not deploy application {app_name!r}: {app.message.strip()}")
        if time.monotonic() > deadline:
            raise RayStartError(explain(app_name, plan, app, timeout_s))
        time.sleep(POLL_S)
