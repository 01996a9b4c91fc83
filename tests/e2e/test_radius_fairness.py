"""Two NASes on one real ``mfad serve`` (both engines) in challenge mode, with argon2id
work: one floods at 500 requests/s — within the rate limit it is given here, the former
default — while the other signs its users in as a NAS does (3 s timeout, 2 retries).
The quiet NAS's requests are all answered: per-client shares of the in-flight cap and a
fair queue in front of password hashing keep the flood to its own share. What the flood
loses is counted per client (``mfad_radius_requests_shed_total``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from pathlib import Path

import pytest
from e2e_daemon import StartDaemon, mfad_daemon  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, UdpNas, pyrad_request  # noqa: E402

pytestmark = pytest.mark.slow  # a real mfad serve subprocess
FLOOD_RATE = 500  # requests/s
QUIET_SIGN_INS = 30
PASSWORD = "correct horse battery staple"
#: Real argon2id work, lighter than the default (~30 ms a hash here, so ~60/s on two slots):
#: hashing is still the bottleneck by far at 500 requests/s, and the test stays quick on a
#: machine that other work shares.
ARGON2 = {"time_cost": 2, "memory_kib": 16384, "parallelism": 1}


async def flood(nas: UdpNas, stop: asyncio.Event) -> int:
    """Password sign-ins of made-up users (each costs a dummy argon2id hash) at FLOOD_RATE."""
    sent = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not stop.is_set():
        due = int((loop.time() - start) * FLOOD_RATE)
        for _ in range(due - sent):
            nas.send(pyrad_request(user=f"flood{sent}", password="guess", identifier=sent % 256).RequestPacket())
            sent += 1
        while not nas.collector.queue.empty():
            nas.collector.queue.get_nowait()
        await asyncio.sleep(0.01)
    return sent


async def sign_in_like_a_nas(nas: UdpNas) -> bool:
    """Round one of a sign-in (the password): answered within three tries of 3 s?"""
    packet = pyrad_request(user="carol", password=PASSWORD).RequestPacket()
    for _ in range(3):
        nas.send(packet)  # a retransmission is the same packet
        with contextlib.suppress(TimeoutError):
            await nas.receive(3.0)
            return True
    return False


def shed(metrics: str, client: str) -> float:
    found = re.findall(rf'^mfad_radius_requests_shed_total{{client="{client}",reason="[a-z_]+"}} (\S+)$',
                       metrics, re.MULTILINE)
    assert found, f"no shed series for {client}"
    return sum(float(v) for v in found)


async def test_a_flooding_nas_does_not_starve_a_quiet_one(mfad_daemon: StartDaemon) -> None:
    clients = [{"name": name, "address": address, "secret": SECRET.decode()}
               for name, address in (("flood", "127.0.0.1"), ("quiet", "127.0.0.2"))]
    mfad = await mfad_daemon(sections={
        "passwords": ARGON2,
        "radius": {"mode": "challenge", "reject_delay_seconds": 0.0, "client_rate_per_second": float(FLOOD_RATE),
                   "clients": clients},
    })
    await mfad.client("ops").admin.create_user("carol", PASSWORD)
    port = mfad.radius_port
    flooder = await UdpNas.connect("127.0.0.1", port)
    quiet = await UdpNas.connect("127.0.0.1", port, local_host="127.0.0.2")
    stop = asyncio.Event()
    flooding = asyncio.create_task(flood(flooder, stop))
    try:
        await asyncio.sleep(2.0)  # the flood is on and the in-flight cap taken
        answered = [await sign_in_like_a_nas(quiet) for _ in range(QUIET_SIGN_INS)]
    finally:
        stop.set()
        sent = await flooding
        await flooder.aclose()
        await quiet.aclose()
    metrics = mfad.daemon.http("/metrics")[1]
    assert sum(answered) == QUIET_SIGN_INS, f"{sum(answered)} of {QUIET_SIGN_INS} answered"
    assert sent > 2 * FLOOD_RATE and shed(metrics, "flood") > 0  # it did flood, and lost its excess
    assert shed(metrics, "quiet") == 0
    assert await mfad.daemon.stop() == 0
