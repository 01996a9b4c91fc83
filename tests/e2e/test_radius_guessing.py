"""Guessing over RADIUS against a real ``mfad serve`` (both engines) whose wall clock the
test sets (libfaketime): a fixed code sent once a TOTP step for 200 steps is counted and
backed off exactly like distinct codes, a NAS resending a stale code within its window
does not lock its user out, and an untrusted Calling-Station-Id does not pick the source.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import DaemonClock

from mfad.core import totp
from mfad.core.model import LimitState
from mfad.core.ports import AuditFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, UdpNas, pyrad_request  # noqa: E402

pytestmark = pytest.mark.slow  # real mfad serve subprocesses
PASSWORD = "correct horse battery staple"
START = dt.datetime(2026, 1, 1, 9, 0, 15, tzinfo=dt.UTC)  # 15 s into a step
STEP = dt.timedelta(seconds=30)
ACCESS_ACCEPT, ACCESS_REJECT = 2, 3


class Phone:
    """The user's authenticator app on the daemon's clock."""

    def __init__(self, secret_base32: str) -> None:
        self.key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))

    def code(self, when: dt.datetime) -> str:
        return totp.hotp(self.key, totp.step_at(when, 30), 6)

    def wrong_codes(self, when: dt.datetime) -> Iterator[str]:
        near = {totp.hotp(self.key, totp.step_at(when, 30) + d, 6) for d in range(-3, 215)}
        return (c for c in (f"{n:06d}" for n in itertools.count(100000)) if c not in near)


async def daemon_on_a_clock(mfad_daemon: StartDaemon, tmp_path: Path, **client: Any) -> tuple[Running, DaemonClock]:
    clock = DaemonClock(tmp_path / "faketime")
    clock.set(START)
    nas = {"name": "vpn", "address": "127.0.0.1", "secret": SECRET.decode(), "mode": "otp_only", **client}
    mfad = await mfad_daemon(clock=clock, sections={"radius": {"reject_delay_seconds": 0.0, "clients": [nas]}})
    return mfad, clock


async def enrolled(mfad: Running, username: str) -> Phone:
    admin = mfad.client("ops").admin
    await admin.create_user(username, PASSWORD)
    provisioning = await admin.bind_totp(username)
    phone = Phone(provisioning.secret_base32)
    await admin.confirm_totp(username, provisioning.device_id, phone.code(START - STEP))
    return phone


async def ask(nas: UdpNas, user: str, code: str, station: str | None = None) -> int:
    nas.send(pyrad_request(user=user, password=code, station=station).RequestPacket())
    return (await nas.receive(5.0))[0]


async def radius_nas(mfad: Running) -> UdpNas:
    return await UdpNas.connect("127.0.0.1", mfad.radius_port)


async def limits_of(mfad: Running, username: str) -> LimitState:
    user = await mfad.store.load_user_by_name(username)
    assert user is not None
    return await mfad.store.load_limits(user.id)


async def reasons(mfad: Running, username: str) -> list[str]:
    user = await mfad.store.load_user_by_name(username)
    assert user is not None
    rows = await mfad.store.query_audit(AuditFilter(user_id=user.id, limit=1000))
    return [r.event.reason or "" for r in reversed(rows) if r.event.event in ("signin", "verify")]


async def test_a_fixed_code_once_a_step_for_200_steps_is_counted_like_distinct_codes(
        mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    mfad, clock = await daemon_on_a_clock(mfad_daemon, tmp_path)
    alice, bob = await enrolled(mfad, "alice"), await enrolled(mfad, "bob")
    fixed = next(c for c in alice.wrong_codes(START) if c in itertools.islice(bob.wrong_codes(START), 5000))
    bob_codes = bob.wrong_codes(START)
    nas = await radius_nas(mfad)
    try:
        for i in range(200):
            # 31 s apart: a new TOTP step each time, never on a back-off's end (multiples of 30 s).
            clock.set(START + i * (STEP + dt.timedelta(seconds=1)))
            assert await ask(nas, "alice", fixed) == ACCESS_REJECT
            assert await ask(nas, "bob", next(bob_codes)) == ACCESS_REJECT
    finally:
        await nas.aclose()
    alice_reasons, bob_reasons = await reasons(mfad, "alice"), await reasons(mfad, "bob")
    assert alice_reasons == bob_reasons  # counted, backed off, locked: the same as any guesser
    alice_limits = await limits_of(mfad, "alice")
    assert alice_limits.total_failures == alice_reasons.count("wrong_code") > 5
    assert "source_backoff" in alice_reasons
    assert await mfad.daemon.stop() == 0


async def test_a_nas_resending_a_stale_code_within_its_window_does_not_lock_the_user_out(
        mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    mfad, clock = await daemon_on_a_clock(mfad_daemon, tmp_path)
    alice = await enrolled(mfad, "alice")
    nas = await radius_nas(mfad)
    try:
        saved = alice.code(START)
        assert await ask(nas, "alice", saved) == ACCESS_ACCEPT
        for i in range(1, 19):  # the VPN client reconnects every 5 s for 90 s with the saved code
            clock.set(START + dt.timedelta(seconds=5 * i))
            assert await ask(nas, "alice", saved) == ACCESS_REJECT
        limits = await limits_of(mfad, "alice")
        assert 1 <= limits.total_failures <= 4 and limits.locked_until is None
        assert limits.source_blocked_until is None
        later = START + 4 * STEP
        clock.set(later)
        assert await ask(nas, "alice", alice.code(later)) == ACCESS_ACCEPT
    finally:
        await nas.aclose()
    assert await mfad.daemon.stop() == 0


@pytest.mark.parametrize("trusted", [False, True])
async def test_only_a_trusted_calling_station_id_picks_the_source(
        mfad_daemon: StartDaemon, tmp_path: Path, db: Any, trusted: bool) -> None:
    mfad, clock = await daemon_on_a_clock(mfad_daemon, tmp_path, trust_calling_station_id=trusted)
    alice = await enrolled(mfad, "alice")
    codes = alice.wrong_codes(START)
    nas = await radius_nas(mfad)
    try:
        for i in range(8):  # a guesser naming a new station each time
            assert await ask(nas, "alice", next(codes), station=f"02-00-00-00-00-{i:02x}") == ACCESS_REJECT
    finally:
        await nas.aclose()
    sources = {r["source"] for r in await db.rows("SELECT source FROM source_limits")}
    buckets = {r["source"] for r in await db.rows("SELECT source FROM source_buckets")}
    audited = set(await reasons(mfad, "alice"))
    if trusted:
        assert len(sources) == len(buckets) == 8
        assert "source_backoff" not in audited
    else:
        assert sources == buckets == {"nas:vpn/127.0.0.1"}
        # One source: after 5 failures it backs off, whatever station the packets name.
        assert "source_backoff" in audited
    assert await mfad.daemon.stop() == 0
