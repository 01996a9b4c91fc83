"""OpenVPN with its RADIUS plugin (Debian ``openvpn`` + ``openvpn-auth-radius``) as a NAS
in front of mfad, in network namespaces the test creates.

Topology: mfad runs in the test's own process and namespace, on the root end of a veth
pair whose other end is in the *server* namespace, where the OpenVPN server and its
radiusplugin run. A second veth pair joins the server namespace to the *client*
namespace, where the OpenVPN client runs. Each set-up has its own names and its own
198.18.0.0/15 addresses (the benchmarking range, RFC 2544), and is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from peer_tools import find_tool
from shipped_nas import SHIPPED_NAS, replaced
from tls_ca import TestCA

OPENVPN = find_tool("openvpn")
RADIUSPLUGIN = next((p for p in ("/usr/lib/openvpn/radiusplugin.so",
                                 "/usr/lib/x86_64-linux-gnu/openvpn/radiusplugin.so") if Path(p).exists()), None)
IP = find_tool("ip")
_SERIAL = itertools.count()


def can_run() -> str | None:
    """Why these tests cannot run here, or None."""
    if OPENVPN is None or RADIUSPLUGIN is None or IP is None:
        return "openvpn, openvpn-auth-radius, iproute2"
    if os.geteuid() != 0 or not Path("/dev/net/tun").exists():
        return "root and /dev/net/tun (network namespaces, tun devices)"
    return None


def _ip(*args: str) -> None:
    assert IP is not None
    subprocess.run([IP, *args], check=True, capture_output=True, timeout=10)


@dataclass(frozen=True)
class Namespaces:
    server: str
    client: str
    mfad_address: str
    """mfad's end of the veth pair to the server namespace (root namespace)."""
    nas_address: str
    """The OpenVPN server's address towards mfad (its RADIUS source address)."""
    vpn_address: str
    """The OpenVPN server's address towards the client namespace."""
    tunnel_network: str
    tunnel_server: str


@contextlib.contextmanager
def namespaces() -> Iterator[Namespaces]:
    slot = (os.getpid() * 31 + next(_SERIAL)) % 16000
    third, fourth = slot // 64, (slot % 64) * 4
    tag = f"{os.getpid() % 10000}x{slot}"
    ns = Namespaces(server=f"mfadvs{tag}", client=f"mfadvc{tag}", mfad_address=f"198.18.{third}.{fourth + 1}",
                    nas_address=f"198.18.{third}.{fourth + 2}", vpn_address=f"198.19.{third}.{fourth + 1}",
                    tunnel_network=f"10.{200 + slot % 50}.{slot % 250}.0",
                    tunnel_server=f"10.{200 + slot % 50}.{slot % 250}.1")
    root_end, server_end, server_vpn, client_vpn = (f"mvr{slot}", f"mvs{slot}", f"mvt{slot}", f"mvc{slot}")
    try:
        _ip("netns", "add", ns.server)
        _ip("netns", "add", ns.client)
        for name in (ns.server, ns.client):
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", root_end, "type", "veth", "peer", "name", server_end, "netns", ns.server)
        _ip("addr", "add", f"{ns.mfad_address}/30", "dev", root_end)
        _ip("link", "set", root_end, "up")
        _ip("-n", ns.server, "addr", "add", f"{ns.nas_address}/30", "dev", server_end)
        _ip("-n", ns.server, "link", "set", server_end, "up")
        _ip("-n", ns.server, "link", "add", server_vpn, "type", "veth", "peer", "name", client_vpn,
            "netns", ns.client)
        _ip("-n", ns.server, "addr", "add", f"{ns.vpn_address}/30", "dev", server_vpn)
        _ip("-n", ns.server, "link", "set", server_vpn, "up")
        _ip("-n", ns.client, "addr", "add", f"198.19.{third}.{fourth + 2}/30", "dev", client_vpn)
        _ip("-n", ns.client, "link", "set", client_vpn, "up")
        yield ns
    finally:
        for name in (ns.server, ns.client):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", name)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", root_end)  # gone with the namespace already, normally


SERVER_CONF = """\
dev tun
proto udp
local {vpn_address}
port 1194
topology subnet
server {tunnel_network} 255.255.255.0
ca {ca}
cert {cert}
key {key}
dh none
verify-client-cert none
username-as-common-name
plugin {plugin} {dir}/radiusplugin.cnf
client-config-dir {dir}/ccd
status {dir}/status.log 1
tmp-dir {dir}
keepalive 2 20
reneg-sec {reneg_sec}
hand-window 5
{token}
verb 3
log {dir}/server.log
"""

def shipped_radiusplugin(*, nas_address: str, directory: Path, auth_port: int, acct_port: int, mfad_address: str,
                         secret: str) -> str:
    """The shipped clients/nas/openvpn/radiusplugin.cnf as it is, its addresses, ports, paths
    and secret made this test's (the second server, 192.0.2.2, stays: unreachable from the
    namespace, used only if the first fails)."""
    text = (SHIPPED_NAS / "openvpn" / "radiusplugin.cnf").read_text()
    return replaced(text, [("NAS-IP-Address=192.0.2.10", f"NAS-IP-Address={nas_address}"),
                           ("OpenVPNConfig=/etc/openvpn/server.conf", f"OpenVPNConfig={directory}/server.conf"),
                           ("acctport=1813\n\tauthport=1812\n\tname=192.0.2.1",
                            f"acctport={acct_port}\n\tauthport={auth_port}\n\tname={mfad_address}"),
                           ("sharedsecret=the-secret-in-/etc/mfad/vpn.secret", f"sharedsecret={secret}")],
                    "openvpn/radiusplugin.cnf")


CLIENT_CONF = """\
client
dev tun
proto udp
remote {vpn_address} 1194
nobind
ca {ca}
remote-cert-eku "TLS Web Server Authentication"
verify-x509-name openvpn-server name
auth-user-pass {dir}/credentials
auth-retry none
reneg-sec 0
explicit-exit-notify 1
verb 3
log {log}
"""


@dataclass
class VpnServer:
    ns: Namespaces
    directory: Path
    ca: Path
    process: asyncio.subprocess.Process

    @property
    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.asynccontextmanager
async def openvpn_server(ns: Namespaces, directory: Path, ca: TestCA, *, auth_port: int, acct_port: int,
                         secret: bytes, auth_gen_token: bool, reneg_sec: int = 3600) -> AsyncIterator[VpnServer]:
    assert OPENVPN is not None and RADIUSPLUGIN is not None and IP is not None
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ccd").mkdir(exist_ok=True)
    cert, key = ca.issue("openvpn-server", server=True)
    (directory / "server.conf").write_text(SERVER_CONF.format(
        vpn_address=ns.vpn_address, tunnel_network=ns.tunnel_network, ca=ca.cert_path, cert=cert, key=key,
        plugin=RADIUSPLUGIN, dir=directory, reneg_sec=reneg_sec,
        token="auth-gen-token 0" if auth_gen_token else ""))
    (directory / "radiusplugin.cnf").write_text(shipped_radiusplugin(
        nas_address=ns.nas_address, directory=directory, acct_port=acct_port, auth_port=auth_port,
        mfad_address=ns.mfad_address, secret=secret.decode()))
    process = await asyncio.create_subprocess_exec(IP, "netns", "exec", ns.server, OPENVPN, "--config",
                                                   str(directory / "server.conf"), stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    server = VpnServer(ns=ns, directory=directory, ca=ca.cert_path, process=process)
    try:
        await wait_for_text(lambda: server.log, "Initialization Sequence Completed", timeout=20)
        yield server
    finally:
        await _stop(process)


@dataclass
class VpnClient:
    log_path: Path
    process: asyncio.subprocess.Process

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def outcome(self, timeout: float = 30.0) -> str:
        """``"up"`` once the tunnel is up, ``"refused"`` on AUTH_FAILED, ``"timeout"``."""
        try:
            found = await wait_for_text(lambda: self.log, ("Initialization Sequence Completed", "AUTH_FAILED"),
                                        timeout=timeout)
        except TimeoutError:
            return "timeout"
        return "up" if found == "Initialization Sequence Completed" else "refused"

    async def stop(self) -> None:
        await _stop(self.process)


@contextlib.asynccontextmanager
async def openvpn_client(server: VpnServer, name: str, username: str, password: str) -> AsyncIterator[VpnClient]:
    assert OPENVPN is not None and IP is not None
    directory = server.directory / name
    directory.mkdir()
    credentials = directory / "credentials"
    credentials.write_text(f"{username}\n{password}\n")
    credentials.chmod(0o600)
    log = directory / "client.log"
    (directory / "client.conf").write_text(CLIENT_CONF.format(vpn_address=server.ns.vpn_address,
                                                              ca=server.ca, dir=directory,
                                                              log=log))
    process = await asyncio.create_subprocess_exec(IP, "netns", "exec", server.ns.client, OPENVPN, "--config",
                                                   str(directory / "client.conf"), stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    client = VpnClient(log_path=log, process=process)
    try:
        yield client
    finally:
        await client.stop()


async def ping(ns: Namespaces) -> bool:
    """Whether the client reaches the server's tunnel address through the tunnel."""
    assert IP is not None
    process = await asyncio.create_subprocess_exec(IP, "netns", "exec", ns.client, "ping", "-c", "1", "-W", "2",
                                                   ns.tunnel_server, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    return await asyncio.wait_for(process.wait(), 10) == 0


async def wait_for_text(read: object, wanted: str | tuple[str, ...], *, timeout: float) -> str:
    """Poll ``read()`` until it contains one of ``wanted``; the one found."""
    assert callable(read)
    choices = (wanted,) if isinstance(wanted, str) else wanted
    async with asyncio.timeout(timeout):
        while True:
            text = read()
            for choice in choices:
                if choice in text:
                    return choice
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.wait_for(process.wait(), 10)
