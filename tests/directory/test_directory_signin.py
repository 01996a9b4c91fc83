"""Sign-in with the directory as the first factor, end to end: a real slapd, the real core
on both store engines, RADIUS through radclient (challenge mode) and the gRPC-side core
entry point, with a TOTP code as the second factor."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mfad.config import Config, LdapSettings, UpstreamRadiusSettings
from mfad.core.clock import FixedClock
from mfad.core.directory import Directory
from mfad.core.errors import InvalidInput, Unavailable
from mfad.core.model import Method, PolicyRule
from mfad.core.ports import AuditFilter, Store
from mfad.core.provisioning import DirectoryUsers
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, Password, Reason, SignInRequest
from mfad.directory.ldap import LdapDirectory
from mfad.directory.radius import UpstreamRadius
from peer_tools import missing
from radius_peers import RADCLIENT
from signin_peers import StartDaemon, nas, radclient_sign_in, start_daemon  # noqa: F401  (fixture)
from slapd_peer import PEOPLE_BASE, SERVICE_DN, SERVICE_PASSWORD, Slapd

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(RADCLIENT is None, reason=missing("radclient", "freeradius-utils"))]
MakeMfa = Callable[..., Awaitable[Mfa]]


def corp(slapd: Slapd, **overrides: object) -> LdapSettings:
    base = LdapSettings(name="corp", servers=[slapd.ldaps_url], ca_file=str(slapd.ca_file), bind_dn=SERVICE_DN,
                        bind_password=SERVICE_PASSWORD, base_dn=PEOPLE_BASE,
                        user_filter="(objectClass=inetOrgPerson)", check_account_control=True, timeout_seconds=1.0)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def directory_mfa(mfa_factory: MakeMfa, store: Store, slapd: Slapd) -> AsyncIterator[Mfa]:
    """The core with directory ``corp`` judging RADIUS client ``vpn`` and the gRPC side."""
    directory: Directory = LdapDirectory(corp(slapd))
    yield await mfa_factory(store=store, directories={"corp": directory}, first_factor_by_client={"vpn": "corp"},
                            first_factor_by_protocol={"grpc": "corp"})
    await directory.aclose()


async def enrol_totp(mfa: Mfa, username: str, bind: Callable[..., Awaitable[object]]) -> object:
    pending = await bind(username, on=mfa)
    await mfa.devices.confirm_totp(username, pending.device.id, pending.code())  # type: ignore[attr-defined]
    return pending


async def test_radius_sign_in_with_the_directory_password_and_a_totp_code(
        directory_mfa: Mfa, start_daemon: StartDaemon, bind: Callable[..., Awaitable[object]], store: Store) -> None:
    server = await start_daemon(clients=[nas("vpn")], on=directory_mfa)
    # First sign-in: the directory accepts, mfad provisions dave (no device yet: enrol first).
    first = await radclient_sign_in(server, "dave", "dave-directory-pw")
    assert first.reply == "Access-Reject", first.output
    user = await directory_mfa.users.get("dave")
    assert (user.directory, user.display_name, user.profile_email, user.password_hash) == (
        "corp", "Dave Staff", "dave@example.org", None)
    assert sorted(user.groups) == ["staff", "vpn-contractors"]
    assert await store.load_devices(user.id) == []  # the profile email is not a security email
    provisioned = await store.query_audit(AuditFilter(event="user_provisioned"))
    assert [(r.event.username, r.event.detail) for r in provisioned] == [("dave", "directory=corp")]

    pending = await enrol_totp(directory_mfa, "dave", bind)
    challenge = await radclient_sign_in(server, "dave", "dave-directory-pw")
    assert challenge.reply == "Access-Challenge", challenge.output
    accepted = await radclient_sign_in(server, "dave", pending.code(1), challenge.first("State"))  # type: ignore[attr-defined]
    assert accepted.reply == "Access-Accept", accepted.output
    # Still one provisioning row: the second sign-in found the record.
    assert len(await store.query_audit(AuditFilter(event="user_provisioned"))) == 1


@pytest.mark.parametrize(("username", "password", "reason"), [
    ("alice", "wrong-password", Reason.UNKNOWN_USER),      # not provisioned: no local record
    ("nobody", "whatever-password", Reason.UNKNOWN_USER),
    ("carol", "carol-directory-pw", Reason.UNKNOWN_USER),  # disabled in the directory
])
async def test_refusals_read_the_same_and_provision_nobody(
        directory_mfa: Mfa, start_daemon: StartDaemon, store: Store, username: str, password: str,
        reason: Reason) -> None:
    server = await start_daemon(clients=[nas("vpn")], on=directory_mfa)
    refused = await radclient_sign_in(server, username, password)
    assert refused.reply == "Access-Reject", refused.output
    known = await radclient_sign_in(server, "alice", "wrong-password")
    assert refused.first("Reply-Message") == known.first("Reply-Message")
    assert await store.list_users(None, 10) == []
    rows = await store.query_audit(AuditFilter(event="signin"))
    assert rows[0].event.reason == reason.value


async def test_injection_in_the_username_is_refused(directory_mfa: Mfa, start_daemon: StartDaemon,
                                                    store: Store) -> None:
    server = await start_daemon(clients=[nas("vpn")], on=directory_mfa)
    for name in ("*", "*)(uid=*", "alice)(|(uid=*", "al*"):
        refused = await radclient_sign_in(server, name, "alice-directory-pw")
        assert refused.reply == "Access-Reject", refused.output
    assert await store.list_users(None, 10) == []


async def test_a_user_removed_or_disabled_in_the_directory_can_no_longer_sign_in(
        directory_mfa: Mfa, slapd: Slapd, store: Store) -> None:
    attempt = Attempt(protocol="grpc", client="portal")
    ok = await directory_mfa.signin.sign_in(SignInRequest(username="bob", first_factor=Password("bob-directory-pw"),
                                                          attempt=attempt))
    assert ok.outcome is Outcome.ENROLMENT_REQUIRED
    slapd.set_account_control("bob", 514)
    try:
        refused = await directory_mfa.signin.sign_in(SignInRequest(
            username="bob", first_factor=Password("bob-directory-pw"), attempt=attempt))
        assert (refused.outcome, refused.reason) == (Outcome.REFUSED, Reason.DIRECTORY_DISABLED)
    finally:
        slapd.set_account_control("bob", 512)


async def test_an_unreachable_directory_is_no_reply_over_radius_and_unavailable_in_the_core(
        mfa_factory: MakeMfa, store: Store, start_daemon: StartDaemon, slapd: Slapd, silent_port: int) -> None:
    down: Directory = LdapDirectory(corp(slapd, servers=[f"ldaps://127.0.0.1:{silent_port}"], timeout_seconds=0.3))
    mfa = await mfa_factory(store=store, directories={"corp": down}, first_factor_by_client={"vpn": "corp"},
                            first_factor_by_protocol={"grpc": "corp"})
    server = await start_daemon(clients=[nas("vpn")], on=mfa)
    silent = await radclient_sign_in(server, "dave", "dave-directory-pw")
    assert silent.reply is None, silent.output  # the NAS fails over to its next server
    with pytest.raises(Unavailable):
        await mfa.signin.sign_in(SignInRequest(username="dave", first_factor=Password("dave-directory-pw"),
                                               attempt=Attempt(protocol="grpc", client="portal")))
    assert await store.list_users(None, 10) == []
    await down.aclose()


async def test_other_clients_keep_the_local_first_factor(directory_mfa: Mfa, start_daemon: StartDaemon,
                                                         enrol: Callable[..., Awaitable[object]]) -> None:
    await enrol("erin", password="erin-local-password-1", on=directory_mfa)
    server = await start_daemon(clients=[nas("lab")], on=directory_mfa)
    assert (await radclient_sign_in(server, "erin", "erin-local-password-1")).reply == "Access-Challenge"
    assert (await radclient_sign_in(server, "dave", "dave-directory-pw")).reply == "Access-Reject"


async def test_group_rules_give_two_users_different_methods_and_remembering(
        directory_mfa: Mfa, bind: Callable[..., Awaitable[object]]) -> None:
    await directory_mfa.policy.update(actor="admin", remember_device=True)
    await directory_mfa.policy.set_rule(PolicyRule(name="contractors", groups=("vpn-contractors",),
                                                   allowed_methods=frozenset({Method.PASSKEY, Method.TOTP}),
                                                   remember_device=False), position=None, actor="admin")
    attempt = Attempt(protocol="grpc", client="portal")
    results = {}
    for name in ("alice", "bob"):  # alice: staff; bob: vpn-contractors
        await directory_mfa.signin.sign_in(SignInRequest(username=name, first_factor=Password(f"{name}-directory-pw"),
                                                         attempt=attempt))
        pending = await enrol_totp(directory_mfa, name, bind)
        started = await directory_mfa.signin.sign_in(SignInRequest(
            username=name, first_factor=Password(f"{name}-directory-pw"), attempt=attempt))
        assert started.challenge_id is not None
        done = await directory_mfa.signin.complete(started.challenge_id, Method.TOTP, pending.code(1),  # type: ignore[attr-defined]
                                                   attempt, remember=True)
        assert done.accepted
        results[name] = (started.methods, done.remembered_token is not None)
        user = await directory_mfa.users.get(name)
        assert (await directory_mfa.policy.effective(user, "portal")).allows(Method.EMAIL) is (name == "alice")
    assert results["alice"][1] is True and results["bob"][1] is False


async def test_prune_lists_and_disables_users_the_directory_no_longer_knows(
        directory_mfa: Mfa, slapd: Slapd, store: Store) -> None:
    attempt = Attempt(protocol="grpc", client="portal")
    for name in ("alice", "dave"):
        await directory_mfa.signin.sign_in(SignInRequest(username=name, first_factor=Password(f"{name}-directory-pw"),
                                                         attempt=attempt))
    await directory_mfa.users.create("local-user", "local-password-123456")
    assert await directory_mfa.directory_users.prune(disable=False, actor="admin") == []
    slapd.set_account_control("alice", 514)
    try:
        listed = await directory_mfa.directory_users.prune("corp", disable=False, actor="admin")
        assert [(s.username, s.why, s.disabled) for s in listed] == [("alice", "disabled", False)]
        assert not (await directory_mfa.users.get("alice")).disabled
        done = await directory_mfa.directory_users.prune("corp", disable=True, actor="admin")
        assert [(s.username, s.disabled) for s in done] == [("alice", True)]
        assert (await directory_mfa.users.get("alice")).disabled
        assert not (await directory_mfa.users.get("local-user")).disabled
        rows = await store.query_audit(AuditFilter(event="user_disabled"))
        assert [(r.event.username, r.event.reason) for r in rows] == [("alice", "directory_disabled")]
        # Disabled in mfad: listed no more.
        assert await directory_mfa.directory_users.prune("corp", disable=False, actor="admin") == []
    finally:
        slapd.set_account_control("alice", 512)


async def test_prune_leaves_out_a_directory_that_cannot_look_users_up(
        directory_mfa: Mfa, slapd: Slapd, store: Store, clock: FixedClock) -> None:
    await directory_mfa.signin.sign_in(SignInRequest(username="alice", first_factor=Password("alice-directory-pw"),
                                                     attempt=Attempt(protocol="grpc", client="portal")))
    # An upstream RADIUS server answers only with a password: prune never asks it, and refuses
    # to be pointed at it (the refusal comes before any packet, so no server is needed here).
    upstream = UpstreamRadius(UpstreamRadiusSettings(name="nps", servers=["127.0.0.1:9"], secret="s3cret"))
    corp_directory = LdapDirectory(corp(slapd))
    users = DirectoryUsers(store, clock, {"corp": corp_directory, "nps": upstream})
    slapd.set_account_control("alice", 514)
    try:
        with pytest.raises(InvalidInput, match="cannot look users up"):
            await users.prune("nps", disable=True, actor="admin")
        assert not (await directory_mfa.users.get("alice")).disabled
        # Every directory: only corp is asked, and it vouches no more for alice.
        assert [(s.directory, s.username) for s in await users.prune(disable=False, actor="admin")] == [
            ("corp", "alice")]
    finally:
        slapd.set_account_control("alice", 512)
        await corp_directory.aclose()
