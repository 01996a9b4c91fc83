"""The RADIUS shared reply cache on PostgreSQL: the claims, and the saves, of the requests in
flight share one round trip (``StoreReplyCache`` batches them), and each request still gets
its own answer. Counted on the wire through ``tcp_proxy``, as in test_store_round_trips."""

from __future__ import annotations

import asyncio

from mfad.radius.cache import Claim, RequestKey
from mfad.radius.daemon import StoreReplyCache
from mfad.store.postgres import PostgresStore
from tcp_proxy import TcpProxy

IN_FLIGHT = 20


def request_key(i: int) -> RequestKey:
    return RequestKey("192.0.2.7", 1812, i, bytes([i]) * 16)


async def test_the_claims_and_saves_of_requests_in_flight_take_one_round_trip_each(
        pg_database: str, pg_schema: str) -> None:
    proxy = TcpProxy.to(pg_database)
    await proxy.start()
    store = await PostgresStore.open(proxy.dsn(pg_database), schema=pg_schema, pool_size=4)
    try:
        await store.migrate()
        cache = StoreReplyCache(store, clock=lambda: 1000.0)
        keys = [request_key(i) for i in range(IN_FLIGHT)]
        await cache.claim_reply(request_key(99), 5.0)  # prepares the statements
        await cache.save_reply(request_key(99), b"warm", 5.0)

        before = proxy.round_trips
        claims = await asyncio.gather(*(cache.claim_reply(k, 5.0) for k in keys))
        assert claims == [Claim.OWNED] * IN_FLIGHT and proxy.round_trips - before == 1

        before = proxy.round_trips
        await asyncio.gather(*(cache.save_reply(k, b"reply %d" % i, 30.0) for i, k in enumerate(keys)))
        assert proxy.round_trips - before == 1

        # A retransmission of each (another instance's claim) finds its own reply.
        again = await asyncio.gather(*(cache.claim_reply(k, 5.0) for k in keys))
        assert again == [b"reply %d" % i for i in range(IN_FLIGHT)]
        assert await cache.claim_reply(request_key(98), 5.0) is Claim.OWNED  # alone: a batch of one
    finally:
        await store.aclose()
        await proxy.close()
