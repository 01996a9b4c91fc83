"""The directory first factor over gRPC (BeginSignIn) and ``mfactl user prune --directory``,
with a real slapd and a real gRPC server on both store engines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from mfactl_runner import run_mfactl
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401  (fixture)
from test_directory_signin import corp

from mfad.core.directory import Directory
from mfad.core.model import Role
from mfad.core.ports import Store
from mfad.core.service import Mfa
from mfad.directory.ldap import LdapDirectory
from mfad_client import SignInOutcome, Unavailable
from slapd_peer import Slapd

pytestmark = pytest.mark.slow


@pytest.fixture
async def mfa(mfa_factory: Callable[..., Awaitable[Mfa]], store: Store, slapd: Slapd,
              silent_port: int) -> AsyncIterator[Mfa]:
    """Directory ``corp`` judges gRPC sign-ins; ``down`` (a silent server) judges none but is pruned against."""
    directories: dict[str, Directory] = {
        "corp": LdapDirectory(corp(slapd)),
        "down": LdapDirectory(corp(slapd, name="down", servers=[f"ldaps://127.0.0.1:{silent_port}"],
                                   timeout_seconds=0.3))}
    yield await mfa_factory(store=store, directories=directories, first_factor_by_protocol={"grpc": "corp"})
    for directory in directories.values():
        await directory.aclose()


async def test_begin_sign_in_checks_the_directory_and_provisions(grpc_mfad: GrpcMfad) -> None:
    portal = grpc_mfad.portal
    started = await portal.auth.begin_sign_in("dave", "dave-directory-pw")
    assert started.outcome is SignInOutcome.ENROLMENT_REQUIRED
    refused = await portal.auth.begin_sign_in("dave", "wrong-password")
    unknown = await portal.auth.begin_sign_in("nobody", "wrong-password")
    assert refused.outcome is unknown.outcome is SignInOutcome.REFUSED
    shown = await run_mfactl(grpc_mfad.address, grpc_mfad.tokens[Role.ADMIN], "--json", "user", "show", "dave")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["user"]["username"] == "dave"


async def test_mfactl_prune_lists_then_disables(grpc_mfad: GrpcMfad, slapd: Slapd) -> None:
    await grpc_mfad.portal.auth.begin_sign_in("alice", "alice-directory-pw")
    token = grpc_mfad.tokens[Role.ADMIN]
    slapd.delete("alice")
    try:
        listed = await run_mfactl(grpc_mfad.address, token, "--json", "user", "prune", "--directory", "corp")
        assert listed.returncode == 0, listed.stderr
        items = json.loads(listed.stdout)["items"]
        assert [(u["username"], u["why"], u["disabled"]) for u in items] == [("alice", "unknown", False)]
        done = await run_mfactl(grpc_mfad.address, token, "user", "prune", "--directory", "corp", "--disable")
        assert done.returncode == 0 and "alice\tcorp\tunknown\tdisabled" in done.stdout, done
        assert (await grpc_mfad.mfa.users.get("alice")).disabled
    finally:
        slapd.ldapadd("dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
                      "objectClass: mfadTestAdAccount\nuid: alice\ncn: Alice\nsn: Liddell\n"
                      "userAccountControl: 512\nuserPassword: alice-directory-pw\n")


async def test_prune_against_an_unreachable_directory_is_unavailable(grpc_mfad: GrpcMfad, store: Store) -> None:
    from mfad.core.directory import DirectoryEntry

    now = grpc_mfad.mfa.clock.now()
    await store.provision_user("zed", "down", DirectoryEntry(username="zed"), now, lambda _: [])
    with pytest.raises(Unavailable):
        await grpc_mfad.admin.admin.prune_directory_users("down", disable=True)
    assert not (await grpc_mfad.mfa.users.get("zed")).disabled
