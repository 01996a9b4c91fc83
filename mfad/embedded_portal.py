"""The self-service portal as one more service of ``mfad serve`` (``[portal] enabled``).

The portal talks to this daemon as any other portal would: over gRPC, through
``mfad_client``, with a caller token of role ``portal``. That token is provisioned
here: read from ``[portal] token_file`` when it is still valid, else created (named
``portal-builtin-<host>``, replacing a lost one of that name) and written to the file
with mode 0600, so a restart keeps it and no token piles up.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from mfad.config import Config, parse_address
from mfad.core.errors import AlreadyExists, NotFound
from mfad.core.model import Role
from mfad.core.service import Mfa

if TYPE_CHECKING:
    from mfad_portal import PortalService

ACTOR = "mfad serve"


def token_name() -> str:
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40] or "local"
    return f"portal-builtin-{host}"


async def portal_token(mfa: Mfa, path: Path) -> str:
    """The portal's caller token: the file's when it still authenticates as a portal, else a new one."""
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text(encoding="utf-8").strip()
        caller = await mfa.callers.authenticate(token)
        if caller is not None and caller.role is Role.PORTAL:
            return token
    name = token_name()
    try:
        _, token = await mfa.callers.create(name, Role.PORTAL, actor=ACTOR)
    except AlreadyExists:  # its file was lost: that token is of no use to anyone now
        with contextlib.suppress(NotFound):
            await mfa.callers.revoke(name, actor=ACTOR)
        _, token = await mfa.callers.create(name, Role.PORTAL, actor=ACTOR)
    path.parent.mkdir(exist_ok=True, mode=0o700)  # its own directory at most (the pre-flight checked)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.replace(partial, path)
    return token


def daemon_address(config: Config) -> str:
    """Where the portal reaches this daemon's gRPC: ``portal.daemon_address``, else the first
    ``grpc.listen`` (a wildcard address reached on loopback)."""
    if config.portal.daemon_address:
        return config.portal.daemon_address
    host, port = parse_address(config.grpc.listen[0])
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def portal_service(mfa: Mfa, config: Config, registry: CollectorRegistry) -> PortalService:
    """The portal service over this daemon (not started: the daemon calls ``start``/``run``)."""
    from mfad_client import MfadClient, TlsFiles
    from mfad_portal import PortalService

    p = config.portal
    token = await portal_token(mfa, Path(p.token_file))
    tls = None
    if config.grpc.tls_cert:
        tls = TlsFiles(ca=Path(p.daemon_ca or config.grpc.tls_cert),
                       cert=Path(p.daemon_cert) if p.daemon_cert else None,
                       key=Path(p.daemon_key) if p.daemon_key else None,
                       server_name=p.daemon_server_name)
    client = MfadClient(daemon_address(config), token=token, tls=tls, timeout=p.daemon_timeout_seconds)
    return PortalService(client, p, registry, close_client=True)
