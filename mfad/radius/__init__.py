"""RADIUS front end: packets in, a handler's decision out (RFC 2865, 2869, 3579, 5080, 5997).

This package is transport only. It knows clients, packets, duplicates, rate limits
and Message-Authenticator policy; what to answer is decided by a
:class:`~mfad.radius.handler.RadiusHandler` (the core's sign-in adapter), which gets
a verified :class:`~mfad.radius.codec.RadiusRequest` and its
:class:`~mfad.radius.clients.RadiusClient` and returns a
:class:`~mfad.radius.handler.Decision` or :data:`~mfad.radius.handler.NO_REPLY`.
"""

from mfad.radius.attributes import Attr, AttributeValue
from mfad.radius.cache import Claim, ClaimingReplyCache, RequestKey, SharedReplyCache
from mfad.radius.clients import ClientMode, ClientTable, RadiusClient, parse_network
from mfad.radius.codec import PasswordIssue, RadiusCode, RadiusRequest
from mfad.radius.errors import RadiusBindError, RadiusConfigError, RadiusEncodeError, RadiusError
from mfad.radius.handler import NO_REPLY, Decision, NoReply, Outcome, RadiusHandler
from mfad.radius.metrics import CountingMetrics, DropReason, NullMetrics, RadiusMetrics
from mfad.radius.server import RadiusServer, RadiusServerSettings, parse_listen_address

__all__ = [
    "NO_REPLY",
    "Attr",
    "AttributeValue",
    "Claim",
    "ClaimingReplyCache",
    "ClientMode",
    "ClientTable",
    "CountingMetrics",
    "Decision",
    "DropReason",
    "NoReply",
    "NullMetrics",
    "Outcome",
    "PasswordIssue",
    "RadiusBindError",
    "RadiusClient",
    "RadiusCode",
    "RadiusConfigError",
    "RadiusEncodeError",
    "RadiusError",
    "RadiusHandler",
    "RadiusMetrics",
    "RadiusRequest",
    "RadiusServer",
    "RadiusServerSettings",
    "RequestKey",
    "SharedReplyCache",
    "parse_listen_address",
    "parse_network",
]
