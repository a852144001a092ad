"""The Ray Serve application: one deployment per configured scorer, and a gRPC ingress speaking rewardsvc.v1.

    client --gRPC--> Ray Serve gRPC proxy --> Ingress deployment --handle--> scorer deployment "math" (N replicas)
                                                                 \\-handle--> scorer deployment "rm"   (GPU replicas)

Each scorer replica hosts a ScoringService with that one scorer, so item checks, limits and "one result
per item" are exactly those of the plain server; the ingress reuses the plain server's servicer. A
composite scorer's replica reaches its component scorers through their deployments. A call whose replica
dies is re-sent to another replica: scoring is read-only, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import grpc
import ray
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.config import gRPCOptions
from ray.serve.exceptions import ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from rewardsvc import messages
from rewardsvc.config import Config, ScorerSpec
from rewardsvc.errors import ConfigError, RewardServiceError, UnknownScorerError
from rewardsvc.heap import startup_heap
from rewardsvc.rayserve.layout import (
    INGRESS_NAME,
    Ask,
    asks,
    deployment_order,
    fit_workers,
    peer_names,
    with_cpu_defaults,
)
from rewardsvc.rayserve.options import RayConfig
from rewardsvc.rayserve.startup import (
    RayStartError,
    cluster_resources,
    never_fits,
    plan_lines,
    serve_failed,
    wait_running,
)
from rewardsvc.registry import scorer_class, scorer_infos
from rewardsvc.scorers.base import Scorer
from rewardsvc.server.app import SERVICE_NAME, RewardServicer
from rewardsvc.server.auth import load_token
from rewardsvc.service import ScoreTiming, ScoringService
from rewardsvc.types import Item, Result
from rewardsvc.v1 import reward_pb2 as pb

log = logging.getLogger(__name__)

# Ray's gRPC proxy routes these services' methods to the ingress deployment's methods of the same name.
SERVICER_FUNCTIONS = [
    "rewardsvc.v1.reward_pb2_grpc.add_RewardServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]
# The replica went away (killed, node lost, scaled down) before answering: not a scoring failure.
REPLICA_GONE = (ray.exceptions.RayActorError, ReplicaUnavailableError)
REPLICA_RETRIES = 6
# Per readiness check of a Serve proxy on a local Ray this process starts (Ray's default: 5 s).
LOCAL_PROXY_READY_CHECK_S = 30.0
# Calls re-sent after losing their replica, per deployment, in this process (Ingress.stats reports them).
RESENT: collections.Counter[str] = collections.Counter()


class ReplicasUnavailableError(RewardServiceError):
    grpc_code = "UNAVAILABLE"


async def call_replica(handle: DeploymentHandle, method: str, *args: Any) -> Any:
    """`handle.method.remote(*args)`, re-sent to another replica when the one picked dies under it."""
    for attempt in range(REPLICA_RETRIES + 1):
        try:
            return await getattr(handle, method).remote(*args)
        except REPLICA_GONE as exc:
            if attempt == REPLICA_RETRIES:
                raise ReplicasUnavailableError(
                    f"deployment {handle.deployment_name!r}: replicas kept failing ({type(exc).__name__}); "
                    "retry later, and check `serve status` / the Ray dashboard"
                ) from None
            log.warning("deployment %s: replica lost (%s); re-sending to another", handle.deployment_name,
                        type(exc).__name__)
            RESENT[handle.deployment_name] += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        except ray.exceptions.RayTaskError as exc:
            # Request-level errors (unknown options, limits) keep their gRPC status across the hop.
            if isinstance(exc.cause, RewardServiceError):
                raise exc.cause from None
            raise
    raise AssertionError("unreachable")


class PeerScorer(Scorer):
    """Another deployment's scorer as a composite's local peer: same Options, scored over a handle.

    Its item checks run remotely (the peer's own ScoringService answers bad items with INVALID_ITEM).
    """

    def __init__(self, spec: ScorerSpec, handle: DeploymentHandle) -> None:
        super().__init__(spec.name, spec.config)
        cls = scorer_class(spec.type)
        self.kind, self.description, self.Options = cls.kind, cls.description, cls.Options  # type: ignore[misc]
        self.handle = handle

    async def score(self, items: Sequence[Item], options: Any) -> list[Result]:
        opts = (dataclasses.asdict(options)
                if dataclasses.is_dataclass(options) and not isinstance(options, type) else {})
        results, _ = await call_replica(self.handle, "score_timed", list(items), opts)
        return results


class ScorerDeployment:
    """One replica of one scorer: a ScoringService hosting just that scorer."""

    async def __init__(  # type: ignore[misc]  # Ray Serve awaits an async constructor
            self, config: Config, name: str, peers: dict[str, DeploymentHandle]) -> None:
        self.name = name
        specs = {s.name: s for s in config.scorers}
        self.replica = serve.get_replica_context().replica_id.to_full_id_str()
        self.service = ScoringService(dataclasses.replace(config, scorers=[specs[name]], ray=None))
        # ScoringService.start() passes its `scorers` to each scorer as peers: the remote ones go in first.
        for peer, handle in peers.items():
            self.service.scorers[peer] = PeerScorer(specs[peer], handle)
        with startup_heap():  # a replica is a process of its own (Ray Serve: one actor per replica)
            await self.service.start()

    async def score_timed(self, items: list[Item], options: dict[str, Any]) -> tuple[list[Result], ScoreTiming]:
        results, timing = await self.service.score_timed(self.name, items, options)
        for r in results:
            r.details["replica"] = self.replica  # which replica answered: for load and failure checks
        return results, timing

    async def __del__(self) -> None:
        await self.service.close()


class ServeBackedService:
    """The ServingCore the ingress's RewardServicer uses, answered by the scorer deployments."""

    def __init__(self, handles: dict[str, DeploymentHandle], infos: list[dict[str, Any]]) -> None:
        self.scorers = handles
        self.infos = infos

    def has_scorer(self, name: str) -> bool:
        return name in self.scorers

    def scorer_infos(self) -> list[dict[str, Any]]:
        return self.infos

    async def score_timed(
        self, scorer_name: str, items: Sequence[Item], options: dict[str, Any] | None = None
    ) -> tuple[list[Result], ScoreTiming]:
        handle = self.scorers.get(scorer_name)
        if handle is None:
            raise UnknownScorerError(f"no scorer named {scorer_name!r} on this server; hosted: {sorted(self.scorers)}")
        return await call_replica(handle, "score_timed", list(items), options or {})


class _Aborted(Exception):
    pass


class _RayContext:
    """Gives RewardServicer the one ServicerContext call it makes (abort) on Ray's gRPC context."""

    def __init__(self, context: Any) -> None:
        self.context = context

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.context.set_code(code)
        self.context.set_details(details)
        raise _Aborted(details)


class Ingress:
    """The gRPC ingress: rewardsvc.v1.RewardService and grpc.health.v1.Health, as the plain server."""

    def __init__(self, handles: dict[str, DeploymentHandle], infos: list[dict[str, Any]], log_items: bool,
                 token: str | None) -> None:
        # `token` is resolved where the app is built: replicas don't share the deploying process's environment.
        self.servicer = RewardServicer(ServeBackedService(handles, infos), None, log_items)
        self.servicer.ready = True  # Serve sends traffic only once every deployment is up
        self.expected = f"Bearer {token}" if token else None
        # As the plain server: one health name per scorer (Serve sends traffic only once all run).
        self.health_names = {"", SERVICE_NAME} | {messages.health_service(name) for name in handles}

    def _authorized(self, context: Any) -> bool:
        if self.expected is None:
            return True
        got = dict(context.invocation_metadata()).get("authorization", "")
        got = got.decode() if isinstance(got, bytes) else got
        if hmac.compare_digest(got.encode(), self.expected.encode()):
            return True
        context.set_code(grpc.StatusCode.UNAUTHENTICATED)
        context.set_details("missing or wrong bearer token: send metadata 'authorization: Bearer <token>' "
                            "(RewardClient(token=...))")
        return False

    async def Score(self, request: pb.ScoreRequest, grpc_context: Any) -> pb.ScoreResponse:
        if not self._authorized(grpc_context):
            raise _Aborted("unauthenticated")
        return await self.servicer.Score(request, _RayContext(grpc_context))

    async def ScoreStream(self, requests: AsyncIterator[pb.ScoreRequest],
                          grpc_context: Any) -> AsyncIterator[pb.ScoreResponse]:
        if not self._authorized(grpc_context):
            raise _Aborted("unauthenticated")
        async for response in self.servicer.ScoreStream(requests, None):
            yield response

    async def ListScorers(self, request: pb.ListScorersRequest, grpc_context: Any) -> pb.ListScorersResponse:
        if not self._authorized(grpc_context):
            raise _Aborted("unauthenticated")
        return await self.servicer.ListScorers(request, None)

    async def Check(self, request: health_pb2.HealthCheckRequest, grpc_context: Any) -> health_pb2.HealthCheckResponse:
        # Open without a token, like the plain server: kubelet probes carry none.
        if request.service not in self.health_names:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}")
            raise _Aborted("unknown service")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def stats(self) -> dict[str, dict[str, int]]:
        """Over a DeploymentHandle (not gRPC): calls this ingress re-sent after their replica died."""
        return {"resent": dict(RESENT)}


def build_app(config: Config) -> serve.Application:
    """The bound application: scorer deployments in dependency order, then the ingress over them."""
    # Unset num_cpus is 1 here; `start` has already sized them for a local Ray it started.
    rc = with_cpu_defaults(config.ray or RayConfig(), [s.name for s in config.scorers], None)
    bound: dict[str, serve.Application] = {}
    for name in deployment_order(config):
        spec = next(s for s in config.scorers if s.name == name)
        opts = rc.for_scorer(name)
        fitted = fit_workers(spec, opts.ray_actor_options.num_cpus or 0.0)
        cfg = dataclasses.replace(config, scorers=[fitted if s.name == name else s for s in config.scorers])
        # serve.deployment()(cls) is serve.deployment(cls), in the form Ray's annotations describe.
        deployment = serve.deployment()(ScorerDeployment).options(name=name, **opts.to_serve())
        bound[name] = deployment.bind(cfg, name, {p: bound[p] for p in peer_names(spec)})
    ingress = serve.deployment()(Ingress).options(name=INGRESS_NAME, **rc.ingress.to_serve())
    return ingress.bind(bound, scorer_infos(config.scorers), config.server.log_items, load_token(config.server))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_servable(config: Config) -> None:
    """Refuse what Ray's gRPC proxy can't honour rather than serve it silently weaker."""
    cfg = config.server
    if cfg.tls_cert_file or cfg.tls_key_file or cfg.tls_client_ca_file:
        raise ConfigError(
            "Ray Serve's gRPC proxy serves plaintext only: terminate TLS in front of it (a Kubernetes "
            "Ingress or service mesh) and drop tls_* from the config, or serve without --ray"
        )
    if load_token(cfg) is None and not cfg.allow_insecure_remote:
        raise ConfigError(
            "Ray Serve's gRPC proxy listens on every interface: configure a bearer token (auth_token_file or "
            f"${cfg.auth_token_env}), or set server.allow_insecure_remote: true if a trusted network protects it"
        )


def _say(line: str) -> None:
    print(line, flush=True)


def start(config: Config, address: str | None = None, say: Callable[[str], None] = _say) -> str:
    """Deploy the application on Ray (connecting or starting it), reporting each deployment's replicas as
    they start; returns the gRPC address clients use. RayStartError after ray.start_timeout_s, or at
    once when the replicas can never all fit on the local Ray this call starts (before starting it when
    they ask for more CPUs than the machine has)."""
    check_servable(config)
    rc: RayConfig = config.ray or RayConfig()
    port = rc.grpc_port or config.server.port or free_port()
    target = address or rc.address
    local = False
    if not ray.is_initialized():
        extra: dict[str, Any] = {}
        local = target is None and not os.environ.get("RAY_ADDRESS")
        if local:
            # CPUs are known before Ray starts (~10-20 s): a layout that can never fit them fails now. Ray gets
            # exactly the count checked; GPUs and memory are checked once it runs.
            extra["num_cpus"] = cpus = local_cpus()
            _fail_if_never_fits(config, rc, {"CPU": cpus}, say)
            # Ray Serve gives a new proxy three readiness checks of 5 s, then kills it, and serve.start fails
            # with it. A first proxy imports Serve in a fresh worker: on a busy small machine that takes longer.
            # The Ray started here (and its Serve controller) inherits this environment.
            os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", str(LOCAL_PROXY_READY_CHECK_S))
            if config.server.host in ("127.0.0.1", "localhost"):
                # A loopback server's local Ray names loopback as its node address (Ray would use the host's
                # IP). Ray's own ports still listen on every interface, behind Ray's token authentication.
                extra["_node_ip_address"] = "127.0.0.1"
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False, **extra)
        except ConnectionError as exc:
            raise not_joined(exc) from exc
        if local:
            say(joinable_line(ray.get_runtime_context().gcs_address))
    total, _ = cluster_resources()
    rc, plan = _planned(config, rc, total.get("CPU", 0.0) if local else None)
    config = dataclasses.replace(config, ray=rc)
    where_ray = "a local Ray" if local else f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
    for line in plan_lines(plan, total, where_ray, rc.start_timeout_s, can_grow=not local):
        say(line)
    if local and (error := never_fits(plan, total)):
        raise error
    t0 = time.monotonic()
    options: dict[str, Any] = {
        "proxy_location": rc.proxy_location, "http_options": {"host": config.server.host, "port": rc.http_port},
        "grpc_options": gRPCOptions(port=port, grpc_servicer_functions=SERVICER_FUNCTIONS,
                                    request_timeout_s=rc.request_timeout_s)}
    try:
        try:
            serve.start(**options)
        except TimeoutError:
            # Serve waits a fixed 60 s for its proxies, which go on starting (a busy machine). Its controller
            # runs: connect to it, and the wait for the gRPC proxy below holds to ray.start_timeout_s.
            say("rewardsvc ray: Ray Serve's proxies are not ready after its 60 s; waiting up to "
                f"ray.start_timeout_s={rc.start_timeout_s:g}s")
            serve.start(**options)
    except Exception as exc:
        raise serve_failed(exc, where_ray, rc.http_port, port) from exc
    # The app needs a route to be reachable through the proxies at all; gRPC ignores its value.
    # serve.run would block, silently, until every replica runs; this deploys and watches instead.
    serve._run(build_app(config), name=rc.app_name, route_prefix=f"/{rc.app_name}", _blocking=False)
    wait_running(rc.app_name, plan, rc.start_timeout_s, say)
    # The head node always runs a proxy; clients may use any node's.
    where = f"{head_node_ip()}:{port}"
    if not (target or "").startswith("ray://"):  # a Ray Client driver may not reach the cluster's ports
        wait_serving(where, max(10.0, rc.start_timeout_s - (time.monotonic() - t0)))
    return where


def _sends_token() -> bool:
    """Whether Ray here sends its token (~/.ray/auth_token) to an explicit address: only under
    RAY_AUTH_MODE=token. A local Ray enables token auth unless RAY_AUTH_MODE says otherwise."""
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def not_joined(exc: ConnectionError) -> RayStartError:
    """Ray's ConnectionError, with the cause Ray only logs when it is token auth."""
    hint = ""
    if not _sends_token():
        hint = (": if its log says InvalidAuthToken, the cluster has token auth (a local Ray does by default) and "
                "Ray sends the token to an explicit address only under RAY_AUTH_MODE=token: set it, with the "
                "cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN")
    return RayStartError(f"{exc}{hint}")


def joinable_line(gcs: str) -> str:
    """How other servers and drivers join the local Ray this process started."""
    auth = "RAY_AUTH_MODE=token and " if _sends_token() else ""
    return (f"rewardsvc ray: started a local Ray at {gcs}; it stops with this server. Other servers and "
            f"drivers join it with {auth}--ray-address {gcs}")


def local_cpus() -> int:
    """The CPUs a Ray started here would count (cgroup limits included), as Ray itself counts them."""
    try:
        from ray._private.utils import get_num_cpus

        return int(get_num_cpus())
    except (ImportError, AttributeError):  # a Ray without that private helper
        return len(os.sched_getaffinity(0))


def _planned(config: Config, rc: RayConfig, local_cpus: float | None) -> tuple[RayConfig, list[Ask]]:
    """`rc` with every deployment's CPUs set (`with_cpu_defaults`) and what each deployment asks for."""
    rc = with_cpu_defaults(rc, [s.name for s in config.scorers], local_cpus)
    return rc, asks(rc, deployment_order(config))


def _fail_if_never_fits(config: Config, rc: RayConfig, have: dict[str, float], say: Callable[[str], None]) -> None:
    """Before a local Ray starts: the plan and RayStartError when its replicas ask for more than `have`."""
    rc, plan = _planned(config, rc, have["CPU"])
    cpu_only = [dataclasses.replace(a, per_replica={"CPU": a.per_replica.get("CPU", 0.0)}) for a in plan]
    if error := never_fits(cpu_only, have):
        for line in plan_lines(plan, have, "a local Ray", rc.start_timeout_s, can_grow=False):
            say(line)
        raise error


def head_node_ip() -> str:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeManagerAddress"])
    return "127.0.0.1"


def wait_serving(address: str, timeout_s: float = 120.0) -> None:
    """Block until the proxy routes health checks to the ingress (routes reach proxies a moment late)."""
    from grpc_health.v1 import health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                why = "not SERVING"
            except grpc.RpcError as exc:
                why = f"{exc.code().name}: {exc.details()}"
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Ray Serve gRPC proxy at {address} not serving after {timeout_s:.0f}s ({why}); if Serve was "
                    "already running on this cluster, its gRPC port and servicer functions win: set ray.grpc_port "
                    "to its port, or `serve shutdown` first"
                )
            time.sleep(0.2)


def app_builder(args: dict[str, str]) -> serve.Application:
    """Entry point for a Serve config file or KubeRay's serveConfigV2:
    `import_path: rewardsvc.rayserve.app:app_builder` with `args: {config: /path/to/config.yaml}`."""
    from rewardsvc.config import load_config

    config = load_config(args.get("config"))
    check_servable(config)
    return build_app(config)
