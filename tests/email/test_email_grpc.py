"""Security email through the real gRPC front end, ``mfactl`` and a real SMTP server.

Binding by an administrator with ``mfactl email bind|confirm`` (the code read from the
received message), self-service binding rules, then a sign-in with StartChallenge(EMAIL)
and CompleteChallenge — on both store engines, on the fixed clock.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_API_TESTS = str(Path(__file__).resolve().parents[1] / "api")
if _API_TESTS not in sys.path:
    sys.path.insert(0, _API_TESTS)

import pytest  # noqa: E402
from email_peers import MailServer, smtp_for  # noqa: E402
from mfactl_runner import run_mfactl  # noqa: E402
from real_servicers import GrpcMfad, grpc_mfad  # noqa: E402, F401

from mfad.core.clock import FixedClock  # noqa: E402
from mfad.core.model import Role  # noqa: E402
from mfad_client import (  # noqa: E402
    FailedPrecondition,
    Method,
    PermissionDenied,
    ResourceExhausted,
    SignInOutcome,
)

PASSWORD = "pw-alice-0123"


async def mfactl(grpc: GrpcMfad, *args: str, as_json: bool = True) -> tuple[int, Any]:
    done = await run_mfactl(grpc.address, grpc.tokens[Role.ADMIN], *(["--json"] * as_json), *args)
    if not as_json:
        return done.returncode, done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


async def test_mfactl_email_bind_says_queued_while_no_mail_server_answers(grpc_mfad: GrpcMfad) -> None:
    """No sender runs and no mail server listens: the code is only in the outbox."""
    await grpc_mfad.mfa.users.create("alice", PASSWORD)
    code, text = await mfactl(grpc_mfad, "email", "bind", "alice", "alice@example.com", as_json=False)
    assert code == 0, text
    assert "code queued: a***@example.com" in text and "sent" not in text
    depth, _ = await grpc_mfad.mfa.store.outbox_depth()
    assert depth == 1
    # The wait for the mail server stays within the caller's deadline: an answer, not DEADLINE_EXCEEDED.
    await grpc_mfad.mfa.users.create("bob", PASSWORD)
    code, text = await mfactl(grpc_mfad, "--timeout", "2", "email", "bind", "bob", "bob@example.com",
                              as_json=False)
    assert code == 0 and "code queued: b***@example.com" in text, text


async def test_mfactl_email_bind_says_queued_when_the_mail_server_is_down(grpc_mfad: GrpcMfad,
                                                                          run_sender: Any) -> None:
    """A sender runs but nothing listens on the SMTP port: the refused attempt ends the wait."""
    never_started = MailServer()  # a free port nobody listens on: connections are refused
    await run_sender(grpc_mfad.mfa, smtp_for(never_started))
    await grpc_mfad.mfa.users.create("alice", PASSWORD)
    code, sent = await mfactl(grpc_mfad, "email", "bind", "alice", "alice@example.com")
    assert code == 0, sent
    assert (sent["masked_email"], sent["delivery"]) == ("a***@example.com", "queued")
    depth, _ = await grpc_mfad.mfa.store.outbox_depth()
    assert depth == 1  # still waiting to be retried, not lost


@pytest.fixture
async def mailed(grpc_mfad: GrpcMfad, mail_server: MailServer, run_sender: Any) -> MailServer:
    await run_sender(grpc_mfad.mfa, smtp_for(mail_server))
    return mail_server


async def test_mfactl_bind_then_sign_in_with_an_email_code(grpc_mfad: GrpcMfad, mailed: MailServer,
                                                           clock: FixedClock) -> None:
    await grpc_mfad.mfa.users.create("alice", PASSWORD)
    code, sent = await mfactl(grpc_mfad, "email", "bind", "alice", "alice@example.com")
    assert code == 0, sent
    # The mail server accepted the message before mfad answered: "sent", in text too.
    assert (sent["masked_email"], sent["delivery"]) == ("a***@example.com", "sent")
    assert len(mailed.received) == 1
    (mail,) = await mailed.wait_for(1)
    code, confirmed = await mfactl(grpc_mfad, "email", "confirm", "alice", sent["device_id"], mail.code)
    assert code == 0, confirmed
    devices = await grpc_mfad.admin.admin.list_devices("alice")
    assert [d.method for d in devices.devices] == [Method.EMAIL]

    clock.advance(60)  # the resend cool-down
    service = grpc_mfad.service.auth
    begun = await service.begin_sign_in("alice", PASSWORD)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED and tuple(begun.methods) == (Method.EMAIL,)
    started = await service.start_challenge(begun.challenge_id, Method.EMAIL)
    assert started.masked_email == "a***@example.com"
    assert (started.resend_after - clock.now()).total_seconds() == 60
    assert 0 < (started.expires_at - clock.now()).total_seconds() <= 300
    with pytest.raises(ResourceExhausted):
        await service.start_challenge(begun.challenge_id, Method.EMAIL)
    mail = (await mailed.wait_for(2))[1]
    wrong = "000000" if mail.code != "000000" else "111111"
    refused = await service.complete_challenge(begun.challenge_id, Method.EMAIL, code=wrong)
    assert refused.outcome is SignInOutcome.REFUSED
    done = await service.complete_challenge(begun.challenge_id, Method.EMAIL, code=mail.code)
    assert done.outcome is SignInOutcome.ALLOWED and done.username == "alice"


async def test_self_service_binding_rules(grpc_mfad: GrpcMfad, mailed: MailServer, enrol: Any,
                                          clock: FixedClock) -> None:
    portal = grpc_mfad.portal
    # A user with no device gets an enrolment session: email binding is refused with it.
    await grpc_mfad.mfa.users.create("bob", PASSWORD)
    begun = await portal.auth.begin_sign_in("bob", PASSWORD)
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and begun.session is not None
    with pytest.raises(PermissionDenied):
        await portal.enrollment.begin_email_binding(begun.session.token, "bob@example.com")

    # A signed-in user binds one email; a second is refused until the first is unbound.
    alice = await enrol("alice", password=PASSWORD)
    clock.advance(30)  # the enrolment used this step's TOTP code
    begun = await portal.auth.begin_sign_in("alice", PASSWORD)
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=alice.code())
    assert done.session is not None
    session = done.session.token
    sent = await portal.enrollment.begin_email_binding(session, "alice@example.com")
    (mail,) = await mailed.wait_for(1)
    device, listing = await portal.enrollment.confirm_email_binding(session, sent.device_id, mail.code)
    assert device.method is Method.EMAIL and not listing.lockout_risk  # TOTP + email: two types
    bound = await grpc_mfad.mfa.devices.list("alice")
    assert [d.email for d in bound.devices if d.email] == ["alice@example.com"]
    clock.advance(60)
    with pytest.raises(FailedPrecondition):
        await portal.enrollment.begin_email_binding(session, "alice2@example.com")
    assert len(mailed.received) == 1
