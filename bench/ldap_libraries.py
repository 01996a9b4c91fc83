"""Which LDAP library fits mfad's event loop: bonsai (C, libldap, native asyncio) or
ldap3 (pure Python, blocking, run in a thread pool). Prints sign-ins per second (a
service-account search plus a bind as the user, over StartTLS) and the worst delay of a
10 ms ticker on the event loop while they run; then, for each library, an ldaps://
connection with a 1 s timeout to a server that accepts TCP and never answers (run in a
child process, given 10 s).

    .venv/bin/pip install bonsai   # needs libldap-dev libsasl2-dev and a C compiler
    .venv/bin/python bench/ldap_libraries.py [--count 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "directory"))
from slapd_peer import PEOPLE, PEOPLE_BASE, SERVICE_DN, SERVICE_PASSWORD, Slapd  # noqa: E402


async def ticker(stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - t - 0.01)
    return worst


async def run_bonsai(slapd: Slapd, count: int, concurrency: int) -> float:
    import bonsai
    from bonsai.asyncio import AIOConnectionPool

    client = bonsai.LDAPClient(slapd.ldap_url, tls=True)
    client.set_ca_cert(str(slapd.ca_file))
    client.set_cert_policy("demand")
    client.set_credentials("SIMPLE", user=SERVICE_DN, password=SERVICE_PASSWORD)
    pool = AIOConnectionPool(client, minconn=2, maxconn=concurrency)
    await pool.open()
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        p = PEOPLE[i % 2]
        async with sem:
            async with pool.spawn() as conn:
                found = await conn.search(PEOPLE_BASE, bonsai.LDAPSearchScope.ONELEVEL, f"(uid={p.uid})",
                                          ["displayName", "mail", "memberOf"], timeout=5)
            user = bonsai.LDAPClient(slapd.ldap_url, tls=True)
            user.set_ca_cert(str(slapd.ca_file))
            user.set_cert_policy("demand")
            user.set_credentials("SIMPLE", user=str(found[0].dn), password=p.password)
            conn = await user.connect(is_async=True, timeout=5)
            conn.close()

    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - t
    await pool.close()
    return count / elapsed


async def run_ldap3(slapd: Slapd, count: int, concurrency: int) -> float:
    import ldap3

    tls = ldap3.Tls(ca_certs_file=str(slapd.ca_file), validate=ssl.CERT_REQUIRED)
    server = ldap3.Server("127.0.0.1", port=slapd.port, tls=tls, connect_timeout=5, get_info=ldap3.NONE)
    local = threading.local()  # one service connection per worker thread, as a pool would keep
    executor = ThreadPoolExecutor(max_workers=concurrency)
    loop = asyncio.get_running_loop()

    def one_sync(i: int) -> None:
        p = PEOPLE[i % 2]
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = ldap3.Connection(server, SERVICE_DN, SERVICE_PASSWORD, receive_timeout=5)
            conn.open()
            conn.start_tls()
            conn.bind()
        conn.search(PEOPLE_BASE, f"(uid={p.uid})", attributes=["displayName", "mail", "memberOf"])
        dn = conn.entries[0].entry_dn
        user = ldap3.Connection(server, dn, p.password, receive_timeout=5)
        user.open()
        user.start_tls()
        assert user.bind()
        user.unbind()

    t = time.perf_counter()
    await asyncio.gather(*(loop.run_in_executor(executor, one_sync, i) for i in range(count)))
    elapsed = time.perf_counter() - t
    executor.shutdown()
    return count / elapsed


_BLACKHOLE = """
import asyncio, socket, ssl, sys, threading, time
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8); port = ls.getsockname()[1]
held = []
threading.Thread(target=lambda: [held.append(ls.accept()) for _ in range(8)], daemon=True).start()
async def main():
    t = time.perf_counter()
    if sys.argv[1] == "bonsai":
        import bonsai
        c = bonsai.LDAPClient(f"ldaps://127.0.0.1:{port}")
        c.set_credentials("SIMPLE", user="cn=x", password="y")
        try:
            await asyncio.wait_for(c.connect(is_async=True, timeout=1.0), 2)
        except BaseException as e:
            r = type(e).__name__
    else:
        import ldap3
        s = ldap3.Server("127.0.0.1", port=port, use_ssl=True, tls=ldap3.Tls(validate=ssl.CERT_REQUIRED),
                         connect_timeout=1, get_info=ldap3.NONE)
        def go():
            try:
                ldap3.Connection(s, "cn=x", "y", receive_timeout=1).open()
            except Exception as e:
                return type(e).__name__
        r = await asyncio.get_running_loop().run_in_executor(None, go)
    print(f"{r} after {time.perf_counter() - t:.2f} s")
asyncio.run(main())
"""


def blackhole(name: str) -> str:
    try:
        done = subprocess.run([sys.executable, "-c", _BLACKHOLE, name], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or done.stderr.strip()[-200:]
    except subprocess.TimeoutExpired:
        return "no answer within 10 s: the event loop was blocked (the timeout never fired)"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    slapd = Slapd.start(Path(tempfile.mkdtemp()) / "slapd")
    try:
        for name, fn in (("bonsai", run_bonsai), ("ldap3", run_ldap3)):
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(stop))
            rate = await fn(slapd, args.count, args.concurrency)
            stop.set()
            lag = await tick
            print(f"{name:7s} {rate:7.0f} sign-ins/s  worst event-loop delay {lag * 1000:6.1f} ms")
    finally:
        slapd.stop()
    for name in ("bonsai", "ldap3"):
        print(f"{name:7s} ldaps:// to a silent server, timeout 1 s: {blackhole(name)}")


if __name__ == "__main__":
    asyncio.run(main())
