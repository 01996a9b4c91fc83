"""A flood of distinct usernames and Calling-Station-Ids against a real ``mfad serve``
(both engines): every table stays bounded — what the flood adds lives only until it
changes nothing (full buckets, expired claims and replies) and is pruned."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_daemon import StartDaemon, mfad_daemon  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, UdpNas, pyrad_request  # noqa: E402

pytestmark = pytest.mark.slow  # a real mfad serve subprocess
FLOOD = 3000
WAVE = 100
#: Tables nothing in the flood may add to (unknown users touch no user's state).
UNTOUCHED = ("users", "devices", "user_limits", "source_limits", "challenges", "remembered", "user_sessions")


async def test_a_flood_of_distinct_values_leaves_every_table_bounded(mfad_daemon: StartDaemon, db: Any) -> None:
    nas = {"name": "vpn", "address": "127.0.0.1", "secret": SECRET.decode(), "mode": "otp_only",
           "trust_calling_station_id": True}  # trusted: each station is a source of its own
    mfad = await mfad_daemon(sections={
        "radius": {"reject_delay_seconds": 0.0, "shared_replies": True, "client_rate_per_second": 100000.0,
                   "clients": [nas]},
        # Buckets full again 1 s after their last failure; pruned every second.
        "limits": {"source_failure_rate": 10.0, "source_failure_burst": 10},
        "storage": {"prune_interval_seconds": 1.0},
    })
    before = await db.counts()
    port = mfad.radius_port
    udp = await UdpNas.connect("127.0.0.1", port)
    answered = 0
    try:
        for wave in range(FLOOD // WAVE):
            for i in range(wave * WAVE, (wave + 1) * WAVE):
                udp.send(pyrad_request(user=f"nobody{i}", password="123456", identifier=i % 256,
                                       station=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}").RequestPacket())
            for _ in range(WAVE):
                try:
                    await udp.receive(10.0)
                    answered += 1
                except TimeoutError:  # a busy machine: what was decided still counts
                    break
    finally:
        await udp.aclose()
    flooded = await db.counts()
    assert answered > FLOOD // 2 and flooded["source_buckets"] > 0
    assert flooded["audit"] - before["audit"] >= answered  # one row per request decided

    async with asyncio.timeout(60):  # the next prunes (one a second) take them
        while (counts := await db.counts())["source_buckets"] or counts["radius_requests"]:
            await asyncio.sleep(0.5)
    assert {t: counts[t] for t in UNTOUCHED} == {t: before[t] for t in UNTOUCHED}
    # Audit rows are kept for [audit] retention_days: bounded by time, not by this flood.
    assert counts["audit"] >= flooded["audit"]
    assert await mfad.daemon.stop() == 0
