"""The Batcher: calls of one loop turn made as one, the next batch after the running one."""

from __future__ import annotations

import asyncio

import pytest

from mfad.core.batches import Batcher


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def double(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        if self.gate is not None:
            await self.gate.wait()
        return [2 * i for i in items]


async def test_the_items_of_one_loop_turn_go_in_one_batch_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.double)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8] and recorder.batches == [[0, 1, 2, 3, 4]]
    assert await batcher.submit(7) == 14 and recorder.batches[-1] == [7]


async def test_items_submitted_while_a_batch_runs_go_together_in_the_next() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = Batcher(recorder.double)
    first = batcher.submit(1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [[1]]  # running, held at the gate
    later = [batcher.submit(i) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[1]]  # they wait for the running batch
    recorder.gate.set()
    assert await first == 2 and await asyncio.gather(*later) == [4, 6, 8]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_a_batch_holds_at_most_max_size_items() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.double, max_size=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert recorder.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_batch_fails_each_of_its_submitters_and_the_next_batch_runs() -> None:
    calls: list[list[str]] = []

    async def run(items: list[str]) -> list[str]:
        calls.append(items)
        if "bad" in items:
            raise ConnectionError("store down")
        return items

    batcher: Batcher[str, str] = Batcher(run)
    outcomes = await asyncio.gather(batcher.submit("bad"), batcher.submit("ok"), return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    assert await batcher.submit("fine") == "fine"


async def test_a_batch_giving_the_wrong_number_of_results_is_a_fault() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = Batcher(run)
    with pytest.raises(RuntimeError, match="a batch of 2 gave 1 results"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))


async def test_a_submitter_that_gives_up_does_not_stop_the_batch() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher = Batcher(recorder.double)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await batcher.submit(1)
    other = batcher.submit(2)
    recorder.gate.set()
    assert await other == 4 and recorder.batches == [[1], [2]]


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(Recorder().double, max_size=0)
