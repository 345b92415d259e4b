"""The grpc.aio server: a thin servicer over ``Service``, health, reflection, auth, TLS, shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2, message_factory
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edgegrad import metrics
from edgegrad.errors import InvalidInput, Unauthenticated
from edgegrad.jobs.server_store import JobStore
from edgegrad.model.population_checks import load_graph_checks
from edgegrad.settings import Settings
from edgegrad.v1 import network_pb2, service_pb2

from .auth import DENIED, Authenticator, TokenAuthInterceptor, load_tokens
from .multiwatch import watch_many
from .reflection import enable_reflection
from .service import Service
from .status import SERVICE_ERRORS, abort

__all__ = ["App", "create_server", "serve", "SERVICE_NAME"]

log = logging.getLogger("edgegrad.server")
#: the service as the proto declares it: its RPCs, their request types and streaming kinds
SERVICE = service_pb2.DESCRIPTOR.services_by_name["Edgegrad"]
SERVICE_NAME = SERVICE.full_name


def _serialize(message: Any) -> bytes:
    """Stream responses may be pre-serialized JobEvents (chunks straight from Redis)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def _tenant(auth: Authenticator, context: grpc.aio.ServicerContext) -> str:
    """The calling tenant; Unauthenticated without a known token (the interceptor leaves this service's calls to it)."""
    tenant = auth.tenant(context.invocation_metadata())
    if tenant is None:
        raise Unauthenticated(DENIED)
    return tenant


def _decode(kind: type[Message], data: bytes) -> Any:
    """Parse a request here rather than in grpc's deserializer (whose failure is UNKNOWN with a traceback)."""
    try:
        return kind.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # not a serialized ``kind``
        log.debug("undecodable %s: %s", kind.DESCRIPTOR.name, exc)
        raise InvalidInput(f"request: not a serialized {kind.DESCRIPTOR.full_name} ({len(data)} bytes)",
                           field="request") from None


async def _decoded(kind: type, pieces: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """A client stream of raw messages, each parsed as it arrives."""
    async for data in pieces:
        yield _decode(kind, data)


def _parsed(data: Any, kind: type, client_streams: bool) -> Any:
    """The request (or request stream) of a call, parsed."""
    return _decoded(kind, data) if client_streams else _decode(kind, data)


def _unary(auth: Authenticator, fn: Callable[[Any, str], Awaitable[Any]], kind: type,
           client_streams: bool) -> Callable:
    @functools.wraps(fn)
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            tenant = _tenant(auth, context)  # first: a caller without a token learns nothing of its request
            return await fn(_parsed(request, kind, client_streams), tenant)
        except SERVICE_ERRORS as exc:
            await abort(context, exc)
    return call


def _streaming(auth: Authenticator, fn: Callable[[Any, str], Any], kind: type, client_streams: bool) -> Callable:
    @functools.wraps(fn)
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with metrics.OPEN_STREAMS.track_inprogress():
            try:
                tenant = _tenant(auth, context)
                async for event in fn(_parsed(request, kind, client_streams), tenant):
                    yield event
            except SERVICE_ERRORS as exc:
                await abort(context, exc)
    return call


#: (client streams, server streams) -> how a handler function becomes a grpc method handler
_KINDS = {
    (False, False): (_unary, grpc.unary_unary_rpc_method_handler),
    (False, True): (_streaming, grpc.unary_stream_rpc_method_handler),
    (True, False): (_unary, grpc.stream_unary_rpc_method_handler),
}


def _implementations(service: Service) -> dict[str, Callable[[Any, str], Any]]:
    """RPC name -> what answers it, each taking the request (or the request stream) and the calling
    tenant; the service scopes everything it touches to that tenant."""
    async def compute(req: service_pb2.SubmitJobRequest, tenant: str):
        job = await service.submit(req, tenant)
        async for event in service.watch(job.name, 0, tenant, first=job):
            yield event

    async def delete(req: service_pb2.DeleteJobRequest, tenant: str) -> empty_pb2.Empty:
        await service.delete(req.name, tenant)
        return empty_pb2.Empty()

    async def capabilities(req: Any, tenant: str) -> service_pb2.Capabilities:
        return service.capabilities()

    async def register(req: service_pb2.RegisterNetworkRequest, tenant: str) -> network_pb2.NetworkInfo:
        return (await service.register_network(req.network, tenant)).info()

    async def ack(req: service_pb2.AckJobRequest, tenant: str) -> empty_pb2.Empty:
        await service.ack(req.name, req.seq, tenant)
        return empty_pb2.Empty()

    return {
        "GetCapabilities": capabilities,
        "RegisterNetwork": register,
        "GetNetwork": lambda r, t: service.network_info(r.hash, t),
        "SubmitJob": service.submit,
        "GetJob": lambda r, t: service.get(r.name, t),
        "ListJobs": lambda r, t: service.list(r.page_size, r.page_token, t),
        "CancelJob": lambda r, t: service.cancel(r.name, t),
        "DeleteJob": delete,
        "SubmitJobs": service.submit_many,
        "AckJob": ack,
        "WatchJob": lambda r, t: service.watch(r.name, r.after_seq, t),
        "WatchJobs": lambda r, t: watch_many(service, r, t),
        "Compute": compute,
        "UploadBatch": service.upload,
    }


def _handlers(service: Service, auth: Authenticator) -> grpc.GenericRpcHandler:
    """The method table of the service as the proto declares it; RuntimeError if an RPC has no handler."""
    implementations = _implementations(service)
    declared = {method.name for method in SERVICE.methods}
    missing, unknown = sorted(declared - set(implementations)), sorted(set(implementations) - declared)
    if missing or unknown:
        raise RuntimeError(f"{SERVICE_NAME}: no handler for {missing}, handlers for undeclared RPCs {unknown}")
    handlers = {}
    for method in SERVICE.methods:
        wrap, make = _KINDS[method.client_streaming, method.server_streaming]
        kind = message_factory.GetMessageClass(method.input_type)  # parsed by the handler (see _decode)
        handlers[method.name] = make(wrap(auth, implementations[method.name], kind, method.client_streaming),
                                     response_serializer=_serialize)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


@dataclass
class App:
    """A created (not yet started) server with its parts."""

    server: grpc.aio.Server
    port: int
    service: Service
    health: health.aio.HealthServicer
    settings: Settings

    async def start(self) -> None:
        """Start serving and report SERVING."""
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, open watches end with UNAVAILABLE, calls get ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        self.service.stopping.set()
        await self.server.stop(self.settings.shutdown_grace_seconds if grace is None else grace)
        await self.service.store.close()


def create_server(settings: Settings | None = None, address: str | None = None) -> App:
    """Build the server bound to ``address`` (default ``settings.listen``; port 0 picks a free one)."""
    settings = settings or Settings.from_env()
    auth = Authenticator(load_tokens(settings))
    options = [("grpc.max_receive_message_length", settings.max_message_bytes),
               ("grpc.max_send_message_length", settings.max_message_bytes),
               ("grpc.so_reuseport", 0)]
    # the service's own handlers find the tenant (and refuse) themselves; the interceptor guards the rest
    interceptors = [TokenAuthInterceptor(auth, own_prefix=f"/{SERVICE_NAME}/")] if auth.enabled else []
    server = grpc.aio.server(options=options, interceptors=interceptors)
    service = Service(settings, JobStore(settings))
    server.add_generic_rpc_handlers((_handlers(service, auth),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    address = address or settings.listen
    try:
        if settings.tls_cert or settings.tls_key:
            with open(settings.tls_key, "rb") as k, open(settings.tls_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind to address ...": taken, or not this host's
        port = 0
    if not port:
        raise OSError(f"cannot listen on {address} (is another server using that port?)")
    return App(server, port, service, health_servicer, settings)


async def serve(settings: Settings | None = None, address: str | None = None,
                ready: Callable[[App], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    app = create_server(settings, address)
    await app.start()
    # the compiled check of populations in columns loads beside serving, not in the first such request (a
    # plain thread: the interpreter waits for it at exit)
    threading.Thread(target=load_graph_checks, name="edgegrad-load-checks").start()
    if ready:
        ready(app)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("shutting down")
    await app.stop()


