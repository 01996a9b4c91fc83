"""Interfaces the core declares and the outside implements: the store and metrics.

The store is one interface with two engines (``mfad.store.sqlite`` and
``mfad.store.postgres``). Its verbs are consistent: ``load_`` reads,
``insert_``/``update_``/``delete_`` change, ``accept_``/``record_`` apply a
verification outcome atomically together with its audit rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mfad.core.model import (
    AuditEvent,
    AuditRecord,
    CallerToken,
    Challenge,
    Device,
    DeviceId,
    LimitState,
    Policy,
    PolicyRule,
    RememberedDevice,
    Role,
    StaffRole,
    TotpParams,
    User,
    UserId,
)
from mfad.core.approval_records import ApprovalStore
from mfad.core.credentials import WebauthnStore
from mfad.core.keyring import KeySample
from mfad.core.directory import DirectoryEntry
from mfad.core.outbox import EmailStore
from mfad.core.sessions import SessionStore


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """What one verification needs, read in one round trip. ``user`` is None when unknown."""

    user: User | None
    devices: list[Device] = field(default_factory=list)
    limits: LimitState = field(default_factory=LimitState)
    #: The source's failure bucket: (tokens, updated_at), None when it has no row yet.
    bucket: tuple[float, datetime] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitChange:
    state: LimitState
    audit: Sequence[AuditEvent] = ()
    became_locked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateResult:
    user_id: UserId | None
    counter: int
    stolen: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    user_id: UserId | None = None
    event: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


class StoreMetrics(Protocol):
    def store_operation(self, op: str, seconds: float, ok: bool) -> None: ...


class AuditStore(Protocol):
    async def append_audit(self, now: datetime, events: Sequence[AuditEvent]) -> None: ...
    async def query_audit(self, f: AuditFilter) -> list[AuditRecord]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCounts:
    """The console's overview, answered by counting in the store (nobody is listed)."""

    users: int
    #: No active device at all.
    without_mfa: int
    #: Active devices of exactly one method type: losing that device locks them out.
    one_method_type: int
    #: Locked now (a timed lock-out not over yet, or a hard lock).
    locked: int
    #: Refused sign-ins and verifications since the given time.
    failed_sign_ins: int


class UserStore(Protocol):
    async def create_user(self, username: str, password_hash: str | None, now: datetime,
                          audit: Callable[[UserId], Sequence[AuditEvent]]) -> User: ...
    async def load_user(self, user_id: UserId) -> User | None: ...
    async def load_user_by_name(self, username: str) -> User | None: ...
    async def list_users(self, after: str | None, limit: int, prefix: str | None = None) -> list[User]: ...
    async def count_users(self, now: datetime, failures_since: datetime) -> UserCounts: ...
    async def update_password(self, user_id: UserId, password_hash: str | None, now: datetime,
                              audit: Sequence[AuditEvent]) -> None: ...
    async def update_user_disabled(self, user_id: UserId, disabled: bool, now: datetime,
                                   audit: Sequence[AuditEvent]) -> None: ...
    async def update_user_role(self, user_id: UserId, role: StaffRole | None, now: datetime,
                               audit: Sequence[AuditEvent]) -> User: ...
    async def delete_user(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> None: ...


class DeviceStore(Protocol):
    async def load_devices(self, user_id: UserId) -> list[Device]: ...
    async def load_device(self, device_id: DeviceId) -> Device | None: ...
    async def insert_pending_totp(self, user_id: UserId, name: str, params: TotpParams, now: datetime,
                                  expires_at: datetime, seal: Callable[[DeviceId], str],
                                  audit: Callable[[DeviceId], Sequence[AuditEvent]]) -> Device: ...
    async def insert_active_totp(self, user_id: UserId, name: str, params: TotpParams, now: datetime,
                                 seal: Callable[[DeviceId], str],
                                 audit: Callable[[DeviceId], Sequence[AuditEvent]]) -> Device: ...
    async def activate_device(self, device_id: DeviceId, step: int, drift: int, now: datetime,
                              audit: Sequence[AuditEvent]) -> bool: ...
    async def delete_device(self, device_id: DeviceId, user_id: UserId, now: datetime,
                            audit: Sequence[AuditEvent]) -> Device | None: ...
    async def delete_expired_pending(self, now: datetime) -> int: ...


class RetentionStore(Protocol):
    """Pruning in bounded batches: each call deletes at most ``limit`` rows."""

    async def delete_full_buckets(self, untouched_since: datetime, limit: int) -> int: ...
    async def delete_expired_challenges(self, expired_before: datetime, limit: int) -> int: ...
    async def delete_audit_before(self, before: datetime, limit: int, event: str | None = None) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportTotp:
    """An imported TOTP device's secret (sealed by the store's caller) and settings."""

    secret: bytes = field(repr=False)
    params: TotpParams
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRow:
    """One record of a bulk import: the user (normalised name), created when missing if
    ``create``, and the TOTP device to give them (already checked by the core)."""

    username: str
    create: bool
    password_hash: str | None = field(default=None, repr=False)
    disabled: bool = False
    totp: ImportTotp | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOutcome:
    created: bool = False
    existed: bool = False
    device: bool = False
    #: The user does not exist and the record may not create them.
    missing: bool = False
    #: Why the record (or its device) did not go in.
    refused: str | None = None


class BulkImportStore(Protocol):
    async def import_rows(self, rows: Sequence[ImportRow], now: datetime,
                          seal: Callable[[DeviceId, bytes], str],
                          audit: Callable[[ImportRow, UserId, DeviceId | None, bool], Sequence[AuditEvent]],
                          ) -> list[ImportOutcome]:
        """The records in one transaction, decided in order (a later record of the same user
        sees the earlier one's user and device); ``audit(row, user, device, created)`` gives
        each record's audit rows."""
        ...


class SealedSecretStore(Protocol):
    async def load_sealed_secrets(self, not_kid: str, limit: int) -> list[tuple[DeviceId, str]]: ...
    async def update_sealed_secret(self, device_id: DeviceId, old: str, new: str) -> bool: ...
    async def count_sealed_by_kid(self) -> dict[str, int]: ...
    async def load_key_samples(self) -> list[KeySample]:
        """One stored value per (key id, table, column) in use: a sealed one when there is,
        else a keyed hash (whose key can only be checked for presence)."""
        ...


class SignInStore(Protocol):
    """What a verification reads and writes: the subject, the replay guard, the counters,
    challenges and remembered devices."""

    async def load_subject(self, user: str | UserId, source: str | None) -> Subject: ...
    async def accept_totp(self, device_id: DeviceId, user_id: UserId, step: int, drift: int, now: datetime,
                          challenge_hash: str | None, audit: Sequence[AuditEvent],
                          remember: RememberedDevice | None = None, remember_hash: str | None = None) -> bool: ...
    async def record_failure(self, user_id: UserId | None, source: str | None, now: datetime,
                             change: Callable[[LimitState], LimitChange],
                             bucket: Callable[[float | None, datetime | None], float] | None,
                             challenge_hash: str | None, audit: Sequence[AuditEvent]) -> LimitChange | None: ...
    async def load_limits(self, user_id: UserId) -> LimitState: ...
    async def reset_limits(self, user_id: UserId, now: datetime, audit: Sequence[AuditEvent]) -> bool: ...

    async def insert_challenge(self, challenge: Challenge, audit: Sequence[AuditEvent]) -> None: ...
    async def load_challenge(self, id_hash: str) -> Challenge | None: ...
    async def count_open_challenges(self, now: datetime) -> int: ...

    async def rotate_remembered(self, user_id: UserId, series: str, counter: int, token_hash: str,
                                new_hash: str, now: datetime, theft_audit: Callable[[UserId], Sequence[AuditEvent]]) -> RotateResult: ...
    async def update_remembered_station(self, user_id: UserId, series: str, now: datetime,
                                        audit: Sequence[AuditEvent]) -> bool: ...
    async def list_remembered(self, user_id: UserId, now: datetime) -> list[RememberedDevice]: ...
    async def delete_remembered(self, user_id: UserId | None, series: str | None, now: datetime,
                                audit: Callable[[int], Sequence[AuditEvent]]) -> int: ...


class PolicyStore(Protocol):
    async def load_policy(self) -> Policy | None: ...
    async def save_policy(self, policy: Policy, now: datetime, audit: Sequence[AuditEvent], *,
                          only_if_absent: bool = False, revoke_remembered: bool = False) -> bool: ...


class CallerStore(Protocol):
    async def insert_caller_token(self, name: str, role: Role, token_hash: str, now: datetime,
                                  audit: Sequence[AuditEvent], expires_at: datetime | None = None) -> CallerToken: ...
    async def load_caller_by_hash(self, token_hash: str) -> CallerToken | None: ...
    async def list_caller_tokens(self) -> list[CallerToken]: ...
    async def revoke_caller_token(self, name: str, now: datetime, audit: Sequence[AuditEvent]) -> bool: ...


@dataclass(frozen=True, slots=True)
class RequestClaim:
    """The answer to a claim: ``owned`` (decide it, then save or release), else the
    ``reply`` another instance saved, or neither (another instance is deciding)."""

    owned: bool
    reply: bytes | None = None


class ReplyStore(Protocol):
    """Requests claimed and replies shared between instances, for a transport whose
    clients retransmit (RADIUS): keys are opaque digests, times UNIX seconds."""

    async def claim_radius_requests(self, claims: Sequence[tuple[bytes, float]], now: float) -> list[RequestClaim]:
        """(key, expires_at) each: one claim each, in order (batched: one round trip)."""
    async def load_radius_reply(self, key: bytes, now: float) -> bytes | None: ...
    async def save_radius_replies(self, replies: Sequence[tuple[bytes, bytes, float]]) -> None:
        """(key, reply, expires_at) each (batched: one round trip)."""
    async def delete_radius_claim(self, key: bytes) -> None: ...
    async def update_radius_claim(self, key: bytes, expires_at: float) -> None: ...
    async def delete_expired_radius_requests(self, now: float, limit: int) -> int: ...


class SignedClientStore(Protocol):
    """NASes (client name, source address) that have sent a Message-Authenticator, for
    ``require_message_authenticator = "auto"``: once in, never out (an operator deletes a row
    to forget one)."""

    async def load_radius_signed_clients(self) -> set[tuple[str, str]]: ...
    async def save_radius_signed_client(self, client: str, address: str, now: float) -> None: ...


class RecoveryCheck(StrEnum):
    """What the store found for a typed recovery code."""

    ACCEPTED = "accepted"
    #: No unused code of the user matches.
    WRONG = "wrong"
    #: It matched, but a parallel request used that code first.
    USED = "used"
    #: It matched, but the challenge was completed (or expired) meanwhile: nothing changed.
    CHALLENGE_GONE = "challenge_gone"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryNotice:
    """The mail that tells a user one of their recovery codes was used."""

    #: ``seal(message_id, codes_left)`` → the sealed body (its AAD names the message row).
    seal: Callable[[int, int], str]
    expires_at: datetime
    #: ``audit(message_id)`` → the rows recording the queued notice.
    audit: Callable[[int], Sequence[AuditEvent]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoverySet:
    """A user's recovery codes as they stand: how many are left, since when."""

    codes_left: int
    created_at: datetime
    last_used_at: datetime | None


class RecoveryStore(Protocol):
    """The store's part for recovery codes (``mfad.store.recovery``). A user's set is a
    ``devices`` row of method ``recovery`` (so it counts as a method type) holding its codes;
    the row goes when its last code is used."""

    async def replace_recovery_codes(self, user_id: UserId, count: int, now: datetime,
                                     mac: Callable[[int], str], audit: Sequence[AuditEvent]) -> Device:
        """In one transaction: delete the user's set (every code of it), insert a new set of
        ``count`` codes (``mac(code_id)`` each), revoke the remembered devices, write ``audit``."""
        ...

    async def load_recovery_set(self, user_id: UserId) -> RecoverySet | None: ...

    async def accept_recovery_code(self, user_id: UserId, now: datetime, matches: Callable[[int, str], bool],
                                   challenge_hash: str | None, audit: Sequence[AuditEvent],
                                   remember: RememberedDevice | None, remember_hash: str | None,
                                   notice: RecoveryNotice | None) -> RecoveryCheck:
        """Compare with every unused code (``matches(code_id, mac)``); a match is marked used by
        one conditional update and committed, in one transaction, with the challenge consumed,
        the counters reset, the remembered device, the device row's last use (or its deletion
        with the last code), ``audit`` and the queued ``notice``."""
        ...


class EnrolmentCheck(StrEnum):
    """What the store found for a typed enrolment code."""

    ACCEPTED = "accepted"
    #: A live code exists and this is not it (a try was spent).
    WRONG = "wrong"
    #: No live code: none issued, expired, used, or its tries spent.
    NO_CODE = "no_code"
    #: It matched, but the enrolment session ended meanwhile: nothing changed.
    SESSION_GONE = "session_gone"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentCode:
    """A user's enrolment code as stored (never the code itself)."""

    id: int
    created_at: datetime
    expires_at: datetime
    tries_left: int
    issued_by: str | None
    used_at: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.used_at is None and self.tries_left > 0 and self.expires_at > now


class EnrolmentCodeStore(Protocol):
    """The store's part for one-time enrolment codes (``mfad.store.enrolment``): at most one
    per user, kept as a keyed hash bound to its row."""

    async def replace_enrolment_code(self, user_id: UserId, now: datetime, expires_at: datetime, tries: int,
                                     issued_by: str | None, mac: Callable[[int], str],
                                     audit: Callable[[EnrolmentCode | None], Sequence[AuditEvent]]) -> EnrolmentCode:
        """In one transaction: delete the user's code (``audit`` is given it, or None), insert a
        new one whose MAC is ``mac(row_id)``, write the audit rows."""
        ...

    async def load_enrolment_code(self, user_id: UserId) -> EnrolmentCode | None: ...

    async def accept_enrolment_code(self, user_id: UserId, session_hash: str, now: datetime,
                                    matches: Callable[[int, str], bool], audit: Sequence[AuditEvent],
                                    refusal_audit: Callable[[EnrolmentCheck], Sequence[AuditEvent]]) -> EnrolmentCheck:
        """Spend a try of the user's live code (a conditional update, before comparing); on a
        match mark it used and clear the session's owed proof, with ``audit``, in one
        transaction; a refusal commits the spent try with ``refusal_audit``."""
@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalNotice:
    """The mail telling a user a sign-in waits for approval (``mfad.core.approval_notice``):
    ``seal(message_id)`` → the sealed body (its AAD names the outbox row),
    ``audit(message_id)`` → the rows recording it."""

    seal: Callable[[int], str]
    expires_at: datetime
    audit: Callable[[int], Sequence[AuditEvent]]


class ApprovalNoticeStore(Protocol):
    """The store's part for that mail (``mfad.store.approval_notice``)."""

    async def queue_approval_notice(self, user_id: UserId, now: datetime, last_before: datetime,
                                    notice: ApprovalNotice) -> int | None:
        """Queue ``notice`` in the outbox with its audit rows — if the user's last approval
        notice was queued before ``last_before`` (or never): that time moves to ``now`` by one
        conditional upsert in the same transaction. The message id, or None (nothing written)."""
        ...

    async def queue_notice(self, user_id: UserId, now: datetime, notice: ApprovalNotice) -> int:
        """Queue ``notice`` (about ``user_id``) in the outbox with its audit rows; the message id."""
        ...


class DirectoryUserStore(Protocol):
    """Users provisioned from a directory (``mfad.store.directory``)."""

    async def provision_user(self, username: str, directory: str, entry: DirectoryEntry, now: datetime,
                             audit: Callable[[UserId], Sequence[AuditEvent]]) -> tuple[User, bool]:
        """The user named ``username``, created from ``entry`` (with ``audit``) when absent;
        the flag says whether this call created it."""
        ...

    async def update_directory_profile(self, user_id: UserId, entry: DirectoryEntry, now: datetime) -> None: ...
    async def list_directory_users(self, directory: str, after_id: int, limit: int) -> list[User]: ...


class PolicyRuleStore(Protocol):
    async def load_policy_rules(self) -> list[PolicyRule]: ...
    async def save_policy_rules(self, rules: Sequence[PolicyRule], now: datetime,
                                audit: Sequence[AuditEvent]) -> None: ...


class Store(AuditStore, UserStore, DeviceStore, BulkImportStore, RetentionStore, SealedSecretStore, SignInStore, PolicyStore,
            CallerStore, SessionStore, WebauthnStore, EmailStore, ReplyStore, RecoveryStore, DirectoryUserStore,
            PolicyRuleStore, ApprovalStore, SignedClientStore, EnrolmentCodeStore, ApprovalNoticeStore, Protocol):
    """The whole store, as the engines implement it; each service is typed to its slices."""

    engine: str

    async def migrate(self) -> list[int]: ...
    async def schema_version(self) -> int: ...
    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...


class CoreMetrics(Protocol):
    """What the core reports; the observability package implements it with Prometheus."""

    def verification(self, protocol: str, method: str, result: str, seconds: float) -> None: ...
    def lockout(self) -> None: ...
    def rate_limited(self, scope: str) -> None: ...


class NullMetrics:
    def verification(self, protocol: str, method: str, result: str, seconds: float) -> None:
        pass

    def lockout(self) -> None:
        pass

    def rate_limited(self, scope: str) -> None:
        pass
