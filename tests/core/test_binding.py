"""Binding a virtual MFA device: pending until proven, expiring, one per user, sealed at rest.

Runs on both store engines through the ``mfa`` fixture.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from peer_tools import need_tool
from mfad.core.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from mfad.core.model import DeviceId, DeviceState, HashAlgorithm, Method, TotpParams
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Reason
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test")


async def audit_events(mfa: Mfa, event: str) -> list[tuple[str, str | None]]:
    return [(r.event.outcome, r.event.reason) for r in await mfa.audit(AuditFilter(event=event))]


async def test_binding_is_pending_until_confirmed(mfa: Mfa, bind: Any, db: Any, password: str) -> None:
    await mfa.users.create("alice", password)
    pending = await bind("alice")
    binding = pending.binding
    assert pending.device.state is DeviceState.PENDING and pending.device.method is Method.TOTP
    assert binding.lockout_risk
    assert binding.uri == f"otpauth://totp/mfad:alice?secret={binding.secret_base32}&issuer=mfad"
    assert binding.qr_png.startswith(b"\x89PNG") and binding.qr_svg.lstrip().startswith("<svg")
    assert len(pending.key) == 20  # 160 bits

    # The clear secret is nowhere in the database.
    sealed = await db.scalar("SELECT sealed_secret FROM devices WHERE id = $1", pending.device.id)
    assert sealed.startswith(mfa.keyring.active_kid + ":")
    assert binding.secret_base32 not in sealed and pending.key.hex() not in sealed

    # A pending device does not count: sign-in still asks to enrol, and its codes are refused.
    begun = await begin(mfa.signin, "alice", password, ATTEMPT)
    assert begun.outcome is Outcome.ENROLMENT_REQUIRED
    assert begun.methods == {Method.PASSKEY, Method.TOTP}
    assert not (await verify_code(mfa.signin, "alice", pending.code(), ATTEMPT)).accepted

    listing = await mfa.devices.list("alice")
    assert [(d.id, d.state) for d in listing.devices] == [(pending.device.id, DeviceState.PENDING)]

    confirmed = await mfa.devices.confirm_totp("alice", pending.device.id, pending.code(1))
    assert confirmed.state is DeviceState.ACTIVE and confirmed.confirmed_at == pending.clock.now()
    assert confirmed.expires_at is None
    assert await audit_events(mfa, "device_bind_started") == [("ok", None)]
    assert await audit_events(mfa, "device_bound") == [("ok", None)]

    begun = await begin(mfa.signin, "alice", password, ATTEMPT)
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED and begun.methods == {Method.TOTP}


@pytest.mark.slow
async def test_qr_code_of_a_binding_reads_back_as_its_uri(mfa: Mfa, bind: Any, tmp_path: Path) -> None:
    zbarimg = need_tool("zbarimg", "zbar-tools")
    await mfa.users.create("bob@example.com", None)
    binding = (await bind("bob@example.com")).binding
    (tmp_path / "qr.png").write_bytes(binding.qr_png)
    out = subprocess.run([zbarimg, "--raw", "-q", str(tmp_path / "qr.png")], check=True, capture_output=True,
                         timeout=30)
    assert out.stdout.decode().removesuffix("\n") == binding.uri
    assert "bob%40example.com" in binding.uri


async def test_confirm_with_a_wrong_code_is_refused_and_stays_pending(mfa: Mfa, bind: Any) -> None:
    await mfa.users.create("alice", None)
    pending = await bind("alice")
    with pytest.raises(PreconditionFailed):
        await mfa.devices.confirm_totp("alice", pending.device.id, next(pending.wrong_codes()))
    with pytest.raises(PreconditionFailed):  # two steps away: outside the ±1 window
        await mfa.devices.confirm_totp("alice", pending.device.id, pending.code(2))
    device = await mfa.store.load_device(pending.device.id)
    assert device is not None and device.state is DeviceState.PENDING
    assert await audit_events(mfa, "device_bind_confirmed") == [("refused", "wrong_code")] * 2

    assert (await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())).is_active
    with pytest.raises(PreconditionFailed):  # already confirmed
        await mfa.devices.confirm_totp("alice", pending.device.id, pending.code(1))


async def test_confirming_code_cannot_be_replayed_at_sign_in(mfa: Mfa, bind: Any) -> None:
    await mfa.users.create("alice", None)
    pending = await bind("alice")
    await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())
    replay = await verify_code(mfa.signin, "alice", pending.code(), ATTEMPT)
    assert not replay.accepted and replay.reason is Reason.REPLAY
    assert (await verify_code(mfa.signin, "alice", pending.code(1), ATTEMPT)).accepted


@pytest.mark.parametrize(("seconds", "still_valid"), [(599, True), (600, False), (3600, False)])
async def test_pending_binding_expires_after_ten_minutes(mfa: Mfa, bind: Any, clock: Any, seconds: int,
                                                         still_valid: bool) -> None:
    await mfa.users.create("alice", None)
    pending = await bind("alice")
    assert pending.device.expires_at is not None
    assert (pending.device.expires_at - clock.now()).total_seconds() == 600
    clock.advance(seconds)
    if still_valid:
        assert (await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())).is_active
        return
    with pytest.raises(PreconditionFailed, match="expired"):
        await mfa.devices.confirm_totp("alice", pending.device.id, pending.code())
    assert (await mfa.devices.list("alice")).devices == []
    assert await mfa.store.delete_expired_pending(clock.now()) == 1
    assert await mfa.store.load_device(pending.device.id) is None
    assert (await bind("alice")).device.state is DeviceState.PENDING  # a new binding starts cleanly


async def test_an_expired_binding_is_replaced_without_cleanup(mfa: Mfa, bind: Any, clock: Any) -> None:
    await mfa.users.create("alice", None)
    old = await bind("alice")
    clock.advance(3600)
    new = await bind("alice")
    assert new.device.id != old.device.id
    assert (await mfa.devices.confirm_totp("alice", new.device.id, new.code())).is_active


async def test_second_totp_device_is_refused_while_one_is_active(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice = await enrol("alice")
    before = await db.counts()
    with pytest.raises(PreconditionFailed):
        await mfa.devices.begin_totp("alice")
    assert await db.counts() == before
    assert [d.id for d in (await mfa.devices.list("alice")).devices] == [alice.device.id]


async def test_a_pending_binding_is_replaced_by_a_new_one(mfa: Mfa, bind: Any, db: Any) -> None:
    await mfa.users.create("alice", None)
    first = await bind("alice")
    second = await bind("alice")
    assert second.device.id != first.device.id and second.key != first.key
    assert await db.scalar("SELECT count(*) FROM devices") == 1
    assert await mfa.store.load_device(first.device.id) is None
    with pytest.raises(NotFound):
        await mfa.devices.confirm_totp("alice", first.device.id, first.code())
    with pytest.raises(PreconditionFailed):  # the old secret does not prove the new device
        await mfa.devices.confirm_totp("alice", second.device.id, first.code())
    assert (await mfa.devices.confirm_totp("alice", second.device.id, second.code())).is_active


async def test_unbinding_needs_a_fresh_second_factor_unless_admin(mfa: Mfa, enrol: Any, bind: Any,
                                                                  clock: Any) -> None:
    alice = await enrol("alice")
    with pytest.raises(PermissionDenied):
        await mfa.devices.unbind("alice", alice.device.id, actor="alice", as_admin=False)
    earlier = clock.now()
    clock.advance(301)
    with pytest.raises(PermissionDenied):
        await mfa.devices.unbind("alice", alice.device.id, actor="alice", as_admin=False, second_factor_at=earlier)
    removed = await mfa.devices.unbind("alice", alice.device.id, actor="alice", as_admin=False,
                                       second_factor_at=clock.now())
    assert removed.id == alice.device.id
    assert (await mfa.devices.list("alice")).devices == []
    records = await mfa.audit(AuditFilter(event="device_unbound"))
    assert [(r.event.actor, r.event.detail) for r in records] == [("alice", f"device={alice.device.id} by=user")]

    # Lost device: an administrator unbinds without a second factor; then a new one can be bound.
    bob = await enrol("bob")
    await mfa.devices.unbind("bob", bob.device.id, actor="ops", as_admin=True)
    assert (await bind("bob")).device.state is DeviceState.PENDING
    assert not (await verify_code(mfa.signin, "bob", bob.code(1), ATTEMPT)).accepted


async def test_device_ids_of_other_users_are_not_found(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice = await enrol("alice")
    await mfa.users.create("mallory", None)
    before = await db.counts()
    with pytest.raises(NotFound):
        await mfa.devices.unbind("mallory", alice.device.id, actor="ops", as_admin=True)
    with pytest.raises(NotFound):
        await mfa.devices.confirm_totp("mallory", alice.device.id, alice.code(1))
    with pytest.raises(NotFound):
        await mfa.devices.confirm_totp("alice", DeviceId(987654), alice.code(1))
    with pytest.raises(NotFound):
        await mfa.devices.unbind("alice", DeviceId(987654), actor="ops", as_admin=True)
    assert await db.counts() == before
    assert (await verify_code(mfa.signin, "alice", alice.code(1), ATTEMPT)).accepted


async def test_policy_can_forbid_binding_totp(mfa: Mfa, db: Any) -> None:
    await mfa.users.create("alice", None)
    await mfa.policy.update(actor="ops", allowed_methods={Method.PASSKEY, Method.EMAIL})
    before = await db.counts()
    with pytest.raises(PermissionDenied):
        await mfa.devices.begin_totp("alice")
    assert await db.counts() == before


@pytest.mark.parametrize("name", ["", "x" * 65, "phone\nname", "tab\tname", "nul\x00"])
async def test_bad_device_names_are_refused(mfa: Mfa, db: Any, name: str) -> None:
    await mfa.users.create("alice", None)
    before = await db.counts()
    with pytest.raises(InvalidInput) as err:
        await mfa.devices.begin_totp("alice", name=name)
    assert err.value.field == "name"
    assert await db.counts() == before


async def test_binding_an_unknown_user_is_not_found(mfa: Mfa, db: Any) -> None:
    before = await db.counts()
    with pytest.raises(NotFound):
        await mfa.devices.begin_totp("nobody")
    assert await db.counts() == before


async def test_an_imported_totp_device_is_active_sealed_one_of_each_and_audited(
        mfa: Mfa, db: Any, clock: Any, totp_code: Any, bind: Any) -> None:
    await mfa.users.create("alice", None)
    pending = await bind("alice")  # an unfinished binding is replaced by the import
    secret = bytes(range(10))      # 80 bits, as google-authenticator made them
    params = TotpParams(digits=8, period=60, algorithm=HashAlgorithm.SHA256)
    for bad, field in ((bytes(9), "secret"), (bytes(65), "secret")):
        with pytest.raises(InvalidInput, match=field):
            await mfa.devices.import_totp("alice", bad, params, origin="test")
    for wrong, field in ((TotpParams(digits=7), "digits"), (TotpParams(period=45), "period")):
        with pytest.raises(InvalidInput, match=field):
            await mfa.devices.import_totp("alice", secret, wrong, origin="test")
    device = await mfa.devices.import_totp("alice", secret, params, origin="otpauth", actor="ops")
    assert (device.state, device.totp) == (DeviceState.ACTIVE, params)
    assert await db.scalar("SELECT count(*) FROM devices WHERE id = $1", pending.device.id) == 0
    stored = repr([tuple(r) for r in await db.rows("SELECT * FROM devices")])
    assert secret.hex() not in stored and repr(secret) not in stored
    assert (await verify_code(mfa.signin, "alice", totp_code(secret, clock.now(), params), ATTEMPT)).accepted
    with pytest.raises(PreconditionFailed, match="already has a TOTP device"):
        await mfa.devices.import_totp("alice", secret, params, origin="otpauth")
    assert [(r.event.outcome, r.event.actor, r.event.detail) for r in await mfa.audit(
        AuditFilter(event="device_imported"))] == [("ok", "ops", f"device={device.id} from=otpauth")]
