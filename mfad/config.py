"""Configuration: one TOML file, ``MFAD_<SECTION>_<KEY>`` environment overrides.

Guarantees: every key has a safe default; unknown or ill-typed keys are refused
with their full path (``radius.clients[2].secret: must be at least 16
characters``); every problem is reported at once; secrets can be read from
files (``secret_file``, ``password_file``) instead of sitting in the TOML.
Each component receives its own frozen section, never the whole config.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mfad.core.errors import ConfigError
from mfad.core.model import EnrolmentProof, Method, MfaRequired, Policy, Role
from mfad.core.settings import (
    WEBAUTHN_ATTESTATION_FORMATS,
    CoreSettings,
    EmailCodeSettings,
    LimitSettings,
    OutboxSettings,
    PasswordSettings,
    TotpSettings,
    UserSettings,
    WebauthnSettings,
    between,
    check,
    non_negative,
    positive,
    short_text,
)
from mfad.net import is_loopback, parse_address

__all__ = ["WEBAUTHN_ATTESTATION_FORMATS", "Config", "ConfigError", "LimitSettings", "PasswordSettings",
           "TotpSettings", "UserSettings", "WebauthnSettings", "load_config", "parse_address"]

DEFAULT_DATA_DIR = Path("./mfad-data")
MIN_RADIUS_SECRET = 16


def _addresses(value: Any) -> str | None:
    if not value:
        return "must list at least one address"
    for item in value:
        try:
            parse_address(item)
        except ValueError as exc:
            return f"{item!r}: {exc}"
    return None


def _optional_addresses(value: Any) -> str | None:
    return _addresses(value) if value else None


def _storage_url(value: Any) -> str | None:
    if value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://")):
        return None
    return "must start with sqlite:/// or postgresql://"


def _mail_address(value: Any) -> str | None:
    from mfad.core.addresses import AddressError, normalize_address

    try:
        normalize_address(value)
    except AddressError as exc:
        return exc.reason
    return None


def _optional_mail_address(value: Any) -> str | None:
    return None if value == "" else _mail_address(value)


def _network(value: Any) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "must be an IP address or CIDR network"
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        # "10.0.0.1/8" is a typo more often than an intent: say which network was meant.
        return f"has host bits set: did you mean {ipaddress.ip_network(value, strict=False)}?"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    url: str = field(default=f"sqlite:///{DEFAULT_DATA_DIR}/mfad.db", metadata=check(_storage_url))
    pool_size: int = field(default=10, metadata=check(between(1, 200)))
    timeout_seconds: float = field(default=5.0, metadata=check(positive))
    #: Migrate an older schema at start (a fresh database is always migrated).
    auto_migrate: bool = False
    #: How often expired rows are pruned (in bounded batches, off the request path).
    prune_interval_seconds: float = field(default=30.0, metadata=check(between(1, 3600)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretsSettings:
    key_file: str = str(DEFAULT_DATA_DIR / "secrets.key")


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusClientSettings:
    name: str
    address: str = field(metadata=check(_network))
    secret: str | None = field(default=None, repr=False)
    secret_file: str | None = None
    mode: Literal["challenge", "append", "otp_only"] | None = None
    trust_calling_station_id: bool = False
    #: true, false or "auto" (required once this NAS has sent one; docs/radius.md).
    require_message_authenticator: Literal[True, False, "auto"] | None = None
    limit_proxy_state: bool = True
    #: RadSec (RFC 6614): this client connects over TLS with a certificate issued by the CA of
    #: this ``[[radsec.groups]]`` entry; it is then not a UDP client, and its secret is "radsec".
    radsec_group: str | None = None
    #: The name its certificate carries: the subject CN or a subjectAltName (DNS, IP or URI).
    certificate_name: str | None = None
    #: Who checks this client's passwords: local, ldap[:NAME], radius[:NAME] (unset: [radius]
    #: first_factor); otp_only clients checked it themselves (none).
    first_factor: str | None = None
    #: With an upstream RADIUS first factor: the attributes of its Access-Accept that this
    #: client's Access-Accept carries too (e.g. Class, Filter-Id, Framed-IP-Address); every
    #: other one is dropped.
    upstream_reply_attributes: list[str] = field(default_factory=list)
    #: Hold mode (append/otp_only clients, docs/approval.md): typing ``approve`` keeps the
    #: request unanswered for at most this many seconds while the user approves it on the
    #: portal. 0: off.
    approval_hold_seconds: int = field(default=0, metadata=check(between(0, 600)))


@dataclass(frozen=True, slots=True, kw_only=True)
class RadsecGroupSettings:
    """One group of RadSec clients and the CA whose certificates identify them."""

    name: str
    ca_file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RadsecSettings:
    """RADIUS over TLS (RFC 6614): off until ``listen`` names an address."""

    listen: list[str] = field(default_factory=list, metadata=check(_optional_addresses))
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    #: A connection that carries no packet for this long is closed (the client reconnects).
    idle_timeout_seconds: float = field(default=600.0, metadata=check(between(5, 86400)))
    handshake_timeout_seconds: float = field(default=10.0, metadata=check(between(1, 120)))
    max_connections: int = field(default=256, metadata=check(between(1, 100_000)))
    #: Requests being decided at once on one connection; more are dropped (``overload``).
    max_in_flight_per_connection: int = field(default=256, metadata=check(between(1, 4096)))
    groups: list[RadsecGroupSettings] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class RadiusSettings:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:1812"], metadata=check(_addresses))
    mode: Literal["challenge", "append", "otp_only"] = "challenge"
    require_message_authenticator: Literal[True, False, "auto"] = True
    workers: int = field(default=1, metadata=check(between(1, 64)))
    max_in_flight: int = field(default=256, metadata=check(positive))
    #: Requests/s per client. Unset: derived from what this process can serve (the password
    #: hasher's measured capacity for challenge/append clients, 500/s for otp_only ones).
    client_rate_per_second: float | None = field(default=None, metadata=check(positive))
    reject_delay_seconds: float = field(default=1.0, metadata=check(between(0, 10)))
    #: A request not decided within this gets no reply (the NAS has retransmitted or failed
    #: over by then); also RadSec's and accounting's bound.
    handler_timeout_seconds: float = field(default=5.0, metadata=check(between(0.1, 60)))
    #: At shutdown, requests being decided get this long to finish; the rest are cancelled.
    drain_timeout_seconds: float = field(default=5.0, metadata=check(between(0, 300)))
    #: With shared replies: one look-up, claim or save of a shared reply may take this long
    #: before the request is decided here as if nothing were shared.
    shared_cache_timeout_seconds: float = field(default=0.5, metadata=check(between(0.01, 10)))
    #: With shared replies: how long a retransmission waits for the reply of the instance
    #: deciding it before it is left unanswered (the NAS retransmits again).
    shared_wait_seconds: float = field(default=1.0, metadata=check(between(0, 10)))
    #: Claim requests and share replies through the store so that a retransmission reaching
    #: another instance is not decided twice. Unset: on with PostgreSQL (several hosts).
    shared_replies: bool | None = None
    #: RADIUS accounting (RFC 2866). Unset: each listen host on port 1813 (the listen port + 1
    #: when that is not 1812); an empty list turns accounting off.
    accounting_listen: list[str] | None = field(default=None, metadata=check(_optional_addresses))
    #: NAS session reports (start, interim, stop) are audit rows kept this many days.
    accounting_retention_days: int = field(default=90, metadata=check(between(1, 36500)))
    #: The first factor of clients that name none (see docs/directory.md).
    first_factor: str = "local"
    clients: list[RadiusClientSettings] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSettings:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:50051"], metadata=check(_addresses))
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None
    #: mTLS: client certificate subject CN → role.
    client_roles: dict[str, Role] = field(default_factory=dict)
    max_message_bytes: int = field(default=65536, metadata=check(between(1024, 4 * 1024 * 1024)))
    session_ttl_seconds: int = field(default=900, metadata=check(between(60, 86400)))
    shutdown_grace_seconds: float = field(default=10.0, metadata=check(non_negative))
    #: Who checks the passwords BeginSignIn brings: local, ldap[:NAME] or radius[:NAME].
    first_factor: str = "local"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:9812"], metadata=check(_addresses))


_CODES = EmailCodeSettings()
_OUTBOX = OutboxSettings()


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """The ``[smtp]`` table: the mail server, the email codes it carries and the outbox that
    delivers them. The core receives only its parts (``email_codes``, ``outbox``), never the
    server's credentials; the defaults are the core's."""

    host: str = "127.0.0.1"
    port: int = field(default=25, metadata=check(between(1, 65535)))
    security: Literal["starttls", "tls", "none"] = "starttls"
    #: PEM CA bundle for a private mail server certificate (default: the system's CAs).
    ca_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    sender: str = field(default=_CODES.sender, metadata=check(_mail_address))
    #: Administrators' address for security events (docs/approval.md); empty: none.
    security_alerts_to: str = field(default="", metadata=check(_optional_mail_address))
    site_name: str = field(default=_CODES.site_name, metadata=check(short_text))
    timeout_seconds: float = field(default=_OUTBOX.timeout_seconds, metadata=check(positive))
    code_digits: int = field(default=_CODES.code_digits, metadata=check(between(6, 8)))
    code_ttl_seconds: int = field(default=_CODES.code_ttl_seconds, metadata=check(between(60, 600)))
    code_tries: int = field(default=_CODES.code_tries, metadata=check(between(1, 5)))
    resend_seconds: int = field(default=_CODES.resend_seconds, metadata=check(between(10, 3600)))
    hourly_limit: int = field(default=_CODES.hourly_limit, metadata=check(between(1, 60)))
    retry_initial_seconds: float = field(default=_OUTBOX.retry_initial_seconds, metadata=check(positive))
    retry_max_seconds: float = field(default=_OUTBOX.retry_max_seconds, metadata=check(positive))
    lease_seconds: float = field(default=_OUTBOX.lease_seconds, metadata=check(positive))
    poll_seconds: float = field(default=_OUTBOX.poll_seconds, metadata=check(positive))

    @property
    def email_codes(self) -> EmailCodeSettings:
        return EmailCodeSettings(sender=self.sender, site_name=self.site_name, code_digits=self.code_digits,
                                 code_ttl_seconds=self.code_ttl_seconds, code_tries=self.code_tries,
                                 resend_seconds=self.resend_seconds, hourly_limit=self.hourly_limit,
                                 security_alerts_to=self.security_alerts_to)

    @property
    def outbox(self) -> OutboxSettings:
        return OutboxSettings(timeout_seconds=self.timeout_seconds, retry_initial_seconds=self.retry_initial_seconds,
                              retry_max_seconds=self.retry_max_seconds, lease_seconds=self.lease_seconds,
                              poll_seconds=self.poll_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """Initial values only: the live policy is in the store."""

    mfa_required: MfaRequired = MfaRequired.ALL
    allowed_methods: list[Method] = field(default_factory=lambda: list(Method))
    self_service: bool = True
    remember_device: bool = False
    remember_days: int = field(default=7, metadata=check(between(1, 365)))
    sensitive_reauth_seconds: int = field(default=300, metadata=check(between(30, 86400)))
    require_backup_method: bool = False
    enrolment_proof: EnrolmentProof = EnrolmentProof.NONE
    email_recovery: bool = False
    roles_need_passkey: bool = False
    #: RADIUS hold mode may be used by clients that set approval_hold_seconds (docs/approval.md).
    approval_hold: bool = True
    approval_with_totp: bool = False
    approval_email_notice: bool = False

    def to_policy(self) -> Policy:
        return Policy(mfa_required=self.mfa_required, allowed_methods=frozenset(self.allowed_methods),
                      self_service=self.self_service, remember_device=self.remember_device,
                      remember_days=self.remember_days,
                      sensitive_reauth_seconds=self.sensitive_reauth_seconds,
                      require_backup_method=self.require_backup_method,
                      enrolment_proof=self.enrolment_proof, email_recovery=self.email_recovery,
                      roles_need_passkey=self.roles_need_passkey, approval_hold=self.approval_hold,
                      approval_with_totp=self.approval_with_totp,
                      approval_email_notice=self.approval_email_notice)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditSettings:
    #: Audit rows older than this are deleted (a year: a common minimum for security logs).
    retention_days: int = field(default=365, metadata=check(between(1, 36500)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


def _url(value: Any) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password or parts.path not in ("", "/"):
        return "must be http(s)://host[:port] (the portal is served at the root of its host)"
    return None


def _networks(value: Any) -> str | None:
    for item in value:
        reason = _network(item)
        if reason:
            return f"{item!r}: {reason}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortalSettings:
    """The self-service portal (docs/portal.md): inside ``mfad serve``, or alone as ``mfad-portal``."""

    #: Run the portal as one more service of ``mfad serve``.
    enabled: bool = True
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:8080"], metadata=check(_addresses))
    #: The address users type (its origin is WebAuthn's); default http://localhost:<listen port>.
    public_url: str | None = field(default=None, metadata=check(_url))
    #: Serve HTTPS directly (or put a TLS-terminating proxy listed in trusted_proxies in front).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    trusted_proxies: list[str] = field(default_factory=list, metadata=check(_networks))
    #: mfad's gRPC address; inside ``mfad serve`` the daemon's own first ``grpc.listen``.
    daemon_address: str | None = None
    #: TLS to mfad's gRPC: CA bundle, client certificate and key (mTLS), expected server name.
    daemon_ca: str | None = None
    daemon_cert: str | None = None
    daemon_key: str | None = None
    daemon_server_name: str | None = None
    #: Each gRPC call to mfad is given up after this long (the page then says the service is not
    #: available); above mfad's own store timeout, so a slow store answers UNAVAILABLE first.
    daemon_timeout_seconds: float = field(default=10.0, metadata=check(between(1, 120)))
    #: The portal's caller token (role portal). ``mfad serve`` writes it (0600) when missing.
    token_file: str = str(DEFAULT_DATA_DIR / "portal.token")
    #: A portal session ends after this long without a request...
    session_idle_seconds: int = field(default=900, metadata=check(between(60, 86400)))
    #: ... and this long after sign-in at the latest (mfad's own session may end sooner).
    session_absolute_seconds: int = field(default=28800, metadata=check(between(300, 7 * 86400)))
    #: Whom users ask about a lost device ("the IT help desk, helpdesk@example.com").
    help_contact: str = ""
    #: Larger request bodies are refused (413).
    max_body_bytes: int = field(default=65536, metadata=check(between(4096, 1024 * 1024)))

    @property
    def approve_url(self) -> str | None:
        """The Approve sign-in page (docs/approval.md); None when no portal is known."""
        return f"{self.origin}/approve" if self.enabled or self.public_url else None

    @property
    def origin(self) -> str:
        """The portal's public origin (scheme://host[:port])."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http{'s' if self.tls_cert else ''}://localhost:{parse_address(self.listen[0])[1]}"


# --- directories: the first factor from LDAP / AD or an upstream RADIUS server ----------

def _ldap_urls(value: Any) -> str | None:
    from urllib.parse import urlsplit

    if not value:
        return "must list at least one ldap:// or ldaps:// URL"
    for url in value:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            return f"{url!r} is not a URL"
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.username:
            return f"{url!r} must be ldap://host[:port] or ldaps://host[:port]"
    return None


def _filter(value: Any) -> str | None:
    if not (value.startswith("(") and value.endswith(")")) or value.count("(") != value.count(")"):
        return "must be an LDAP filter in parentheses, e.g. (objectClass=person)"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapSettings:
    """One directory, reachable at ``servers`` (tried in order: the next one only when a
    server cannot be reached or does not answer in time)."""

    name: str = field(default="ldap", metadata=check(short_text))
    servers: list[str] = field(default_factory=list, metadata=check(_ldap_urls))
    #: For ldap:// URLs: upgrade with StartTLS (plain LDAP is allowed only to loopback).
    start_tls: bool = True
    #: PEM CA bundle the server certificate is verified against (default: the system's CAs).
    ca_file: str | None = None
    #: The service account that searches for users (unset: anonymous search).
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    bind_password_file: str | None = None
    base_dn: str = ""
    #: The attribute the typed username is compared with (AD: sAMAccountName or userPrincipalName).
    username_attribute: str = "uid"
    user_filter: str = field(default="(objectClass=person)", metadata=check(_filter))
    #: Entries that also match this filter are refused (e.g. "(pwdAccountLockedTime=*)").
    disabled_filter: str | None = field(default=None, metadata=check(_filter))
    #: Active Directory: refuse accounts whose userAccountControl says disabled (0x2) or locked (0x10).
    check_account_control: bool = False
    display_name_attribute: str = "displayName"
    email_attribute: str = "mail"
    #: The user attribute listing group DNs ("" when groups are searched instead).
    group_attribute: str = "memberOf"
    #: Search groups instead: base, filter with {dn} (the user's DN, escaped), name attribute.
    group_search_base: str | None = None
    group_search_filter: str = "(member={dn})"
    group_name_attribute: str = "cn"
    timeout_seconds: float = field(default=5.0, metadata=check(between(0.1, 60)))
    #: Connections (and threads) per directory: a bound on what mfad asks of it at once.
    pool_size: int = field(default=4, metadata=check(between(1, 64)))


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamRadiusSettings:
    """An existing RADIUS server (NPS, FreeRADIUS) that checks passwords sent to it as PAP."""

    name: str = field(default="radius", metadata=check(short_text))
    #: "host:port" addresses, tried in order (the next one when a server does not answer).
    servers: list[str] = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)
    secret_file: str | None = None
    timeout_seconds: float = field(default=3.0, metadata=check(between(0.1, 30)))
    #: Sends per server before the next one is tried.
    retries: int = field(default=2, metadata=check(between(1, 10)))
    #: Sign requests with Message-Authenticator (RFC 3579).
    send_message_authenticator: bool = True
    #: Ignore replies without a valid Message-Authenticator (BlastRADIUS, CVE-2024-3596). Servers
    #: older than the 2024 fixes (FreeRADIUS before 3.2.5, as in Debian 12) do not sign replies.
    #: "auto": required from a server once it has sent one (remembered per server, per process).
    require_message_authenticator: Literal[True, False, "auto"] = True
    #: NAS-Identifier sent upstream.
    nas_identifier: str = field(default="mfad", metadata=check(short_text))
    #: Reply attributes of an Access-Accept that become the user's groups (e.g. Class, Filter-Id).
    group_attributes: list[str] = field(default_factory=lambda: ["Class"])


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    ldap: list[LdapSettings] = field(default_factory=list)
    radius: list[UpstreamRadiusSettings] = field(default_factory=list)


from mfad.core.first_factor import LOCAL, NONE  # noqa: E402  (the names that are not directories)


def resolve_first_factor(value: str, directories: DirectorySettings) -> str | None:
    """``local``, ``none``, ``ldap``/``radius`` (the first such directory), ``ldap:NAME`` or
    ``radius:NAME`` → ``local``, ``none`` or a directory's name; None when it names nothing."""
    if value in (LOCAL, NONE):
        return value
    kind, _, name = value.partition(":")
    tables: list[LdapSettings] | list[UpstreamRadiusSettings]
    if kind == "ldap":
        tables = directories.ldap
    elif kind == "radius":
        tables = directories.radius
    else:
        return None
    if not name:
        return tables[0].name if tables else None
    return name if any(t.name == name for t in tables) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    storage: StorageSettings = field(default_factory=StorageSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    users: UserSettings = field(default_factory=UserSettings)
    radius: RadiusSettings = field(default_factory=RadiusSettings)
    radsec: RadsecSettings = field(default_factory=RadsecSettings)
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    webauthn: WebauthnSettings = field(default_factory=WebauthnSettings)
    totp: TotpSettings = field(default_factory=TotpSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)

    @property
    def core(self) -> CoreSettings:
        """The core's sections, built from this file's."""
        return CoreSettings(passwords=self.passwords, users=self.users, totp=self.totp, limits=self.limits,
                            webauthn=self.webauthn, email_codes=self.smtp.email_codes,
                            initial_policy=self.policy.to_policy(), session_ttl_seconds=self.grpc.session_ttl_seconds,
                            approve_url=self.portal.approve_url)


#: TOML keys that are Python keywords or clearer under another field name.
log = logging.getLogger(__name__)

_KEY_ALIASES = {"from": "sender"}
#: Keys that moved to another section: the old name still works, with a warning naming the new one.
_MOVED_KEYS = {("radius", "challenge_ttl_seconds"): ("limits", "challenge_ttl_seconds"),
               ("radius", "challenge_tries"): ("limits", "challenge_tries")}


def _move_deprecated_keys(raw: dict[str, Any]) -> None:
    """``[radius] challenge_ttl_seconds`` → ``[limits] challenge_ttl_seconds`` (one knob per
    rule); the new key wins when both are set."""
    for (old_section, old_key), (new_section, new_key) in _MOVED_KEYS.items():
        table = raw.get(old_section)
        if not isinstance(table, dict) or old_key not in table:
            continue
        value = table.pop(old_key)
        log.warning("%s.%s is deprecated: use %s.%s", old_section, old_key, new_section, new_key)
        target = raw.setdefault(new_section, {})
        if isinstance(target, dict):
            target.setdefault(new_key, value)
_FIELD_ALIASES = {v: k for k, v in _KEY_ALIASES.items()}


class _Loader:
    def __init__(self, base_dir: Path) -> None:
        self.problems: list[str] = []
        self.base_dir = base_dir

    def fail(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def convert(self, path: str, tp: Any, value: Any) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (types.UnionType, typing.Union):
            if value is None and type(None) in args:
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return self.convert(path, inner, value)
        if origin is Literal:
            if value in args and type(value) is type(args[args.index(value)]):
                return value
            self.fail(path, f"must be one of {', '.join(repr(a) for a in args)}")
            return None
        if origin is list:
            if not isinstance(value, list):
                self.fail(path, "must be a list")
                return []
            items = [self.convert(f"{path}[{i}]", args[0], item) for i, item in enumerate(value)]
            return [item for item in items if item is not None]
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(path, "must be a table")
                return {}
            return {str(k): self.convert(f"{path}.{k}", args[1], v) for k, v in value.items()}
        if dataclasses.is_dataclass(tp):
            return self.section(path, tp, value)
        if isinstance(tp, type) and issubclass(tp, str) and tp is not str:  # StrEnum
            try:
                return tp(value)
            except ValueError:
                choices = ", ".join(repr(m.value) for m in tp)  # type: ignore[attr-defined]
                self.fail(path, f"must be one of {choices}")
                return None
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if tp is bool and not isinstance(value, bool) or tp is not bool and isinstance(value, bool):
            self.fail(path, f"must be {_type_name(tp)}")
            return None
        if not isinstance(value, tp):
            self.fail(path, f"must be {_type_name(tp)}")
            return None
        return value

    def section(self, path: str, cls: Any, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            self.fail(path, "must be a table")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        failed: set[str] = set()
        for key, value in raw.items():
            name = _KEY_ALIASES.get(key, key)
            key_path = f"{path}.{key}" if path else key
            if name not in fields or key in _FIELD_ALIASES:
                self.fail(key_path, "unknown key")
                continue
            before = len(self.problems)
            converted = self.convert(key_path, hints[name], value)
            if len(self.problems) > before and converted is None:
                failed.add(name)  # keep going with the default so later checks still run
                continue
            check = fields[name].metadata.get("check")
            reason = check(converted) if check is not None and converted is not None else None
            if reason:
                self.fail(key_path, reason)
            values[name] = converted
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for name in required:
            if name not in values and name not in failed:
                self.fail(f"{path}.{_FIELD_ALIASES.get(name, name)}" if path else name, "is required")
        if any(name not in values for name in required):
            return None
        return cls(**values)


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


#: ``MFAD_*`` variables that are not configuration: the file's own name, and what mfactl
#: and the Python client read (they may well be set in the same shell). ``MFAD_TEST_*``
#: belong to the test suite.
CLIENT_VARIABLES = frozenset({"MFAD_CONFIG", "MFAD_ADDR", "MFAD_TOKEN", "MFAD_TLS_CA", "MFAD_TLS_CERT",
                              "MFAD_TLS_KEY", "MFAD_TLS_SERVER_NAME"})


@dataclass(slots=True)
class _Environment:
    """The ``MFAD_<SECTION>_<KEY>`` overrides, where each came from, and the variables refused."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``section.key`` → the variable that set it (to label the problems it causes).
    origins: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def label(self, problem: str) -> str:
        """``storage.nope: unknown key`` → ``environment MFAD_STORAGE_NOPE: storage.nope: unknown key``."""
        for key_path, name in self.origins.items():
            if problem.startswith((key_path + ":", key_path + ".", key_path + "[")):
                return f"environment {name}: {problem}"
        return problem


def _env_overrides(env: Mapping[str, str], sections: Mapping[str, Any] | None = None) -> _Environment:
    """``MFAD_STORAGE_URL=...`` → {"storage": {"url": ...}}; values parse as TOML when they can,
    and a list key also takes comma-separated items (``MFAD_RADIUS_LISTEN=0.0.0.0:1812,[::]:1812``).
    Any other ``MFAD_*`` variable is refused by name: a typo must not be silently ignored."""
    out = _Environment()
    sections = sections if sections is not None else {f.name: f.type for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    for name, text in sorted(env.items()):
        if not name.startswith("MFAD_") or name in CLIENT_VARIABLES or name.startswith("MFAD_TEST_"):
            continue
        rest = name[5:].lower()
        # The longest section name first: a section "radius_x" is not "radius" with key "x_...".
        section = max((s for s in sections if rest.startswith(s + "_")), key=len, default=None)
        if section is None:
            out.problems.append(f"environment {name}: unknown variable (no such section; sections: "
                                f"{', '.join(sorted(sections))})")
            continue
        key = rest[len(section) + 1:]
        try:
            value: Any = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        if not isinstance(value, list) and _is_list_key(hints.get(section), _KEY_ALIASES.get(key, key)):
            value = [item.strip() for item in text.split(",") if item.strip()]
        out.values.setdefault(section, {})[key] = value
        out.origins[f"{section}.{key}"] = name
    return out


def _is_list_key(section_type: Any, key: str) -> bool:
    if not dataclasses.is_dataclass(section_type):
        return False
    tp = typing.get_type_hints(section_type).get(key)
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), None)
    return typing.get_origin(tp) is list and not dataclasses.is_dataclass(typing.get_args(tp)[0])


def _read_secret_file(loader: _Loader, path: str, file_name: str) -> str | None:
    file = Path(file_name)
    if not file.is_absolute():
        file = loader.base_dir / file
    try:
        mode = file.stat().st_mode & 0o777
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        loader.fail(path, f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
        return None
    if mode & 0o077:
        loader.fail(path, f"{file} is readable by group or others (mode {mode:04o}): chmod 600 it")
        return None
    return text


def _validate(loader: _Loader, config: Config, *, origins_set: bool = True) -> Config:
    """Checks that span several keys; resolves ``secret_file`` into ``secret``."""
    clients = []
    names: set[str] = set()
    groups = {group.name for group in config.radsec.groups}
    for i, client in enumerate(config.radius.clients):
        path = f"radius.clients[{i}]"
        secret = client.secret
        _validate_hold(loader, path, client, config)
        if client.radsec_group is not None or client.certificate_name is not None:
            _validate_radsec_client(loader, path, client, groups)
            if client.name in names:
                loader.fail(f"{path}.name", f"duplicate client name {client.name!r}")
            names.add(client.name)
            clients.append(client)
            continue
        if client.secret_file is not None:
            if secret is not None:
                loader.fail(f"{path}.secret_file", "give secret or secret_file, not both")
            secret = _read_secret_file(loader, f"{path}.secret_file", client.secret_file)
        if secret is None:
            if client.secret_file is None:
                loader.fail(f"{path}.secret", "is required (or secret_file)")
        elif len(secret) < MIN_RADIUS_SECRET:
            key = "secret_file" if client.secret_file else "secret"
            loader.fail(f"{path}.{key}", f"must be at least {MIN_RADIUS_SECRET} characters")
        if client.name in names:
            loader.fail(f"{path}.name", f"duplicate client name {client.name!r}")
        names.add(client.name)
        clients.append(dataclasses.replace(client, secret=secret, secret_file=None))
    smtp = _validate_smtp(loader, config.smtp)
    radsec = _validate_radsec(loader, config.radsec)
    directory = _validate_directories(loader.fail, lambda path, name: _read_secret_file(loader, path, name),
                                     loader.base_dir, config.directory)
    clients = _validate_first_factors(loader.fail, config.radius, clients, config.grpc.first_factor, directory)
    if bool(config.grpc.tls_cert) != bool(config.grpc.tls_key):
        loader.fail("grpc.tls_key" if config.grpc.tls_cert else "grpc.tls_cert",
                    "tls_cert and tls_key go together")
    if config.grpc.client_ca and not config.grpc.tls_cert:
        loader.fail("grpc.client_ca", "mTLS needs tls_cert and tls_key")
    if config.passwords.max_length < config.passwords.min_length:
        loader.fail("passwords.max_length", "must not be less than passwords.min_length")
    if config.limits.lockout_max_seconds < config.limits.lockout_seconds:
        loader.fail("limits.lockout_max_seconds", "must not be less than limits.lockout_seconds")
    if not config.policy.allowed_methods:
        loader.fail("policy.allowed_methods", "must allow at least one method")
    if not config.webauthn.origins:
        loader.fail("webauthn.origins", "must list at least one origin")
    webauthn = config.webauthn
    if config.portal.enabled and not origins_set:
        # The portal is where passkeys are made: without an explicit list, its origin is the one.
        webauthn = dataclasses.replace(webauthn, origins=[config.portal.origin])
    _validate_webauthn(loader, webauthn)
    _validate_portal(loader, config.portal, webauthn, origins_set=origins_set)
    return dataclasses.replace(config, radius=dataclasses.replace(config.radius, clients=clients), smtp=smtp,
                               webauthn=webauthn, radsec=radsec, directory=directory)


def _validate_hold(loader: _Loader, path: str, client: RadiusClientSettings, config: Config) -> None:
    """``approval_hold_seconds``: only where the NAS cannot show a challenge, within the
    challenge's life (the approval lives as long), and with a portal to approve on."""
    hold = client.approval_hold_seconds
    if not hold:
        return
    key = f"{path}.approval_hold_seconds"
    mode = client.mode or config.radius.mode
    if mode == "challenge":
        loader.fail(key, "hold mode is for append and otp_only clients (a challenge client is asked to press "
                    "Enter instead)")
    if client.radsec_group is not None or client.certificate_name is not None:
        loader.fail(key, "hold mode is for UDP clients (not RadSec yet)")
    if hold > config.limits.challenge_ttl_seconds:
        loader.fail(key, f"must not exceed limits.challenge_ttl_seconds ({config.limits.challenge_ttl_seconds})")
    if config.portal.approve_url is None:
        loader.fail(key, "needs the portal's Approve sign-in page: set portal.enabled or portal.public_url")


def _validate_radsec_client(loader: _Loader, path: str, client: RadiusClientSettings, groups: set[str]) -> None:
    if client.radsec_group is None:
        loader.fail(f"{path}.radsec_group", "is required with certificate_name (a RadSec client)")
    elif client.radsec_group not in groups:
        loader.fail(f"{path}.radsec_group", f"no [[radsec.groups]] entry is named {client.radsec_group!r}")
    if not client.certificate_name:
        loader.fail(f"{path}.certificate_name", "is required for a RadSec client (the name its certificate carries)")
    for key in ("secret", "secret_file"):
        if getattr(client, key) is not None:
            loader.fail(f"{path}.{key}", "a RadSec client has none: TLS protects it, and RFC 6614 fixes the RADIUS "
                        "secret to 'radsec'")


def _validate_radsec(loader: _Loader, radsec: RadsecSettings) -> RadsecSettings:
    """Paths resolved against the config's folder; on needs a certificate, a key and a group."""
    def resolve(key: str, value: str | None) -> str | None:
        if value is None:
            return None
        file = Path(value) if Path(value).is_absolute() else loader.base_dir / value
        if not file.is_file():
            loader.fail(key, f"cannot read {file}")
        return str(file)

    names: set[str] = set()
    groups = []
    for i, group in enumerate(radsec.groups):
        if group.name in names:
            loader.fail(f"radsec.groups[{i}].name", f"duplicate group name {group.name!r}")
        names.add(group.name)
        groups.append(dataclasses.replace(group, ca_file=resolve(f"radsec.groups[{i}].ca_file", group.ca_file)
                                          or group.ca_file))
    if radsec.listen:
        for key in ("tls_cert", "tls_key"):
            if getattr(radsec, key) is None:
                loader.fail(f"radsec.{key}", "is required when radsec.listen is set")
        if not groups:
            loader.fail("radsec.groups", "RadSec needs at least one group (a CA its clients' certificates come from)")
    return dataclasses.replace(radsec, groups=groups, tls_cert=resolve("radsec.tls_cert", radsec.tls_cert),
                               tls_key=resolve("radsec.tls_key", radsec.tls_key))


def _validate_portal(loader: _Loader, portal: PortalSettings, webauthn: WebauthnSettings, *,
                     origins_set: bool) -> None:
    """The portal's origin must be one WebAuthn accepts; off localhost it needs TLS."""
    from urllib.parse import urlsplit

    if bool(portal.tls_cert) != bool(portal.tls_key):
        loader.fail("portal.tls_key" if portal.tls_cert else "portal.tls_cert", "tls_cert and tls_key go together")
    if (portal.daemon_cert is None) != (portal.daemon_key is None):
        loader.fail("portal.daemon_key" if portal.daemon_cert else "portal.daemon_cert",
                    "daemon_cert and daemon_key go together")
    if not portal.enabled:
        return
    origin = portal.origin
    parts = urlsplit(origin)
    host = parts.hostname or ""
    local = host == "localhost" or host.endswith(".localhost")
    if parts.scheme == "http" and not local:
        loader.fail("portal.public_url", f"{origin!r}: off localhost the portal must be served over https")
    if parts.scheme == "https" and not portal.tls_cert and not portal.trusted_proxies:
        loader.fail("portal.public_url", f"{origin!r} is https: set portal.tls_cert and portal.tls_key, or list the "
                    "TLS-terminating proxy in portal.trusted_proxies")
    if origins_set and origin not in webauthn.origins:
        loader.fail("portal.public_url", f"the portal's origin {origin!r} is not in webauthn.origins: passkeys "
                    "made on its pages would be refused (add it there, or leave webauthn.origins unset)")
    elif host != webauthn.rp_id and not host.endswith("." + webauthn.rp_id):
        loader.fail("portal.public_url", f"the portal's host {host!r} is not on webauthn.rp_id "
                    f"{webauthn.rp_id!r} or a subdomain of it")


def _validate_smtp(loader: _Loader, smtp: SmtpSettings) -> SmtpSettings:
    """Resolves ``password_file`` into ``password``; refuses a password sent in clear off the host."""
    password = smtp.password
    if smtp.password_file is not None:
        if password is not None:
            loader.fail("smtp.password_file", "give password or password_file, not both")
        password = _read_secret_file(loader, "smtp.password_file", smtp.password_file)
    if password is not None and smtp.username is None:
        loader.fail("smtp.username", "is required when a password is set")
    if smtp.username is not None and password is None and smtp.password_file is None:
        loader.fail("smtp.password_file", "is required when smtp.username is set (or smtp.password)")
    if smtp.username is not None and smtp.security == "none" and not is_loopback(smtp.host):
        loader.fail("smtp.security", "'none' would send the password in clear to a remote host: use starttls or tls")
    if smtp.ca_file is not None:
        ca = Path(smtp.ca_file) if Path(smtp.ca_file).is_absolute() else loader.base_dir / smtp.ca_file
        if not ca.is_file():
            loader.fail("smtp.ca_file", f"cannot read {ca}")
        else:
            smtp = dataclasses.replace(smtp, ca_file=str(ca))
    if smtp.retry_max_seconds < smtp.retry_initial_seconds:
        loader.fail("smtp.retry_max_seconds", "must not be less than smtp.retry_initial_seconds")
    if smtp.lease_seconds <= smtp.timeout_seconds * 3:
        loader.fail("smtp.lease_seconds", "must exceed three times smtp.timeout_seconds (connect, TLS, send)")
    return dataclasses.replace(smtp, password=password, password_file=None)


def _validate_webauthn(loader: _Loader, w: WebauthnSettings) -> None:
    """Each origin's host must be the RP id or a subdomain of it (WebAuthn's rule)."""
    from urllib.parse import urlsplit

    rp = w.rp_id
    if not rp or rp != rp.strip().lower() or "/" in rp or ":" in rp:
        loader.fail("webauthn.rp_id", "must be a lower-case domain name without scheme or port")
        return
    for origin in w.origins:
        try:
            host = urlsplit(origin).hostname or ""
        except ValueError:
            continue  # reported by the field check
        if host != rp and not host.endswith("." + rp):
            loader.fail("webauthn.origins", f"{origin!r} is not on the RP id {rp!r} or a subdomain of it")
    if w.attestation_roots_file is not None:
        roots = Path(w.attestation_roots_file)
        if not roots.is_absolute():
            loader.fail("webauthn.attestation_roots_file", "must be an absolute path")
        elif not roots.is_file():
            loader.fail("webauthn.attestation_roots_file", f"cannot read {roots}")


#: Where ``mfad`` looks for its configuration after ``--config`` and ``$MFAD_CONFIG``.
SYSTEM_CONFIG = Path("/etc/mfad/mfad.toml")


def find_config(explicit: str | Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """``--config``, then ``$MFAD_CONFIG``, then ``/etc/mfad/mfad.toml`` when it exists; None:
    the built-in defaults (paths relative to the working directory)."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("MFAD_CONFIG"):
        return Path(env["MFAD_CONFIG"])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


MIN_UPSTREAM_SECRET = 16
_Fail = Callable[[str, str], None]
_ReadSecret = Callable[[str, str], str | None]


def _validate_directories(fail: _Fail, read_secret: _ReadSecret, base_dir: Path,
                         directory: DirectorySettings) -> DirectorySettings:
    names: set[str] = set()
    ldap = [_ldap(fail, read_secret, base_dir, f"directory.ldap[{i}]", s) for i, s in enumerate(directory.ldap)]
    radius = [_radius(fail, read_secret, f"directory.radius[{i}]", s) for i, s in enumerate(directory.radius)]
    tables = [(f"directory.ldap[{i}].name", s.name) for i, s in enumerate(ldap)]
    tables += [(f"directory.radius[{i}].name", s.name) for i, s in enumerate(radius)]
    for path, name in tables:
        if name in names or name in (LOCAL, NONE) or ":" in name:
            fail(path, f"{name!r} is taken (directory names are unique, not local or none, without ':')")
        names.add(name)
    return DirectorySettings(ldap=ldap, radius=radius)


def _ldap(fail: _Fail, read_secret: _ReadSecret, base_dir: Path, path: str, s: LdapSettings) -> LdapSettings:
    if not s.servers:
        fail(f"{path}.servers", "is required")
    if not s.base_dn:
        fail(f"{path}.base_dn", "is required")
    from urllib.parse import urlsplit

    for url in s.servers:
        parts = urlsplit(url)
        if parts.scheme == "ldap" and not s.start_tls and not is_loopback(parts.hostname or ""):
            fail(f"{path}.start_tls", f"{url}: plain LDAP would send passwords in clear off this host; use ldaps:// "
                                      "or start_tls = true")
    password = s.bind_password
    if s.bind_password_file is not None:
        if password is not None:
            fail(f"{path}.bind_password_file", "give bind_password or bind_password_file, not both")
        password = read_secret(f"{path}.bind_password_file", s.bind_password_file)
    if s.bind_dn and password is None and s.bind_password_file is None:
        fail(f"{path}.bind_password_file", "is required with bind_dn (or bind_password)")
    if password is not None and not s.bind_dn:
        fail(f"{path}.bind_dn", "is required when a bind password is set")
    ca = s.ca_file
    if ca is not None:
        file = Path(ca) if Path(ca).is_absolute() else base_dir / ca
        if not file.is_file():
            fail(f"{path}.ca_file", f"cannot read {file}")
        ca = str(file)
    if s.group_search_base and "{dn}" not in s.group_search_filter:
        fail(f"{path}.group_search_filter", "must contain {dn} (the user's DN)")
    return dataclasses.replace(s, bind_password=password, bind_password_file=None, ca_file=ca)


def _radius(fail: _Fail, read_secret: _ReadSecret, path: str, s: UpstreamRadiusSettings) -> UpstreamRadiusSettings:
    if not s.servers:
        fail(f"{path}.servers", "is required")
    for i, address in enumerate(s.servers):
        try:
            parse_address(address)
        except ValueError as exc:
            fail(f"{path}.servers[{i}]", str(exc))
    secret = s.secret
    if s.secret_file is not None:
        if secret is not None:
            fail(f"{path}.secret_file", "give secret or secret_file, not both")
        secret = read_secret(f"{path}.secret_file", s.secret_file)
    if secret is None:
        if s.secret_file is None:
            fail(f"{path}.secret", "is required (or secret_file)")
    elif len(secret) < MIN_UPSTREAM_SECRET:
        fail(f"{path}.{'secret_file' if s.secret_file else 'secret'}",
             f"must be at least {MIN_UPSTREAM_SECRET} characters")
    if s.require_message_authenticator and not s.send_message_authenticator:
        fail(f"{path}.send_message_authenticator", "must be true while require_message_authenticator is")
    return dataclasses.replace(s, secret=secret, secret_file=None)


def _validate_first_factors(fail: _Fail, radius: RadiusSettings, clients: Sequence[RadiusClientSettings],
                           grpc_first_factor: str, directory: DirectorySettings) -> list[RadiusClientSettings]:
    """Resolves every first factor to ``local``, ``none`` or a directory name. (Attribute
    names are checked against the RADIUS dictionary when the daemon is built.)"""

    def resolve(path: str, value: str) -> str:
        found = resolve_first_factor(value, directory)
        if found is None:
            fail(path, f"{value!r} names no first factor (local, ldap[:NAME], radius[:NAME], none)")
            return LOCAL
        return found

    default = resolve("radius.first_factor", radius.first_factor)
    if default == NONE:
        fail("radius.first_factor", "'none' is for otp_only clients: set it per client")
    grpc = resolve("grpc.first_factor", grpc_first_factor)
    if grpc == NONE:
        fail("grpc.first_factor", "BeginSignIn without a password is how a caller says it checked it")
    del grpc
    out = []
    for i, client in enumerate(clients):
        path = f"radius.clients[{i}]"
        mode = client.mode or radius.mode
        if client.first_factor is None:
            first = NONE if mode == "otp_only" else default
        else:
            first = resolve(f"{path}.first_factor", client.first_factor)
        if (first == NONE) != (mode == "otp_only"):
            fail(f"{path}.first_factor", "'none' goes with mode otp_only, and otp_only with 'none' (the NAS "
                                         "checked the password)")
        out.append(dataclasses.replace(client, first_factor=first))
    return out


def grpc_first_factor(value: str, directory: DirectorySettings) -> str:
    """The resolved gRPC first factor (the config check has vetted it)."""
    return resolve_first_factor(value, directory) or LOCAL


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and freeze the configuration. Raises ConfigError listing every problem.

    Relative paths (the SQLite database, the key file, TLS files, ``secret_file`` …) resolve
    against the file's directory; without a file, against the working directory. The
    result holds absolute paths only, so every command names the same files wherever it runs."""
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        base_dir = file.resolve().parent
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{file}: no such file"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{file}: cannot read: {exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{file}: not valid TOML: {exc}"]) from None
    environment = _env_overrides(os.environ if env is None else env)
    for section, values in environment.values.items():
        target = raw.setdefault(section, {})
        if isinstance(target, dict):
            target.update(values)
    _move_deprecated_keys(raw)
    loader = _Loader(base_dir)
    loader.problems.extend(environment.problems)
    config = loader.section("", Config, raw)
    if config is not None:
        webauthn_raw = raw.get("webauthn")
        config = _validate(loader, config, origins_set=isinstance(webauthn_raw, dict) and "origins" in webauthn_raw)
        config = _absolute_paths(_data_files(config, raw), base_dir)
        _validate_listeners(loader, config)
    if loader.problems:
        raise ConfigError([environment.label(p) for p in loader.problems])
    assert isinstance(config, Config)
    return config


def _absolute(base_dir: Path, value: str | None) -> str | None:
    return value if value is None or Path(value).is_absolute() else str(base_dir / value)


#: The keys that name files, per section: made absolute against the config file's directory.
_FILE_KEYS = {"grpc": ("tls_cert", "tls_key", "client_ca"), "secrets": ("key_file",),
              "portal": ("token_file", "tls_cert", "tls_key", "daemon_ca", "daemon_cert", "daemon_key")}


def _absolute_files(section: str, settings: Any, base_dir: Path) -> Any:
    keys = _FILE_KEYS[section]
    return dataclasses.replace(settings, **{k: _absolute(base_dir, getattr(settings, k)) for k in keys})


def _data_files(config: Config, raw: Mapping[str, Any]) -> Config:
    """The key file and the portal's token file, when not set, live beside the SQLite
    database (its directory is the data directory); with PostgreSQL, in ``mfad-data/`` of
    the working directory."""
    db = config.storage.url[len("sqlite:///"):] if config.storage.url.startswith("sqlite:///") else None

    def unset(section: str, key: str) -> bool:
        table = raw.get(section)
        return not (isinstance(table, Mapping) and key in table)

    def beside(name: str) -> str:
        return str(Path(db).parent / name) if db is not None else str(Path.cwd() / DEFAULT_DATA_DIR / name)

    secrets = config.secrets
    if unset("secrets", "key_file"):
        secrets = dataclasses.replace(secrets, key_file=beside("secrets.key"))
    portal = config.portal
    if unset("portal", "token_file"):
        portal = dataclasses.replace(portal, token_file=beside("portal.token"))
    return dataclasses.replace(config, secrets=secrets, portal=portal)


def _absolute_paths(config: Config, base_dir: Path) -> Config:
    """Every file name in the config, made absolute against ``base_dir``."""
    storage = config.storage
    if storage.url.startswith("sqlite:///") and not storage.url.startswith("sqlite:////"):
        storage = dataclasses.replace(storage, url="sqlite:///" + str(base_dir / storage.url[len("sqlite:///"):]))
    changes = {section: _absolute_files(section, getattr(config, section), base_dir) for section in _FILE_KEYS}
    return dataclasses.replace(config, storage=storage, **changes)


def _validate_listeners(loader: _Loader, config: Config) -> None:
    """Without TLS, gRPC listens on loopback only (the bearer tokens would cross the network
    in clear): refused here so that ``check-config`` says what ``serve`` would refuse."""
    if config.grpc.tls_cert:
        return
    for address in config.grpc.listen:
        try:
            host, _ = parse_address(address)
        except ValueError:
            continue  # reported by the field check
        if not is_loopback(host):
            loader.fail("grpc.listen", f"{address} is not a loopback address; without TLS mfad listens on "
                        "loopback only (set grpc.tls_cert and grpc.tls_key)")


def load_portal_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> PortalSettings:
    """The standalone portal's file (``mfad-portal --config``): a ``[portal]`` table only,
    with ``MFAD_PORTAL_*`` overrides. Raises ConfigError listing every problem."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such file"]) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read: {exc}"]) from None
    loader = _Loader(file.resolve().parent)
    for key in raw:
        if key != "portal":
            loader.fail(key, "unknown key (this file holds only [portal])")
    section = dict(raw.get("portal", {})) if isinstance(raw.get("portal", {}), dict) else {}
    portal_env = {k: v for k, v in (os.environ if env is None else env).items() if k.startswith("MFAD_PORTAL_")}
    environment = _env_overrides(portal_env, {"portal": PortalSettings})
    section.update(environment.values.get("portal", {}))
    portal = loader.section("portal", PortalSettings, section)
    if portal is not None:
        portal = _absolute_files("portal", portal, file.resolve().parent)
        if not portal.daemon_address:
            loader.fail("portal.daemon_address", "is required when the portal runs alone")
        _validate_portal(loader, portal, WebauthnSettings(origins=[portal.origin],
                                                          rp_id=urlsplit_host(portal.origin)), origins_set=False)
    if loader.problems:
        raise ConfigError([environment.label(p) for p in loader.problems])
    assert isinstance(portal, PortalSettings)
    return portal


def urlsplit_host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""
