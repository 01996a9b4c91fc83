"""Hold mode and the decision wake-up (docs/approval.md), with real parts on both engines:
radclient retransmitting every 3 s through a relay that records every datagram, the RADIUS
service on the real core, decisions made through the real gRPC front end with a software
passkey (python-fido2). A held request gets exactly one decision and the same reply bytes
for each retransmission; an approval ~10 s later accepts the pending request; no approval
rejects it at the hold limit; 500 held requests cost little memory and no threads;
WatchChallenge streams the decision; bad input changes nothing."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any

import pytest
from approval_peers import (
    Relay,
    grpc_approve,
    hold_radius,
    pap,
    pending_of,
    portal_session,
    radclient_result,
    radclient_started,
)
from radius_peers import UdpNas, pyrad_request
from relying import PASSWORD, Relying
from test_approval import PAGE, approval_events, approve, passkey_user

from mfad_client import ApprovalOutcome, ApprovalStatus, InvalidArgument, SignInOutcome
from mfad_client import Method as M

from mfad.core.approval import Decided
from mfad.core.approval_records import ApprovalState
from mfad.core.model import Role


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def test_a_held_request_gets_one_decision_and_the_same_reply_to_every_retransmission(
        wa: Relying, enrol: Any, wa_grpc: Any, config: Any) -> None:
    """append + "approve": no reply while it waits (radclient retransmits every 3 s); the
    approval ~10 s later answers the pending request with Access-Accept; the retransmissions
    got nothing but that reply, byte for byte; one decision, one use, one audit row each."""
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.portal
    session = await portal_session(portal, "alice", key)
    async with hold_radius(wa.mfa, config, "append", hold=60) as service:
        relay = await Relay.start(*service.server.addresses[0])
        try:
            nas = await radclient_started(*relay.address, pap("alice", PASSWORD + "approve"), retries=20)
            pending = await pending_of(portal, session)
            assert pending.held and pending.choices == () and pending.client == "lo"
            assert pending.source.startswith("nas:lo/")
            async with asyncio.timeout(30):  # the NAS asks again, every 3 s, and hears nothing
                while len(relay.requests) < 4:
                    await asyncio.sleep(0.1)
            assert relay.replies == []
            assert service.server.held == 1 and service.server.in_flight == 0

            assert await grpc_approve(portal, session, key, pending.id) is ApprovalOutcome.APPROVED
            done = await radclient_result(nas)
            assert done.reply == "Access-Accept", done.output
            assert len(set(relay.requests)) == 1  # every one was a retransmission of the same request
            first = relay.replies[0]
            assert all(reply == first for reply in relay.replies)
            assert await relay.resend(relay.requests[0]) == first  # a late retransmission: the same bytes
            assert await relay.resend(relay.requests[0]) == first
        finally:
            relay.close()
    assert await approval_events(wa) == [("pending", "held"), ("approved", "passkey")]
    accepted = [r for r in await wa.audit("verify") if r.event.method == "approval" and r.event.outcome == "accepted"]
    assert len(accepted) == 1
    assert wa.metric("mfad_approvals_total", result="used") == 1
    assert (await wa.mfa.store.load_approval(pending.id)).state is ApprovalState.USED  # type: ignore[union-attr]


async def test_a_held_request_is_rejected_when_the_hold_ends(wa: Relying, enrol: Any, config: Any,
                                                             db: Any) -> None:
    """otp_only + "approve" and nobody approves: Access-Reject at the hold limit, the approval
    refused (audited, not counted as a failure), and approving it afterwards changes nothing."""
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    async with hold_radius(wa.mfa, config, "otp_only", hold=4) as service:
        nas = await radclient_started(*service.server.addresses[0], pap("alice", "approve"), retries=5)
        async with asyncio.timeout(20):
            while not await wa.mfa.approvals.list_pending(alice):
                await asyncio.sleep(0.05)
        wa.clock.advance(4)  # the wall clock moves with the hold: its end finds the approval still open
        done = await radclient_result(nas)
        assert done.reply == "Access-Reject", done.output
        assert service.server.held == 0
    assert await wa.mfa.store.list_open_approvals(alice.id, wa.clock.now()) == []  # nothing left to approve
    assert ("refused", "approval_hold_expired") in await approval_events(wa)
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 0
    assert wa.metric("mfad_approvals_total", result="expired") == 1
    # Too late: the decision is refused and the approval stays refused.
    [row] = await db.rows("SELECT id, state FROM approvals")
    assert row["state"] == "refused"
    assert await approve(wa, alice, key, 0, row["id"]) is Decided.REFUSED
    assert (await wa.mfa.store.load_approval(row["id"])).state is ApprovalState.REFUSED  # type: ignore[union-attr]


async def test_deny_rejects_a_held_request_and_the_policy_can_forbid_hold_mode(
        wa: Relying, enrol: Any, wa_grpc: Any, config: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.portal
    session = await portal_session(portal, "alice", key)
    async with hold_radius(wa.mfa, config, "otp_only", hold=60) as service:
        # One transmission, a long wait: only the store's wake-up can answer it in time.
        nas = await radclient_started(*service.server.addresses[0], pap("alice", "approve"), retries=1,
                                      timeout=40)
        pending = await pending_of(portal, session)
        assert await portal.enrollment.deny(session, pending.id) is ApprovalOutcome.DENIED
        done = await radclient_result(nas)
        assert done.reply == "Access-Reject", done.output
        assert (await wa.mfa.store.load_limits(alice.id)).failures == 1

        await wa_grpc.admin.admin.set_policy(approval_hold=False)
        assert (await wa_grpc.admin.admin.get_policy()).approval_hold is False
        refused = await radclient_result(await radclient_started(*service.server.addresses[0],
                                                                 pap("alice", "approve"), retries=1))
        assert refused.reply == "Access-Reject", refused.output
        assert await portal.enrollment.pending_approvals(session) == ()
        assert service.server.held == 0
    assert any("approval_hold=False" in (r.event.detail or "") for r in await wa.audit("policy_changed"))


async def test_five_hundred_held_requests_cost_a_few_megabytes_and_no_thread(
        wa: Relying, enrol: Any, config: Any) -> None:
    """500 Access-Requests held at once (otp_only + "approve"): measured, not timed."""
    await passkey_user(wa, enrol, "alice")
    count = 500
    async with hold_radius(wa.mfa, config, "otp_only", hold=120) as service:
        host, port = service.server.addresses[0]
        nas = await UdpNas.connect(host, port)
        try:
            # A first one warms the code paths (imports, statement caches, the store's own
            # commit and checkpoint threads, made at first use) before measuring.
            nas.send(pyrad_request(user="alice", password="approve", identifier=0).RequestPacket())
            async with asyncio.timeout(30):
                while service.server.held < 1:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)
            gc.collect()
            rss_before, threads_before = rss_kib(), os_threads()
            for i in range(count):
                nas.send(pyrad_request(user="alice", password="approve", identifier=i % 256).RequestPacket())
                if i % 50 == 49:  # what the socket buffer takes at once
                    async with asyncio.timeout(60):
                        while service.server.held < i + 2:
                            await asyncio.sleep(0.02)
            async with asyncio.timeout(60):
                while service.server.held < count + 1:
                    await asyncio.sleep(0.05)
            gc.collect()
            grown = rss_kib() - rss_before
            print(f"{count} held requests: RSS +{grown} KiB, {os_threads()} threads")
            assert service.server.in_flight == 0
            assert os_threads() == threads_before, [t.name for t in threading.enumerate()]
            assert threading.active_count() <= threads_before
            assert grown < 8 * 1024, f"{count} held requests grew RSS by {grown} KiB"
            assert len(service.holds or ()) == count + 1
            await nas.silence(0.3)  # held: nobody got an answer
        finally:
            await nas.aclose()
    assert service.server.held == 0  # shutdown gave them up


async def test_watch_challenge_streams_the_decision(wa: Relying, enrol: Any, wa_grpc: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    service = wa_grpc.client(Role.SERVICE)
    begun = await service.auth.begin_sign_in("alice", PASSWORD)
    started = await service.auth.start_challenge(begun.challenge_id, M.APPROVAL)
    seen: list[ApprovalStatus] = []

    async def watch() -> None:
        async for status in service.auth.watch_challenge(begun.challenge_id, timeout_seconds=60):
            seen.append(status)

    watching = asyncio.create_task(watch())
    async with asyncio.timeout(10):
        while not seen:
            await asyncio.sleep(0.02)
    assert seen == [ApprovalStatus.PENDING]
    assert await approve(wa, alice, key, int(started.approval_number)) is Decided.APPROVED
    await asyncio.wait_for(watching, 20)  # the stream ends by itself once decided
    assert seen == [ApprovalStatus.PENDING, ApprovalStatus.APPROVED]
    done = await service.auth.complete_challenge(begun.challenge_id, M.APPROVAL, code="")
    assert done.outcome is SignInOutcome.ALLOWED
    assert [s async for s in service.auth.watch_challenge(begun.challenge_id)] == [ApprovalStatus.USED]

    # Nobody decides: the stream ends quietly at its timeout, after PENDING.
    again = await service.auth.begin_sign_in("alice", PASSWORD)
    await service.auth.start_challenge(again.challenge_id, M.APPROVAL)
    assert [s async for s in service.auth.watch_challenge(again.challenge_id, timeout_seconds=1)] == \
        [ApprovalStatus.PENDING]
    # A denial ends it with REFUSED.
    [pending] = await wa.mfa.approvals.list_pending(alice)
    stream = service.auth.watch_challenge(again.challenge_id, timeout_seconds=30)
    assert await anext(stream) is ApprovalStatus.PENDING
    await wa.mfa.approvals.deny(alice, pending.approval_id, PAGE)
    async with asyncio.timeout(10):  # a wake, well before the stream's own end
        assert [s async for s in stream] == [ApprovalStatus.REFUSED]


async def test_bad_input_to_held_approvals_and_watches_changes_nothing(
        wa: Relying, enrol: Any, wa_grpc: Any, config: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    _, bobs_key, _ = await passkey_user(wa, enrol, "bob")
    portal = wa_grpc.portal
    alices, bobs = await portal_session(portal, "alice", key), await portal_session(portal, "bob", bobs_key)
    service = wa_grpc.client(Role.SERVICE)
    # A forged or unknown challenge id: nothing to watch; a malformed one: INVALID_ARGUMENT.
    assert [s async for s in service.auth.watch_challenge("A" * 22, timeout_seconds=1)] == [ApprovalStatus.UNKNOWN]
    with pytest.raises(InvalidArgument):
        [s async for s in service.auth.watch_challenge("x" * 65)]
    with pytest.raises(InvalidArgument):
        [s async for s in service.auth.watch_challenge("A" * 22, timeout_seconds=601)]
    async with hold_radius(wa.mfa, config, "append", hold=60) as server:
        nas = await radclient_started(*server.server.addresses[0], pap("alice", PASSWORD + "approve"), retries=1,
                                      timeout=40)
        pending = await pending_of(portal, alices)
        # bob cannot approve or deny alice's held sign-in, whatever he knows of it.
        assert await grpc_approve(portal, bobs, bobs_key, pending.id) is ApprovalOutcome.REFUSED
        assert await portal.enrollment.deny(bobs, pending.id) is ApprovalOutcome.REFUSED
        still = await wa.mfa.store.load_approval(pending.id)
        assert still is not None and still.state is ApprovalState.PENDING and server.server.held == 1
        # alice approves (a number means nothing for a held approval); replaying it is refused.
        assert await grpc_approve(portal, alices, key, pending.id, 42) is ApprovalOutcome.APPROVED
        assert (await radclient_result(nas)).reply == "Access-Accept"
        assert await grpc_approve(portal, alices, key, pending.id) is ApprovalOutcome.REFUSED
        assert await portal.enrollment.deny(alices, pending.id) is ApprovalOutcome.REFUSED
    assert (await wa.mfa.store.load_approval(pending.id)).state is ApprovalState.USED  # type: ignore[union-attr]
    assert (await wa.mfa.store.load_limits(alice.id)).failures == 0
    assert ("refused", "approval_unknown") in await approval_events(wa)

