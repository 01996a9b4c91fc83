"""The deadline of each request being decided, kept on one timer per listener.

``asyncio.timeout`` around every handler call creates and cancels a timer per request
(on uvloop a libuv timer handle each time): measured at about 13 µs a request, more
than the codec and the decision line together. A listener gives every request the
same timeout, so deadlines are set in the order they fall due: a FIFO of them needs a
single timer, armed for the oldest, and requests that finish in time only mark their
entry (the entries that finished are dropped from the head as new ones come, so the
FIFO holds about the requests in flight).

Usage, inside the task that decides a request::

    watch = deadlines.watch()
    try:
        reply = await handler(...)
    except asyncio.CancelledError:
        if not watch.expired_now():
            raise          # cancelled by someone else (shutdown)
        ...                # the deadline passed: the same as asyncio.timeout's TimeoutError
    finally:
        watch.done()
"""

from __future__ import annotations

import asyncio
from collections import deque


class Watch:
    """One request's deadline; ``done()`` when its handler returned (or raised)."""

    __slots__ = ("deadline", "task", "active", "expired")

    def __init__(self, deadline: float, task: asyncio.Task[object]) -> None:
        self.deadline = deadline
        self.task = task
        self.active = True
        self.expired = False

    def done(self) -> None:
        self.active = False

    def expired_now(self) -> bool:
        """Whether the CancelledError being handled is this deadline's, and no other cancel
        is pending (then the task is uncancelled, as ``asyncio.timeout`` does)."""
        return self.expired and self.task.uncancel() == 0


class Deadlines:
    """Deadlines ``timeout`` seconds (loop time) after each :meth:`watch`, on one timer."""

    __slots__ = ("timeout", "_queue", "_timer", "_loop")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[Watch] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self) -> Watch:
        """A deadline for the running task (call it from inside that task)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
            self._queue.clear()
            self._timer = None
        task = asyncio.current_task(loop)
        assert task is not None, "Deadlines.watch() outside a task"
        entry = Watch(loop.time() + self.timeout, task)
        queue = self._queue
        while queue and not queue[0].active:
            queue.popleft()
        queue.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(entry.deadline, self._fire)
        return entry

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        queue = self._queue
        while queue:
            entry = queue[0]
            if entry.active:
                if entry.deadline > now:
                    break
                entry.active = False
                entry.expired = True
                entry.task.cancel()
            queue.popleft()
        if queue:
            self._timer = loop.call_at(queue[0].deadline, self._fire)

    def close(self) -> None:
        """Forget every deadline (the listener closed; its tasks are cancelled or done)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
