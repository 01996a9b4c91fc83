"""Bounds every mfad.v1 request must respect before any servicer code runs.

Guarantee: a request reaches a servicer only if every string in it (at any
depth) is within its field's length and free of control characters, every
enum value is one the contract defines, and every timestamp is a real UTC
time; otherwise the call fails with ``InvalidInput`` naming the field
(``client.ip``) and nothing is read or written. Invalid UTF-8 never gets this
far: the request fails to decode and :mod:`mfad.api.servicers.base` answers
INVALID_ARGUMENT for it. The checks are derived from the message descriptors
once per message type, so a field added to the contract is covered at once.

Limits (the contract's LIMITS comment): usernames and names 64 characters,
passwords 1024, codes 16 (the core then wants 6-8 ASCII digits, or a recovery code), email addresses
254, WebAuthn JSON 16 KiB, ids, tokens and reasons 256; anything else 256.
``user_agent`` is cut to 512 characters rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from mfad.core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Text:
    max_chars: int
    #: JSON documents may carry the whitespace controls (tab, newline, carriage return).
    json: bool = False


DEFAULT_TEXT = Text(256)
MAX_BYTES_FIELD = 4096  # raw key handles and public keys are far smaller

#: By field name, across every message (names mean the same thing everywhere in mfad.v1).
TEXT_LIMITS: dict[str, Text] = {
    "username": Text(64),
    "username_prefix": Text(64),
    "name": Text(64),
    "password": Text(1024),
    "code": Text(16),  # a recovery code as printed (11) or typed with spaces
    "address": Text(254),
    "assertion_json": Text(16 * 1024, json=True),
    "credential_json": Text(16 * 1024, json=True),
    "operation": Text(64),
    "event": Text(64),
    "outcome": Text(64),
    "ip": Text(45),  # the longest IPv6 literal (IPv4-mapped, no zone)
}
#: Fields cut to this length instead of refused (the contract says "longer is cut").
CUT_LIMITS: dict[str, int] = {"user_agent": 512}

_TIMESTAMP = "google.protobuf.Timestamp"
_MIN_SECONDS = -62135596800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
_JSON_WHITESPACE = frozenset("\t\n\r")


def _has_control(text: str, allowed: frozenset[str]) -> bool:
    """C0/C1 controls (Unicode category Cc) and the line/paragraph separators."""
    if text.isprintable():  # the common case, in C
        return False
    return any((ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029") and ch not in allowed for ch in text)


def _check_text(path: str, name: str, value: str) -> None:
    if name in CUT_LIMITS:
        if _has_control(value[: CUT_LIMITS[name]], frozenset()):
            raise InvalidInput(path, "must not contain control characters")
        return
    spec = TEXT_LIMITS.get(name, DEFAULT_TEXT)
    if len(value) > spec.max_chars:
        raise InvalidInput(path, f"must be at most {spec.max_chars} characters")
    if _has_control(value, _JSON_WHITESPACE if spec.json else frozenset()):
        raise InvalidInput(path, "must not contain control characters")


def _check_enum(path: str, enum: EnumDescriptor, value: int) -> None:
    if value not in enum.values_by_number:
        raise InvalidInput(path, f"{value} is not a {enum.name} value")


def _check_timestamp(path: str, ts: Any) -> None:
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        raise InvalidInput(path, "is not a valid UTC time")


def check_request(message: Message, prefix: str = "") -> None:
    """Raise InvalidInput for the first field (in field order) that breaks its bounds."""
    for field, value in message.ListFields():
        path = prefix + field.name
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            for item in (value if repeated else (value,)):
                _check_text(path, field.name, item)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            for item in (value if repeated else (value,)):
                if len(item) > MAX_BYTES_FIELD:
                    raise InvalidInput(path, f"must be at most {MAX_BYTES_FIELD} bytes")
        elif field.type == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            assert enum is not None  # an enum field always has its type
            for item in (value if repeated else (value,)):
                _check_enum(path, enum, item)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub: Descriptor | None = field.message_type
            assert sub is not None  # a message field always has its type
            for item in (value if repeated else (value,)):
                if sub.full_name == _TIMESTAMP:
                    _check_timestamp(path, item)
                else:
                    check_request(item, path + ".")


def cut(name: str, value: str) -> str:
    """A cut-not-refused field at its length (``user_agent``)."""
    return value[: CUT_LIMITS.get(name, len(value))]
