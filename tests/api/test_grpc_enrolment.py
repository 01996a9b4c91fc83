"""Enrolment codes over gRPC: Admin.IssueEnrolmentCode (role-checked per call for console
users), the policy's enrolment_proof, Enrollment.StartEnrolmentProof/PresentEnrolmentProof,
and ``mfactl enrolment-code issue`` / ``policy set --enrolment-proof``.

Real store (both engines), the fixed clock, the typed client over loopback gRPC.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mfactl_runner import run_mfactl
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401
from test_grpc_console_roles import staff_session

from mfad.core.clock import FixedClock
from mfad.core.model import Role
from mfad_client import NotFound, PermissionDenied, SignInOutcome, StaffRole
from mfad_client import types as t

PASSWORD = "pw-newbie-0123456"
Enrol = Callable[..., Awaitable[Any]]


async def enrolment_session(g: GrpcMfad, username: str = "newbie") -> str:
    begun = await g.portal.auth.begin_sign_in(username, PASSWORD)
    assert begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and begun.session is not None
    return begun.session.token


async def test_access_code_gates_the_first_binding(grpc_mfad: GrpcMfad, clock: FixedClock,
                                                   totp_code: Callable[..., str]) -> None:
    g = grpc_mfad
    policy = await g.admin.admin.set_policy(enrolment_proof=t.EnrolmentProof.ACCESS_CODE)
    assert policy.enrolment_proof is t.EnrolmentProof.ACCESS_CODE
    assert (await g.admin.admin.get_policy()).enrolment_proof is t.EnrolmentProof.ACCESS_CODE
    await g.mfa.users.create("newbie", PASSWORD)
    portal = g.portal

    begun = await portal.auth.begin_sign_in("newbie", PASSWORD)
    assert begun.session is not None and begun.session.proof_owed is t.EnrolmentProof.ACCESS_CODE
    session = begun.session.token
    assert (await portal.enrollment.list_devices(session)).devices == ()  # looking is allowed
    for bind in (portal.enrollment.begin_totp_binding(session, "phone"),
                 portal.enrollment.begin_passkey_binding(session, "laptop")):
        with pytest.raises(PermissionDenied, match="enrolment code"):
            await bind
    started = await portal.enrollment.start_enrolment_proof(session)
    assert started.proof is t.EnrolmentProof.ACCESS_CODE and started.masked_email == ""
    assert not await portal.enrollment.present_enrolment_proof(session, "ABCD-EFGH-JKMN")  # none issued yet

    issued = await g.admin.admin.issue_enrolment_code("newbie", hours=4)
    assert issued.expires_at is not None and (issued.expires_at - clock.now()).total_seconds() == 4 * 3600
    assert not await portal.enrollment.present_enrolment_proof(session, "ABCD-EFGH-JKMN")  # wrong
    assert await portal.enrollment.present_enrolment_proof(session, issued.code)
    prov = await portal.enrollment.begin_totp_binding(session, "phone")
    key = base64.b32decode(prov.secret_base32 + "=" * (-len(prov.secret_base32) % 8))
    bound = await portal.enrollment.confirm_totp(session, prov.device_id, totp_code(key, clock.now()))
    assert bound.session is not None and bound.session.scope is t.SessionScope.FULL

    # Used once: after the device is unbound by an administrator, the same code proves nothing.
    await g.admin.admin.unbind_device("newbie", prov.device_id, reason="lost phone")
    again = await enrolment_session(g)
    assert not await portal.enrollment.present_enrolment_proof(again, issued.code)
    with pytest.raises(PermissionDenied):
        await portal.enrollment.begin_totp_binding(again, "phone")


async def test_none_owes_nothing(grpc_mfad: GrpcMfad) -> None:
    g = grpc_mfad
    await g.mfa.users.create("newbie", PASSWORD)
    begun = await g.portal.auth.begin_sign_in("newbie", PASSWORD)
    assert begun.session is not None and begun.session.proof_owed is None
    assert (await g.portal.enrollment.start_enrolment_proof(begun.session.token)).proof is t.EnrolmentProof.NONE
    await g.portal.enrollment.begin_totp_binding(begun.session.token, "phone")


async def test_console_roles_decide_who_issues(grpc_mfad: GrpcMfad, enrol: Enrol, db: Any) -> None:
    g = grpc_mfad
    await g.mfa.users.create("newbie", PASSWORD)
    _, helpdesk = await staff_session(g, enrol, "hana", StaffRole.HELPDESK)
    _, auditor = await staff_session(g, enrol, "aldo", StaffRole.AUDITOR)
    _, plain = await staff_session(g, enrol, "paul", None)

    first = await g.portal.admin_as(helpdesk).issue_enrolment_code("newbie")
    assert not first.replaced
    second = await g.portal.admin_as(helpdesk).issue_enrolment_code("newbie")
    assert second.replaced and second.code != first.code
    for token in (auditor, plain):
        with pytest.raises(PermissionDenied):
            await g.portal.admin_as(token).issue_enrolment_code("newbie")
    with pytest.raises(PermissionDenied):  # a portal caller token alone
        await g.portal.admin.issue_enrolment_code("newbie")
    with pytest.raises(NotFound):
        await g.portal.admin_as(helpdesk).issue_enrolment_code("nobody")
    rows = await db.rows("SELECT outcome, actor, detail FROM audit WHERE event = 'enrolment_code' ORDER BY id")
    assert [(r["outcome"], r["actor"]) for r in rows] == [("issued", "user:hana"), ("issued", "user:hana")]
    assert rows[1]["detail"] == "hours=24 replaced=True"
    denied = await db.rows("SELECT detail FROM audit WHERE event = 'console_denied' ORDER BY id")
    assert [r["detail"] for r in denied] == ["operation=IssueEnrolmentCode"] * 2

    # The first code was replaced: only the second proves.
    await g.admin.admin.set_policy(enrolment_proof=t.EnrolmentProof.ACCESS_CODE)
    session = await enrolment_session(g)
    assert not await g.portal.enrollment.present_enrolment_proof(session, first.code)
    assert await g.portal.enrollment.present_enrolment_proof(session, second.code)


async def test_mfactl_issues_and_sets_the_policy(grpc_mfad: GrpcMfad) -> None:
    g = grpc_mfad
    await g.mfa.users.create("newbie", PASSWORD)

    async def mfactl(*args: str) -> Any:
        return await run_mfactl(g.address, g.tokens[Role.ADMIN], *args)

    shown = await mfactl("policy", "set", "--enrolment-proof", "access_code")
    assert shown.returncode == 0 and "enrolment_proof:          access_code" in shown.stdout, shown
    bad = await mfactl("policy", "set", "--enrolment-proof", "password")
    assert bad.returncode == 2
    issued = await mfactl("--json", "enrolment-code", "issue", "newbie", "--hours", "2")
    assert issued.returncode == 0, issued
    out = json.loads(issued.stdout)
    assert set(out) == {"code", "expires_at", "replaced"} and out["replaced"] is False
    text = await mfactl("enrolment-code", "issue", "newbie")
    assert text.returncode == 0 and "The older unused code no longer works." in text.stdout
    too_long = await mfactl("enrolment-code", "issue", "newbie", "--hours", "721")
    assert too_long.returncode == 2 and "hours" in too_long.stderr, too_long
    session = await enrolment_session(g)
    assert not await g.portal.enrollment.present_enrolment_proof(session, out["code"])  # replaced
    status = await mfactl("--json", "recovery", "status", "newbie")
    assert status.returncode == 0 and json.loads(status.stdout)["codes_left"] == 0
