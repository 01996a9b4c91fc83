"""The store's part for the RADIUS front end: requests claimed and replies shared between
instances (``mfad.radius.cache.SharedReplyCache`` is built on it), mixed into SqlStore.

Guarantees: at most one instance holds an unexpired claim on a request key (one atomic
``INSERT … ON CONFLICT DO UPDATE … WHERE expired``), so a retransmission that reaches
another instance while the first is still deciding is not decided again; a saved reply
is returned byte for byte until it expires. These rows guard no security state (the
replay guard does): PostgreSQL commits them without waiting for the WAL flush, and a
crash that loses one only means a retransmission is decided afresh.

Claims and replies come in batches (the RADIUS front end gathers those of the requests in
flight, ``mfad.core.batches``): on PostgreSQL a batch is one statement, one round trip.

Keys are opaque bytes (a digest); times are UNIX seconds from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mfad.core.ports import RequestClaim
from mfad.store.sql import SqlParts


class RadiusSql(SqlParts):
    """Implements ``mfad.core.ports.ReplyStore`` on ``SqlParts``. An engine whose dialect
    table has a one-statement form of a call (``ONE_STATEMENT_REPLIES``) runs it as its own
    implicit transaction: one round trip, no BEGIN/COMMIT."""

    async def _relax_commit(self, tx: Any) -> None:
        statement = self.sql("relaxed_commit", "SET LOCAL synchronous_commit TO OFF")
        if statement:
            await tx.execute(statement)

    async def claim_radius_requests(self, claims: Sequence[tuple[bytes, float]], now: float) -> list[RequestClaim]:
        """For each (key, expires_at), in order: a claim on ``key`` until ``expires_at`` unless
        an unexpired claim or reply exists. A key repeated in ``claims`` is claimed by its
        first occurrence (the later ones find it being decided)."""
        first = _first_occurrences(key for key, _ in claims)
        unique = [claims[i] for i in first.values()]
        one = self.dialect.get("claim_radius_requests")
        if one is not None:
            async with self._timed("claim_radius_requests", write=False) as tx:
                rows = await tx.fetch(one, [k for k, _ in unique], [e for _, e in unique], now)
            found = {bytes(r["request_key"]): RequestClaim(owned=bool(r["owned"]),
                                                           reply=None if r["owned"] else _octets(r["reply"]))
                     for r in rows}
        else:
            found = {}
            async with self._timed("claim_radius_requests", write=True) as tx:
                await self._relax_commit(tx)
                for key, expires_at in unique:
                    found[key] = await self._claim_one(tx, key, expires_at, now)
        return [found[key] if first[key] == i else RequestClaim(owned=False) for i, (key, _) in enumerate(claims)]

    @staticmethod
    async def _claim_one(tx: Any, key: bytes, expires_at: float, now: float) -> RequestClaim:
        row = await tx.fetchrow(
            "INSERT INTO radius_requests (request_key, reply, expires_at) VALUES ($1, NULL, $2) "
            "ON CONFLICT (request_key) DO UPDATE SET reply = NULL, expires_at = excluded.expires_at "
            "WHERE radius_requests.expires_at <= $3 RETURNING request_key", key, expires_at, now)
        if row is not None:
            return RequestClaim(owned=True)
        found = await tx.fetchrow("SELECT reply FROM radius_requests WHERE request_key = $1", key)
        return RequestClaim(owned=False, reply=None if found is None else _octets(found["reply"]))

    async def load_radius_reply(self, key: bytes, now: float) -> bytes | None:
        async with self._timed("load_radius_reply", write=False) as tx:
            row = await tx.fetchrow("SELECT reply FROM radius_requests WHERE request_key = $1 AND expires_at > $2",
                                    key, now)
        return None if row is None else _octets(row["reply"])

    async def save_radius_replies(self, replies: Sequence[tuple[bytes, bytes, float]]) -> None:
        """Store each (key, reply, expires_at), over this instance's claim or afresh; of a
        key given twice, the last reply is kept."""
        last = {key: (reply, expires_at) for key, reply, expires_at in replies}
        one = self.dialect.get("save_radius_replies")
        if one is not None:
            async with self._timed("save_radius_replies", write=False) as tx:
                await tx.execute(one, list(last), [r for r, _ in last.values()], [e for _, e in last.values()])
            return
        async with self._timed("save_radius_replies", write=True) as tx:
            await self._relax_commit(tx)
            for key, (reply, expires_at) in last.items():
                await tx.execute(
                    "INSERT INTO radius_requests (request_key, reply, expires_at) VALUES ($1, $2, $3) "
                    "ON CONFLICT (request_key) DO UPDATE SET reply = excluded.reply, expires_at = excluded.expires_at",
                    key, reply, expires_at)

    async def load_radius_signed_clients(self) -> set[tuple[str, str]]:
        async with self._timed("load_radius_signed_clients", write=False) as tx:
            rows = await tx.fetch("SELECT client, address FROM radius_signed_clients")
        return {(str(r["client"]), str(r["address"])) for r in rows}

    async def save_radius_signed_client(self, client: str, address: str, now: float) -> None:
        async with self._timed("save_radius_signed_client", write=True) as tx:
            await tx.execute("INSERT INTO radius_signed_clients (client, address, first_seen) VALUES ($1, $2, $3) "
                             "ON CONFLICT (client, address) DO NOTHING", client, address, now)

    async def delete_radius_claim(self, key: bytes) -> None:
        """Give up a claim that got no reply, so a retransmission is decided afresh."""
        one = self.dialect.get("delete_radius_claim")
        if one is not None:
            async with self._timed("delete_radius_claim", write=False) as tx:
                await tx.execute(one, key)
            return
        async with self._timed("delete_radius_claim", write=True) as tx:
            await self._relax_commit(tx)
            await tx.execute("DELETE FROM radius_requests WHERE request_key = $1 AND reply IS NULL", key)

    async def update_radius_claim(self, key: bytes, expires_at: float) -> None:
        """Move the expiry of an unanswered claim (a request held for its approval)."""
        async with self._timed("update_radius_claim", write=True) as tx:
            await self._relax_commit(tx)
            await tx.execute("UPDATE radius_requests SET expires_at = $2 WHERE request_key = $1 AND reply IS NULL",
                             key, expires_at)

    async def delete_expired_radius_requests(self, now: float, limit: int) -> int:
        """Up to ``limit`` expired claims and replies (the janitor calls it until none is left)."""
        async with self._timed("delete_expired_radius_requests", write=True) as tx:
            await self._relax_commit(tx)
            rows = await tx.fetch("DELETE FROM radius_requests WHERE request_key IN (SELECT request_key "
                                  "FROM radius_requests WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) "
                                  "RETURNING request_key", now, limit)
        return len(rows)


# In a single-statement (implicit) transaction: commit without waiting for the WAL
# flush, as SET LOCAL would in an explicit one (see the module docstring).
_RELAXED = "relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting)"

#: PostgreSQL's forms, for its dialect table. The claim's SELECT sees the rows as they were
#: before the same statement's INSERT (a reply another instance saved, or NULL).
ONE_STATEMENT_REPLIES = {
    "claim_radius_requests": (
        f"WITH {_RELAXED}, wanted AS (SELECT * FROM unnest($1::bytea[], $2::float8[]) AS w(request_key, expires_at)), "
        "claimed AS (INSERT INTO radius_requests (request_key, reply, expires_at) "
        "SELECT w.request_key, NULL, w.expires_at FROM wanted w, relaxed ON CONFLICT (request_key) DO UPDATE "
        "SET reply = NULL, expires_at = excluded.expires_at WHERE radius_requests.expires_at <= $3 "
        "RETURNING request_key) "
        "SELECT w.request_key, c.request_key IS NOT NULL AS owned, r.reply FROM wanted w "
        "LEFT JOIN claimed c ON c.request_key = w.request_key "
        "LEFT JOIN radius_requests r ON r.request_key = w.request_key"),
    "save_radius_replies": (
        f"WITH {_RELAXED} INSERT INTO radius_requests (request_key, reply, expires_at) "
        "SELECT s.request_key, s.reply, s.expires_at FROM unnest($1::bytea[], $2::bytea[], $3::float8[]) "
        "AS s(request_key, reply, expires_at), relaxed ON CONFLICT (request_key) DO UPDATE "
        "SET reply = excluded.reply, expires_at = excluded.expires_at"),
    "delete_radius_claim": (
        f"WITH {_RELAXED} DELETE FROM radius_requests WHERE request_key = $1 "
        "AND reply IS NULL AND EXISTS (SELECT 1 FROM relaxed)"),
}


def _first_occurrences(keys: Iterable[bytes]) -> dict[bytes, int]:
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return first


def _octets(value: Any) -> bytes | None:
    return None if value is None else bytes(value)
