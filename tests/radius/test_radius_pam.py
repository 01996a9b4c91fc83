"""A Linux sign-in through pam_radius_auth (Debian 12: 2.0, no Message-Authenticator),
driven by pamtester, completing a challenge: password, then the code at the prompt.

pam_radius_auth shows the first Reply-Message of an Access-Challenge as the prompt
and sends the answer back with the State; pamtester reads both answers from stdin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pam_peers import PAM_MODULE, PAMTESTER, pamtester
from pam_peers import pam_service as pam_service_at
from radius_peers import CODE, SECRET, DemoPolicy, StartServer, loopback_clients
from peer_tools import missing

pytestmark = [
    pytest.mark.skipif(
        PAM_MODULE is None or PAMTESTER is None,
        reason=missing("pamtester and libpam-radius-auth", "scripts/test installs both"),
    ),
    pytest.mark.skipif(
        not os.access("/etc/pam.d", os.W_OK), reason="pamtester reads services from /etc/pam.d only"
    ),
]


@pytest.fixture
def pam_service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with pam_service_at(tmp_path) as service:
        yield service


async def test_pam_radius_auth_completes_a_challenge_sign_in(
    start_server: StartServer, pam_service: tuple[str, Path]
) -> None:
    service, conf = pam_service
    policy = DemoPolicy()
    # pam_radius_auth 2.0 sends no Message-Authenticator: the per-client override.
    server = await start_server(
        policy, clients=loopback_clients(require_message_authenticator=False)
    )
    host, port = server.addresses[0]
    conf.write_text(f"{host}:{port} {SECRET.decode()} 3\n")
    conf.chmod(0o600)

    code, output = await pamtester(service, "alice", ["pw", CODE])
    assert code == 0, output
    assert "successfully authenticated" in output
    assert "Enter the code from your authenticator app" in output
    assert [request.has_message_authenticator for request in policy.seen] == [False, False]
    assert policy.seen[1].state is not None

    code, output = await pamtester(service, "alice", ["pw", "000000"])
    assert code != 0, output
    assert "successfully authenticated" not in output
