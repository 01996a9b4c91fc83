"""A Linux sign-in as a RADIUS peer: ``pam_radius_auth`` (Debian 12: 2.0, no
Message-Authenticator) in a throw-away PAM service, driven by ``pamtester``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer_tools import find_tool, missing

PAM_MODULE = next((path for path in (
    Path("/lib/x86_64-linux-gnu/security/pam_radius_auth.so"),
    Path("/usr/lib/x86_64-linux-gnu/security/pam_radius_auth.so"),
    Path("/lib/security/pam_radius_auth.so"),
    Path("/usr/lib/security/pam_radius_auth.so"),
) if path.exists()), None)
PAMTESTER = find_tool("pamtester")


@contextlib.contextmanager
def pam_service(directory: Path, options: str = "") -> Iterator[tuple[str, Path]]:
    """A PAM service using pam_radius_auth with its config file in ``directory``:
    (service name, config path). Skips when the peer is missing or /etc/pam.d is read-only."""
    if PAM_MODULE is None or PAMTESTER is None:
        pytest.skip(missing("pamtester and libpam-radius-auth", "scripts/test installs both"))
    if not os.access("/etc/pam.d", os.W_OK):
        pytest.skip("pamtester reads services from /etc/pam.d only")
    name = f"mfad-test-{secrets.token_hex(6)}"
    conf = directory / "pam_radius_auth.conf"
    service = Path("/etc/pam.d") / name
    service.write_text(f"auth required {PAM_MODULE} conf={conf} {options}".rstrip() + "\n"
                       "account required pam_permit.so\n")
    try:
        yield name, conf
    finally:
        service.unlink(missing_ok=True)


async def pamtester(service: str, user: str, answers: list[str]) -> tuple[int, str]:
    """Authenticate ``user`` through ``service``, typing ``answers`` at the prompts."""
    assert PAMTESTER is not None
    process = await asyncio.create_subprocess_exec(
        PAMTESTER, "-v", service, user, "authenticate", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(30):
        out, _ = await process.communicate("".join(f"{answer}\n" for answer in answers).encode())
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def pamtester_started(service: str, user: str, password: str) -> asyncio.subprocess.Process:
    """``pamtester`` authenticating ``user`` through ``service``, ``password`` typed at the first
    prompt; the caller reads what follows and answers it."""
    assert PAMTESTER is not None
    process = await asyncio.create_subprocess_exec(
        PAMTESTER, "-v", service, user, "authenticate", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(f"{password}\n".encode())
    await process.stdin.drain()
    return process
