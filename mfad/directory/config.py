"""Checks of the ``[[directory.*]]`` tables and of the first factors that name them, run
by ``mfad.config`` with its other cross-key checks (every problem reported at once)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mfad.directory.settings import (
    LOCAL,
    NONE,
    DirectorySettings,
    LdapSettings,
    UpstreamRadiusSettings,
    resolve_first_factor,
)
from mfad.net import is_loopback, parse_address

if TYPE_CHECKING:
    from mfad.config import RadiusClientSettings, RadiusSettings

Fail = Callable[[str, str], None]
ReadSecret = Callable[[str, str], str | None]

MIN_UPSTREAM_SECRET = 16


def validate_directories(fail: Fail, read_secret: ReadSecret, base_dir: Path,
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


def _ldap(fail: Fail, read_secret: ReadSecret, base_dir: Path, path: str, s: LdapSettings) -> LdapSettings:
    if not s.servers:
        fail(f"{path}.servers", "is required")
    if not s.base_dn:
        fail(f"{path}.base_dn", "is required")
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


def _radius(fail: Fail, read_secret: ReadSecret, path: str, s: UpstreamRadiusSettings) -> UpstreamRadiusSettings:
    from mfad.radius.attributes import attribute_code
    from mfad.radius.errors import RadiusEncodeError

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
    for i, name in enumerate(s.group_attributes):
        try:
            attribute_code(name)
        except RadiusEncodeError:
            fail(f"{path}.group_attributes[{i}]", f"unknown RADIUS attribute {name!r}")
    return dataclasses.replace(s, secret=secret, secret_file=None)


def validate_first_factors(fail: Fail, radius: RadiusSettings, clients: Sequence[RadiusClientSettings],
                           grpc_first_factor: str, directory: DirectorySettings) -> list[RadiusClientSettings]:
    """Resolves every first factor to ``local``, ``none`` or a directory name."""
    from mfad.radius.attributes import attribute_code
    from mfad.radius.errors import RadiusEncodeError

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
        for j, name in enumerate(client.upstream_reply_attributes):
            try:
                attribute_code(name)
            except RadiusEncodeError:
                fail(f"{path}.upstream_reply_attributes[{j}]", f"unknown RADIUS attribute {name!r}")
            if name in ("Message-Authenticator", "Proxy-State", "State", "User-Password"):
                fail(f"{path}.upstream_reply_attributes[{j}]", f"{name} is mfad's own, never copied")
        out.append(dataclasses.replace(client, first_factor=first))
    return out


def grpc_first_factor(value: str, directory: DirectorySettings) -> str:
    """The resolved gRPC first factor (the config check has vetted it)."""
    return resolve_first_factor(value, directory) or LOCAL

