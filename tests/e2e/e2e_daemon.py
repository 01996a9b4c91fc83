"""The ``mfad_daemon`` fixture: ``mfad serve`` subprocesses on both store engines.

Import it into a test module (``from e2e_daemon import mfad_daemon  # noqa: F401``):
this directory has no ``conftest.py`` of its own, so that no module named
``conftest`` shadows another directory's when several test paths run together.

``mfad_daemon``
    ``await mfad_daemon(sections=None, proxy=None, tokens=...)`` → :class:`Running`: a
    started ``mfad serve`` on free loopback ports over this test's store (the ``engine``
    fixture: SQLite file or a fresh PostgreSQL schema, through ``proxy`` when given), with
    caller tokens made through the core beforehand (default: ``ops`` admin, ``gw``
    service, ``portal`` portal). ``running.mfactl(*args)`` runs the CLI against it,
    ``running.client(name)`` is a typed client with that caller's token,
    ``running.counts()`` reads every table's row count. With ``clock=DaemonClock(path)`` the
    daemon's wall clock is the test's to set. Tests stop their daemons with
    ``await running.daemon.stop()`` (SIGTERM) and expect exit code 0; any still running
    at the end are killed.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_support import CLIENTS, Daemon, DaemonClock, Result, child_env, free_port, free_udp_port, mfactl_argv, run

from mfad.config import Config, PasswordSettings
from mfad.core.keyring import Keyring
from mfad.core.model import Role
from mfad.core.ports import Store
from mfad.core.service import Mfa

if str(CLIENTS) not in sys.path:  # a source-tree run without the package installed
    sys.path.insert(0, str(CLIENTS))

from mfad_client import MfadClient, TlsFiles  # noqa: E402

FAST_PASSWORDS = {"time_cost": 1, "memory_kib": 64, "parallelism": 1}
DEFAULT_TOKENS = {"ops": Role.ADMIN, "gw": Role.SERVICE, "portal": Role.PORTAL}
#: Every table the daemon writes (for "nothing was written" checks).
TABLES = ("users", "devices", "user_limits", "source_limits", "source_buckets", "challenges", "remembered",
          "policy", "caller_tokens", "audit", "user_sessions", "radius_requests")


@dataclass
class Running:
    daemon: Daemon
    store: Store
    tokens: dict[str, str]
    workdir: Path
    clients: list[MfadClient] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.daemon.address

    @property
    def radius_port(self) -> int:
        return int(self.daemon.sections["radius"]["listen"][0].rpartition(":")[2])

    def env(self, token: str | None = "ops", **extra: str) -> dict[str, str]:
        values = {"MFAD_ADDR": self.address, **extra}
        if token is not None:
            values["MFAD_TOKEN"] = self.tokens.get(token, token)
        return child_env(values)

    async def mfactl(self, *args: str, token: str | None = "ops", stdin: str | None = None,
                     env: Mapping[str, str] | None = None) -> Result:
        return await run([*mfactl_argv(), *args], env={**self.env(token), **(env or {})}, stdin=stdin)

    async def mfad(self, *args: str) -> Result:
        """The daemon's own CLI on the same configuration (``mfad token create ...``)."""
        return await run([sys.executable, "-m", "mfad", *args, "--config", str(self.daemon.config_path)],
                         env=child_env())

    def client(self, token: str | None = "ops", *, tls: TlsFiles | None = None) -> MfadClient:
        c = MfadClient(self.address, token=self.tokens.get(token, token) if token else None, tls=tls, timeout=15.0)
        self.clients.append(c)
        return c

    async def counts(self) -> dict[str, int]:
        out = {}
        async with self.store.read() as tx:  # type: ignore[attr-defined]
            for table in TABLES:
                row = await tx.fetchrow(f"SELECT count(*) AS n FROM {table}")
                out[table] = int(row["n"])
        return out


StartDaemon = Callable[..., Awaitable[Running]]


@pytest.fixture
async def mfad_daemon(store_location: Any, store_opener: Callable[..., Awaitable[Store]],
                      tmp_path: Path) -> AsyncIterator[StartDaemon]:
    started: list[Running] = []

    async def start(*, sections: Mapping[str, Mapping[str, Any]] | None = None, proxy_port: int | None = None,
                    tokens: Mapping[str, Role] = DEFAULT_TOKENS, clock: DaemonClock | None = None) -> Running:
        workdir = tmp_path / f"mfad{len(started)}"
        workdir.mkdir()
        probe = await store_opener()
        await probe.migrate()
        config: dict[str, dict[str, Any]] = {
            "storage": {"url": _daemon_url(store_location, proxy_port), "timeout_seconds": 2.0, "pool_size": 4},
            "secrets": {"key_file": str(workdir / "secrets.key")},
            "passwords": dict(FAST_PASSWORDS),
            "grpc": {"listen": [f"127.0.0.1:{free_port()}"], "shutdown_grace_seconds": 5.0},
            "metrics": {"listen": [f"127.0.0.1:{free_port()}"]},
            # Accounting on a port of its own: the default (the RADIUS port + 1) may be taken.
            "radius": {"listen": [f"127.0.0.1:{free_udp_port()}"], "accounting_listen": [f"127.0.0.1:{free_udp_port()}"]},
            # Off unless a test turns it on (tests/portal): these tests make their own caller tokens.
            "portal": {"enabled": False, "listen": ["127.0.0.1:0"], "token_file": str(workdir / "portal.token")},
        }
        for name, values in (sections or {}).items():
            config.setdefault(name, {}).update(values)
        made = {}
        if tokens:
            core = Mfa(settings=Config(passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1)).core,
                       store=probe, keyring=Keyring.open(Path(config["secrets"]["key_file"])))
            try:
                for name, role in tokens.items():
                    _, made[name] = await core.callers.create(name, role, actor="test")
            finally:
                core.close()
        grpc_port = int(config["grpc"]["listen"][0].rpartition(":")[2])
        metrics_port = int(config["metrics"]["listen"][0].rpartition(":")[2])
        daemon = Daemon(workdir=workdir, sections=config, grpc_port=grpc_port, metrics_port=metrics_port,
                        env=clock.env() if clock is not None else {})
        running = Running(daemon=daemon, store=probe, tokens=made, workdir=workdir)
        started.append(running)
        await daemon.start()
        return running

    yield start
    for running in started:
        for c in running.clients:
            await c.close()
        running.daemon.kill()


def _daemon_url(location: Any, proxy_port: int | None) -> str:
    if location.engine == "sqlite":
        return str(location.url)
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(location.url)
    if proxy_port is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        parts = parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{proxy_port}")
    return urlunsplit(parts._replace(query=f"search_path={location.schema}"))
