"""What the import formats (:mod:`mfad.importers`, :mod:`mfad.pskc`) hand on: typed
users and TOTP secrets, and the error that names every problem of a file."""

from __future__ import annotations

from dataclasses import dataclass, field

from mfad.core.errors import MfadError
from mfad.core.model import TotpParams

DEFAULT_DEVICE_NAME = "authenticator app"


class BadImportFile(MfadError, ValueError):
    """The file cannot be imported; ``problems`` lists every ``place: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpRecord:
    username: str
    secret: bytes = field(repr=False)
    params: TotpParams = TotpParams()
    name: str = DEFAULT_DEVICE_NAME


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord:
    username: str
    password: str | None = field(default=None, repr=False)
    disabled: bool = False
    totp: TotpRecord | None = None
