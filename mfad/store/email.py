"""The store's part for security emails: codes, pending addresses and the outbox.

Mixed into ``SqlStore``; the SQL is shared by both engines (``$n`` parameters),
with PostgreSQL's row locks where SQLite's database write lock already serialises.

Guarantees:
- issuing a code (rate limits checked under the user's row lock, the previous
  code superseded and its unsent mail cancelled, the code, its sealed message
  and the audit rows inserted) is one transaction;
- a try on a code is spent by one conditional ``UPDATE … RETURNING`` before the
  code is compared, so N parallel guesses spend N tries; a match is committed
  in the same transaction as everything the success changes;
- outbox rows are claimed with a lease in one statement (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL): an instance only settles rows it still holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mfad.core.errors import PreconditionFailed
from mfad.core.model import AuditEvent, DeviceId, RememberedDevice, UserId
from mfad.core.outbox import (
    CodeCheck,
    CodePurpose,
    CodeRequest,
    Delivery,
    IssueOutcome,
    IssueResult,
    OutboxItem,
    PendingEmail,
)
from mfad.store.sql import Rollback, SqlParts, Tx, email_of

HOUR = 3600.0

_STATE_CHECK = {"used": CodeCheck.USED, "superseded": CodeCheck.SUPERSEDED, "spent": CodeCheck.SPENT}


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class EmailSql(SqlParts):
    """Implements ``mfad.core.outbox.EmailStore`` on ``SqlParts``."""

    def _lock(self) -> str:
        return self.sql("lock", " FOR UPDATE")

    # --- issuing ----------------------------------------------------------------------------
    async def issue_email_code(self, req: CodeRequest, *, mac: Callable[[int], str],
                               seal: Callable[[int, str], str], audit: Callable[[int], Sequence[AuditEvent]],
                               refusal_audit: Callable[[IssueOutcome], Sequence[AuditEvent]],
                               pending: PendingEmail | None = None) -> IssueResult:
        now = req.created_at.timestamp()
        async with self._timed("issue_email_code", write=True) as tx:
            # Serialises code issuing per user across instances (PostgreSQL; SQLite holds the db lock).
            await tx.execute(f"SELECT id FROM users WHERE id = $1{self._lock()}", req.user_id)
            ref = req.ref
            device_id: DeviceId | None = None
            if pending is not None:
                device_id = await self._pending_device(tx, req.user_id, pending, now)
                ref = str(device_id)
            # The cool-down counts codes of the same purpose only: a binding code just mailed cannot
            # sign in, so it must not make a sign-in wait ("a code was sent a moment ago" would be
            # wrong). The hourly cap counts every code.
            row = await tx.fetchrow(
                "SELECT max(CASE WHEN purpose = $3 THEN created_at END) AS last, min(created_at) AS first, "
                "count(*) AS n FROM email_codes WHERE user_id = $1 AND created_at > $2",
                req.user_id, now - HOUR, req.purpose.value)
            assert row is not None
            refusal: IssueResult | None = None
            if row["last"] is not None and row["last"] > now - req.resend_seconds:
                refusal = IssueResult(outcome=IssueOutcome.COOLDOWN,
                                      retry_at=_dt(row["last"] + req.resend_seconds))
            elif row["n"] >= req.hourly_limit:
                refusal = IssueResult(outcome=IssueOutcome.HOURLY, retry_at=_dt(row["first"] + HOUR))
            if refusal is not None:
                await self._audit(tx, req.created_at, refusal_audit(refusal.outcome))
                return refusal
            superseded = await tx.fetch("UPDATE email_codes SET state = 'superseded' WHERE user_id = $1 "
                                        "AND state = 'live' RETURNING id", req.user_id)
            if superseded:
                await tx.execute(
                    "UPDATE email_outbox SET state = 'cancelled', sealed_body = NULL, finished_at = $2, "
                    "last_error = 'superseded by a newer code' WHERE user_id = $1 AND state = 'queued' AND kind = 'code' "
                    "AND (claimed_until IS NULL OR claimed_until < $2)", req.user_id, now)
            code = await tx.fetchrow(
                "INSERT INTO email_codes (user_id, purpose, ref, created_at, expires_at, tries_left) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id", req.user_id, req.purpose.value, ref, now,
                req.expires_at.timestamp(), req.tries)
            assert code is not None
            code_id = int(code["id"])
            # The MAC and the AAD bind to row ids, known only after the inserts.
            await tx.execute("UPDATE email_codes SET code_mac = $2 WHERE id = $1", code_id, mac(code_id))
            msg = await tx.fetchrow(
                "INSERT INTO email_outbox (code_id, user_id, created_at, expires_at, next_attempt_at) "
                "VALUES ($1, $2, $3, $4, $3) RETURNING id", code_id, req.user_id, now, req.expires_at.timestamp())
            assert msg is not None
            message_id = int(msg["id"])
            await tx.execute("UPDATE email_outbox SET sealed_body = $2 WHERE id = $1", message_id,
                             seal(message_id, ref))
            await self._audit(tx, req.created_at, audit(message_id))
        return IssueResult(outcome=IssueOutcome.QUEUED, code_id=code_id, message_id=message_id, device_id=device_id)

    async def _pending_device(self, tx: Tx, user_id: UserId, pending: PendingEmail, now: float) -> DeviceId:
        existing = await tx.fetchrow("SELECT id, method, state, data FROM devices WHERE user_id = $1 "
                                     f"AND method = 'email'{self._lock()}", user_id)
        if existing is not None:
            if existing["state"] == "active":
                raise PreconditionFailed("the user already has a security email: unbind it first")
            if email_of(existing) == pending.address:
                await tx.execute("UPDATE devices SET expires_at = $2, name = $3 WHERE id = $1", existing["id"],
                                 pending.expires_at.timestamp(), pending.name)
                return DeviceId(existing["id"])
            await tx.execute("DELETE FROM devices WHERE id = $1", existing["id"])
        row = await tx.fetchrow(
            "INSERT INTO devices (user_id, method, name, state, created_at, expires_at, data) "
            "VALUES ($1, 'email', $2, 'pending', $3, $4, $5) RETURNING id", user_id, pending.name, now,
            pending.expires_at.timestamp(), json.dumps({"address": pending.address}))
        assert row is not None
        return DeviceId(row["id"])

    # --- checking -----------------------------------------------------------------------------
    async def _spend_try(self, tx: Tx, user_id: UserId, purpose: CodePurpose, ref: str, now: datetime,
                         matches: Callable[[int, str], bool],
                         refusal_audit: Callable[[CodeCheck, int], Sequence[AuditEvent]]) -> CodeCheck:
        row = await tx.fetchrow(
            "UPDATE email_codes SET tries_left = tries_left - 1 WHERE user_id = $1 AND purpose = $2 AND ref = $3 "
            "AND state = 'live' AND expires_at > $4 AND tries_left > 0 RETURNING id, code_mac, tries_left",
            user_id, purpose.value, ref, now.timestamp())
        if row is None:
            last = await tx.fetchrow("SELECT state, expires_at, tries_left FROM email_codes WHERE user_id = $1 "
                                     "AND purpose = $2 AND ref = $3 ORDER BY id DESC LIMIT 1",
                                     user_id, purpose.value, ref)
            if last is None:
                check = CodeCheck.NO_CODE
            else:
                check = _STATE_CHECK.get(last["state"]) or (
                    CodeCheck.EXPIRED if last["expires_at"] <= now.timestamp() else CodeCheck.SPENT)
            await self._audit(tx, now, refusal_audit(check, 0))
            return check
        if matches(int(row["id"]), row["code_mac"]):
            await tx.execute("UPDATE email_codes SET state = 'used', used_at = $2 WHERE id = $1", row["id"],
                             now.timestamp())
            return CodeCheck.ACCEPTED
        if row["tries_left"] <= 0:
            await tx.execute("UPDATE email_codes SET state = 'spent' WHERE id = $1", row["id"])
        await self._audit(tx, now, refusal_audit(CodeCheck.WRONG, int(row["tries_left"])))
        return CodeCheck.WRONG

    async def accept_email_code(self, user_id: UserId, purpose: CodePurpose, ref: str, now: datetime,
                                matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                refusal_audit: Callable[[CodeCheck, int], Sequence[AuditEvent]],
                                remember: RememberedDevice | None = None,
                                remember_hash: str | None = None) -> CodeCheck:

        check = CodeCheck.CHALLENGE_GONE
        async with self._timed("accept_email_code", write=True) as tx:
            found = await self._spend_try(tx, user_id, purpose, ref, now, matches, refusal_audit)
            if found is not CodeCheck.ACCEPTED:
                return found
            if purpose is CodePurpose.ENROLMENT:
                proved = await tx.fetchrow("UPDATE user_sessions SET proof_owed = NULL WHERE id_hash = $1 "
                                           "AND user_id = $2 AND expires_at > $3 RETURNING id_hash",
                                           ref, user_id, now.timestamp())
                if proved is None:
                    raise Rollback()  # the enrolment session ended meanwhile: nothing happened
                await self._audit(tx, now, audit)
                return CodeCheck.ACCEPTED
            if purpose is CodePurpose.SIGNIN and not await self._consume_challenge(tx, ref, now):
                raise Rollback()  # another method completed the challenge first: nothing happened
            await tx.execute("UPDATE devices SET last_used_at = $2 WHERE user_id = $1 AND method = 'email' "
                             "AND state = 'active'", user_id, now.timestamp())
            await self._after_success(tx, user_id, now, audit, remember, remember_hash)
            check = CodeCheck.ACCEPTED
        return check

    async def confirm_email_binding(self, user_id: UserId, device_id: DeviceId, now: datetime,
                                    matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                    refusal_audit: Callable[[CodeCheck, int], Sequence[AuditEvent]]) -> CodeCheck:

        check = CodeCheck.NO_CODE
        async with self._timed("confirm_email_binding", write=True) as tx:
            found = await self._spend_try(tx, user_id, CodePurpose.BINDING, str(device_id), now, matches,
                                          refusal_audit)
            if found is not CodeCheck.ACCEPTED:
                return found
            row = await tx.fetchrow(
                "UPDATE devices SET state = 'active', confirmed_at = $3, last_used_at = $3, expires_at = NULL "
                "WHERE id = $1 AND user_id = $2 AND method = 'email' AND state = 'pending' RETURNING id",
                device_id, user_id, now.timestamp())
            if row is None:
                raise Rollback()  # unbound or replaced meanwhile
            await tx.execute("DELETE FROM remembered WHERE user_id = $1", user_id)
            await self._audit(tx, now, audit)
            check = CodeCheck.ACCEPTED
        return check

    # --- the outbox ---------------------------------------------------------------------------
    async def claim_outbox(self, now: datetime, lease_until: datetime, owner: str, limit: int) -> list[OutboxItem]:
        skip_locked = self.sql("skip_locked", " FOR UPDATE SKIP LOCKED")
        async with self._timed("claim_outbox", write=True) as tx:
            rows = await tx.fetch(
                "UPDATE email_outbox SET claimed_until = $2, claimed_by = $3, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM email_outbox WHERE state = 'queued' AND next_attempt_at <= $1 "
                "AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY next_attempt_at, id LIMIT $4"
                f"{skip_locked}) RETURNING id, code_id, user_id, sealed_body, attempts, created_at, expires_at, kind",
                now.timestamp(), lease_until.timestamp(), owner, limit)
            items = []
            for r in sorted(rows, key=lambda r: int(r["id"])):
                # A notice carries no code: it is deliverable until it expires.
                live = r["kind"] == "notice" or r["code_id"] is not None and await tx.fetchrow(
                    "SELECT id FROM email_codes WHERE id = $1 AND state = 'live'", r["code_id"]) is not None
                items.append(OutboxItem(id=int(r["id"]), user_id=None if r["user_id"] is None else UserId(r["user_id"]),
                                        sealed_body=r["sealed_body"], attempts=int(r["attempts"]),
                                        created_at=_dt(r["created_at"]), expires_at=_dt(r["expires_at"]),
                                        code_live=live))
        return items

    async def finish_outbox(self, message_id: int, owner: str, now: datetime, delivery: Delivery, *,
                            next_attempt_at: datetime | None = None, error: str | None = None,
                            audit: Sequence[AuditEvent] = ()) -> bool:
        async with self._timed("finish_outbox", write=True) as tx:
            if delivery is Delivery.RETRY:
                row = await tx.fetchrow(
                    "UPDATE email_outbox SET next_attempt_at = $3, claimed_until = NULL, claimed_by = NULL, "
                    "last_error = $4 WHERE id = $1 AND claimed_by = $2 AND state = 'queued' RETURNING id",
                    message_id, owner, (next_attempt_at or now).timestamp(), error)
            else:
                row = await tx.fetchrow(
                    "UPDATE email_outbox SET state = $3, sealed_body = NULL, finished_at = $4, claimed_until = NULL, "
                    "claimed_by = NULL, last_error = $5 WHERE id = $1 AND claimed_by = $2 AND state = 'queued' "
                    "RETURNING id", message_id, owner, delivery.value, now.timestamp(), error)
            if row is None:
                return False
            await self._audit(tx, now, audit)
        return True

    async def outbox_message(self, message_id: int) -> tuple[str, bool] | None:
        async with self._timed("outbox_message", write=False) as tx:
            row = await tx.fetchrow("SELECT state, last_error FROM email_outbox WHERE id = $1", message_id)
        return None if row is None else (str(row["state"]), row["last_error"] is not None)

    async def outbox_depth(self) -> tuple[int, datetime | None]:
        async with self._timed("outbox_depth", write=False) as tx:
            row = await tx.fetchrow("SELECT count(*) AS n, min(created_at) AS oldest FROM email_outbox "
                                    "WHERE state = 'queued'")
        assert row is not None
        return int(row["n"]), None if row["oldest"] is None else _dt(row["oldest"])

    async def delete_old_email(self, codes_before: datetime, finished_before: datetime) -> int:
        async with self._timed("delete_old_email", write=True) as tx:
            messages = await tx.fetch("DELETE FROM email_outbox WHERE state <> 'queued' AND finished_at < $1 "
                                      "RETURNING id", finished_before.timestamp())
            codes = await tx.fetch("DELETE FROM email_codes WHERE created_at < $1 AND (state <> 'live' "
                                   "OR expires_at < $1) RETURNING id", codes_before.timestamp())
        return len(messages) + len(codes)

