"""Bearer-token authentication as a grpc.aio server interceptor."""

from __future__ import annotations

import hmac
from typing import Awaitable, Callable, Iterable

import grpc

__all__ = ["TokenAuthInterceptor", "OPEN_METHODS"]

#: methods anyone may call (health checks from load balancers and compose)
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` for one of ``tokens`` (UNAUTHENTICATED)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def _allowed(self, metadata: Iterable[tuple[str, str | bytes]]) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    given = token.strip().encode()
                    return any(hmac.compare_digest(given, t) for t in self._tokens)
        return False

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        """Pass authenticated calls on; answer the others with UNAUTHENTICATED."""
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS or self._allowed(details.invocation_metadata):
            return handler
        message = "missing or invalid bearer token (send 'authorization: Bearer <token>')"

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def deny_stream(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this an async generator

        kinds = {(False, False): (grpc.unary_unary_rpc_method_handler, deny),
                 (False, True): (grpc.unary_stream_rpc_method_handler, deny_stream),
                 (True, False): (grpc.stream_unary_rpc_method_handler, deny),
                 (True, True): (grpc.stream_stream_rpc_method_handler, deny_stream)}
        make, behaviour = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
        return make(behaviour, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
