"""The gRPC server: RewardService + health + reflection, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rewardsvc import caller, messages, threads
from rewardsvc.config import Config, ServerConfig
from rewardsvc.errors import ConfigError, RewardServiceError
from rewardsvc.heap import startup_heap
from rewardsvc.logs import safe
from rewardsvc.server.auth import BearerTokenInterceptor, load_token
from rewardsvc.server.prometheus import Metrics
from rewardsvc.server.reward_health import health_to_pb, reward_health
from rewardsvc.service import ScoringService, ServingCore
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from rewardsvc.server.http import HttpEndpoint

log = logging.getLogger(__name__)
T = TypeVar("T")
Msg = TypeVar("Msg", bound=Message)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RewardService"].full_name

#: Requests of one ScoreStream scored or waiting to be sent at once, unless configured.
DEFAULT_STREAM_RESPONSES = 16


class CallContext(Protocol):
    """The part of grpc.aio.ServicerContext the servicer uses (the Ray ingress passes its own)."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


class RewardServicer(pb_grpc.RewardServiceServicer):
    """rewardsvc.v1 over a ServingCore: protobuf in and out, request-level errors as status codes."""

    def __init__(self, service: ServingCore, metrics: Metrics | None = None, log_items: bool = False,
                 max_stream_responses: int = DEFAULT_STREAM_RESPONSES) -> None:
        self.service = service
        self.metrics = metrics
        self.log_items = log_items
        self.max_stream_responses = max_stream_responses
        self.ready = False
        # Set by stop(): new requests are refused with UNAVAILABLE by the servicer itself while the
        # accepted ones finish, so no call reaches gRPC's own shutdown, which cancels what it holds.
        self.draining = False
        self.in_flight = 0
        self.last_arrival = 0.0  # time.monotonic() of the latest Score request, refused ones included

    async def _score(self, request: pb.ScoreRequest, peer: str | None = None) -> pb.ScoreResponse:
        self.last_arrival = time.monotonic()
        if self.draining:
            raise _NotReady(DRAINING)
        if not self.ready:
            raise _NotReady(LOADING)
        if peer is not None:  # the caller is the client's connection: queues take turns between them
            self.in_flight += 1
            try:
                with caller.acting_for(peer):
                    return await self._score(request)
            finally:
                self.in_flight -= 1
        t0 = time.perf_counter()
        code = "OK"
        errors: dict[str, int] = {}
        # Only scorer names that exist become metric labels, so clients can't blow up cardinality.
        label = request.scorer if self.service.has_scorer(request.scorer) else "unknown"
        try:
            items = await _off_loop_if_big(len(request.items),
                                           lambda: [messages.item_from_pb(i) for i in request.items])
            options = messages.options_from_struct(request.options)
            results, timing = await self.service.score_timed(request.scorer, items, options)
            for r in results:
                if r.error is not None:
                    errors[r.error.code.value] = errors.get(r.error.code.value, 0) + 1
        except RewardServiceError as exc:
            code = exc.grpc_code
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            elapsed = time.perf_counter() - t0
            if self.metrics is not None:
                self.metrics.record(label, code, len(request.items), elapsed, errors)
            fields = {"request_id": safe(request.request_id), "scorer": safe(request.scorer),
                      "items": len(request.items), "item_errors": sum(errors.values()), "code": code,
                      "ms": round(elapsed * 1000, 1)}
            if self.log_items:
                fields["item_ids"] = [safe(i.id) for i in request.items[:100]]
                fields["responses"] = [i.response_text[:200] for i in request.items][:100]
            log.info("score %s", " ".join(f"{k}={v}" for k, v in fields.items() if k != "responses"), extra=fields)

        def respond() -> pb.ScoreResponse:
            # Reward health (server/reward_health.py): in the response, and counted for /metrics.
            if self.metrics is not None:
                health = self.metrics.observe_health(label, items, results)
            else:
                health = reward_health(items, results)
            response = pb.ScoreResponse(
                request_id=request.request_id,
                scorer=request.scorer,
                metadata=pb.ScoreMetadata(
                    items=len(results), queue_time_ns=timing.queue_time_ns, compute_time_ns=timing.compute_time_ns,
                    deduplicated_items=timing.deduplicated_items, cache_hits=timing.cache_hits,
                    health=health_to_pb(health),
                ),
            )
            add = response.results.add
            for r in results:
                messages.fill_result(add(), r)
            return response

        return await _off_loop_if_big(len(results), respond)

    async def Score(self, request: pb.ScoreRequest, context: CallContext) -> pb.ScoreResponse:
        try:
            return await self._score(request, _peer(context))
        except _NotReady as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except RewardServiceError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
        raise AssertionError("unreachable")

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest], context: CallContext | None
    ) -> AsyncIterator[pb.ScoreResponse]:
        """Requests are scored concurrently and answered as they finish. A request is read only
        when fewer than `max_stream_responses` of this stream's requests are being scored or wait
        to be sent: a client that stops reading responses stops the server reading its requests
        (gRPC flow control then stops the client), instead of growing the server's memory."""
        peer = _peer(context)
        slots = asyncio.Semaphore(self.max_stream_responses)
        out: asyncio.Queue[pb.ScoreResponse | None] = asyncio.Queue()  # holds at most that many
        tasks: set[asyncio.Task] = set()

        async def one(request: pb.ScoreRequest) -> None:
            try:
                response = await self._score(request, peer)
            except _NotReady as exc:
                response = _request_error(request, "UNAVAILABLE", str(exc))
            except RewardServiceError as exc:
                response = _request_error(request, exc.grpc_code, str(exc))
            except Exception as exc:  # a bug must not leave the request unanswered
                log.exception("ScoreStream request %s failed", safe(request.request_id))
                response = _request_error(request, "INTERNAL", f"{type(exc).__name__}: {safe(exc, 500)}")
            await out.put(response)

        async def reader() -> None:
            try:
                while True:
                    await slots.acquire()  # released once this request's response is sent
                    try:
                        request = await anext(request_iterator)
                    except StopAsyncIteration:
                        break
                    task = asyncio.create_task(one(request))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                await out.put(None)

        reader_task = asyncio.create_task(reader())
        try:
            while (response := await out.get()) is not None:
                yield response
                slots.release()
        finally:
            reader_task.cancel()
            for t in list(tasks):
                t.cancel()

    async def ListScorers(
        self, request: pb.ListScorersRequest, context: CallContext | None
    ) -> pb.ListScorersResponse:
        return pb.ListScorersResponse(
            scorers=[
                pb.ScorerInfo(
                    name=s["name"],
                    kind=s["kind"],
                    description=s["description"],
                    options=[pb.OptionInfo(**o) for o in s["options"]],
                )
                for s in self.service.scorer_infos()
            ]
        )


class _NotReady(Exception):
    """UNAVAILABLE with this message: the server can't take the request now (loading or draining)."""


LOADING = "server is still loading its scorers; retry shortly"
# The drain's quiet moment: no Score call for DRAIN_QUIET_S, waited for at most DRAIN_QUIET_MAX_S.
DRAIN_QUIET_S = 0.3
DRAIN_QUIET_MAX_S = 3.0
DRAINING = "server is shutting down (draining in-flight calls); retry on another server or after its restart"


#: Requests with more items than this are converted (protobuf <-> types) on a thread: ~10-30 us of
#: Python per item, so 8,000 items held the event loop (and every health check) for a second.
BIG_REQUEST_ITEMS = 256
#: Request bytes beyond this are parsed on a thread (64 MB of protobuf takes a while even in C).
BIG_REQUEST_BYTES = 1 << 20


async def _off_loop_if_big(n: int, work: Callable[[], T]) -> T:
    return await threads.off_loop(work) if n > BIG_REQUEST_ITEMS else work()


def _request_error(request: pb.ScoreRequest, code: str, message: str) -> pb.ScoreResponse:
    """A ScoreStream request that failed as a whole: the error once, whatever the request's size."""
    return pb.ScoreResponse(request_id=request.request_id, scorer=request.scorer[:200],
                            error=pb.RequestError(code=code, message=message))


def _peer(context: object) -> str | None:
    """The client's connection ("ipv4:127.0.0.1:54321"): the caller whose turn queues take."""
    peer = getattr(context, "peer", None)
    if peer is None:
        return None
    try:
        return str(peer())
    except Exception:  # a context that can't say (the Ray proxy's): each request its own caller
        return None


def _parse(cls: type[Msg], data: bytes) -> Msg:
    msg = cls()
    msg.ParseFromString(data)
    return msg


def raw_handlers(servicer: RewardServicer) -> grpc.GenericRpcHandler:
    """Handlers that decode requests themselves: grpc's own decoding answers corrupt bytes with
    UNKNOWN and a logged traceback; this answers INVALID_ARGUMENT saying what was wrong."""
    bad = "request is not a valid {}: {}; send a serialized rewardsvc.v1 message"

    async def parse_request(data: bytes) -> pb.ScoreRequest:
        if len(data) > BIG_REQUEST_BYTES:
            return await threads.off_loop(_parse, pb.ScoreRequest, data)
        return _parse(pb.ScoreRequest, data)

    async def score(data: bytes, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        try:
            request = await parse_request(data)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.format("ScoreRequest", exc))
        return await servicer.Score(request, context)

    async def score_stream(data_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                           ) -> AsyncIterator[pb.ScoreResponse]:
        async def requests() -> AsyncIterator[pb.ScoreRequest]:
            async for data in data_iterator:
                try:
                    request = await parse_request(data)
                except DecodeError as exc:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.format("ScoreRequest", exc))
                yield request

        async for response in servicer.ScoreStream(requests(), context):
            yield response

    async def list_scorers(data: bytes, context: grpc.aio.ServicerContext) -> pb.ListScorersResponse:
        try:
            request = _parse(pb.ListScorersRequest, data)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, bad.format("ListScorersRequest", exc))
        return await servicer.ListScorers(request, context)

    ser = lambda m: m.SerializeToString()  # noqa: E731
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        "Score": grpc.unary_unary_rpc_method_handler(score, None, ser),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(score_stream, None, ser),
        "ListScorers": grpc.unary_unary_rpc_method_handler(list_scorers, None, ser),
    })


class RewardServer:
    """Owns the grpc.aio server, the health service and the ScoringService's lifetime."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.service = ScoringService(config)
        self.metrics = Metrics(self.service)
        self.servicer = RewardServicer(self.service, self.metrics, config.server.log_items,
                                       config.server.max_stream_responses)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http: HttpEndpoint | None = None  # the opt-in HTTP/JSON port (server/http.py)
        self.http_port: int | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    async def start(self) -> None:
        """Bind, answer health NOT_SERVING while scorers load, then SERVING."""
        cfg = self.config.server
        credentials = server_credentials(cfg)
        token = load_token(cfg)
        if credentials is None and token is None and not _is_loopback(cfg.host) and not cfg.allow_insecure_remote:
            raise ConfigError(
                f"refusing to serve plaintext without auth on {cfg.host}: configure tls_cert_file/tls_key_file "
                "and/or a bearer token (auth_token_file or $" + cfg.auth_token_env + "), bind 127.0.0.1, "
                "or set allow_insecure_remote: true if a trusted network layer protects it"
            )
        self._server = grpc.aio.server(
            interceptors=[BearerTokenInterceptor(token)] if token else None,
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
        )
        self._server.add_generic_rpc_handlers((raw_handlers(self.servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        bind = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
        try:
            if credentials is None:
                self.port = self._server.add_insecure_port(bind)
            else:
                self.port = self._server.add_secure_port(bind, credentials)
        except RuntimeError as exc:
            raise OSError(f"cannot bind {bind} ({exc}); is another server using that port?") from None
        if cfg.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve(cfg.metrics_host, cfg.metrics_port, token)
            except OSError as exc:
                raise OSError(f"cannot bind the metrics port {cfg.metrics_host}:{cfg.metrics_port} ({exc}); "
                              "set server.metrics_port to another port, 0 for any, or null to disable") from None
        if cfg.http_port is not None:
            # Imported only for the opt-in port: aiohttp is half the server's import time (~0.25 s).
            from rewardsvc.server.http import HttpEndpoint
            from rewardsvc.server.http import ssl_context as http_ssl_context

            self.http = HttpEndpoint(self.service, cfg, token, lambda: self.servicer.ready, self.metrics)
            self.http_port = await self.http.start(cfg.host, cfg.http_port, http_ssl_context(cfg), cfg.shutdown_grace_s)
        # One health name per scorer too (messages.health_service), so a probe or `rewardsvc health
        # --scorer` can wait for the scorer it needs; all flip to SERVING when scoring is possible.
        names = ["", SERVICE_NAME] + [messages.health_service(s.name) for s in self.config.scorers]
        for name in names:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        await self.service.start()
        self.servicer.ready = True
        for name in names:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, let in-flight calls finish within the grace."""
        grace = self.config.server.shutdown_grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        self.servicer.draining = True
        http_drained = asyncio.create_task(self.http.stop()) if self.http is not None else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.servicer.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        # Then a quiet moment: a caller whose answer just went out often sends its next call at once.
        # Reaching the servicer, that call is refused with UNAVAILABLE (retry elsewhere); still queued
        # in gRPC when its shutdown starts, it would be CANCELLED, which clients do not retry.
        quiet_until = min(deadline, loop.time() + DRAIN_QUIET_MAX_S)
        while loop.time() < quiet_until and time.monotonic() - self.servicer.last_arrival < DRAIN_QUIET_S:
            await asyncio.sleep(0.05)
        if self._server is not None:
            await self._server.stop(max(0.0, deadline - loop.time()))
        if http_drained is not None:
            await http_drained
        await self.service.close()
        self.metrics.stop()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(config: Config, ready_message: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then drain and return (the CLI exits 0)."""
    server = RewardServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.perf_counter()
    # This process's start-up: the scorers' imports and models. Not in RewardServer.start, which runs in
    # other processes too (the demo's): freezing is a choice for the process that owns its heap.
    with startup_heap():
        await server.start()
    names = ", ".join(server.service.scorers) or "none"
    metrics = (f"; metrics: http://{config.server.metrics_host}:{server.metrics_port}/metrics"
               if server.metrics_port else "")
    if server.http_port is not None:
        metrics = f"; http: http://{config.server.host}:{server.http_port}" + metrics
    if ready_message:
        first = next(iter(server.service.scorers), "math")
        print(
            f"rewardsvc ready on {server.address} in {time.perf_counter() - t0:.1f}s "
            f"(config: {config.source}; scorers: {names}{metrics})\n"
            f"  try: echo '{{\"id\": \"1\", \"prompt\": \"1+1?\", \"response\": \"\\\\boxed{{2}}\", "
            f"\"reference\": \"2\"}}' | rewardsvc score --scorer {first} --address {server.address}",
            flush=True,
        )
    await stop.wait()
    log.info("shutting down: draining in-flight calls (grace %.0fs)", config.server.shutdown_grace_s)
    print("rewardsvc: shutting down, draining in-flight calls", flush=True)
    await server.stop()
    print("rewardsvc: stopped", flush=True)




def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS from config; with tls_client_ca_file, clients must present a certificate (mTLS)."""
    if not cfg.tls_cert_file and not cfg.tls_key_file:
        if cfg.tls_client_ca_file:
            raise ConfigError("tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS is on top of TLS)")
        return None
    if not (cfg.tls_cert_file and cfg.tls_key_file):
        raise ConfigError("TLS needs both tls_cert_file and tls_key_file")
    try:
        cert = Path(cfg.tls_cert_file).read_bytes()
        key = Path(cfg.tls_key_file).read_bytes()
        ca = Path(cfg.tls_client_ca_file).read_bytes() if cfg.tls_client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"cannot read a TLS file: {exc}") from None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
