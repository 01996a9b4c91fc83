"""The approval page's options, over RADIUS challenge mode (radclient) on the real core, both
engines: a TOTP code instead of the passkey where the policy's ``approval_with_totp`` allows
it (still number matching; the code is spent by the replay guard; a wrong one counts), and the
mail that an approval is waiting (``approval_email_notice``: through the outbox to the bound
security email, one per user per interval, a link that approves nothing), delivered to a real
SMTP server. (The page in Chromium is tests/portal/test_portal_approval.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from relying import PASSWORD, Relying
from softauthn import SoftAuthenticator
from test_approval import PAGE, Vpn, approval_events, passkey_user, prompted
from test_passkey_radius import radius  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "email"))
from email_peers import MailServer, code_of  # noqa: E402

from mfad_client import ApprovalOutcome, ClientError
from mfad_client import Method as M

from mfad.config import SmtpSettings
from mfad.core.approval import Decided, Proof
from mfad.core.approval_notice import NOTICE_INTERVAL
from mfad.core.errors import InvalidInput, PermissionDenied
from mfad.core.model import Method, Role
from mfad.core.outbox import OutboxSender, open_body
from mfad.core.ports import ApprovalNotice
from mfad.core.service import Mfa
from mfad.mail.smtp import SmtpMailer


def totp(code: str) -> Proof:
    return Proof(method=Method.TOTP, response=code)


async def test_a_totp_code_on_the_page_approves_only_where_the_policy_allows(
        wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    alice, _, app = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    number, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)
    wa.clock.advance(30)  # the binding spent the current step

    # Off by default: the page is offered the passkey only, and a code is refused outright.
    assert await wa.mfa.approvals.proof_methods(alice) == {Method.PASSKEY}
    with pytest.raises(PermissionDenied):
        await wa.mfa.approvals.approve(alice, pending.approval_id, int(number), totp(app.code()), PAGE)
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 0
    assert await wa.mfa.approvals.list_pending(alice) != []

    await wa.mfa.policy.update(actor="test", approval_with_totp=True)
    assert await wa.mfa.approvals.proof_methods(alice) == {Method.PASSKEY, Method.TOTP}
    with pytest.raises(InvalidInput):  # what can never be a code is refused before anything is read
        await wa.mfa.approvals.approve(alice, pending.approval_id, int(number), totp("12a456"), PAGE)
    # A wrong code: refused and counted; the approval is still waiting for a right one.
    assert await wa.mfa.approvals.approve(alice, pending.approval_id, int(number),
                                          totp(next(app.wrong_codes())), PAGE) is Decided.REFUSED
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 1
    assert (await vpn.answer("alice", state)).reply == "Access-Challenge"  # not approved yet

    code = app.code()
    assert await wa.mfa.approvals.approve(alice, pending.approval_id, int(number), totp(code), PAGE) \
        is Decided.APPROVED
    assert ("approved", "totp") in await approval_events(wa)
    assert (await vpn.answer("alice", state)).reply == "Access-Accept"

    # The code is spent: the next sign-in cannot be approved with it again (replay guard).
    number, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)
    assert await wa.mfa.approvals.approve(alice, pending.approval_id, int(number), totp(code), PAGE) \
        is Decided.REFUSED
    assert await wa.mfa.approvals.list_pending(alice) != []
    # Still number matching: the right code with a wrong number refuses the sign-in for good.
    wa.clock.advance(30)
    wrong = next(c for c in pending.choices if c != int(number))
    assert await wa.mfa.approvals.approve(alice, pending.approval_id, wrong, totp(app.code()), PAGE) \
        is Decided.REFUSED
    assert (await vpn.answer("alice", state)).reply == "Access-Reject"
    assert ("refused", "approval_wrong_number") in await approval_events(wa)


async def test_a_user_without_an_authenticator_app_is_offered_the_passkey_only(
        wa: Relying, radius: Any) -> None:  # noqa: F811
    carol = await wa.user("carol")
    await wa.register("carol", SoftAuthenticator())
    await wa.mfa.policy.update(actor="test", approval_with_totp=True)
    vpn = Vpn(*await radius("challenge"))
    number, _, _ = await prompted(vpn, "carol")
    [pending] = await wa.mfa.approvals.list_pending(carol)
    assert await wa.mfa.approvals.proof_methods(carol) == {Method.PASSKEY}
    assert await wa.mfa.approvals.approve(carol, pending.approval_id, int(number), totp("123456"), PAGE) \
        is Decided.REFUSED
    assert await wa.mfa.approvals.list_pending(carol) != []


async def test_decide_approval_over_grpc_takes_a_code_only_where_the_policy_allows(
        wa: Relying, enrol: Any, wa_grpc: Any, radius: Any) -> None:  # noqa: F811
    alice, _, app = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.client(Role.PORTAL)
    wa.clock.advance(30)
    begun = await portal.auth.begin_sign_in("alice", PASSWORD)
    done = await portal.auth.complete_challenge(begun.challenge_id, M.TOTP, code=app.code())
    assert done.session is not None
    session = done.session.token
    vpn = Vpn(*await radius("challenge"))
    number, state, _ = await prompted(vpn, "alice")
    wa.clock.advance(30)

    listing = await portal.enrollment.approvals(session)
    assert listing.proof_methods == (M.PASSKEY,)
    [pending] = listing.approvals
    with pytest.raises(ClientError) as refused:
        await portal.enrollment.approve_with_code(session, pending.id, int(number), app.code())
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED

    await wa.mfa.policy.update(actor="test", approval_with_totp=True)
    listing = await portal.enrollment.approvals(session)
    assert set(listing.proof_methods) == {M.PASSKEY, M.TOTP}
    with pytest.raises(ClientError) as both:  # a code and an assertion at once
        await portal.enrollment.approve(session, pending.id, int(number), challenge_id="x", assertion_json="{}",
                                        code=app.code())
    assert both.value.code is grpc.StatusCode.INVALID_ARGUMENT
    outcome = await portal.enrollment.approve_with_code(session, pending.id, int(number), app.code())
    assert outcome is ApprovalOutcome.APPROVED
    assert (await vpn.answer("alice", state)).reply == "Access-Accept"


async def bind_security_email(wa: Relying, username: str, address: str) -> None:
    sent = await wa.mfa.email.begin_binding(username, address, PAGE)
    async with wa.store.read() as tx:  # type: ignore[attr-defined]
        row = await tx.fetchrow("SELECT id, sealed_body FROM email_outbox WHERE sealed_body IS NOT NULL "
                                "ORDER BY id DESC LIMIT 1")
    mail = open_body(wa.mfa.keyring, row["sealed_body"], int(row["id"]))
    await wa.mfa.email.confirm_binding(username, sent.device.id, code_of(mail), PAGE)


async def notices(wa: Relying) -> int:
    async with wa.store.read() as tx:  # type: ignore[attr-defined]
        row = await tx.fetchrow("SELECT count(*) AS n FROM email_outbox WHERE kind = 'notice'")
    return int(row["n"])


async def test_a_waiting_approval_is_mailed_once_per_interval_and_the_mail_approves_nothing(
        wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    alice, _, _ = await passkey_user(wa, enrol, "alice")
    await bind_security_email(wa, "alice", "alice@example.com")
    vpn = Vpn(*await radius("challenge"))

    await prompted(vpn, "alice")  # off by default: no mail
    assert await notices(wa) == 0

    await wa.mfa.policy.update(actor="test", approval_email_notice=True)
    server = MailServer()
    await server.start()
    settings = SmtpSettings(host="127.0.0.1", port=server.port, security="none", sender="mfad@example.com")
    sender = OutboxSender(store=wa.mfa.store, keyring=wa.mfa.keyring, clock=wa.clock, mailer=SmtpMailer(settings),
                          settings=settings.outbox)
    wa.mfa.email.add_listener(sender.wake)
    task = asyncio.create_task(sender.run())
    try:
        numbers = [(await prompted(vpn, "alice"))[0]]
        # A flood of attempts within the interval: the user is mailed once.
        for _ in range(5):
            numbers.append((await prompted(vpn, "alice"))[0])
        assert await notices(wa) == 1
        [mail] = await server.wait_for(1, timeout=20)
        assert mail.envelope_to == ["alice@example.com"]
        assert "waiting for your approval" in mail.message["Subject"]
        assert "http://localhost:8080/approve" in mail.text and "cannot approve it" in mail.text
        assert "through lo" in mail.text
        # The link is the page, nothing more: no number, no token.
        # (a number may stand inside the source address or the time: only a number of its own counts)
        assert not [n for n in numbers if re.search(rf"(?<![\d.:-]){n}(?![\d.:-])", mail.text)], mail.text
        assert "?" not in mail.text.split("/approve", 1)[1].split()[0]
        queued = [r.event for r in await wa.audit("approval_notice")]
        assert [(e.outcome, e.username) for e in queued] == [("queued", "alice")]
        assert queued[0].detail is not None and "a***@example.com" in queued[0].detail

        wa.clock.advance(NOTICE_INTERVAL.total_seconds() + 1)
        await prompted(vpn, "alice")
        assert await notices(wa) == 2
        await server.wait_for(2, timeout=20)
    finally:
        await sender.aclose()
        await asyncio.wait_for(task, 10)
        await server.stop()


async def test_no_mail_without_a_security_email(wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    await passkey_user(wa, enrol, "alice")
    await wa.mfa.policy.update(actor="test", approval_email_notice=True)
    vpn = Vpn(*await radius("challenge"))
    await prompted(vpn, "alice")
    assert await notices(wa) == 0 and await wa.audit("approval_notice") == []


async def test_the_interval_is_taken_once_when_instances_race(wa: Relying, enrol: Any) -> None:
    """The store's conditional upsert: of many racing queue calls for one user, one writes."""
    alice, _, _ = await passkey_user(wa, enrol, "alice")
    now = wa.clock.now()
    notice = ApprovalNotice(seal=lambda message_id: "sealed", expires_at=now + timedelta(minutes=5),
                            audit=lambda message_id: [])
    results = await asyncio.gather(*(wa.mfa.store.queue_approval_notice(alice.id, now, now - NOTICE_INTERVAL, notice)
                                     for _ in range(16)))
    assert sum(r is not None for r in results) == 1
    assert await notices(wa) == 1


async def queued_mails(wa: Relying) -> list[Any]:
    async with wa.store.read() as tx:  # type: ignore[attr-defined]
        rows = await tx.fetch("SELECT id, sealed_body FROM email_outbox WHERE kind = 'notice' ORDER BY id")
    return [open_body(wa.mfa.keyring, r["sealed_body"], int(r["id"])) for r in rows]


async def test_locking_the_account_mails_the_administrators_once_per_lock(
        wa: Relying, enrol: Any, radius: Any, config: Any, store: Any, keyring: Any) -> None:  # noqa: F811
    alice, _, _ = await passkey_user(wa, enrol, "alice")
    await wa.mfa.approvals.report(alice, PAGE)  # no address configured: audited and counted, no mail
    assert await notices(wa) == 0
    assert await wa.mfa.reset_lockout("alice", actor="admin")

    smtp = dataclasses.replace(config.smtp, security_alerts_to="secops@example.com")
    mfa = Mfa(settings=dataclasses.replace(config, smtp=smtp).core, store=store, keyring=keyring, clock=wa.clock)
    try:
        vpn = Vpn(*await radius("challenge"))
        await prompted(vpn, "alice")
        [pending] = await mfa.approvals.list_pending(alice)
        assert await mfa.approvals.deny(alice, pending.approval_id, PAGE) is Decided.DENIED
        await mfa.approvals.report(alice, PAGE)
        [mail] = await queued_mails(wa)
        assert mail.to == "secops@example.com"
        assert "alice locked their account" in mail.subject
        assert "mfactl lockout reset alice" in mail.text and "--user alice --event approval" in mail.text
        assert [e.event.outcome for e in await wa.audit("approval_reported_notice")] == ["queued"]
        # Locked already: locking again tells nobody twice.
        await mfa.approvals.report(alice, PAGE)
        assert len(await queued_mails(wa)) == 1
        assert await mfa.reset_lockout("alice", actor="admin")
        await mfa.approvals.report(alice, PAGE)
        assert len(await queued_mails(wa)) == 2
    finally:
        mfa.close()
