"""The gRPC server as a service: bind, serve, report health, shut down gracefully.

Guarantees:
* Without TLS it listens on loopback addresses only and refuses to start on
  any other (``ConfigError``); with a server certificate it binds anywhere, and
  with a client CA every connection must present a certificate signed by it.
* ``SO_REUSEPORT`` is off, so a second daemon on the same port fails to start
  instead of silently sharing the port; a failed bind raises ``ListenError``.
* Requests larger than ``max_receive_message_bytes`` are refused with
  RESOURCE_EXHAUSTED before any servicer code runs.
* The health service says SERVING only while the readiness check (the store
  answers) passes, re-checked every ``health_interval`` seconds; every check is
  bounded by a timeout and a failing or slow check means NOT_SERVING.
* ``aclose()`` stops accepting calls, lets the ones in flight finish within
  ``shutdown_grace`` seconds, cancels the rest, and returns.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from mfad.api.auth import CallerAuthenticator
from mfad.api.interceptor import CallInterceptor
from mfad.api.metrics import GrpcMetrics
from mfad.core.errors import ConfigError, MfadError
from mfad.core.model import Role
from mfad.net import is_loopback, parse_address

log = logging.getLogger("mfad.api")

Readiness = Callable[[], Awaitable[bool]]

HEALTH_SERVICE: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

#: No mfad request comes near this: the largest are WebAuthn credentials
#: (~16 KiB at most); anything bigger is abuse and is refused unread.
DEFAULT_MAX_RECEIVE_BYTES = 64 * 1024


class ListenError(MfadError, OSError):
    """An address could not be bound (in use, not local, bad host)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcServerSettings:
    """The ``[grpc]`` section as the server needs it."""

    #: "host:port" strings; "[::1]:50051" for IPv6; port 0 picks a free port.
    listen: tuple[str, ...] = ("127.0.0.1:50051",)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: PEM bundle of CAs for client certificates; set = client certificates required.
    client_ca: Path | None = None
    #: Client certificate subject CN -> role (used when a call sends no bearer token).
    client_roles: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType({}))
    max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    #: Beyond this many calls in flight, new calls get RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 1024
    shutdown_grace: float = 10.0
    auth_timeout: float = 2.0
    health_interval: float = 5.0
    readiness_timeout: float = 2.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.listen:
            problems.append("grpc.listen: at least one address is needed")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("grpc.tls_cert, grpc.tls_key: set both or neither")
        if self.client_ca is not None and self.tls_cert is None:
            problems.append("grpc.client_ca: client certificates need TLS (grpc.tls_cert, grpc.tls_key)")
        if self.client_roles and self.client_ca is None:
            problems.append("grpc.client_roles: mapping certificates to roles needs grpc.client_ca")
        if self.max_receive_message_bytes < 1024:
            problems.append("grpc.max_receive_message_bytes: at least 1024")
        for name in ("shutdown_grace", "auth_timeout", "health_interval", "readiness_timeout"):
            if getattr(self, name) <= 0:
                problems.append(f"grpc.{name}: must be positive")
        if problems:
            raise ConfigError(problems)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """A servicer to serve: its full proto name and how to add it to a server.

    ``register`` is handed a registry that takes only ``add_generic_rpc_handlers`` and
    ``add_registered_method_handlers`` and puts the caller checks in front of each handler."""

    name: str  # e.g. "mfad.v1.Admin"
    register: Callable[[grpc.aio.Server], None]


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` -> (host, port); ConfigError when malformed."""
    try:
        return parse_address(address)
    except ValueError:
        raise ConfigError([f"grpc.listen: {address!r} is not host:port"]) from None


class GrpcServer:
    def __init__(
        self,
        settings: GrpcServerSettings,
        *,
        services: Sequence[ServiceBinding],
        authenticator: CallerAuthenticator,
        readiness: Readiness,
        metrics: GrpcMetrics | None = None,
    ) -> None:
        if not settings.tls:
            for address in settings.listen:
                host, _ = split_address(address)
                if not is_loopback(host):
                    raise ConfigError(
                        [
                            f"grpc.listen: {address} is not a loopback address; without TLS mfad "
                            "listens on loopback only (set grpc.tls_cert and grpc.tls_key)"
                        ]
                    )
        self._settings = settings
        self._tls_loaded: tuple[bytes, bytes, bytes | None] | None = None
        self._tls_pending: grpc.ServerCertificateConfiguration | None = None
        self._services = tuple(services)
        self._readiness = readiness
        self._interceptor = CallInterceptor(
            authenticator=authenticator,
            client_roles=settings.client_roles if settings.client_ca is not None else None,
            metrics=metrics,
            auth_timeout=settings.auth_timeout,
        )
        self._health = health_aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._addresses: tuple[str, ...] = ()
        self._serving: bool | None = None
        self._closing = asyncio.Event()
        self._close_task: asyncio.Task[None] | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        """The bound "host:port" addresses (real ports when 0 was configured)."""
        return self._addresses

    @property
    def health_names(self) -> tuple[str, ...]:
        """The names the health service answers for: "" (the server) and each service."""
        return ("", *(s.name for s in self._services))

    async def start(self) -> None:
        """Bind every address and start serving (health NOT_SERVING until checked)."""
        if self._server is not None:
            return
        if self._closing.is_set():
            raise RuntimeError("GrpcServer.start() after aclose()")
        s = self._settings
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", s.max_receive_message_bytes),
            ],
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        )
        # Each mfad.v1 handler is guarded once, as it is registered (mfad.api.interceptor);
        # health and reflection are added beside them, open.
        guarded = self._interceptor.registry(server)
        for service in self._services:
            service.register(guarded)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*(svc.name for svc in self._services), HEALTH_SERVICE, reflection.SERVICE_NAME), server
        )
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        credentials = None
        if s.tls:
            # Local files; the bound only keeps a stuck mount from stalling start-up.
            async with asyncio.timeout(10.0):
                credentials = await asyncio.to_thread(self._credentials)
        try:
            addresses = [self._bind(server, address, credentials) for address in s.listen]
        except ListenError:
            # grpc releases bound ports only when a started server stops; the
            # moment in between serves nothing that skips the interceptor.
            await server.start()
            await server.stop(None)
            raise
        await server.start()
        self._server = server
        self._addresses = tuple(addresses)
        mode = (
            "TLS with client certificates" if s.client_ca else "TLS"
        ) if s.tls else "no TLS: loopback only"
        log.info("grpc listening on %s (%s)", ", ".join(self._addresses), mode)

    def _tls_files(self) -> tuple[bytes, bytes, bytes | None]:
        """(key, certificate chain, client CAs) as the files hold them now."""
        s = self._settings
        if s.tls_cert is None or s.tls_key is None:
            raise ConfigError(["grpc.tls_cert, grpc.tls_key: both are needed for TLS"])
        try:
            key, cert = s.tls_key.read_bytes(), s.tls_cert.read_bytes()
            ca = s.client_ca.read_bytes() if s.client_ca is not None else None
        except OSError as exc:
            raise ConfigError([f"grpc: cannot read TLS file {exc.filename}: {exc.strerror}"]) from exc
        return key, cert, ca

    def _credentials(self) -> grpc.ServerCredentials:
        # Dynamic credentials: grpc asks the fetcher at each new handshake, so a reload can
        # hand it renewed certificates (connections already open keep theirs).
        self._tls_loaded = self._tls_files()
        key, cert, ca = self._tls_loaded
        initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        # The fetcher returns None to keep the current certificate, as grpc documents; its
        # type stubs say it must always return one.
        return grpc.dynamic_ssl_server_credentials(initial, self._fetch_certificates,  # type: ignore[arg-type]
                                                   require_client_authentication=ca is not None)

    def _fetch_certificates(self) -> grpc.ServerCertificateConfiguration | None:
        pending, self._tls_pending = self._tls_pending, None
        return pending  # None: keep the current ones

    def prepare_tls_reload(self) -> Callable[[], None] | None:
        """A reload: when the TLS files changed on disk, (what puts them in force for new
        connections); None when unchanged or without TLS. Raises ConfigError — changing
        nothing — for files that cannot be read or do not go together."""
        if not self._settings.tls or self._tls_loaded is None:
            return None
        files = self._tls_files()
        if files == self._tls_loaded:
            return None
        key, cert, ca = files
        if ca is not None and ca != self._tls_loaded[2]:
            raise ConfigError(["grpc.client_ca: a changed client CA bundle needs a restart"])
        _check_pair(cert, key)
        config = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

        def apply() -> None:
            self._tls_pending = config
            self._tls_loaded = files
            log.info("grpc TLS certificate reloaded (new connections use it)")

        return apply

    @staticmethod
    def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> str:
        host, _ = split_address(address)
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # grpc's way of saying the bind failed
            raise ListenError(f"grpc: cannot listen on {address}: {exc}") from exc
        if port == 0:
            raise ListenError(f"grpc: cannot listen on {address}")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def run(self) -> None:
        """Serve until :meth:`aclose`; keeps the health status current meanwhile.
        :meth:`start` binds first (this binds nothing)."""
        if self._server is None:
            raise RuntimeError("GrpcServer.run() before start()" if not self._closing.is_set()
                               else "GrpcServer.run() after aclose()")
        try:
            while not self._closing.is_set():
                await self.check_readiness()
                try:
                    async with asyncio.timeout(self._settings.health_interval):
                        await self._closing.wait()
                except TimeoutError:
                    pass
        finally:
            await self.aclose()

    async def check_readiness(self) -> bool:
        """Ask the readiness callback once (bounded) and publish the answer."""
        try:
            async with asyncio.timeout(self._settings.readiness_timeout):
                ready = await self._readiness()
        except Exception as exc:  # noqa: BLE001 -- any failure to answer means not ready
            log.debug("grpc readiness check failed: %r", exc)
            ready = False
        if self._closing.is_set():
            return False
        if ready != self._serving:
            (log.info if ready else log.warning)("grpc health: %s", "SERVING" if ready else "NOT_SERVING")
            status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in self.health_names:
                await self._health.set(name, status)
            self._serving = ready
        return ready

    async def aclose(self) -> None:
        """Stop accepting, drain in-flight calls within the grace period, return. Idempotent."""
        self._closing.set()
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        server = self._server
        if server is None:
            return
        grace = self._settings.shutdown_grace
        await self._health.enter_graceful_shutdown()
        log.info("grpc shutting down (grace %.1f s)", grace)
        try:
            # stop() itself cancels what is left after the grace; the extra
            # second only guards against a stop that never returns.
            async with asyncio.timeout(grace + 1.0):
                await server.stop(grace)
        except TimeoutError:
            log.error("grpc server did not stop within %.1f s", grace + 1.0)
        log.info("grpc stopped")


def _check_pair(cert: bytes, key: bytes) -> None:
    """The certificate and key load together (ConfigError naming grpc.tls_cert otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError([f"grpc.tls_cert: the new certificate and key do not load together: {exc}"]) from None
