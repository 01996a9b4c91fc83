"""Core helpers the RADIUS front end relies on, checked on their own: how ``append`` mode
splits password and code, and that a code shared by two steps is not a false replay
(found by bench/radius_load.py: one refusal in 40,000 valid codes)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from mfad.core import totp
from mfad.core.model import TotpParams
from mfad.core.signin import split_appended

# SHA-1 of this seed: a key whose steps 59,000,001 and 59,000,002 both show 696505
# (searched once; codes of two steps coincide once in a million pairs).
COLLIDING_KEY = hashlib.sha1(b"mfad-collision-85132").digest()
STEP = 59_000_001


def test_the_colliding_key_collides() -> None:
    assert totp.hotp(COLLIDING_KEY, STEP) == totp.hotp(COLLIDING_KEY, STEP + 1) == "696505"


def test_a_code_of_a_used_and_a_fresh_step_is_the_fresh_one() -> None:
    now = datetime.fromtimestamp(STEP * 30 + 5, UTC)  # inside STEP; the window reaches STEP + 1
    found = totp.match_code(COLLIDING_KEY, "696505", now, TotpParams(), last_step=STEP, drift=0, window=1)
    assert found == totp.TotpMatch(STEP + 1, 1)


def test_a_code_of_used_steps_only_is_a_replay() -> None:
    now = datetime.fromtimestamp(STEP * 30 + 5, UTC)
    found = totp.match_code(COLLIDING_KEY, "696505", now, TotpParams(), last_step=STEP + 1, drift=0, window=1)
    assert found == totp.TotpReplay(STEP)


@pytest.mark.parametrize(("typed", "digits", "expected"), [
    ("hunter2123456", 6, ("hunter2", "123456")),
    ("pass-00000042", 8, ("pass-", "00000042")),
    ("hunter2-000042" + "12345678", 8, ("hunter2-000042", "12345678")),  # digits at the end of the password
    ("hunter2-000042" + "12345678", 6, ("hunter2-00004212", "345678")),  # what a wrong length would do
    ("123456", 6, ("123456", "")),  # nothing left for a password: all of it is the password
    ("password", 6, ("password", "")),  # no code typed
    ("pass١٢٣٤٥٦", 6, ("pass١٢٣٤٥٦", "")),  # non-ASCII digits are not a code
    ("hunter2123456", None, ("hunter2123456", "")),  # no TOTP device: the whole is the password
])
def test_append_splits_by_the_device_digits(typed: str, digits: int | None, expected: tuple[str, str]) -> None:
    assert split_appended(typed, digits) == expected
