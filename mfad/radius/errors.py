"""Faults of the RADIUS front end, under the project's one exception tree.

Expected refusals (a malformed packet, a bad authenticator, an unknown client)
are values returned by the codec and counted by the server, never exceptions.
What is raised here is a fault: a configuration that cannot work, a listener
that cannot bind, a reply that cannot be encoded.
"""

from __future__ import annotations

from mfad.core.errors import ConfigError, MfadError


class RadiusError(MfadError):
    """Base of every fault raised by :mod:`mfad.radius`."""


class RadiusConfigError(RadiusError, ConfigError):
    """A client or server setting can never work (names the setting, never a secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__([reason])


class RadiusBindError(RadiusError, OSError):
    """A listen address cannot be bound (in use, not local, permission)."""


class RadiusEncodeError(RadiusError, ValueError):
    """A reply cannot be encoded (unknown attribute name, value too long, over 4096 bytes)."""
