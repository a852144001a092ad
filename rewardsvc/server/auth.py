"""Bearer-token authentication as a gRPC server interceptor; the health service stays open."""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from rewardsvc.config import ServerConfig

# Probes (kubelet, load balancers) can't carry tokens.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def load_token(cfg: ServerConfig) -> str | None:
    """The configured token: from auth_token_file, else the auth_token_env variable; None = no auth."""
    if cfg.auth_token_file:
        try:
            token = Path(cfg.auth_token_file).read_text().strip()
        except OSError as exc:
            raise OSError(f"cannot read auth_token_file {cfg.auth_token_file}: {exc}") from None
        if not token:
            raise ValueError(f"auth_token_file {cfg.auth_token_file} is empty")
        return token
    token = os.environ.get(cfg.auth_token_env, "").strip()
    return token or None


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without `authorization: Bearer <token>` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _ok(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                got = value if isinstance(value, bytes) else value.encode()
                # constant time: no timing oracle on the token
                return hmac.compare_digest(got, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(EXEMPT_PREFIXES) or self._ok(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        return _deny(await continuation(handler_call_details))


def _deny(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    msg = "missing or wrong bearer token: send metadata 'authorization: Bearer <token>' (RewardClient(token=...))"

    async def unary(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, msg)

    async def stream(request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, msg)

    req_des = handler.request_deserializer if handler else None
    resp_ser = handler.response_serializer if handler else None
    if handler is not None and handler.request_streaming:
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(stream, req_des, resp_ser)
        return grpc.stream_unary_rpc_method_handler(stream, req_des, resp_ser)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(unary, req_des, resp_ser)
    return grpc.unary_unary_rpc_method_handler(unary, req_des, resp_ser)
