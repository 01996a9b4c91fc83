"""The daemon: opens the store, builds the core, runs the services until a signal.

Every long-running piece is a service with ``start()``, ``run()`` and ``aclose()``
(``mfad.lifecycle``); the daemon owns its resources in an AsyncExitStack.
SIGTERM/SIGINT, or a service failing, stop the services in the reverse order of
their start: the transports first (they drain in-flight requests within their
own bound), then the outbox, the housekeeping and the metrics port; then the
store closes. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, GCCollector, PlatformCollector, ProcessCollector

from mfad.api.server import GrpcServer
from mfad.config import Config, parse_address
from mfad.core.errors import ConfigError, SchemaError, Unavailable
from mfad.core.keyring import Keyring
from mfad.core.ports import Store
from mfad.core.retention import Retention
from mfad.core.service import Mfa
from mfad.directory import build as build_directories
from mfad.lifecycle import Service, StopSignals, run_all, start_all
from mfad.mail.metrics import EmailPrometheusMetrics
from mfad.mail.service import ReloadableMailer, outbox_service
from mfad.observability import systemd
from mfad.observability.http import HealthState, MetricsHttpServer
from mfad.observability.metrics import CorePrometheusMetrics, DaemonGauges, StorePrometheusMetrics
from mfad.preflight import preflight
from mfad.radius.daemon import RadiusService
from mfad.reload import Reloadable, Reloader, logging_part, smtp_part
from mfad.store import open_store
from mfad.store.migrations import latest_version

log = logging.getLogger("mfad")

HEALTH_PROBE_SECONDS = 2.0


async def prepare_schema(store: Store, *, auto_migrate: bool) -> None:
    """Migrate a fresh database; refuse an older one unless allowed, and a newer one always."""
    current = await store.schema_version()
    known = latest_version(store.engine)
    if current > known:
        raise SchemaError(f"the database schema is v{current}, newer than this mfad knows (v{known}); "
                          "upgrade mfad")
    if current == 0 or (current < known and auto_migrate):
        applied = await store.migrate()
        if applied:
            log.info("migrated the %s store to schema v%d", store.engine, applied[-1])
    elif current < known:
        raise SchemaError(f"the database schema is v{current}, this mfad needs v{known}: run 'mfad migrate' "
                          "(or set storage.auto_migrate = true)")


@contextlib.asynccontextmanager
async def open_core(config: Config, registry: CollectorRegistry | None = None, *,
                    migrate: bool = True) -> AsyncIterator[Mfa]:
    """The store and the core, for the daemon and for the CLI's offline commands."""
    store_metrics = StorePrometheusMetrics(registry) if registry is not None else None
    store = await open_store(config.storage, metrics=store_metrics)
    try:
        if migrate:
            await prepare_schema(store, auto_migrate=config.storage.auto_migrate)
        keyring = Keyring.open(Path(config.secrets.key_file))
        core_metrics = CorePrometheusMetrics(registry) if registry is not None else None
        email_metrics = EmailPrometheusMetrics(registry) if registry is not None else None
        directories = build_directories(config)
        mfa = Mfa(settings=config.core, store=store, keyring=keyring, metrics=core_metrics, email_metrics=email_metrics,
                  directories=directories.by_name, first_factor_by_client=directories.by_client,
                  first_factor_by_protocol=directories.by_protocol,
                  upstream_reply_attributes=directories.reply_allowed)
        try:
            await mfa.start()
            yield mfa
        finally:
            mfa.close()
            await directories.aclose()
    finally:
        await store.aclose()


def daemon_registry() -> CollectorRegistry:
    """The daemon's metrics registry, with the standard ``process_*`` (CPU, memory, file
    descriptors) and ``python_*`` (garbage collection, version) collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Housekeeping:
    """Probes the store for readiness, feeds the systemd watchdog, clears expired state."""

    def __init__(self, mfa: Mfa, health: HealthState, gauges: DaemonGauges, retention: Retention, *,
                 prune_interval: float) -> None:
        self._mfa = mfa
        self._health = health
        self._gauges = gauges
        self._prune_interval = prune_interval
        self._retention = retention
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Nothing to bind: the store is open already."""

    async def run(self) -> None:
        watchdog = systemd.watchdog_interval()
        last_janitor = 0.0
        while not self._stop.is_set():
            ok = await self._probe()
            if ok and time.monotonic() - last_janitor > self._prune_interval:
                last_janitor = time.monotonic()
                with contextlib.suppress(Unavailable):
                    removed = await self._mfa.store.delete_expired_pending(self._mfa.clock.now())
                    if removed:
                        log.info("removed %d expired pending device(s)", removed)
                    await self._mfa.store.delete_expired_sessions(self._mfa.clock.now())
                    pruned = await self._retention.prune()
                    if any(pruned.values()):
                        log.debug("pruned %s", ", ".join(f"{n} {table}" for table, n in pruned.items() if n))
            if watchdog is not None and self._health.loop_alive:
                systemd.notify("WATCHDOG=1")
            interval = min(HEALTH_PROBE_SECONDS, self._prune_interval, watchdog or HEALTH_PROBE_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def _probe(self) -> bool:
        try:
            await self._mfa.store.ping()
            now = self._mfa.clock.now()
            self._gauges.challenges_open.set(await self._mfa.store.count_open_challenges(now))
            self._gauges.approvals_pending.set(await self._mfa.store.count_open_approvals(now))
            ok = True
        except Unavailable as exc:
            if self._health.store_ok:
                log.error("store unavailable: %s", exc)
            ok = False
        if ok and not self._health.store_ok:
            log.info("store answers: ready")
        self._health.tick(ok)
        self._gauges.store_up.set(1 if ok else 0)
        return ok

    async def aclose(self) -> None:
        self._stop.set()


def _radius_part(service: RadiusService) -> Reloadable:
    return lambda new: service.prepare_reload(new.radius)


def _tls_part(server: GrpcServer) -> Reloadable:
    """gRPC's certificate, re-read from its files (renewed in place: the paths stay)."""
    return lambda new: (server.prepare_tls_reload(), [])


def transport_services(mfa: Mfa, config: Config, registry: CollectorRegistry, health: HealthState,
                       *, reuse_port: bool) -> list[Service]:
    """The network front ends (gRPC, RADIUS) as services sharing one core."""
    services: list[Service] = []
    try:
        from mfad.api.daemon import grpc_service
    except ImportError:  # the gRPC servicers are optional at this layer
        pass
    else:
        if config.grpc.listen:  # RADIUS workers other than the first serve no gRPC (mfad.workers)
            services.append(grpc_service(mfa, config, registry, health))
    from mfad.radius.daemon import radius_service

    services.append(radius_service(mfa, config, registry, reuse_port=reuse_port))
    return services


async def serve(config: Config, *, reuse_port: bool = False, config_path: Path | None = None,
                transform: Callable[[Config], Config] | None = None) -> int:
    """Run until SIGTERM/SIGINT or a service fails. Returns the process exit code; a
    failure is logged here, once. SIGHUP reloads ``config_path`` (``mfad.reload``),
    passed through ``transform`` (a worker's own listeners) the way ``config`` was."""
    loop = asyncio.get_running_loop()
    loop_name = type(loop).__module__.split(".")[0]
    signals = StopSignals(loop)
    hangups: list[Reloader] = []

    def hangup() -> None:
        if not hangups:
            log.warning("SIGHUP before the daemon is ready: ignored (send it again once it is)")
        for reloader in hangups:
            reloader.request()

    loop.add_signal_handler(signal.SIGHUP, hangup)
    registry = daemon_registry()
    health = HealthState()
    try:
        # Every check before anything is created, migrated or bound (what check-config runs).
        report = await preflight(config)
        if report.problems:
            raise ConfigError(report.problems)
        async with contextlib.AsyncExitStack() as stack:
            mfa = await stack.enter_async_context(open_core(config, registry))
            gauges = DaemonGauges(registry, mfa.store.engine)
            host, port = parse_address(config.metrics.listen[0])
            http = MetricsHttpServer(host, port, registry, health)
            retention = Retention(store=mfa.store, clock=mfa.clock, limits=config.limits,
                                  audit_retention_days=config.audit.retention_days,
                                  session_retention_days=config.radius.accounting_retention_days)
            housekeeping = Housekeeping(mfa, health, gauges, retention,
                                        prune_interval=config.storage.prune_interval_seconds)
            mailer = ReloadableMailer(config.smtp)
            transports = transport_services(mfa, config, registry, health, reuse_port=reuse_port)
            parts = [logging_part(config), smtp_part(config, mailer),
                     *(_radius_part(t) for t in transports if isinstance(t, RadiusService)),
                     *(_tls_part(t) for t in transports if isinstance(t, GrpcServer))]
            reloads = Counter("mfad_config_reloads", "Configuration reloads (SIGHUP), by result: applied, or "
                              "refused (the file had a problem; nothing changed).", ["result"], registry=registry)
            for result in ("applied", "refused"):
                reloads.labels(result)
            reloader = Reloader(config_path, config, parts, transform=transform or (lambda c: c),
                                on_reload=lambda result: reloads.labels(result).inc())
            services: list[Service] = [http, housekeeping, reloader, outbox_service(mfa, config.smtp, mailer),
                                       *transports]
            if config.portal.enabled and config.grpc.listen:  # one portal, beside the gRPC it calls
                from mfad.embedded_portal import portal_service

                services.append(await portal_service(mfa, config, registry))
            await start_all(services)  # every listener bound before READY=1
            hangups.append(reloader)
            log.info("mfad serving (store %s, event loop %s, metrics http://%s:%d/metrics)", mfa.store.engine,
                     loop_name, host, http.port)
            # What is alive now lives as long as the daemon: keep it out of every later garbage
            # collection (a full one walked it all: pauses of tens of ms, the RADIUS p99).
            gc.freeze()
            failures = await run_all(services, signals.stop)
    finally:
        signals.remove()
    for failure in failures:
        log.error("%s failed: %s", failure, failure.__cause__, exc_info=failure.__cause__)
    if failures:
        return 1
    log.info("mfad stopped")
    return 0
