"""The RADIUS service of the daemon: settings and clients from the config, the sign-in
adapter on the core, Prometheus metrics, and the reply cache shared through the store.

Guarantees: the listener binds every configured address or the daemon does not start;
each client's secret, mode and Message-Authenticator policy come from its own config
entry (server-wide defaults otherwise), and clients that do not require
Message-Authenticator are logged as a warning at start. With PostgreSQL (several
hosts may share it), or ``radius.shared_replies = true``, requests are claimed and
replies shared through the store, so a retransmission that reaches another instance
is neither decided twice nor answered differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from mfad.config import Config, RadiusClientSettings, RadiusSettings
from mfad.core.accounting import SessionLog
from mfad.core.batches import Batcher
from mfad.core.errors import ConfigError, Unavailable
from mfad.core.ports import ReplyStore, RequestClaim
from mfad.core.retention import drain
from mfad.core.service import Mfa
from mfad.radius.accounting import (
    AccountingHandler,
    AccountingMetrics,
    AccountingServer,
    PrometheusAccountingMetrics,
    accounting_listen,
)
from mfad.radius.cache import Claim, RequestKey
from mfad.radius.signed import SignedClients
from mfad.radius.clients import RADSEC_SECRET, ClientMode, ClientTable, RadiusClient, parse_network
from mfad.radius.errors import RadiusConfigError
from mfad.radius.hold import HeldSignIns
from mfad.radius.metrics import PrometheusRadiusMetrics, RadiusMetrics
from mfad.radius.radsec import (
    Identities,
    PrometheusRadsecMetrics,
    RadsecClient,
    RadsecServer,
    RadsecServerSettings,
    load_cas,
    server_context,
)
from mfad.radius.server import RadiusServer, RadiusServerSettings, parse_listen_address
from mfad.radius.signin import SignInHandler

log = logging.getLogger("mfad.radius")



OTP_ONLY_RATE = 500.0
"""Default requests/s of an ``otp_only`` client: no password to hash, a code check costs
~0.1–0.7 ms of one worker (docs/radius.md, Performance), so this leaves room for others."""


def server_settings(radius: RadiusSettings, *, reuse_port: bool) -> RadiusServerSettings:
    return RadiusServerSettings(
        listen=tuple(parse_listen_address(address) for address in radius.listen),
        reuse_port=reuse_port,
        max_in_flight=radius.max_in_flight,
        reject_delay=radius.reject_delay_seconds,
        handler_timeout=radius.handler_timeout_seconds,
        drain_timeout=radius.drain_timeout_seconds,
        shared_cache_timeout=radius.shared_cache_timeout_seconds,
        shared_wait=radius.shared_wait_seconds,
    )


def client_rate(radius: RadiusSettings, mode: ClientMode, password_capacity: float) -> float:
    """A client's requests/s: ``client_rate_per_second`` when set, else what this process can
    serve in its mode. A password sign-in is two requests, and only the first hashes: twice
    the hasher's measured capacity keeps a client from queueing more than it can be served
    (with the per-client fair queue in front of hashing, several clients share it)."""
    if radius.client_rate_per_second is not None:
        return radius.client_rate_per_second
    if mode is ClientMode.OTP_ONLY:
        return OTP_ONLY_RATE
    return max(1.0, 2 * password_capacity)


def make_client(radius: RadiusSettings, entry: RadiusClientSettings, password_capacity: float) -> RadiusClient:
    """One configured client; a RadSec one (``radsec_group`` set) has the secret ``radsec`` and
    needs no Message-Authenticator (TLS protects its packets). Raises RadiusConfigError."""
    over_tls = entry.radsec_group is not None
    if entry.secret is None and not over_tls:
        raise RadiusConfigError("no secret")
    mode = ClientMode(entry.mode or radius.mode)
    required = (radius.require_message_authenticator if entry.require_message_authenticator is None
                else entry.require_message_authenticator)
    return RadiusClient(
        name=entry.name,
        network=parse_network(entry.address),
        secret=RADSEC_SECRET if over_tls else (entry.secret or "").encode("utf-8"),
        mode=mode,
        rate_per_second=client_rate(radius, mode, password_capacity),
        require_message_authenticator=not over_tls and required is True,
        learn_message_authenticator=not over_tls and required == "auto",
        trust_calling_station_id=entry.trust_calling_station_id,
        limit_proxy_state=entry.limit_proxy_state and not over_tls,
        over_tls=over_tls,
        approval_hold_seconds=0 if over_tls or mode is ClientMode.CHALLENGE else entry.approval_hold_seconds,
    )


def client_table(radius: RadiusSettings, password_capacity: float = 20.0) -> ClientTable:
    """The configured UDP clients (``secret_file`` was resolved when the config loaded; RadSec
    clients are not among them); ``password_capacity`` is the hasher's verifications per
    second (for default rates)."""
    clients = []
    problems = []
    for i, entry in enumerate(radius.clients):
        if entry.radsec_group is not None:
            continue
        try:
            clients.append(make_client(radius, entry, password_capacity))
        except RadiusConfigError as exc:
            problems.append(f"radius.clients[{i}]: {exc}")
    try:
        table = ClientTable(clients)
    except RadiusConfigError as exc:
        problems.append(f"radius.clients: {exc}")
    if problems:
        raise ConfigError(problems)
    return table


def shares_replies(radius: RadiusSettings, engine: str) -> bool:
    """Whether claims and replies go through the store: by default with PostgreSQL, the
    engine of several hosts. SQLite means one host, where ``workers`` share the port
    with SO_REUSEPORT, which hashes a NAS's address and port to the same worker every
    time: its retransmissions find that worker's own cache."""
    if radius.shared_replies is not None:
        return radius.shared_replies
    return engine != "sqlite"


class StoreReplyCache:
    """:class:`~mfad.radius.cache.ClaimingReplyCache` on the store's ``radius_requests`` table.
    The claims, and the saves, of the requests in flight are gathered into one store call
    each (:class:`~mfad.core.batches.Batcher`): on PostgreSQL one round trip for a batch
    instead of two for every request."""

    def __init__(self, store: ReplyStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock  # wall-clock seconds: instances on several hosts compare them
        self._claims: Batcher[tuple[bytes, float], RequestClaim] = Batcher(self._claim_batch)
        self._saves: Batcher[tuple[bytes, bytes, float], None] = Batcher(self._save_batch)

    async def claim_reply(self, key: RequestKey, hold: float) -> bytes | Claim:
        claim = await self._claims.submit((key.digest(), hold))
        if claim.owned:
            return Claim.OWNED
        return claim.reply if claim.reply is not None else Claim.IN_FLIGHT

    async def _claim_batch(self, claims: list[tuple[bytes, float]]) -> list[RequestClaim]:
        now = self._clock()
        return await self._store.claim_radius_requests([(key, now + hold) for key, hold in claims], now)

    async def load_reply(self, key: RequestKey) -> bytes | None:
        return await self._store.load_radius_reply(key.digest(), self._clock())

    async def save_reply(self, key: RequestKey, reply: bytes, ttl: float) -> None:
        await self._saves.submit((key.digest(), reply, ttl))

    async def _save_batch(self, replies: list[tuple[bytes, bytes, float]]) -> list[None]:
        now = self._clock()
        await self._store.save_radius_replies([(key, reply, now + ttl) for key, reply, ttl in replies])
        return [None] * len(replies)

    async def release_reply(self, key: RequestKey) -> None:
        await self._store.delete_radius_claim(key.digest())

    async def extend_claim(self, key: RequestKey, seconds: float) -> None:
        """Keep this instance's claim (no reply yet) for ``seconds`` from now: a held request."""
        await self._store.update_radius_claim(key.digest(), self._clock() + seconds)

    async def purge(self) -> int:
        """Expired claims and replies, in bounded batches."""
        now = self._clock()
        return await drain(lambda n: self._store.delete_expired_radius_requests(now, n))


class RadiusService:
    """The listener plus, with a shared cache, a janitor for its expired rows; and the
    accounting and RadSec listeners when there are any."""

    def __init__(self, server: RadiusServer, cache: StoreReplyCache | None, *, purge_interval: float = 30.0,
                 accounting: AccountingServer | None = None, radsec: RadsecServer | None = None,
                 radius: RadiusSettings | None = None, password_capacity: float = 20.0,
                 holds: HeldSignIns | None = None) -> None:
        self.server = server
        self.holds = holds
        self._radius = radius
        self._capacity = password_capacity
        self.accounting = accounting
        self.radsec = radsec
        self._others: list[AccountingServer | RadsecServer] = [s for s in (accounting, radsec) if s is not None]
        self._cache = cache
        self._purge_interval = purge_interval
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Bind the listeners (or raise): the daemon says READY only after this."""
        if self.server.signed is not None:
            await self.server.signed.load()  # NASes that must sign, before the first request
        await self.server.start()
        try:
            for other in self._others:
                await other.start()
        except BaseException:
            await self.aclose()
            raise

    async def run(self) -> None:
        """Serve what :meth:`start` bound until :meth:`aclose` (it binds nothing itself)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.server.run())
            for other in self._others:
                group.create_task(other.run())
            if self._cache is not None:
                group.create_task(self._purge())
            if self.server.signed is not None:
                group.create_task(self.server.signed.run())

    async def _purge(self) -> None:
        assert self._cache is not None
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._purge_interval)
            if self._stop.is_set():
                return
            try:
                async with asyncio.timeout(max(self._purge_interval, 10.0)):
                    await self._cache.purge()
            except (Unavailable, TimeoutError) as exc:
                log.debug("shared RADIUS replies not purged: %s", exc)

    def prepare_reload(self, radius: RadiusSettings) -> tuple[Callable[[], None] | None, list[str]]:
        """A reload of ``[[radius.clients]]``: (what applies the new UDP clients, None when they
        did not change; the keys that changed but need a restart). Raises ConfigError — and
        changes nothing — when the new clients are invalid."""
        current = self._radius
        if current is None:
            return None, []
        restart = [f"radius.{f.name}" for f in dataclasses.fields(RadiusSettings)
                   if f.name != "clients" and getattr(current, f.name) != getattr(radius, f.name)]
        if [c for c in current.clients if c.radsec_group is not None] != \
                [c for c in radius.clients if c.radsec_group is not None]:
            restart.append("radius.clients (RadSec clients)")
        udp = [c for c in radius.clients if c.radsec_group is None]
        if udp == [c for c in current.clients if c.radsec_group is None]:
            return None, restart
        table = client_table(dataclasses.replace(current, clients=udp), self._capacity)

        def apply() -> None:
            self.server.replace_clients(table)
            self._radius = dataclasses.replace(current, clients=[*udp, *(c for c in current.clients
                                                                         if c.radsec_group is not None)])
            log.info("RADIUS clients reloaded: %s", ", ".join(c.name for c in self.server.clients) or "none")

        return apply, restart

    async def aclose(self) -> None:
        self._stop.set()
        await self.server.aclose()  # held requests are abandoned there (their NAS fails over)
        if self.server.signed is not None:
            await self.server.signed.aclose()
        if self.holds is not None:
            await self.holds.aclose()
        for other in self._others:
            await other.aclose()


def radius_service(mfa: Mfa, config: Config, registry: CollectorRegistry | None, *,
                   reuse_port: bool = False, metrics: RadiusMetrics | None = None) -> RadiusService:
    """The RADIUS front end on ``mfa``'s core, as a service with ``run()``/``aclose()``."""
    radius = config.radius
    clients = client_table(radius, mfa.passwords.capacity)
    for client in clients:
        log.info("RADIUS client %s (%s): at most %.0f requests/s", client.name, client.mode.value,
                 client.rate_per_second or 0)
    if metrics is None and registry is not None:
        metrics = PrometheusRadiusMetrics(registry, [c.name for c in clients])
    cache = None
    if shares_replies(radius, mfa.store.engine):
        cache = StoreReplyCache(mfa.store)
    handler = SignInHandler(mfa.signin, challenge_ttl=config.limits.challenge_ttl_seconds,
                            approve_url=config.portal.approve_url, holds=HeldSignIns(mfa.signin, mfa.approvals))
    settings = server_settings(radius, reuse_port=reuse_port)
    signed = SignedClients(mfa.store, timeout=config.storage.timeout_seconds)
    server = RadiusServer(settings, clients, handler, metrics=metrics, shared_cache=cache, signed=signed)
    reports = PrometheusAccountingMetrics(registry) if registry is not None else None
    accounting = accounting_server(mfa, radius, settings, clients, reports, metrics)
    radsec = None
    if config.radsec.listen:
        radsec = radsec_server(mfa, config, handler, registry, metrics, reports, reuse_port=reuse_port)
    return RadiusService(server, cache, purge_interval=config.storage.prune_interval_seconds,
                         accounting=accounting, radsec=radsec, radius=radius,
                         password_capacity=mfa.passwords.capacity, holds=handler.holds)


def accounting_server(mfa: Mfa, radius: RadiusSettings, settings: RadiusServerSettings, clients: ClientTable,
                      reports: AccountingMetrics | None, metrics: RadiusMetrics | None) -> AccountingServer | None:
    """The accounting listener on the same clients, or None when ``accounting_listen = []``."""
    listen = accounting_listen(radius.accounting_listen, settings.listen)
    if not listen:
        return None
    handler = AccountingHandler(SessionLog(mfa.store, mfa.clock), metrics=reports)
    acct_settings = dataclasses.replace(settings, listen=tuple(parse_listen_address(a) for a in listen))
    return AccountingServer(acct_settings, clients, handler, metrics=metrics)


def radsec_server(mfa: Mfa, config: Config, handler: SignInHandler, registry: CollectorRegistry | None,
                  metrics: RadiusMetrics | None, reports: AccountingMetrics | None = None, *,
                  reuse_port: bool = False) -> RadsecServer:
    """The RadSec listener on the sign-in handler of the UDP one, with its own accounting
    handler (reports recorded with protocol ``radsec``)."""
    radius, radsec = config.radius, config.radsec
    assert radsec.tls_cert is not None and radsec.tls_key is not None  # the config's checks
    problems = []
    clients = []
    for i, entry in enumerate(radius.clients):
        if entry.radsec_group is None:
            continue
        try:
            clients.append(RadsecClient(client=make_client(radius, entry, mfa.passwords.capacity),
                                        group=entry.radsec_group, certificate_name=entry.certificate_name or ""))
        except RadiusConfigError as exc:
            problems.append(f"radius.clients[{i}]: {exc}")
    try:
        cas = {group.name: load_cas(group.ca_file) for group in radsec.groups}
        identities = Identities(cas, clients)
        context = server_context(cert_file=radsec.tls_cert, key_file=radsec.tls_key,
                                 ca_files=[group.ca_file for group in radsec.groups],
                                 min_version=radsec.tls_min_version)
    except RadiusConfigError as exc:
        problems.append(f"radsec: {exc}")
    if problems:
        raise ConfigError(problems)
    if not len(identities):
        log.warning("RadSec listens but no [[radius.clients]] entry has a radsec_group: every connection is refused")
    accounting = AccountingHandler(SessionLog(mfa.store, mfa.clock), metrics=reports, protocol="radsec")
    settings = RadsecServerSettings(
        listen=tuple(parse_listen_address(address) for address in radsec.listen), reuse_port=reuse_port,
        idle_timeout=radsec.idle_timeout_seconds, handshake_timeout=radsec.handshake_timeout_seconds,
        max_connections=radsec.max_connections, max_in_flight_per_connection=radsec.max_in_flight_per_connection,
        reject_delay=radius.reject_delay_seconds, handler_timeout=radius.handler_timeout_seconds,
        drain_timeout=radius.drain_timeout_seconds)
    return RadsecServer(settings, context, identities, handler, accounting, metrics=metrics,
                        connection_metrics=PrometheusRadsecMetrics(registry) if registry is not None else None)
