"""A recovery code typed at the RADIUS challenge prompt, with FreeRADIUS's ``radclient``
against the real daemon's RADIUS front end (both store engines): accepted once, refused the
second time, and a wrong one answered with another challenge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from radius_peers import radclient
from signin_peers import StartDaemon, address, start_daemon  # noqa: F401  (fixture)

from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from mfad.radius.signin import ENTER_CODE, WRONG_CODE

Enrol = Callable[..., Awaitable[Any]]
PASSWORD = "a password for radius tests"
WITH_MA = "Message-Authenticator = 0x00"


async def challenge(host: str, port: int) -> str:
    first = await radclient(host, port, ['User-Name = "alice"', f'User-Password = "{PASSWORD}"', WITH_MA])
    assert first.reply == "Access-Challenge", first.output
    assert ENTER_CODE.strip() in (first.first("Reply-Message") or "")
    state = first.first("State")
    assert state is not None
    return state


async def answer(host: str, port: int, state: str, typed: str) -> Any:
    return await radclient(host, port, ['User-Name = "alice"', f'User-Password = "{typed}"', f"State = {state}",
                                        WITH_MA])


async def test_a_recovery_code_at_the_challenge_prompt(start_daemon: StartDaemon, enrol: Enrol, mfa: Mfa,
                                                       db: Any) -> None:
    await enrol("alice", password=PASSWORD)
    codes = (await mfa.recovery.generate("alice", Attempt(protocol="test"))).codes
    host, port = address(await start_daemon())

    state = await challenge(host, port)
    wrong = await answer(host, port, state, "ZZZZZ-ZZZZZ")
    assert wrong.reply == "Access-Challenge", wrong.output
    assert (wrong.first("Reply-Message") or "").startswith(WRONG_CODE.strip())
    accepted = await answer(host, port, wrong.first("State") or "", codes[0].lower())
    assert accepted.reply == "Access-Accept", accepted.output

    state = await challenge(host, port)
    used = await answer(host, port, state, codes[0])
    assert used.reply in ("Access-Challenge", "Access-Reject"), used.output
    assert used.reply != "Access-Accept"
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'recovery_code' AND protocol = 'radius'") == 1
    assert await db.scalar("SELECT count(*) FROM audit WHERE event = 'verify' AND method = 'recovery' "
                           "AND protocol = 'radius' AND outcome = 'refused'") == 2
