"""Real RADIUS peers in front of the real sign-in: a Linux sign-in through
``pam_radius_auth`` driven by ``pamtester`` (challenge mode: password, then the code
at the prompt), and FreeRADIUS as a proxy in front of mfad passing an ``otp_only``
sign-in through (the shipped clients/nas/freeradius files, FreeRADIUS on a port of its own)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from freeradius_conf import FREERADIUS, free_udp_port, radiusd_conf
from pam_peers import pam_service as pam_service_at
from pam_peers import pamtester
from radius_peers import SECRET, radclient
from shipped_nas import SHIPPED_NAS, replaced, shipped_client
from signin_peers import StartDaemon, address, start_daemon  # noqa: F401  (fixture)

from mfad.radius.signin import ENTER_CODE
from peer_tools import missing, stop_peer

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for radius tests"


SHIPPED_PAM = SHIPPED_NAS / "pam_radius_auth"


def shipped_options(service_file: str) -> str:
    """The pam_radius_auth options of the shipped example's auth line."""
    (line,) = [line for line in (SHIPPED_PAM / service_file).read_text().splitlines()
               if line.startswith("auth") and "pam_radius_auth.so" in line]
    return line.split("pam_radius_auth.so", 1)[1].strip()


# The shipped sshd and sudo examples' options, and none at all: pam_radius_auth 2.0
# re-prompts after a wrong code by itself (it follows every Access-Challenge), so the
# examples need no max_challenge or prompt_attribute.
@pytest.fixture(params=[shipped_options("sshd"), shipped_options("sudo"), ""], ids=["sshd", "sudo", "bare"])
def pam_service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    with pam_service_at(tmp_path, request.param) as service:
        yield service


async def test_pam_radius_auth_signs_in_with_password_then_code(
        start_daemon: StartDaemon, enrol: Enrol, pam_service: tuple[str, Path]) -> None:
    service, conf = pam_service
    alice = await enrol("alice", password=PASSWORD)
    # The shipped "linux-hosts" entry: pam_radius_auth 2.0 sends no Message-Authenticator.
    hosts = shipped_client(conf.parent / "etc", "linux-hosts")
    assert hosts.require_message_authenticator is False
    host, port = address(await start_daemon(clients=[hosts]))
    conf.write_text(f"{host}:{port} {SECRET.decode()} 5\n")
    conf.chmod(0o600)

    code, output = await pamtester(service, "alice", [PASSWORD, next(iter(alice.wrong_codes())), alice.code(1)])
    assert code == 0, output
    assert "successfully authenticated" in output
    assert ENTER_CODE.strip() in output  # the prompt pam_radius_auth showed
    assert "Wrong code" in output  # a wrong code first: asked again

    code, output = await pamtester(service, "alice", ["not the password", "000000"])
    assert code != 0 and "successfully authenticated" not in output, output


# --- FreeRADIUS as a proxy in front of mfad ------------------------------------------------------
#: What a test adds around the shipped files: the NAS in front (radclient) as a client, and
#: the ``ok`` module the stock FreeRADIUS has in mods-enabled/always.
PROXY_FRAME = """\
proxy_requests = yes
client nas {{
  ipaddr = 127.0.0.1
  secret = {nas_secret}
}}
modules {{
  always ok {{
    rcode = ok
  }}
}}
"""


def shipped_freeradius(*, port: int, mfad_port: int, dead_port: int, nas_secret: str, mfad_secret: str) -> str:
    """The shipped clients/nas/freeradius/proxy.conf and sites-mfad as they are, only their
    addresses, ports and secrets made this test's: home server mfad1 is the daemon under
    test, mfad2 a port nothing answers on (the pool fails over to it only if mfad1 dies)."""
    proxy = (SHIPPED_NAS / "freeradius" / "proxy.conf").read_text()
    secret = 'secret = "the-secret-in-/etc/mfad/freeradius.secret"'
    proxy = replaced(proxy, [("ipaddr = 192.0.2.1\n\tport = 1812", f"ipaddr = 127.0.0.1\n\tport = {mfad_port}"),
                             (secret, f'secret = "{mfad_secret}"'),
                             ("ipaddr = 192.0.2.2\n\tport = 1812", f"ipaddr = 127.0.0.1\n\tport = {dead_port}"),
                             (secret, f'secret = "{mfad_secret}"')], "freeradius/proxy.conf")
    site = replaced((SHIPPED_NAS / "freeradius" / "sites-mfad").read_text(),
                    [("ipaddr = *\n\t\tport = 1812", f"ipaddr = 127.0.0.1\n\t\tport = {port}")],
                    "freeradius/sites-mfad")
    return PROXY_FRAME.format(nas_secret=nas_secret) + proxy + site


@pytest.fixture
async def freeradius_proxy(tmp_path: Path) -> AsyncIterator[Callable[[int], Awaitable[int]]]:
    """``await freeradius_proxy(mfad_port)`` → the port of a FreeRADIUS proxying to mfad with
    the shipped clients/nas/freeradius files."""
    if FREERADIUS is None:
        pytest.skip(missing("freeradius"))
    processes: list[subprocess.Popen[bytes]] = []

    async def start(mfad_port: int) -> int:
        directory = tmp_path / "freeradius"
        directory.mkdir()
        port = free_udp_port()
        (directory / "radiusd.conf").write_text(radiusd_conf(directory, shipped_freeradius(
            port=port, mfad_port=mfad_port, dead_port=free_udp_port(), nas_secret="nas-to-proxy-secret-0123",
            mfad_secret=SECRET.decode()), cleanup_delay=5))
        process = subprocess.Popen([FREERADIUS, "-f", "-d", str(directory)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        processes.append(process)
        for _ in range(100):
            status = await radclient("127.0.0.1", port, ["Message-Authenticator = 0x00"], command="status",
                                     secret=b"nas-to-proxy-secret-0123")
            if status.reply is not None:
                return port
            if process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        log = directory / "radius.log"
        raise AssertionError(f"FreeRADIUS did not start: {log.read_text() if log.exists() else ''}")

    yield start
    for process in processes:
        stop_peer(process)


async def test_freeradius_proxies_an_otp_only_sign_in(start_daemon: StartDaemon, enrol: Enrol, tmp_path: Path,
                                                      freeradius_proxy: Callable[[int], Awaitable[int]]) -> None:
    alice = await enrol("alice", password=PASSWORD)
    # The shipped "freeradius" entry (otp_only, Message-Authenticator required) under a
    # daemon whose own mode is challenge: the client's mode is the one in force.
    server = await start_daemon(mode="challenge", clients=[shipped_client(tmp_path / "etc", "freeradius")])
    proxy_port = await freeradius_proxy(address(server)[1])
    lines = ['User-Name = "alice"', f'User-Password = "{alice.code(1)}"', "Message-Authenticator = 0x00"]
    accepted = await radclient("127.0.0.1", proxy_port, lines, secret=b"nas-to-proxy-secret-0123")
    assert accepted.reply == "Access-Accept", accepted.output
    replayed = await radclient("127.0.0.1", proxy_port, lines, secret=b"nas-to-proxy-secret-0123")
    assert replayed.reply == "Access-Reject", replayed.output
    # FreeRADIUS proxied with Proxy-State and Message-Authenticator; mfad echoed the former.
    seen = server.metrics
    assert seen.received["Access-Request"] == 2  # type: ignore[attr-defined]
    assert not seen.dropped  # type: ignore[attr-defined]
