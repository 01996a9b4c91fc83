"""Benchmark of complete sign-ins through the portal: password + TOTP code, over HTTP, many users.

Provisions users with a password and a confirmed TOTP device through the core (not timed);
starts ``mfad serve`` with its portal in its own process; then, from this process, runs
``--concurrency`` browser-less visitors, each sign-in being what a browser does: GET
/signin (session cookie, CSRF token), POST /signin (username, password: argon2id in
mfad), GET /signin/verify, POST /signin/verify/code (a valid code: the replay-guarded
TOTP check), answered by the redirect to /security. Only a sign-in that ends on /security counts. Prints sign-ins per
second and the latency percentiles of a whole sign-in (four requests).

    PYTHONPATH=.:clients python bench/portal_signin.py [--users 300] [--concurrency 16]
        [--engine sqlite|postgres] [--dsn postgresql://...] [--argon2 default|fast]

``--argon2 default`` keeps mfad's password cost (argon2id t=3, 64 MiB: what a real
deployment pays per sign-in); ``fast`` (t=1, 64 KiB) shows the portal's and the rest of
the path's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from grpc_verify import App, free_port, provision, wait_ready, write_config


ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
CSRF = re.compile(rb'name="csrf" value="([^"]+)"')


def portal_config(workdir: Path, url: str, argon2: str) -> tuple[Path, int, int, int]:
    """grpc_verify's daemon config with the portal on a free port (and the password cost asked for)."""
    portal_port = free_port()
    cost = "[passwords]\ntime_cost = 1\nmemory_kib = 64\nparallelism = 1\n" if argon2 == "fast" else ""
    config, grpc_port, metrics_port = write_config(workdir, url, extra=f"""{cost}
[portal]
listen = ["127.0.0.1:{portal_port}"]
token_file = {json.dumps(str(workdir / "portal.token"))}
""")
    return config, grpc_port, metrics_port, portal_port


async def sign_in(http: httpx.AsyncClient, app: App) -> str:
    """One complete sign-in: "" when it ended signed in, else the step that did not."""
    http.cookies.clear()
    page = await http.get("/signin")
    csrf = CSRF.search(page.content)
    assert csrf is not None
    first = await http.post("/signin", data={"csrf": csrf.group(1).decode(), "username": app.username,
                                             "password": PASSWORD})
    if first.headers.get("location") != "/signin/verify":
        return f"password: {first.status_code}"
    page = await http.get("/signin/verify")
    csrf = CSRF.search(page.content)
    if csrf is None:
        return f"verify page: {page.status_code}"
    while (code := app.next_code(time.time())) is None:  # within a second of the next step: wait for it
        await asyncio.sleep(0.5)
    done = await http.post("/signin/verify/code", data={"csrf": csrf.group(1).decode(), "method": "totp",
                                                        "code": code})
    return "" if done.headers.get("location") == "/security" else f"code: {done.status_code}"


async def drive(url: str, apps: list[App], concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    failed: dict[str, int] = {}
    queue: asyncio.Queue[App] = asyncio.Queue()
    for app in apps:
        queue.put_nowait(app)

    async def visitor() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"origin": url}, timeout=60) as http:
            while True:
                try:
                    app = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                why = await sign_in(http, app)
                if not why:
                    latencies.append(time.perf_counter() - started)
                else:
                    failed[why] = failed.get(why, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(visitor() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"signins": len(latencies), "failed": failed, "seconds": elapsed, "rate": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300, help="each signs in once (one TOTP step each)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MFAD_TEST_POSTGRES_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--argon2", choices=["default", "fast"], default="default")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mfad-portal-bench-"))
    schema = None
    if args.engine == "sqlite":
        url = f"sqlite:///{workdir / 'mfad.db'}"
    else:
        import asyncpg

        schema = f"bench_{secrets.token_hex(4)}"

        async def schema_sql(sql: str) -> None:
            conn = await asyncpg.connect(args.dsn)
            await conn.execute(sql)
            await conn.close()

        asyncio.run(schema_sql(f'CREATE SCHEMA "{schema}"'))
        url = f"{args.dsn}{'&' if '?' in args.dsn else '?'}search_path={schema}"
    config, grpc_port, metrics_port, portal_port = portal_config(workdir, url, args.argon2)
    t0 = time.perf_counter()
    apps, _ = asyncio.run(provision(config, args.users, schema, password=PASSWORD))
    print(f"provisioned {len(apps)} users (password + TOTP) in {time.perf_counter() - t0:.1f} s ({workdir})")

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "clients"),
                                                       os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(config)], env=env,
                              cwd=workdir)
    try:
        wait_ready(server, grpc_port, metrics_port)
        result = asyncio.run(drive(f"http://localhost:{portal_port}", apps, args.concurrency))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if schema is not None:
            asyncio.run(schema_sql(f'DROP SCHEMA "{schema}" CASCADE'))
    print(f"engine {args.engine}, argon2 {args.argon2}: {result['signins']} complete sign-ins "
          f"(password + TOTP, 4 HTTP requests each), {args.concurrency} visitors at once")
    print(f"  {result['rate']:.1f} sign-ins/s over {result['seconds']:.2f} s; "
          f"sign-in latency p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; failed {result['failed']}")
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
