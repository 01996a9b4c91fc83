"""Registering a servicer: every method gets the same decoding and input checks.

Guarantee: a request that does not decode (invalid UTF-8 in a string field, a
broken wire format) or breaks the bounds of :mod:`mfad.api.validation` fails
with INVALID_ARGUMENT before the servicer method runs, so nothing is read or
written for it. grpc's own deserialisation failure would answer INTERNAL;
decoding leniently and refusing here keeps "bad input" one status code. The
interceptor still runs first (it wraps these handlers): an unauthenticated
caller learns nothing about input rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api import convert
from mfad.api.auth import current_caller
from mfad.api.server import ServiceBinding
from mfad.api.validation import check_request, cut
from mfad.core.errors import InvalidInput
from mfad.core.model import SECURITY_LEVEL, Method
from mfad.core.selfservice import IssuedSession
from mfad.core.service import Mfa
from mfad.core.sessions import UserSession
from mfad.core.verification import Attempt

PROTOCOL = "grpc"


class Undecodable:
    """What a request that failed to decode becomes; refused before the servicer runs."""

    __slots__ = ()


_UNDECODABLE = Undecodable()


def _lenient(cls: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def deserialize(raw: bytes) -> Message | Undecodable:
        try:
            return cls.FromString(raw)
        except DecodeError:
            return _UNDECODABLE

    return deserialize


#: Decides, before a method runs, whether this call may run it (``admit(name, context)``
#: raises when not); it may return a context manager that is held while the method runs.
Admit = Callable[[str, "grpc.aio.ServicerContext[Any, Any]"], Any]


def _refuse_bad_input(request: Message | Undecodable) -> None:
    """InvalidInput for a request that did not decode or breaks the bounds of :mod:`mfad.api.validation`."""
    if isinstance(request, Undecodable):
        raise InvalidInput("request", "is not a valid message (string fields must be valid UTF-8)")
    check_request(request)


def _checked(method: Callable[..., Any], name: str, admit: Admit | None) -> Callable[..., Any]:
    async def behaviour(request: Message | Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        _refuse_bad_input(request)
        if admit is None:
            result = method(request, context)
            return await result if inspect.isawaitable(result) else result
        async with await admit(name, context):
            result = method(request, context)
            return await result if inspect.isawaitable(result) else result

    return behaviour


def _checked_stream(method: Callable[..., Any], name: str, admit: Admit | None) -> Callable[..., Any]:
    """As :func:`_checked`, for a server-streaming method (an async generator)."""
    async def behaviour(request: Message | Undecodable, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        _refuse_bad_input(request)
        if admit is None:
            async for item in method(request, context):
                yield item
            return
        async with await admit(name, context):
            async for item in method(request, context):
                yield item

    return behaviour


def binding(servicer: object, service: str) -> ServiceBinding:
    """A ServiceBinding serving every method of mfad.v1 ``service`` ("Admin") from ``servicer``.
    A servicer with an ``admit`` method has it decide every call first (:data:`Admit`)."""
    descriptor = pb.DESCRIPTOR.services_by_name[service]
    admit: Admit | None = getattr(servicer, "admit", None)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        request_cls = GetMessageClass(method.input_type)
        response_cls = GetMessageClass(method.output_type)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _checked_stream(getattr(servicer, method.name), method.name, admit),
                request_deserializer=_lenient(request_cls),
                response_serializer=response_cls.SerializeToString,
            )
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _checked(getattr(servicer, method.name), method.name, admit),
            request_deserializer=_lenient(request_cls),
            response_serializer=response_cls.SerializeToString,
        )

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
        server.add_registered_method_handlers(descriptor.full_name, handlers)

    return ServiceBinding(descriptor.full_name, register)


def strongest_first(methods: frozenset[Method] | tuple[Method, ...]) -> list[pb.Method]:
    """Methods as a client should offer them: strongest first; at a level, what the user does
    on the spot before an approval on another device."""
    return [convert.METHOD_TO_PB[m] for m in sorted(set(methods), key=lambda m: (
        -SECURITY_LEVEL[m], m is Method.APPROVAL, m.value))]


def user_session(issued: IssuedSession) -> pb.UserSession:
    return pb.UserSession(token=issued.token, scope=convert.SCOPE_TO_PB[issued.scope],
                          expires_at=convert.timestamp(issued.expires_at),
                          console_role=convert.STAFF_ROLE_TO_PB[issued.console_role] if issued.console_role
                          else pb.USER_ROLE_UNSPECIFIED,
                          proof_owed=convert.ENROLMENT_PROOF_TO_PB[issued.proof_owed] if issued.proof_owed
                          else pb.ENROLMENT_PROOF_UNSPECIFIED)


async def finish_enrolment(mfa: Mfa, session: UserSession, client: pb.ClientInfo, method: Method,
                           into: pb.UserSession) -> None:
    """After a device was bound in ``session``: when that ends an enrolment session, the full
    session the sign-in has earned is written to ``into`` (which stays unset otherwise)."""
    issued = await mfa.selfservice.finish_enrolment(session, attempt(client), method)
    if issued is not None:
        into.CopyFrom(user_session(issued))


def attempt(client: pb.ClientInfo | None) -> Attempt:
    """Where a sign-in attempt comes from: the end user's address as the caller reports it
    (never the caller's own address: every user behind a portal would share it)."""
    source = convert.client_ip(client) if client is not None else None
    return Attempt(protocol=PROTOCOL, source=source, client=current_caller().name)


def user_agent(client: pb.ClientInfo) -> str:
    return cut("user_agent", client.user_agent)
