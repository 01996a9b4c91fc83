"""Console roles through the real servicers: a portal caller calls Admin for a signed-in user,
and that user's role decides each call — admin, helpdesk, auditor; fresh second factor for
sensitive calls; a role taken away stops the very next call; every refusal audited;
``mfactl user role``.

Real store (both engines), the fixed clock, the typed client over loopback gRPC.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import message_factory
from mfactl_runner import run_mfactl
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401
from test_grpc_sessions import full_session

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api.servicers.admin import PERMISSIONS
from mfad.core.clock import FixedClock
from mfad.core.model import Role
from mfad.core.staff import ROLE_PERMISSIONS, SENSITIVE, Permission
from mfad_client import FailedPrecondition, MfaRequired, PermissionDenied, StaffRole, StepUpOutcome, Unauthenticated

Enrol = Callable[..., Awaitable[Any]]


async def staff_session(g: GrpcMfad, enrol: Enrol, username: str, role: StaffRole | None) -> tuple[Any, str]:
    person = await enrol(username)
    await g.admin.admin.set_role(username, role)
    done = await full_session(g, person)
    assert done.session is not None
    return person, done.session.token


def test_every_admin_method_names_the_permission_it_needs() -> None:
    methods = {m.name for m in pb.DESCRIPTOR.services_by_name["Admin"].methods}
    assert set(PERMISSIONS) == methods  # a method missing from the table would be refused to every console user
    assert ROLE_PERMISSIONS[StaffRole.ADMIN] == frozenset(Permission)
    helpdesk = ROLE_PERMISSIONS[StaffRole.HELPDESK]
    assert not helpdesk & {Permission.VIEW_POLICY, Permission.MANAGE_POLICY, Permission.VIEW_TOKENS,
                           Permission.MANAGE_TOKENS, Permission.MANAGE_ROLES}
    assert ROLE_PERMISSIONS[StaffRole.AUDITOR] <= {Permission.CONSOLE, Permission.VIEW_USERS, Permission.VIEW_AUDIT,
                                                   Permission.VIEW_POLICY, Permission.VIEW_TOKENS}
    assert SENSITIVE == {Permission.MANAGE_POLICY, Permission.MANAGE_ROLES, Permission.MANAGE_TOKENS,
                         Permission.UNBIND}


async def test_a_portal_token_alone_cannot_call_admin(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    await enrol("alice")
    for call in (g.portal.admin.list_users(), g.portal.admin.get_policy(), g.service.admin.list_users()):
        with pytest.raises(PermissionDenied):
            await call


async def test_roles_decide_each_call_and_are_audited(grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock,
                                                      db: Any) -> None:
    g = grpc_mfad
    lost = await enrol("lost")
    _, helpdesk_token = await staff_session(g, enrol, "hana", StaffRole.HELPDESK)
    _, auditor_token = await staff_session(g, enrol, "aldo", StaffRole.AUDITOR)
    _, plain_token = await staff_session(g, enrol, "paul", None)

    helpdesk = g.portal.admin_as(helpdesk_token)
    access = await helpdesk.console_access()
    assert access.username == "hana" and access.role is StaffRole.HELPDESK and access.may("unbind")
    assert not access.may("view_policy")
    assert [u.username for u in (await helpdesk.list_users(prefix="l")).users] == ["lost"]
    await helpdesk.reset_lockout("lost")
    for call in (helpdesk.get_policy(), helpdesk.set_policy(self_service=False), helpdesk.list_caller_tokens(),
                 helpdesk.set_role("hana", StaffRole.ADMIN), helpdesk.create_user("newbie")):
        with pytest.raises(PermissionDenied):
            await call
    # Unbinding is sensitive: the sign-in's second factor counts while fresh.
    left = await helpdesk.unbind_device("lost", str(lost.device.id), reason="phone lost")
    assert left.devices == ()

    auditor = g.portal.admin_as(auditor_token)
    assert (await auditor.get_policy()).mfa_required is MfaRequired.ALL
    assert any(e.event == "device_unbound" for e in (await auditor.query_audit(username="lost")).events)
    assert [c.name for c in await auditor.list_caller_tokens()]
    for call in (auditor.reset_lockout("lost"), auditor.revoke_remembered("lost", all=True),
                 auditor.set_policy(remember_days=3)):
        with pytest.raises(PermissionDenied):
            await call

    with pytest.raises(PermissionDenied):  # a user without a role has no console
        await g.portal.admin_as(plain_token).console_access()
    with pytest.raises(Unauthenticated):
        await g.portal.admin_as("mfs1_not-a-session").list_users()
    with pytest.raises(Unauthenticated):  # a session is bound to the caller it was issued to
        await g.client(token=await g.new_token("other-portal", Role.PORTAL)).admin_as(helpdesk_token).list_users()

    rows = await db.rows("SELECT event, outcome, username, actor, reason, detail FROM audit "
                         "WHERE event IN ('console_denied', 'device_unbound', 'lockout_reset') ORDER BY id")
    assert ("lockout_reset", "user:hana") in [(r["event"], r["actor"]) for r in rows]
    unbound = next(r for r in rows if r["event"] == "device_unbound")
    assert unbound["actor"] == "user:hana" and unbound["username"] == "lost"
    denied = [r for r in rows if r["event"] == "console_denied"]
    assert len(denied) == 5 + 3 + 1
    assert {r["username"] for r in denied} == {"hana", "aldo", "paul"}
    assert "role=helpdesk needs=view_policy" in [r["reason"] for r in denied]
    assert "operation=GetPolicy" in [r["detail"] for r in denied]


async def test_sensitive_calls_need_a_fresh_second_factor(grpc_mfad: GrpcMfad, enrol: Enrol,
                                                          clock: FixedClock) -> None:
    g = grpc_mfad
    ada, token = await staff_session(g, enrol, "ada", StaffRole.ADMIN)
    admin = g.portal.admin_as(token)
    await admin.set_policy(remember_days=9)  # the sign-in's factor is fresh
    clock.advance(301)  # the policy's sensitive_reauth_seconds is 300
    assert (await admin.get_policy()).remember_days == 9  # looking is not sensitive
    await admin.create_user("bea")  # nor is creating a user
    for call in (admin.set_policy(remember_days=10), admin.set_role("bea", StaffRole.AUDITOR),
                 admin.create_caller_token("ci", Role.SERVICE)):
        with pytest.raises(FailedPrecondition):
            await call
    step = await g.portal.auth.verify_sensitive(code=ada.code(1), operation="console", session=token)
    assert step.outcome is StepUpOutcome.VERIFIED
    assert (await admin.set_policy(remember_days=10)).remember_days == 10
    assert (await admin.set_role("bea", StaffRole.AUDITOR)).role is StaffRole.AUDITOR
    made = await admin.create_caller_token("ci", Role.SERVICE)
    assert made.token.startswith("mfad_")
    changed = await g.admin.admin.query_audit(event="policy_changed")
    assert changed.events[0].actor == "user:ada"


async def test_a_role_taken_away_stops_the_next_call(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    _, token = await staff_session(g, enrol, "hana", StaffRole.HELPDESK)
    helpdesk = g.portal.admin_as(token)
    await helpdesk.list_users()
    taken = await g.admin.admin.set_role("hana", None)
    assert taken.role is None
    with pytest.raises(PermissionDenied):  # the same session, replayed
        await helpdesk.list_users()
    assert (await g.portal.enrollment.list_devices(token)).devices  # self-service goes on
    rows = await g.admin.admin.query_audit(username="hana", event="role_set")
    assert [(e.outcome, e.detail, e.actor) for e in rows.events] == [
        ("removed", "role=none was=helpdesk", "test-admin"), ("ok", "role=helpdesk was=none", "test-admin")]
    with pytest.raises(PermissionDenied):  # and a portal token cannot give it back by itself
        await g.portal.admin.set_role("hana", StaffRole.ADMIN)


async def test_mfactl_user_role(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    g = grpc_mfad
    await enrol("alice")

    async def mfactl(*args: str) -> subprocess.CompletedProcess[str]:
        return await run_mfactl(g.address, g.tokens[Role.ADMIN], *args)

    given = await mfactl("user", "role", "alice", "helpdesk")
    assert given.returncode == 0 and given.stdout == "alice: console role helpdesk\n", given
    assert "role:       helpdesk" in (await mfactl("user", "show", "alice")).stdout
    as_json = json.loads((await mfactl("--json", "user", "role", "alice", "auditor")).stdout)
    assert as_json["username"] == "alice" and as_json["role"] == "auditor"
    taken = await mfactl("user", "role", "alice", "none")
    assert taken.returncode == 0 and (await g.admin.admin.get_user("alice")).user.role is None
    bad = await mfactl("user", "role", "alice", "root")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    unknown = await mfactl("user", "role", "nobody", "admin")
    assert unknown.returncode == 1
    denied = await run_mfactl(g.address, g.tokens[Role.PORTAL], "user", "role", "alice", "admin")
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr


async def _every_admin_method(g: GrpcMfad, metadata: tuple[tuple[str, str], ...]) -> dict[str, grpc.StatusCode]:
    """Each Admin method called with an empty request and ``metadata``: its status code."""
    codes = {}
    async with grpc.aio.insecure_channel(g.address) as channel:
        for method in pb.DESCRIPTOR.services_by_name["Admin"].methods:
            request = message_factory.GetMessageClass(method.input_type)()
            response = message_factory.GetMessageClass(method.output_type)
            call = channel.unary_unary(f"/mfad.v1.Admin/{method.name}",
                                       request_serializer=type(request).SerializeToString,
                                       response_deserializer=response.FromString)
            try:
                await call(request, metadata=metadata, timeout=10)
                codes[method.name] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                codes[method.name] = exc.code()
    return codes


async def test_no_admin_method_answers_a_portal_or_service_token_without_a_console_session(
        grpc_mfad: GrpcMfad, enrol: Enrol, db: Any) -> None:
    g = grpc_mfad
    await enrol("alice")
    before = int((await db.rows("SELECT count(*) AS n FROM users"))[0]["n"])
    for role in (Role.PORTAL, Role.SERVICE):
        codes = await _every_admin_method(g, (("authorization", f"Bearer {g.tokens[role]}"),))
        assert set(codes.values()) == {grpc.StatusCode.PERMISSION_DENIED}, (role, codes)
    # A service token cannot borrow a console user's session: only portal callers act for one.
    _, token = await staff_session(g, enrol, "ada", StaffRole.ADMIN)
    codes = await _every_admin_method(g, (("authorization", f"Bearer {g.tokens[Role.SERVICE]}"),
                                          ("x-mfad-session", token)))
    assert set(codes.values()) <= {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}, codes
    assert int((await db.rows("SELECT count(*) AS n FROM users"))[0]["n"]) == before + 1  # ada, made above


async def test_every_sensitive_admin_method_needs_a_fresh_second_factor_and_no_other_does(
        grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock) -> None:
    g = grpc_mfad
    _, token = await staff_session(g, enrol, "ada", StaffRole.ADMIN)
    clock.advance(301)  # the policy's sensitive_reauth_seconds is 300
    codes = await _every_admin_method(g, (("authorization", f"Bearer {g.tokens[Role.PORTAL]}"),
                                          ("x-mfad-session", token)))
    stale = {m for m, code in codes.items() if code is grpc.StatusCode.FAILED_PRECONDITION}
    sensitive = {m for m, needs in PERMISSIONS.items() if needs in SENSITIVE}
    assert {"SetPolicy", "SetUserRole", "CreateCallerToken", "RevokeCallerToken", "UnbindDevice"} <= sensitive
    assert stale == sensitive, codes
