"""Shared fixtures for mfad's test suites. Their names are stable: other suites reuse them.

Store and core
--------------
``engine``
    ``"sqlite"`` or ``"postgres"``. Every test that uses ``store`` (or anything built on
    it: ``mfa``, ``enrol``, ``db``, ``store_opener``) runs once per engine.
``pg_database``
    Session-scoped: the DSN of a fresh PostgreSQL database made for this test session
    (one per xdist worker, ``mfad_test_<worker>_<random>``), dropped at the end. The
    server comes from ``MFAD_TEST_POSTGRES_DSN`` (default
    ``postgresql://postgres@127.0.0.1:5432/postgres``). PostgreSQL is never skipped:
    when it cannot be reached the tests that need it fail with the reason.
``store_location``
    Where this test's store lives: a :class:`StoreLocation` (``engine``, ``url``,
    ``schema``, ``path``) — a SQLite file in ``tmp_path``, or a fresh schema in the
    session's PostgreSQL database. ``location.argv()`` hands it to a subprocess.
``store``
    A migrated, empty :class:`mfad.core.ports.Store` at ``store_location``, closed after.
``store_opener``
    ``await store_opener()`` opens *another* Store instance (its own connections) on the
    same database; closed after the test. For two-connection and restart tests.
``clock``
    A :class:`FixedClock` at ``NOW`` (2026-01-01 09:00:10 UTC, 10 s into a 30 s step).
    It moves only with ``clock.advance(seconds)`` / ``clock.set(when)``.
``keyring``
    ``Keyring.open(tmp_path / "keys" / "secrets.key")`` (created 0600).
``config``
    :class:`mfad.config.Config` with argon2 made cheap (time_cost 1, 64 KiB, 1 lane);
    everything else at its defaults. Variants: ``dataclasses.replace(config, limits=...)``.
``mfa``
    :class:`mfad.core.service.Mfa` over ``config``/``store``/``keyring``/``clock``,
    started (policy seeded); closed after.
``mfa_factory``
    ``await mfa_factory(store=s, config=config, **mfa_options)`` → another started Mfa over ``s``
    sharing the keyring and clock (a second store instance, another config); closed after.
``bind``
    ``await bind("alice", on=None)`` → :class:`Pending`: a started TOTP binding of an
    existing user (``.binding``, ``.device``, ``.key``, ``.code(steps=0)``).
``enrol``
    ``await enrol("alice", password=PASSWORD, on=None)`` → :class:`Enrolled`: a new user
    with a bound and confirmed TOTP device (``on`` picks another Mfa than ``mfa``).
    ``.code(steps=0)`` is the code the authenticator app shows now (``steps`` moves it
    by whole periods), computed with :func:`mfad.core.totp.hotp` from the key in the
    binding's base32 secret; ``.step()``, ``.wrong_codes()`` (an iterator of distinct
    codes that match no step near now), ``.username``, ``.password``.
``password``
    The password ``enrol`` gives users (``PASSWORD``).
``db``
    A :class:`DbProbe` on ``store`` for raw checks of stored state:
    ``await db.counts()`` (rows per table, every table of the schema),
    ``await db.rows(sql, *args)``, ``await db.scalar(sql, *args)``,
    ``await db.execute(sql, *args)`` (in a write transaction) — ``$n`` parameters work
    on both engines.
``totp_code``
    ``totp_code(key, when, params=TotpParams(), steps=0)`` → the code for ``when``.
``child_env``
    The environment for a Python subprocess that must import this checkout's ``mfad``
    (``PYTHONPATH`` starts with the repository root); run it with ``sys.executable``.

Test modules do not import this file (several ``conftest`` modules share that name);
everything is reached through fixtures.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from mfad.config import Config, PasswordSettings, StorageSettings
from mfad.core import totp
from mfad.core.clock import FixedClock
from mfad.core.devices import TotpBinding
from mfad.core.keyring import Keyring
from mfad.core.model import Device, TotpParams, User
from mfad.core.ports import Store
from mfad.core.service import Mfa
from mfad.store import open_store
from peer_tools import fails_in_ci

NOW = datetime(2026, 1, 1, 9, 0, 10, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on a private loop in a worker thread: session set-up must not touch
    the event loop pytest-asyncio manages for the tests."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def admin_dsn() -> str:
    return os.environ.get("MFAD_TEST_POSTGRES_DSN") or DEFAULT_PG_DSN


def dsn_for_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


# --- engines and stores --------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_database() -> Any:
    """A fresh database for this session (per xdist worker), dropped at the end."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"mfad_test_{worker}_{secrets.token_hex(4)}"
    server = admin_dsn()

    async def create() -> None:
        try:
            conn = await asyncpg.connect(server, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise RuntimeError(
                f"PostgreSQL is required for the store tests and cannot be reached at {server!r} "
                f"(set MFAD_TEST_POSTGRES_DSN, or run scripts/test which starts it): {exc!r}") from exc
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(server, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run_in_thread(create)
    yield dsn_for_database(server, name)
    _run_in_thread(drop)


@dataclass(frozen=True)
class StoreLocation:
    """Where a test's store lives; ``open()`` gives a new Store instance there."""

    engine: str
    url: str
    schema: str | None = None
    path: Path | None = None

    async def open(self, *, pool_size: int = 10, timeout: float = 10.0) -> Store:
        return await open_store(StorageSettings(url=self.url, pool_size=pool_size, timeout_seconds=timeout),
                                schema=self.schema)

    def argv(self) -> list[str]:
        """``ENGINE URL SCHEMA`` for a subprocess (SCHEMA is ``-`` for SQLite)."""
        return [self.engine, self.url, self.schema or "-"]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_location(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreLocation:
    if engine == "sqlite":
        path = tmp_path / "db" / "mfad.db"
        return StoreLocation("sqlite", f"sqlite:///{path}", path=path)
    dsn = request.getfixturevalue("pg_database")
    return StoreLocation("postgres", dsn, schema=f"t_{secrets.token_hex(8)}")


@pytest.fixture
async def store_opener(store_location: StoreLocation) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    opened: list[Store] = []
    if store_location.schema is not None:
        conn = await asyncpg.connect(store_location.url, timeout=10)
        try:
            await conn.execute(f'CREATE SCHEMA "{store_location.schema}"')
        finally:
            await conn.close()

    async def open_(**kwargs: Any) -> Store:
        s = await store_location.open(**kwargs)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        await s.aclose()
    if store_location.schema is not None:
        conn = await asyncpg.connect(store_location.url, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA "{store_location.schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
async def store(store_opener: Callable[..., Awaitable[Store]]) -> Store:
    s = await store_opener()
    await s.migrate()
    return s


# --- the core ------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.open(tmp_path / "keys" / "secrets.key")


def fast_config(**sections: Any) -> Config:
    """A Config with cheap argon2; ``sections`` replace whole sections (``limits=LimitSettings(...)``)."""
    return dataclasses.replace(Config(passwords=PasswordSettings(time_cost=1, memory_kib=64, parallelism=1)),
                               **sections)


@pytest.fixture
def config() -> Config:
    return fast_config()


@pytest.fixture
async def mfa_factory(config: Config, keyring: Keyring, clock: FixedClock) -> AsyncIterator[Callable[..., Awaitable[Mfa]]]:
    made: list[Mfa] = []

    async def make(*, store: Store, config: Config = config, **options: Any) -> Mfa:
        m = Mfa(settings=config.core, store=store, keyring=keyring, clock=clock, **options)
        made.append(m)
        await m.start()
        return m

    yield make
    for m in made:
        m.close()


@pytest.fixture
async def mfa(mfa_factory: Callable[..., Awaitable[Mfa]], store: Store) -> Mfa:
    return await mfa_factory(store=store)


def totp_code(key: bytes, when: datetime, params: TotpParams = TotpParams(), steps: int = 0) -> str:
    return totp.hotp(key, totp.step_at(when, params.period) + steps, params.digits, params.algorithm)


@pytest.fixture(name="totp_code")
def totp_code_fixture() -> Callable[..., str]:
    return totp_code


def key_from_base32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


@dataclass(kw_only=True)
class _Authenticator:
    """What an authenticator app knows: the key, its parameters, and the (fixed) time."""

    key: bytes
    params: TotpParams
    clock: FixedClock

    def step(self, steps: int = 0) -> int:
        return totp.step_at(self.clock.now(), self.params.period) + steps

    def code(self, steps: int = 0) -> str:
        """The code the app shows now (``steps`` periods later or earlier)."""
        return totp_code(self.key, self.clock.now(), self.params, steps)

    def wrong_codes(self) -> Iterator[str]:
        """Distinct codes, each matching no step within ±5 periods of the clock's time."""
        for n in itertools.count():
            candidate = f"{n:0{self.params.digits}d}"
            if candidate not in {self.code(d) for d in range(-5, 6)}:
                yield candidate


@dataclass(kw_only=True)
class Pending(_Authenticator):
    """A started, unconfirmed TOTP binding and the key it showed."""

    binding: TotpBinding

    @property
    def device(self) -> Device:
        return self.binding.device


@dataclass(kw_only=True)
class Enrolled(_Authenticator):
    """A user with a confirmed TOTP device, and what their authenticator app knows."""

    user: User
    device: Device
    password: str

    @property
    def username(self) -> str:
        return self.user.username


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def bind(mfa: Mfa, clock: FixedClock) -> Callable[..., Awaitable[Pending]]:
    """``await bind("alice", on=None)`` → a pending TOTP binding of an existing user."""

    async def start(username: str, *, on: Mfa | None = None) -> Pending:
        binding = await (on or mfa).devices.begin_totp(username)
        assert binding.device.totp is not None
        return Pending(binding=binding, key=key_from_base32(binding.secret_base32), params=binding.device.totp,
                       clock=clock)

    return start


@pytest.fixture
def enrol(mfa: Mfa, clock: FixedClock, bind: Callable[..., Awaitable[Pending]]) -> Callable[..., Awaitable[Enrolled]]:
    """``await enrol("alice", password=PASSWORD, on=None)`` → a new user with a confirmed TOTP device."""

    async def make(username: str = "alice", *, password: str | None = PASSWORD, on: Mfa | None = None) -> Enrolled:
        m = on or mfa
        user = await m.users.create(username, password)
        pending = await bind(username, on=m)
        device = await m.devices.confirm_totp(username, pending.device.id, pending.code())
        return Enrolled(user=user, device=device, key=pending.key, params=pending.params, password=password or "",
                        clock=clock)

    return make


@pytest.fixture
def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class DbProbe:
    """Raw reads of the stored state, through the store's own read connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        async with self.store.read() as tx:  # type: ignore[attr-defined]
            return list(await tx.fetch(sql, *args))

    async def scalar(self, sql: str, *args: Any) -> Any:
        rows = await self.rows(sql, *args)
        return rows[0][0] if rows else None

    async def tables(self) -> list[str]:
        """Every table of the schema, as the database lists it (new migrations included)."""
        if self.store.engine == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
        else:
            sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                   "AND table_type = 'BASE TABLE' ORDER BY table_name")
        return [r[0] for r in await self.rows(sql)]

    async def counts(self) -> dict[str, int]:
        """Rows per table: equal before and after means nothing was written."""
        return {t: int(await self.scalar(f'SELECT count(*) FROM "{t}"')) for t in await self.tables()}

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.store.transaction() as tx:  # type: ignore[attr-defined]
            await tx.execute(sql, *args)


@pytest.fixture
def db(store: Store) -> DbProbe:
    return DbProbe(store)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``CI=true`` a test skipped for a missing peer program fails (``peer_tools``)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and fails_in_ci(str(report.longrepr)):
        report.outcome = "failed"
