"""What the hold-mode and wake-up tests share: a UDP relay that records what a NAS and mfad
say to each other, radclient with retransmissions, a RADIUS service with a hold client,
and the portal's part of an approval over gRPC (a passkey session, a step-up, DecideApproval)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from relying import ORIGIN, PASSWORD
from softauthn import SoftAuthenticator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import _ATTRIBUTE, _RECEIVED, RADCLIENT, SECRET, RadclientResult  # noqa: E402

from mfad_client import ApprovalOutcome, ApprovalStatus, MfadClient, SignInOutcome
from mfad_client import Method as M

from mfad.config import RadiusClientSettings, RadiusSettings
from mfad.core.service import Mfa
from mfad.radius import CountingMetrics
from mfad.radius.daemon import RadiusService, radius_service


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on: Any) -> None:
        self._on = on

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._on(data, addr)


class Relay:
    """Between one NAS and mfad: every datagram each way is kept, in order."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.replies: list[bytes] = []
        self._peer: tuple[Any, ...] | None = None
        self._front: asyncio.DatagramTransport | None = None
        self._back: asyncio.DatagramTransport | None = None
        self.got_reply = asyncio.Event()

    @classmethod
    async def start(cls, host: str, port: int) -> Relay:
        relay = cls()
        loop = asyncio.get_running_loop()
        relay._front, _ = await loop.create_datagram_endpoint(lambda: _Side(relay._from_nas),
                                                              local_addr=("127.0.0.1", 0))
        relay._back, _ = await loop.create_datagram_endpoint(lambda: _Side(relay._from_server),
                                                             remote_addr=(host, port))
        return relay

    @property
    def address(self) -> tuple[str, int]:
        assert self._front is not None
        name = self._front.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    def _from_nas(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._peer = addr
        self.requests.append(data)
        assert self._back is not None
        self._back.sendto(data)

    def _from_server(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.replies.append(data)
        self.got_reply.set()
        if self._peer is not None and self._front is not None:
            self._front.sendto(data, self._peer)

    async def resend(self, data: bytes) -> bytes:
        """Send ``data`` to mfad again, as the NAS would, and return the reply it gets."""
        assert self._back is not None
        before = len(self.replies)
        self._back.sendto(data)
        async with asyncio.timeout(5):
            while len(self.replies) == before:
                self.got_reply.clear()
                await self.got_reply.wait()
        return self.replies[before]

    def close(self) -> None:
        for side in (self._front, self._back):
            if side is not None:
                side.close()


async def radclient_started(host: str, port: int, lines: Sequence[str], *, retries: int,
                            timeout: int = 3) -> asyncio.subprocess.Process:
    """radclient that retransmits every ``timeout`` seconds, ``retries`` times in all."""
    assert RADCLIENT is not None, "radclient (freeradius-utils) is needed"
    process = await asyncio.create_subprocess_exec(
        RADCLIENT, "-x", "-r", str(retries), "-t", str(timeout), f"{host}:{port}", "auth", SECRET.decode(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdin is not None
    process.stdin.write(("\n".join(lines) + "\n").encode())
    process.stdin.close()
    return process


async def radclient_result(process: asyncio.subprocess.Process, limit: float = 90) -> RadclientResult:
    async with asyncio.timeout(limit):
        out, _ = await process.communicate()
    text = out.decode(errors="replace")
    reply: str | None = None
    attributes: list[tuple[str, str]] = []
    for line in text.splitlines():
        if found := _RECEIVED.match(line):
            reply = found.group(1)
        elif (attribute := _ATTRIBUTE.match(line)) and reply is not None:
            attributes.append((attribute.group(1), attribute.group(2).strip('"')))
    return RadclientResult(reply=reply, attributes=attributes, output=text)


def pap(user: str, password: str) -> list[str]:
    return [f'User-Name = "{user}"', f'User-Password = "{password}"', "Message-Authenticator = 0x00"]


@asynccontextmanager
async def hold_radius(mfa: Mfa, config: Any, mode: str, hold: int,
                      reject_delay: float = 0.0) -> AsyncIterator[RadiusService]:
    """The RADIUS service on ``mfa`` with one loopback client in ``mode`` holding ``hold`` seconds."""
    settings = RadiusSettings(listen=["127.0.0.1:0"], mode=mode, reject_delay_seconds=reject_delay,  # type: ignore[arg-type]
                              clients=[RadiusClientSettings(name="lo", address="127.0.0.1", secret=SECRET.decode(),
                                                            approval_hold_seconds=hold)])
    service = radius_service(mfa, dataclasses.replace(config, radius=settings), None, metrics=CountingMetrics())
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        await service.aclose()
        await asyncio.wait_for(task, 10)


async def portal_session(portal: MfadClient, user: str, key: SoftAuthenticator) -> str:
    """A full portal session of ``user``, signed in with the passkey (as the page does)."""
    begun = await portal.auth.begin_sign_in(user, PASSWORD)
    options = json.loads((await portal.auth.start_challenge(begun.challenge_id, M.PASSKEY)).request_options_json)
    done = await portal.auth.complete_challenge(begun.challenge_id, M.PASSKEY,
                                                assertion_json=json.dumps(key.get(options, ORIGIN)))
    assert done.session is not None, done
    return done.session.token


async def grpc_approve(portal: MfadClient, session: str, key: SoftAuthenticator, approval_id: str,
                       number: int = 0) -> ApprovalOutcome:
    """DecideApproval(APPROVE) as the page sends it: a fresh passkey step-up, then the decision."""
    started = await portal.auth.verify_sensitive(operation="approve_signin", method=M.PASSKEY, session=session)
    assert started.challenge is not None
    options = json.loads(started.challenge.request_options_json)
    return await portal.enrollment.approve(session, approval_id, number, challenge_id=started.challenge.challenge_id,
                                           assertion_json=json.dumps(key.get(options, ORIGIN)))


async def pending_of(portal: MfadClient, session: str, limit: float = 20) -> Any:
    """The session user's one pending approval, once there is one."""
    async with asyncio.timeout(limit):
        while not (found := await portal.enrollment.pending_approvals(session)):
            await asyncio.sleep(0.05)
    [pending] = found
    return pending


async def approve_while_watched(service: MfadClient, portal: MfadClient, session: str, key: SoftAuthenticator,
                                username: str = "alice") -> None:
    """A service's sign-in of ``username`` waiting on ``WatchChallenge``, approved through
    the portal's session: the stream learns of it at once (a wake, not the stream's end) and
    the challenge then completes, once."""
    begun = await service.auth.begin_sign_in(username, PASSWORD)
    started = await service.auth.start_challenge(begun.challenge_id, M.APPROVAL)
    stream = service.auth.watch_challenge(begun.challenge_id, timeout_seconds=60)
    assert await anext(stream) is ApprovalStatus.PENDING
    pending = await pending_of(portal, session)
    assert await grpc_approve(portal, session, key, pending.id, int(started.approval_number)) \
        is ApprovalOutcome.APPROVED
    async with asyncio.timeout(20):  # well before the stream's own end of 60 s
        assert [s async for s in stream] == [ApprovalStatus.APPROVED]
    assert (await service.auth.complete_challenge(begun.challenge_id, M.APPROVAL, code="")).outcome \
        is SignInOutcome.ALLOWED
