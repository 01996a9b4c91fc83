"""The leaf of the store package: what every part of the SQL store shares.

The row and transaction shapes, the conversions between rows and the core's types,
and ``SqlParts`` — the engine primitives (``transaction``, ``read``, the dialect
table) and the few statements the parts run inside each other's transactions. The
area modules (``email``, ``webauthn``, ``sessions``, ``radius``) and ``base`` build on
it; it imports none of them.
"""

from __future__ import annotations

import abc
import base64
import json
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from mfad.core.model import (
    AuditEvent,
    Challenge,
    Device,
    DeviceId,
    DeviceState,
    HashAlgorithm,
    LimitState,
    Method,
    RememberedDevice,
    StaffRole,
    TotpParams,
    User,
    UserId,
    WebauthnInfo,
)
from mfad.core.ports import StoreMetrics


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


class Tx(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...
    async def fetch_values(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """Rows as plain sequences, read by position: the hot path's rows, without a name lookup per column."""
        ...
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...
    async def execute(self, sql: str, *args: Any) -> None: ...


def ts(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dt_req(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


USER_COLUMNS = ("id, username, password_hash, disabled, created_at, role, directory, display_name, profile_email, "
                "groups")
DEVICE_COLUMNS = ("id, user_id, method, name, state, created_at, confirmed_at, last_used_at, expires_at, "
                  "sealed_secret, digits, period, algorithm, last_step, drift, data")
#: The device columns of ``devices d`` named ``d_<column>``, for a join with the user's row.
PREFIXED_DEVICE_COLUMNS = ", ".join(f"d.{c} AS d_{c}" for c in DEVICE_COLUMNS.split(", "))
CHALLENGE_COLUMNS = ("id_hash, user_id, purpose, methods, created_at, expires_at, tries_left, source, protocol, "
                     "consumed, first_factor_reply")
LIMIT_COLUMNS = "failures, total_failures, lockouts, locked_until, hard_locked, last_wrong_hash"

INSERT_AUDIT = ("INSERT INTO audit (at, event, outcome, user_id, username, method, protocol, source, reason, "
                "actor, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")


class Prefixed:
    """The columns of ``row`` whose names start with ``prefix``, by their names without it."""

    __slots__ = ("_row", "_prefix")

    def __init__(self, row: Row, prefix: str) -> None:
        self._row = row
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self._row[self._prefix + key]


def user_from(row: Row) -> User:
    return User(id=UserId(row["id"]), username=row["username"], disabled=bool(row["disabled"]),
                created_at=dt_req(row["created_at"]), password_hash=row["password_hash"],
                role=StaffRole(row["role"]) if row["role"] else None,
                directory=row["directory"], display_name=row["display_name"], profile_email=row["profile_email"],
                groups=tuple(json.loads(row["groups"] or "[]")))


def user_from_values(row: Sequence[Any], at: int = 0) -> User:
    """``user_from`` of the :data:`USER_COLUMNS` at position ``at`` of a plain row."""
    (user_id, username, password_hash, disabled, created_at, role, directory, display_name, profile_email,
     groups) = row[at:at + 10]
    return User(id=UserId(user_id), username=username, disabled=bool(disabled), created_at=dt_req(created_at),
                password_hash=password_hash, role=StaffRole(role) if role else None, directory=directory,
                display_name=display_name, profile_email=profile_email,
                groups=tuple(json.loads(groups)) if groups and groups != "[]" else ())


_METHODS = {m.value: m for m in Method}
_STATES = {s.value: s for s in DeviceState}
_ALGORITHMS = {a.value: a for a in HashAlgorithm}


def device_from_values(row: Sequence[Any], at: int = 0) -> Device:
    """``device_from`` of the :data:`DEVICE_COLUMNS` at position ``at`` of a plain row."""
    (device_id, user_id, method_text, name, state, created_at, confirmed_at, last_used_at, expires_at,
     sealed_secret, digits, period, algorithm, last_step, drift, data) = row[at:at + 16]
    method = _METHODS.get(method_text) or Method(method_text)
    totp = None
    if method is Method.TOTP:
        totp = TotpParams(digits=digits, period=period,
                          algorithm=_ALGORITHMS.get(algorithm) or HashAlgorithm(algorithm))
    email = None
    if method is Method.EMAIL and data:
        address = json.loads(data).get("address")
        email = address if isinstance(address, str) else None
    return Device(id=DeviceId(device_id), user_id=UserId(user_id), method=method, name=name,
                  state=_STATES.get(state) or DeviceState(state), created_at=dt_req(created_at),
                  confirmed_at=dt(confirmed_at), last_used_at=dt(last_used_at), expires_at=dt(expires_at),
                  sealed_secret=sealed_secret, totp=totp, last_step=last_step, drift=drift,
                  webauthn=WebauthnInfo.from_json(data) if method in (Method.PASSKEY, Method.U2F) and data else None,
                  email=email)


def limits_from_values(row: Sequence[Any], at: int) -> LimitState:
    """The user's :data:`LIMIT_COLUMNS` at ``at``, then the source's failures and blocked-until
    (None when the user, or the source, has no row)."""
    (failures, total_failures, lockouts, locked_until, hard_locked, last_wrong_hash, source_failures,
     source_blocked_until) = row[at:at + 8]
    if failures is None and source_failures is None:
        return LimitState()
    if failures is None:
        return LimitState(source_failures=source_failures, source_blocked_until=dt(source_blocked_until))
    if source_failures is None:
        return LimitState(failures=failures, total_failures=total_failures, lockouts=lockouts,
                          locked_until=dt(locked_until), hard_locked=bool(hard_locked),
                          last_wrong_hash=last_wrong_hash)
    return LimitState(failures=failures, total_failures=total_failures, lockouts=lockouts,
                      locked_until=dt(locked_until), hard_locked=bool(hard_locked), last_wrong_hash=last_wrong_hash,
                      source_failures=source_failures, source_blocked_until=dt(source_blocked_until))


def device_from(row: Row) -> Device:
    method = Method(row["method"])
    totp = None
    if method is Method.TOTP:
        totp = TotpParams(digits=row["digits"], period=row["period"], algorithm=HashAlgorithm(row["algorithm"]))
    return Device(id=DeviceId(row["id"]), user_id=UserId(row["user_id"]), method=method, name=row["name"],
                  state=DeviceState(row["state"]), created_at=dt_req(row["created_at"]),
                  confirmed_at=dt(row["confirmed_at"]), last_used_at=dt(row["last_used_at"]),
                  expires_at=dt(row["expires_at"]), sealed_secret=row["sealed_secret"], totp=totp,
                  last_step=row["last_step"], drift=row["drift"],
                  webauthn=WebauthnInfo.from_json(row["data"])
                  if method in (Method.PASSKEY, Method.U2F) and row["data"] else None,
                  email=email_of(row))


def limits_from(row: Row | None, source_row: Row | None = None) -> LimitState:
    state = LimitState()
    if row is not None and row["failures"] is not None:
        state = LimitState(failures=row["failures"], total_failures=row["total_failures"],
                           lockouts=row["lockouts"], locked_until=dt(row["locked_until"]),
                           hard_locked=bool(row["hard_locked"]), last_wrong_hash=row["last_wrong_hash"])
    if source_row is not None and source_row["s_failures"] is not None:
        state = LimitState(**{**_asdict(state), "source_failures": source_row["s_failures"],
                              "source_blocked_until": dt(source_row["s_blocked_until"])})
    return state


def _asdict(state: LimitState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__slots__}


def challenge_from(row: Row) -> Challenge:
    return Challenge(id_hash=row["id_hash"], user_id=UserId(row["user_id"]), purpose=row["purpose"],
                     methods=frozenset(Method(m) for m in row["methods"].split(",") if m),
                     created_at=dt_req(row["created_at"]), expires_at=dt_req(row["expires_at"]),
                     tries_left=row["tries_left"], source=row["source"], protocol=row["protocol"],
                     consumed=bool(row["consumed"]), first_factor_reply=reply_from_text(row["first_factor_reply"]))


def reply_to_text(reply: tuple[tuple[str, bytes], ...]) -> str | None:
    """A challenge's carried RADIUS attributes as stored: JSON [[name, base64]] (None: none)."""
    if not reply:
        return None
    return json.dumps([[name, base64.b64encode(value).decode("ascii")] for name, value in reply])


def reply_from_text(text: str | None) -> tuple[tuple[str, bytes], ...]:
    if not text:
        return ()
    return tuple((str(name), base64.b64decode(value)) for name, value in json.loads(text))


def email_of(row: Any) -> str | None:
    """The address of an email device row (kept in ``devices.data`` as JSON)."""
    if row["method"] != "email" or not row["data"]:
        return None
    address = json.loads(row["data"]).get("address")
    return address if isinstance(address, str) else None


class Rollback(Exception):
    """Raised inside a transaction to undo it; the engines' ``transaction()`` swallow it."""


class SqlParts(abc.ABC):
    """The engine primitives and shared statements every part of the store runs on."""

    engine: str
    #: Statements whose text differs per dialect, by name (see ``sql``).
    dialect: dict[str, str] = {}

    def __init__(self, metrics: StoreMetrics | None = None) -> None:
        self.metrics = metrics

    # --- engine primitives -------------------------------------------------------------
    @abc.abstractmethod
    def transaction(self) -> Any:
        """``async with store.transaction() as tx`` — one atomic unit with the write lock."""

    @abc.abstractmethod
    def read(self) -> Any:
        """``async with store.read() as tx`` — a consistent read-only view."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    def sql(self, name: str, default: str) -> str:
        return self.dialect.get(name, default)

    def _timed(self, op: str, *, write: bool) -> _Timed:
        """``async with self._timed(op, write=…) as tx``: a transaction or a read, timed for metrics."""
        return _Timed(self, op, write)

    @staticmethod
    async def _audit(tx: Tx, now: datetime, events: Iterable[AuditEvent]) -> None:
        for e in events:
            await tx.execute(INSERT_AUDIT, now.timestamp(), e.event, e.outcome, e.user_id, e.username,
                             e.method, e.protocol, e.source, e.reason, e.actor, e.detail)

    async def _queue_notice_mail(self, tx: Tx, user_id: UserId, now: datetime, expires_at: datetime,
                                 seal: Callable[[int], str], audit: Callable[[int], Iterable[AuditEvent]]) -> int:
        """Queue a notice mail (no code) in the outbox in ``tx``: its body is ``seal(id)`` (the
        AAD names the row, so the row is written first), its audit rows ``audit(id)``."""
        row = await tx.fetchrow(
            "INSERT INTO email_outbox (code_id, user_id, created_at, expires_at, next_attempt_at, kind) "
            "VALUES (NULL, $1, $2, $3, $2, 'notice') RETURNING id", user_id, now.timestamp(), expires_at.timestamp())
        assert row is not None
        message_id = int(row["id"])
        await tx.execute("UPDATE email_outbox SET sealed_body = $2 WHERE id = $1", message_id, seal(message_id))
        await self._audit(tx, now, audit(message_id))
        return message_id

    async def _after_success(self, tx: Tx, user_id: UserId, now: datetime, audit: Sequence[AuditEvent],
                             remember: RememberedDevice | None, remember_hash: str | None) -> None:
        await tx.execute("DELETE FROM user_limits WHERE user_id = $1 AND failures + total_failures > 0 "
                         "AND hard_locked = 0", user_id)
        await tx.execute("DELETE FROM source_limits WHERE user_id = $1", user_id)
        if remember is not None and remember_hash is not None:
            await self._insert_remembered(tx, remember, remember_hash)
        await self._audit(tx, now, audit)

    @staticmethod
    async def _consume_challenge(tx: Tx, challenge_hash: str, now: datetime) -> bool:
        row = await tx.fetchrow("UPDATE challenges SET consumed = 1 WHERE id_hash = $1 AND consumed = 0 "
                                "AND expires_at > $2 RETURNING id_hash", challenge_hash, now.timestamp())
        return row is not None

    @staticmethod
    async def _insert_remembered(tx: Tx, r: RememberedDevice, token_hash: str) -> None:
        await tx.execute(
            "INSERT INTO remembered (series, user_id, token_hash, counter, label, created_at, expires_at, "
            "last_used_at) VALUES ($1, $2, $3, 1, $4, $5, $6, NULL) "
            # A station's series is derived (remembered.station_series): remembering it
            # again after it expired renews the row. Random token series never collide.
            "ON CONFLICT (series) DO UPDATE SET token_hash = excluded.token_hash, counter = 1, "
            "label = excluded.label, created_at = excluded.created_at, expires_at = excluded.expires_at, "
            "last_used_at = NULL WHERE remembered.user_id = excluded.user_id",
            r.series, r.user_id, token_hash, r.label, r.created_at.timestamp(), r.expires_at.timestamp())


class _Timed(AbstractAsyncContextManager[Tx]):
    """A transaction (``write``) or a read, reported to the store metrics when it ends: ``ok``
    when the block completed (a swallowed ``Rollback`` included). A class rather than an
    ``asynccontextmanager``: it runs for every store call, and an async generator costs a
    finalizer registration and several frames each time."""

    __slots__ = ("_store", "_op", "_write", "_inner", "_start")

    def __init__(self, store: SqlParts, op: str, write: bool) -> None:
        self._store = store
        self._op = op
        self._write = write

    async def __aenter__(self) -> Tx:
        self._start = time.perf_counter()
        self._inner = self._store.transaction() if self._write else self._store.read()
        try:
            tx: Tx = await self._inner.__aenter__()
        except BaseException:
            self._report(False)
            raise
        return tx

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        ok = False
        try:
            suppressed = bool(await self._inner.__aexit__(kind, exc, tb))
            ok = kind is None or suppressed
            return suppressed
        finally:
            self._report(ok)

    def _report(self, ok: bool) -> None:
        metrics = self._store.metrics
        if metrics is not None:
            metrics.store_operation(self._op, time.perf_counter() - self._start, ok)
