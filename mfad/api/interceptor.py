"""The one server interceptor: authenticate, authorise, map errors, measure.

Guarantee: no servicer code runs for an mfad.v1 call unless its caller was
authenticated (bearer token resolved by the core, or a verified and mapped
client certificate) and the role table allows the service; Enrollment calls,
and Admin calls a portal makes for a console user, also need a well-formed
``x-mfad-session`` (which the core then checks, with that user's role).
Every such call is counted once in the metrics with its final status code; an
exception escaping a servicer becomes a status code through the one table in
:mod:`mfad.api.errors`, never a stack trace on the wire. Credentials are never
logged. Health and reflection pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from mfad.api.auth import (
    AUTHORIZATION_METADATA,
    PUBLIC_SERVICES,
    SESSION_METADATA,
    SESSION_SERVICES,
    Caller,
    CallerAuthenticator,
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
class _Call:
    method: str  # "mfad.v1.Admin/CreateUser": a registered method, so a bounded label
    service: str
    # Credentials: kept out of repr so that no log line can carry them.
    authorization: list[str] = field(repr=False)
    session: list[str] = field(repr=False)


def _metadata_values(metadata: Sequence[tuple[str, str | bytes]] | None, key: str) -> list[str]:
    values: list[str] = []
    for k, v in metadata or ():
        if k == key:
            values.append(v if isinstance(v, str) else v.decode("latin-1"))
    return values


_Guard = Callable[[_Call, "_Context"], contextlib.AbstractAsyncContextManager[None]]


def _guarded_reply(behaviour: _Behaviour, guard: _Guard, call: _Call) -> _Behaviour:
    """A single-reply behaviour (unary or client-streaming request) run inside ``guard``."""

    async def guarded(request: Any, context: _Context) -> Any:
        async with guard(call, context):
            return await _maybe_await(behaviour(request, context))

    return guarded


def _guarded_stream(behaviour: _Behaviour, guard: _Guard, call: _Call) -> _Behaviour:
    """A server-streaming behaviour (unary or streaming request) run inside ``guard``."""

    async def guarded(request: Any, context: _Context) -> AsyncIterator[Any]:
        async with guard(call, context):
            async for item in behaviour(request, context):
                yield item

    return guarded


class CallInterceptor(grpc.aio.ServerInterceptor):
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
        self._client_roles = dict(client_roles or {})
        self._metrics = metrics or NullGrpcMetrics()
        self._auth_timeout = auth_timeout

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: grpc answers UNIMPLEMENTED; nothing to record
        method = handler_call_details.method
        service = service_of(method)
        if service in PUBLIC_SERVICES:
            return handler
        metadata = handler_call_details.invocation_metadata
        call = _Call(
            method=method.lstrip("/"),
            service=service,
            authorization=_metadata_values(metadata, AUTHORIZATION_METADATA),
            session=_metadata_values(metadata, SESSION_METADATA),
        )
        return self._wrap(handler, call)

    def _wrap(self, handler: _Handler, call: _Call) -> _Handler:
        guard = self._guard
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_guarded_reply(handler.unary_unary, guard, call), des, ser)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_guarded_reply(handler.stream_unary, guard, call), des, ser)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_guarded_stream(handler.unary_stream, guard, call), des, ser)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(_guarded_stream(handler.stream_stream, guard, call), des, ser)
        raise RuntimeError(f"method handler for {call.method} has no behaviour")

    @contextlib.asynccontextmanager
    async def _guard(self, call: _Call, context: _Context) -> AsyncIterator[None]:
        """Admit the caller, expose it to the servicer, map failures, record the call."""
        started = time.monotonic()
        cancelled = False
        try:
            caller = await self._admit(call, context)
            token = bind_caller(caller)
            try:
                yield
            finally:
                unbind_caller(token)
        except grpc.aio.AbortError:
            raise  # the servicer or the admission chose the status already
        except asyncio.CancelledError:
            cancelled = True  # the client went away or the server's grace ran out
            raise
        except NotImplementedError:
            # The generated base class answers for methods a servicer does not override.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_IMPLEMENTED_MESSAGE)
        except Exception as exc:
            code, message = status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("grpc %s failed", call.method)
            elif code is grpc.StatusCode.UNAVAILABLE:
                log.warning("grpc %s unavailable: %s", call.method, exc)
            await context.abort(code, message)
        finally:
            if cancelled:
                code_name = grpc.StatusCode.CANCELLED.name
            else:
                code_name = (context.code() or grpc.StatusCode.OK).name
            self._metrics.observe_call(call.method, code_name, time.monotonic() - started)

    async def _admit(self, call: _Call, context: _Context) -> Caller:
        if call.authorization:
            # A token that was sent decides alone, even beside a client certificate.
            caller = await self._token_caller(call, context)
        elif self._client_roles:
            caller = certificate_caller(context.auth_context(), self._client_roles)
        else:
            caller = None
        if caller is None:
            log.debug("grpc %s: caller not authenticated", call.method)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        on_behalf = may_call_on_behalf(caller.role, call.service)
        if on_behalf and session_token(call.session) is None:
            log.info("grpc %s: caller %s (%s) called without a user session", call.method, caller.name, caller.role)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"role {caller.role} may call {call.service} only for a signed-in user with a "
                                f"console role ({SESSION_METADATA})")
        if not (on_behalf or may_call(caller.role, call.service)):
            log.info("grpc %s: caller %s (%s) may not call it", call.method, caller.name, caller.role)
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"role {caller.role} may not call {call.service}"
            )
        if call.service in SESSION_SERVICES and session_token(call.session) is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, SESSION_MESSAGE)
        return caller

    async def _token_caller(self, call: _Call, context: _Context) -> Caller | None:
        token = bearer_token(call.authorization)
        if token is None:
            return None
        try:
            async with asyncio.timeout(self._auth_timeout):
                identity = await self._authenticator.authenticate(token)
        except TimeoutError:
            log.warning("grpc %s: caller check timed out after %.1f s", call.method, self._auth_timeout)
            await context.abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_MESSAGE)
        if identity is None:
            return None
        try:
            role = Role(identity.role)
        except ValueError:
            log.error("grpc: caller %s has unknown role %r; refused", identity.name, identity.role)
            return None
        return Caller(name=identity.name, role=role, via=CredentialKind.TOKEN)


async def _maybe_await(result: Any) -> Any:
    # Servicers are async; only the generated defaults are plain functions (and raise).
    if inspect.isawaitable(result):
        return await result
    return result
