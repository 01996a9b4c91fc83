"""Timing of refusals with the directory as the first factor: an unknown user against a
known directory user with a wrong password, over RADIUS (challenge mode), through the
real daemon pieces (the RADIUS service, the core, a SQLite store) and a real slapd.

Requests alternate between the two kinds, one at a time, with no reject delay (the
daemon's reject_delay_seconds would add the same second to both); the medians must be
within 10 % of each other. All traffic is on loopback.

    PYTHONPATH=. .venv/bin/python bench/directory_timing.py [--count 300]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "directory"), str(ROOT / "tests"), str(ROOT)]
from slapd_peer import PEOPLE_BASE, SERVICE_DN, SERVICE_PASSWORD, Slapd  # noqa: E402

from mfad.config import (  # noqa: E402
    Config, LdapSettings, PasswordSettings, RadiusClientSettings, RadiusSettings, StorageSettings)
from mfad.core.keyring import Keyring  # noqa: E402
from mfad.core.service import Mfa  # noqa: E402
from mfad.core.verification import Attempt, Password, SignInRequest  # noqa: E402
from mfad.directory.ldap import LdapDirectory  # noqa: E402
from mfad.radius.attributes import Attr  # noqa: E402
from mfad.radius.codec import RadiusCode, decode_reply, encode_request, hide_password  # noqa: E402
from mfad.radius.daemon import radius_service  # noqa: E402
from mfad.store import open_store  # noqa: E402

SECRET = b"bench-radius-secret-0123"


def request(username: str, password: str) -> tuple[bytes, int, bytes]:
    identifier, authenticator = secrets.randbelow(256), secrets.token_bytes(16)
    attributes = [(Attr.USER_NAME, username.encode()),
                  (Attr.USER_PASSWORD, hide_password(password.encode(), SECRET, authenticator))]
    return encode_request(RadiusCode.ACCESS_REQUEST, identifier, authenticator, SECRET, attributes), identifier, \
        authenticator


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300, help="requests of each kind")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfad-bench-"))
    slapd = Slapd.start(work / "slapd")
    store = await open_store(StorageSettings(url=f"sqlite:///{work}/mfad.db"))
    await store.migrate()
    directory = LdapDirectory(LdapSettings(
        name="corp", servers=[slapd.ldaps_url], ca_file=str(slapd.ca_file), bind_dn=SERVICE_DN,
        bind_password=SERVICE_PASSWORD, base_dn=PEOPLE_BASE, user_filter="(objectClass=inetOrgPerson)",
        check_account_control=True))
    config = Config(passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1),
                    radius=RadiusSettings(listen=["127.0.0.1:0"], reject_delay_seconds=0.0,
                                          client_rate_per_second=100000.0,
                                          clients=[RadiusClientSettings(name="vpn", address="127.0.0.1/32",
                                                                        secret=SECRET.decode())]))
    mfa = Mfa(settings=config.core, store=store, keyring=Keyring.open(work / "secrets.key"),
              directories={"corp": directory}, first_factor_by_client={"vpn": "corp"})
    await mfa.start()
    service = radius_service(mfa, config, None)
    await service.start()
    runner = asyncio.create_task(service.run())
    host, port = service.server.addresses[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    # dave signs in once so that he is a known (provisioned) user, as in production.
    kinds = {"unknown user": ("nobody-{i}", "some-password"), "known user, wrong password": ("dave", "wrong-{i}")}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        await mfa.signin.sign_in(SignInRequest(username="dave", first_factor=Password("dave-directory-pw"),
                                               attempt=Attempt(protocol="radius", client="vpn")))
        for i in range(args.count + 20):
            for kind, (user, password) in kinds.items():
                packet, identifier, authenticator = request(user.format(i=i), password.format(i=i))
                started = time.perf_counter()
                await loop.sock_sendall(sock, packet)
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
                elapsed = time.perf_counter() - started
                reply = decode_reply(data, SECRET, identifier, authenticator)
                assert getattr(reply, "code", None) is RadiusCode.ACCESS_REJECT, reply
                if i >= 20:  # warm-up: pools filled, caches hot
                    times[kind].append(elapsed)
    finally:
        sock.close()
        await service.aclose()
        await runner
        mfa.close()
        await directory.aclose()
        await store.aclose()
        slapd.stop()
    medians = {k: statistics.median(v) for k, v in times.items()}
    for kind, values in times.items():
        print(f"{kind:28s} median {medians[kind] * 1000:7.2f} ms  p90 "
              f"{statistics.quantiles(values, n=10)[-1] * 1000:7.2f} ms  (n={len(values)})")
    a, b = medians.values()
    print(f"difference of the medians: {abs(a - b) / max(a, b) * 100:.1f} % (must be within 10 %)")


if __name__ == "__main__":
    asyncio.run(main())
