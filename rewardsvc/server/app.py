"""The gRPC server: RewardService + health + reflection, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rewardsvc import wire
from rewardsvc.config import Config
from rewardsvc.errors import RewardServiceError
from rewardsvc.service import ScoringService
from rewardsvc.types import ErrorCode, Result
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

log = logging.getLogger("rewardsvc.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RewardService"].full_name

# A request-level error inside ScoreStream can't end the stream for the other requests, so it
# becomes the same error on each of that request's items.
_STREAM_ERROR_CODES = {
    "NOT_FOUND": ErrorCode.INVALID_ITEM,
    "INVALID_ARGUMENT": ErrorCode.INVALID_ITEM,
    "RESOURCE_EXHAUSTED": ErrorCode.RESOURCE_EXHAUSTED,
}


class RewardServicer(pb_grpc.RewardServiceServicer):
    def __init__(self, service: ScoringService) -> None:
        self.service = service
        self.ready = False

    async def _score(self, request: pb.ScoreRequest) -> pb.ScoreResponse:
        if not self.ready:
            raise _NotReady()
        items = [wire.item_from_pb(i) for i in request.items]
        options = wire.options_from_struct(request.options)
        results, timing = await self.service.score_timed(request.scorer, items, options)
        return pb.ScoreResponse(
            request_id=request.request_id,
            scorer=request.scorer,
            results=[wire.result_to_pb(r) for r in results],
            metadata=pb.ScoreMetadata(
                items=len(results), queue_time_ns=timing.queue_time_ns, compute_time_ns=timing.compute_time_ns
            ),
        )

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        try:
            return await self._score(request)
        except _NotReady:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is still loading its scorers; retry shortly")
        except RewardServiceError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
        raise AssertionError("unreachable")

    async def ScoreStream(
        self, request_iterator: AsyncIterator[pb.ScoreRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScoreResponse]:
        out: asyncio.Queue[pb.ScoreResponse | None] = asyncio.Queue()
        tasks: set[asyncio.Task] = set()

        async def one(request: pb.ScoreRequest) -> None:
            try:
                response = await self._score(request)
            except (RewardServiceError, _NotReady) as exc:
                code = _STREAM_ERROR_CODES.get(getattr(exc, "grpc_code", ""), ErrorCode.INTERNAL)
                if isinstance(exc, _NotReady):
                    code, msg = ErrorCode.RESOURCE_EXHAUSTED, "server is still loading its scorers; retry"
                else:
                    msg = str(exc)
                response = pb.ScoreResponse(
                    request_id=request.request_id,
                    scorer=request.scorer,
                    results=[wire.result_to_pb(Result.failed(i.id, code, msg)) for i in request.items],
                )
            await out.put(response)

        async def reader() -> None:
            try:
                async for request in request_iterator:
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
        finally:
            reader_task.cancel()
            for t in list(tasks):
                t.cancel()

    async def ListScorers(
        self, request: pb.ListScorersRequest, context: grpc.aio.ServicerContext
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
    pass


class RewardServer:
    """Owns the grpc.aio server, the health service and the ScoringService's lifetime."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.service = ScoringService(config)
        self.servicer = RewardServicer(self.service)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.config.server.host}:{self.port}"

    async def start(self) -> None:
        """Bind, answer health NOT_SERVING while scorers load, then SERVING."""
        cfg = self.config.server
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
        )
        pb_grpc.add_RewardServiceServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        try:
            self.port = self._server.add_insecure_port(f"{cfg.host}:{cfg.port}")
        except RuntimeError as exc:
            raise OSError(f"cannot bind {cfg.host}:{cfg.port} ({exc}); is another server using that port?") from None
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()
        await self.service.start()
        self.servicer.ready = True
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, let in-flight calls finish within the grace."""
        grace = self.config.server.shutdown_grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        await self.service.close()

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
    await server.start()
    names = ", ".join(server.service.scorers) or "none"
    if ready_message:
        first = next(iter(server.service.scorers), "math")
        print(
            f"rewardsvc ready on {server.address} in {time.perf_counter() - t0:.1f}s "
            f"(config: {config.source}; scorers: {names})\n"
            f"  try: echo '{{\"id\": \"1\", \"prompt\": \"1+1?\", \"response\": \"\\\\boxed{{2}}\", "
            f"\"reference\": \"2\"}}' | rewardsvc score --scorer {first} --address {server.address}",
            flush=True,
        )
    await stop.wait()
    log.info("shutting down: draining in-flight calls (grace %.0fs)", config.server.shutdown_grace_s)
    print("rewardsvc: shutting down, draining in-flight calls", flush=True)
    await server.stop()
    print("rewardsvc: stopped", flush=True)


