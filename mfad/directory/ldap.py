"""LDAP / Active Directory as the first factor.

The library is ldap3, run off the event loop in a bounded thread pool: measured against
bonsai (bench/ldap_libraries.py), bonsai was no faster over StartTLS and its ldaps://
handshake to a server that accepts TCP but never answers blocked the whole event loop
past its own timeout; ldap3 honoured every timeout.

Guarantees:
- the username is escaped (RFC 4515) before it enters a filter, so ``*)(uid=*`` matches
  only a user of that literal name; a DN put into a group filter is escaped the same way;
- the password is checked by binding as the user on a fresh connection that is then
  closed, never stored or logged, never reused for a search; an empty password (which
  LDAP treats as an anonymous bind) is refused before anything is sent;
- an unknown user costs the same round trips as a known one with a wrong password: the
  search, then a bind (to a DN that does not exist) that the server refuses;
- every operation has a timeout; servers are tried in order and the next one is used only
  when a server cannot be reached or answers too late; when none answers, ``Unavailable``;
- TLS (ldaps:// or StartTLS) verifies the server certificate; plain LDAP is allowed only
  to a loopback address (the config check refuses it elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.dn import parse_dn

from mfad.core.directory import Check, DirectoryCheck, DirectoryEntry, DirectoryReason
from mfad.core.errors import InvalidInput, Unavailable
from mfad.config import LdapSettings

log = logging.getLogger("mfad.directory.ldap")
T = TypeVar("T")

#: userAccountControl flags that make an AD account unusable (ACCOUNTDISABLE, LOCKOUT).
AD_DISABLED = 0x0002
AD_LOCKOUT = 0x0010
_DUMMY_RDN = "cn=mfad-no-such-user-7c1e"  # bound to (and refused) for unknown users


def escape_filter_value(value: str) -> str:
    """RFC 4515 §3: ``\\ * ( )`` and NUL become ``\\XX``; everything else stays as UTF-8."""
    out = []
    for ch in value:
        if ch in "\\*()\x00":
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def first_rdn_value(dn: str) -> str:
    """``cn=vpn-contractors,ou=groups,...`` → ``vpn-contractors`` (escapes undone)."""
    try:
        parts = parse_dn(dn)
    except ldap_errors.LDAPInvalidDnError:
        return dn
    return str(parts[0][1]) if parts else dn


class _Unreachable(Exception):
    """This server did not answer (connect, TLS or an operation timed out or failed)."""


@dataclass(frozen=True, slots=True)
class _Found:
    dn: str
    entry: DirectoryEntry
    disabled: bool


class LdapDirectory:
    """One ``[[directory.ldap]]`` table: its servers in fail-over order."""

    def __init__(self, settings: LdapSettings) -> None:
        if not settings.servers:
            raise ValueError("an LDAP directory needs servers")
        self.name = settings.name
        self.can_look_up = True
        self._s = settings
        self._servers = [self._server(url) for url in settings.servers]
        self._pool = ThreadPoolExecutor(max_workers=settings.pool_size, thread_name_prefix=f"ldap-{settings.name}")
        # Idle service connections per server (index), at most pool_size in all.
        self._idle: list[queue.SimpleQueue[ldap3.Connection]] = [queue.SimpleQueue() for _ in self._servers]
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._receive_timeout = max(1, math.ceil(settings.timeout_seconds))
        for url in settings.servers:
            parts = urlsplit(url)
            if parts.scheme == "ldap" and not settings.start_tls:
                log.warning("directory %s: %s is plain LDAP (no TLS): passwords cross the wire in clear",
                            settings.name, url)

    def _server(self, url: str) -> ldap3.Server:
        parts = urlsplit(url)
        secure = parts.scheme == "ldaps"
        tls = ldap3.Tls(ca_certs_file=self._s.ca_file, validate=ssl.CERT_REQUIRED, sni=parts.hostname)
        return ldap3.Server(parts.hostname or "", port=parts.port or (636 if secure else 389), use_ssl=secure,
                            tls=tls if secure or self._s.start_tls else None, get_info=ldap3.NONE,
                            connect_timeout=self._s.timeout_seconds)

    # --- the port ------------------------------------------------------------------------
    async def authenticate(self, username: str, password: str) -> DirectoryCheck:
        if not password:
            raise InvalidInput("password", "must not be empty")
        return await self._failover(lambda server: self._authenticate_sync(server, username, password))

    async def lookup(self, username: str) -> DirectoryEntry | None | DirectoryReason:
        found = await self._failover(lambda server: self._search_sync(server, username))
        if found is None:
            return None
        return DirectoryReason.DISABLED if found.disabled else found.entry

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._close_sync)

    # --- fail-over -------------------------------------------------------------------------
    async def _failover(self, work: Callable[[int], T]) -> T:
        loop = asyncio.get_running_loop()
        # Each operation is bounded by ldap3's own timeouts; this one bounds the whole call
        # (connect, StartTLS, bind, search, user bind) in case a server dribbles bytes.
        bound = self._s.timeout_seconds * 5
        async with self._slots:
            for index, url in enumerate(self._s.servers):
                try:
                    async with asyncio.timeout(bound):
                        return await loop.run_in_executor(self._pool, work, index)
                except (_Unreachable, TimeoutError) as exc:
                    log.warning("directory %s: %s did not answer (%s); trying the next server", self.name, url,
                                exc or "timeout")
        raise Unavailable(f"directory {self.name}: no server answered")

    # --- blocking work (in the pool) --------------------------------------------------------
    def _connect(self, index: int, user: str | None, password: str | None) -> ldap3.Connection:
        """An open, (StartTLS-upgraded) connection, bound as ``user`` when given (else anonymous)."""
        server = self._servers[index]
        # ldap3 packs receive_timeout as whole seconds (SO_RCVTIMEO).
        conn = ldap3.Connection(server, user=user, password=password, receive_timeout=self._receive_timeout,
                                raise_exceptions=False, auto_referrals=False, read_only=True)
        try:
            conn.open()
            if not server.ssl and self._s.start_tls:
                if not conn.start_tls():
                    raise _Unreachable(f"StartTLS refused: {conn.result.get('description')}")
        except ldap_errors.LDAPException as exc:
            _discard(conn)
            raise _Unreachable(type(exc).__name__) from None
        return conn

    def _service(self, index: int) -> ldap3.Connection:
        try:
            return self._idle[index].get_nowait()
        except queue.Empty:
            pass
        conn = self._connect(index, self._s.bind_dn, self._s.bind_password)
        try:
            ok = conn.bind() if self._s.bind_dn else True
        except ldap_errors.LDAPException as exc:
            _discard(conn)
            raise _Unreachable(type(exc).__name__) from None
        if not ok:
            # A wrong service password is the operator's fault, not the user's: fail closed.
            _discard(conn)
            raise _Unreachable(f"service bind refused: {conn.result.get('description')}")
        return conn

    def _search_sync(self, index: int, username: str) -> _Found | None:
        conn = self._service(index)
        try:
            found = self._find(conn, username)
        except ldap_errors.LDAPException as exc:
            _discard(conn)  # a broken connection is not returned to the pool
            raise _Unreachable(type(exc).__name__) from None
        self._idle[index].put(conn)
        return found

    def _find(self, conn: ldap3.Connection, username: str) -> _Found | None:
        s = self._s
        wanted = f"({s.username_attribute}={escape_filter_value(username)})"
        flt = f"(&{s.user_filter}{wanted}{f'(!{s.disabled_filter})' if s.disabled_filter else ''})"
        attributes = [a for a in (s.display_name_attribute, s.email_attribute, s.group_attribute) if a]
        if s.check_account_control:
            attributes.append("userAccountControl")
        conn.search(s.base_dn, flt, search_scope=ldap3.SUBTREE, attributes=attributes, size_limit=2,
                    time_limit=max(1, int(s.timeout_seconds)))
        # 4: sizeLimitExceeded (two entries: ambiguous); 32: noSuchObject (the base is not visible)
        self._check_result(conn, allowed=(0, 4, 32))
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return None
        dn = str(entries[0]["dn"])
        attrs: dict[str, Any] = entries[0].get("attributes", {})
        groups = [first_rdn_value(g) for g in _values(attrs.get(s.group_attribute))] if s.group_attribute else []
        if s.group_search_base:
            flt = s.group_search_filter.replace("{dn}", escape_filter_value(dn))
            conn.search(s.group_search_base, flt, search_scope=ldap3.SUBTREE, attributes=[s.group_name_attribute],
                        time_limit=max(1, int(s.timeout_seconds)))
            self._check_result(conn, allowed=(0,))
            for g in conn.response or []:
                if g.get("type") == "searchResEntry":
                    groups.extend(str(v) for v in _values(g.get("attributes", {}).get(s.group_name_attribute)))
        control = _int(attrs.get("userAccountControl"))
        disabled = s.check_account_control and (control is None or bool(control & (AD_DISABLED | AD_LOCKOUT)))
        entry = DirectoryEntry(username=username, display_name=_first(attrs.get(s.display_name_attribute)),
                               email=_first(attrs.get(s.email_attribute)), groups=tuple(dict.fromkeys(groups)))
        return _Found(dn=dn, entry=entry, disabled=disabled)

    @staticmethod
    def _check_result(conn: ldap3.Connection, allowed: tuple[int, ...]) -> None:
        code = conn.result.get("result") if conn.result else None
        if code not in allowed:
            # busy, unavailable, a timeout, a referral we do not follow: ask the next server.
            raise _Unreachable(f"search failed: {conn.result.get('description') if conn.result else 'no answer'}")

    def _authenticate_sync(self, index: int, username: str, password: str) -> DirectoryCheck:
        found = self._search_sync(index, username)
        dn = found.dn if found is not None else f"{_DUMMY_RDN},{self._s.base_dn}"
        user = self._connect(index, dn, password)
        try:
            bound = user.bind()
            code = user.result.get("result") if user.result else None
        except ldap_errors.LDAPException as exc:
            raise _Unreachable(type(exc).__name__) from None
        finally:
            _discard(user)
        if not bound and code not in (49, 32, 53):  # invalidCredentials, noSuchObject, unwillingToPerform
            raise _Unreachable(f"user bind failed: {user.result.get('description') if user.result else '?'}")
        if found is None:
            return DirectoryCheck(check=Check.REFUSED, reason=DirectoryReason.UNKNOWN_USER)
        if found.disabled:
            return DirectoryCheck(check=Check.REFUSED, reason=DirectoryReason.DISABLED)
        if not bound:
            return DirectoryCheck(check=Check.REFUSED, reason=DirectoryReason.WRONG_PASSWORD)
        return DirectoryCheck(check=Check.ACCEPTED, reason=DirectoryReason.ACCEPTED, entry=found.entry)

    def _close_sync(self) -> None:
        for idle in self._idle:
            while True:
                try:
                    _discard(idle.get_nowait())
                except queue.Empty:
                    break
                except ldap_errors.LDAPException:
                    continue
        self._pool.shutdown(wait=False, cancel_futures=True)


def _discard(conn: ldap3.Connection) -> None:
    """Close ``conn`` however far it got (ldap3 leaves a socket open when a handshake fails)."""
    try:
        conn.unbind()
    except ldap_errors.LDAPException:
        pass
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.close()


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _first(value: Any) -> str | None:
    values = _values(value)
    return str(values[0]) if values else None


def _int(value: Any) -> int | None:
    first = _first(value)
    try:
        return int(first) if first is not None else None
    except ValueError:
        return None
