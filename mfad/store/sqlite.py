"""SQLite engine: the embedded default, with group commit.

WAL with ``synchronous=FULL``: a committed verification survives power loss. One
writer connection (more only add lock contention) and one reader connection.

Group commit. ``transaction()`` queues a unit of work; one writer task takes every
unit queued so far, opens ``BEGIN IMMEDIATE`` (the database write lock, so other
processes on the same file wait up to ``busy_timeout``), runs each unit inside its
own ``SAVEPOINT`` — a unit that fails or rolls back is undone alone, the others
stand — and then ``COMMIT`` s them together: one WAL fsync for the whole batch
instead of one per unit. A unit's ``transaction()`` returns only after that COMMIT
has returned, so nothing a caller is told happened (an accepted code, its replay
guard, its audit row) can be lost afterwards; if the COMMIT fails, every unit of
the batch raises :class:`~mfad.core.errors.Unavailable`.

What runs where. ``BEGIN IMMEDIATE`` (it may wait for another process) and
``COMMIT`` (it fsyncs) run on a thread of their own. The statements in between,
and reads, run on the event loop thread itself: inside the write lock they never
wait for a lock, a WAL reader never waits for a writer, and a statement on pages
the OS has cached costs microseconds — a thread hop per statement measured several
times the statement itself and capped the daemon's rate. The price is that a read
that misses the OS page cache holds the loop for that disk read; the reader's busy
timeout is kept short (a reader is blocked only by WAL recovery) so that a stuck
file makes the request fail as ``Unavailable`` rather than stall the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, TypeVar

from mfad.core.errors import AlreadyExists, SchemaError, Unavailable
from mfad.core.ports import StoreMetrics
from mfad.store.base import SqlStore
from mfad.store.sql import Rollback, Row
from mfad.store.migrations import migrations

log = logging.getLogger("mfad.store")

_PARAM = re.compile(r"\$(\d+)(?:::[a-z0-9]+)?")

MAX_BATCH: Final = 512
"""Units per COMMIT: bounds how long the first unit of a very large batch waits."""
CHECKPOINT_SECONDS: Final = 1.0
"""How long after a commit the WAL is copied back into the database (and can restart from
its head): the commits of that second share one checkpoint. An idle store does none."""
READER_BUSY_MS: Final = 100
"""A WAL reader waits only for WAL recovery; past this the read fails as Unavailable."""

CACHE_KIB: Final = 16384
"""Page cache per connection (SQLite's default is 2 MiB): the hot path's index pages and the
rows of the users signing in stay in memory. A store of a million users does not fit in any
cache a worker can afford (measured: 64 MiB per connection took a worker to 157 MiB under
load, two connections' caches full; bench/README.md); the rest is read through the OS's page
cache, a few reads of a few microseconds per request."""

T = TypeVar("T")


#: A row another transaction inserted first (a PRIMARY KEY is a unique constraint too).
_UNIQUE_VIOLATIONS: Final = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


class _SqliteTx:
    """Statements on one connection, run where they are called (see the module docstring)."""

    __slots__ = ("_conn", "_cache", "live")

    def __init__(self, conn: sqlite3.Connection, translate: dict[str, str]) -> None:
        self._conn = conn
        self._cache = translate
        self.live = True

    def _sql(self, sql: str) -> str:
        out = self._cache.get(sql)
        if out is None:
            out = self._cache[sql] = _PARAM.sub(r"?\1", sql)
        return out

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._run(self._conn, sql, args)

    async def fetch_values(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        cursor = self._conn.cursor()
        cursor.row_factory = None  # tuples, not sqlite3.Row
        return self._run(cursor, sql, args)

    def _run(self, on: sqlite3.Connection | sqlite3.Cursor, sql: str, args: tuple[Any, ...]) -> list[Any]:
        if not self.live:
            raise Unavailable("sqlite: the transaction was abandoned (it outlived its time)")
        try:
            return on.execute(self._sql(sql), args).fetchall()
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"sqlite: {exc}") from exc
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode not in _UNIQUE_VIOLATIONS:
                raise
            raise AlreadyExists("a concurrent change conflicted with this one; try again") from None

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)


class _Unit:
    """One ``transaction()``: waiting for its turn, running in its savepoint, or done."""

    __slots__ = ("started", "tx", "done", "committed")

    def __init__(self) -> None:
        #: Set when the unit waited in the queue and its turn came (its tx, or an error).
        self.started: asyncio.Future[_SqliteTx] | None = None
        self.tx: _SqliteTx | None = None
        #: Its savepoint is closed (kept or rolled back): the unit no longer holds the connection.
        self.done = False
        #: Resolved after the COMMIT of the batch that kept the unit's changes.
        self.committed: asyncio.Future[None] | None = None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # None: raised by the module, not by SQLite
    if code is None:
        return False
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # primary code of an extended one


def _settle(future: asyncio.Future[Any] | None, error: BaseException | None = None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        future.exception()  # a caller that was cancelled meanwhile will never look: no warning


class _Transaction(AbstractAsyncContextManager[_SqliteTx]):
    """A unit of work: run in its savepoint of the open batch (at once when the connection
    is free, else when its turn comes), returned from only after that batch's COMMIT."""

    __slots__ = ("_store", "_unit")

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def __aenter__(self) -> _SqliteTx:
        store = self._store
        self._unit = unit = _Unit()
        if store._enter(unit):
            assert unit.tx is not None
            return unit.tx
        assert unit.started is not None
        try:
            return await unit.started
        except BaseException:
            # Cancelled while queued, or just as its turn came: give the connection back.
            store._leave(unit, keep=False)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        unit = self._unit
        keep = kind is None
        committed = self._store._leave(unit, keep=keep)
        if kind is not None:
            return issubclass(kind, Rollback)  # Rollback undoes the unit quietly; the rest propagates
        assert committed is not None
        await committed
        return False


class _Read(AbstractAsyncContextManager[_SqliteTx]):
    __slots__ = ("_store",)

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def __aenter__(self) -> _SqliteTx:
        store = self._store
        if store._closed:
            raise Unavailable("sqlite: the store is closed")
        return _SqliteTx(store._reader, store._translated)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        return False


class SqliteStore(SqlStore):
    engine = "sqlite"
    # BEGIN IMMEDIATE already holds the whole database; synchronous is per connection.
    # No row locks (the write lock covers the database), no session setting to relax.
    dialect = {"lock": "", "relaxed_commit": "", "skip_locked": "", "bytewise": "",
               "json_rows": "json_each(${n}) AS j"}

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection,
                 metrics: StoreMetrics | None, *, timeout: float = 5.0) -> None:
        super().__init__(metrics)
        self.path = path
        self._writer = writer
        self._reader = reader
        self._timeout = timeout
        self._translated: dict[str, str] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self._checkpoint_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpoint_timer: asyncio.TimerHandle | None = None
        self._checkpoint_due = False  # a commit since the running checkpoint began
        self._checkpointer: sqlite3.Connection | None = None
        self._queue: deque[_Unit] = deque()
        self._open = False  # a batch is between BEGIN and COMMIT: units may run
        self._turns = 0  # queued units the open batch still takes
        self._active: _Unit | None = None  # the unit whose savepoint holds the connection
        self._active_since = 0.0
        self._waiters: list[asyncio.Future[None]] = []  # kept units of the open batch
        self._broken: Unavailable | None = None  # the open batch can no longer commit
        self._idle: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None  # no unit queued and no batch open
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._schema_lock: asyncio.Lock | None = None
        self._closed = False
        self.batches = 0
        """Batches committed (for tests and benchmarks: units / batches is the grouping)."""

    @classmethod
    async def open(cls, path: str | Path, *, timeout: float = 5.0, metrics: StoreMetrics | None = None,
                   readonly: bool = False) -> SqliteStore:
        """Open (creating the file, and its directory when that directory's parent exists);
        ``readonly``: an existing database only, changing nothing (``mfad check-config``)."""
        path = Path(path)
        loop = asyncio.get_running_loop()
        try:
            if readonly:
                if not path.is_file():
                    raise Unavailable(f"sqlite: {path} does not exist")
                reader = await loop.run_in_executor(None, cls._connect_readonly, path, timeout)
                return cls(path, reader, reader, metrics, timeout=timeout)
            # Only the database's own directory is made: a mistyped path fails, never a new tree.
            path.parent.mkdir(exist_ok=True, mode=0o700)
            # The writer never waits inside SQLite: _begin_waiting retries BEGIN itself.
            writer = await loop.run_in_executor(None, cls._connect, path, timeout, 0)
            reader = await loop.run_in_executor(None, cls._connect, path, timeout, READER_BUSY_MS)
        except FileNotFoundError as exc:
            raise Unavailable(f"sqlite: cannot open {path}: the directory {path.parent.parent} does not exist") \
                from exc
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"sqlite: cannot open {path}: {exc}") from exc
        return cls(path, writer, reader, metrics, timeout=timeout)

    @staticmethod
    def _connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                               timeout=timeout, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={READER_BUSY_MS}")
        return conn

    @staticmethod
    def _connect(path: Path, timeout: float, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, timeout=timeout, check_same_thread=False,
                               cached_statements=256)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size={-CACHE_KIB}")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint
        path.chmod(0o600)
        return conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- writes: group commit -------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``async with store.transaction() as tx``: one unit of the next group commit."""
        return _Transaction(self)

    def _enter(self, unit: _Unit) -> bool:
        """Queue ``unit`` for the next batch (False: await ``unit.started``)."""
        if self._closed:
            raise Unavailable("sqlite: the store is closed")
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        unit.started = loop.create_future()
        self._queue.append(unit)
        assert self._wake is not None and self._drained is not None
        self._drained.clear()
        self._wake.set()
        return False

    def _start(self, unit: _Unit) -> None:
        """Give the connection to ``unit`` inside its own savepoint."""
        try:
            self._writer.execute("SAVEPOINT unit")
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: {exc}") from exc
        unit.tx = _SqliteTx(self._writer, self._translated)
        self._active = unit
        self._active_since = time.monotonic()

    def _leave(self, unit: _Unit, *, keep: bool) -> asyncio.Future[None] | None:
        """Close ``unit``'s savepoint; the future its kept changes' COMMIT resolves."""
        if unit.tx is None:  # never started: cancelled in the queue
            if unit.started is not None and not unit.started.done():
                unit.started.cancel()
            return None
        if unit.done:  # abandoned by the watchdog: its savepoint is already rolled back
            return unit.committed if keep else None
        unit.done = True
        unit.tx.live = False
        waiter: asyncio.Future[None] | None = None
        try:
            if keep:
                waiter = unit.committed = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
            else:
                self._writer.execute("ROLLBACK TO unit")
            # Released at once: an open savepoint makes SQLite keep the original of every
            # page a later unit changes (measured 30% more CPU per unit when left open).
            self._writer.execute("RELEASE unit")
        except sqlite3.Error as exc:
            self._broken = Unavailable(f"sqlite: {exc}")  # the batch cannot commit
        if self._active is unit:
            self._active = None
            self._next()
        return waiter

    def _next(self) -> None:
        """Hand the connection to the next queued unit of the batch, or tell the writer it is done."""
        while self._queue and self._turns > 0:
            unit = self._queue.popleft()
            self._turns -= 1
            started = unit.started
            if started is None or started.done():
                continue  # cancelled while queued
            if self._broken is not None:
                _settle(started, self._broken)
                continue
            try:
                self._start(unit)
            except Unavailable as exc:
                _settle(started, exc)
                continue
            assert unit.tx is not None
            started.set_result(unit.tx)
            return
        assert self._idle is not None
        self._idle.set()

    def _ensure_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        # First use, or a new event loop (tests): the writer lives in the caller's loop.
        self._loop = loop
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._drained = asyncio.Event()
        self._schema_lock = asyncio.Lock()
        self._task = loop.create_task(self._write_batches(), name="sqlite-group-commit")
        # A timer or checkpoint of an earlier loop will never run here.
        self._checkpoint_timer = None
        self._checkpoint_task = None

    @property
    def checkpoint_scheduled(self) -> bool:
        """A checkpoint waits for its time or runs (false on an idle store)."""
        return self._checkpoint_timer is not None or self._checkpoint_task is not None

    def _committed(self) -> None:
        """After a COMMIT: a checkpoint within CHECKPOINT_SECONDS, one for every commit of
        that time (nothing runs while nothing is written)."""
        self._checkpoint_due = True
        if self._checkpoint_timer is None and self._checkpoint_task is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._checkpoint_timer = loop.call_later(CHECKPOINT_SECONDS, self._begin_checkpoint, loop)

    def _begin_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        self._checkpoint_timer = None
        if self._closed:
            return
        self._checkpoint_due = False
        self._checkpoint_task = loop.create_task(self._checkpoint(), name="sqlite-checkpoint")

    async def _checkpoint(self) -> None:
        """Copy the WAL back into the database on a thread and a connection of its own:
        SQLite's automatic checkpoint would run inside a COMMIT and hold every caller of
        that batch (measured: p99 latency × 10)."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._checkpoint_thread, self._checkpoint_sync,
                                                             "PASSIVE")
        except sqlite3.Error as exc:
            log.warning("sqlite: checkpoint failed: %s", exc)
        finally:
            self._checkpoint_task = None
        if self._checkpoint_due:  # written to while it ran
            self._committed()

    def _checkpoint_sync(self, mode: str) -> None:
        if self._checkpointer is None:
            self._checkpointer = self._connect(self.path, self._timeout, READER_BUSY_MS)
        self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    async def _write_batches(self) -> None:
        """Open a batch when units wait, let them run, COMMIT when none runs or waits."""
        assert self._wake is not None and self._idle is not None and self._schema_lock is not None
        assert self._drained is not None
        while True:
            if not self._queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._schema_lock:
                await self._run_batch()

    async def _run_batch(self) -> None:
        assert self._idle is not None
        conn = self._writer
        try:
            await self._begin()
        except Unavailable as exc:
            while self._queue:
                _settle(self._queue.popleft().started, exc)
            return
        self._open = True
        self._broken = None
        self._idle.clear()
        # The batch is the units queued by now (those that came during the last COMMIT);
        # later ones wait for the next batch, so a batch's first unit is never held long.
        self._turns = min(len(self._queue), MAX_BATCH)
        self._next()
        while self._active is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._idle.wait()
            except TimeoutError:
                self._abandon_overdue()
            self._idle.clear()
        self._open = False
        self._turns = 0  # nothing may start on the connection while it commits
        waiters, self._waiters = self._waiters, []
        try:
            if self._broken is not None:
                raise self._broken
            await self._in_thread(conn.execute, "COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    await asyncio.shield(self._in_thread(conn.execute, "ROLLBACK"))
            error = exc if isinstance(exc, Unavailable) else Unavailable(f"sqlite: commit failed: {exc!r}")
            for waiter in waiters:
                _settle(waiter, error)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self._committed()
        for waiter in waiters:
            _settle(waiter)

    def _abandon_overdue(self) -> None:
        """A unit that holds the connection past the timeout is rolled back, so that it
        does not hold the batch (and every caller in it); it gets Unavailable."""
        unit = self._active
        if unit is None or time.monotonic() - self._active_since < self._timeout:
            return
        log.error("sqlite: a transaction held the connection for over %.1f s: rolled back", self._timeout)
        unit.done = True
        if unit.tx is not None:
            unit.tx.live = False
        loop = asyncio.get_running_loop()
        unit.committed = loop.create_future()
        _settle(unit.committed, Unavailable("sqlite: transaction took too long and was rolled back"))
        try:
            self._writer.execute("ROLLBACK TO unit")
            self._writer.execute("RELEASE unit")
        except sqlite3.Error as exc:
            self._broken = Unavailable(f"sqlite: {exc}")
        self._active = None
        self._next()

    async def _begin(self) -> None:
        conn = self._writer
        try:
            # Without another process on the file the lock is free: take it here, no hop.
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise Unavailable(f"sqlite: {exc}") from exc
        await self._in_thread(self._begin_waiting)

    def _begin_waiting(self) -> None:
        """BEGIN IMMEDIATE while another process holds the write lock: retried every few
        hundred microseconds up to the timeout. (SQLite's own busy handler sleeps 1, 2, 5,
        10 … 100 ms between tries: two workers on one file then wait for each other far
        longer than the lock is held.)"""
        deadline = time.monotonic() + self._timeout
        pause = 0.0002
        while True:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise Unavailable(f"sqlite: {exc}") from exc
            time.sleep(pause)
            pause = min(pause * 1.5, 0.002)

    # --- reads ----------------------------------------------------------------------------
    def read(self) -> _Read:
        return _Read(self)

    # --- schema and life cycle -------------------------------------------------------------
    async def schema_version(self) -> int:
        async with self.read() as tx:
            rows = await tx.fetch("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'mfad_schema'")
            if not rows:
                return 0
            rows = await tx.fetch("SELECT max(version) AS version FROM mfad_schema")
        return int(rows[0]["version"] or 0)

    async def migrate(self) -> list[int]:
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        assert self._schema_lock is not None
        async with self._schema_lock:  # no batch runs meanwhile
            return await self._in_thread(self._migrate_sync)

    def _migrate_sync(self) -> list[int]:
        conn = self._writer
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")  # another process may migrate
        try:
            return self._migrate_locked(conn)
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    def _migrate_locked(self, conn: sqlite3.Connection) -> list[int]:
        applied = []
        conn.execute("CREATE TABLE IF NOT EXISTS mfad_schema (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        current = int(conn.execute("SELECT max(version) FROM mfad_schema").fetchall()[0][0] or 0)
        known = migrations(self.engine)
        if known and current > known[-1][0]:
            raise SchemaError(f"database schema v{current} is newer than this mfad knows (v{known[-1][0]})")
        for version, script in known:
            if version <= current:
                continue
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\n"
                    f"INSERT INTO mfad_schema (version, applied_at) VALUES ({version}, CAST(strftime('%s', 'now') AS REAL));\n"
                    "COMMIT;")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise SchemaError(f"migration {version} failed: {exc}") from exc
            applied.append(version)
        return applied

    async def ping(self) -> None:
        if self._closed:
            raise Unavailable("sqlite: the store is closed")
        try:
            self._reader.execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                # Let queued units finish, then stop the writer.
                async with asyncio.timeout(self._timeout):
                    if self._drained is not None:
                        await self._drained.wait()
                    if self._schema_lock is not None:
                        async with self._schema_lock:
                            pass
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for unit in list(self._queue):
            _settle(unit.started, Unavailable("sqlite: the store is closed"))
        self._queue.clear()
        loop = asyncio.get_running_loop()
        if self._checkpoint_timer is not None:
            self._checkpoint_timer.cancel()
            self._checkpoint_timer = None
        if self._checkpoint_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checkpoint_task  # a checkpoint in its thread cannot be cancelled
        with contextlib.suppress(sqlite3.Error):
            await loop.run_in_executor(self._checkpoint_thread, self._checkpoint_sync, "PASSIVE")
        if self._checkpointer is not None:
            await loop.run_in_executor(self._checkpoint_thread, self._checkpointer.close)
        await loop.run_in_executor(self._thread, self._writer.close)
        await loop.run_in_executor(self._thread, self._reader.close)
        self._thread.shutdown(wait=False)
        self._checkpoint_thread.shutdown(wait=False)
