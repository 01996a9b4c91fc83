"""The ``[[directory.ldap]]`` and ``[[directory.radius]]`` tables (docs/directory.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mfad.core.settings import between, check, positive, short_text


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
    require_message_authenticator: bool = True
    #: NAS-Identifier sent upstream.
    nas_identifier: str = field(default="mfad", metadata=check(short_text))
    #: Reply attributes of an Access-Accept that become the user's groups (e.g. Class, Filter-Id).
    group_attributes: list[str] = field(default_factory=lambda: ["Class"])


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    ldap: list[LdapSettings] = field(default_factory=list)
    radius: list[UpstreamRadiusSettings] = field(default_factory=list)


#: First-factor names that are not directories.
LOCAL = "local"
NONE = "none"


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
