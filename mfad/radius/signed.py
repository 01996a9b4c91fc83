"""``require_message_authenticator = "auto"``: a NAS that has once sent a valid
Message-Authenticator must send one from then on (FreeRADIUS's behaviour for its
clients), so a NAS that cannot sign (OpenVPN's radiusplugin, pam_radius_auth 2.0) keeps
working, and one that can is protected from BlastRADIUS forgeries after its first request.

Guarantees:
- "has signed" is per (client name, source address): one old NAS inside a CIDR client is not
  locked out by a newer neighbour;
- it is remembered in the store (``radius_signed_clients``), so it survives restarts and
  holds on every instance sharing the store: this instance learns another's within
  ``refresh_seconds``; its own take effect at once, before the store write completes;
- a store fault never drops a request: it is logged, and the memory still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from mfad.core.errors import Unavailable
from mfad.core.ports import SignedClientStore

log = logging.getLogger("mfad.radius")


class SignedClients:
    def __init__(self, store: SignedClientStore | None, *, refresh_seconds: float = 10.0,
                 clock: Callable[[], float] = time.time, timeout: float = 5.0) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._clock = clock
        self._timeout = timeout
        self._known: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def requires(self, client: str, address: str) -> bool:
        return (client, address) in self._known

    def signed(self, client: str, address: str) -> None:
        """``client`` at ``address`` sent a valid Message-Authenticator."""
        if (client, address) in self._known:
            return
        self._known.add((client, address))
        log.info("RADIUS client %s (%s) sent Message-Authenticator: it is required from it from now on",
                 client, address)
        if self._store is not None:
            task = asyncio.get_running_loop().create_task(self._save(client, address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _save(self, client: str, address: str) -> None:
        assert self._store is not None
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.save_radius_signed_client(client, address, self._clock())
        except (Unavailable, TimeoutError) as exc:
            log.warning("RADIUS client %s (%s): not remembered in the store as signing: %s", client, address, exc)

    async def load(self) -> None:
        if self._store is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                self._known |= await self._store.load_radius_signed_clients()
        except (Unavailable, TimeoutError) as exc:
            log.warning("RADIUS clients that sign their requests not read from the store: %s", exc)

    async def run(self) -> None:
        """Read what other instances learnt, every ``refresh_seconds``, until :meth:`aclose`."""
        await self.load()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._refresh)
            if not self._stop.is_set():
                await self.load()

    async def aclose(self) -> None:
        self._stop.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)
