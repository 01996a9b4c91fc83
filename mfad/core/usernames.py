"""Usernames: one stored form per person.

Guarantee: every username is normalised and validated before any store access
— Unicode NFC, case-folded when names are case-insensitive (the default), made
only of letters, digits, marks and ``. _ - @ +``, starting with a letter or a
digit, at most 256 characters — so "Alice" and "alice" are one user and no name
hides a space or a look-alike control character.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mfad.core.errors import InvalidInput

MAX_USERNAME_LENGTH = 256
#: Besides letters, digits and (not first) combining marks: what e-mail-style and
#: directory names use. No space, quote, slash or backslash: names travel in RADIUS
#: attributes, log lines and command lines.
USERNAME_PUNCTUATION = frozenset("._-@+")


@dataclass(frozen=True, slots=True, kw_only=True)
class UsernameRules:
    case_insensitive: bool = True

    def normalize(self, username: str, field: str = "username") -> str:
        """The stored form of ``username``; InvalidInput (naming ``field``) when it can never be one."""
        name = unicodedata.normalize("NFC", username)
        if self.case_insensitive:
            name = unicodedata.normalize("NFC", name.casefold())
        if not name:
            raise InvalidInput(field, "must not be empty")
        if len(name) > MAX_USERNAME_LENGTH:
            raise InvalidInput(field, f"must be at most {MAX_USERNAME_LENGTH} characters")
        if unicodedata.category(name[0])[0] not in "LN":
            raise InvalidInput(field, "must start with a letter or a digit")
        for ch in name:
            if unicodedata.category(ch)[0] not in "LNM" and ch not in USERNAME_PUNCTUATION:
                raise InvalidInput(field, f"must contain only letters, digits and . _ - @ + (not {ch!r})")
        return name
