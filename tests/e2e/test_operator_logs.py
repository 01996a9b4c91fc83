"""What an operator reads, from a real ``mfad serve`` (both engines) asked by real clients:
a wrong NAS secret and an unknown NAS logged at WARNING once a minute and counted per
client, one log line per sign-in decision (text and JSON) that never holds the code."""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from peer_tools import find_tool

pytestmark = pytest.mark.slow  # real mfad serve subprocesses

SECRET = "nas-shared-secret-0123"
RADCLIENT = find_tool("radclient")


def radius_sections(**logging: str) -> dict[str, dict[str, object]]:
    return {"radius": {"reject_delay_seconds": 0,
                       "clients": [{"name": "vpn", "address": "127.0.0.1", "secret": SECRET, "mode": "otp_only"}]},
            "logging": {"level": "info", **logging}}


async def radclient(port: int, secret: str, attributes: str) -> str:
    """One Access-Request by FreeRADIUS's radclient (no retry); what it printed."""
    assert RADCLIENT is not None, "radclient (freeradius-utils) is needed"
    process = await asyncio.create_subprocess_exec(
        RADCLIENT, "-x", "-r", "1", "-t", "2", f"127.0.0.1:{port}", "auth", secret,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(15):
        out, _ = await process.communicate(attributes.encode() + b"\n")
    return out.decode(errors="replace")


def radius_port(mfad: Running) -> int:
    return int(mfad.daemon.sections["radius"]["listen"][0].rpartition(":")[2])


def dropped(mfad: Running, client: str, reason: str) -> float:
    _, body = mfad.daemon.http("/metrics")
    match = re.search(rf'^mfad_radius_packets_dropped_total\{{client="{client}",reason="{reason}"\}} (\S+)$', body,
                      re.MULTILINE)
    assert match, f"no dropped series for {client}/{reason}"
    return float(match[1])


async def test_radius_misconfiguration_is_logged_and_counted_per_client(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon(sections=radius_sections())
    port = radius_port(mfad)
    for _ in range(3):  # the wrong secret: the Message-Authenticator does not match
        out = await radclient(port, "not-the-secret-at-all",
                              'User-Name = "alice", User-Password = "123456", Message-Authenticator = 0x00')
        assert "Received" not in out, out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:  # a source no client matches
        stranger.bind(("127.0.0.2", 0))
        stranger.sendto(bytes([1, 7, 0, 20]) + bytes(16), ("127.0.0.1", port))
    out = await radclient(port, SECRET, 'User-Name = "nobody", User-Password = "654321", '
                                        'Message-Authenticator = 0x00')
    assert "Received Access-Reject" in out, out

    await _eventually(lambda: dropped(mfad, "unknown", "unknown_client") == 1)
    assert dropped(mfad, "vpn", "bad_authenticator") == 3
    assert dropped(mfad, "vpn", "unknown_client") == 0  # every series there from the start
    log = mfad.daemon.log()
    wrong_secret = [line for line in log.splitlines() if "dropped: bad_authenticator" in line]
    assert len(wrong_secret) == 1, wrong_secret  # once a minute, not once a packet
    assert " WARNING mfad.radius: RADIUS packet from 127.0.0.1 (client vpn) dropped: bad_authenticator" \
        in wrong_secret[0] and "shared secret" in wrong_secret[0]
    assert "RADIUS packet from 127.0.0.2 (client unknown) dropped: unknown_client" in log
    decision = [line for line in log.splitlines() if "mfad.signin: sign-in " in line]
    assert len(decision) == 1, decision
    assert re.search(r" INFO mfad\.signin: sign-in user=nobody protocol=radius client=vpn source=\S+ "
                     r"step=sign_in_with_code method=\S+ outcome=refused reason=unknown_user latency_ms=[0-9.]+$",
                     decision[0]), decision[0]
    assert "654321" not in log and "123456" not in log and SECRET not in log
    assert await mfad.daemon.stop() == 0


async def test_sign_in_decisions_in_the_json_log(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon(sections={"logging": {"level": "info", "format": "json"}})
    admin = mfad.client("ops").admin
    await admin.create_user("carol", "correct horse battery staple")
    gateway = mfad.client("gw")
    assert await gateway.auth.verify_code("carol", "000000") == "refused"
    lines = [json.loads(line) for line in mfad.daemon.log().splitlines() if line.startswith("{")]
    decisions = [line for line in lines if line["logger"] == "mfad.signin"]
    assert len(decisions) == 1, decisions
    d = decisions[0]
    assert d["level"] == "info" and d["msg"].startswith("sign-in user=carol protocol=grpc")
    assert (d["user"], d["protocol"], d["client"], d["step"], d["method"], d["outcome"], d["reason"]) == (
        "carol", "grpc", "gw", "verify_code", "totp", "refused", "wrong_code")
    assert isinstance(d["latency_ms"], float)
    assert "000000" not in mfad.daemon.log()
    assert await mfad.daemon.stop() == 0


async def _eventually(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.05)
