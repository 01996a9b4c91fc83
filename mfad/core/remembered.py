"""Remembered devices ("remember this device for N days").

Guarantee: a token is 256 random bits stored only as a SHA-256 hash, bound to
one user, expiring after the policy's days. Tokens rotate on every use: the
token names its series and counter (``rd1.<series>.<counter>.<secret>``); the
store swaps the current hash for the next atomically. A token from a live
series that is not the current one means a copy is in use somewhere: the
whole series is revoked and audited, and the sign-in falls back to a second
factor. All of a user's tokens are revoked when the password or a device
changes, and everybody's when the policy turns remembering off. Remembered
*stations* (``station_series``) share the table and therefore all of this.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

PREFIX = "rd1"
MAX_TOKEN_LENGTH = 200
STATION_PREFIX = "st-"  # a station series; token series (token_urlsafe) are 22 characters


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class ParsedToken:
    series: str
    counter: int
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}.{self.series}.{self.counter}.{self.secret}"


def new_series() -> tuple[ParsedToken, str]:
    token = ParsedToken(secrets.token_urlsafe(16), 1, secrets.token_urlsafe(32))
    return token, token_hash(token.secret)


def next_token(series: str, counter: int) -> tuple[ParsedToken, str]:
    token = ParsedToken(series, counter, secrets.token_urlsafe(32))
    return token, token_hash(token.secret)


def station_series(user_id: int, client: str | None, station: str) -> str:
    """The series of a remembered *station*: what a trusted transport asserts about the
    end device (RADIUS Calling-Station-Id), per user and per client (a NAS's station ids
    mean nothing to another NAS). Derived, not random, so the next sign-in finds it; no
    token is ever issued for it (its stored hash matches no token), and it lives in the
    same table as token series, so it is listed, expires and is revoked like them."""
    digest = hashlib.sha256(f"{user_id}\x00{client or ''}\x00{station}".encode("utf-8", "surrogatepass"))
    return f"{STATION_PREFIX}{digest.hexdigest()[:40]}"


def parse(text: str) -> ParsedToken | None:
    """None for anything that is not a well-formed token (never raises on caller input)."""
    if not text or len(text) > MAX_TOKEN_LENGTH or not text.isascii():
        return None
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit() or not parts[1] or not parts[3]:
        return None
    return ParsedToken(parts[1], int(parts[2]), parts[3])
