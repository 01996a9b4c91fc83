"""Round trips to PostgreSQL per accepted code: at most two (the subject's read, then the
replay guard with the limits reset and the audit row as one statement).

Counted on the wire: the store talks to the real server through ``tcp_proxy``, which
counts the times the client spoke again after the server had answered. PostgreSQL only:
SQLite has no wire (its accepts are batched into a group commit instead).
"""

from __future__ import annotations

import base64
from typing import Any

from mfad.core.ports import AuditFilter
from mfad.core.signin import Attempt, Outcome, Reason
from mfad.store.postgres import PostgresStore
from signin_calls import verify_code
from tcp_proxy import TcpProxy

ATTEMPT = Attempt(protocol="radius", source="nas:vpn/192.0.2.7", client="vpn")


async def test_an_accepted_code_takes_two_round_trips(pg_database: str, pg_schema: str, mfa_factory: Any,
                                                      clock: Any, totp_code: Any) -> None:
    proxy = TcpProxy.to(pg_database)
    await proxy.start()
    store = await PostgresStore.open(proxy.dsn(pg_database), schema=pg_schema, pool_size=1)
    try:
        await store.migrate()
        mfa = await mfa_factory(store=store)
        await mfa.users.create("alice", None)
        binding = await mfa.devices.begin_totp("alice")
        key = base64.b32decode(binding.secret_base32 + "=" * (-len(binding.secret_base32) % 8))
        await mfa.devices.confirm_totp("alice", binding.device.id, totp_code(key, clock.now(), steps=-1))
        wrong = "000000" if totp_code(key, clock.now()) != "000000" else "111111"
        refused = await verify_code(mfa.signin, "alice", wrong, ATTEMPT)
        assert refused.reason is Reason.WRONG_CODE
        # The first accept prepares its statements (and loads the cached policy).
        assert (await verify_code(mfa.signin, "alice", totp_code(key, clock.now()), ATTEMPT)).accepted
        assert (await store.load_limits(binding.device.user_id)).failures == 0  # reset by the accept

        before = proxy.round_trips
        result = await verify_code(mfa.signin, "alice", totp_code(key, clock.now(), steps=1), ATTEMPT)
        assert result.outcome is Outcome.ALLOWED
        assert proxy.round_trips - before <= 2

        # The same statement refuses the replay, and wrote the accepts' audit rows only.
        replay = await verify_code(mfa.signin, "alice", totp_code(key, clock.now(), steps=1), ATTEMPT)
        assert replay.reason is Reason.REPLAY
        rows = await store.query_audit(AuditFilter(user_id=binding.device.user_id, event="verify"))
        accepted = [r.event for r in rows if r.event.outcome == "accepted"]
        assert len(accepted) == 2
        assert all(e.source == ATTEMPT.source and e.protocol == "radius" and e.username == "alice" for e in accepted)
    finally:
        await store.aclose()
        await proxy.close()
