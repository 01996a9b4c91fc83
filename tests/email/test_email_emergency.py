"""Emergency sign-in with the security email through the real gRPC front end, a real SMTP
server (aiosmtpd) and ``mfactl``, on both store engines and the fixed clock: the session
records it, the audit, the metric and a mail to the security email say so, the lost devices
are named, and the policy's ``email_recovery`` decides — in mfad — whether that session may
remove them."""

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
from prometheus_client import CollectorRegistry  # noqa: E402
from real_servicers import GrpcMfad, grpc_mfad  # noqa: E402, F401

from mfad.core.clock import FixedClock  # noqa: E402
from mfad.core.model import Role  # noqa: E402
from mfad.core.service import Mfa  # noqa: E402
from mfad.observability.metrics import CorePrometheusMetrics  # noqa: E402
from mfad_client import Method, PermissionDenied, SignInOutcome  # noqa: E402

PASSWORD = "pw-alice-0123"


@pytest.fixture
def core_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def mfa(mfa_factory: Any, store: Any, core_registry: CollectorRegistry) -> Mfa:
    return await mfa_factory(store=store, metrics=CorePrometheusMetrics(core_registry))  # type: ignore[no-any-return]


@pytest.fixture
async def mailed(grpc_mfad: GrpcMfad, mail_server: MailServer, run_sender: Any) -> MailServer:
    await run_sender(grpc_mfad.mfa, smtp_for(mail_server))
    return mail_server


async def with_security_email(g: GrpcMfad, mailed: MailServer, enrol: Any, clock: FixedClock) -> tuple[Any, str]:
    """alice with a TOTP device and a bound security email; (the enrolled user, the TOTP device id)."""
    alice = await enrol("alice", password=PASSWORD)
    sent = await g.admin.admin.bind_email("alice", "alice@example.com")
    (mail,) = await mailed.wait_for(1)
    await g.admin.admin.confirm_email("alice", sent.device_id, mail.code)
    clock.advance(60)  # the resend cool-down
    return alice, str(alice.device.id)


async def emergency_session(g: GrpcMfad, mailed: MailServer, seen: int) -> str:
    """alice's "Lost your device?": the password, then a code mailed to the security email."""
    portal = g.portal.auth
    begun = await portal.begin_sign_in("alice", PASSWORD)
    assert begun.outcome is SignInOutcome.SECOND_FACTOR_REQUIRED and Method.EMAIL in begun.methods
    assert begun.masked_email == "a***@example.com"
    await portal.start_challenge(begun.challenge_id, Method.EMAIL)
    mail = (await mailed.wait_for(seen + 1))[seen]
    done = await portal.complete_challenge(begun.challenge_id, Method.EMAIL, code=mail.code)
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None
    return done.session.token


async def test_an_emergency_sign_in_is_recorded_notified_and_cannot_remove_devices_by_default(
        grpc_mfad: GrpcMfad, mailed: MailServer, enrol: Any, clock: FixedClock, db: Any,
        core_registry: CollectorRegistry) -> None:
    g = grpc_mfad
    alice, totp_id = await with_security_email(g, mailed, enrol, clock)
    assert not (await g.admin.admin.get_policy()).email_recovery  # the default
    session = await emergency_session(g, mailed, 1)

    notice = (await mailed.wait_for(3))[2]
    assert notice.message["To"] == "alice@example.com"
    assert "Emergency sign-in" in notice.message["Subject"]
    assert "emergency sign-in" in notice.text and "in place of your usual MFA device" in notice.text
    assert core_registry.get_sample_value("mfad_emergency_signins_total") == 1.0
    rows = await db.rows("SELECT signed_in_with, second_factor_with FROM user_sessions")
    assert [(r["signed_in_with"], r["second_factor_with"]) for r in rows] == [("email", "email")]
    audit = await g.admin.admin.query_audit(username="alice", event="emergency_signin")
    [row] = audit.events
    assert row.outcome == "ok" and row.method == "email" and row.detail == f"lost={totp_id} email_recovery=false"
    queued = await g.admin.admin.query_audit(username="alice", event="emergency_notice")
    assert [e.outcome for e in queued.events] == ["queued"]

    devices = await g.portal.enrollment.devices(session)
    assert devices.emergency_session and devices.lost_device_ids == (totp_id,) and not devices.email_recovery
    # The sign-in's second factor is fresh, yet mfad refuses: the policy keeps removal with administrators.
    for device_id in (totp_id, *(d.id for d in devices.listing.devices if d.method is Method.EMAIL)):
        with pytest.raises(PermissionDenied):
            await g.portal.enrollment.unbind(session, device_id)
    assert len((await g.admin.admin.list_devices("alice")).devices) == 2
    # Binding a new device goes on (that is the way back), and an administrator removes the lost one.
    assert (await g.admin.admin.unbind_device("alice", totp_id, reason="phone lost")).devices

    # A session signed in with the device itself is not an emergency one.
    alice2 = await enrol("bob", password=PASSWORD)
    begun = await g.portal.auth.begin_sign_in("bob", PASSWORD)
    clock.advance(30)
    done = await g.portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=alice2.code())
    assert done.session is not None
    plain = await g.portal.enrollment.devices(done.session.token)
    assert not plain.emergency_session and plain.lost_device_ids == ()
    assert core_registry.get_sample_value("mfad_emergency_signins_total") == 1.0
    assert len(mailed.received) == 3


async def test_with_email_recovery_an_emergency_session_removes_the_lost_device(
        grpc_mfad: GrpcMfad, mailed: MailServer, enrol: Any, clock: FixedClock) -> None:
    g = grpc_mfad
    _, totp_id = await with_security_email(g, mailed, enrol, clock)
    assert (await g.admin.admin.set_policy(email_recovery=True)).email_recovery
    session = await emergency_session(g, mailed, 1)
    devices = await g.portal.enrollment.devices(session)
    assert devices.emergency_session and devices.email_recovery and devices.lost_device_ids == (totp_id,)
    left = await g.portal.enrollment.unbind(session, totp_id)
    assert [d.method for d in left.devices] == [Method.EMAIL]
    audit = await g.admin.admin.query_audit(username="alice", event="emergency_signin")
    assert audit.events[0].detail == f"lost={totp_id} email_recovery=true"
    unbound = await g.admin.admin.query_audit(username="alice", event="device_unbound")
    assert unbound.events[0].actor == "user"


async def test_mfactl_policy_sets_and_shows_the_new_options(grpc_mfad: GrpcMfad) -> None:
    g = grpc_mfad
    done = await run_mfactl(g.address, g.tokens[Role.ADMIN], "--json", "policy", "set", "--email-recovery", "true",
                            "--roles-need-passkey", "true")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["email_recovery"] is True and shown["roles_need_passkey"] is True
    text = await run_mfactl(g.address, g.tokens[Role.ADMIN], "policy", "get")
    assert "email_recovery:           true\n" in text.stdout and "roles_need_passkey:       true\n" in text.stdout
    bad = await run_mfactl(g.address, g.tokens[Role.ADMIN], "policy", "set", "--email-recovery", "maybe")
    assert bad.returncode == 2
    changed = await g.admin.admin.query_audit(event="policy_changed")
    assert "email_recovery=True roles_need_passkey=True" in changed.events[0].detail
