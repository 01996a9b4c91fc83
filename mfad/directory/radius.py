"""An upstream RADIUS server (NPS, FreeRADIUS) as the first factor: the password goes to
it as PAP, with its own secret.

Guarantees:
- only a verified Access-Accept counts: its Response Authenticator must match and, with
  ``require_message_authenticator`` (the default), its Message-Authenticator too — with
  ``"auto"``, from a server once it has sent one valid Message-Authenticator (this
  process then ignores its unsigned replies until it restarts); a
  Reject, an Access-Challenge (an upstream second factor mfad cannot relay) or anything
  malformed is a refusal or is ignored, never an accept;
- every request has a random 16-octet authenticator and a fresh socket, so a reply to
  another request cannot be taken for its answer;
- each server gets ``retries`` sends, ``timeout_seconds`` apart; then the next one is
  tried; when none answers, ``Unavailable``;
- the reply's attributes are returned by name (``DirectoryCheck.reply``); the ones named in
  ``group_attributes`` become the user's groups, and only those a RADIUS client's
  ``upstream_reply_attributes`` names reach that client's Access-Accept (the first-factor
  router drops the rest before anything is stored).
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from mfad.core.directory import Check, DirectoryCheck, DirectoryEntry, DirectoryReason
from mfad.core.errors import InvalidInput, Unavailable
from mfad.config import UpstreamRadiusSettings
from mfad.net import parse_address
from mfad.radius.attributes import Attr, attribute_code, attribute_name
from mfad.radius.codec import (
    RadiusCode,
    RadiusReply,
    decode_reply,
    encode_request,
    hide_password,
)

log = logging.getLogger("mfad.directory.radius")

_SERVICE_TYPE_AUTHENTICATE_ONLY = (8).to_bytes(4, "big")  # RFC 2865 §5.6: no session follows


class _Waiter(asyncio.DatagramProtocol):
    """Waits on one request's socket for the first reply that verifies."""

    def __init__(self, identifier: int, authenticator: bytes, secret: bytes, require_ma: bool,
                 answer: asyncio.Future[RadiusReply]) -> None:
        self.identifier = identifier
        self.authenticator = authenticator
        self.secret = secret
        self.require_ma = require_ma
        self.answer = answer
        self.ignored = 0
        #: Replies that verified but carried no Message-Authenticator while one was required.
        self.unsigned = 0

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = decode_reply(data, self.secret, self.identifier, self.authenticator)
        if isinstance(reply, RadiusReply) and (reply.has_message_authenticator or not self.require_ma):
            if not self.answer.done():
                self.answer.set_result(reply)
        else:
            self.ignored += 1  # forged, for another request, or unsigned: keep waiting
            if isinstance(reply, RadiusReply):
                self.unsigned += 1

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: the timeout decides


class UpstreamRadius:
    """One ``[[directory.radius]]`` table."""

    def __init__(self, settings: UpstreamRadiusSettings) -> None:
        if not settings.servers or not settings.secret:
            raise ValueError("an upstream RADIUS directory needs servers and a secret")
        self.name = settings.name
        self.can_look_up = False
        self._s = settings
        self._secret = settings.secret.encode()
        self._servers = [parse_address(a) for a in settings.servers]
        self._groups = {attribute_code(name) for name in settings.group_attributes}
        #: Servers that have signed a reply ("auto": they must sign every later one).
        self._signed: set[tuple[str, int]] = set()

    async def authenticate(self, username: str, password: str) -> DirectoryCheck:
        if not password:
            raise InvalidInput("password", "must not be empty")
        for host, port in self._servers:
            reply, unsigned = await self._ask(host, port, username, password)
            if reply is None:
                if unsigned:
                    log.warning("directory %s: %s:%d answered without Message-Authenticator, which "
                                "require_message_authenticator asks for: ignored; trying the next server (a server "
                                "before FreeRADIUS 3.2.5 signs only when its reply sets Message-Authenticator)",
                                self.name, host, port)
                else:
                    log.warning("directory %s: %s:%d did not answer; trying the next server", self.name, host, port)
                continue
            if reply.has_message_authenticator and self._s.require_message_authenticator == "auto" \
                    and (host, port) not in self._signed:
                log.info("directory %s: %s:%d signs its replies; unsigned ones are ignored from now on",
                         self.name, host, port)
                self._signed.add((host, port))
            if reply.code is not RadiusCode.ACCESS_ACCEPT:
                if reply.code is RadiusCode.ACCESS_CHALLENGE:
                    log.warning("directory %s: %s:%d answered Access-Challenge, which mfad does not relay",
                                self.name, host, port)
                return DirectoryCheck(check=Check.REFUSED, reason=DirectoryReason.WRONG_PASSWORD)
            named = tuple((name, value) for number, value in reply.attributes
                          if (name := attribute_name(number)) is not None)
            groups = tuple(dict.fromkeys(v.decode("utf-8", "replace") for n, v in reply.attributes
                                         if n in self._groups))
            return DirectoryCheck(check=Check.ACCEPTED, reason=DirectoryReason.ACCEPTED,
                                  entry=DirectoryEntry(username=username, groups=groups), reply=named)
        raise Unavailable(f"directory {self.name}: no server answered")

    async def lookup(self, username: str) -> DirectoryEntry | None | DirectoryReason:
        raise TypeError("a RADIUS server cannot be asked about a user without a password (can_look_up is False)")

    async def aclose(self) -> None:
        pass

    async def _ask(self, host: str, port: int, username: str, password: str) -> tuple[RadiusReply | None, int]:
        """The verified reply (None: none came in time) and how many unsigned ones were ignored."""
        loop = asyncio.get_running_loop()
        identifier = secrets.randbelow(256)
        authenticator = secrets.token_bytes(16)
        attributes = [
            (Attr.USER_NAME, username.encode()),
            (Attr.USER_PASSWORD, hide_password(password.encode(), self._secret, authenticator)),
            (Attr.NAS_IDENTIFIER, self._s.nas_identifier.encode()),
            (attribute_code("Service-Type"), _SERVICE_TYPE_AUTHENTICATE_ONLY),
        ]
        packet = encode_request(RadiusCode.ACCESS_REQUEST, identifier, authenticator, self._secret, attributes,
                                message_authenticator=self._s.send_message_authenticator)
        answer: asyncio.Future[RadiusReply] = loop.create_future()
        required = self._s.require_message_authenticator
        require_ma = (host, port) in self._signed if required == "auto" else bool(required)
        waiter = _Waiter(identifier, authenticator, self._secret, require_ma, answer)
        transport, _ = await loop.create_datagram_endpoint(lambda: waiter, remote_addr=(host, port))
        try:
            for _ in range(self._s.retries):
                transport.sendto(packet)  # a retransmission is the same packet (RFC 5080 §2.2.1)
                try:
                    async with asyncio.timeout(self._s.timeout_seconds):
                        return await asyncio.shield(answer), 0
                except TimeoutError:
                    continue
            return None, waiter.unsigned
        finally:
            transport.close()

