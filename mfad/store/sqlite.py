"""SQLite engine: the embedded default.

WAL with ``synchronous=FULL`` (a committed verification survives power loss);
one writer connection (more only add lock contention) whose transactions run
``BEGIN IMMEDIATE`` so they hold the database write lock from the first
statement — other processes on the same file wait up to ``busy_timeout`` —
and one reader connection. Every statement is one ``execute_fetchall`` (one
thread hop; cursors measured 2× slower).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from mfad.core.errors import SchemaError, Unavailable
from mfad.core.ports import StoreMetrics
from mfad.store.base import Row, SqlStore, _Rollback
from mfad.store.migrations import migrations

_PARAM = re.compile(r"\$(\d+)(?:::[a-z0-9]+)?")


class _SqliteTx:
    def __init__(self, conn: aiosqlite.Connection, translate: dict[str, str]) -> None:
        self._conn = conn
        self._cache = translate

    def _sql(self, sql: str) -> str:
        out = self._cache.get(sql)
        if out is None:
            out = self._cache[sql] = _PARAM.sub(r"?\1", sql)
        return out

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        try:
            return list(await self._conn.execute_fetchall(self._sql(sql), args))
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"sqlite: {exc}") from exc

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)


class SqliteStore(SqlStore):
    engine = "sqlite"
    # BEGIN IMMEDIATE already holds the whole database; synchronous is per connection.
    dialect = {"lock": "", "relaxed_commit": ""}

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 metrics: StoreMetrics | None) -> None:
        super().__init__(metrics)
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._translated: dict[str, str] = {}

    @classmethod
    async def open(cls, path: str | Path, *, timeout: float = 5.0, metrics: StoreMetrics | None = None) -> SqliteStore:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            writer = await cls._connect(path, timeout)
            reader = await cls._connect(path, timeout)
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite: cannot open {path}: {exc}") from exc
        return cls(path, writer, reader, metrics)

    @staticmethod
    async def _connect(path: Path, timeout: float) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(path, isolation_level=None, timeout=timeout)
        conn.row_factory = sqlite3.Row
        await conn.execute_fetchall("PRAGMA journal_mode=WAL")
        await conn.execute_fetchall("PRAGMA synchronous=FULL")
        await conn.execute_fetchall("PRAGMA foreign_keys=ON")
        await conn.execute_fetchall(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        path.chmod(0o600)
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        async with self._write_lock:
            tx = _SqliteTx(self._writer, self._translated)
            try:
                await self._writer.execute_fetchall("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"sqlite: {exc}") from exc
            try:
                yield tx
            except _Rollback:
                await self._writer.execute_fetchall("ROLLBACK")
                return
            except BaseException:
                if self._writer.in_transaction:
                    await asyncio.shield(self._writer.execute_fetchall("ROLLBACK"))
                raise
            try:
                await self._writer.execute_fetchall("COMMIT")
            except sqlite3.Error as exc:
                if self._writer.in_transaction:
                    await self._writer.execute_fetchall("ROLLBACK")
                raise Unavailable(f"sqlite: commit failed: {exc}") from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[_SqliteTx]:
        yield _SqliteTx(self._reader, self._translated)

    async def schema_version(self) -> int:
        rows = await self._reader.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'mfad_schema'")
        if not list(rows):
            return 0
        rows = await self._reader.execute_fetchall("SELECT max(version) FROM mfad_schema")
        return int(list(rows)[0][0] or 0)

    async def migrate(self) -> list[int]:
        applied = []
        async with self._write_lock:
            await self._writer.execute_fetchall(
                "CREATE TABLE IF NOT EXISTS mfad_schema (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
            rows = await self._writer.execute_fetchall("SELECT max(version) FROM mfad_schema")
            current = int(list(rows)[0][0] or 0)
            known = migrations(self.engine)
            if known and current > known[-1][0]:
                raise SchemaError(f"database schema v{current} is newer than this mfad knows (v{known[-1][0]})")
            for version, script in known:
                if version <= current:
                    continue
                try:
                    await self._writer.executescript(
                        f"BEGIN IMMEDIATE;\n{script}\n"
                        f"INSERT INTO mfad_schema (version, applied_at) VALUES ({version}, CAST(strftime('%s', 'now') AS REAL));\n"
                        "COMMIT;")
                except sqlite3.Error as exc:
                    if self._writer.in_transaction:
                        await self._writer.execute_fetchall("ROLLBACK")
                    raise SchemaError(f"migration {version} failed: {exc}") from exc
                applied.append(version)
        return applied

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self._reader.execute_fetchall("SELECT 1"), 2.0)
        except (sqlite3.Error, TimeoutError) as exc:
            raise Unavailable(f"sqlite: {exc}") from exc

    async def aclose(self) -> None:
        await self._writer.close()
        await self._reader.close()
