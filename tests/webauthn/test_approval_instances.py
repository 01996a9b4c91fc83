"""Several instances on one PostgreSQL (docs/approval.md, "Several instances"): instance A
serves the page's gRPC calls (DecideApproval with a software passkey), instance B — its own
store connections, its own core, RADIUS and gRPC front ends — has the waiting request. The
decision reaches B through LISTEN/NOTIFY only: the NAS here does not retransmit, so
nothing else could wake B. And B's LISTEN connection, killed, comes back.

SQLite is one host (one process decides and waits, tests/webauthn/test_approval_hold.py):
these tests need the shared PostgreSQL and run on it alone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from approval_peers import (
    approve_while_watched,
    grpc_approve,
    hold_radius,
    pap,
    pending_of,
    portal_session,
    radclient_result,
    radclient_started,
)
from prometheus_client import CollectorRegistry
from relying import PASSWORD, GrpcRelying, Relying, webauthn_settings
from test_approval import PROMPT, WITH_MA, passkey_user

from mfad_client import ApprovalOutcome
from mfad_client import Method as M

from mfad.api.daemon import grpc_service
from mfad.config import GrpcSettings
from mfad.core.model import Role
from mfad.radius import CountingMetrics
from mfad.radius.daemon import radius_service


#: This test database's LISTEN connections (never another session's or another test run's).
LISTENERS = "application_name = 'mfad-listen' AND datname = current_database()"


@dataclasses.dataclass
class InstanceB:
    relying: Relying
    grpc: GrpcRelying


@pytest.fixture(params=["postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    """This module's tests run on PostgreSQL only (several instances share one store)."""
    return str(request.param)


@pytest.fixture
async def instance_b(engine: str, store_opener: Any, mfa_factory: Any, config: Any, wa: Relying,
                     wa_grpc: GrpcRelying) -> AsyncIterator[InstanceB]:
    cfg = dataclasses.replace(config, webauthn=webauthn_settings())
    store = await store_opener()
    mfa = await mfa_factory(store=store, config=cfg)
    relying = Relying(mfa=mfa, registry=CollectorRegistry(), store=store, clock=wa.clock)
    async with asyncio.timeout(10):
        await store.listening.wait()  # type: ignore[attr-defined]
        await wa.store.listening.wait()  # type: ignore[attr-defined]
    server = grpc_service(mfa, dataclasses.replace(cfg, grpc=GrpcSettings(listen=["127.0.0.1:0"],
                                                                         shutdown_grace_seconds=1.0)),
                          CollectorRegistry())
    await server.start()
    # The callers' tokens are in the shared store: A's are B's too.
    running = GrpcRelying(wa=relying, address=server.addresses[0], tokens=wa_grpc.tokens)
    yield InstanceB(relying=relying, grpc=running)
    await running.close()
    await server.aclose()


async def test_a_decision_on_a_wakes_the_held_request_on_b(wa: Relying, enrol: Any, wa_grpc: Any,
                                                            instance_b: InstanceB, config: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.portal  # instance A
    session = await portal_session(portal, "alice", key)
    async with hold_radius(instance_b.relying.mfa, config, "append", hold=90) as service_b:
        # One transmission and a long wait: only the NOTIFY can bring the answer in time.
        nas = await radclient_started(*service_b.server.addresses[0], pap("alice", PASSWORD + "approve"),
                                      retries=1, timeout=40)
        pending = await pending_of(portal, session)
        assert pending.held
        assert service_b.server.held == 1
        assert await grpc_approve(portal, session, key, pending.id) is ApprovalOutcome.APPROVED
        done = await radclient_result(nas)
        assert done.reply == "Access-Accept", done.output
        assert service_b.server.held == 0
    approval = await wa.mfa.store.load_approval(pending.id)
    assert approval is not None and approval.state.value == "used"


async def test_challenge_mode_and_watch_challenge_across_instances(wa: Relying, enrol: Any, wa_grpc: Any,
                                                                    instance_b: InstanceB, config: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.portal
    session = await portal_session(portal, "alice", key)

    # Challenge mode: the prompt from B, the decision on A, Enter on B.
    settings = dataclasses.replace(config.radius, listen=["127.0.0.1:0"], mode="challenge", reject_delay_seconds=0.0,
                                   clients=[dataclasses.replace(c, approval_hold_seconds=0) for c in
                                            _clients(config)])
    service_b = radius_service(instance_b.relying.mfa, dataclasses.replace(config, radius=settings), None,
                               metrics=CountingMetrics())
    await service_b.start()
    task = asyncio.create_task(service_b.run())
    try:
        host, port = service_b.server.addresses[0]
        first = await radclient_result(await radclient_started(host, port, pap("alice", PASSWORD), retries=1))
        assert first.reply == "Access-Challenge", first.output
        found = PROMPT.match(first.first("Reply-Message") or "")
        assert found
        number, state = int(found.group(2)), first.first("State")
        pending = await pending_of(portal, session)
        assert not pending.held and number in pending.choices
        assert await grpc_approve(portal, session, key, pending.id, number) is ApprovalOutcome.APPROVED
        enter = ['User-Name = "alice"', 'User-Password = ""', f"State = {state}", WITH_MA]
        done = await radclient_result(await radclient_started(host, port, enter, retries=1))
        assert done.reply == "Access-Accept", done.output
    finally:
        await service_b.aclose()
        await asyncio.wait_for(task, 10)

    # WatchChallenge on B: the stream learns of A's decision (nothing else wakes it).
    await approve_while_watched(instance_b.grpc.client(Role.SERVICE), portal, session, key)


async def test_the_listen_connection_comes_back_and_nothing_is_missed(wa: Relying, enrol: Any, wa_grpc: Any,
                                                                      instance_b: InstanceB,
                                                                      store_location: Any) -> None:
    alice, key, _ = await passkey_user(wa, enrol, "alice")
    portal = wa_grpc.portal
    session = await portal_session(portal, "alice", key)
    store_b = instance_b.relying.store
    conn = await asyncpg.connect(store_location.url, timeout=10)
    try:
        before = await conn.fetch(f"SELECT pid FROM pg_stat_activity WHERE {LISTENERS}")
        assert before
        await conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {LISTENERS}")
        async with asyncio.timeout(10):
            while store_b.listening.is_set():  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
        # Decided while B may not be listening: B's waiter must still hear of it (the
        # reconnection tells every waiter to look again).
        await approve_while_watched(instance_b.grpc.client(Role.SERVICE), portal, session, key)
        async with asyncio.timeout(10):
            await store_b.listening.wait()  # type: ignore[attr-defined]
        after = await conn.fetch(f"SELECT pid FROM pg_stat_activity WHERE {LISTENERS}")
        assert after and not {r["pid"] for r in after} & {r["pid"] for r in before}
    finally:
        await conn.close()


def _clients(config: Any) -> list[Any]:
    from mfad.config import RadiusClientSettings
    from radius_peers import SECRET
    return [RadiusClientSettings(name="lo", address="127.0.0.1", secret=SECRET.decode())]

