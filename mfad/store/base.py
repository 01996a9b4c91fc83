"""The store: one implementation of the core's ``Store`` interface over two SQL engines.

Each engine (``sqlite``, ``postgres``) supplies connections, transactions and
its migrations; the statements below are written in the SQL both dialects share
(``$n`` parameters are rewritten to ``?n`` for SQLite) and each engine may
override a statement by name where the dialects differ.

Guarantees:
- every change that guards security state is one atomic statement or runs in a
  transaction that holds the row (``FOR UPDATE`` on PostgreSQL, the database
  write lock on SQLite) — never read-then-write from outside a transaction;
- every audit row is written in the same transaction as the change it records;
- times are stored as UNIX epoch seconds (UTC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from mfad.core.errors import AlreadyExists, NotFound, PreconditionFailed
from mfad.core.model import (
    AuditEvent,
    AuditRecord,
    CallerToken,
    EnrolmentProof,
    Challenge,
    Device,
    DeviceId,
    DeviceState,
    LimitState,
    Method,
    MfaRequired,
    Policy,
    RememberedDevice,
    Role,
    StaffRole,
    TotpParams,
    User,
    UserId,
)
from mfad.core.keyring import KeySample
from mfad.core.ports import AuditFilter, LimitChange, RotateResult, Subject, UserCounts
from mfad.store.approval import ApprovalSql
from mfad.store.bulk import BulkImportSql
from mfad.store.directory import DirectorySql
from mfad.store.email import EmailSql
from mfad.store.radius import RadiusSql
from mfad.store.recovery import RecoverySql
from mfad.store.sessions import SessionSql
from mfad.store.sql import (
    CHALLENGE_COLUMNS,
    DEVICE_COLUMNS,
    LIMIT_COLUMNS,
    PREFIXED_DEVICE_COLUMNS,
    Prefixed,
    USER_COLUMNS,
    Rollback,
    Row,
    challenge_from,
    device_from,
    device_from_values,
    dt,
    dt_req,
    limits_from,
    limits_from_values,
    reply_to_text,
    ts,
    user_from,
    user_from_values,
)
from mfad.store.enrolment import EnrolmentSql
from mfad.store.webauthn import WebauthnSql
from mfad.store.approval_notice import ApprovalNoticeSql


#: load_subject's columns, in this order: the user's (USER_COLUMNS), the user's limits
#: (LIMIT_COLUMNS) and the source's failures, the source's bucket, a device's (DEVICE_COLUMNS).
_SUBJECT_USER = ", ".join(f"u.{c}" for c in USER_COLUMNS.split(", "))
_SUBJECT_LIMITS = ", ".join(f"l.{c}" for c in LIMIT_COLUMNS.split(", ")) + ", s.failures, s.blocked_until"
_SUBJECT_DEVICE = ", ".join(f"d.{c}" for c in DEVICE_COLUMNS.split(", "))
_LIMITS_AT = len(USER_COLUMNS.split(", "))
_BUCKET_AT = _LIMITS_AT + len(LIMIT_COLUMNS.split(", ")) + 2
_DEVICE_AT = _BUCKET_AT + 2


class SqlStore(SessionSql, RadiusSql, WebauthnSql, EmailSql, RecoverySql, DirectorySql, ApprovalSql, EnrolmentSql,
               ApprovalNoticeSql, BulkImportSql):
    """The core's Store over an engine's ``transaction()`` and ``read()`` primitives."""

    async def append_audit(self, now: datetime, events: Sequence[AuditEvent]) -> None:
        async with self._timed("append_audit", write=True) as tx:
            await self._audit(tx, now, events)

    # --- users ---------------------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str | None, now: datetime,
                          audit: Callable[[UserId], Sequence[AuditEvent]]) -> User:
        async with self._timed("create_user", write=True) as tx:
            # ON CONFLICT, not a look first: two instances creating one name at once must
            # both get an answer (one user, one AlreadyExists), never a driver error.
            row = await tx.fetchrow(
                "INSERT INTO users (username, password_hash, disabled, created_at, updated_at) "
                "VALUES ($1, $2, 0, $3, $3) ON CONFLICT (username) DO NOTHING "
                f"RETURNING {USER_COLUMNS}", username, password_hash, now.timestamp())
            if row is None:
                raise AlreadyExists(f"username: {username!r} is taken")
            user = user_from(row)
            await self._audit(tx, now, audit(user.id))
        return user

    async def load_user(self, user_id: UserId) -> User | None:
        async with self._timed("load_user", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE id = $1", user_id)
        return None if row is None else user_from(row)

    async def load_user_by_name(self, username: str) -> User | None:
        async with self._timed("load_user", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE username = $1", username)
        return None if row is None else user_from(row)

    async def list_users(self, after: str | None, limit: int, prefix: str | None = None) -> list[User]:
        # Ordered by the username's code points on both engines (SQLite's BINARY collation,
        # PostgreSQL's "C"), so a page token — the last username — pages alike everywhere and
        # whatever the database's locale.
        bytewise = self.sql("bytewise", ' COLLATE "C"')
        async with self._timed("list_users", write=False) as tx:
            rows = await tx.fetch(
                f"SELECT {USER_COLUMNS} FROM users WHERE ($1::text IS NULL OR username{bytewise} > $1::text) AND "
                "($2::text IS NULL OR substr(username, 1, length($2::text)) = $2::text) "
                f"ORDER BY username{bytewise} LIMIT $3",
                after, prefix, limit)
        return [user_from(r) for r in rows]

    async def count_users(self, now: datetime, failures_since: datetime) -> UserCounts:
        async with self._timed("count_users", write=False) as tx:
            row = await tx.fetchrow(
                "SELECT (SELECT count(*) FROM users) AS users, "
                "(SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM devices d "
                " WHERE d.user_id = u.id AND d.state = 'active')) AS without_mfa, "
                "(SELECT count(*) FROM (SELECT user_id FROM devices WHERE state = 'active' GROUP BY user_id "
                " HAVING count(DISTINCT method) = 1) AS one) AS one_method_type, "
                "(SELECT count(*) FROM user_limits WHERE hard_locked <> 0 OR locked_until > $1) AS locked, "
                "(SELECT count(*) FROM audit WHERE event IN ('signin', 'verify') AND outcome = 'refused' "
                " AND at > $2) AS failed_sign_ins",
                now.timestamp(), failures_since.timestamp())
        assert row is not None
        return UserCounts(users=int(row["users"]), without_mfa=int(row["without_mfa"]),
                          one_method_type=int(row["one_method_type"]), locked=int(row["locked"]),
                          failed_sign_ins=int(row["failed_sign_ins"]))

    async def update_password(self, user_id: UserId, password_hash: str | None, now: datetime,
                              audit: Sequence[AuditEvent]) -> None:
        """Set the password and revoke every remembered device of the user (same transaction)."""
        async with self._timed("update_password", write=True) as tx:
            row = await tx.fetchrow("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 "
                                    "RETURNING id", user_id, password_hash, now.timestamp())
            if row is None:
                raise NotFound("user")
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._delete_user_sessions(tx, user_id)
            await self._audit(tx, now, audit)

    async def update_user_disabled(self, user_id: UserId, disabled: bool, now: datetime,
                                   audit: Sequence[AuditEvent]) -> None:
        async with self._timed("update_user_disabled", write=True) as tx:
            row = await tx.fetchrow("UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1 RETURNING id",
                                    user_id, int(disabled), now.timestamp())
            if row is None:
                raise NotFound("user")
            if disabled:
                await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
                await tx.execute("DELETE FROM challenges WHERE user_id = $1", user_id)
                await self._delete_user_sessions(tx, user_id)
            await self._audit(tx, now, audit)

    async def update_user_role(self, user_id: UserId, role: StaffRole | None, now: datetime,
                               audit: Sequence[AuditEvent]) -> User:
        """Give (or, with None, take) a console role; the user's sessions keep working for
        self-service, and every Admin call checks the role anew."""
        async with self._timed("update_user_role", write=True) as tx:
            row = await tx.fetchrow(f"UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}",
                                    user_id, role.value if role else None, now.timestamp())
            if row is None:
                raise NotFound("user")
            await self._audit(tx, now, audit)
        return user_from(row)

    async def delete_user(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> None:
        """The user and everything that hangs off them (devices, codes, challenges, remembered
        devices, sessions, counters: ON DELETE CASCADE); the audit rows stay (no foreign key)."""
        async with self._timed("delete_user", write=True) as tx:
            await self._delete_user_sessions(tx, user_id)
            if await tx.fetchrow("DELETE FROM users WHERE id = $1 RETURNING id", user_id) is None:
                raise NotFound("user")
            await self._audit(tx, now, audit)

    # --- the hot path: everything a verification needs, in one statement -----------------
    async def load_subject(self, user: str | UserId, source: str | None) -> Subject:
        """The user (by name, or by id when an int), their devices, their limit counters for
        ``source`` and the source's failure bucket: one statement (one round trip on
        PostgreSQL), a row per device, the user's columns repeated on each."""
        by = "u.id = $1" if isinstance(user, int) else "u.username = $1"
        async with self._timed("load_subject", write=False) as tx:
            # Plain rows read by position (see _SUBJECT_* below): this runs for every verification.
            rows = await tx.fetch_values((
                f"SELECT {_SUBJECT_USER}, {_SUBJECT_LIMITS}, b.tokens, b.updated_at, {_SUBJECT_DEVICE} "
                "FROM (SELECT 1 AS one) AS one "
                f"LEFT JOIN users u ON {by} "
                "LEFT JOIN user_limits l ON l.user_id = u.id "
                "LEFT JOIN source_limits s ON s.user_id = u.id AND s.source = $2 "
                "LEFT JOIN source_buckets b ON b.source = $2 "
                "LEFT JOIN devices d ON d.user_id = u.id "
                "ORDER BY d.id"), user, source or "")
        row = rows[0]
        found = user_from_values(row) if row[0] is not None else None
        devices = [device_from_values(r, _DEVICE_AT) for r in rows if r[_DEVICE_AT] is not None]
        tokens = row[_BUCKET_AT]
        bucket = None if tokens is None else (tokens, dt_req(row[_BUCKET_AT + 1]))
        return Subject(user=found, devices=devices, limits=limits_from_values(row, _LIMITS_AT), bucket=bucket)

    # --- devices -------------------------------------------------------------------------
    async def load_devices(self, user_id: UserId) -> list[Device]:
        async with self._timed("load_devices", write=False) as tx:
            rows = await tx.fetch(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY id", user_id)
        return [device_from(r) for r in rows]

    async def load_device(self, device_id: DeviceId) -> Device | None:
        async with self._timed("load_device", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1", device_id)
        return None if row is None else device_from(row)

    async def insert_pending_totp(self, user_id: UserId, name: str, params: TotpParams, now: datetime,
                                  expires_at: datetime, seal: Callable[[DeviceId], str],
                                  audit: Callable[[DeviceId], Sequence[AuditEvent]]) -> Device:
        """A new pending TOTP device. A previous *pending* one is replaced (the user restarted
        the binding); an *active* one refuses with PreconditionFailed ("one of each")."""
        return await self._insert_totp("insert_pending_totp", user_id, name, params, now, expires_at, seal, audit)

    async def insert_active_totp(self, user_id: UserId, name: str, params: TotpParams, now: datetime,
                                 seal: Callable[[DeviceId], str],
                                 audit: Callable[[DeviceId], Sequence[AuditEvent]]) -> Device:
        """An imported TOTP device, active at once (no step accepted yet); as for a pending one,
        a pending binding is replaced and an active device refuses. Revokes remembered devices."""
        return await self._insert_totp("insert_active_totp", user_id, name, params, now, None, seal, audit)

    async def _insert_totp(self, op: str, user_id: UserId, name: str, params: TotpParams, now: datetime,
                           expires_at: datetime | None, seal: Callable[[DeviceId], str],
                           audit: Callable[[DeviceId], Sequence[AuditEvent]]) -> Device:
        async with self._timed(op, write=True) as tx:
            # One binding of a user at a time (PostgreSQL: the user's row lock; SQLite's
            # BEGIN IMMEDIATE holds the database already), so a concurrent binding is
            # seen and replaced below instead of breaking the one-TOTP-per-user index.
            await tx.execute(f"SELECT id FROM users WHERE id = $1{self.sql('lock', ' FOR UPDATE')}", user_id)
            existing = await tx.fetchrow(
                "SELECT id, state, expires_at FROM devices WHERE user_id = $1 AND method = 'totp'", user_id)
            if existing is not None:
                if existing["state"] == DeviceState.ACTIVE:
                    raise PreconditionFailed("the user already has a TOTP device: unbind it first")
                await tx.execute("DELETE FROM devices WHERE id = $1", existing["id"])
            active = expires_at is None  # imported: active at once, confirmed now
            row = await tx.fetchrow(
                "INSERT INTO devices (user_id, method, name, state, created_at, confirmed_at, expires_at, digits, "
                "period, algorithm) VALUES ($1, 'totp', $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                user_id, name, "active" if active else "pending", now.timestamp(), now.timestamp() if active else None,
                None if expires_at is None else expires_at.timestamp(), params.digits, params.period,
                params.algorithm.value)
            assert row is not None
            device_id = DeviceId(row["id"])
            # The AAD binds the ciphertext to this row id, known only after the insert.
            await tx.execute("UPDATE devices SET sealed_secret = $2 WHERE id = $1", device_id, seal(device_id))
            if active:
                await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit(device_id))
            out = await tx.fetchrow(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1", device_id)
        assert out is not None
        return device_from(out)

    async def activate_device(self, device_id: DeviceId, step: int, drift: int, now: datetime,
                              audit: Sequence[AuditEvent]) -> bool:
        """Pending and unexpired → active with its first accepted step; revokes remembered devices."""
        async with self._timed("activate_device", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE devices SET state = 'active', confirmed_at = $2, last_used_at = $2, expires_at = NULL, "
                "last_step = $3, drift = $4 WHERE id = $1 AND state = 'pending' AND expires_at > $2 "
                "AND last_step < $3 RETURNING user_id", device_id, now.timestamp(), step, drift)
            if row is None:
                return False
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", row["user_id"])
            await self._audit(tx, now, audit)
        return True

    async def delete_device(self, device_id: DeviceId, user_id: UserId, now: datetime,
                            audit: Sequence[AuditEvent]) -> Device | None:
        """Unbind; revokes the user's remembered devices. None when no such device of that user."""
        async with self._timed("delete_device", write=True) as tx:
            row = await tx.fetchrow(f"DELETE FROM devices WHERE id = $1 AND user_id = $2 RETURNING {DEVICE_COLUMNS}",
                                    device_id, user_id)
            if row is None:
                return None
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit)
        return device_from(row)

    # --- pruning: bounded batches, off the hot path (mfad.core.retention) -----------------
    async def delete_full_buckets(self, untouched_since: datetime, limit: int) -> int:
        """Up to ``limit`` source failure buckets not drained since ``untouched_since``: full
        again by then, they are the same as no row at all."""
        async with self._timed("delete_full_buckets", write=True) as tx:
            rows = await tx.fetch("DELETE FROM source_buckets WHERE source IN (SELECT source FROM source_buckets "
                                  "WHERE updated_at <= $1 ORDER BY updated_at LIMIT $2) RETURNING source",
                                  untouched_since.timestamp(), limit)
        return len(rows)

    async def delete_expired_challenges(self, expired_before: datetime, limit: int) -> int:
        async with self._timed("delete_expired_challenges", write=True) as tx:
            rows = await tx.fetch("DELETE FROM challenges WHERE id_hash IN (SELECT id_hash FROM challenges "
                                  "WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) RETURNING id_hash",
                                  expired_before.timestamp(), limit)
        return len(rows)

    async def delete_audit_before(self, before: datetime, limit: int, event: str | None = None) -> int:
        """Up to ``limit`` of the oldest audit rows written before ``before`` (retention);
        with ``event``, only rows of that event (through the ``audit_event`` index)."""
        async with self._timed("delete_audit_before", write=True) as tx:
            if event is None:
                rows = await tx.fetch("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 "
                                      "ORDER BY at LIMIT $2) RETURNING id", before.timestamp(), limit)
            else:
                rows = await tx.fetch("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE event = $3 "
                                      "AND at < $1 ORDER BY id LIMIT $2) RETURNING id", before.timestamp(),
                                      limit, event)
        return len(rows)

    async def delete_expired_pending(self, now: datetime) -> int:
        async with self._timed("delete_expired_pending", write=True) as tx:
            rows = await tx.fetch("DELETE FROM devices WHERE state = 'pending' AND expires_at <= $1 RETURNING id",
                                  now.timestamp())
            await tx.execute("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1", now.timestamp())
        return len(rows)

    # --- verification outcomes -------------------------------------------------------------
    async def accept_totp(self, device_id: DeviceId, user_id: UserId, step: int, drift: int, now: datetime,
                          challenge_hash: str | None, audit: Sequence[AuditEvent],
                          remember: RememberedDevice | None = None, remember_hash: str | None = None) -> bool:
        """The replay guard: only a step greater than the last accepted one wins, atomically.

        In the same transaction: the challenge (if any) is consumed, the user's
        failure counters are reset, a remembered device may be created, and the
        audit row written. False (and nothing written) when the step or the
        challenge was already used — the caller lost a race or saw a replay.
        """
        committed = False
        async with self._timed("accept_totp", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE devices SET last_step = $2, drift = $3, last_used_at = $4 "
                "WHERE id = $1 AND state = 'active' AND last_step < $2 RETURNING id",
                device_id, step, drift, now.timestamp())
            if row is None:
                return False
            if challenge_hash is not None and not await self._consume_challenge(tx, challenge_hash, now):
                # The transaction swallows Rollback and the code after the block runs:
                # only reaching the end of the block may report an accept.
                raise Rollback()
            await self._after_success(tx, user_id, now, audit, remember, remember_hash)
            committed = True
        return committed

    async def record_failure(self, user_id: UserId | None, source: str | None, now: datetime,
                             change: Callable[[LimitState], LimitChange],
                             bucket: Callable[[float | None, datetime | None], float] | None,
                             challenge_hash: str | None, audit: Sequence[AuditEvent]) -> LimitChange | None:
        """Apply ``change`` to the user's counters under the row lock; write ``audit`` and the
        change's own audit rows (a lock-out) in the same transaction.

        Also drains one token from the source's failure bucket (``bucket`` maps the
        stored level and time to the new level) and spends one try of the challenge.
        Returns the applied change (None for an unknown user: no user counter touched).
        """
        async with self._timed("record_failure", write=True) as tx:
            if bucket is not None and source:
                b = await tx.fetchrow(f"SELECT tokens, updated_at FROM source_buckets WHERE source = $1"
                                      f"{self.sql('lock', ' FOR UPDATE')}", source)
                level = bucket(None if b is None else b["tokens"], None if b is None else dt(b["updated_at"]))
                await tx.execute("INSERT INTO source_buckets (source, tokens, updated_at) VALUES ($1, $2, $3) "
                                 "ON CONFLICT (source) DO UPDATE SET tokens = excluded.tokens, "
                                 "updated_at = excluded.updated_at", source, level, now.timestamp())
            if challenge_hash is not None:
                await tx.execute("UPDATE challenges SET tries_left = tries_left - 1, "
                                 "consumed = CASE WHEN tries_left <= 1 THEN 1 ELSE consumed END "
                                 "WHERE id_hash = $1 AND consumed = 0", challenge_hash)
            await self._audit(tx, now, audit)
            if user_id is None:
                return None
            await tx.execute("INSERT INTO user_limits (user_id, updated_at) VALUES ($1, $2) "
                             "ON CONFLICT (user_id) DO NOTHING", user_id, now.timestamp())
            row = await tx.fetchrow(f"SELECT {LIMIT_COLUMNS} FROM user_limits WHERE user_id = $1"
                                    f"{self.sql('lock', ' FOR UPDATE')}", user_id)
            srow = None
            if source:
                srow = await tx.fetchrow("SELECT failures AS s_failures, blocked_until AS s_blocked_until "
                                         "FROM source_limits WHERE user_id = $1 AND source = $2"
                                         f"{self.sql('lock', ' FOR UPDATE')}", user_id, source)
            applied = change(limits_from(row, srow))
            s = applied.state
            await tx.execute(
                "UPDATE user_limits SET failures = $2, total_failures = $3, lockouts = $4, locked_until = $5, "
                "hard_locked = $6, last_wrong_hash = $7, updated_at = $8 WHERE user_id = $1",
                user_id, s.failures, s.total_failures, s.lockouts, ts(s.locked_until), int(s.hard_locked),
                s.last_wrong_hash, now.timestamp())
            if source:
                await tx.execute(
                    "INSERT INTO source_limits (user_id, source, failures, blocked_until, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, source) DO UPDATE SET "
                    "failures = excluded.failures, blocked_until = excluded.blocked_until, "
                    "updated_at = excluded.updated_at",
                    user_id, source, s.source_failures, ts(s.source_blocked_until), now.timestamp())
            await self._audit(tx, now, applied.audit)
        return applied

    async def load_limits(self, user_id: UserId) -> LimitState:
        async with self._timed("load_limits", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {LIMIT_COLUMNS} FROM user_limits WHERE user_id = $1", user_id)
        return limits_from(row)

    async def reset_limits(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> bool:
        async with self._timed("reset_limits", write=True) as tx:
            row = await tx.fetchrow("DELETE FROM user_limits WHERE user_id = $1 RETURNING user_id", user_id)
            await tx.execute("DELETE FROM source_limits WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit)
        return row is not None

    # --- challenges ------------------------------------------------------------------------
    async def insert_challenge(self, challenge: Challenge, audit: Sequence[AuditEvent]) -> None:
        async with self._timed("insert_challenge", write=True) as tx:
            await tx.execute(
                f"INSERT INTO challenges ({CHALLENGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)",
                challenge.id_hash, challenge.user_id, challenge.purpose,
                ",".join(sorted(challenge.methods)), challenge.created_at.timestamp(),
                challenge.expires_at.timestamp(), challenge.tries_left, challenge.source, challenge.protocol,
                reply_to_text(challenge.first_factor_reply))
            await self._audit(tx, challenge.created_at, audit)

    async def load_challenge(self, id_hash: str) -> Challenge | None:
        async with self._timed("load_challenge", write=False) as tx:
            row = await tx.fetchrow(f"SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id_hash = $1", id_hash)
        return None if row is None else challenge_from(row)

    async def count_open_challenges(self, now: datetime) -> int:
        async with self._timed("count_open_challenges", write=False) as tx:
            row = await tx.fetchrow("SELECT count(*) AS n FROM challenges WHERE consumed = 0 AND expires_at > $1",
                                    now.timestamp())
        return int(row["n"]) if row else 0

    # --- remembered devices --------------------------------------------------------------
    async def update_remembered_station(self, user_id: UserId, series: str, now: datetime,
                                        audit: Sequence[AuditEvent]) -> bool:
        """Mark a remembered station as used, with ``audit``; False (nothing written) when
        the user has no such unexpired station."""
        async with self._timed("update_remembered_station", write=True) as tx:
            row = await tx.fetchrow("UPDATE remembered SET last_used_at = $3 WHERE series = $1 AND user_id = $2 "
                                    "AND expires_at > $3 RETURNING series", series, user_id, now.timestamp())
            if row is None:
                return False
            await self._audit(tx, now, audit)
        return True

    async def rotate_remembered(self, user_id: UserId, series: str, counter: int, token_hash: str,
                                new_hash: str, now: datetime, theft_audit: Callable[[UserId], Sequence[AuditEvent]]) -> RotateResult:
        """Swap the series' current token for the next one, atomically.

        A live series whose presented token is not the current one means the token
        was copied: the whole series is revoked (and audited) in the same transaction.
        """
        async with self._timed("rotate_remembered", write=True) as tx:
            row = await tx.fetchrow(
                "UPDATE remembered SET token_hash = $4, counter = counter + 1, last_used_at = $5 "
                "WHERE series = $1 AND counter = $2 AND token_hash = $3 AND expires_at > $5 AND user_id = $6 "
                "RETURNING user_id, counter", series, counter, token_hash, new_hash, now.timestamp(), user_id)
            if row is not None:
                return RotateResult(user_id=UserId(row["user_id"]), counter=row["counter"], stolen=False)
            live = await tx.fetchrow("DELETE FROM remembered WHERE series = $1 AND expires_at > $2 "
                                     "AND user_id = $3 RETURNING user_id", series, now.timestamp(), user_id)
            if live is None:
                return RotateResult(user_id=None, counter=0, stolen=False)
            await self._audit(tx, now, theft_audit(UserId(live["user_id"])))
            return RotateResult(user_id=UserId(live["user_id"]), counter=0, stolen=True)

    async def list_remembered(self, user_id: UserId, now: datetime) -> list[RememberedDevice]:
        async with self._timed("list_remembered", write=False) as tx:
            rows = await tx.fetch("SELECT series, user_id, label, created_at, expires_at, last_used_at FROM remembered "
                                  "WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at", user_id,
                                  now.timestamp())
        return [RememberedDevice(series=r["series"], user_id=UserId(r["user_id"]), label=r["label"],
                                 created_at=dt_req(r["created_at"]), expires_at=dt_req(r["expires_at"]),
                                 last_used_at=dt(r["last_used_at"])) for r in rows]

    async def delete_remembered(self, user_id: UserId | None, series: str | None, now: datetime,
                                audit: Callable[[int], Sequence[AuditEvent]]) -> int:
        """Revoke one series of a user, all of a user's, or (both None) everybody's."""
        async with self._timed("delete_remembered", write=True) as tx:
            rows = await tx.fetch(
                "DELETE FROM remembered WHERE ($1::bigint IS NULL OR user_id = $1::bigint) "
                "AND ($2::text IS NULL OR series = $2::text) RETURNING series", user_id, series)
            await self._audit(tx, now, audit(len(rows)))
        return len(rows)

    # --- policy ------------------------------------------------------------------------------
    async def load_policy(self) -> Policy | None:
        async with self._timed("load_policy", write=False) as tx:
            row = await tx.fetchrow("SELECT * FROM policy WHERE id = 1")
        if row is None:
            return None
        return Policy(mfa_required=MfaRequired(row["mfa_required"]),
                      allowed_methods=frozenset(Method(m) for m in row["allowed_methods"].split(",") if m),
                      self_service=bool(row["self_service"]), remember_device=bool(row["remember_device"]),
                      remember_days=row["remember_days"], sensitive_reauth_seconds=row["sensitive_reauth_seconds"],
                      require_backup_method=bool(row["require_backup_method"]),
                      enrolment_proof=EnrolmentProof(row["enrolment_proof"]),
                      email_recovery=bool(row["email_recovery"]),
                      roles_need_passkey=bool(row["roles_need_passkey"]),
                      approval_hold=bool(row["approval_hold"]),
                      approval_with_totp=bool(row["approval_with_totp"]),
                      approval_email_notice=bool(row["approval_email_notice"]))

    async def save_policy(self, policy: Policy, now: datetime, audit: Sequence[AuditEvent], *,
                          only_if_absent: bool = False, revoke_remembered: bool = False) -> bool:
        values = {"mfa_required": policy.mfa_required.value,
                  "allowed_methods": ",".join(sorted(policy.allowed_methods)),
                  "self_service": int(policy.self_service), "remember_device": int(policy.remember_device),
                  "remember_days": policy.remember_days, "sensitive_reauth_seconds": policy.sensitive_reauth_seconds,
                  "require_backup_method": int(policy.require_backup_method),
                  "enrolment_proof": policy.enrolment_proof.value, "email_recovery": int(policy.email_recovery),
                  "roles_need_passkey": int(policy.roles_need_passkey), "approval_hold": int(policy.approval_hold),
                  "approval_with_totp": int(policy.approval_with_totp),
                  "approval_email_notice": int(policy.approval_email_notice), "updated_at": now.timestamp()}
        conflict = "DO NOTHING" if only_if_absent else (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in values))
        placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
        async with self._timed("save_policy", write=True) as tx:
            row = await tx.fetchrow(
                f"INSERT INTO policy (id, {', '.join(values)}) VALUES (1, {placeholders}) "
                f"ON CONFLICT (id) {conflict} RETURNING id", *values.values())
            if row is None:
                return False
            if revoke_remembered:
                await tx.execute("DELETE FROM remembered")
            await self._audit(tx, now, audit)
        return True

    # --- caller tokens -----------------------------------------------------------------------
    async def insert_caller_token(self, name: str, role: Role, token_hash: str, now: datetime,
                                  audit: Sequence[AuditEvent], expires_at: datetime | None = None) -> CallerToken:
        async with self._timed("insert_caller_token", write=True) as tx:
            if await tx.fetchrow("SELECT id FROM caller_tokens WHERE name = $1 AND revoked = 0", name):
                raise AlreadyExists(f"name: a token named {name!r} exists; revoke it first")
            await tx.execute("DELETE FROM caller_tokens WHERE name = $1 AND revoked = 1", name)
            row = await tx.fetchrow("INSERT INTO caller_tokens (name, role, token_hash, created_at, expires_at) "
                                    "VALUES ($1, $2, $3, $4, $5) RETURNING id, name, role, created_at, revoked, "
                                    "expires_at", name, role.value, token_hash, now.timestamp(),
                                    None if expires_at is None else expires_at.timestamp())
            assert row is not None
            await self._audit(tx, now, audit)
        return _caller_from(row)

    async def load_caller_by_hash(self, token_hash: str) -> CallerToken | None:
        async with self._timed("load_caller", write=False) as tx:
            row = await tx.fetchrow("SELECT id, name, role, created_at, revoked, expires_at FROM caller_tokens "
                                    "WHERE token_hash = $1", token_hash)
        return None if row is None else _caller_from(row)

    async def list_caller_tokens(self) -> list[CallerToken]:
        async with self._timed("list_caller_tokens", write=False) as tx:
            rows = await tx.fetch("SELECT id, name, role, created_at, revoked, expires_at FROM caller_tokens "
                                  "ORDER BY id")
        return [_caller_from(r) for r in rows]

    async def revoke_caller_token(self, name: str, now: datetime, audit: Sequence[AuditEvent]) -> bool:
        async with self._timed("revoke_caller_token", write=True) as tx:
            row = await tx.fetchrow("UPDATE caller_tokens SET revoked = 1 WHERE name = $1 AND revoked = 0 "
                                    "RETURNING id", name)
            if row is None:
                return False
            await self._audit(tx, now, audit)
        return True

    # --- audit -------------------------------------------------------------------------------
    async def query_audit(self, f: AuditFilter) -> list[AuditRecord]:
        async with self._timed("query_audit", write=False) as tx:
            rows = await tx.fetch(
                "SELECT * FROM audit WHERE ($1::bigint IS NULL OR id < $1::bigint) "
                "AND ($2::bigint IS NULL OR user_id = $2::bigint) AND ($3::text IS NULL OR event = $3::text) "
                "AND ($4::text IS NULL OR outcome = $4::text) AND ($5::float8 IS NULL OR at >= $5::float8) "
                "AND ($6::float8 IS NULL OR at < $6::float8) ORDER BY id DESC LIMIT $7",
                f.before_id, f.user_id, f.event, f.outcome, ts(f.since), ts(f.until), f.limit)
        return [AuditRecord(id=r["id"], at=dt_req(r["at"]), event=AuditEvent(
            event=r["event"], outcome=r["outcome"], user_id=r["user_id"], username=r["username"],
            method=r["method"], protocol=r["protocol"], source=r["source"], reason=r["reason"],
            actor=r["actor"], detail=r["detail"])) for r in rows]

    # --- secrets rotation ----------------------------------------------------------------
    async def load_sealed_secrets(self, not_kid: str, limit: int) -> list[tuple[DeviceId, str]]:
        async with self._timed("load_sealed_secrets", write=False) as tx:
            rows = await tx.fetch("SELECT id, sealed_secret FROM devices WHERE sealed_secret IS NOT NULL "
                                  "AND substr(sealed_secret, 1, length($1::text) + 1) <> $1::text || ':' "
                                  "ORDER BY id LIMIT $2", not_kid, limit)
        return [(DeviceId(r["id"]), r["sealed_secret"]) for r in rows]

    async def update_sealed_secret(self, device_id: DeviceId, old: str, new: str) -> bool:
        async with self._timed("update_sealed_secret", write=True) as tx:
            row = await tx.fetchrow("UPDATE devices SET sealed_secret = $3 WHERE id = $1 AND sealed_secret = $2 "
                                    "RETURNING id", device_id, old, new)
        return row is not None

    async def count_sealed_by_kid(self) -> dict[str, int]:
        """Every key id still needed: sealed device secrets, sealed outbox bodies and the
        keyed hashes of live email codes (a key retired under them would orphan them)."""
        async with self._timed("count_sealed_by_kid", write=False) as tx:
            rows = await tx.fetch(
                "SELECT sealed_secret AS v FROM devices WHERE sealed_secret IS NOT NULL "
                "UNION ALL SELECT sealed_body FROM email_outbox WHERE sealed_body IS NOT NULL "
                "UNION ALL SELECT code_mac FROM email_codes WHERE state = 'live' AND code_mac <> ''")
        counts: dict[str, int] = {}
        for r in rows:
            kid = r["v"].partition(":")[0]
            counts[kid] = counts.get(kid, 0) + 1
        return counts

    async def load_key_samples(self) -> list[KeySample]:
        # Sealed values first, so that a key id is proven by opening something when it can be.
        queries = (("devices", "sealed_secret", True, ""), ("email_outbox", "sealed_body", True, ""),
                   ("email_codes", "code_mac", False, "AND state = 'live'"),
                   ("recovery_codes", "code_mac", False, "AND used_at IS NULL"))
        samples: dict[tuple[str, str, str], KeySample] = {}
        async with self._timed("load_key_samples", write=False) as tx:
            for table, column, sealed, live in queries:
                rows = await tx.fetch(f"SELECT id, {column} AS v FROM {table} "  # noqa: S608 (names from above)
                                      f"WHERE {column} IS NOT NULL AND {column} <> '' {live} ORDER BY id")
                for r in rows:
                    kid = r["v"].partition(":")[0]
                    samples.setdefault((kid, table, column), KeySample(
                        kid=kid, table=table, column=column, row_id=int(r["id"]), sealed=r["v"] if sealed else None))
        return list(samples.values())


def _caller_from(row: Row) -> CallerToken:
    return CallerToken(id=row["id"], name=row["name"], role=Role(row["role"]), created_at=dt_req(row["created_at"]),
                       revoked=bool(row["revoked"]), expires_at=dt(row["expires_at"]))
