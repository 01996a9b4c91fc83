"""Recovery codes on a fixed clock, over both store engines.

Generation (10 codes of 10 characters, hashes only, the whole set replaced), sign-in with
a code (single use, also across two store instances), the policy switch, the lock-out,
lockout_risk, the audit rows and the notice mailed through the outbox.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from mfad.core import recovery
from mfad.core.errors import PermissionDenied, PreconditionFailed
from mfad.core.model import Method
from mfad.core.outbox import open_body
from mfad.core.selfservice import Use
from mfad.core.service import Mfa
from mfad.core.sessions import SessionScope
from mfad.core.verification import Attempt, Outcome, Reason
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test", source="192.0.2.7")


async def with_codes(mfa: Mfa, enrol: Any, name: str = "alice") -> tuple[Any, tuple[str, ...]]:
    user = await enrol(name)
    made = await mfa.recovery.generate(name, ATTEMPT)
    return user, made.codes


async def sign_in(mfa: Mfa, user: Any, code: str) -> Any:
    begun = await begin(mfa.signin, user.username, user.password, ATTEMPT)
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED and Method.RECOVERY in begun.methods
    return await mfa.signin.complete(begun.challenge_id or "", Method.RECOVERY, code, ATTEMPT)


async def events(db: Any, name: str) -> list[tuple[str, str | None]]:
    return [(r["outcome"], r["detail"]) for r in await db.rows(
        "SELECT outcome, detail FROM audit WHERE event = $1 ORDER BY id", name)]


def test_codes_have_the_documented_shape_and_typing_is_forgiving() -> None:
    code = recovery.new_code()
    assert len(code) == 10 and set(code) <= set(recovery.ALPHABET)
    assert not set("01OIL") & set(recovery.ALPHABET) and len(set(recovery.ALPHABET)) == 31
    shown = recovery.printed(code)
    assert shown == f"{code[:5]}-{code[5:]}"
    assert recovery.normalize(shown.lower()) == code and recovery.normalize(f" {code[:5]} {code[5:]} ") == code
    for bad in ("", "123456", code[:9], code + "2", code[:9] + "0", code[:9] + "é"):
        assert recovery.normalize(bad) is None


async def test_generate_stores_only_keyed_hashes_and_counts(mfa: Mfa, enrol: Any, db: Any, clock: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}", c) for c in codes)
    stored = [r["code_mac"] for r in await db.rows("SELECT code_mac FROM recovery_codes")]
    assert len(stored) == 10 and len(set(stored)) == 10
    for c in codes:
        assert all(recovery.normalize(c) not in m and c not in m for m in stored)
    assert all(m.startswith(f"{mfa.keyring.active_kid}:") for m in stored)
    status = await mfa.recovery.status("alice")
    assert status is not None and status.codes_left == 10 and status.created_at == clock.now()
    assert status.last_used_at is None
    # The set is a method type: TOTP + recovery codes is no longer a lock-out risk.
    assert not (await mfa.devices.list("alice")).lockout_risk
    assert await events(db, "recovery_codes") == [("generated", "count=10")]


async def test_regenerating_replaces_the_whole_set(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice, old = await with_codes(mfa, enrol)
    assert (await sign_in(mfa, alice, old[0])).accepted
    new = await mfa.recovery.generate("alice", ATTEMPT)
    assert not set(new.codes) & set(old)
    assert await db.scalar("SELECT count(*) FROM recovery_codes") == 10
    assert await db.scalar("SELECT count(*) FROM devices WHERE method = 'recovery'") == 1
    refused = await sign_in(mfa, alice, old[1])
    assert not refused.accepted and refused.reason is Reason.WRONG_CODE
    assert (await sign_in(mfa, alice, new.codes[1])).accepted
    assert await events(db, "recovery_codes") == [("generated", "count=10"),
                                                   ("regenerated", "count=10 replaced_left=9")]


async def test_a_code_signs_in_once(mfa: Mfa, enrol: Any, db: Any, clock: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    clock.advance(60)
    done = await sign_in(mfa, alice, codes[3].lower().replace("-", " "))
    assert done.accepted and done.method is Method.RECOVERY and done.user is not None
    again = await sign_in(mfa, alice, codes[3])
    assert not again.accepted and again.reason is Reason.WRONG_CODE
    status = await mfa.recovery.status("alice")
    assert status is not None and status.codes_left == 9 and status.last_used_at == clock.now()
    assert await db.scalar("SELECT count(*) FROM recovery_codes WHERE used_at IS NOT NULL") == 1
    assert [o for o, _ in await events(db, "recovery_code")] == ["used"]
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify' AND method = 'recovery' "
                           "AND outcome = 'accepted'") == 1
    # No security email bound: nothing is mailed.
    assert await db.scalar("SELECT count(*) FROM email_outbox") == 0


async def test_verify_code_takes_a_recovery_code_when_asked_for(mfa: Mfa, enrol: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    ok = await verify_code(mfa.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)
    assert ok.accepted and ok.method is Method.RECOVERY
    assert not (await verify_code(mfa.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)).accepted


async def test_the_last_code_takes_the_set_with_it(mfa: Mfa, enrol: Any, db: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    for code in codes:
        assert (await verify_code(mfa.signin, "alice", code, ATTEMPT, method=Method.RECOVERY)).accepted
    assert await mfa.recovery.status("alice") is None
    assert await db.scalar("SELECT count(*) FROM recovery_codes") == 0
    assert (await mfa.devices.list("alice")).lockout_risk
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    assert begun.methods == {Method.TOTP}


async def test_a_wrong_code_is_a_failure_for_the_lockout(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    wrong = iter(recovery.printed(recovery.new_code()) for _ in range(100))
    for i in range(10):  # from ten places: one place alone meets its own back-off first
        from_i = Attempt(protocol="test", source=f"198.51.100.{i}")
        assert not (await verify_code(mfa.signin, "alice", next(wrong), from_i, method=Method.RECOVERY)).accepted
    assert (await mfa.store.load_limits(alice.user.id)).locked_until is not None
    locked = await verify_code(mfa.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)
    assert not locked.accepted and locked.reason is Reason.LOCKED
    clock.advance(61)
    assert (await verify_code(mfa.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)).accepted
    assert (await mfa.store.load_limits(alice.user.id)).failures == 0


async def test_the_same_wrong_code_counts_once(mfa: Mfa, enrol: Any) -> None:
    alice, _ = await with_codes(mfa, enrol)
    wrong = recovery.printed(recovery.new_code())
    for _ in range(3):
        await verify_code(mfa.signin, "alice", wrong, ATTEMPT, method=Method.RECOVERY)
    assert (await mfa.store.load_limits(alice.user.id)).failures == 1


async def test_the_policy_can_disallow_recovery_codes(mfa: Mfa, enrol: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    current = await mfa.policy.current()
    await mfa.policy.update(actor="admin", allowed_methods=current.allowed_methods - {Method.RECOVERY})
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    assert begun.methods == {Method.TOTP}
    refused = await verify_code(mfa.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)
    assert not refused.accepted and refused.reason is Reason.METHOD_NOT_OFFERED
    with pytest.raises(PermissionDenied):
        await mfa.recovery.generate("alice", ATTEMPT)


async def test_racing_instances_accept_one_code_once(mfa: Mfa, enrol: Any, mfa_factory: Any,
                                                     store_opener: Any, db: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    second = await mfa_factory(store=await store_opener())
    results = await asyncio.gather(*(verify_code(m.signin, "alice", codes[0], ATTEMPT, method=Method.RECOVERY)
                                     for m in [mfa, second] * 10))
    assert [r.accepted for r in results].count(True) == 1
    assert await db.scalar("SELECT count(*) FROM recovery_codes WHERE used_at IS NOT NULL") == 1
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'recovery_code'") == 1


async def test_using_a_code_is_mailed_when_a_security_email_is_bound(mfa: Mfa, enrol: Any, db: Any,
                                                                     clock: Any) -> None:
    alice, codes = await with_codes(mfa, enrol)
    sent = await mfa.email.begin_binding("alice", "alice@example.com", ATTEMPT)
    assert sent.device is not None
    row = (await db.rows("SELECT id, sealed_body FROM email_outbox ORDER BY id DESC LIMIT 1"))[0]
    mail = open_body(mfa.keyring, row["sealed_body"], int(row["id"]))
    code = re.search(r"\b(\d{6})\b", mail.text)
    assert code is not None
    await mfa.email.confirm_binding("alice", sent.device.id, code.group(1), ATTEMPT)

    assert (await sign_in(mfa, alice, codes[0])).accepted
    rows = await db.rows("SELECT id, sealed_body, kind, state FROM email_outbox WHERE kind = 'notice'")
    assert len(rows) == 1 and rows[0]["state"] == "queued"
    notice = open_body(mfa.keyring, rows[0]["sealed_body"], int(rows[0]["id"]))
    assert notice.to == "alice@example.com" and "recovery code was used" in notice.subject
    assert "9 recovery codes left" in notice.text and "192.0.2.7" in notice.text
    assert all(c not in notice.text and recovery.normalize(c) not in notice.text for c in codes)
    assert [o for o, _ in await events(db, "recovery_notice")] == ["queued"]
    # A new email code does not cancel the queued notice.
    clock.advance(61)
    again = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    await mfa.signin.start_challenge(again.challenge_id or "", Method.EMAIL, ATTEMPT)
    assert await db.scalar("SELECT state FROM email_outbox WHERE kind = 'notice'") == "queued"


async def test_self_service_generation_needs_a_fresh_second_factor(mfa: Mfa, enrol: Any, clock: Any) -> None:
    alice = await enrol("alice")
    begun = await mfa.selfservice.begin("alice", alice.password, ATTEMPT, caller="portal")
    done = await mfa.selfservice.complete(begun.result.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT,
                                          caller="portal")
    assert done.session is not None and done.session.scope is SessionScope.FULL
    session = await mfa.selfservice.authorize(done.session.token, "portal", Use.MANAGE)
    made = await mfa.selfservice.generate_recovery_codes(session, ATTEMPT)
    assert len(made.codes) == 10
    status = await mfa.selfservice.recovery_status(session)
    assert status is not None and status.codes_left == 10
    clock.advance(301)
    session = await mfa.selfservice.authorize(done.session.token, "portal", Use.MANAGE)
    with pytest.raises(PreconditionFailed):
        await mfa.selfservice.generate_recovery_codes(session, ATTEMPT)
