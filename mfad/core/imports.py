"""Bulk imports of users and TOTP devices from other systems (``mfad import``).

Guarantees: the same checks and audit rows as creating each user
(:meth:`UserService.create`) and importing each device (:meth:`DeviceService.import_totp`)
one by one — usernames normalised, passwords checked by the password policy and hashed
with argon2id, secrets checked and sealed with the keyring under their row's AAD, the MFA
policy asked whether TOTP is allowed — but a batch of records is one transaction of a few
statements (:meth:`BulkImportStore.import_rows`) instead of several transactions per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from dataclasses import dataclass, field, replace

from mfad.core.clock import Clock
from mfad.core.devices import check_imported_totp
from mfad.core.errors import InvalidInput, PermissionDenied
from mfad.core.keyring import Keyring, aad_for
from mfad.core.model import AuditEvent, DeviceId, Method, UserId
from mfad.core.policy import PolicyService
from mfad.core.ports import BulkImportStore, ImportOutcome, ImportRow, ImportTotp, UserStore
from mfad.core.users import UserService


class ImportStore(BulkImportStore, UserStore, Protocol):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRequest:
    """One record as the file gave it."""

    username: str
    #: Create the user when missing.
    create: bool
    password: str | None = field(default=None, repr=False)
    disabled: bool = False
    totp: ImportTotp | None = None


class ImportService:
    def __init__(self, *, store: ImportStore, keyring: Keyring, clock: Clock, users: UserService,
                 policy: PolicyService) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._users = users
        self._policy = policy

    async def import_batch(self, requests: Sequence[ImportRequest], *, origin: str,
                           actor: str | None = None) -> list[ImportOutcome]:
        """An outcome per request, in order. A refused device still lets its user be created
        (as one by one); a refused user (name, password) refuses the record."""
        totp_allowed = (await self._policy.current()).allows(Method.TOTP)
        rows: list[ImportRow] = []
        at: list[int] = []
        outcomes: list[ImportOutcome] = [ImportOutcome()] * len(requests)
        device_refusals: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                name = self._users.normalize(request.username)
                password_hash = None
                if request.password is not None and request.create \
                        and await self._store.load_user_by_name(name) is None:
                    password_hash = await self._users.new_password_hash(name, request.password)
            except InvalidInput as exc:
                outcomes[index] = ImportOutcome(refused=str(exc))
                continue
            totp = request.totp
            if totp is not None:
                try:
                    check_imported_totp(totp.secret, totp.params, totp.name)
                    if not totp_allowed:
                        raise PermissionDenied("the MFA policy does not allow TOTP devices")
                except (InvalidInput, PermissionDenied) as exc:
                    device_refusals[index] = str(exc)
                    totp = None
            rows.append(ImportRow(username=name, create=request.create, password_hash=password_hash,
                                  disabled=request.disabled, totp=totp))
            at.append(index)
        if not rows:
            return outcomes

        def seal(device_id: DeviceId, secret: bytes) -> str:
            return self._keyring.seal(secret, aad_for("devices", "sealed_secret", device_id))

        def audit(row: ImportRow, user_id: UserId, device_id: DeviceId | None, created: bool) -> list[AuditEvent]:
            events = []
            if created:
                events.append(AuditEvent(event="user_created", outcome="ok", user_id=user_id, username=row.username,
                                         actor=actor))
                if row.disabled:
                    events.append(AuditEvent(event="user_disabled", outcome="ok", user_id=user_id,
                                             username=row.username, actor=actor, reason="imported disabled"))
            if device_id is not None:
                events.append(AuditEvent(event="device_imported", outcome="ok", user_id=user_id,
                                         username=row.username, method="totp", actor=actor,
                                         detail=f"device={device_id} from={origin}"))
            return events

        stored = await self._store.import_rows(rows, self._clock.now(), seal, audit)
        for index, outcome in zip(at, stored):
            refusal = device_refusals.get(index)
            outcomes[index] = outcome if refusal is None or outcome.missing or outcome.refused \
                else replace(outcome, refused=refusal)
        return outcomes
