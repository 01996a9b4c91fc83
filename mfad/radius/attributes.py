"""RADIUS attribute names, numbers and types, from the dictionary shipped in this package.

The dictionary file (``mfad/radius/dictionary``, FreeRADIUS syntax) is parsed once,
with pyrad's parser, at import. The codec's hot path works with attribute numbers
(:class:`Attr`); this module checks at import that those numbers agree with the
dictionary, so a wrong edit of either fails loudly instead of mis-parsing packets.

Guarantee: an attribute that a handler names is encoded with the dictionary's type
(an unknown name or a value of the wrong shape raises :class:`RadiusEncodeError`),
and values never pass through pyrad's "0x…" hex guessing for octets.
"""

from __future__ import annotations

import ipaddress
import struct
from enum import IntEnum
from importlib import resources
from typing import Final

from pyrad.dictionary import Dictionary  # untyped: see [tool.mypy.overrides]

from mfad.radius.errors import RadiusEncodeError, RadiusError

AttributeValue = str | int | bytes
"""What a caller may give for an attribute: text, a number (or a VALUE name), octets."""

MAX_VALUE_LENGTH: Final = 253
"""An attribute's Length octet counts its two header octets: 255 - 2 (RFC 2865 §5)."""


class Attr(IntEnum):
    """Numbers of the attributes the codec and the server handle themselves."""

    USER_NAME = 1
    USER_PASSWORD = 2
    CHAP_PASSWORD = 3
    NAS_IP_ADDRESS = 4
    REPLY_MESSAGE = 18
    STATE = 24
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    PROXY_STATE = 33
    EAP_MESSAGE = 79
    MESSAGE_AUTHENTICATOR = 80
    NAS_IPV6_ADDRESS = 95


def _load() -> Dictionary:
    source = resources.files("mfad.radius").joinpath("dictionary")
    with resources.as_file(source) as path:
        return Dictionary(str(path))


DICTIONARY: Final = _load()
"""The parsed package dictionary (pyrad ``Dictionary``): names, numbers, types, VALUEs."""


_DICTIONARY_NAMES: Final = {
    Attr.USER_NAME: "User-Name",
    Attr.USER_PASSWORD: "User-Password",
    Attr.CHAP_PASSWORD: "CHAP-Password",
    Attr.NAS_IP_ADDRESS: "NAS-IP-Address",
    Attr.REPLY_MESSAGE: "Reply-Message",
    Attr.STATE: "State",
    Attr.CALLED_STATION_ID: "Called-Station-Id",
    Attr.CALLING_STATION_ID: "Calling-Station-Id",
    Attr.NAS_IDENTIFIER: "NAS-Identifier",
    Attr.PROXY_STATE: "Proxy-State",
    Attr.EAP_MESSAGE: "EAP-Message",
    Attr.MESSAGE_AUTHENTICATOR: "Message-Authenticator",
    Attr.NAS_IPV6_ADDRESS: "NAS-IPv6-Address",
}


def _check_numbers() -> None:
    for member in Attr:
        name = _DICTIONARY_NAMES[member]
        if name not in DICTIONARY.attributes or DICTIONARY.attributes[name].code != member.value:
            raise RadiusError(f"RADIUS dictionary and codec disagree on {name} ({member.value})")


_check_numbers()

_NAME_BY_CODE: Final[dict[int, str]] = {
    attribute.code: name
    for name, attribute in DICTIONARY.attributes.items()
    if not attribute.vendor and not attribute.is_sub_attribute
}

RESERVED_IN_REPLIES: Final = frozenset(
    {
        Attr.USER_PASSWORD,
        Attr.CHAP_PASSWORD,
        Attr.MESSAGE_AUTHENTICATOR,
        Attr.PROXY_STATE,
        Attr.STATE,
        Attr.REPLY_MESSAGE,
        Attr.EAP_MESSAGE,
    }
)
"""Attributes the server writes itself; a handler passes them as Decision fields or not at all."""


def attribute_code(name: str) -> int:
    """The number of a dictionary attribute; :class:`RadiusEncodeError` if unknown."""
    attribute = DICTIONARY.attributes.get(name)
    if attribute is None or attribute.vendor or attribute.is_sub_attribute:
        raise RadiusEncodeError(f"unknown RADIUS attribute {name!r}")
    return int(attribute.code)


def attribute_name(code: int) -> str | None:
    """The dictionary name of an attribute number, or None for one mfad does not name."""
    return _NAME_BY_CODE.get(code)


def encode_value(name: str, value: AttributeValue) -> tuple[int, bytes]:
    """Encode one named attribute as ``(number, octets)`` with the dictionary's type."""
    code = attribute_code(name)
    attribute = DICTIONARY.attributes[name]
    kind: str = attribute.type
    try:
        octets = _encode(kind, attribute.values, value)
    except (ValueError, TypeError, struct.error, OverflowError) as exc:
        raise RadiusEncodeError(f"bad value for RADIUS attribute {name}: {exc}") from None
    if len(octets) > MAX_VALUE_LENGTH:
        raise RadiusEncodeError(
            f"value of RADIUS attribute {name} is over {MAX_VALUE_LENGTH} octets"
        )
    return code, octets


def decode_value(code: int, octets: bytes) -> AttributeValue:
    """Decode a received attribute by its dictionary type; unknown numbers stay octets.

    Text that is not valid UTF-8 and values of the wrong size stay octets: the caller
    sees exactly what was sent, never a guess.
    """
    name = _NAME_BY_CODE.get(code)
    if name is None:
        return octets
    kind = DICTIONARY.attributes[name].type
    try:
        if kind == "string":
            return octets.decode("utf-8")
        if kind in ("integer", "date") and len(octets) == 4:
            return int.from_bytes(octets, "big")
        if kind == "ipaddr" and len(octets) == 4:
            return str(ipaddress.IPv4Address(octets))
        if kind == "ipv6addr" and len(octets) == 16:
            return str(ipaddress.IPv6Address(octets))
    except UnicodeDecodeError:
        return octets
    return octets


def _encode(kind: str, named_values: object, value: AttributeValue) -> bytes:
    if kind == "octets":
        if not isinstance(value, bytes):
            raise TypeError("octets need bytes")
        return value
    if kind == "string":
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
        raise TypeError("text needs str")
    if kind in ("integer", "date"):
        if isinstance(value, str) and kind == "integer":
            encoded = _named_value(named_values, value)
            if encoded is None:
                raise ValueError(f"no VALUE named {value!r}")
            return encoded
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("a number is needed")
        return struct.pack("!I", value)
    if kind == "ipaddr" and isinstance(value, str):
        return ipaddress.IPv4Address(value).packed
    if kind == "ipv6addr" and isinstance(value, str):
        return ipaddress.IPv6Address(value).packed
    raise TypeError(f"mfad does not send attributes of type {kind}")


def _named_value(named_values: object, name: str) -> bytes | None:
    # pyrad keeps VALUE names in a bidict of name -> encoded octets.
    forward = getattr(named_values, "forward", None)
    if not isinstance(forward, dict):
        return None
    encoded = forward.get(name)
    return encoded if isinstance(encoded, bytes) else None
