"""The sign-in requests the tests send most, in one line each.

Both build a :class:`~mfad.core.verification.SignInRequest` for ``SignInService.sign_in``, the
one entry point the transports call:

``begin(signin, username, password, attempt, **kw)``
    The first factor alone (``password`` None: the caller vouches for it), as gRPC
    BeginSignIn and RADIUS ``challenge`` send it; ``kw`` are the request's other fields
    (``remembered_token``, ``station``, ``challenge_ttl``, ``challenge_tries``).
``verify_code(signin, username, code, attempt, method=Method.TOTP)``
    A code checked in one call, the first factor vouched for, as gRPC VerifyCode sends it.
"""

from __future__ import annotations

from typing import Any

from mfad.core.model import Method
from mfad.core.signin import SignInService
from mfad.core.verification import VOUCHED, Attempt, FirstFactor, Password, SignInRequest, SignInResult


async def begin(signin: SignInService, username: str, password: str | None, attempt: Attempt,
                **kw: Any) -> SignInResult:
    first: FirstFactor = VOUCHED if password is None else Password(password)
    return await signin.sign_in(SignInRequest(username=username, first_factor=first, attempt=attempt, **kw))


async def verify_code(signin: SignInService, username: str, code: str, attempt: Attempt, *,
                      method: Method | None = None) -> SignInResult:
    return await signin.sign_in(SignInRequest(username=username, first_factor=VOUCHED, code=code,
                                              method=method or Method.TOTP, code_required=True, attempt=attempt))
