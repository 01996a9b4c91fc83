"""Live reload of a real ``mfad serve`` (both engines): SIGHUP while radclient, a separate
process, keeps a RADIUS load going — every request answered, the new client secret in
force at once, a bad file changing nothing, what cannot be reloaded named in the log."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
from pathlib import Path

import pytest
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from peer_tools import find_tool
from tls_ca import TestCA

pytestmark = pytest.mark.slow  # real mfad serve subprocesses

RADCLIENT = find_tool("radclient")
LOAD_SECRET = "load-shared-secret-0123"
OLD_SECRET = "old-shared-secret-0123"
NEW_SECRET = "new-shared-secret-4567"
REQUESTS = 20000


def sections(port: int, v6_secret: str, level: str = "info", workers: int = 1) -> dict[str, dict[str, object]]:
    return {"radius": {"listen": [f"127.0.0.1:{port}", f"[::1]:{port}"], "reject_delay_seconds": 0,
                       "workers": workers,
                       "client_rate_per_second": 100000.0,
                       "clients": [{"name": "load", "address": "127.0.0.1", "secret": LOAD_SECRET, "mode": "otp_only"},
                                   {"name": "v6", "address": "::1", "secret": v6_secret, "mode": "otp_only"}]},
            "logging": {"level": level}}


async def one_request(host: str, port: int, secret: str) -> str:
    assert RADCLIENT is not None, "radclient (freeradius-utils) is needed"
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    process = await asyncio.create_subprocess_exec(
        RADCLIENT, "-x", "-r", "1", "-t", "2", server, "auth", secret, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(15):
        out, _ = await process.communicate(
            b'User-Name = "nobody", User-Password = "123456", Message-Authenticator = 0x00\n')
    return out.decode(errors="replace")


async def hangup(mfad: Running, reloads_before: int) -> None:
    """SIGHUP, then wait (bounded) until the daemon says it reloaded once more."""
    assert mfad.daemon.proc is not None
    mfad.daemon.proc.send_signal(signal.SIGHUP)
    async with asyncio.timeout(20):
        while _reloads(mfad) <= reloads_before:
            await asyncio.sleep(0.05)


def _reloads(mfad: Running) -> int:
    _, body = mfad.daemon.http("/metrics")
    return sum(int(float(n)) for n in re.findall(r'^mfad_config_reloads_total\{result="\w+"\} (\S+)$', body, re.MULTILINE))


# One process, and two RADIUS worker processes sharing the port (each reloads itself).
@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_under_load_drops_nothing_and_applies_the_new_secret(mfad_daemon: StartDaemon,
                                                                         tmp_path: Path, workers: int) -> None:
    from e2e_support import free_udp_port

    port = free_udp_port()
    mfad = await mfad_daemon(sections=sections(port, OLD_SECRET, workers=workers))
    assert "Received Access-Reject" in await one_request("::1", port, OLD_SECRET)

    requests = tmp_path / "load.txt"
    requests.write_text('User-Name = "nobody", User-Password = "123456", Message-Authenticator = 0x00\n')
    assert RADCLIENT is not None
    load = await asyncio.create_subprocess_exec(
        RADCLIENT, "-s", "-q", "-r", "3", "-t", "3", "-p", "16", "-c", str(REQUESTS), "-f", str(requests),
        f"127.0.0.1:{port}", "auth", LOAD_SECRET, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

    # Several reloads while the load runs: the v6 client's secret changes, then a broken
    # file (refused, nothing changed), then a change that needs a restart.
    mfad.daemon.sections.update(sections(port, NEW_SECRET, workers=workers))
    mfad.daemon.write_config()
    await hangup(mfad, _reloads(mfad))
    broken = mfad.daemon.config_path.read_text().replace(NEW_SECRET, "short")
    mfad.daemon.config_path.write_text(broken)
    await hangup(mfad, _reloads(mfad))
    mfad.daemon.sections.update(sections(port, NEW_SECRET, workers=workers))
    mfad.daemon.sections["metrics"]["listen"] = ["127.0.0.1:1"]  # a listener: only a restart moves it
    mfad.daemon.write_config()
    await hangup(mfad, _reloads(mfad))
    assert load.returncode is None, "the load ended before the reloads: make it longer"

    async with asyncio.timeout(300):
        out, _ = await load.communicate()
    summary = out.decode(errors="replace")
    assert load.returncode is not None
    denied = re.search(r"Rejected\s*:\s*(\d+)", summary)
    lost = re.search(r"Lost\s*:\s*(\d+)", summary)
    assert denied and lost, summary
    assert (int(denied[1]), int(lost[1])) == (REQUESTS, 0), summary
    assert "Received Access-Reject" in await one_request("::1", port, NEW_SECRET)
    assert "Received" not in await one_request("::1", port, OLD_SECRET)

    log = mfad.daemon.log()
    assert "RADIUS clients reloaded: load, v6" in log
    assert "reload refused, nothing changed: radius.clients[1].secret: must be at least 16 characters" in log
    assert "reload: changed but needs a restart (the running values stay): metrics.listen" in log
    assert mfad.daemon.http("/healthz")[0] == 200  # the metrics port did not move
    assert await mfad.daemon.stop() == 0


async def test_sighup_applies_the_log_level(mfad_daemon: StartDaemon) -> None:
    from e2e_support import free_udp_port

    port = free_udp_port()
    mfad = await mfad_daemon(sections=sections(port, OLD_SECRET))
    await one_request("::1", port, OLD_SECRET)
    mfad.daemon.sections.update(sections(port, OLD_SECRET, level="warning"))
    mfad.daemon.write_config()
    await hangup(mfad, _reloads(mfad))
    decisions = mfad.daemon.log().count("mfad.signin: sign-in ")
    assert decisions == 1
    await one_request("::1", port, OLD_SECRET)
    assert mfad.daemon.log().count("mfad.signin: sign-in ") == decisions  # INFO is off now
    assert await mfad.daemon.stop() == 0


def _served_certificate(port: int, ca: Path) -> bytes:
    """The certificate a new TLS connection to mfad's gRPC port is given (DER)."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


async def test_sighup_puts_a_renewed_grpc_certificate_in_force(mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    import ssl

    ca = TestCA(tmp_path)
    cert, key = ca.issue("mfad-server", server=True)
    mfad = await mfad_daemon(sections={"grpc": {"tls_cert": str(cert), "tls_key": str(key)}})
    port = mfad.daemon.grpc_port
    first = await asyncio.to_thread(_served_certificate, port, ca.cert_path)
    assert first == ssl.PEM_cert_to_DER_cert(cert.read_text())

    renewed_cert, renewed_key = ca.issue("mfad-server-renewed", server=True)
    cert.write_bytes(renewed_cert.read_bytes())  # renewed in place, as certbot or an ACME client does
    key.write_bytes(renewed_key.read_bytes())
    await hangup(mfad, _reloads(mfad))
    second = await asyncio.to_thread(_served_certificate, port, ca.cert_path)
    assert second == ssl.PEM_cert_to_DER_cert(renewed_cert.read_text()) != first
    assert "grpc TLS certificate reloaded" in mfad.daemon.log()
    ok = await mfad.mfactl("--tls-ca", str(ca.cert_path), "--json", "policy", "get")
    assert ok.code == 0, ok

    key.write_bytes(ca.issue("mfad-other", server=True)[1].read_bytes())  # a key of another certificate
    await hangup(mfad, _reloads(mfad))
    assert f"reload refused, nothing changed: grpc.tls_cert: {cert} and its key {key} do not go together" \
        in mfad.daemon.log()
    assert await asyncio.to_thread(_served_certificate, port, ca.cert_path) == second

    # A "renewal" that is already expired (an old file copied back): refused, the running one stays.
    ended = dt.datetime(2021, 5, 6, 7, 8, tzinfo=dt.UTC)
    old_cert, old_key = ca.issue("mfad-server-old", server=True, not_after=ended)
    cert.write_bytes(old_cert.read_bytes())
    key.write_bytes(old_key.read_bytes())
    await hangup(mfad, _reloads(mfad))
    assert f"reload refused, nothing changed: grpc.tls_cert: {cert} expired on 2021-05-06 07:08 UTC" \
        in mfad.daemon.log()
    assert await asyncio.to_thread(_served_certificate, port, ca.cert_path) == second
    assert await mfad.daemon.stop() == 0
