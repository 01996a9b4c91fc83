"""RADIUS packet codec: one strict parse of a request, one signed encoding of a reply.

Guarantees (RFC 2865, RFC 2869, RFC 3579, RFC 5997):

- :func:`decode_request` looks at a datagram once and returns either a
  :class:`RadiusRequest` or a :class:`PacketFault` naming why it must be dropped. It
  never raises on any input. Checked: 20..4096 octets; the Length field is at least 20
  and not beyond the datagram (octets after Length are padding and ignored, RFC 2865
  §3); every attribute is at least 2 octets long and ends inside the packet; at most
  one User-Name, User-Password, State and Message-Authenticator; a
  Message-Authenticator is exactly 16 octets and its HMAC-MD5 over the packet (with
  the value zeroed) matches in constant time; a User-Password is 16..128 octets in
  steps of 16.
- The User-Password is decrypted (RFC 2865 §5.2) to its exact octets; text that is
  not valid UTF-8 (what a wrong secret produces) is reported as
  :attr:`PasswordIssue.NOT_TEXT`, never silently trimmed.
- :func:`encode_reply` puts Message-Authenticator first (BlastRADIUS,
  CVE-2024-3596), echoes every Proxy-State of the request in order, computes the
  Message-Authenticator over the reply with the Request Authenticator, then the
  Response Authenticator over the finished packet.

The hot path is written by hand rather than with pyrad's packet classes: measured
with ``bench/radius_codec.py``, pyrad does the same work about 2.5 times slower, and
it is laxer (attributes overflowing the packet are cut short, packets up to 8192
octets pass, invalid UTF-8 in a password is dropped). pyrad remains the dictionary
parser and, in the tests, an independent check of these encodings.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Final

from mfad.radius.attributes import MAX_VALUE_LENGTH, Attr, AttributeValue, decode_value
from mfad.radius.errors import RadiusEncodeError

HEADER_LENGTH: Final = 20
MAX_PACKET_LENGTH: Final = 4096
"""RFC 2865 §3: the maximum length of a RADIUS packet."""

MAX_ATTRIBUTES: Final = 200
"""Same bound as FreeRADIUS ``max_attributes``: real requests carry a dozen."""

_MA_ATTRIBUTE_LENGTH: Final = 18
_ZERO_VECTOR: Final = bytes(16)
_MD5 = hashlib.md5

_HMAC_KEYED: dict[bytes, hmac.HMAC] = {}
"""HMAC-MD5 keyed with each client secret seen, copied per packet: the key's inner and
outer pad blocks are hashed once per secret instead of twice per packet."""
_MAX_KEYED: Final = 4096
"""Bound on the secrets kept (a reload may bring new ones; the oldest are forgotten)."""


def _hmac_md5(secret: bytes, data: bytes) -> bytes:
    keyed = _HMAC_KEYED.get(secret)
    if keyed is None:
        if len(_HMAC_KEYED) >= _MAX_KEYED:
            _HMAC_KEYED.pop(next(iter(_HMAC_KEYED)))
        keyed = _HMAC_KEYED[secret] = hmac.new(secret, digestmod=_MD5)
    mac = keyed.copy()
    mac.update(data)
    return mac.digest()


class RadiusCode(IntEnum):
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11
    STATUS_SERVER = 12
    STATUS_CLIENT = 13
    DISCONNECT_REQUEST = 40
    COA_REQUEST = 43


_CODE_NAMES: Final = {
    RadiusCode.ACCESS_REQUEST: "Access-Request",
    RadiusCode.ACCESS_ACCEPT: "Access-Accept",
    RadiusCode.ACCESS_REJECT: "Access-Reject",
    RadiusCode.ACCOUNTING_REQUEST: "Accounting-Request",
    RadiusCode.ACCOUNTING_RESPONSE: "Accounting-Response",
    RadiusCode.ACCESS_CHALLENGE: "Access-Challenge",
    RadiusCode.STATUS_SERVER: "Status-Server",
    RadiusCode.STATUS_CLIENT: "Status-Client",
    RadiusCode.DISCONNECT_REQUEST: "Disconnect-Request",
    RadiusCode.COA_REQUEST: "CoA-Request",
}

_REQUEST_CODES: Final = frozenset({RadiusCode.ACCESS_REQUEST, RadiusCode.STATUS_SERVER})
ACCOUNTING_CODES: Final = frozenset({RadiusCode.ACCOUNTING_REQUEST, RadiusCode.STATUS_SERVER})
"""What the accounting port takes (RFC 2866, RFC 5997): pass as ``decode_request(codes=...)``."""
_SINGLE_ATTRIBUTES: Final = frozenset(
    {Attr.USER_NAME, Attr.USER_PASSWORD, Attr.STATE, Attr.MESSAGE_AUTHENTICATOR}
)


def code_name(code: int) -> str:
    """A bounded label for a packet code: its RFC name, or ``"other"``."""
    try:
        return _CODE_NAMES[RadiusCode(code)]
    except ValueError:
        return "other"


class PacketFault(StrEnum):
    """Why a datagram was not turned into a request (a value; the server drops and counts it)."""

    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BAD_LENGTH = "bad_length"
    TRUNCATED = "truncated"
    UNEXPECTED_CODE = "unexpected_code"
    BAD_ATTRIBUTE = "bad_attribute"
    TOO_MANY_ATTRIBUTES = "too_many_attributes"
    REPEATED_ATTRIBUTE = "repeated_attribute"
    BAD_MESSAGE_AUTHENTICATOR_LENGTH = "bad_message_authenticator_length"
    BAD_USER_PASSWORD = "bad_user_password"
    BAD_AUTHENTICATOR = "bad_authenticator"
    """The Message-Authenticator does not match: wrong secret or a forged packet."""


class PasswordIssue(Enum):
    """Why a request carries no usable password text (a refusal input for the handler).

    A plain :class:`Enum`, not a ``StrEnum``: ``isinstance(x, str)`` must tell a
    password from an issue.
    """

    ABSENT = "absent"
    NOT_TEXT = "not_text"
    """Not valid UTF-8 or containing NUL: typically a wrong shared secret."""


@dataclass(frozen=True, slots=True)
class RadiusRequest:
    """A decoded, verified request. Attributes keep their order and repetitions.

    ``password`` is the decrypted User-Password or why there is none. It and the raw
    attribute octets are kept out of ``repr`` so a log line cannot leak them.
    """

    code: RadiusCode
    identifier: int
    authenticator: bytes
    attributes: tuple[tuple[int, bytes], ...] = field(repr=False)
    has_message_authenticator: bool
    password: str | PasswordIssue = field(repr=False)
    source_address: str = ""
    """The address the datagram came from (the NAS, or a proxy), as the server saw it."""

    def get(self, attr: int) -> bytes | None:
        """The octets of the first attribute with this number, or None."""
        for number, value in self.attributes:
            if number == attr:
                return value
        return None

    def get_all(self, attr: int) -> tuple[bytes, ...]:
        """The octets of every attribute with this number, in packet order."""
        return tuple(value for number, value in self.attributes if number == attr)

    def has(self, attr: int) -> bool:
        return any(number == attr for number, _ in self.attributes)

    def typed(self, attr: int) -> AttributeValue | None:
        """The first attribute with this number decoded by its dictionary type, or None."""
        value = self.get(attr)
        return None if value is None else decode_value(attr, value)

    @property
    def user_name(self) -> str | None:
        """User-Name as text; None if absent or not valid UTF-8."""
        return _text(self.get(Attr.USER_NAME))

    @property
    def state(self) -> bytes | None:
        return self.get(Attr.STATE)

    @property
    def calling_station_id(self) -> str | None:
        """Calling-Station-Id as text (what the NAS asserts); None if absent or not text."""
        return _text(self.get(Attr.CALLING_STATION_ID))

    @property
    def proxy_states(self) -> tuple[bytes, ...]:
        return self.get_all(Attr.PROXY_STATE)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def decode_request(data: bytes, secret: bytes, source_address: str = "", *,
                   codes: frozenset[RadiusCode] = _REQUEST_CODES) -> RadiusRequest | PacketFault:
    """Parse and verify one datagram sent to the authentication port.

    Accepts Access-Request and Status-Server (or the ``codes`` given, such as
    :data:`ACCOUNTING_CODES`); every other code is :attr:`PacketFault.UNEXPECTED_CODE`.
    Whether a *missing* Message-Authenticator is acceptable is the caller's policy
    (``has_message_authenticator`` tells). An Accounting-Request's Request Authenticator
    is itself keyed (RFC 2866 §3) and is checked: a mismatch is
    :attr:`PacketFault.BAD_AUTHENTICATOR`.
    """
    size = len(data)
    if size < HEADER_LENGTH:
        return PacketFault.TOO_SHORT
    if size > MAX_PACKET_LENGTH:
        return PacketFault.TOO_LONG
    code = data[0]
    if code not in codes:
        return PacketFault.UNEXPECTED_CODE
    length = (data[2] << 8) | data[3]
    if length < HEADER_LENGTH:
        return PacketFault.BAD_LENGTH
    if length > size:
        return PacketFault.TRUNCATED
    if length < size:
        data = data[:length]

    attributes: list[tuple[int, bytes]] = []
    seen_single: set[int] = set()
    ma_at = -1
    password_octets: bytes | None = None
    position = HEADER_LENGTH
    while position < length:
        if position + 2 > length:
            return PacketFault.BAD_ATTRIBUTE
        number = data[position]
        end = position + data[position + 1]
        if end < position + 2 or end > length:
            return PacketFault.BAD_ATTRIBUTE
        value = data[position + 2 : end]
        if number in _SINGLE_ATTRIBUTES:
            if number in seen_single:
                return PacketFault.REPEATED_ATTRIBUTE
            seen_single.add(number)
            if number == Attr.MESSAGE_AUTHENTICATOR:
                if end - position != _MA_ATTRIBUTE_LENGTH:
                    return PacketFault.BAD_MESSAGE_AUTHENTICATOR_LENGTH
                ma_at = position
            elif number == Attr.USER_PASSWORD:
                if len(value) < 16 or len(value) > 128 or len(value) % 16:
                    return PacketFault.BAD_USER_PASSWORD
                password_octets = value
        attributes.append((number, value))
        position = end
    if len(attributes) > MAX_ATTRIBUTES:
        return PacketFault.TOO_MANY_ATTRIBUTES

    authenticator = data[4:HEADER_LENGTH]
    accounting = code == RadiusCode.ACCOUNTING_REQUEST
    if accounting and not hmac.compare_digest(
            _MD5(data[:4] + _ZERO_VECTOR + data[HEADER_LENGTH:length] + secret).digest(), authenticator):
        return PacketFault.BAD_AUTHENTICATOR
    if ma_at >= 0:
        signed = data[: ma_at + 2] + _ZERO_VECTOR + data[ma_at + _MA_ATTRIBUTE_LENGTH :]
        if accounting:  # RFC 3579 §3.2: computed with a zero Request Authenticator
            signed = signed[:4] + _ZERO_VECTOR + signed[HEADER_LENGTH:]
        expected = _hmac_md5(secret, signed)
        if not hmac.compare_digest(expected, data[ma_at + 2 : ma_at + _MA_ATTRIBUTE_LENGTH]):
            return PacketFault.BAD_AUTHENTICATOR

    password: str | PasswordIssue = PasswordIssue.ABSENT
    if password_octets is not None:
        password = _password_text(decrypt_password(password_octets, secret, authenticator))

    return RadiusRequest(
        code=RadiusCode(code),
        identifier=data[1],
        authenticator=authenticator,
        attributes=tuple(attributes),
        has_message_authenticator=ma_at >= 0,
        password=password,
        source_address=source_address,
    )


def decrypt_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Reverse the User-Password hiding of RFC 2865 §5.2; trailing NUL padding removed.

    ``hidden`` must be a non-empty multiple of 16 octets (the decoder checks it).
    """
    plain = bytearray()
    previous = authenticator
    for offset in range(0, len(hidden), 16):
        block = hidden[offset : offset + 16]
        key = int.from_bytes(_MD5(secret + previous).digest(), "big")
        plain += (int.from_bytes(block, "big") ^ key).to_bytes(16, "big")
        previous = block
    return bytes(plain).rstrip(b"\x00")


def hide_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2 hiding (the client side): for tests and load generators."""
    if len(password) > 128:
        raise RadiusEncodeError("a User-Password is at most 128 octets")
    padding = 16 if not password else -len(password) % 16
    padded = password + bytes(padding)
    hidden = bytearray()
    previous = authenticator
    for offset in range(0, len(padded), 16):
        key = int.from_bytes(_MD5(secret + previous).digest(), "big")
        block = (int.from_bytes(padded[offset : offset + 16], "big") ^ key).to_bytes(16, "big")
        hidden += block
        previous = block
    return bytes(hidden)


def _password_text(octets: bytes) -> str | PasswordIssue:
    if b"\x00" in octets:
        return PasswordIssue.NOT_TEXT
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        return PasswordIssue.NOT_TEXT


def split_text(text: str, limit: int = MAX_VALUE_LENGTH) -> list[bytes]:
    """UTF-8 octets of ``text`` in chunks of at most ``limit``, never splitting a character.

    Several Reply-Message attributes are shown by a NAS in order (RFC 2865 §5.18).
    """
    encoded = text.encode("utf-8")
    chunks: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = min(start + limit, len(encoded))
        # Step back over UTF-8 continuation octets (10xxxxxx) so a character stays whole.
        while end < len(encoded) and end > start and (encoded[end] & 0xC0) == 0x80:
            end -= 1
        chunks.append(encoded[start:end])
        start = end
    return chunks


def encode_reply(
    request: RadiusRequest,
    code: RadiusCode,
    secret: bytes,
    attributes: Iterable[tuple[int, bytes]] = (),
    *,
    message_authenticator: bool = True,
) -> bytes:
    """Encode a signed reply to ``request``.

    Layout: Message-Authenticator (unless ``message_authenticator`` is false, as for an
    Accounting-Response, which the Response Authenticator alone signs), then
    ``attributes`` in the order given, then the request's Proxy-State attributes in
    their order. Raises :class:`RadiusEncodeError` for a value over 253 octets or a
    reply over 4096.
    """
    body = bytearray(b"\x50\x12" + _ZERO_VECTOR if message_authenticator else b"")
    _append(body, attributes)
    _append(body, ((Attr.PROXY_STATE, value) for value in request.proxy_states))
    length = HEADER_LENGTH + len(body)
    if length > MAX_PACKET_LENGTH:
        raise RadiusEncodeError(f"reply of {length} octets is over {MAX_PACKET_LENGTH}")
    header = struct.pack("!BBH", code, request.identifier, length)
    if message_authenticator:
        body[2:18] = _hmac_md5(secret, bytes(header + request.authenticator + body))
    response_authenticator = _MD5(header + request.authenticator + body + secret).digest()
    return header + response_authenticator + bytes(body)


def _append(body: bytearray, attributes: Iterable[tuple[int, bytes]]) -> None:
    for number, value in attributes:
        if len(value) > MAX_VALUE_LENGTH:
            raise RadiusEncodeError(f"attribute {number} value is over {MAX_VALUE_LENGTH} octets")
        body.append(number)
        body.append(len(value) + 2)
        body += value


def encode_request(
    code: RadiusCode,
    identifier: int,
    authenticator: bytes,
    secret: bytes,
    attributes: Sequence[tuple[int, bytes]],
    *,
    message_authenticator: bool = True,
) -> bytes:
    """Encode a request as a NAS would (client side: tests and load generators).

    ``attributes`` are sent as given (hide a User-Password with :func:`hide_password`
    first); the Message-Authenticator, when asked for, goes first.
    """
    body = bytearray()
    if message_authenticator:
        body += b"\x50\x12" + _ZERO_VECTOR
    _append(body, attributes)
    length = HEADER_LENGTH + len(body)
    if length > MAX_PACKET_LENGTH:
        raise RadiusEncodeError(f"request of {length} octets is over {MAX_PACKET_LENGTH}")
    header = struct.pack("!BBH", code, identifier, length)
    if message_authenticator:
        body[2:18] = hmac.new(secret, header + authenticator + body, _MD5).digest()
    return header + authenticator + bytes(body)


@dataclass(frozen=True, slots=True)
class RadiusReply:
    """A verified reply to a request this process sent (the upstream first factor)."""

    code: RadiusCode
    attributes: tuple[tuple[int, bytes], ...] = field(repr=False)
    has_message_authenticator: bool

    def get_all(self, attr: int) -> tuple[bytes, ...]:
        return tuple(value for number, value in self.attributes if number == attr)


_REPLY_CODES: Final = frozenset({RadiusCode.ACCESS_ACCEPT, RadiusCode.ACCESS_REJECT, RadiusCode.ACCESS_CHALLENGE})


def decode_reply(data: bytes, secret: bytes, identifier: int, request_authenticator: bytes) -> RadiusReply | PacketFault:
    """Parse and verify a reply to our request ``identifier``: its Response Authenticator
    (RFC 2865 §3) and, when present, its Message-Authenticator (RFC 3579 §3.2), both in
    constant time. Never raises."""
    size = len(data)
    if size < HEADER_LENGTH:
        return PacketFault.TOO_SHORT
    code, ident, length = struct.unpack_from("!BBH", data)
    if length < HEADER_LENGTH or length > size or length > MAX_PACKET_LENGTH:
        return PacketFault.BAD_LENGTH
    if code not in _REPLY_CODES or ident != identifier:
        return PacketFault.UNEXPECTED_CODE
    packet = data[:length]
    expected = _MD5(packet[:4] + request_authenticator + packet[HEADER_LENGTH:] + secret).digest()
    if not hmac.compare_digest(expected, packet[4:HEADER_LENGTH]):
        return PacketFault.BAD_AUTHENTICATOR
    attributes: list[tuple[int, bytes]] = []
    offset = HEADER_LENGTH
    ma_offset = -1
    while offset < length:
        if offset + 2 > length:
            return PacketFault.TRUNCATED
        number, alen = packet[offset], packet[offset + 1]
        if alen < 2 or offset + alen > length:
            return PacketFault.BAD_ATTRIBUTE
        if number == Attr.MESSAGE_AUTHENTICATOR:
            if alen != _MA_ATTRIBUTE_LENGTH or ma_offset >= 0:
                return PacketFault.BAD_MESSAGE_AUTHENTICATOR_LENGTH
            ma_offset = offset
        else:
            attributes.append((number, packet[offset + 2 : offset + alen]))
        offset += alen
        if len(attributes) > MAX_ATTRIBUTES:
            return PacketFault.TOO_MANY_ATTRIBUTES
    if ma_offset >= 0:
        zeroed = packet[: ma_offset + 2] + _ZERO_VECTOR + packet[ma_offset + _MA_ATTRIBUTE_LENGTH :]
        signed = zeroed[:4] + request_authenticator + zeroed[HEADER_LENGTH:]
        mac = hmac.new(secret, signed, _MD5).digest()
        if not hmac.compare_digest(mac, packet[ma_offset + 2 : ma_offset + _MA_ATTRIBUTE_LENGTH]):
            return PacketFault.BAD_AUTHENTICATOR
    return RadiusReply(code=RadiusCode(code), attributes=tuple(attributes), has_message_authenticator=ma_offset >= 0)
