"""TOTP as a second factor of the sign-in service: the user's one active TOTP device,
checked with the replay guard (the code arithmetic is in :mod:`mfad.core.totp`)."""

from __future__ import annotations

import secrets
from datetime import datetime

from mfad.core import totp
from mfad.core.keyring import Keyring, aad_for
from mfad.core.model import Challenge, Method, TotpParams
from mfad.core.ports import SignInStore
from mfad.core.verification import ChallengeStarted, MethodOutcome, Reason, VerifyContext

_DUMMY_TOTP_KEY = secrets.token_bytes(totp.SECRET_BYTES)
_DEFAULT_PARAMS = TotpParams()


class TotpVerifier:
    """TOTP codes against the user's one active TOTP device, with the replay guard."""

    method = Method.TOTP

    def __init__(self, *, store: SignInStore, keyring: Keyring, window: int) -> None:
        self._store = store
        self._keyring = keyring
        self._window = window

    async def start(self, ctx: VerifyContext, challenge: Challenge) -> ChallengeStarted:
        return ChallengeStarted(method=self.method)  # the code is already on the user's phone

    async def verify(self, ctx: VerifyContext, code: str) -> MethodOutcome:
        device = next((d for d in ctx.subject.devices if d.method is Method.TOTP and d.is_active), None)
        if device is None or device.totp is None or device.sealed_secret is None:
            dummy_check(code, ctx.now, self._window)  # same work as a real check
            return MethodOutcome(accepted=False, reason=Reason.WRONG_CODE,
                                 repeat_key=_totp_repeat_key(code, ctx.now, _DEFAULT_PARAMS))
        key = self._keyring.open_secret(device.sealed_secret, aad_for("devices", "sealed_secret", device.id))
        found = totp.match_code(key, code, ctx.now, device.totp, last_step=device.last_step, drift=device.drift,
                                window=self._window)
        if isinstance(found, totp.TotpMatch):
            p = ctx.pending
            if await self._store.accept_totp(device.id, ctx.user.id, found.step, found.drift, ctx.now,
                                             p.challenge_hash, p.audit, p.remember, p.remember_hash):
                return MethodOutcome(accepted=True, reason=Reason.ACCEPTED)
            # Another request won the race for this step (or for the challenge).
            reason = Reason.REPLAY
        else:
            reason = Reason.REPLAY if isinstance(found, totp.TotpReplay) else Reason.WRONG_CODE
        return MethodOutcome(accepted=False, reason=reason,
                             repeat_key=_totp_repeat_key(code, ctx.now, device.totp))


def _totp_repeat_key(code: str, now: datetime, params: TotpParams) -> str:
    """``code`` and the window it was checked against, named by the current step. Within one
    step a repeat meets the very same candidates and cannot succeed; in the next step a new
    candidate has entered, so the repeat is a fresh guess and counts again. (The drift that
    centres the window changes only with a success, and a success clears the stored key:
    requests racing a success all name the window alike, whichever drift they loaded.)"""
    return f"{code}@{totp.step_at(now, params.period)}"


def dummy_check(code: str, now: datetime, window: int) -> None:
    """The computation of a real check, against a key nobody holds: timing says nothing."""
    totp.match_code(_DUMMY_TOTP_KEY, code, now, _DEFAULT_PARAMS, last_step=-1, drift=0, window=window)
