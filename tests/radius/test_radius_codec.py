"""The codec against pyrad as an independent implementation, and against hand-made bytes."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrad.packet import AccessAccept, AuthPacket  # type: ignore[import-untyped]
from radius_peers import SECRET, check_reply, pyrad_request

from mfad.radius import PasswordIssue, RadiusCode, RadiusEncodeError, RadiusRequest
from mfad.radius.attributes import (
    DICTIONARY,
    Attr,
    AttributeValue,
    attribute_code,
    decode_value,
    encode_value,
)
from mfad.radius.codec import (
    PacketFault,
    decode_request,
    decrypt_password,
    encode_reply,
    encode_request,
    hide_password,
    split_text,
)


def decoded(packet: AuthPacket) -> RadiusRequest:
    result = decode_request(packet.RequestPacket(), packet.secret)
    assert isinstance(result, RadiusRequest), result
    return result


def raw_request(attributes: bytes, *, code: int = 1, length: int | None = None) -> bytes:
    """Hand-made octets (deterministic: parametrised ids must match across xdist workers)."""
    size = 20 + len(attributes) if length is None else length
    return struct.pack("!BBH", code, 9, size) + bytes(range(16)) + attributes


def test_decodes_a_pyrad_access_request_with_every_field() -> None:
    packet = pyrad_request(user="alice", password="pw", proxy_states=[b"\x01", b"\x02\x03"])
    packet["Calling-Station-Id"] = "02-00-00-00-00-01"
    request = decoded(packet)
    assert request.code is RadiusCode.ACCESS_REQUEST
    assert request.identifier == packet.id
    assert request.authenticator == packet.authenticator
    assert request.user_name == "alice"
    assert request.password == "pw"
    assert request.has_message_authenticator
    assert request.proxy_states == (b"\x01", b"\x02\x03")
    assert request.calling_station_id == "02-00-00-00-00-01"
    assert request.typed(Attr.NAS_IDENTIFIER) == "test-nas"
    assert request.state is None


def test_repr_shows_no_password_or_attribute_octets() -> None:
    request = decoded(pyrad_request(user="alice", password="hunter2-secret"))
    assert "hunter2" not in repr(request)
    assert "alice" not in repr(request)


@pytest.mark.parametrize("password", ["", "a", "x" * 16, "y" * 17, "ü" * 64, "p" * 128])
def test_password_round_trips_exactly(password: str) -> None:
    packet = pyrad_request(password=password.encode())
    assert decoded(packet).password == password


def test_wrong_secret_without_message_authenticator_gives_not_text_never_garbage() -> None:
    # With a wrong secret the decrypted octets are noise; pyrad would drop the invalid
    # UTF-8 and return a shorter "password". Here it must be a refusal input.
    outcomes = set()
    for _ in range(50):
        packet = pyrad_request(
            password="123456", secret=b"the-other-secret-xyz", message_authenticator=False
        )
        result = decode_request(packet.RequestPacket(), SECRET)
        assert isinstance(result, RadiusRequest)
        outcomes.add(result.password if isinstance(result.password, PasswordIssue) else "text")
        assert result.password != "123456"
    assert PasswordIssue.NOT_TEXT in outcomes


@pytest.mark.parametrize("password", [b"\xff\xfe123456", b"12\x003456"], ids=["invalid-utf8", "embedded-nul"])
def test_a_password_of_invalid_utf8_or_with_a_nul_is_not_text(password: bytes) -> None:
    authenticator = os.urandom(16)
    hidden = hide_password(password, SECRET, authenticator)
    data = encode_request(
        RadiusCode.ACCESS_REQUEST, 1, authenticator, SECRET, [(Attr.USER_PASSWORD, hidden)]
    )
    result = decode_request(data, SECRET)
    assert isinstance(result, RadiusRequest)
    assert result.password is PasswordIssue.NOT_TEXT


def test_absent_password() -> None:
    assert decoded(pyrad_request(password=None)).password is PasswordIssue.ABSENT


def test_hide_password_matches_pyrad() -> None:
    packet = AuthPacket(secret=SECRET, authenticator=os.urandom(16), dict=DICTIONARY)
    for password in (b"", b"pw", b"0123456789abcdef", b"z" * 100):
        assert hide_password(password, SECRET, packet.authenticator) == packet.PwCrypt(password)
        assert decrypt_password(packet.PwCrypt(password), SECRET, packet.authenticator) == password


def test_message_authenticator_made_with_another_secret_is_bad_authenticator() -> None:
    packet = pyrad_request(secret=b"the-other-secret-xyz")
    assert decode_request(packet.RequestPacket(), SECRET) is PacketFault.BAD_AUTHENTICATOR


def test_changed_attribute_breaks_message_authenticator() -> None:
    data = bytearray(pyrad_request(user="alice").RequestPacket())
    position = data.index(b"alice")
    data[position] = ord("b")
    assert decode_request(bytes(data), SECRET) is PacketFault.BAD_AUTHENTICATOR


def test_message_authenticator_not_first_is_verified_too() -> None:
    authenticator = os.urandom(16)
    attrs = (bytes([1, 7]) + b"alice", bytes([80, 18]) + bytes(16))
    body = b"".join(attrs)
    header = struct.pack("!BBH", 1, 3, 20 + len(body))
    ma = hmac.new(SECRET, header + authenticator + body, hashlib.md5).digest()
    data = header + authenticator + attrs[0] + bytes([80, 18]) + ma
    result = decode_request(data, SECRET)
    assert isinstance(result, RadiusRequest) and result.has_message_authenticator


def test_octets_after_length_are_padding_and_ignored() -> None:
    data = pyrad_request().RequestPacket()
    result = decode_request(data + b"\x00" * 30, SECRET)
    assert isinstance(result, RadiusRequest) and result.password == "pw"


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", PacketFault.TOO_SHORT),
        (b"\x01" * 19, PacketFault.TOO_SHORT),
        (raw_request(b"\x01\x03a" * 1400), PacketFault.TOO_LONG),
        (raw_request(b"", length=19), PacketFault.BAD_LENGTH),
        (raw_request(b"\x01\x07alice", length=40), PacketFault.TRUNCATED),
        (raw_request(b"", code=4), PacketFault.UNEXPECTED_CODE),
        (raw_request(b"", code=2), PacketFault.UNEXPECTED_CODE),
        (raw_request(b"\x01\x00"), PacketFault.BAD_ATTRIBUTE),
        (raw_request(b"\x01\x01"), PacketFault.BAD_ATTRIBUTE),
        (raw_request(b"\x01"), PacketFault.BAD_ATTRIBUTE),
        (raw_request(b"\x01\x09alice"), PacketFault.BAD_ATTRIBUTE),
        (raw_request(b"\x50\x11" + bytes(15)), PacketFault.BAD_MESSAGE_AUTHENTICATOR_LENGTH),
        (raw_request(b"\x50\x13" + bytes(17)), PacketFault.BAD_MESSAGE_AUTHENTICATOR_LENGTH),
        (raw_request(b"\x01\x03a\x01\x03b"), PacketFault.REPEATED_ATTRIBUTE),
        (raw_request(b"\x02\x0a" + bytes(8)), PacketFault.BAD_USER_PASSWORD),
        (raw_request(b"\x02\x13" + bytes(17)), PacketFault.BAD_USER_PASSWORD),
        (raw_request(b"\x02\x92" + bytes(144)), PacketFault.BAD_USER_PASSWORD),
        (raw_request(b"\x1e\x02" * 201), PacketFault.TOO_MANY_ATTRIBUTES),
    ],
    ids=lambda value: value.value if isinstance(value, PacketFault) else str(len(value)),
)
def test_malformed_packets_are_named_faults(data: bytes, fault: PacketFault) -> None:
    assert decode_request(data, SECRET) is fault


def test_empty_attribute_values_are_kept() -> None:
    result = decode_request(raw_request(b"\x1e\x02"), SECRET)
    assert isinstance(result, RadiusRequest)
    assert result.attributes == ((30, b""),)


def test_largest_packet_is_accepted() -> None:
    filler = b"\x1e\xff" + bytes(253)
    rest = 4076 - 15 * 255
    body = filler * 15 + b"\x1e" + bytes([rest]) + bytes(rest - 2)
    data = raw_request(body)
    assert len(data) == 4096
    assert isinstance(decode_request(data, SECRET), RadiusRequest)


def test_reply_is_signed_with_message_authenticator_first_and_proxy_state_in_order() -> None:
    packet = pyrad_request(proxy_states=[b"first", b"second", b"third"])
    request = decoded(packet)
    raw = encode_reply(
        request,
        RadiusCode.ACCESS_CHALLENGE,
        SECRET,
        [(Attr.REPLY_MESSAGE, b"Enter code"), (Attr.STATE, b"opaque-state")],
    )
    reply = check_reply(packet, raw)
    assert reply.code == RadiusCode.ACCESS_CHALLENGE
    assert reply.attribute_numbers == [80, 18, 24, 33, 33, 33]
    assert reply.values("Proxy-State") == [b"first", b"second", b"third"]
    assert reply.values("State") == [b"opaque-state"]
    assert reply.values("Reply-Message") == ["Enter code"]


def test_reply_matches_what_pyrad_builds() -> None:
    packet = pyrad_request(proxy_states=[b"ps"])
    ours = encode_reply(
        decoded(packet), RadiusCode.ACCESS_ACCEPT, SECRET, [(Attr.REPLY_MESSAGE, b"Welcome")]
    )
    theirs = packet.CreateReply()
    theirs.code = AccessAccept
    theirs.AddAttribute("Reply-Message", "Welcome")
    # pyrad puts Proxy-State before the attributes added later; compare as sets of facts.
    decoded_theirs = AuthPacket(packet=theirs.ReplyPacket(), dict=DICTIONARY, secret=SECRET)
    decoded_ours = AuthPacket(packet=ours, dict=DICTIONARY, secret=SECRET)
    for name in ("Reply-Message", "Proxy-State"):
        assert decoded_ours[name] == decoded_theirs[name]
    assert packet.VerifyReply(decoded_ours, ours, enforce_ma=True)


def test_status_server_reply_verifies() -> None:
    packet = pyrad_request(code=12)
    request = decoded(packet)
    assert request.code is RadiusCode.STATUS_SERVER
    check_reply(packet, encode_reply(request, RadiusCode.ACCESS_ACCEPT, SECRET))


def test_reply_refuses_long_values_and_oversize_packets() -> None:
    request = decoded(pyrad_request())
    with pytest.raises(RadiusEncodeError):
        encode_reply(request, RadiusCode.ACCESS_ACCEPT, SECRET, [(Attr.REPLY_MESSAGE, b"x" * 254)])
    with pytest.raises(RadiusEncodeError):
        encode_reply(
            request, RadiusCode.ACCESS_ACCEPT, SECRET, [(Attr.REPLY_MESSAGE, b"x" * 253)] * 17
        )


@given(st.text(max_size=2000))
def test_split_text_keeps_characters_whole(text: str) -> None:
    chunks = split_text(text)
    assert b"".join(chunks) == text.encode()
    assert all(0 < len(chunk) <= 253 for chunk in chunks)
    assert "".join(chunk.decode("utf-8") for chunk in chunks) == text


def test_codec_numbers_agree_with_the_shipped_dictionary() -> None:
    names = {a.code: name for name, a in DICTIONARY.attributes.items() if not a.vendor}
    for member in Attr:
        assert attribute_code(names[member]) == member


def test_named_values_encode_by_dictionary_type() -> None:
    assert encode_value("Session-Timeout", 120) == (27, (120).to_bytes(4, "big"))
    assert encode_value("Service-Type", "Authenticate-Only") == (6, (8).to_bytes(4, "big"))
    assert encode_value("Class", b"0x41") == (25, b"0x41")  # octets are never hex-guessed
    assert encode_value("Filter-Id", "vpn-users") == (11, b"vpn-users")
    assert encode_value("Framed-IP-Address", "192.0.2.5") == (8, bytes([192, 0, 2, 5]))
    assert encode_value("NAS-IPv6-Address", "2001:db8::1")[1] == bytes.fromhex(
        "20010db8" + "0" * 22 + "01"
    )
    bad: list[tuple[str, AttributeValue]] = [
        ("No-Such-Attribute", 1),
        ("Session-Timeout", "soon"),
        ("Session-Timeout", -1),
        ("Session-Timeout", True),
        ("Class", "text"),
        ("Filter-Id", "x" * 254),
    ]
    for name, value in bad:
        with pytest.raises(RadiusEncodeError):
            encode_value(name, value)


def test_decode_value_by_type_and_unknown_numbers_stay_octets() -> None:
    assert decode_value(4, bytes([192, 0, 2, 1])) == "192.0.2.1"
    assert decode_value(5, (17).to_bytes(4, "big")) == 17
    assert decode_value(32, b"nas-1") == "nas-1"
    assert decode_value(32, b"\xff") == b"\xff"
    assert decode_value(250, b"\x01") == b"\x01"
