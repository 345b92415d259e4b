"""Bearer tokens and the tenants they belong to; a grpc.aio interceptor refusing calls without one."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping

import grpc

from edgegrad.errors import InvalidInput
from edgegrad.jobs.tenants import DEFAULT_TENANT, check_tenant
from edgegrad.settings import ENV_NAMES, Settings

__all__ = ["Authenticator", "TokenAuthInterceptor", "OPEN_METHODS", "DENIED", "load_tokens", "parse_token_lines"]

#: methods anyone may call (health checks from load balancers and compose)
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
#: the answer to a call without a known token
DENIED = "missing or invalid bearer token (send 'authorization: Bearer <token>')"

Metadata = Iterable[tuple[str, "str | bytes"]]


def parse_token_lines(lines: Iterable[str], source: str) -> dict[str, str]:
    """token -> tenant from ``TENANT TOKEN`` lines (one field: a token of tenant ``default``).

    A field starting with ``#`` starts a comment; blank lines are skipped. Errors name ``source``:line.
    """
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        for i, word in enumerate(fields):
            if word.startswith("#"):
                fields = fields[:i]
                break
        if not fields:
            continue
        place = f"{source}:{number}"
        if len(fields) > 2:
            raise InvalidInput(f"{place}: expected 'TENANT TOKEN' or 'TOKEN', got {len(fields)} fields")
        tenant, token = (DEFAULT_TENANT, fields[0]) if len(fields) == 1 else fields
        check_tenant(tenant, place)
        if tokens.get(token, tenant) != tenant:
            raise InvalidInput(f"{place}: this token is already given to tenant {tokens[token]!r}")
        tokens[token] = tenant
    return tokens


def load_tokens(settings: Settings) -> dict[str, str]:
    """token -> tenant: ``auth_token`` (tenant ``default``) and the lines of ``auth_token_file``.

    Empty means no authentication (everyone is tenant ``default``); a token file without tokens is
    an error rather than a silent way of turning authentication off.
    """
    name = ENV_NAMES["auth_token_file"]
    tokens: dict[str, str] = {}
    if settings.auth_token_file:
        try:
            with open(settings.auth_token_file, encoding="utf-8") as fh:
                tokens = parse_token_lines(fh, f"{name} {settings.auth_token_file}")
        except OSError as exc:
            raise InvalidInput(f"{name}: cannot read {settings.auth_token_file} ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"{name}: {settings.auth_token_file} is not UTF-8 text") from None
        if not tokens:
            raise InvalidInput(f"{name}: {settings.auth_token_file} holds no token (lines are 'TENANT TOKEN')")
    if settings.auth_token:
        if tokens.get(settings.auth_token, DEFAULT_TENANT) != DEFAULT_TENANT:
            raise InvalidInput(f"{ENV_NAMES['auth_token']}: this token is also tenant"
                               f" {tokens[settings.auth_token]!r}'s in {settings.auth_token_file}")
        tokens[settings.auth_token] = DEFAULT_TENANT
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Finds the tenant of a call from its ``authorization: Bearer <token>`` metadata.

    Tokens are looked up by their SHA-256, so the time a lookup takes says nothing about how much
    of a guessed token is right. Without tokens, every call is tenant ``default``.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tenants = {_digest(token): tenant for token, tenant in tokens.items()}

    @property
    def enabled(self) -> bool:
        """Whether calls must carry a token."""
        return bool(self._tenants)

    def tenant(self, metadata: Metadata | None) -> str | None:
        """The tenant whose token the call carries (``default`` without auth), or None."""
        if not self._tenants:
            return DEFAULT_TENANT
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer":
                    return self._tenants.get(_digest(token.strip()))
                return None
        return None


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a known bearer token (UNAUTHENTICATED), except OPEN_METHODS.

    Methods under ``own_prefix`` (the service's own, whose handlers find the caller's tenant and
    refuse the same way) pass untouched: one tenant lookup per call, not two.
    """

    def __init__(self, auth: Authenticator, own_prefix: str = "") -> None:
        self._auth = auth
        self._own = own_prefix

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        """Pass authenticated calls on; answer the others with UNAUTHENTICATED."""
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS or (self._own and details.method.startswith(self._own)) \
                or self._auth.tenant(details.invocation_metadata) is not None:
            return handler
        message = DENIED

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
