"""``mfad import`` in batches (``apply_local``): the refusals, devices and audit rows of
importing each record one by one, across and inside batches. Both store engines."""

from __future__ import annotations

from typing import Any

import pytest

from mfad import importers
from mfad.core.model import DeviceState, HashAlgorithm, TotpParams
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from mfad.import_records import TotpRecord, UserRecord
from signin_calls import verify_code

ATTEMPT = Attempt(protocol="test")
PARAMS = TotpParams(digits=8, period=60, algorithm=HashAlgorithm.SHA256)


def record(name: str, secret: bytes | None, **user: Any) -> UserRecord:
    totp = None if secret is None else TotpRecord(username=name, secret=secret, params=PARAMS, name="app")
    return UserRecord(username=name, totp=totp, **user)


async def test_batched_import_keeps_the_one_by_one_outcomes(
        mfa: Mfa, db: Any, clock: Any, totp_code: Any, bind: Any, password: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importers, "LOCAL_BATCH", 3)  # records of one user in one batch and across two
    await mfa.users.create("alice", None)
    await mfa.devices.import_totp("alice", bytes(20), TotpParams(), origin="test")
    await mfa.users.create("bob", None)
    pending = await bind("bob")
    await mfa.users.create("carol", None)
    secrets = {name: bytes([n]) * 20 for n, name in enumerate(("bob", "dave", "gina"), 1)}
    records = [
        record("alice", bytes(range(20))),           # has an active device: refused
        record("bob", secrets["bob"]),               # a pending binding: replaced
        record("Dave", secrets["dave"]),             # created (the name normalised), device imported
        record("dave", bytes(range(20))),            # same user, same batch: already has one
        record("carol", None, password=password),    # exists: its password left alone (csv says so)
        record("eve", bytes(9)),                     # created; the 72-bit secret refused
        record("gina", secrets["gina"], disabled=True, password=password),
        record("gina", bytes(range(20))),            # the next batch: already has one
        record("hal", None, password="short"),       # the password policy refuses: nothing created
    ]
    report = await importers.apply_local(records, mfa, origin="csv", create_users=False, actor="ops")

    assert (report.users_created, report.devices_imported) == (3, 3)
    assert report.failed == [
        "alice: the user already has a TOTP device: unbind it first",
        "dave: the user already has a TOTP device: unbind it first",
        "carol: exists already; its password and state were left as they are",
        "eve: secret: must be 80 to 512 bits",
        "gina: the user already has a TOTP device: unbind it first",
        report.failed[5],
    ]
    assert report.failed[5].startswith("hal: password")
    assert [u.username for u in await mfa.users.list()] == ["alice", "bob", "carol", "dave", "eve", "gina"]
    assert (await mfa.users.get("gina")).disabled and not (await mfa.users.get("eve")).disabled
    assert (await mfa.users.get("gina")).password_hash and (await mfa.users.get("carol")).password_hash is None
    assert await db.scalar("SELECT count(*) FROM devices WHERE id = $1", pending.device.id) == 0

    # Each secret is sealed for its own row and the user's codes are accepted.
    await mfa.users.set_disabled("gina", False)
    for name, secret in secrets.items():
        (device,) = (await mfa.devices.list(name)).devices
        assert (device.state, device.totp, device.name) == (DeviceState.ACTIVE, PARAMS, "app")
        assert (await verify_code(mfa.signin, name, totp_code(secret, clock.now(), PARAMS), ATTEMPT)).accepted
    stored = repr([tuple(r) for r in await db.rows("SELECT * FROM devices")])
    assert all(s.hex() not in stored for s in secrets.values())

    imported = {(r.event.username, r.event.detail) for r in await mfa.audit(AuditFilter(event="device_imported"))
                if r.event.actor == "ops"}
    assert imported == {(name, f"device={(await mfa.devices.list(name)).devices[0].id} from=csv") for name in secrets}
    created = [(r.event.username, r.event.actor) for r in await mfa.audit(AuditFilter(event="user_created"))]
    assert sorted(created) == [("alice", None), ("bob", None), ("carol", None), ("dave", "ops"), ("eve", "ops"),
                               ("gina", "ops")]
    assert [(r.event.username, r.event.reason) for r in await mfa.audit(AuditFilter(event="user_disabled"))] == [
        ("gina", "imported disabled")]


async def test_without_create_users_a_missing_user_is_refused(mfa: Mfa) -> None:
    report = await importers.apply_local([record("zoe", bytes(20))], mfa, origin="otpauth", create_users=False)
    assert (report.users_created, report.devices_imported) == (0, 0)
    assert report.failed == ["zoe: no such user (add --create-users)"]
    assert await mfa.users.list() == []
