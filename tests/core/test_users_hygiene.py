"""Usernames have one stored form; a new local password must pass the password policy.

Over both store engines, on a fixed clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mfad.config import Config, PasswordSettings, UserSettings
from mfad.core.errors import AlreadyExists, InvalidInput
from mfad.core.passwords import PasswordPolicy, common_passwords
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test", source="10.0.0.1")
GOOD = "a long enough passphrase"


async def test_usernames_are_stored_nfc_and_case_folded(mfa: Mfa, enrol: Any) -> None:
    alice = await enrol("Alice")
    assert alice.user.username == "alice"
    assert (await mfa.users.get("ALICE")).id == alice.user.id
    assert (await verify_code(mfa.signin, "ALIce", alice.code(1), ATTEMPT)).accepted
    with pytest.raises(AlreadyExists):
        await mfa.users.create("aLiCe", None)
    decomposed = await mfa.users.create("Zoe\u0308", None)          # "Zoë" typed with a combining diaeresis
    assert decomposed.username == "zo\u00eb"
    assert (await mfa.users.get("ZO\u00cb")).id == decomposed.id
    assert [u.username for u in await mfa.users.list(prefix="ZO")] == ["zo\u00eb"]
    for name in ("alice.smith@example.com", "j-doe+vpn", "user_42", "\u0440\u043e\u043c\u0430\u043d"):
        assert (await mfa.users.create(name, None)).username == name


async def test_case_sensitive_names_when_configured(mfa_factory: Callable[..., Awaitable[Mfa]], store: Any,
                                                    config: Config) -> None:
    mfa = await mfa_factory(store=store, config=dataclasses.replace(
        config, users=UserSettings(case_insensitive=False)))
    upper = await mfa.users.create("Alice", None)
    lower = await mfa.users.create("alice", None)
    assert (upper.username, lower.username) == ("Alice", "alice") and upper.id != lower.id
    assert (await mfa.users.create("Zoe\u0308", None)).username == "Zo\u00eb"  # NFC all the same


@pytest.mark.parametrize(("password", "reason"), [
    ("short", "must be at least 12 characters"),
    ("x1" * 129, "must be at most 256 characters"),
    ("aaaaaaaaaaaaaaaa", "must have at least 4 different characters"),
    ("1212121212121212", "must have at least 4 different characters"),
    ("123456789012", "is one of the most common passwords"),
    ("Password2026!", "is one of the most common passwords"),
    ("p@ssw0rd12345", "is one of the most common passwords"),
    ("QWERTYUIOP123", "is one of the most common passwords"),
    ("passwordpassword", "is one of the most common passwords"),
    ("#1 Dragon 2026", "is one of the most common passwords"),
    ("iloveyouiloveyou", "is one of the most common passwords"),
    ("alice-1234567", "must not be the username"),
])
async def test_a_new_password_must_pass_the_policy(mfa: Mfa, db: Any, password: str, reason: str) -> None:
    before = await db.counts()
    with pytest.raises(InvalidInput) as refused:
        await mfa.users.create("alice", password)
    assert refused.value.field == "password" and reason in refused.value.reason
    assert await db.counts() == before  # no user, no audit row
    await mfa.users.create("alice", GOOD)
    with pytest.raises(InvalidInput, match=reason):
        await mfa.users.set_password("alice", password)


async def test_the_policy_is_configurable_and_old_passwords_keep_working(
        mfa_factory: Callable[..., Awaitable[Mfa]], store: Any, config: Config) -> None:
    lax = await mfa_factory(store=store, config=dataclasses.replace(config, passwords=dataclasses.replace(
        config.passwords, min_length=6, refuse_common=False)))
    await lax.users.create("bob", "dragon")
    strict = await mfa_factory(store=store)
    result = await begin(strict.signin, "bob", "dragon", ATTEMPT)  # set under the old policy: still signs in
    assert result.outcome is Outcome.ENROLMENT_REQUIRED, result
    with pytest.raises(InvalidInput, match="at least 12"):
        await strict.users.set_password("bob", "dragon")
    await strict.users.set_password("bob", "correct horse battery staple")


def test_the_bundled_list_is_lower_case_and_holds_the_classics() -> None:
    words = common_passwords()
    assert 300 <= len(words) <= 2000
    assert all(w == w.casefold().strip() and w for w in words)
    assert {"123456", "password", "qwerty", "iloveyou", "letmein", "dragon"} <= words
    assert PasswordPolicy(min_length=1, refuse_common=False).check("1") is None


def test_config_keys_and_their_bounds() -> None:
    assert PasswordSettings().to_policy() == PasswordPolicy(min_length=12, max_length=256, refuse_common=True)
    assert UserSettings().to_rules().case_insensitive


async def test_every_totp_secret_is_exported_across_pages_of_users(mfa: Mfa,
                                                                  enrol: Callable[..., Awaitable[Any]]) -> None:
    """The export walks the users a page at a time (by username): none skipped, none twice."""
    for name in ("zed", "amy", "kim", "bob", "eve"):  # made out of name order
        await enrol(name, password=None)
    exported = await mfa.devices.export_totp_secrets(actor="test", page=2)
    assert sorted(e.username for e in exported) == ["amy", "bob", "eve", "kim", "zed"]
