"""The pre-flight: every check ``mfad serve`` makes before it starts, made without changing anything.

Guarantee: ``mfad check-config`` and ``mfad serve`` run the same checks, so a configuration
that passes ``check-config`` is not refused by ``serve`` for one of these reasons, and
``serve`` refuses before it creates, migrates or binds anything. The store is opened
read-only; the key file must open what the database sealed (a mistyped ``secrets.key_file``
would otherwise make a new key and fail every verification); the files and directories the
daemon will write must be there (mfad creates the database's own directory and nothing
else); TLS files must load; with ``bind``, every listener is bound once and released. Each
problem is named by its key, all of them at once.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509

from mfad.config import Config, PortalSettings, parse_address
from mfad.core.errors import SecretsError, Unavailable
from mfad.core.keyring import Keyring
from mfad.radius.accounting import accounting_listen
from mfad.store import open_store
from mfad.store.migrations import latest_version


@dataclass(slots=True)
class Report:
    """What the pre-flight found: the problems (``key: reason``) and which store it looked at."""

    store: str
    problems: list[str] = field(default_factory=list)
    #: The database exists and has a schema (False: ``serve`` will create it).
    existing: bool = False


def sqlite_path(config: Config) -> Path | None:
    url = config.storage.url
    return Path(unquote(url[len("sqlite:///"):])) if url.startswith("sqlite:///") else None


def describe_store(config: Config) -> str:
    """The store in words, never with a password: ``sqlite /var/lib/mfad/mfad.db``."""
    path = sqlite_path(config)
    if path is not None:
        return f"sqlite {path}"
    from urllib.parse import urlsplit

    parts = urlsplit(config.storage.url)
    host = parts.hostname or "localhost"
    user = f"{parts.username}@" if parts.username else ""
    return f"postgres {user}{host}{f':{parts.port}' if parts.port else ''}{parts.path or ''}"


async def preflight(config: Config, *, bind: bool = False, schema: bool = True) -> Report:
    """Check ``config`` against this machine and its store. ``schema``: an older schema is
    a problem unless ``storage.auto_migrate`` (not for ``mfad migrate``); ``bind``: try
    every listener. Raises nothing for what it finds; ``Unavailable`` only when a
    PostgreSQL store cannot be reached and ``bind`` is off (``serve`` fails as before)."""
    report = Report(store=describe_store(config))
    problems = report.problems
    _directories(config, problems)
    keyring = _keyring(config, problems)
    samples = []
    try:
        store = await open_store(config.storage, readonly=True)
    except Unavailable as exc:
        if sqlite_path(config) is not None:
            store = None  # no database yet: serve makes a fresh one (and, with it, a new key)
        elif bind:
            problems.append(f"storage.url: {exc}")
            store = None
        else:
            raise
    if store is not None:
        try:
            current = await store.schema_version()
            report.existing = current > 0
            known = latest_version(store.engine)
            if current > known:
                problems.append(f"storage.url: the database schema is v{current}, newer than this mfad "
                                f"knows (v{known}); upgrade mfad")
            elif 0 < current < known and schema and not config.storage.auto_migrate:
                problems.append(f"storage.url: the database schema is v{current}, this mfad needs v{known}: "
                                "run 'mfad migrate' (or set storage.auto_migrate = true)")
            if current > 0:
                samples = await store.load_key_samples()
        except Unavailable as exc:
            problems.append(f"storage.url: {exc}")
        finally:
            await store.aclose()
    key_file = Path(config.secrets.key_file)
    if samples and keyring is None and not key_file.exists():
        kids = ", ".join(sorted({s.kid for s in samples}))
        problems.append(f"secrets.key_file: {key_file} does not exist, but the database ({report.store}) holds "
                        f"values sealed with key(s) {kids}: a new key would open none of them — point "
                        "secrets.key_file at the key file that goes with this database")
    elif keyring is not None:
        for reason in keyring.unopened(samples):
            problems.append(f"secrets.key_file: {key_file} cannot open what the database ({report.store}) "
                            f"sealed: {reason}")
    _tls(config, problems)
    if bind:
        problems.extend(_unbindable(config))
    return report


def _directories(config: Config, problems: list[str]) -> None:
    """mfad creates only the SQLite database's own directory (when its parent exists);
    every other file it writes must go into an existing directory or that one."""
    db = sqlite_path(config)
    data_dir = db.parent if db is not None else None
    if data_dir is not None and not data_dir.is_dir() and not data_dir.parent.is_dir():
        problems.append(f"storage.url: the directory {data_dir.parent} does not exist (mfad creates only the "
                        f"database's own directory, {data_dir})")
    writes = [("secrets.key_file", Path(config.secrets.key_file))]
    if config.portal.enabled and config.grpc.listen:
        writes.append(("portal.token_file", Path(config.portal.token_file)))
    for key, file in writes:
        if not file.exists() and not file.parent.is_dir() and file.parent != data_dir:
            problems.append(f"{key}: the directory {file.parent} does not exist")


def _keyring(config: Config, problems: list[str]) -> Keyring | None:
    path = Path(config.secrets.key_file)
    if not path.exists():
        return None
    try:
        return Keyring.open(path, create=False)
    except SecretsError as exc:
        problems.append(f"secrets.key_file: {exc}")
        return None


def _tls(config: Config, problems: list[str]) -> None:
    problems.extend(tls_problems(config))


def tls_problems(config: Config) -> list[str]:
    """Every TLS file the daemon would load: each certificate with its key (readable, the
    pair matching), each CA bundle (readable, PEM certificates); none of them expired or
    not yet valid. For gRPC, the portal (its own HTTPS and its client files to reach the
    daemon), the mail server's and the LDAP directories' CA bundles, and RadSec (its
    certificate and every group's CA)."""
    problems: list[str] = []
    grpc, portal, radsec = config.grpc, config.portal, config.radsec
    if grpc.tls_cert and grpc.tls_key:
        problems += _pair("grpc.tls_cert", grpc.tls_cert, "grpc.tls_key", grpc.tls_key)
    if grpc.client_ca:
        problems += _ca("grpc.client_ca", grpc.client_ca)
    if portal.enabled:
        problems += portal_tls_problems(portal)
    if config.smtp.ca_file and config.smtp.security != "none":
        problems += _ca("smtp.ca_file", config.smtp.ca_file)
    for i, directory in enumerate(config.directory.ldap):
        if directory.ca_file:
            problems += _ca(f"directory.ldap[{i}].ca_file", directory.ca_file)
    if radsec.listen:
        if radsec.tls_cert and radsec.tls_key:
            problems += _pair("radsec.tls_cert", radsec.tls_cert, "radsec.tls_key", radsec.tls_key)
        for i, group in enumerate(radsec.groups):
            problems += _ca(f"radsec.groups[{i}].ca_file", group.ca_file)
    return problems


def portal_tls_problems(portal: PortalSettings) -> list[str]:
    """The portal's TLS files: its HTTPS certificate and key, the CA it checks mfad's gRPC
    certificate with (``daemon_ca``) and its client certificate for mTLS to mfad."""
    problems: list[str] = []
    if portal.tls_cert and portal.tls_key:
        problems += _pair("portal.tls_cert", portal.tls_cert, "portal.tls_key", portal.tls_key)
    if portal.daemon_ca:
        problems += _ca("portal.daemon_ca", portal.daemon_ca)
    if portal.daemon_cert and portal.daemon_key:
        problems += _pair("portal.daemon_cert", portal.daemon_cert, "portal.daemon_key", portal.daemon_key)
    return problems


def _pair(key: str, cert: str, key_key: str, private_key: str) -> list[str]:
    """A certificate and its private key: they load together, the key is not readable by
    every user (group-readable stays allowed: Debian's ssl-cert group), the certificate is
    valid now."""
    problems = []
    try:
        mode = Path(private_key).stat().st_mode & 0o777
    except OSError:
        mode = 0  # load_cert_chain names what is wrong with it
    if mode & 0o004:
        problems.append(f"{key_key}: {private_key} is readable by every user (mode {mode:04o}): chmod 600 it "
                        "(or 640, its group one the daemon is in)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, private_key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return [*problems, f"{key}: {cert} and its key {private_key} do not go together "
                    "(the key is another certificate's)"]
        return [*problems, f"{key}: cannot load {cert} with {private_key}: {exc.reason or exc}"]
    except OSError as exc:
        return [*problems, f"{key}: cannot load {cert} with {private_key}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else "")]
    try:
        with open(cert, "rb") as f:
            leaf = x509.load_pem_x509_certificates(f.read())[:1]
    except (OSError, ValueError):
        return problems  # load_cert_chain accepted it; a format it reads that cryptography does not stays its call
    return problems + _validity(key, cert, leaf)


def _ca(key: str, path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
        certificates = x509.load_pem_x509_certificates(data)
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except OSError as exc:
        return [f"{key}: cannot read {path}: {exc.strerror or exc}"]
    except (ValueError, ssl.SSLError) as exc:
        return [f"{key}: {path} holds no PEM CA certificate that loads: {getattr(exc, 'reason', None) or exc}"]
    return _validity(key, path, certificates)


def _validity(key: str, path: str, certificates: list[x509.Certificate]) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    problems = []
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc <= now:
            problems.append(f"{key}: {path} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
                            f"({subject})")
        elif certificate.not_valid_before_utc > now:
            problems.append(f"{key}: {path} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} "
                            f"UTC ({subject}): check this machine's clock")
    return problems


def listeners(config: Config) -> Iterator[tuple[str, str, int]]:
    """(key, address, socket type) of every listener ``serve`` opens."""
    yield from (("radius.listen", a, socket.SOCK_DGRAM) for a in config.radius.listen)
    accounting = accounting_listen(config.radius.accounting_listen,
                                   [parse_address(a) for a in config.radius.listen])
    yield from (("radius.accounting_listen", a, socket.SOCK_DGRAM) for a in accounting)
    yield from (("radsec.listen", a, socket.SOCK_STREAM) for a in config.radsec.listen)
    yield from (("grpc.listen", a, socket.SOCK_STREAM) for a in config.grpc.listen)
    yield from (("metrics.listen", a, socket.SOCK_STREAM) for a in config.metrics.listen[:1])
    if config.portal.enabled and config.grpc.listen:
        yield from (("portal.listen", a, socket.SOCK_STREAM) for a in config.portal.listen)


def _unbindable(config: Config) -> list[str]:
    problems = []
    for key, address, kind in listeners(config):
        host, port = parse_address(address)
        try:
            infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            with socket.socket(family, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
                sock.bind(sockaddr)
        except OSError as exc:
            problems.append(f"{key}: cannot listen on {address}: {exc.strerror or exc}")
    return problems
