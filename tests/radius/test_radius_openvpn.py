"""OpenVPN with radiusplugin against mfad, as a VPN administrator sets it up, both engines.

The OpenVPN server and client run in two network namespaces the test creates
(``openvpn_peers``); mfad answers the plugin's Access-Requests and Accounting-Requests
from the test's process. radiusplugin sends no Message-Authenticator, so its client
entry has the per-client override, and it fails a connection whose accounting nobody
answers (``nonfatalaccounting=false`` here): a tunnel that comes up proves both.

Checked: the tunnel comes up with password and code typed together (``append``) and
with the code alone (``otp_only``); a wrong code and the same code again (a replay)
are refused; with ``auth-gen-token`` a renegotiation keeps the tunnel without asking
mfad again (without it the plugin would re-send the spent code, which is a replay)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openvpn_peers import Namespaces, VpnServer, can_run, namespaces, openvpn_client, openvpn_server, ping
from openvpn_peers import wait_for_text
from radius_peers import SECRET
from signin_peers import StartDaemon, accounting_address, address, nas, start_daemon  # noqa: F401  (fixture)
from tls_ca import TestCA

from mfad.core.accounting import SESSION_EVENT
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.radius import CountingMetrics, RadiusServer
from peer_tools import missing

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for vpn tests"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(can_run() is not None, reason=missing(can_run() or ""))]


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    with namespaces() as ns:
        yield ns


async def vpn_daemon(start_daemon: StartDaemon, ns: Namespaces, mode: str) -> RadiusServer:
    # radiusplugin 2.1 sends no Message-Authenticator: "auto" answers it until it sends one
    # (it never does), as clients/nas/mfad.toml sets it (docs/radius.md).
    # It also reads only the first four digits of a port ("51107" is 5110): the usual ports,
    # on the address of this test's own.
    return await start_daemon(mode=mode, listen=[f"{ns.mfad_address}:1812"],
                              clients=[nas("openvpn", address=ns.nas_address, require_message_authenticator="auto")])


def vpn_asking(server: RadiusServer, ns: Namespaces, tmp_path: Path,
               **options: Any) -> contextlib.AbstractAsyncContextManager[VpnServer]:
    """The OpenVPN server in ``ns`` (with ``auth-gen-token``, a CA of its own), asking mfad's
    ``server`` for sign-ins and sending it accounting."""
    return openvpn_server(ns, tmp_path / "vpn", TestCA(tmp_path, "vpn CA"), auth_port=address(server)[1],
                          acct_port=accounting_address(server)[1], secret=SECRET, auth_gen_token=True, **options)


def access_requests(server: RadiusServer) -> int:
    metrics = server.metrics
    assert isinstance(metrics, CountingMetrics)
    return metrics.received["Access-Request"]


async def session_reports(mfa: Mfa) -> list[str]:
    rows = await mfa.store.query_audit(AuditFilter(event=SESSION_EVENT))
    return [row.event.outcome for row in sorted(rows, key=lambda r: r.id)]


async def test_openvpn_append_mode_up_then_a_replay_and_a_wrong_code_refused(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa, netns: Namespaces, tmp_path: Path) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await vpn_daemon(start_daemon, netns, "append")
    async with vpn_asking(server, netns, tmp_path) as vpn:
        code = alice.code(1)
        async with openvpn_client(vpn, "first", "alice", PASSWORD + code) as client:
            assert await client.outcome() == "up", client.log + vpn.log
            assert await ping(netns)
        await wait_for_text(lambda: vpn.log, "client-instance exiting", timeout=15)
        async with openvpn_client(vpn, "replay", "alice", PASSWORD + code) as client:
            assert await client.outcome() == "refused", client.log
        wrong = next(iter(alice.wrong_codes()))
        async with openvpn_client(vpn, "wrong", "alice", PASSWORD + wrong) as client:
            assert await client.outcome() == "refused", client.log
    reports = await session_reports(mfa)
    assert reports[0] == "start" and "stop" in reports, reports


async def test_openvpn_code_only_survives_renegotiation_with_auth_gen_token(
        start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa, netns: Namespaces, tmp_path: Path) -> None:
    alice = await enrol("alice", password=PASSWORD)
    server = await vpn_daemon(start_daemon, netns, "otp_only")
    async with vpn_asking(server, netns, tmp_path, reneg_sec=12) as vpn:
        # The token comes from the shipped clients/nas/openvpn/server.conf, not from the test.
        assert "\nauth-gen-token 0\n" in (vpn.directory / "server.conf").read_text()
        async with openvpn_client(vpn, "first", "alice", alice.code(1)) as client:
            assert await client.outcome() == "up", client.log + vpn.log
            asked = access_requests(server)
            # The server renegotiates after reneg-sec; the client answers with the token.
            await wait_for_text(lambda: vpn.log, "auth-token authentication succeeded", timeout=30)
            assert await ping(netns), client.log
            assert "AUTH_FAILED" not in client.log
            assert access_requests(server) == asked == 1, "a renegotiation with a token does not ask mfad"
    assert (await session_reports(mfa))[0] == "start"
