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
import re
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, TypeVar

from mfad.core.errors import SchemaError, Unavailable
from mfad.core.ports import StoreMetrics
from mfad.store.base import Row, SqlStore, _Rollback
from mfad.store.migrations import migrations

_PARAM = re.compile(r"\$(\d+)(?:::[a-z0-9]+)?")

MAX_BATCH: Final = 512
"""Units per COMMIT: bounds how long the first unit of a very large batch waits."""
READER_BUSY_MS: Final = 100
"""A WAL reader waits only for WAL recovery; past this the read fails as Unavailable."""

CACHE_KIB: Final = 65536
"""Page cache per connection (SQLite's default is 2 MiB): the hot path's rows for tens of
thousands of users stay in memory instead of being read again through the OS."""

T = TypeVar("T")


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
        if not self.live:
            raise Unavailable("sqlite: the transaction was abandoned (it outlived its time)")
        try:
            return self._conn.execute(self._sql(sql), args).fetchall()
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"sqlite: {exc}") from exc

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)


class _Unit:
    """One ``transaction()`` waiting for, running in, or done with a batch."""

    __slots__ = ("started", "finished", "committed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.started: asyncio.Future[_SqliteTx] = loop.create_future()
        #: True: keep its changes; False: roll its savepoint back.
        self.finished: asyncio.Future[bool] = loop.create_future()
        self.committed: asyncio.Future[None] = loop.create_future()

    def finish(self, keep: bool) -> None:
        if not self.finished.done():
            self.finished.set_result(keep)

    def overdue(self) -> None:
        _settle(self.committed, Unavailable("sqlite: transaction took too long and was rolled back"))
        self.finish(False)


def _settle(future: asyncio.Future[Any], error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Transaction(AbstractAsyncContextManager[_SqliteTx]):
    """A unit of work: queued, run in its savepoint, returned from only after the COMMIT."""

    __slots__ = ("_store", "_unit")

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def __aenter__(self) -> _SqliteTx:
        self._unit = unit = self._store._enqueue()
        try:
            return await unit.started
        except BaseException:
            unit.finish(False)  # cancelled while queued or just as it started
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        unit = self._unit
        if kind is not None:
            unit.finish(False)
            return issubclass(kind, _Rollback)  # _Rollback undoes the unit quietly; the rest propagates
        unit.finish(True)
        await unit.committed
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

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        return False


class SqliteStore(SqlStore):
    engine = "sqlite"
    # BEGIN IMMEDIATE already holds the whole database; synchronous is per connection.
    dialect = {"lock": "", "relaxed_commit": ""}

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection,
                 metrics: StoreMetrics | None, *, timeout: float = 5.0) -> None:
        super().__init__(metrics)
        self.path = path
        self._writer = writer
        self._reader = reader
        self._timeout = timeout
        self._translated: dict[str, str] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self._queue: deque[_Unit] = deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._schema_lock: asyncio.Lock | None = None
        self._closed = False
        self.batches = 0
        """Batches committed (for tests and benchmarks: units / batches is the grouping)."""

    @classmethod
    async def open(cls, path: str | Path, *, timeout: float = 5.0, metrics: StoreMetrics | None = None) -> SqliteStore:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(None, cls._connect, path, timeout, int(timeout * 1000))
            reader = await loop.run_in_executor(None, cls._connect, path, timeout, READER_BUSY_MS)
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: cannot open {path}: {exc}") from exc
        return cls(path, writer, reader, metrics, timeout=timeout)

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
        path.chmod(0o600)
        return conn

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- writes: group commit -------------------------------------------------------------
    def transaction(self) -> _Transaction:
        """``async with store.transaction() as tx``: one unit of the next group commit."""
        return _Transaction(self)

    def _enqueue(self) -> _Unit:
        if self._closed:
            raise Unavailable("sqlite: the store is closed")
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        unit = _Unit(loop)
        self._queue.append(unit)
        assert self._wake is not None
        self._wake.set()
        return unit

    def _ensure_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        # First use, or a new event loop (tests): the writer lives in the caller's loop.
        self._loop = loop
        self._wake = asyncio.Event()
        self._schema_lock = asyncio.Lock()
        self._task = loop.create_task(self._write_batches(), name="sqlite-group-commit")

    async def _write_batches(self) -> None:
        assert self._wake is not None and self._schema_lock is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            async with self._schema_lock:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                batch = [unit for unit in batch if not unit.started.done()]  # cancelled while queued
                if batch:
                    await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Unit]) -> None:
        conn = self._writer
        try:
            await self._begin()
        except Unavailable as exc:
            for unit in batch:
                _settle(unit.started, exc)
            return
        kept: list[_Unit] = []
        try:
            for unit in batch:
                if await self._run_unit(unit):
                    kept.append(unit)
            await self._in_thread(conn.execute, "COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    await asyncio.shield(self._in_thread(conn.execute, "ROLLBACK"))
            error = exc if isinstance(exc, Unavailable) else Unavailable(f"sqlite: commit failed: {exc}")
            for unit in batch:
                _settle(unit.started, error)
                _settle(unit.committed, error)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        for unit in kept:
            _settle(unit.committed)

    async def _begin(self) -> None:
        conn = self._writer
        try:
            # Without another process on the file the lock is free: take it here, no hop.
            conn.execute("PRAGMA busy_timeout=0")
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError:
                pass
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            await self._in_thread(conn.execute, "BEGIN IMMEDIATE")  # waits up to busy_timeout
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: {exc}") from exc

    async def _run_unit(self, unit: _Unit) -> bool:
        """Run one unit in its savepoint; True when its changes are kept."""
        conn = self._writer
        if unit.started.done():
            return False
        try:
            conn.execute("SAVEPOINT unit")
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: {exc}") from exc
        tx = _SqliteTx(conn, self._translated)
        unit.started.set_result(tx)
        # A unit that does not finish in time must not hold the batch: it is rolled back.
        overdue = asyncio.get_running_loop().call_later(self._timeout, unit.overdue)
        try:
            keep = await asyncio.shield(unit.finished)
        finally:
            overdue.cancel()
        tx.live = False
        try:
            if not keep:
                conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: {exc}") from exc
        if not keep:
            _settle(unit.committed)
        return keep

    # --- reads ----------------------------------------------------------------------------
    def read(self) -> _Read:
        return _Read(self)

    # --- schema and life cycle -------------------------------------------------------------
    async def schema_version(self) -> int:
        async with self.read() as tx:
            rows = await tx.fetch("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'mfad_schema'")
            if not rows:
                return 0
            rows = await tx.fetch("SELECT max(version) FROM mfad_schema")
        return int(rows[0][0] or 0)

    async def migrate(self) -> list[int]:
        loop = asyncio.get_running_loop()
        self._ensure_writer(loop)
        assert self._schema_lock is not None
        async with self._schema_lock:  # no batch runs meanwhile
            return await self._in_thread(self._migrate_sync)

    def _migrate_sync(self) -> list[int]:
        conn = self._writer
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
                    while self._queue:
                        await asyncio.sleep(0.01)
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
        await loop.run_in_executor(self._thread, self._writer.close)
        await loop.run_in_executor(self._thread, self._reader.close)
        self._thread.shutdown(wait=False)
