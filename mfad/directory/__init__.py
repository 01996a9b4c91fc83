"""Directories that check the first factor: LDAP / Active Directory (``ldap``) and an
upstream RADIUS server (``radius``). Each implements ``mfad.core.directory.Directory``;
``build`` makes them from the config and says which sign-ins each one judges."""

from __future__ import annotations

from dataclasses import dataclass

from mfad.config import Config, resolve_first_factor
from mfad.core.directory import Directory
from mfad.core.errors import ConfigError


_VENDOR_SPECIFIC = 26


@dataclass(frozen=True, slots=True)
class Directories:
    by_name: dict[str, Directory]
    #: RADIUS client name → "local", "none" or a directory's name.
    by_client: dict[str, str]
    #: "grpc" → the same.
    by_protocol: dict[str, str]
    #: RADIUS client name → the upstream reply attributes it carries on to the NAS.
    reply_allowed: dict[str, frozenset[str]]

    async def aclose(self) -> None:
        for directory in self.by_name.values():
            await directory.aclose()


def build(config: Config) -> Directories:
    """The configured directories (nothing is contacted yet). Raises ConfigError for a
    RADIUS attribute name the dictionary does not know."""
    from mfad.directory.ldap import LdapDirectory
    from mfad.directory.radius import UpstreamRadius
    from mfad.radius.attributes import RESERVED_IN_REPLIES, attribute_code
    from mfad.radius.errors import RadiusEncodeError

    problems = []
    for i, upstream in enumerate(config.directory.radius):
        for j, name in enumerate(upstream.group_attributes):
            try:
                attribute_code(name)
            except RadiusEncodeError:
                problems.append(f"directory.radius[{i}].group_attributes[{j}]: unknown RADIUS attribute {name!r}")
    upstreams = {s.name for s in config.directory.radius}
    for i, client in enumerate(config.radius.clients):
        path = f"radius.clients[{i}].upstream_reply_attributes"
        if client.upstream_reply_attributes and client.first_factor not in upstreams:
            problems.append(f"{path}: only a client whose first_factor is an upstream RADIUS server has them")
        for j, name in enumerate(client.upstream_reply_attributes):
            try:
                code = attribute_code(name)
            except RadiusEncodeError:
                problems.append(f"{path}[{j}]: unknown RADIUS attribute {name!r}")
                continue
            if code in RESERVED_IN_REPLIES or code == _VENDOR_SPECIFIC:
                # Vendor attributes may be sealed with the upstream's secret (MS-MPPE keys): never copied.
                problems.append(f"{path}[{j}]: {name} is never copied from the upstream reply")
    if problems:
        raise ConfigError(problems)
    by_name: dict[str, Directory] = {s.name: LdapDirectory(s) for s in config.directory.ldap}
    by_name.update({s.name: UpstreamRadius(s) for s in config.directory.radius})
    by_client = {c.name: c.first_factor or "local" for c in config.radius.clients}
    grpc = resolve_first_factor(config.grpc.first_factor, config.directory) or "local"
    reply_allowed = {c.name: frozenset(c.upstream_reply_attributes) for c in config.radius.clients
                     if c.upstream_reply_attributes}
    return Directories(by_name=by_name, by_client=by_client, by_protocol={"grpc": grpc}, reply_allowed=reply_allowed)
