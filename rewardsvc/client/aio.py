"""AsyncRewardClient: chunked, concurrent, retried scoring over gRPC; results in input order."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rewardsvc import messages
from rewardsvc.client.chunks import pack, refused_size, too_big_message, units
from rewardsvc.types import Item, Result, item_from_dict
from rewardsvc.v1 import reward_pb2 as pb
from rewardsvc.v1 import reward_pb2_grpc as pb_grpc

ItemLike = Item | dict[str, Any]

# Scoring is read-only, so a call that never reached a scorer or was refused for load can be
# re-sent; DEADLINE_EXCEEDED is not retried (the caller's time is spent) nor are caller errors.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})

# gRPC's reconnect backoff grows to 120 s by default: a server back after 10 s could go unnoticed
# for a minute. Capped at 1 s, a server that returns inside the connect wait is found at once.
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                     ("grpc.max_reconnect_backoff_ms", 1000)]


class RewardServiceCallError(RuntimeError):
    """A call failed at the request level (unknown scorer, bad options, server unreachable)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def as_item(x: ItemLike, index: int) -> Item:
    if isinstance(x, Item):
        return x
    try:
        item = item_from_dict(x)
    except ValueError as exc:
        raise ValueError(f"item {index}: {exc}") from None
    if "id" not in x:
        item.id = str(index)
    return item


def _refused_for_size(details: str) -> bool:
    return refused_size(details) is not None or too_big_message(details)


def _describe(address: str | Sequence[str]) -> str:
    return address if isinstance(address, str) else ", ".join(address)


def channel_target(address: str | Sequence[str]) -> tuple[str, list[tuple[str, Any]]]:
    """One gRPC target, load-balanced round-robin over every server it names.

    A string is any gRPC target: "host:port", or "dns:///name:port" where a name with several
    addresses (a Kubernetes headless Service) spreads over all of them and is re-resolved as servers
    come and go. A list of "host:port" becomes one static list; its host names are resolved here,
    once. Calls go only to servers whose connection is up, so retries move to a live one.
    """
    round_robin = [("grpc.lb_policy_name", "round_robin")]
    if isinstance(address, str):
        return address, round_robin
    addrs = list(address)
    if not addrs:
        raise ValueError("no server address given: pass 'host:port' or a list of them")
    if len(addrs) == 1:
        return addrs[0], round_robin
    resolved = [_resolve(a) for a in addrs]
    if all(v4 for v4, _ in resolved):
        return "ipv4:" + ",".join(a for v4, _ in resolved for a in v4), round_robin
    # Some host has only IPv6: one ipv6: list, IPv4 addresses written as v4-mapped IPv6.
    v6 = []
    for v4, only6 in resolved:
        v6 += only6 + ["[::ffff:{}]:{}".format(*a.rsplit(":", 1)) for a in v4]
    return "ipv6:" + ",".join(v6), round_robin


def _resolve(address: str) -> tuple[list[str], list[str]]:
    """("a.b.c.d:port" list, "[v6]:port" list) for one "host:port" (IP literals pass through)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"server address {address!r}: expected host:port (IPv6 as [addr]:port)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"server address {address!r}: cannot resolve {host!r} ({exc})") from None
    v4 = sorted({f"{i[4][0]}:{port}" for i in infos if i[0] == socket.AF_INET})
    v6 = sorted({f"[{i[4][0]}]:{port}" for i in infos if i[0] == socket.AF_INET6})
    return v4, v6


def tls_credentials(ca_file: str | None, cert_file: str | None = None,
                    key_file: str | None = None) -> grpc.ChannelCredentials:
    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    if bool(cert_file) != bool(key_file):
        raise ValueError("mutual TLS needs both tls_cert_file and tls_key_file")
    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


class AsyncRewardClient:
    """Score items on a rewardsvc server from asyncio code.

    Large batches are split into chunks of about `chunk_size` items sent concurrently (at most
    `max_in_flight` at once); items sharing a `group_id` always travel in one request. A chunk the
    server refuses for its size (max_items_per_request, max_message_bytes) is split and re-sent.
    RESOURCE_EXHAUSTED for load is retried `retries` times with jittered exponential backoff.

    Failure as a training loop needs it: a call that finds no server waits at most
    `connect_timeout_s` for one (a server restarted inside that window is used as if nothing
    happened), then fails with UNAVAILABLE naming the address; UNAVAILABLE answers and connections
    lost mid-call are re-sent within the same window. `retries=0` asks for exactly one attempt:
    no re-sending and no waiting for a server (UNAVAILABLE at once if none answers).
    """

    def __init__(
        self,
        address: str | Sequence[str] = "127.0.0.1:50051",
        *,
        timeout_s: float | None = 600.0,
        connect_timeout_s: float = 20.0,
        chunk_size: int = 256,
        max_in_flight: int = 8,
        retries: int = 5,
        backoff_s: float = 0.2,
        max_message_bytes: int = 64 << 20,
        token: str | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`token`: bearer token the server requires. TLS: `tls_ca_file` (the server's CA; PEM),
        plus `tls_cert_file`/`tls_key_file` for mutual TLS. `credentials` overrides all three.
        `timeout_s`: deadline of a whole call; `connect_timeout_s`: the longest a call waits for a
        server it can't reach."""
        if connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s must be > 0, got {connect_timeout_s}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        target, options = channel_target(address)
        options += RECONNECT_OPTIONS
        if credentials is None and (tls_ca_file or tls_cert_file):
            credentials = tls_credentials(tls_ca_file, tls_cert_file, tls_key_file)
        options += [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.RewardServiceStub(self._channel)
        self.address = address
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._server_max_items: int | None = None
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.backoff_s = backoff_s
        self.metadata = tuple(metadata) + ((("authorization", f"Bearer {token}"),) if token else ())

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unavailable(self, why: str) -> RewardServiceCallError:
        return RewardServiceCallError(
            grpc.StatusCode.UNAVAILABLE,
            f"no reward server reachable at {_describe(self.address)} within connect_timeout_s="
            f"{self.connect_timeout_s:g}s ({why}): is it running, and is the address right?")

    async def _connected(self, give_up_at: float) -> None:
        """Return once the channel is READY; UNAVAILABLE naming the address at `give_up_at`."""
        loop = asyncio.get_running_loop()
        state = self._channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            left = give_up_at - loop.time()
            if left <= 0:
                raise self._unavailable(f"connection {state.name.lower()}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._channel.wait_for_state_change(state), left)
            state = self._channel.get_state(try_to_connect=True)

    async def _call(self, request: pb.ScoreRequest, timeout_s: float | None) -> pb.ScoreResponse:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        down_since: float | None = None  # when this call first found no server to score it
        attempt = 0
        while True:
            # retries=0 asks for one attempt: no waiting for a server either (gRPC still connects an idle channel).
            if self.retries > 0 and self._channel.get_state(try_to_connect=True) != grpc.ChannelConnectivity.READY:
                down_since = loop.time() if down_since is None else down_since
                give_up_at = down_since + self.connect_timeout_s
                if deadline is not None and deadline < give_up_at:
                    try:
                        await self._connected(deadline)
                    except RewardServiceCallError:
                        raise RewardServiceCallError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"the call's deadline passed while waiting for a server at {_describe(self.address)}",
                        ) from None
                else:
                    await self._connected(give_up_at)
            remaining = None if deadline is None else max(0.001, deadline - loop.time())
            try:
                return await self._stub.Score(request, timeout=remaining, metadata=self.metadata or None)
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE and self.retries > 0:
                    down_since = loop.time() if down_since is None else down_since
                    if loop.time() - down_since >= self.connect_timeout_s:
                        raise self._unavailable(f"last answer: {details}") from None
                elif code == grpc.StatusCode.UNAVAILABLE:
                    raise RewardServiceCallError(
                        code, f"{details} (server {_describe(self.address)}; retries=0)") from None
                elif code not in RETRYABLE or attempt >= self.retries or _refused_for_size(details):
                    raise RewardServiceCallError(code, details) from None
                delay = self.backoff_s * (2 ** min(attempt, 6)) * random.uniform(0.5, 1.5)
                if deadline is not None and loop.time() + delay >= deadline:
                    raise RewardServiceCallError(code, details) from None
                attempt += 1
                await asyncio.sleep(delay)

    async def score(
        self,
        scorer: str,
        items: Sequence[ItemLike],
        *,
        timeout_s: float | None = None,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Result]:
        """One Result per item, in input order. Items are dicts (the JSONL form) or Items.

        Scorer options are keyword arguments, or `options={...}`: the way to send an option whose
        name the client uses itself (a scorer's `timeout_s`; `timeout_s=` here is the call's deadline)."""
        typed = [as_item(x, i) for i, x in enumerate(items)]
        if not typed:
            return []
        struct = messages.options_to_struct({**(options or {}), **kwargs})
        gate = asyncio.Semaphore(self.max_in_flight)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        results: list[Result | None] = [None] * len(typed)

        async def send(chunk: list[int]) -> None:
            async with gate:
                request = pb.ScoreRequest(
                    request_id=uuid.uuid4().hex,
                    scorer=scorer,
                    items=[messages.item_to_pb(typed[i]) for i in chunk],
                    options=struct,
                )
                try:
                    response = await self._call(request, timeout)
                except RewardServiceCallError as exc:
                    smaller = self._split(exc, typed, chunk)
                    if smaller is None:
                        raise
                    response = None
            if response is None:
                await asyncio.gather(*(send(c) for c in smaller or []))
                return
            if len(response.results) != len(chunk):
                raise RewardServiceCallError(
                    grpc.StatusCode.INTERNAL,
                    f"server returned {len(response.results)} results for {len(chunk)} items",
                )
            for i, r in zip(chunk, response.results):
                results[i] = messages.result_from_pb(r)

        limit = min(self.chunk_size, self._server_max_items or self.chunk_size)
        await asyncio.gather(*(send(c) for c in pack(units(typed), limit)))
        return [r for r in results if r is not None]

    def _split(self, exc: RewardServiceCallError, typed: list[Item], chunk: list[int]) -> list[list[int]] | None:
        """Smaller chunks for a chunk the server refused for its size, whole groups each; None when
        the refusal is about something else. A group alone over the limit can't be sent at all."""
        limit = refused_size(exc.details) if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED else None
        if limit is not None:
            self._server_max_items = limit  # later calls chunk to fit from the start
        elif not (exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and too_big_message(exc.details)):
            return None
        parts = [[chunk[j] for j in unit] for unit in units([typed[i] for i in chunk])]
        if len(parts) == 1:
            item = typed[chunk[0]]
            if item.group_id is None:
                raise RewardServiceCallError(exc.code, f"item {item.id!r} alone is too big for the server: "
                                             f"{exc.details}") from None
            raise RewardServiceCallError(exc.code, f"group {item.group_id!r} has {len(chunk)} items and the server "
                                         f"refused it ({exc.details}); a group is never split across requests: "
                                         "raise the server's limit or send smaller groups") from None
        size = limit if limit is not None else max(1, len(chunk) // 2)
        return pack(parts, size)

    async def list_scorers(self, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        try:
            resp = await self._stub.ListScorers(pb.ListScorersRequest(), timeout=timeout_s,
                                                metadata=self.metadata or None)
        except grpc.aio.AioRpcError as exc:
            raise RewardServiceCallError(exc.code(), exc.details() or "") from None
        return [
            {
                "name": s.name,
                "kind": s.kind,
                "description": s.description,
                "options": [
                    {"name": o.name, "type": o.type, "default": o.default, "description": o.description}
                    for o in s.options
                ],
            }
            for s in resp.scorers
        ]

    async def check_health(self, scorer: str | None = None, timeout_s: float = 5.0) -> str:
        """The server's gRPC health status ("SERVING", "NOT_SERVING", ...), or that of one hosted
        scorer. Raises RewardServiceCallError: NOT_FOUND for a scorer the server does not host,
        UNAVAILABLE when the server can't be reached."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        service = "" if scorer is None else messages.health_service(scorer)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise RewardServiceCallError(exc.code(), exc.details() or "") from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until the server's health check says SERVING (scorers loaded)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"server at {self.address} not SERVING after {timeout_s:.0f}s")
            await asyncio.sleep(0.2)
