"""The upstream RADIUS first factor against a real FreeRADIUS (its users file)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from freeradius_peer import FREERADIUS, SECRET, Upstream, start_upstream
from mfad.core.directory import Check, DirectoryReason
from mfad.core.errors import Unavailable
from mfad.directory.radius import UpstreamRadius
from mfad.config import UpstreamRadiusSettings
from mfad.radius.codec import RadiusCode, encode_request
from peer_tools import missing

pytestmark = pytest.mark.slow
StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[StartUpstream]:
    if FREERADIUS is None:
        pytest.skip(missing("freeradius"))
    started: list[Upstream] = []

    async def start(**options: bool) -> Upstream:
        server = await start_upstream(tmp_path / f"freeradius{len(started)}", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def settings(*servers: str, **overrides: object) -> UpstreamRadiusSettings:
    # Debian 12's FreeRADIUS (3.2.1) does not sign its replies: see the test below.
    base = UpstreamRadiusSettings(name="nps", servers=list(servers), secret=SECRET, timeout_seconds=0.5, retries=2,
                                  require_message_authenticator=False)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def silent_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_an_accept_gives_its_groups_and_reply(upstream: StartUpstream) -> None:
    server = await upstream()
    found = await UpstreamRadius(settings(server.address)).authenticate("erin", "erin-upstream-pw")
    assert found.check is Check.ACCEPTED and found.entry is not None
    assert found.entry.groups == ("vpn-contractors",)
    assert dict(found.reply)["Filter-Id"] == b"vpn-acl"


@pytest.mark.parametrize(("username", "password"), [("erin", "wrong"), ("nobody", "erin-upstream-pw"),
                                                    ("frank", "erin-upstream-pw")])
async def test_a_reject_is_a_refusal(upstream: StartUpstream, username: str, password: str) -> None:
    server = await upstream()
    found = await UpstreamRadius(settings(server.address)).authenticate(username, password)
    assert (found.check, found.reason) == (Check.REFUSED, DirectoryReason.WRONG_PASSWORD)


async def test_without_message_authenticator_when_the_upstream_does_not_ask_for_it(upstream: StartUpstream) -> None:
    server = await upstream(require_message_authenticator=False)
    found = await UpstreamRadius(settings(server.address, send_message_authenticator=False)).authenticate(
        "frank", "frank-upstream-pw")
    assert found.accepted


async def test_an_upstream_requiring_message_authenticator_drops_requests_without(upstream: StartUpstream) -> None:
    server = await upstream(require_message_authenticator=True)
    with pytest.raises(Unavailable):
        await UpstreamRadius(settings(server.address, send_message_authenticator=False)).authenticate(
            "frank", "frank-upstream-pw")


async def test_unsigned_replies_are_ignored_by_default(upstream: StartUpstream,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The default requires a signed reply; FreeRADIUS 3.2.1 sends none, so nothing counts —
    and the log says why, rather than "did not answer"."""
    server = await upstream()
    with pytest.raises(Unavailable), caplog.at_level("WARNING", logger="mfad.directory.radius"):
        await UpstreamRadius(settings(server.address, require_message_authenticator=True)).authenticate(
            "frank", "frank-upstream-pw")
    assert "answered without Message-Authenticator" in caplog.text, caplog.text


async def test_auto_requires_message_authenticator_once_a_server_has_sent_one(upstream: StartUpstream) -> None:
    server = await upstream()
    directory = UpstreamRadius(settings(server.address, require_message_authenticator="auto"))
    # Never signed yet: an unsigned Accept counts (an old server keeps working).
    assert (await directory.authenticate("frank", "frank-upstream-pw")).accepted
    assert (await directory.authenticate("grace", "grace-upstream-pw")).accepted  # signed
    # From now on this server's unsigned replies are ignored, as a forgery would be.
    with pytest.raises(Unavailable):
        await directory.authenticate("frank", "frank-upstream-pw")
    assert (await directory.authenticate("grace", "grace-upstream-pw")).accepted
    # Another directory (another process) has not seen a signed reply yet.
    assert (await UpstreamRadius(settings(server.address, require_message_authenticator="auto")).authenticate(
        "frank", "frank-upstream-pw")).accepted


async def test_a_freeradius_told_to_sign_every_reply_is_usable_with_the_default(upstream: StartUpstream) -> None:
    """docs/directory.md's post-auth lines for FreeRADIUS before 3.2.5: accepts and rejects
    are both signed, so a wrong password is a refusal, not a server that does not answer."""
    server = await upstream(sign_replies=True)
    directory = UpstreamRadius(settings(server.address, require_message_authenticator=True))
    assert (await directory.authenticate("frank", "frank-upstream-pw")).accepted
    refused = await directory.authenticate("frank", "wrong")
    assert (refused.check, refused.reason) == (Check.REFUSED, DirectoryReason.WRONG_PASSWORD)


async def test_a_signed_reply_counts_when_required(upstream: StartUpstream) -> None:
    server = await upstream()
    found = await UpstreamRadius(settings(server.address, require_message_authenticator=True)).authenticate(
        "grace", "grace-upstream-pw")
    assert found.accepted and found.entry is not None and found.entry.groups == ("staff",)


async def test_a_wrong_secret_is_no_answer(upstream: StartUpstream) -> None:
    server = await upstream()
    with pytest.raises(Unavailable):
        await UpstreamRadius(settings(server.address, secret="not-the-upstream-secret")).authenticate(
            "frank", "frank-upstream-pw")


async def test_fail_over_from_a_silent_server(upstream: StartUpstream) -> None:
    server = await upstream()
    with silent_udp() as silent:
        first = f"127.0.0.1:{silent.getsockname()[1]}"
        directory = UpstreamRadius(settings(first, server.address))
        assert (await directory.authenticate("frank", "frank-upstream-pw")).accepted
        # The silent server got every retry before the next one was asked.
        silent.setblocking(False)
        sent = 0
        while True:
            try:
                silent.recv(4096)
                sent += 1
            except BlockingIOError:
                break
        assert sent == 2


async def test_every_server_down_is_unavailable_never_an_accept() -> None:
    with silent_udp() as a, silent_udp() as b:
        directory = UpstreamRadius(settings(f"127.0.0.1:{a.getsockname()[1]}", f"127.0.0.1:{b.getsockname()[1]}"))
        with pytest.raises(Unavailable):
            await directory.authenticate("frank", "frank-upstream-pw")


async def test_a_forged_accept_is_ignored() -> None:
    """A reply that is not signed with the secret (an off-path spoof) does not count."""
    with silent_udp() as sock:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        directory = UpstreamRadius(settings(f"127.0.0.1:{sock.getsockname()[1]}", timeout_seconds=1.0, retries=1))
        task = asyncio.create_task(directory.authenticate("frank", "anything"))
        data, addr = await loop.sock_recvfrom(sock, 4096)
        # Answer with the right id but signed with another secret, and once unsigned.
        forged = encode_request(RadiusCode.ACCESS_ACCEPT, data[1], bytes(16), b"guess", [])
        await loop.sock_sendto(sock, forged, addr)
        with pytest.raises(Unavailable):
            await task


def test_a_signed_reply_verifies_and_a_tampered_one_does_not() -> None:
    from mfad.radius.codec import PacketFault, RadiusReply, RadiusRequest, decode_reply, decode_request, encode_reply

    secret, authenticator = b"upstream-shared-secret-0123", bytes(range(16))
    raw = encode_request(RadiusCode.ACCESS_REQUEST, 9, authenticator, secret, [(1, b"erin")])
    request = decode_request(raw, secret)
    assert isinstance(request, RadiusRequest)
    reply = encode_reply(request, RadiusCode.ACCESS_ACCEPT, secret, [(25, b"staff")])
    decoded = decode_reply(reply, secret, 9, authenticator)
    assert isinstance(decoded, RadiusReply) and decoded.has_message_authenticator
    assert decoded.get_all(25) == (b"staff",)
    assert decode_reply(reply, secret, 8, authenticator) is PacketFault.UNEXPECTED_CODE
    assert decode_reply(reply, b"other-secret", 9, authenticator) is PacketFault.BAD_AUTHENTICATOR
    # A changed Message-Authenticator with a recomputed Response Authenticator: still refused.
    import hashlib
    body = bytearray(reply)
    body[22] ^= 1
    body[4:20] = hashlib.md5(bytes(body[:4]) + authenticator + bytes(body[20:]) + secret).digest()
    assert decode_reply(bytes(body), secret, 9, authenticator) is PacketFault.BAD_AUTHENTICATOR
    assert decode_reply(reply[:19], secret, 9, authenticator) is PacketFault.TOO_SHORT
