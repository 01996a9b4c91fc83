"""Security email in the core, over both store engines, on the fixed clock.

Codes are read from the outbox (opened with the keyring) — the delivery tests read them
from a real mail server. What is proved: binding rules, single use, binding of a code to
what asked for it, tries, lifetime, cool-down, hourly cap, supersession, the one lock-out
counter across methods, audit rows, and that no clear code is stored.
"""

from __future__ import annotations

import asyncio
import re
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from email_peers import code_of

from mfad.config import LimitSettings
from mfad.core.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed, RateLimited
from mfad.core.model import DeviceState, Method
from mfad.core.outbox import MailContent
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Reason, challenge_hash
from signin_calls import begin, verify_code

GRPC = Attempt(protocol="grpc", source="198.51.100.7", client="portal")
RADIUS = Attempt(protocol="radius", source="203.0.113.9", client="vpn-gw")
ADDRESS = "alice.smith@example.com"

Queued = Callable[[], Awaitable[MailContent]]


async def bind_email(mfa: Mfa, queued: Queued, username: str = "alice", address: str = ADDRESS) -> Any:
    """Bind and confirm ``address``, then let the resend cool-down pass."""
    sent = await mfa.email.begin_binding(username, address, GRPC)
    device = await mfa.email.confirm_binding(username, sent.device.id, code_of(await queued()), GRPC)
    mfa.clock.advance(60)  # type: ignore[attr-defined]
    return device


async def audit(mfa: Mfa, event: str) -> list[Any]:
    return [r.event for r in await mfa.audit(AuditFilter(event=event))]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**len(code):0{len(code)}d}"


# --- binding -----------------------------------------------------------------------------------
async def test_bind_confirm_and_audit(mfa: Mfa, queued: Queued, clock: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    sent = await mfa.email.begin_binding("alice", "Alice.Smith@Example.COM", GRPC)
    assert sent.masked_address == "A***@example.com"
    assert sent.device is not None and sent.device.state is DeviceState.PENDING
    assert sent.device.email == "Alice.Smith@example.com"
    assert sent.resend_after == clock.now() + timedelta(seconds=60)
    assert sent.expires_at == clock.now() + timedelta(seconds=300)
    mail = await queued()
    assert mail.to == "Alice.Smith@example.com"
    assert "5 minutes" in mail.text and "198.51.100.7" in mail.text and "If you did not ask" in mail.text
    assert code_of(mail) in mail.html and "Your mfad code to confirm" in mail.subject
    assert code_of(mail) not in mail.subject
    # A pending email is not a second factor yet.
    begun = await begin(mfa.signin, "alice", "pw-alice-123", GRPC)
    assert begun.outcome is Outcome.ENROLMENT_REQUIRED and Method.EMAIL not in begun.methods

    device = await mfa.email.confirm_binding("alice", sent.device.id, code_of(mail), GRPC)
    assert device.state is DeviceState.ACTIVE and device.method is Method.EMAIL
    events = [(r.event.event, r.event.outcome) for r in await mfa.audit(AuditFilter(limit=20))]
    assert ("device_bound", "ok") in events and ("email_code", "used") in events
    assert ("email_code", "queued") in events and ("device_bind_started", "ok") in events


async def test_bind_refused_during_enrolment_and_when_policy_forbids(mfa: Mfa, db: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    with pytest.raises(PermissionDenied, match="enrolment"):
        await mfa.email.begin_binding("alice", ADDRESS, GRPC, enrolment=True)
    await mfa.policy.update(actor="test", allowed_methods=frozenset({Method.TOTP, Method.PASSKEY}))
    with pytest.raises(PermissionDenied, match="policy"):
        await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    assert await db.scalar("SELECT count(*) FROM email_outbox") == 0
    assert await db.scalar("SELECT count(*) FROM devices") == 0


async def test_second_email_refused_and_pending_replaced(mfa: Mfa, queued: Queued, clock: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    first = await mfa.email.begin_binding("alice", "old@example.com", GRPC)
    clock.advance(61)
    second = await mfa.email.begin_binding("alice", ADDRESS, GRPC)  # replaces the pending one
    assert second.device.id != first.device.id and second.device.email == ADDRESS
    listing = await mfa.devices.list("alice")
    assert [d.email for d in listing.devices] == [ADDRESS]
    with pytest.raises(NotFound):
        await mfa.email.confirm_binding("alice", first.device.id, code_of(await queued()), GRPC)
    await mfa.email.confirm_binding("alice", second.device.id, code_of(await queued()), GRPC)
    clock.advance(61)
    with pytest.raises(PreconditionFailed, match="unbind it first"):
        await mfa.email.begin_binding("alice", "other@example.com", GRPC)


async def test_resend_kills_the_old_code(mfa: Mfa, queued: Queued, clock: Any, db: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    sent = await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    old = code_of(await queued())
    with pytest.raises(RateLimited, match="try again in 60 s"):
        await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    clock.advance(60)
    again = await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    assert again.device.id == sent.device.id  # same pending address: refreshed, not replaced
    new = code_of(await queued())
    # The first message was cancelled (its sealed body dropped) by the new code.
    states = [r[0] for r in await db.rows("SELECT state FROM email_outbox ORDER BY id")]
    assert states == ["cancelled", "queued"]
    assert await db.scalar("SELECT count(*) FROM email_outbox WHERE sealed_body IS NOT NULL") == 1
    if old != new:
        with pytest.raises(PreconditionFailed):
            await mfa.email.confirm_binding("alice", sent.device.id, old, GRPC)
    await mfa.email.confirm_binding("alice", sent.device.id, new, GRPC)


async def test_hourly_cap(mfa: Mfa, clock: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    for _ in range(10):
        await mfa.email.begin_binding("alice", ADDRESS, GRPC)
        clock.advance(60)
    with pytest.raises(RateLimited, match="this hour"):
        await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    assert ("refused" in [r.event.outcome for r in await mfa.audit(AuditFilter(event="email_code"))])
    clock.advance(3600 - 9 * 60)
    await mfa.email.begin_binding("alice", ADDRESS, GRPC)


async def test_binding_code_tries_expiry_and_single_use(mfa: Mfa, queued: Queued, clock: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    sent = await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    code = code_of(await queued())
    for _ in range(3):
        with pytest.raises(PreconditionFailed, match="does not match"):
            await mfa.email.confirm_binding("alice", sent.device.id, wrong(code), GRPC)
    with pytest.raises(PreconditionFailed, match="request a new one"):  # 4th try: the right code is refused
        await mfa.email.confirm_binding("alice", sent.device.id, code, GRPC)
    clock.advance(60)
    await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    code = code_of(await queued())
    clock.advance(301)
    with pytest.raises(PreconditionFailed, match="request a new one"):
        await mfa.email.confirm_binding("alice", sent.device.id, code, GRPC)
    await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    code = code_of(await queued())
    await mfa.email.confirm_binding("alice", sent.device.id, code, GRPC)
    with pytest.raises(PreconditionFailed, match="already confirmed"):
        await mfa.email.confirm_binding("alice", sent.device.id, code, GRPC)


async def test_parallel_guesses_spend_at_most_the_tries(mfa: Mfa, queued: Queued, db: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    sent = await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    code = code_of(await queued())
    guesses = [f"{(int(code) + n) % 10**6:06d}" for n in range(1, 21)]

    async def guess(g: str) -> str:
        try:
            await mfa.email.confirm_binding("alice", sent.device.id, g, GRPC)
        except PreconditionFailed as exc:
            return str(exc)
        return "accepted"

    results = await asyncio.gather(*(guess(g) for g in guesses))
    assert sum("does not match" in r for r in results) == 3
    assert await db.scalar("SELECT state FROM email_codes") == "spent"
    with pytest.raises(PreconditionFailed):
        await mfa.email.confirm_binding("alice", sent.device.id, code, GRPC)


async def test_no_clear_code_is_stored(mfa: Mfa, queued: Queued, db: Any) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    await mfa.email.begin_binding("alice", ADDRESS, GRPC)
    code = code_of(await queued())
    mac = await db.scalar("SELECT code_mac FROM email_codes")
    body = await db.scalar("SELECT sealed_body FROM email_outbox")
    assert mac.startswith(mfa.keyring.active_kid + ":") and code not in mac
    assert code not in body and ADDRESS not in body
    for table in ("email_codes", "email_outbox", "audit", "devices"):
        for row in await db.rows(f"SELECT * FROM {table}"):
            assert all(code not in str(v) or str(v) == mac for v in dict(row).values()), (table, dict(row))


@pytest.mark.parametrize("address, reason", [
    ("alice@example.com\r\nBcc: eve@evil.test", "control characters"),
    ("alice@example.com\nX: y", "control characters"),
    ("alice\x00@example.com", "control characters"),
    ("a" * 245 + "@example.com", "at most 64"),
    ("a@" + ".".join(["abcdefghij"] * 25) + ".com", "at most 254"),
    ('"john.smith"@example.com', "quoted"),
    ("alice@[192.0.2.1]", "literals"),
    ("alice@bücher", "two parts"),
    ("a@faß.de", "IDNA 2003 and 2008"),
    ("ålice@example.com", "ASCII"),
    ("alice", "name@example.com"),
    ("alice@@example.com", "second '@'"),
    (".alice@example.com", "dot"),
    ("alice(comment)@example.com", "'('"),
    ("Alice <alice@example.com>", "spaces"),
])
async def test_bad_addresses_refused_before_anything_is_written(mfa: Mfa, db: Any, address: str,
                                                                reason: str) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    with pytest.raises(InvalidInput, match=re.escape(reason)) as info:
        await mfa.email.begin_binding("alice", address, GRPC)
    assert info.value.field == "address"
    assert await db.scalar("SELECT count(*) FROM email_codes") == 0


async def test_idn_domain_mailed_as_punycode(mfa: Mfa, queued: Queued) -> None:
    await mfa.users.create("alice", "pw-alice-123")
    sent = await mfa.email.begin_binding("alice", "joerg@Bücher.example", GRPC)
    assert sent.device.email == "joerg@xn--bcher-kva.example"
    assert (await queued()).to == "joerg@xn--bcher-kva.example"


# --- sign-in ------------------------------------------------------------------------------------
async def test_sign_in_with_an_email_code(mfa: Mfa, enrol: Any, queued: Queued, db: Any) -> None:
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    begun = await begin(mfa.signin, "alice", alice.password, RADIUS)
    assert begun.outcome is Outcome.SECOND_FACTOR_REQUIRED and begun.methods == {Method.TOTP, Method.EMAIL}
    masked = (await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, RADIUS)).shown
    assert masked == "a***@example.com"
    mail = await queued()
    assert "203.0.113.9" in mail.text and "vpn-gw" in mail.text and "someone knows your password" in mail.text
    done = await mfa.signin.complete(begun.challenge_id, Method.EMAIL, code_of(mail), RADIUS)
    assert done.accepted and done.method is Method.EMAIL and done.user.username == "alice"
    assert await db.scalar("SELECT consumed FROM challenges WHERE id_hash = $1",
                           challenge_hash(begun.challenge_id)) == 1
    # Used once: a second sign-in cannot reuse it, and neither can verify_code.
    again = await begin(mfa.signin, "alice", alice.password, RADIUS)
    refused = await mfa.signin.complete(again.challenge_id, Method.EMAIL, code_of(mail), RADIUS)
    assert not refused.accepted
    assert not (await verify_code(mfa.signin, "alice", code_of(mail), RADIUS)).accepted


async def test_code_is_bound_to_its_challenge(mfa: Mfa, enrol: Any, queued: Queued) -> None:
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    one = await begin(mfa.signin, "alice", alice.password, GRPC)
    two = await begin(mfa.signin, "alice", alice.password, GRPC)
    await mfa.signin.start_challenge(one.challenge_id, Method.EMAIL, GRPC)
    code = code_of(await queued())
    assert not (await mfa.signin.complete(two.challenge_id, Method.EMAIL, code, GRPC)).accepted
    assert not (await verify_code(mfa.signin, "alice", code, GRPC)).accepted  # not a one-call code
    assert (await mfa.signin.complete(one.challenge_id, Method.EMAIL, code, GRPC)).accepted


async def test_fourth_try_refused_even_with_the_right_code(mfa_factory: Any, store: Any, enrol: Any,
                                                           queued: Queued, config: Any) -> None:
    # Challenges with more tries than a code has, so the code's own limit is what is seen.
    patient = await mfa_factory(store=store, config=dataclasses.replace(
        config, limits=LimitSettings(challenge_tries=10)))
    alice = await enrol("alice", on=patient)
    await bind_email(patient, queued)
    begun = await begin(patient.signin, "alice", alice.password, GRPC)
    await patient.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    code = code_of(await queued())
    for _ in range(3):
        assert not (await patient.signin.complete(begun.challenge_id, Method.EMAIL, wrong(code), GRPC)).accepted
    result = await patient.signin.complete(begun.challenge_id, Method.EMAIL, code, GRPC)
    assert not result.accepted and result.tries_left == 6
    reasons = [r.event.reason for r in await patient.audit(AuditFilter(event="email_code", outcome="refused"))]
    assert reasons[0] == "tries_spent" and reasons[1:4] == ["wrong_code"] * 3


async def test_expired_code_refused_and_resend_cooldown(mfa: Mfa, enrol: Any, queued: Queued, clock: Any) -> None:
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    begun = await begin(mfa.signin, "alice", alice.password, GRPC, challenge_ttl=900)
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    with pytest.raises(RateLimited):
        await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    code = code_of(await queued())
    clock.advance(300)
    result = await mfa.signin.complete(begun.challenge_id, Method.EMAIL, code, GRPC)
    assert not result.accepted and result.reason is Reason.EXPIRED
    last = (await mfa.audit(AuditFilter(event="email_code", outcome="refused", limit=1)))[0]
    assert last.event.reason == "expired"
    # After the cool-down a new code for the same challenge works.
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    assert (await mfa.signin.complete(begun.challenge_id, Method.EMAIL, code_of(await queued()), GRPC)).accepted


async def test_one_failure_counter_across_methods(mfa: Mfa, enrol: Any, queued: Queued, db: Any) -> None:
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    begun = await begin(mfa.signin, "alice", alice.password, GRPC)
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    code = code_of(await queued())
    await mfa.signin.complete(begun.challenge_id, Method.EMAIL, wrong(code), GRPC)
    await mfa.signin.complete(begun.challenge_id, Method.TOTP, next(alice.wrong_codes()), GRPC)
    assert (await mfa.lockout("alice")).failures == 2
    assert (await mfa.signin.complete(begun.challenge_id, Method.EMAIL, code, GRPC)).accepted
    assert (await mfa.lockout("alice")).failures == 0


async def test_verify_code_checks_no_email_code(mfa: Mfa, enrol: Any, queued: Queued) -> None:
    # An email code is bound to the challenge that mailed it: a one-call check neither
    # takes one nor tries one.
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    begun = await begin(mfa.signin, "alice", alice.password, RADIUS)
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, RADIUS)
    code = code_of(await queued())
    result = await verify_code(mfa.signin, "alice", code, RADIUS)
    assert not result.accepted and result.method is Method.TOTP
    with pytest.raises(InvalidInput):
        await verify_code(mfa.signin, "alice", code, RADIUS, method=Method.EMAIL)
    assert (await mfa.signin.complete(begun.challenge_id, Method.EMAIL, code, RADIUS)).accepted


async def test_email_only_user_and_policy_that_disallows_email(mfa: Mfa, queued: Queued) -> None:
    await mfa.users.create("carol", "pw-carol-1234")
    await bind_email(mfa, queued, "carol", "carol@example.org")
    begun = await begin(mfa.signin, "carol", "pw-carol-1234", GRPC)
    assert begun.methods == {Method.EMAIL}
    await mfa.policy.update(actor="test", allowed_methods=frozenset({Method.TOTP, Method.PASSKEY}))
    begun = await begin(mfa.signin, "carol", "pw-carol-1234", GRPC)
    assert begun.outcome is Outcome.ENROLMENT_REQUIRED and Method.EMAIL not in begun.methods
    with pytest.raises(PreconditionFailed):
        await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)


async def test_start_challenge_for_a_user_without_email(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("alice")
    begun = await begin(mfa.signin, "alice", alice.password, GRPC)
    with pytest.raises(PreconditionFailed):
        await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    result = await mfa.signin.complete(begun.challenge_id, Method.EMAIL, "123456", GRPC)
    assert not result.accepted and result.reason is Reason.METHOD_NOT_OFFERED


async def test_a_repeated_wrong_code_counts_again_against_a_newly_mailed_code(
        mfa: Mfa, enrol: Any, queued: Queued, clock: Any) -> None:
    alice = await enrol("alice")
    await bind_email(mfa, queued)
    begun = await begin(mfa.signin, "alice", alice.password, GRPC)
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    guess = wrong(code_of(await queued()))
    for _ in range(2):  # the same digits against the same mailed code: it cannot succeed, counted once
        assert not (await mfa.signin.complete(begun.challenge_id, Method.EMAIL, guess, GRPC)).accepted
    assert (await mfa.lockout("alice")).total_failures == 1
    clock.advance(61)  # past the resend cool-down: a new code replaces the old one
    await mfa.signin.start_challenge(begun.challenge_id, Method.EMAIL, GRPC)
    fresh = code_of(await queued())
    if fresh != guess:  # (one in a million: the new code is the guess)
        assert not (await mfa.signin.complete(begun.challenge_id, Method.EMAIL, guess, GRPC)).accepted
        assert (await mfa.lockout("alice")).total_failures == 2  # a fresh guess, counted
