"""The one guard in front of every mfad.v1 method: authenticate, authorise, map errors, measure.

Guarantee: no servicer code runs for an mfad.v1 call unless its caller was
authenticated (bearer token resolved by the core, or a verified and mapped
client certificate) and the role table allows the service; Enrollment calls,
and Admin calls a portal makes for a console user, also need a well-formed
``x-mfad-session`` (which the core then checks, with that user's role).
Every such call is counted once in the metrics with its final status code; an
exception escaping a servicer becomes a status code through the one table in
:mod:`mfad.api.errors`, never a stack trace on the wire. Credentials are never
logged. Health and reflection pass through untouched.

How: the guard wraps each method's handler once, when the service registers it
(:meth:`CallInterceptor.registry` is the only server a
:class:`~mfad.api.server.ServiceBinding` is handed, and it can do nothing but add
guarded handlers), not per call as a ``grpc.aio`` interceptor would: that one is
an extra coroutine, a handler lookup and a new handler object on every call, and
keeps grpc from serving the registered methods directly.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from mfad.api.auth import (
    AUTHORIZATION_METADATA,
    PUBLIC_SERVICES,
    SESSION_METADATA,
    SESSION_SERVICES,
    Caller,
    CallerAuthenticator,
    CallerIdentity,
    CredentialKind,
    bearer_token,
    bind_caller,
    certificate_caller,
    may_call,
    may_call_on_behalf,
    service_of,
    session_token,
    unbind_caller,
)
from mfad.api.errors import UNAVAILABLE_MESSAGE, status_for
from mfad.api.metrics import GrpcMetrics, NullGrpcMetrics
from mfad.core.model import Role

log = logging.getLogger("mfad.api")

if TYPE_CHECKING:  # generic only in the type stubs
    _Context = grpc.aio.ServicerContext[Any, Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
#: The stubs type handler behaviours for the sync API; under grpc.aio they take
#: an aio context and return awaitables or async iterators.
_Behaviour = Callable[..., Any]

#: The same words for every credential failure: a caller learns nothing about
#: which part was wrong.
UNAUTHENTICATED_MESSAGE = "missing or invalid caller credentials"
SESSION_MESSAGE = f"missing or malformed {SESSION_METADATA} metadata"
NOT_IMPLEMENTED_MESSAGE = "method not implemented yet"


@dataclass(frozen=True, slots=True)
class _Method:
    """A guarded method, as named in labels and logs."""

    name: str  # "mfad.v1.Admin/CreateUser": a registered method, so a bounded label
    service: str


def _credentials(context: _Context) -> tuple[list[str], list[str]]:
    """The call's ``authorization`` and ``x-mfad-session`` values, in one pass over its metadata."""
    authorization: list[str] = []
    session: list[str] = []
    for k, v in context.invocation_metadata() or ():
        if k == AUTHORIZATION_METADATA:
            authorization.append(v if isinstance(v, str) else v.decode("latin-1"))
        elif k == SESSION_METADATA:
            session.append(v if isinstance(v, str) else v.decode("latin-1"))
    return authorization, session


class CallInterceptor:
    def __init__(
        self,
        *,
        authenticator: CallerAuthenticator,
        client_roles: Mapping[str, Role] | None = None,
        metrics: GrpcMetrics | None = None,
        auth_timeout: float = 2.0,
    ) -> None:
        """``client_roles`` (certificate CN -> role) only when client certificates are required."""
        self._authenticator = authenticator
        #: A cache's answer for a token without awaiting it (CachedCallers.known), when it has one.
        self._known: Callable[[str], tuple[bool, CallerIdentity | None]] | None = getattr(
            authenticator, "known", None)
        self._client_roles = dict(client_roles or {})
        self._metrics = metrics or NullGrpcMetrics()
        self._auth_timeout = auth_timeout

    def registry(self, server: grpc.aio.Server) -> grpc.aio.Server:
        """What a service registers its handlers on: ``server``, every handler guarded."""
        # Only the two registration methods exist on it (anything else fails), so the cast
        # claims no more than a ServiceBinding may use.
        return cast("grpc.aio.Server", _GuardedRegistry(server, self))

    def guarded(self, method: str, handler: _Handler) -> _Handler:
        """``handler`` of ``method`` ("/mfad.v1.Admin/GetUser") behind the guard; public
        services' handlers as they are."""
        service = service_of(method)
        if service in PUBLIC_SERVICES:
            return handler
        return self._wrap(handler, _Method(method.lstrip("/"), service))

    def _wrap(self, handler: _Handler, call: _Method) -> _Handler:
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._guarded_reply(handler.unary_unary, call), des, ser)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._guarded_reply(handler.stream_unary, call), des, ser)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._guarded_stream(handler.unary_stream, call), des, ser)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(self._guarded_stream(handler.stream_stream, call), des,
                                                         ser)
        raise RuntimeError(f"method handler for {call.name} has no behaviour")

    def _guarded_reply(self, behaviour: _Behaviour, call: _Method) -> _Behaviour:
        """A single-reply behaviour (unary or client-streaming request) run inside the guard."""

        async def guarded(request: Any, context: _Context) -> Any:
            async with _Guard(self, call, context):
                result = behaviour(request, context)
                # Servicers are async; only the generated defaults are plain functions (and raise).
                return await result if inspect.isawaitable(result) else result

        return guarded

    def _guarded_stream(self, behaviour: _Behaviour, call: _Method) -> _Behaviour:
        """A server-streaming behaviour (unary or streaming request) run inside the guard."""

        async def guarded(request: Any, context: _Context) -> AsyncIterator[Any]:
            async with _Guard(self, call, context):
                async for item in behaviour(request, context):
                    yield item

        return guarded

    async def _admit(self, call: _Method, context: _Context) -> Caller:
        authorization, session = _credentials(context)
        if authorization:
            # A token that was sent decides alone, even beside a client certificate.
            caller = await self._token_caller(authorization, call, context)
        elif self._client_roles:
            caller = certificate_caller(context.auth_context(), self._client_roles)
        else:
            caller = None
        if caller is None:
            log.debug("grpc %s: caller not authenticated", call.name)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        on_behalf = may_call_on_behalf(caller.role, call.service)
        if on_behalf and session_token(session) is None:
            log.info("grpc %s: caller %s (%s) called without a user session", call.name, caller.name, caller.role)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"role {caller.role} may call {call.service} only for a signed-in user with a "
                                f"console role ({SESSION_METADATA})")
        if not (on_behalf or may_call(caller.role, call.service)):
            log.info("grpc %s: caller %s (%s) may not call it", call.name, caller.name, caller.role)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"role {caller.role} may not call {call.service}"
            )
        if call.service in SESSION_SERVICES and session_token(session) is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, SESSION_MESSAGE)
        return caller

    async def _token_caller(self, authorization: list[str], call: _Method, context: _Context) -> Caller | None:
        token = bearer_token(authorization)
        if token is None:
            return None
        known, identity = self._known(token) if self._known is not None else (False, None)
        if not known:
            try:
                async with asyncio.timeout(self._auth_timeout):
                    identity = await self._authenticator.authenticate(token)
            except TimeoutError:
                log.warning("grpc %s: caller check timed out after %.1f s", call.name, self._auth_timeout)
                await context.abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE)
        if identity is None:
            return None
        try:
            role = Role(identity.role)
        except ValueError:
            log.error("grpc: caller %s has unknown role %r; refused", identity.name, identity.role)
            return None
        return Caller(name=identity.name, role=role, via=CredentialKind.TOKEN)


class _Guard:
    """One call: admit the caller and expose it to the servicer; map failures; record the call."""

    __slots__ = ("_owner", "_call", "_context", "_started", "_bound")

    def __init__(self, owner: CallInterceptor, call: _Method, context: _Context) -> None:
        self._owner = owner
        self._call = call
        self._context = context

    async def __aenter__(self) -> None:
        self._started = time.monotonic()
        self._bound: Token[Caller | None] | None = None
        try:
            self._bound = bind_caller(await self._owner._admit(self._call, self._context))
        except BaseException as exc:
            # __aexit__ does not run when __aenter__ raises: the same mapping and record here.
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if self._bound is not None:
            unbind_caller(self._bound)
            self._bound = None
        context, call = self._context, self._call
        cancelled = kind is not None and issubclass(kind, asyncio.CancelledError)
        try:
            if kind is None or cancelled or issubclass(kind, grpc.aio.AbortError):
                # Cancelled: the client went away or the server's grace ran out. Aborted: the
                # servicer or the admission chose the status already.
                return False
            if issubclass(kind, NotImplementedError):
                # The generated base class answers for methods a servicer does not override.
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_IMPLEMENTED_MESSAGE)
            if isinstance(exc, Exception):
                code, message = status_for(exc)
                if code is grpc.StatusCode.INTERNAL:
                    log.error("grpc %s failed", call.name, exc_info=(kind, exc, tb))
                elif code is grpc.StatusCode.UNAVAILABLE:
                    log.warning("grpc %s unavailable: %s", call.name, exc)
                await context.abort(code, message)
            return False
        finally:
            code_name = "CANCELLED" if cancelled else (context.code() or grpc.StatusCode.OK).name
            self._owner._metrics.observe_call(call.name, code_name, time.monotonic() - self._started)


class _GuardedRegistry:
    """A server's two ways of adding handlers, each handler wrapped by the guard once."""

    __slots__ = ("_server", "_guard")

    def __init__(self, server: grpc.aio.Server, guard: CallInterceptor) -> None:
        self._server = server
        self._guard = guard

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, _Handler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self._guard.guarded(f"/{service}/{name}", h) for name, h in handlers.items()})

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h, self._guard) for h in handlers))


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler's answers behind the guard (grpc asks it only for methods that were
    not registered by name); each method's guarded handler is built once."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: CallInterceptor) -> None:
        self._inner = inner
        self._guard = guard
        self._built: dict[str, tuple[_Handler, _Handler]] = {}  # only methods the inner one serves

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED; nothing to record
        method = handler_call_details.method
        built = self._built.get(method)
        if built is None or built[0] is not handler:
            built = self._built[method] = (handler, self._guard.guarded(method, handler))
        return built[1]
