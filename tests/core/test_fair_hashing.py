"""The fair queue in front of password hashing (mfad.core.passwords.FairSlots): lanes
take turns, so a lane with a backlog delays another by at most one unit of work."""

from __future__ import annotations

import asyncio

from mfad.core.passwords import FairSlots


async def started_order(slots: FairSlots, jobs: list[str], *, cancel: frozenset[int] = frozenset()) -> list[str]:
    order: list[str] = []
    everyone_queued = asyncio.Event()  # no work ends before all jobs wait: the order is the queue's alone

    def work(name: str) -> asyncio.Future[bool]:
        order.append(name)
        return asyncio.ensure_future(everyone_queued.wait())

    tasks = []
    for name in jobs:
        lane = name.rstrip("0123456789")
        tasks.append(asyncio.create_task(slots.run(lane, lambda n=name: work(n))))  # type: ignore[misc]
        await asyncio.sleep(0)  # arrive in this order
    for i in cancel:
        tasks[i].cancel()
    await asyncio.sleep(0)
    everyone_queued.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return order


async def test_a_lane_with_a_backlog_delays_another_by_one_unit_at_most() -> None:
    jobs = [f"flood{i}" for i in range(10)] + ["quiet0", "quiet1"]
    order = await started_order(FairSlots(1), jobs)
    assert order[:5] == ["flood0", "flood1", "quiet0", "flood2", "quiet1"]
    assert sorted(order) == sorted(jobs)


async def test_several_slots_are_shared_and_lanes_alternate() -> None:
    jobs = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(3)]
    order = await started_order(FairSlots(2), jobs)
    assert order[:2] == ["a0", "a1"]  # free slots are taken at once
    assert order[2:8] == ["a2", "b0", "a3", "b1", "a4", "b2"]


async def test_a_cancelled_waiter_leaves_the_queue_and_the_slots_stay_whole() -> None:
    slots = FairSlots(1)
    order = await started_order(slots, ["a0", "a1", "b0", "a2"], cancel=frozenset({1, 2}))
    assert order == ["a0", "a2"]
    assert slots.waiting == 0
    assert await started_order(slots, ["c0"]) == ["c0"]  # the slot came back
