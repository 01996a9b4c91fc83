"""The LDAP adapter against a real slapd: binds, searches, TLS, fail-over, timeouts, escaping."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from mfad.core.directory import Check, DirectoryReason
from mfad.core.errors import InvalidInput, Unavailable
from mfad.directory.ldap import LdapDirectory, escape_filter_value
from mfad.config import LdapSettings
from slapd_peer import GROUPS_BASE, PEOPLE_BASE, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, Slapd

pytestmark = pytest.mark.slow


def settings(slapd: Slapd, **overrides: object) -> LdapSettings:
    base = LdapSettings(name="corp", servers=[slapd.ldaps_url], ca_file=str(slapd.ca_file), bind_dn=SERVICE_DN,
                        bind_password=SERVICE_PASSWORD, base_dn=PEOPLE_BASE, user_filter="(objectClass=inetOrgPerson)",
                        check_account_control=True, timeout_seconds=1.0)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


async def check(s: LdapSettings, username: str, password: str) -> tuple[Check, DirectoryReason, object]:
    directory = LdapDirectory(s)
    try:
        found = await directory.authenticate(username, password)
    finally:
        await directory.aclose()
    return found.check, found.reason, found.entry


async def test_the_right_password_gives_the_profile_and_groups(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd))
    try:
        found = await directory.authenticate("dave", "dave-directory-pw")
        assert found.accepted and found.reason is DirectoryReason.ACCEPTED
        assert found.entry is not None
        assert (found.entry.display_name, found.entry.email) == ("Dave Staff", "dave@example.org")
        assert sorted(found.entry.groups) == ["staff", "vpn-contractors"]
        # The pooled service connection is reused for the next sign-in.
        assert (await directory.authenticate("alice", "alice-directory-pw")).accepted
    finally:
        await directory.aclose()


@pytest.mark.parametrize(("username", "password", "reason"), [
    ("alice", "wrong-password", DirectoryReason.WRONG_PASSWORD),
    ("alice", "Alice-directory-pw", DirectoryReason.WRONG_PASSWORD),
    ("nobody", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("carol", "carol-directory-pw", DirectoryReason.DISABLED),  # userAccountControl 514
    # Injection: none of these may widen the search to another entry.
    ("*", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("*)(uid=*", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("alice)(|(uid=*", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("al*", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("alice\x00", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
    ("\\2a", "alice-directory-pw", DirectoryReason.UNKNOWN_USER),
])
async def test_refusals(slapd: Slapd, username: str, password: str, reason: DirectoryReason) -> None:
    assert await check(settings(slapd), username, password) == (Check.REFUSED, reason, None)


def test_filter_escaping_follows_rfc_4515() -> None:
    assert escape_filter_value("*)(uid=*") == "\\2a\\29\\28uid=\\2a"
    assert escape_filter_value("a\\b\x00") == "a\\5cb\\00"
    assert escape_filter_value("zoë") == "zoë"


async def test_a_disabled_filter_refuses_without_account_control(slapd: Slapd) -> None:
    s = settings(slapd, check_account_control=False, disabled_filter="(userAccountControl=514)")
    assert (await check(s, "carol", "carol-directory-pw"))[0] is Check.REFUSED
    assert (await check(s, "alice", "alice-directory-pw"))[0] is Check.ACCEPTED
    # Without either, the directory's own word counts: carol can bind.
    s = settings(slapd, check_account_control=False)
    assert (await check(s, "carol", "carol-directory-pw"))[0] is Check.ACCEPTED


async def test_an_empty_password_is_never_sent(slapd: Slapd) -> None:
    # LDAP treats a simple bind without password as anonymous: it would "succeed".
    directory = LdapDirectory(settings(slapd))
    with pytest.raises(InvalidInput):
        await directory.authenticate("alice", "")
    await directory.aclose()


async def test_start_tls_and_a_group_search(slapd: Slapd) -> None:
    s = settings(slapd, servers=[slapd.ldap_url], start_tls=True, group_attribute="",
                 group_search_base=GROUPS_BASE, group_search_filter="(&(objectClass=groupOfNames)(member={dn}))")
    found, reason, entry = await check(s, "bob", "bob-directory-pw")
    assert found is Check.ACCEPTED and entry is not None
    assert entry.groups == ("vpn-contractors",)  # type: ignore[attr-defined]


async def test_a_certificate_from_another_ca_is_unavailable(slapd: Slapd, tmp_path: Path) -> None:
    other = Slapd(tmp_path)  # only for its (unrelated) CA
    other.ca_file.write_bytes(other.ca.pem)
    for servers in ([slapd.ldaps_url], [slapd.ldap_url]):
        with pytest.raises(Unavailable):
            await check(settings(slapd, servers=servers, ca_file=str(other.ca_file)), "alice", "alice-directory-pw")


async def test_a_wrong_service_password_fails_closed(slapd: Slapd) -> None:
    with pytest.raises(Unavailable):
        await check(settings(slapd, bind_password="not-the-service-password"), "alice", "alice-directory-pw")


async def test_a_silent_first_server_times_out_and_the_second_answers(slapd: Slapd, silent_port: int) -> None:
    s = settings(slapd, servers=[f"ldaps://127.0.0.1:{silent_port}", slapd.ldaps_url], timeout_seconds=0.5)
    started = time.monotonic()
    assert (await check(s, "alice", "alice-directory-pw"))[0] is Check.ACCEPTED
    assert time.monotonic() - started < 10  # bounded by the timeouts, not hanging


async def test_the_first_server_down_and_the_second_answering(slapd: Slapd, closed_port: int) -> None:
    s = settings(slapd, servers=[f"ldap://127.0.0.1:{closed_port}", slapd.ldap_url])
    assert (await check(s, "alice", "alice-directory-pw"))[0] is Check.ACCEPTED
    assert (await check(s, "alice", "wrong"))[1] is DirectoryReason.WRONG_PASSWORD


async def test_no_server_answering_is_unavailable_never_an_accept(silent_port: int, closed_port: int,
                                                                 slapd: Slapd) -> None:
    s = settings(slapd, servers=[f"ldaps://127.0.0.1:{silent_port}", f"ldap://127.0.0.1:{closed_port}"],
                 timeout_seconds=0.5)
    with pytest.raises(Unavailable):
        await check(s, "alice", "alice-directory-pw")


async def test_lookup_tells_known_unknown_and_disabled(slapd: Slapd) -> None:
    directory = LdapDirectory(settings(slapd))
    try:
        alice = await directory.lookup("alice")
        assert not isinstance(alice, DirectoryReason) and alice is not None and alice.email == "alice@example.org"
        assert await directory.lookup("nobody") is None
        assert await directory.lookup("carol") is DirectoryReason.DISABLED
    finally:
        await directory.aclose()


async def test_anonymous_search_sees_nothing_here(slapd: Slapd) -> None:
    # This slapd lets only the service account read entries: anonymous search finds no one.
    s = settings(slapd, bind_dn=None, bind_password=None)
    assert (await check(s, "alice", "alice-directory-pw"))[1] is DirectoryReason.UNKNOWN_USER
    assert SUFFIX in PEOPLE_BASE
