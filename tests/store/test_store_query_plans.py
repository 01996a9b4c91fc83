"""The sign-in hot path reads and writes through indexes on both engines: no statement it
runs scans a table, so a verification costs the same at a million users as at ten
thousand.

The statements are not listed by hand: the test records what the store really sends while
codes are accepted, replayed and refused, a password sign-in opens a challenge and a code
completes it, and an unknown user is refused (SQLite's trace callback; asyncpg's query
logger) — then asks each engine for the plan of every one of them. SQLite: ``EXPLAIN QUERY
PLAN`` must show no ``SCAN`` of a table. PostgreSQL: with ``enable_seqscan = off`` (on
tables this small the planner would rightly scan), ``EXPLAIN`` must show no ``Seq Scan``:
a table without a usable index is scanned whatever it costs.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

import asyncpg

from mfad.core.model import Method
from mfad.core.signin import Attempt, Outcome, Reason
from mfad.core.verification import Password, SignInRequest
from signin_calls import verify_code

ATTEMPT = Attempt(protocol="radius", source="nas:vpn/192.0.2.7", client="vpn")
_DML = re.compile(r"^\s*(WITH|SELECT|UPDATE|DELETE|INSERT)\b", re.IGNORECASE)


async def hot_path(mfa: Any, alice: Any) -> None:
    """What the record covers: every outcome a sign-in with a code usually has."""
    signin = mfa.signin
    assert (await verify_code(signin, "alice", alice.code(1), ATTEMPT)).outcome is Outcome.ALLOWED
    assert (await verify_code(signin, "alice", alice.code(1), ATTEMPT)).reason is Reason.REPLAY
    wrong = next(alice.wrong_codes())
    assert (await verify_code(signin, "alice", wrong, ATTEMPT)).reason is Reason.WRONG_CODE
    assert (await verify_code(signin, "nobody", wrong, ATTEMPT)).reason is Reason.UNKNOWN_USER
    started = await signin.sign_in(SignInRequest(username="alice", first_factor=Password(alice.password),
                                                 attempt=ATTEMPT))
    assert started.outcome is Outcome.SECOND_FACTOR_REQUIRED and started.challenge_id
    done = await signin.complete(started.challenge_id, Method.TOTP, alice.code(2), ATTEMPT)
    assert done.accepted


async def recorded_statements(store: Any, mfa: Any, enrol: Any) -> list[tuple[str, tuple[Any, ...]]]:
    alice = await enrol("alice")
    await verify_code(mfa.signin, "alice", alice.code(0), ATTEMPT)  # the policy is cached from here on
    seen: list[tuple[str, tuple[Any, ...]]] = []
    if store.engine == "sqlite":
        connections = [store._writer, store._reader]
        for conn in connections:
            conn.set_trace_callback(lambda sql: seen.append((sql, ())))
        try:
            await hot_path(mfa, alice)
        finally:
            for conn in connections:
                conn.set_trace_callback(None)
    else:
        def logged(query: Any) -> None:
            seen.append((query.query, tuple(query.args)))

        async with store._acquire() as conn:  # pool_size=1: the connection every statement uses
            conn.add_query_logger(logged)
        await hot_path(mfa, alice)
        await asyncio.sleep(0.1)  # the logger is called soon after each query
        async with store._acquire() as conn:
            conn.remove_query_logger(logged)
    unique = {sql: args for sql, args in seen if _DML.match(sql)}
    assert len(unique) >= 6, unique  # the read, the guard, the failure, the challenge …
    return list(unique.items())


async def test_the_hot_path_uses_indexes_on_sqlite(tmp_path: Any, mfa_factory: Any, enrol: Any) -> None:
    from mfad.store.sqlite import SqliteStore

    store = await SqliteStore.open(tmp_path / "mfad.db")
    try:
        await store.migrate()
        mfa = await mfa_factory(store=store)
        statements = await recorded_statements(store, mfa, lambda name: enrol(name, on=mfa))
        assert sqlite_scans(store, "SELECT id FROM audit WHERE reason = 'x'")  # the check sees a scan
        scans = {sql: sqlite_scans(store, sql) for sql, _ in statements}
        assert not any(scans.values()), scans
    finally:
        await store.aclose()


async def test_the_hot_path_uses_indexes_on_postgres(pg_database: str, mfa_factory: Any, enrol: Any) -> None:
    from mfad.store.postgres import PostgresStore

    schema = f"t_{secrets.token_hex(8)}"
    admin = await asyncpg.connect(pg_database, timeout=10)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store = await PostgresStore.open(pg_database, schema=schema, pool_size=1)
    try:
        await store.migrate()
        mfa = await mfa_factory(store=store)
        statements = await recorded_statements(store, mfa, lambda name: enrol(name, on=mfa))
        await admin.execute(f'SET search_path TO "{schema}"')
        await admin.execute("SET enable_seqscan = off")
        assert await postgres_scans(admin, "SELECT id FROM audit WHERE reason = $1", ("x",))  # a scan is seen
        scans = {sql: await postgres_scans(admin, sql, args) for sql, args in statements}
        assert not any(scans.values()), scans
    finally:
        await store.aclose()
        await admin.execute("RESET search_path")
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


def sqlite_scans(store: Any, sql: str) -> list[str]:
    """The steps of ``sql``'s plan that scan a table (the constant row load_subject starts from is none)."""
    plan = [row[3] for row in store._reader.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
    return [step for step in plan if re.match(r"SCAN (?!CONSTANT ROW|one\b)", step)]


async def postgres_scans(conn: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> list[str]:
    plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    return [f"Seq Scan on {node['Relation Name']}" for node in _nodes(plan[0]["Plan"])
            if node["Node Type"] == "Seq Scan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out
