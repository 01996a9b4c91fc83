"""Out-of-band approval over RADIUS challenge mode (radclient against the RADIUS service on the
real core, both engines), decided through the core's approval service with a software passkey:
the prompt names the page and the number; Enter gets "not approved yet", then Accept once
approved — once; a wrong number, a denial and expiry refuse it and count; a TOTP code still
works at the same prompt; forged States, other users' approvals, replayed and late decisions
change nothing. (The page itself, in Chromium, is tests/portal/test_portal_approval.py.)"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from relying import ORIGIN, PASSWORD, Relying
from softauthn import SoftAuthenticator
from test_passkey_radius import pap, radius  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, radclient  # noqa: E402

from mfad_client import Method as M
from mfad_client import SignInOutcome

from mfad.core.approval import Decided, Proof
from mfad.core.approval_records import ApprovalState
from mfad.core.model import Method, Role, User
from mfad.core.signin import Attempt

PAGE = Attempt(protocol="grpc", source="192.0.2.50", client="portal")
PROMPT = re.compile(r"Approve this sign-in at (\S+) and choose (\d\d), then press Enter(.*)$")
WITH_MA = "Message-Authenticator = 0x00"


class Vpn:
    """A NAS in challenge mode, speaking radclient."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def password(self, user: str, password: str = PASSWORD) -> Any:
        return await radclient(self.host, self.port, pap(user, password))

    async def answer(self, user: str, state: str, typed: str = "") -> Any:
        return await radclient(self.host, self.port, [f'User-Name = "{user}"', f'User-Password = "{typed}"',
                                                      f"State = {state}", WITH_MA])


async def passkey_user(wa: Relying, enrol: Any, name: str) -> tuple[User, SoftAuthenticator, Any]:
    """A user with an authenticator app and a passkey."""
    app = await enrol(name, on=wa.mfa)
    key = SoftAuthenticator()
    await wa.register(name, key)
    return app.user, key, app


async def prompted(vpn: Vpn, user: str) -> tuple[str, str, str]:
    """The password step: (number shown, State, the rest of the prompt)."""
    first = await vpn.password(user)
    assert first.reply == "Access-Challenge", first.output
    found = PROMPT.match(first.first("Reply-Message") or "")
    assert found, first.first("Reply-Message")
    assert found.group(1).endswith("/approve")
    state = first.first("State")
    assert state is not None
    return found.group(2), state, found.group(3)


async def approve(wa: Relying, user: User, key: SoftAuthenticator, number: int, approval_id: str | None = None,
                  as_user: User | None = None) -> Decided:
    """What the page does: a passkey step-up of the signed-in user, then the decision."""
    signed_in = as_user or user
    if approval_id is None:
        [pending] = await wa.mfa.approvals.list_pending(user)
        approval_id = pending.approval_id
    opened = await wa.mfa.signin.open_step_up(signed_in.username, Method.PASSKEY, PAGE)
    assert opened.challenge_id is not None
    options = (await wa.mfa.signin.start_challenge(opened.challenge_id, Method.PASSKEY, PAGE)).shown
    assert options is not None
    assertion = key.get(options, ORIGIN)
    proof = Proof(method=Method.PASSKEY, challenge_id=opened.challenge_id, response=json.dumps(assertion))
    return await wa.mfa.approvals.approve(signed_in, approval_id, number, proof, PAGE)


async def approval_events(wa: Relying) -> list[tuple[str, str | None]]:
    return [(r.event.outcome, r.event.reason) for r in reversed(await wa.audit("approval"))]


async def test_the_prompt_names_the_page_and_number_and_an_approval_signs_in_once(
        wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    number, state, rest = await prompted(vpn, "alice")
    assert rest == ". Or type the code from your authenticator app: "
    assert wa.metric("mfad_approvals_total", result="requested") == 1

    waiting = await vpn.answer("alice", state)  # Enter, before the approval
    assert waiting.reply == "Access-Challenge"
    assert (waiting.first("Reply-Message") or "").startswith("Not approved yet. Approve this sign-in at ")
    assert waiting.first("State") == state
    # Waiting is neither a failure nor a spent try.
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 0

    [pending] = await wa.mfa.approvals.list_pending(alice)
    assert int(number) in pending.choices and len(pending.choices) == 3
    assert pending.client == "lo" and pending.source and pending.source.startswith("nas:lo/")
    assert await approve(wa, alice, key, int(number)) is Decided.APPROVED
    assert await wa.mfa.approvals.list_pending(alice) == []

    done = await vpn.answer("alice", state, "anything")
    assert done.reply == "Access-Accept", done.output
    again = await vpn.answer("alice", state)
    assert again.reply == "Access-Reject"  # single use
    assert await approval_events(wa) == [("pending", None), ("approved", "passkey")]
    assert wa.metric("mfad_approvals_total", result="approved") == 1
    assert wa.metric("mfad_approvals_total", result="used") == 1


async def test_a_wrong_number_refuses_the_sign_in_and_counts(wa: Relying, enrol: Any,
                                                            radius: Any) -> None:  # noqa: F811
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    number, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)
    wrong = next(c for c in pending.choices if c != int(number))
    assert await approve(wa, alice, key, wrong) is Decided.REFUSED
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 1
    assert (await vpn.answer("alice", state)).reply == "Access-Reject"
    # The right number afterwards changes nothing: that approval is over.
    assert await approve(wa, alice, key, int(number), pending.approval_id) is Decided.REFUSED
    assert (await wa.mfa.store.load_approval(pending.approval_id)).state is ApprovalState.REFUSED  # type: ignore[union-attr]
    assert ("refused", "approval_wrong_number") in await approval_events(wa)
    assert wa.metric("mfad_approvals_total", result="wrong_number") == 1


async def test_deny_refuses_counts_and_can_lock_the_account(wa: Relying, enrol: Any,
                                                            radius: Any) -> None:  # noqa: F811
    alice, _, _ = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    _, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)
    assert await wa.mfa.approvals.deny(alice, pending.approval_id, PAGE) is Decided.DENIED
    assert await wa.mfa.approvals.deny(alice, pending.approval_id, PAGE) is Decided.REFUSED  # replayed
    assert (await vpn.answer("alice", state)).reply == "Access-Reject"
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 1
    await wa.mfa.approvals.report(alice, PAGE)
    assert (await wa.mfa.store.load_limits(alice.id)).hard_locked
    # Locked: even the right password and a code get nowhere until an administrator resets it.
    assert (await vpn.password("alice")).reply == "Access-Reject"
    assert [r.event.outcome for r in await wa.audit("approval_reported")] == ["locked"]
    assert ("denied", "approval_denied_by_user") in await approval_events(wa)
    assert wa.metric("mfad_approvals_total", result="denied") == 1
    assert await wa.mfa.reset_lockout("alice", actor="admin")
    assert (await vpn.password("alice")).reply == "Access-Challenge"


async def test_an_approval_expires_with_its_state(wa: Relying, enrol: Any, radius: Any,  # noqa: F811
                                                  config: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    number, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)
    lifetime = config.limits.challenge_ttl_seconds  # the challenge's, hence the State's
    assert (pending.expires_at - pending.created_at).total_seconds() == lifetime
    wa.clock.advance(lifetime + 1)
    assert await wa.mfa.approvals.list_pending(alice) == []
    assert await approve(wa, alice, key, int(number), pending.approval_id) is Decided.REFUSED
    assert (await vpn.answer("alice", state)).reply == "Access-Reject"
    assert (await wa.mfa.store.load_approval(pending.approval_id)).state is ApprovalState.PENDING  # type: ignore[union-attr]


async def test_a_totp_code_still_works_at_the_same_prompt(wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    alice, _, app = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    _, state, _ = await prompted(vpn, "alice")
    wrong = await vpn.answer("alice", state, next(app.wrong_codes()))
    assert wrong.reply == "Access-Challenge"
    assert (wrong.first("Reply-Message") or "").startswith("Wrong code, try again. Approve this sign-in at ")
    wa.clock.advance(30)
    done = await vpn.answer("alice", state, app.code())
    assert done.reply == "Access-Accept", done.output
    assert await wa.mfa.approvals.list_pending(alice) == []  # the sign-in is over: nothing left to approve


async def test_a_new_sign_in_replaces_the_pending_approval(wa: Relying, enrol: Any,
                                                          radius: Any) -> None:  # noqa: F811
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    vpn = Vpn(*await radius("challenge"))
    _, old_state, _ = await prompted(vpn, "alice")
    [old] = await wa.mfa.approvals.list_pending(alice)
    number, state, _ = await prompted(vpn, "alice")
    [new] = await wa.mfa.approvals.list_pending(alice)
    assert new.approval_id != old.approval_id
    assert await approve(wa, alice, key, int(number), old.approval_id) is Decided.REFUSED
    assert await approve(wa, alice, key, int(number)) is Decided.APPROVED
    assert (await vpn.answer("alice", old_state)).reply == "Access-Reject"
    assert (await vpn.answer("alice", state)).reply == "Access-Accept"


async def test_bad_input_changes_nothing(wa: Relying, enrol: Any, radius: Any) -> None:  # noqa: F811
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    bob, bobs_key, _ = await passkey_user(wa, enrol, "bob")
    vpn = Vpn(*await radius("challenge"))
    number, state, _ = await prompted(vpn, "alice")
    [pending] = await wa.mfa.approvals.list_pending(alice)

    # A forged State: another challenge id in alice's State, or a number changed.
    raw = bytes.fromhex(state[2:])
    forged = raw[:9] + bytes(b ^ 1 for b in raw[9:20]) + raw[20:]
    assert (await vpn.answer("alice", "0x" + forged.hex())).reply == "Access-Reject"
    # bob cannot decide alice's sign-in, whatever he knows of it.
    assert await approve(wa, alice, bobs_key, int(number), pending.approval_id, as_user=bob) is Decided.REFUSED
    assert await wa.mfa.approvals.deny(bob, pending.approval_id, PAGE) is Decided.REFUSED
    # ... nor use alice's State with his own name.
    assert (await vpn.answer("bob", state)).reply == "Access-Reject"
    still = await wa.mfa.store.load_approval(pending.approval_id)
    assert still is not None and still.state is ApprovalState.PENDING
    assert (await vpn.answer("alice", state)).reply == "Access-Challenge"  # still waiting, still alive

    assert await approve(wa, alice, key, int(number)) is Decided.APPROVED
    assert await approve(wa, alice, key, int(number), pending.approval_id) is Decided.REFUSED  # replayed
    assert await wa.mfa.approvals.deny(alice, pending.approval_id, PAGE) is Decided.REFUSED  # too late to deny
    assert (await vpn.answer("alice", state)).reply == "Access-Accept"
    assert ("refused", "approval_unknown") in await approval_events(wa)


@pytest.mark.parametrize("mode", ["append", "otp_only"])
async def test_clients_without_challenges_are_not_offered_an_approval(wa: Relying, enrol: Any, radius: Any,  # noqa: F811
                                                                     mode: str) -> None:
    await wa.user("carol")
    await wa.register("carol", SoftAuthenticator())
    vpn = Vpn(*await radius(mode))
    reply = await vpn.password("carol", PASSWORD if mode == "append" else "123456")
    assert reply.reply == "Access-Reject"
    assert await wa.rows("approvals") == 0


async def test_a_grpc_service_starts_an_approval_and_completes_it_once_approved(
        wa: Relying, enrol: Any, wa_grpc: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    service = wa_grpc.client(Role.SERVICE)
    begun = await service.auth.begin_sign_in("alice", PASSWORD)
    assert M.APPROVAL in begun.methods
    started = await service.auth.start_challenge(begun.challenge_id, M.APPROVAL)
    assert started.method is M.APPROVAL and started.approval_url.endswith("/approve")
    assert len(started.approval_number) == 2 and started.request_options_json == ""
    waiting = await service.auth.complete_challenge(begun.challenge_id, M.APPROVAL, code="")
    assert waiting.outcome is SignInOutcome.REFUSED
    assert await approve(wa, alice, key, int(started.approval_number)) is Decided.APPROVED
    done = await service.auth.complete_challenge(begun.challenge_id, M.APPROVAL, code="")
    assert done.outcome is SignInOutcome.ALLOWED and done.username == "alice"
    again = await service.auth.complete_challenge(begun.challenge_id, M.APPROVAL, code="")
    assert again.outcome is SignInOutcome.REFUSED


async def test_pam_radius_auth_in_challenge_mode_completes_an_approval(
        wa: Relying, enrol: Any, config: Any, tmp_path: Path) -> None:
    """pamtester + pam_radius_auth 2.0 (no Message-Authenticator): the prompt shows the number;
    Enter after the approval signs in."""
    import asyncio
    import dataclasses

    from pam_peers import pam_service, pamtester_started

    from mfad.config import RadiusClientSettings, RadiusSettings
    from mfad.radius import CountingMetrics
    from mfad.radius.daemon import radius_service

    alice, key, _ = await passkey_user(wa, enrol, "alice")
    settings = RadiusSettings(listen=["127.0.0.1:0"], reject_delay_seconds=0.0, clients=[RadiusClientSettings(
        name="ssh", address="127.0.0.1", secret=SECRET.decode(), require_message_authenticator=False)])
    service = radius_service(wa.mfa, dataclasses.replace(config, radius=settings), None, metrics=CountingMetrics())
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        with pam_service(tmp_path) as (name, conf):
            host, port = service.server.addresses[0]
            conf.write_text(f"{host}:{port} {SECRET.decode()} 3\n")
            conf.chmod(0o600)
            process = await pamtester_started(name, "alice", PASSWORD)
            async with asyncio.timeout(20):  # until pam_radius_auth shows the approval prompt
                while not (pending := await wa.mfa.approvals.list_pending(alice)):
                    await asyncio.sleep(0.1)
            shown = await wa.mfa.store.load_approval(pending[0].approval_id)
            assert shown is not None
            assert await approve(wa, alice, key, shown.number) is Decided.APPROVED
            async with asyncio.timeout(30):
                out, _ = await process.communicate(b"\n")  # Enter at the prompt
            text = out.decode(errors="replace")
            assert process.returncode == 0, text
            assert f"and choose {shown.number:02d}, then press Enter" in text
            assert "successfully authenticated" in text
    finally:
        await service.aclose()
        await asyncio.wait_for(task, 10)
