"""The Admin service and the one-call checks through the real servicers: status codes, paging,
caller tokens, lock-outs, audit and the gRPC metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401

from mfad.core.clock import FixedClock
from mfad.core.model import Role
from mfad_client import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Method,
    MfaRequired,
    NotFound,
    PermissionDenied,
    SignInOutcome,
    Unauthenticated,
    VerifyOutcome,
)
from mfad_client import Role as ClientRole

Enrol = Callable[..., Awaitable[Any]]


async def test_users_are_created_listed_in_pages_shown_and_refused_twice(grpc_mfad: GrpcMfad) -> None:
    admin = grpc_mfad.admin.admin
    for name in ("eve", "cat", "ann", "dan", "bob"):  # made out of order: listed by username
        await admin.create_user(name, "pw-0123456789" if name != "dan" else None)
    with pytest.raises(AlreadyExists):
        await admin.create_user("ann", "pw-0123456789")
    first = await admin.list_users(page_size=2)
    second = await admin.list_users(page_size=2, page_token=first.next_page_token)
    third = await admin.list_users(page_size=2, page_token=second.next_page_token)
    assert [u.username for p in (first, second, third) for u in p.users] == ["ann", "bob", "cat", "dan", "eve"]
    assert third.next_page_token == ""
    assert [u.has_password for u in second.users] == [True, False]
    await admin.create_user("bea")  # a name made between two pages lands where it sorts; paging goes on
    assert [u.username for u in (await admin.list_users(page_size=2, page_token=first.next_page_token)).users] == [
        "cat", "dan"]
    assert [u.username for u in (await admin.list_users(prefix="e")).users] == ["eve"]
    with pytest.raises(InvalidArgument, match="page_size"):
        await admin.list_users(page_size=501)
    with pytest.raises(InvalidArgument, match="page_token"):
        await admin.list_users(page_token="not-a-token")
    with pytest.raises(InvalidArgument, match="page_token"):
        await admin.list_users(page_token="u.__8")  # not UTF-8 inside
    with pytest.raises(NotFound):
        await admin.get_user("zed")
    with pytest.raises(InvalidArgument, match="username"):
        await admin.create_user("x" * 65)


async def test_totp_provisioning_for_a_user_and_one_of_each(grpc_mfad: GrpcMfad, clock: FixedClock,
                                                          totp_code: Callable[..., str]) -> None:
    admin = grpc_mfad.admin.admin
    await admin.create_user("ann", "pw-0123456789")
    p = await admin.bind_totp("ann", "phone")
    assert p.issuer == "mfad" and p.account_name == "ann" and p.digits == 6 and p.period_seconds == 30
    assert p.otpauth_uri.startswith("otpauth://totp/mfad:ann?secret=" + p.secret_base32)
    assert p.qr_png.startswith(b"\x89PNG") and p.qr_svg.startswith("<svg")
    import base64

    key = base64.b32decode(p.secret_base32 + "=" * (-len(p.secret_base32) % 8))
    with pytest.raises(FailedPrecondition):
        await admin.confirm_totp("ann", p.device_id, totp_code(key, clock.now(), steps=5))
    device, listing = await admin.confirm_totp("ann", p.device_id, totp_code(key, clock.now()))
    assert device.name == "phone" and listing.lockout_risk
    with pytest.raises(FailedPrecondition, match="unbind it first"):
        await admin.bind_totp("ann")
    with pytest.raises(InvalidArgument, match="device_id"):
        await admin.confirm_totp("ann", "first", "123456")
    with pytest.raises(NotFound):
        await admin.unbind_device("ann", "999999")
    assert (await admin.unbind_device("ann", device.id, "lost phone")).devices == ()


async def test_verify_code_accepts_once_and_locks_out_after_ten_failures(grpc_mfad: GrpcMfad, enrol: Enrol,
                                                                         clock: FixedClock) -> None:
    alice = await enrol("alice")
    service = grpc_mfad.service
    code = alice.code(1)
    assert await service.auth.verify_code("alice", code) is VerifyOutcome.ACCEPTED
    assert await service.auth.verify_code("alice", code) is VerifyOutcome.REFUSED  # replay
    assert await service.auth.verify_code("nobody", code) is VerifyOutcome.REFUSED
    wrong = alice.wrong_codes()
    for _ in range(10):
        assert await service.auth.verify_code("alice", next(wrong)) is VerifyOutcome.REFUSED
    admin = grpc_mfad.admin.admin
    lock = await admin.get_lockout("alice")
    assert lock.locked and lock.locked_until is not None and lock.lockouts == 1
    clock.advance(30)
    assert await service.auth.verify_code("alice", alice.code(1)) is VerifyOutcome.REFUSED  # locked: looks the same
    reset = await admin.reset_lockout("alice")
    assert not reset.locked and reset.consecutive_failures == 0
    assert await service.auth.verify_code("alice", alice.code(1)) is VerifyOutcome.ACCEPTED


async def test_caller_tokens_roles_and_revocation_at_once(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    await enrol("alice")
    admin = grpc_mfad.admin.admin
    made = await admin.create_caller_token("vpn-gw-1", ClientRole.SERVICE)
    assert made.caller_token.role is ClientRole.SERVICE and made.token.startswith("mfad_")
    with pytest.raises(AlreadyExists):
        await admin.create_caller_token("vpn-gw-1", ClientRole.SERVICE)
    with pytest.raises(InvalidArgument, match="name"):
        await admin.create_caller_token("has space", ClientRole.SERVICE)
    vpn = grpc_mfad.client(token=made.token)
    assert (await vpn.auth.begin_sign_in("alice", None)).outcome is SignInOutcome.SECOND_FACTOR_REQUIRED
    with pytest.raises(PermissionDenied):
        await vpn.admin.get_policy()
    with pytest.raises(PermissionDenied):
        await vpn.enrollment.list_devices("mfs1_whatever")
    names = [c.name for c in await admin.list_caller_tokens()]
    assert "vpn-gw-1" in names and names == sorted(names)
    revoked = await admin.revoke_caller_token("vpn-gw-1")
    assert revoked.revoked
    with pytest.raises(Unauthenticated):  # at once, although the answer was cached
        await vpn.auth.verify_code("alice", "123456")
    assert "vpn-gw-1" not in [c.name for c in await admin.list_caller_tokens()]
    assert "vpn-gw-1" in [c.name for c in await admin.list_caller_tokens(include_revoked=True)]
    with pytest.raises(NotFound):
        await admin.revoke_caller_token("vpn-gw-1")
    with pytest.raises(Unauthenticated):
        await grpc_mfad.client(role=None).admin.get_policy()


async def test_caller_tokens_with_an_expiry(grpc_mfad: GrpcMfad, enrol: Enrol, clock: FixedClock) -> None:
    await enrol("alice")
    admin = grpc_mfad.admin.admin
    expires = clock.now() + timedelta(hours=1)
    made = await admin.create_caller_token("batch", ClientRole.SERVICE, expires_at=expires)
    assert made.caller_token.expires_at == expires
    assert [c.expires_at for c in await admin.list_caller_tokens() if c.name == "batch"] == [expires]
    with pytest.raises(InvalidArgument, match="expires_at: must be in the future"):
        await admin.create_caller_token("late", ClientRole.SERVICE, expires_at=clock.now() - timedelta(seconds=1))
    clock.advance(3600)
    with pytest.raises(Unauthenticated):  # its first call: nothing cached
        await grpc_mfad.client(token=made.token).auth.begin_sign_in("alice", None)


async def test_policy_is_read_and_changed_only_where_valid(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    alice = await enrol("alice")
    admin = grpc_mfad.admin.admin
    assert (await admin.get_policy()).mfa_required is MfaRequired.ALL
    changed = await admin.set_policy(mfa_required=MfaRequired.OFF, allowed_methods=[Method.TOTP, Method.PASSKEY])
    assert changed.mfa_required is MfaRequired.OFF and changed.allowed_methods == (Method.TOTP, Method.PASSKEY)
    assert changed.remember_days == 7  # untouched
    signed = await grpc_mfad.portal.auth.begin_sign_in("alice", alice.password)
    assert signed.outcome is SignInOutcome.ALLOWED and signed.session is not None
    for bad in ({"remember_days": 0}, {"allowed_methods": []}, {"sensitive_reauth_seconds": 10}):
        with pytest.raises(InvalidArgument, match=next(iter(bad))):
            await admin.set_policy(**bad)
    assert await admin.get_policy() == changed


async def test_audit_is_filtered_and_paged_newest_first(grpc_mfad: GrpcMfad, enrol: Enrol) -> None:
    await enrol("alice")
    await enrol("bob")
    admin = grpc_mfad.admin.admin
    page = await admin.query_audit(username="alice", page_size=1)
    rest = await admin.query_audit(username="alice", page_size=50, page_token=page.next_page_token)
    events = [*page.events, *rest.events]
    assert {e.username for e in events} == {"alice"}
    assert [int(e.id) for e in events] == sorted((int(e.id) for e in events), reverse=True)
    assert [e.event for e in reversed(events)][:3] == ["user_created", "device_bind_started", "device_bound"]
    created = await admin.query_audit(event="user_created")
    assert [e.username for e in created.events] == ["bob", "alice"]
    with pytest.raises(NotFound):
        await admin.query_audit(username="nobody")


async def test_every_call_is_counted_by_method_and_code(grpc_mfad: GrpcMfad) -> None:
    admin = grpc_mfad.admin.admin
    await admin.get_policy()
    with pytest.raises(NotFound):
        await admin.get_user("nobody")
    wanted = ['mfad_grpc_requests_total{code="OK",method="mfad.v1.Admin/GetPolicy"} 1.0',
              'mfad_grpc_requests_total{code="NOT_FOUND",method="mfad.v1.Admin/GetUser"} 1.0',
              'mfad_grpc_request_duration_seconds_count{method="mfad.v1.Admin/GetUser"} 1.0']
    # The server records a call when its handler returns, which can be just after the
    # client already holds the answer: wait (bounded) for the counts to land.
    for _ in range(100):
        text = generate_latest(grpc_mfad.registry).decode()
        if all(line in text for line in wanted):
            break
        await asyncio.sleep(0.02)
    for line in wanted:
        assert line in text


async def test_role_table_for_real_servicers(grpc_mfad: GrpcMfad) -> None:
    new = await grpc_mfad.new_token("portal-x", Role.PORTAL)
    with pytest.raises(PermissionDenied):
        await grpc_mfad.client(token=new).admin.list_users()
