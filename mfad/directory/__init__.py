"""Directories that check the first factor: LDAP / Active Directory (``ldap``) and an
upstream RADIUS server (``radius``). Each implements ``mfad.core.directory.Directory``;
``build`` makes them from the config and says which sign-ins each one judges."""

from __future__ import annotations

from dataclasses import dataclass

from mfad.config import Config, resolve_first_factor
from mfad.core.directory import Directory
from mfad.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Directories:
    by_name: dict[str, Directory]
    #: RADIUS client name → "local", "none" or a directory's name.
    by_client: dict[str, str]
    #: "grpc" → the same.
    by_protocol: dict[str, str]

    async def aclose(self) -> None:
        for directory in self.by_name.values():
            await directory.aclose()


def build(config: Config) -> Directories:
    """The configured directories (nothing is contacted yet). Raises ConfigError for a
    RADIUS attribute name the dictionary does not know."""
    from mfad.directory.ldap import LdapDirectory
    from mfad.directory.radius import UpstreamRadius
    from mfad.radius.attributes import attribute_code
    from mfad.radius.errors import RadiusEncodeError

    problems = []
    for i, upstream in enumerate(config.directory.radius):
        for j, name in enumerate(upstream.group_attributes):
            try:
                attribute_code(name)
            except RadiusEncodeError:
                problems.append(f"directory.radius[{i}].group_attributes[{j}]: unknown RADIUS attribute {name!r}")
    if problems:
        raise ConfigError(problems)
    by_name: dict[str, Directory] = {s.name: LdapDirectory(s) for s in config.directory.ldap}
    by_name.update({s.name: UpstreamRadius(s) for s in config.directory.radius})
    by_client = {c.name: c.first_factor or "local" for c in config.radius.clients}
    grpc = resolve_first_factor(config.grpc.first_factor, config.directory) or "local"
    return Directories(by_name=by_name, by_client=by_client, by_protocol={"grpc": grpc})
