"""An email code over RADIUS: radclient types ``email`` at the challenge prompt, the next
Access-Challenge names the masked address, the code read from the mail server completes
the sign-in — the RADIUS service on the real core and store, both engines, fixed clock."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_RADIUS_TESTS = str(Path(__file__).resolve().parents[1] / "radius")
if _RADIUS_TESTS not in sys.path:
    sys.path.insert(0, _RADIUS_TESTS)

import pytest  # noqa: E402
from email_peers import MailServer, smtp_for  # noqa: E402
from radius_peers import radclient  # noqa: E402
from signin_peers import StartDaemon, address, start_daemon  # noqa: E402, F401  (fixture)

from mfad.core.clock import FixedClock  # noqa: E402
from mfad.core.service import Mfa  # noqa: E402
from mfad.core.verification import Attempt  # noqa: E402
from mfad.radius.signin import DENIED, ENTER_CODE_OR_EMAIL, WRONG_CODE  # noqa: E402
from peer_tools import missing  # noqa: E402

PASSWORD = "a password for radius tests"
MA = "Message-Authenticator = 0x00"
PORTAL = Attempt(protocol="grpc", source="198.51.100.7", client="portal")

pytestmark = pytest.mark.skipif(radclient is None, reason=missing("radclient"))


def pap(user: str, password: str, *extra: str) -> list[str]:
    return [f'User-Name = "{user}"', f'User-Password = "{password}"', MA, *extra]


async def bind(mfa: Mfa, server: MailServer, clock: FixedClock, username: str, address_: str) -> None:
    sent = await mfa.email.begin_binding(username, address_, PORTAL)
    mail = (await server.wait_for(len(server.received) + 1))[-1]
    await mfa.email.confirm_binding(username, sent.device.id, mail.code, PORTAL)
    clock.advance(60)  # the resend cool-down


@pytest.fixture
async def mailed(mfa: Mfa, mail_server: MailServer, run_sender: Callable[..., Awaitable[Any]]) -> MailServer:
    await run_sender(mfa, smtp_for(mail_server))
    return mail_server


async def test_typing_email_mails_a_code_that_completes_the_sign_in(
        start_daemon: StartDaemon, enrol: Any, mfa: Mfa, mailed: MailServer, clock: FixedClock) -> None:
    await enrol("alice", password=PASSWORD)  # TOTP first; email as the backup
    await bind(mfa, mailed, clock, "alice", "alice@example.com")
    host, port = address(await start_daemon())
    first = await radclient(host, port, pap("alice", PASSWORD))
    assert first.reply == "Access-Challenge" and "email" in (first.first("Reply-Message") or "")
    asked = await radclient(host, port, pap("alice", "email", f"State = {first.first('State')}"))
    assert asked.reply == "Access-Challenge", asked.output
    assert "a***@example.com" in (asked.first("Reply-Message") or "")
    mail = (await mailed.wait_for(2))[-1]
    assert "127.0.0.1" in mail.text or "RADIUS" in mail.text
    again = await radclient(host, port, pap("alice", "email", f"State = {asked.first('State')}"))
    assert again.reply == "Access-Challenge" and "moment ago" in (again.first("Reply-Message") or "")
    done = await radclient(host, port, pap("alice", mail.code, f"State = {again.first('State')}"))
    assert done.reply == "Access-Accept", done.output
    # The code is spent: a new sign-in's challenge does not take it.
    clock.advance(60)
    state = (await radclient(host, port, pap("alice", PASSWORD))).first("State")
    replayed = await radclient(host, port, pap("alice", "email", f"State = {state}"))
    stale = await radclient(host, port, pap("alice", mail.code, f"State = {replayed.first('State')}"))
    assert stale.reply == "Access-Challenge" and stale.first("Reply-Message", ).startswith("Wrong code")  # type: ignore[union-attr]
    assert len(mailed.received) == 3


async def test_a_wrong_code_keeps_the_email_choice_in_the_prompt(
        start_daemon: StartDaemon, enrol: Any, mfa: Mfa, mailed: MailServer, clock: FixedClock) -> None:
    await enrol("dave", password=PASSWORD)
    await bind(mfa, mailed, clock, "dave", "dave@example.com")
    host, port = address(await start_daemon())
    first = await radclient(host, port, pap("dave", PASSWORD))
    assert first.first("Reply-Message") == ENTER_CODE_OR_EMAIL
    wrong = await radclient(host, port, pap("dave", "000000", f"State = {first.first('State')}"))
    assert wrong.reply == "Access-Challenge", wrong.output
    assert wrong.first("Reply-Message") == WRONG_CODE + ENTER_CODE_OR_EMAIL  # the same choices as before
    asked = await radclient(host, port, pap("dave", "email", f"State = {wrong.first('State')}"))
    assert asked.reply == "Access-Challenge" and "d***@example.com" in (asked.first("Reply-Message") or "")


async def test_email_right_after_binding_mails_a_sign_in_code(
        start_daemon: StartDaemon, enrol: Any, mfa: Mfa, mailed: MailServer) -> None:
    """The binding code cannot sign in: it does not start the sign-in code's cool-down."""
    await enrol("erin", password=PASSWORD)
    sent = await mfa.email.begin_binding("erin", "erin@example.com", PORTAL)
    mail = (await mailed.wait_for(1))[-1]
    await mfa.email.confirm_binding("erin", sent.device.id, mail.code, PORTAL)  # no time passes
    host, port = address(await start_daemon())
    first = await radclient(host, port, pap("erin", PASSWORD))
    asked = await radclient(host, port, pap("erin", "email", f"State = {first.first('State')}"))
    assert asked.reply == "Access-Challenge" and "e***@example.com" in (asked.first("Reply-Message") or ""), \
        asked.output
    code = (await mailed.wait_for(2))[-1].code
    done = await radclient(host, port, pap("erin", code, f"State = {asked.first('State')}"))
    assert done.reply == "Access-Accept", done.output


async def test_email_only_user_over_radius(start_daemon: StartDaemon, mfa: Mfa, mailed: MailServer,
                                           clock: FixedClock) -> None:
    await mfa.users.create("carol", PASSWORD)
    await bind(mfa, mailed, clock, "carol", "carol@example.org")
    host, port = address(await start_daemon())
    first = await radclient(host, port, pap("carol", PASSWORD))
    assert first.reply == "Access-Challenge" and "email" in (first.first("Reply-Message") or "")
    asked = await radclient(host, port, pap("carol", "email", f"State = {first.first('State')}"))
    assert "c***@example.org" in (asked.first("Reply-Message") or "")
    mail = (await mailed.wait_for(2))[-1]
    wrong = "000000" if mail.code != "000000" else "111111"
    refused = await radclient(host, port, pap("carol", wrong, f"State = {asked.first('State')}"))
    assert refused.reply == "Access-Challenge"
    done = await radclient(host, port, pap("carol", mail.code, f"State = {refused.first('State')}"))
    assert done.reply == "Access-Accept", done.output
    denied = await radclient(host, port, pap("carol", "not the password"))
    assert (denied.reply, denied.first("Reply-Message")) == ("Access-Reject", DENIED)
