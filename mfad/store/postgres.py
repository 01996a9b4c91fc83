"""PostgreSQL engine: many mfad instances sharing one database behave as one server.

An asyncpg pool whose per-release reset is skipped (mfad keeps no session state
on a connection; the reset measured ~2× a query's cost). Conditional updates
and ``SELECT … FOR UPDATE`` inside transactions keep security state race-free
across instances. Migrations take an advisory lock so instances starting
together migrate once.

Approval decisions reach every instance (``mfad.core.approval_waits``): the deciding
transaction runs ``pg_notify`` on the store's channel, which PostgreSQL delivers only
when that transaction commits; each instance LISTENs on one dedicated connection
outside the pool. When that connection is lost it is opened again (backing off up to
``LISTEN_BACKOFF_MAX`` seconds), and after every (re)connection the waiters are told to
look again, since notifications sent meanwhile are gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncio
import contextlib
import logging

import asyncpg

from mfad.core.errors import AlreadyExists, SchemaError, Unavailable
from mfad.core.model import AuditEvent, DeviceId, RememberedDevice, UserId
from mfad.core.ports import StoreMetrics
from mfad.store.base import SqlStore
from mfad.store.radius import ONE_STATEMENT_REPLIES
from mfad.store.sql import Rollback, Row
from mfad.store.migrations import migrations

T = TypeVar("T")

log = logging.getLogger("mfad.store")

#: The channel approval decisions are announced on (one per schema: stores in other
#: schemas of the same database are other installations).
DECISION_CHANNEL = "mfad_approvals"
LISTEN_BACKOFF_MAX = 5.0
"""Seconds between attempts to reopen a lost LISTEN connection, at most."""

_AUDIT_FIELDS = ("event", "outcome", "user_id", "username", "method", "protocol", "source", "reason", "actor",
                 "detail")

_MIGRATION_LOCK = 0x6D666164  # "mfad": advisory lock id for migrations

# Errors that mean "the database cannot be reached right now": fail closed as Unavailable.
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def _no_session_state_reset(conn: asyncpg.Connection) -> None:
    """mfad sets no session state on pooled connections, so there is nothing to reset."""


_ACCEPT_TOTP = """
WITH guard AS (
    UPDATE devices SET last_step = $2, drift = $3, last_used_at = $4
    WHERE id = $1 AND state = 'active' AND last_step < $2 RETURNING id),
user_reset AS (
    DELETE FROM user_limits WHERE user_id = $5 AND failures + total_failures > 0 AND hard_locked = 0
    AND EXISTS (SELECT 1 FROM guard)),
source_reset AS (
    DELETE FROM source_limits WHERE user_id = $5 AND EXISTS (SELECT 1 FROM guard)),
audit_rows AS (
    INSERT INTO audit (at, event, outcome, user_id, username, method, protocol, source, reason, actor, detail)
    SELECT $4, e.* FROM unnest($6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[],
                               $12::text[], $13::text[], $14::text[], $15::text[]) AS e
    WHERE EXISTS (SELECT 1 FROM guard))
SELECT count(*) AS won FROM guard"""
"""The replay guard, the limits reset and the audit rows of an accepted code as one
statement: PostgreSQL runs it as one transaction (every sub-statement sees the same
snapshot and the deletes and inserts happen only when the guard's UPDATE won the row:
a concurrent UPDATE of the same device waits for the row lock and then re-checks
``last_step``), committed before the reply, in one round trip instead of six
(BEGIN, four statements, COMMIT)."""


class _PgTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def _run(self, call: Callable[..., Awaitable[T]], sql: str, args: tuple[Any, ...]) -> T:
        try:
            return await call(sql, *args)
        except _UNAVAILABLE as exc:
            raise Unavailable(f"postgres: {exc}") from exc
        except asyncpg.UniqueViolationError:
            # A concurrent change took the same unique name first (the statements guard
            # the usual cases with ON CONFLICT); the caller gets the domain's answer.
            raise AlreadyExists("a concurrent change conflicted with this one; try again") from None

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._run(self._conn.fetch, sql, args))

    async def fetch_values(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self._run(self._conn.fetch, sql, args))  # a Record is read by position too

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._run(self._conn.fetchrow, sql, args)
        return row

    async def execute(self, sql: str, *args: Any) -> None:
        await self._run(self._conn.execute, sql, args)


def _reusable(conn: asyncpg.Connection) -> bool:
    """Open, and not inside a transaction someone left behind."""
    try:
        return not conn.is_closed() and not conn.is_in_transaction()
    except asyncpg.InterfaceError:  # the pool took it back when its connection closed
        return False


class _Lease(AbstractAsyncContextManager[asyncpg.Connection]):
    """A connection for one store call, from the store's own free list when it has one.

    asyncpg's ``acquire`` and ``release`` cost a timer and a task per call (the release's
    ``shield``) and a reset that mfad does not need: a connection that comes back open and
    outside a transaction goes onto the store's free list instead, and the next call takes
    it from there. A connection that died (the database restarted) or was left inside a
    transaction goes back to the pool, which closes or reopens it. While the store holds
    fewer connections than the pool's size, the pool has one free (or can open one, under
    the connect timeout): it is taken without the acquire timer; only a full pool's wait
    gets the store's timeout. A class, not an ``asynccontextmanager``: it runs for every
    store call."""

    __slots__ = ("_store", "_conn")

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def __aenter__(self) -> asyncpg.Connection:
        store = self._store
        free = store._free
        while free:
            conn = free.pop()
            if _reusable(conn):
                self._conn = conn
                return conn
            await store._give_back(conn)
        # Counted before the wait: acquires still opening a connection take a place too.
        full = store._leased >= store._pool_size
        store._leased += 1
        store._waiting += full
        try:
            conn = await store._pool.acquire(timeout=store._timeout if full else None)
        except BaseException as exc:
            store._leased -= 1
            if isinstance(exc, _UNAVAILABLE):
                raise Unavailable(f"postgres: {exc}") from exc
            raise
        finally:
            store._waiting -= full
        self._conn = conn
        return conn

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        store = self._store
        conn = self._conn
        # A call waiting in the pool's queue is handed this connection through the pool.
        if _reusable(conn) and not store._closing and not store._waiting:
            store._free.append(conn)
        else:
            await store._give_back(conn)
        if isinstance(exc, _UNAVAILABLE):  # the database went away during the call
            raise Unavailable(f"postgres: {exc}") from exc
        return False


class _Read(AbstractAsyncContextManager[_PgTx]):
    """``store.read()``: statements on a leased connection, each its own transaction."""

    __slots__ = ("_lease",)

    def __init__(self, store: PostgresStore) -> None:
        self._lease = _Lease(store)

    async def __aenter__(self) -> _PgTx:
        return _PgTx(await self._lease.__aenter__())

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        return await self._lease.__aexit__(kind, exc, tb)


class PostgresStore(SqlStore):
    engine = "postgres"
    dialect = ONE_STATEMENT_REPLIES

    def __init__(self, pool: asyncpg.Pool, timeout: float, metrics: StoreMetrics | None, *,
                 dsn: str | None = None, settings: dict[str, str] | None = None) -> None:
        super().__init__(metrics)
        self._pool = pool
        self._timeout = timeout
        self._pool_size = pool.get_max_size()
        self._leased = 0  # connections taken or being taken from the pool, not given back (free ones too)
        self._free: list[asyncpg.Connection] = []  # open connections between two store calls
        self._waiting = 0  # calls waiting in the pool's queue for a connection (the pool was full)
        self._closing = False
        self._dsn = dsn
        self._settings = dict(settings or {})
        schema = self._settings.get("search_path")
        self.decision_channel = f"{DECISION_CHANNEL}.{schema}" if schema else DECISION_CHANNEL
        self._listener: asyncio.Task[None] | None = None
        #: Set while the LISTEN connection is up (tests and /readyz-like checks wait on it).
        self.listening = asyncio.Event()

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 10, timeout: float = 5.0, schema: str | None = None,
                   metrics: StoreMetrics | None = None, readonly: bool = False) -> PostgresStore:
        settings = {"application_name": "mfad"}
        if readonly:
            settings["default_transaction_read_only"] = "on"
        if schema:
            settings["search_path"] = schema
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, command_timeout=timeout,
                                             timeout=timeout, server_settings=settings,
                                             reset=_no_session_state_reset,
                                             # No idle timer re-armed on every release (a timer each
                                             # time): the pool is small, its connections are kept.
                                             max_inactive_connection_lifetime=0)
        except _UNAVAILABLE as exc:
            raise Unavailable(f"postgres: cannot connect: {exc}") from exc
        assert pool is not None
        return cls(pool, timeout, metrics, dsn=dsn, settings=settings)

    async def accept_totp(self, device_id: DeviceId, user_id: UserId, step: int, drift: int, now: datetime,
                          challenge_hash: str | None, audit: Sequence[AuditEvent],
                          remember: RememberedDevice | None = None, remember_hash: str | None = None) -> bool:
        """As :meth:`SqlStore.accept_totp`; a code without a challenge or a remembered device to
        create (the one-call sign-ins: RADIUS, gRPC ``VerifyCode``) takes one statement. With
        a challenge the guard must be undone when the challenge was consumed meanwhile, which
        one statement cannot express: those keep the transaction."""
        if challenge_hash is not None or remember is not None:
            return await super().accept_totp(device_id, user_id, step, drift, now, challenge_hash, audit,
                                             remember, remember_hash)
        columns: list[list[Any]] = [[getattr(e, name) for e in audit] for name in _AUDIT_FIELDS]
        # A single statement is its own transaction: no BEGIN and COMMIT round trips.
        async with self._timed("accept_totp", write=False) as tx:
            row = await tx.fetchrow(_ACCEPT_TOTP, device_id, step, drift, now.timestamp(), user_id, *columns)
        return row is not None and row["won"] == 1

    # --- approval decisions across instances ---------------------------------------------
    async def _announce_decision(self, tx: Any, challenge_hash: str) -> None:
        await tx.execute("SELECT pg_notify($1, $2)", self.decision_channel, challenge_hash)

    def _start_decision_feed(self) -> None:
        if self._listener is not None or self._dsn is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing can wait here anyway
            return
        self._listener = loop.create_task(self._listen(), name="mfad-approval-listener")

    async def _listen(self) -> None:
        """Keep one connection LISTENing on the channel, reopening it when it is lost."""
        assert self._dsn is not None
        backoff = 0.25
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                settings = {**self._settings, "application_name": "mfad-listen"}
                settings.pop("default_transaction_read_only", None)
                conn = await asyncpg.connect(self._dsn, timeout=self._timeout, server_settings=settings)
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(self.decision_channel, self._notified)
                backoff = 0.25
                self.listening.set()
                # Whatever was decided while nobody listened is not announced again.
                self._decision_committed(None)
                await lost.wait()
                log.warning("the approval LISTEN connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("cannot LISTEN for approval decisions (retrying in %.1f s): %s", backoff, exc)
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LISTEN_BACKOFF_MAX)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._decision_committed(payload or None)

    def _acquire(self) -> _Lease:
        return _Lease(self)

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        """Return a leased connection to the pool (which resets, closes or reopens it)."""
        try:
            await self._pool.release(conn)
        except _UNAVAILABLE as exc:
            raise Unavailable(f"postgres: {exc}") from exc
        finally:
            self._leased -= 1  # only now is the connection back in the pool's queue

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgTx]:
        async with self._acquire() as conn:
            try:
                async with conn.transaction():
                    yield _PgTx(conn)
            except Rollback:
                return

    def read(self) -> _Read:
        return _Read(self)

    async def schema_version(self) -> int:
        async with self._acquire() as conn:
            exists = await conn.fetchval("SELECT to_regclass('mfad_schema') IS NOT NULL")
            if not exists:
                return 0
            return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM mfad_schema"))

    async def migrate(self) -> list[int]:
        applied = []
        async with self._acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS mfad_schema "
                               "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM mfad_schema"))
            known = migrations(self.engine)
            if known and current > known[-1][0]:
                raise SchemaError(f"database schema v{current} is newer than this mfad knows (v{known[-1][0]})")
            for version, script in known:
                if version <= current:
                    continue
                try:
                    await conn.execute(script)
                except asyncpg.PostgresError as exc:
                    raise SchemaError(f"migration {version} failed: {exc}") from exc
                await conn.execute("INSERT INTO mfad_schema (version) VALUES ($1)", version)
                applied.append(version)
        return applied

    async def ping(self) -> None:
        async with self._acquire() as conn:
            try:
                await conn.fetchval("SELECT 1", timeout=2.0)
            except _UNAVAILABLE as exc:
                raise Unavailable(f"postgres: {exc}") from exc

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._closing = True
        free, self._free = self._free, []
        for conn in free:
            with contextlib.suppress(Unavailable):
                await self._give_back(conn)
        await self._pool.close()
