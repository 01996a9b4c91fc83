"""One-time enrolment codes and ``enrolment_proof``, on a fixed clock, over both store engines.

With ``access_code`` an enrolment session binds nothing until it presents the code an
administrator issued (single use, expiring, hashed, replaced by a newer one, audited);
with ``email_code`` until it presents a code mailed to the user; ``none`` keeps the
password alone. Every refusal is the same ``False``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mfad.core import enrolment
from mfad.core.errors import InvalidInput, PermissionDenied, PreconditionFailed
from mfad.core.model import EnrolmentProof
from mfad.core.outbox import open_body
from mfad.core.selfservice import Use
from mfad.core.service import Mfa
from mfad.core.sessions import SessionScope
from mfad.core.verification import Attempt, Outcome

ATTEMPT = Attempt(protocol="test", source="192.0.2.7", client="portal")


async def enrolment_session(mfa: Mfa, name: str, password: str) -> str:
    begun = await mfa.selfservice.begin(name, password, ATTEMPT, caller="portal")
    assert begun.result.outcome is Outcome.ENROLMENT_REQUIRED and begun.session is not None
    assert begun.session.scope is SessionScope.ENROLMENT
    return begun.session.token


async def can_bind(mfa: Mfa, token: str) -> bool:
    try:
        session = await mfa.selfservice.authorize(token, "portal", Use.ENROL)
    except PermissionDenied:
        return False
    await mfa.selfservice.begin_totp(session, "phone")
    return True


async def audit(db: Any, event: str) -> list[tuple[str, str | None]]:
    return [(r["outcome"], r["reason"]) for r in await db.rows(
        "SELECT outcome, reason FROM audit WHERE event = $1 ORDER BY id", event)]


def test_codes_have_the_documented_shape() -> None:
    code = enrolment.new_code()
    assert len(code) == 12 and set(code) <= set(enrolment.recovery.ALPHABET)
    shown = enrolment.printed(code)
    assert shown == f"{code[:4]}-{code[4:8]}-{code[8:]}"
    assert enrolment.normalize(shown.lower()) == code and enrolment.normalize(f" {shown} ") == code
    for bad in ("", code[:11], code + "2", code[:11] + "0", "１" * 12):
        assert enrolment.normalize(bad) is None
    assert enrolment.check_hours(0) == 24
    for hours in (-1, 721):
        with pytest.raises(InvalidInput):
            enrolment.check_hours(hours)


async def test_none_keeps_the_password_alone(mfa: Mfa, password: str) -> None:
    await mfa.users.create("newbie", password)
    assert (await mfa.policy.current()).enrolment_proof is EnrolmentProof.NONE
    assert await can_bind(mfa, await enrolment_session(mfa, "newbie", password))


async def test_access_code_is_required_single_use_and_hashed(mfa: Mfa, password: str, db: Any) -> None:
    await mfa.policy.update(actor="test", enrolment_proof="access_code")
    await mfa.users.create("newbie", password)
    token = await enrolment_session(mfa, "newbie", password)
    assert not await can_bind(mfa, token)  # the password alone binds nothing
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", "ABCD-EFGH-JKMN", ATTEMPT)

    issued = await mfa.enrolment.issue("newbie", 0, ATTEMPT, actor="user:boss")
    assert issued.expires_at == mfa.clock.now() + timedelta(hours=24) and not issued.replaced
    stored = await db.rows("SELECT code_mac FROM enrolment_codes")
    clean = enrolment.normalize(issued.code)
    assert clean and len(stored) == 1 and clean not in stored[0]["code_mac"]
    assert stored[0]["code_mac"].startswith(f"{mfa.keyring.active_kid}:")

    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", "not a code", ATTEMPT)
    assert await mfa.selfservice.present_enrolment_proof(token, "portal", issued.code.lower(), ATTEMPT)
    assert await can_bind(mfa, token)

    # Used once: another enrolment session of the same user cannot use it again.
    again = await enrolment_session(mfa, "newbie", password)
    assert not await mfa.selfservice.present_enrolment_proof(again, "portal", issued.code, ATTEMPT)
    assert not await can_bind(mfa, again)
    assert await audit(db, "enrolment_code") == [("issued", None)]
    assert await audit(db, "enrolment_proof") == [
        ("refused", "no_code"), ("refused", "malformed"), ("used", None), ("refused", "no_code")]


async def test_expired_replaced_and_guessed_codes_are_refused(mfa: Mfa, password: str, db: Any) -> None:
    await mfa.policy.update(actor="test", enrolment_proof="access_code")
    await mfa.users.create("newbie", password)
    token = await enrolment_session(mfa, "newbie", password)
    old = await mfa.enrolment.issue("newbie", 1, ATTEMPT, actor="user:boss")
    new = await mfa.enrolment.issue("newbie", 2, ATTEMPT, actor="user:boss")
    assert new.replaced and old.code != new.code
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", old.code, ATTEMPT)

    mfa.clock.advance(2 * 3600 + 1)  # type: ignore[attr-defined]
    token = await enrolment_session(mfa, "newbie", password)
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", new.code, ATTEMPT)
    assert not await can_bind(mfa, token)

    # Five tries per code, spent before comparing: the sixth is refused even when right.
    third = await mfa.enrolment.issue("newbie", 0, ATTEMPT, actor="user:boss")
    wrong = enrolment.printed("2" * 12)
    for _ in range(enrolment.TRIES):
        assert not await mfa.selfservice.present_enrolment_proof(token, "portal", wrong, ATTEMPT)
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", third.code, ATTEMPT)
    assert not await can_bind(mfa, token)
    status = await mfa.enrolment.status("newbie")
    assert status is not None and status.tries_left == 0 and status.used_at is None


async def test_a_code_proves_only_for_its_user(mfa: Mfa, password: str) -> None:
    await mfa.policy.update(actor="test", enrolment_proof="access_code")
    await mfa.users.create("newbie", password)
    await mfa.users.create("other", password)
    issued = await mfa.enrolment.issue("other", 0, ATTEMPT, actor="user:boss")
    token = await enrolment_session(mfa, "newbie", password)
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", issued.code, ATTEMPT)
    assert not await can_bind(mfa, token)


async def test_email_code_needs_an_address_and_the_mailed_code(mfa: Mfa, password: str, db: Any) -> None:
    await mfa.policy.update(actor="test", enrolment_proof="email_code")
    await mfa.users.create("newbie", password)
    token = await enrolment_session(mfa, "newbie", password)
    with pytest.raises(PreconditionFailed, match="ask an administrator"):
        await mfa.selfservice.start_enrolment_proof(token, "portal", ATTEMPT)
    assert not await can_bind(mfa, token)
    assert ("refused", "no_address") in await audit(db, "enrolment_proof")

    await db.execute("UPDATE users SET profile_email = 'newbie@example.org' WHERE username = 'newbie'")
    started = await mfa.selfservice.start_enrolment_proof(token, "portal", ATTEMPT)
    assert started.proof is EnrolmentProof.EMAIL_CODE and started.sent is not None
    row = (await db.rows("SELECT id, sealed_body FROM email_outbox ORDER BY id DESC LIMIT 1"))[0]
    mail = open_body(mfa.keyring, row["sealed_body"], int(row["id"]))
    assert mail.to == "newbie@example.org"
    code = re.search(r"^    (\d{6})$", mail.text, re.M)
    assert code is not None
    wrong = f"{(int(code[1]) + 1) % 10**6:06d}"
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", wrong, ATTEMPT)
    assert not await can_bind(mfa, token)
    assert await mfa.selfservice.present_enrolment_proof(token, "portal", code[1], ATTEMPT)
    assert await can_bind(mfa, token)
    # The mailed code proves only the session that asked for it, once.
    other = await enrolment_session(mfa, "newbie", password)
    assert not await mfa.selfservice.present_enrolment_proof(other, "portal", code[1], ATTEMPT)


def test_policy_refuses_an_unknown_proof() -> None:
    from mfad.core.model import Policy
    from mfad.core.policy import _validated

    with pytest.raises(InvalidInput, match="enrolment_proof"):
        _validated(Policy(enrolment_proof="password"))  # type: ignore[arg-type]


def test_the_initial_policy_comes_from_the_config(tmp_path: Path) -> None:
    from mfad.config import load_config
    from mfad.core.errors import ConfigError

    path = tmp_path / "mfad.toml"
    path.write_text('[policy]\nenrolment_proof = "access_code"\n')
    assert load_config(path, env={}).policy.to_policy().enrolment_proof is EnrolmentProof.ACCESS_CODE
    path.write_text('[policy]\nenrolment_proof = "password"\n')
    with pytest.raises(ConfigError, match="policy.enrolment_proof"):
        load_config(path, env={})


async def test_racing_instances_accept_one_code_once(mfa: Mfa, password: str, mfa_factory: Any,
                                                     store_opener: Any, db: Any) -> None:
    await mfa.policy.update(actor="test", enrolment_proof="access_code")
    await mfa.users.create("newbie", password)
    issued = await mfa.enrolment.issue("newbie", 0, ATTEMPT, actor="user:boss")
    second = await mfa_factory(store=await store_opener())
    tokens = [await enrolment_session(mfa, "newbie", password) for _ in range(4)]
    results = await asyncio.gather(*(m.selfservice.present_enrolment_proof(token, "portal", issued.code, ATTEMPT)
                                     for m in (mfa, second) for token in tokens))
    assert results.count(True) == 1
    assert await db.scalar("SELECT count(*) FROM enrolment_codes WHERE used_at IS NOT NULL") == 1
    assert await db.scalar("SELECT count(*) FROM user_sessions WHERE proof_owed IS NULL") == 1
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'enrolment_proof' AND outcome = 'used'") == 1


@pytest.mark.parametrize("required", ["enrolled", "off"])
async def test_a_full_session_without_a_device_owes_the_proof(mfa: Mfa, password: str, db: Any,
                                                              required: str) -> None:
    """With ``mfa_required`` ``enrolled`` or ``off`` the password alone earns a full session;
    for a user with no device it still binds nothing until the code is presented."""
    await mfa.policy.update(actor="test", mfa_required=required, enrolment_proof="access_code")
    await mfa.users.create("newbie", password)
    begun = await mfa.selfservice.begin("newbie", password, ATTEMPT, caller="portal")
    assert begun.result.outcome is Outcome.ALLOWED and begun.session is not None
    assert begun.session.scope is SessionScope.FULL
    assert begun.session.proof_owed is EnrolmentProof.ACCESS_CODE
    token = begun.session.token
    await mfa.selfservice.authorize(token, "portal", Use.VIEW)  # it may still look
    assert not await can_bind(mfa, token)
    with pytest.raises(PermissionDenied, match="enrolment code"):
        await mfa.selfservice.authorize(token, "portal", Use.BIND_EMAIL)  # a security email is a factor too
    assert (await mfa.selfservice.start_enrolment_proof(token, "portal", ATTEMPT)).proof is EnrolmentProof.ACCESS_CODE
    assert not await mfa.selfservice.present_enrolment_proof(token, "portal", "ABCD-EFGH-JKMN", ATTEMPT)
    assert not await can_bind(mfa, token)

    issued = await mfa.enrolment.issue("newbie", 0, ATTEMPT, actor="user:boss")
    assert await mfa.selfservice.present_enrolment_proof(token, "portal", issued.code, ATTEMPT)
    await mfa.selfservice.authorize(token, "portal", Use.BIND_EMAIL)
    assert await can_bind(mfa, token)
    assert ("used", None) in await audit(db, "enrolment_proof")


async def test_a_full_session_of_a_user_with_a_device_owes_nothing(mfa: Mfa, password: str, enrol: Any) -> None:
    await mfa.policy.update(actor="test", mfa_required="off", enrolment_proof="access_code")
    await enrol("old", password=password)
    begun = await mfa.selfservice.begin("old", password, ATTEMPT, caller="portal")
    assert begun.result.outcome is Outcome.ALLOWED and begun.session is not None
    assert begun.session.proof_owed is None
    await mfa.selfservice.authorize(begun.session.token, "portal", Use.ENROL)  # a second passkey: no proof
