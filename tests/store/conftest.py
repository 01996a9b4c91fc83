"""A private PostgreSQL schema per test, for the tests that open their own store through a proxy."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_schema(pg_database: str) -> AsyncIterator[str]:
    """A fresh schema in the session's database, dropped with everything in it afterwards."""
    schema = f"t_{secrets.token_hex(8)}"
    await _execute(pg_database, f'CREATE SCHEMA "{schema}"')
    yield schema
    await _execute(pg_database, f'DROP SCHEMA "{schema}" CASCADE')
