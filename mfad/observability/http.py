"""The metrics port: ``/metrics``, ``/healthz`` and ``/readyz``.

Served from its own thread (prometheus-client's pattern), so a scrape still
answers while the event loop is busy. ``/healthz`` fails when the event loop
has not ticked recently (a wedged daemon); ``/readyz`` fails unless the last
store probe succeeded — a load balancer then stops sending traffic here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("mfad.http")

LOOP_STALL_SECONDS = 15.0  # /healthz fails when the event loop has not ticked for this long


class HealthState:
    """Written by the event loop, read by the HTTP thread (plain attribute writes are atomic)."""

    def __init__(self) -> None:
        self.store_ok = False
        self.last_tick = time.monotonic()

    def tick(self, store_ok: bool) -> None:
        self.store_ok = store_ok
        self.last_tick = time.monotonic()

    @property
    def loop_alive(self) -> bool:
        return time.monotonic() - self.last_tick < LOOP_STALL_SECONDS


class MetricsHttpServer:
    """A service of the daemon: ``start`` binds (or raises), ``aclose`` stops the thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: HealthState) -> None:
        self._address = (host, port)
        self._handler = _handler(registry, health)
        self._server: ThreadingHTTPServer | None = None
        self._closed = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    async def start(self) -> None:
        try:
            self._server = ThreadingHTTPServer(self._address, self._handler)
        except OSError as exc:  # name the listener: "Address already in use" alone says not which
            host, port = self._address
            raise OSError(exc.errno, f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True).start()

    async def run(self) -> None:
        await self._closed.wait()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # shutdown() waits for serve_forever to notice (up to its 0.5 s poll): off the loop.
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        self._closed.set()


def _handler(registry: CollectorRegistry, health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.loop_alive
                self._reply(200 if ok else 503, b"ok\n" if ok else b"event loop stalled\n")
            elif path == "/readyz":
                ok = health.loop_alive and health.store_ok
                self._reply(200 if ok else 503, b"ready\n" if ok else b"store unavailable\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler
