"""The portal as a long-running service (``run()`` / ``aclose()``), for ``mfad serve`` and
``mfad-portal``: uvicorn's HTTP server on sockets it binds itself, in the caller's event loop.

uvicorn's own ``serve()`` is not used: it installs signal handlers (the daemon owns
them) and polls for shutdown. Here ``start()`` binds, ``run()`` waits for ``aclose()``,
then in-flight requests get ``GRACE_SECONDS`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn
from prometheus_client import CollectorRegistry

from mfad.config import PortalSettings, parse_address
from mfad_client import MfadClient
from mfad_portal.app import create_app

log = logging.getLogger("mfad.portal")

GRACE_SECONDS = 5.0
#: uvicorn refreshes its Date header on a tick; once a second is what it does itself.
TICK_SECONDS = 1.0


class PortalService:
    def __init__(self, client: MfadClient, settings: PortalSettings, registry: CollectorRegistry, *,
                 serve_metrics: bool = False, close_client: bool = False) -> None:
        self._client = client
        self._close_client = close_client
        self._settings = settings
        app = create_app(client, settings, registry, serve_metrics=serve_metrics)
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                proxy_headers=False, timeout_graceful_shutdown=int(GRACE_SECONDS),
                                timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024,
                                ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key)
        config.load()
        self._server = uvicorn.Server(config)
        self._server.lifespan = config.lifespan_class(config)
        self._sockets: list[socket.socket] = []
        self._stop = asyncio.Event()
        self._started = False
        self.ports: list[int] = []

    async def start(self) -> None:
        """Bind every ``listen`` address (before the daemon says it is ready)."""
        if self._started:
            return
        for address in self._settings.listen:
            host, port = parse_address(address)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.create_server((host, port), family=family, reuse_port=False)
            except OSError as exc:  # name the listener: "Address already in use" alone says not which
                raise OSError(exc.errno, f"portal.listen: cannot listen on {address}: {exc.strerror}") from None
            sock.setblocking(False)
            self._sockets.append(sock)
            self.ports.append(sock.getsockname()[1])
        await self._server.startup(sockets=self._sockets)
        self._started = True
        log.info("portal serving %s (listening on %s)", self._settings.origin, ", ".join(self._settings.listen))

    async def run(self) -> None:
        """Serve what :meth:`start` bound until :meth:`aclose` (it binds nothing itself)."""
        if not self._started:
            raise RuntimeError("PortalService.run() before start()")
        try:
            while not self._stop.is_set():
                await self._server.on_tick(0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), TICK_SECONDS)
        finally:
            self._server.should_exit = True
            await self._server.shutdown(sockets=self._sockets)
            if self._close_client:
                await self._client.close()

    async def aclose(self) -> None:
        self._stop.set()
