"""Calls that arrive together, made as one: a round trip for a batch instead of one each.

``Batcher(run)`` gathers the items submitted during one turn of the event loop and
hands them to ``run`` as one list, which returns one result per item, in order. While a
batch is running, newly submitted items wait for it to end and then go together as the
next batch (as a group commit does): at a low rate every batch holds one item and costs
one loop turn more than a direct call; under load a batch holds what arrived during the
previous round trip, so the cost of a round trip is shared by the requests in flight.

Each submitter gets its own result, or the batch's exception. A submitter that stops
waiting (cancelled, timed out) does not stop the batch: its item is still run, and its
result is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``await batcher.submit(item)``: the result ``run`` gives ``item`` in its batch."""

    __slots__ = ("_run", "_max_size", "_waiting", "_running", "_scheduled")

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_size: int = 256) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._run = run
        self._max_size = max_size
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None
        self._scheduled = False

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if self._running is None and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)  # after the other callbacks of this turn have submitted
        return future

    def _start(self) -> None:
        self._scheduled = False
        if self._running is not None or not self._waiting:
            return
        batch = self._waiting[:self._max_size]
        del self._waiting[:self._max_size]
        self._running = asyncio.get_running_loop().create_task(self._make(batch))

    async def _make(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # cancelled (shutdown): so are its submitters
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._running = None
            if self._waiting:
                self._start()
