"""Input that can never be valid: a clear InvalidInput naming the field, and nothing written.

Over both store engines; every test compares the row counts of every table before and after.
"""

from __future__ import annotations

from typing import Any

import pytest

from mfad.core.errors import InvalidInput, NotFound
from mfad.core.model import DeviceId, Method
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from signin_calls import begin, verify_code

ATTEMPT = Attempt(protocol="test", source="10.0.0.1")

BAD_USERNAMES = [
    "",
    "a" * 257,
    "nul\x00name",
    "new\nline",
    "tab\tname",
    "del\x7f",
    "zero\u200bwidth",                               # format character
    "line\u2028separator",
    "no\u00a0break",                                 # a space that is not " "
    b"al\xffce".decode("utf-8", "surrogateescape"),  # non-UTF-8 bytes as a transport decodes them
    "\udcff",
    " alice",
    "alice ",
    "alice smith",                                   # outside the documented character set
    "DOMAIN\\alice",
    "a/b",
    "o'brien",
    "-alice",                                        # must start with a letter or a digit
    ".alice",
    "\u0301alice",                                   # a combining mark first
]


@pytest.fixture
async def counted(mfa: Mfa, enrol: Any, db: Any) -> Any:
    """An enrolled alice, then the row counts to compare against."""
    alice = await enrol("alice")
    return alice, await db.counts()


@pytest.mark.parametrize("username", BAD_USERNAMES, ids=repr)
async def test_bad_usernames_are_refused_before_anything_is_written(mfa: Mfa, counted: Any, db: Any,
                                                                    username: str) -> None:
    alice, before = counted
    calls = [
        lambda: mfa.users.create(username, "a long enough password"),
        lambda: begin(mfa.signin, username, "a long enough password", ATTEMPT),
        lambda: verify_code(mfa.signin, username, alice.code(1), ATTEMPT),
        lambda: mfa.devices.begin_totp(username),
        lambda: mfa.users.set_password(username, "a long enough password"),
    ]
    if username:  # no username and no password is the start of a usernameless passkey sign-in
        calls.append(lambda: begin(mfa.signin, username, None, ATTEMPT))
    for call in calls:
        with pytest.raises(InvalidInput) as err:
            await call()
        assert err.value.field == "username"
    assert await db.counts() == before


async def test_longest_username_is_fine(mfa: Mfa) -> None:
    user = await mfa.users.create("a" * 256, None)
    assert user.username == "a" * 256
    assert (await mfa.store.load_user_by_name("a" * 256)) == user


BAD_CODES = ["", " 123456", "123456 ", "123 456", "12345a", "abcdef", "12345", "123456789", "１２３４５６",
             "١٢٣٤٥٦", "12-456", "+12345"]


@pytest.mark.parametrize("code", BAD_CODES, ids=repr)
async def test_bad_codes_are_refused_before_anything_is_written(mfa: Mfa, counted: Any, db: Any, bind: Any,
                                                                code: str) -> None:
    alice, before = counted
    begun = await begin(mfa.signin, "alice", alice.password, ATTEMPT)
    await mfa.users.create("bob", None)
    pending = await bind("bob")
    before = await db.counts()
    for call in (
        lambda: verify_code(mfa.signin, "alice", code, ATTEMPT),
        lambda: verify_code(mfa.signin, "nobody", code, ATTEMPT),
        lambda: mfa.signin.complete(begun.challenge_id or "", Method.TOTP, code, ATTEMPT),
        lambda: mfa.devices.confirm_totp("bob", pending.device.id, code),
    ):
        with pytest.raises(InvalidInput) as err:
            await call()
        assert err.value.field == "code"
    assert await db.counts() == before
    # The challenge kept all its tries.
    assert (await mfa.signin.complete(begun.challenge_id or "", Method.TOTP, alice.code(1), ATTEMPT)).accepted


@pytest.mark.parametrize("password", ["", "x" * 1025, "é" * 513, "nul\x00inside"], ids=["empty", "long", "long-utf8",
                                                                                       "nul"])
async def test_bad_passwords_are_refused_before_anything_is_written(mfa: Mfa, counted: Any, db: Any,
                                                                    password: str) -> None:
    _, before = counted
    for call in (lambda: begin(mfa.signin, "alice", password, ATTEMPT),
                 lambda: mfa.users.create("carol", password),
                 lambda: mfa.users.set_password("alice", password)):
        with pytest.raises(InvalidInput) as err:
            await call()
        assert err.value.field == "password"
    assert await db.counts() == before


async def test_unknown_device_ids_are_clear_errors(mfa: Mfa, counted: Any, db: Any) -> None:
    alice, before = counted
    for device_id in (DeviceId(0), DeviceId(-1), DeviceId(2**62)):
        with pytest.raises(NotFound):
            await mfa.devices.confirm_totp("alice", device_id, alice.code(1))
        with pytest.raises(NotFound):
            await mfa.devices.unbind("alice", device_id, actor="ops", as_admin=True)
    assert await db.counts() == before


async def test_unknown_user_in_administration_is_not_found(mfa: Mfa, counted: Any, db: Any) -> None:
    _, before = counted
    for call in (lambda: mfa.users.set_password("nobody", "pw"), lambda: mfa.users.set_disabled("nobody", True),
                 lambda: mfa.devices.list("nobody"), lambda: mfa.lockout("nobody"),
                 lambda: mfa.reset_lockout("nobody", actor="ops")):
        with pytest.raises(NotFound):
            await call()
    assert await db.counts() == before


@pytest.mark.parametrize("page_size", [0, 1001])
async def test_bad_page_sizes(mfa: Mfa, page_size: int) -> None:
    with pytest.raises(InvalidInput) as err:
        await mfa.users.list(limit=page_size)
    assert err.value.field == "page_size"
