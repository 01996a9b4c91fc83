"""One exception tree for faults; expected refusals are values, not exceptions.

Transports map these classes to their own codes through one table each
(gRPC status, RADIUS silence). Messages name the bad field but never reveal
whether a user exists.
"""

from __future__ import annotations


class MfadError(Exception):
    """Base of every error mfad raises on purpose."""


class ConfigError(MfadError, ValueError):
    """The configuration is invalid. ``problems`` lists every ``key.path: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class InvalidInput(MfadError, ValueError):
    """A caller sent a value that can never be valid (names the field)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NotFound(MfadError, LookupError):
    """An object addressed by id does not exist (used only where that leaks nothing)."""


class AlreadyExists(MfadError):
    """Creating something whose unique name is taken."""


class PreconditionFailed(MfadError):
    """A product rule forbids the operation now (e.g. a second TOTP device)."""


class Unauthenticated(MfadError):
    """An end-user credential (a user session) is missing, expired or revoked."""


class PermissionDenied(MfadError, PermissionError):
    """The policy or the caller's role forbids the operation."""


class RateLimited(MfadError):
    """Too many attempts; try again later."""


class Unavailable(MfadError):
    """A dependency (the store, the mail server) cannot be reached: fail closed."""


class SecretsError(MfadError):
    """The key file is missing, corrupt, or a ciphertext cannot be opened."""


class SchemaError(MfadError):
    """The database schema is newer than this build knows, or not migrated."""
