"""mfad.v1.Authentication: sign-in, challenges, one-call code checks and step-up.

Every method calls one core use case (``Mfa.selfservice`` or ``Mfa.signin``)
and maps its typed result through :mod:`mfad.api.convert`. Refusals are OK
answers with outcome REFUSED, identical whatever the core's reason.
Step-ups with a passkey, U2F key or email code take two VerifySensitive calls
(start, then the proof); TOTP takes one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import convert
from mfad.api.auth import current_caller, session_of
from mfad.api.servicers.base import attempt, strongest_first, user_agent, user_session
from mfad.core.approval import ApprovalStatus
from mfad.core.errors import InvalidInput, PermissionDenied, PreconditionFailed
from mfad.core.model import Method, Role
from mfad.core.service import Mfa
from mfad.core.verification import VOUCHED, Outcome, SignInRequest

Context = grpc.aio.ServicerContext[Any, Any]

#: The longest WatchChallenge (a challenge lives 300 s by default; a stream is not for ever).
MAX_WATCH_SECONDS = 600
_APPROVAL_STATUS = {
    ApprovalStatus.UNKNOWN: pb.APPROVAL_STATUS_UNKNOWN, ApprovalStatus.PENDING: pb.APPROVAL_STATUS_PENDING,
    ApprovalStatus.APPROVED: pb.APPROVAL_STATUS_APPROVED, ApprovalStatus.USED: pb.APPROVAL_STATUS_USED,
    ApprovalStatus.REFUSED: pb.APPROVAL_STATUS_REFUSED, ApprovalStatus.EXPIRED: pb.APPROVAL_STATUS_EXPIRED,
}


class AuthenticationServicer(pb_grpc.AuthenticationServicer):
    def __init__(self, mfa: Mfa, *, approve_url: str | None = None) -> None:
        self._mfa = mfa
        self._approve_url = approve_url

    async def BeginSignIn(self, request: pb.BeginSignInRequest, context: Context) -> pb.BeginSignInResponse:
        caller = current_caller()
        password = request.password if request.HasField("password") else None
        if password is None and caller.role is Role.PORTAL and request.username:  # "": usernameless passkey
            raise PermissionDenied("password: a portal caller must send the first factor")
        found = await self._mfa.selfservice.begin(request.username, password, attempt(request.client),
                                                  caller=caller.name,
                                                  remembered_token=request.remembered_token or None)
        r = found.result
        out = pb.BeginSignInResponse(outcome=convert.OUTCOME_TO_PB[r.outcome])
        if r.outcome is Outcome.SECOND_FACTOR_REQUIRED:
            out.challenge_id = r.challenge_id or ""
            out.methods.extend(strongest_first(r.methods))
            out.remember_days = found.remember_days
            out.masked_email = found.masked_email
            if r.expires_at is not None:
                out.challenge_expires_at.FromDatetime(r.expires_at)
        elif r.outcome is Outcome.ENROLMENT_REQUIRED:
            out.methods.extend(strongest_first(r.methods))
        elif r.outcome is Outcome.ALLOWED and r.user is not None:
            out.username = r.user.username
            if r.remembered_token is not None:
                out.remembered.CopyFrom(pb.RememberedToken(token=r.remembered_token,
                                                           expires_at=convert.timestamp(found.remembered_expires_at)))
        if found.session is not None:
            out.session.CopyFrom(user_session(found.session))
        return out

    async def StartChallenge(self, request: pb.StartChallengeRequest, context: Context) -> pb.StartChallengeResponse:
        method = convert.method(request.method)
        if method is Method.APPROVAL and self._approve_url is None:
            raise PreconditionFailed("method: approval needs the portal ([portal] enabled or public_url)")
        started = await self._mfa.signin.start_challenge(request.challenge_id, method, attempt(request.client))
        details = convert.challenge_details(request.challenge_id, started)
        if method is Method.APPROVAL:
            details.approval_url = self._approve_url or ""
        return pb.StartChallengeResponse(challenge=details)

    async def WatchChallenge(self, request: pb.WatchChallengeRequest,
                             context: Context) -> AsyncIterator[pb.ChallengeStatus]:
        """The approval's status now and at each change (``ApprovalService.watch``), for at
        most ``timeout_seconds`` (and never past the call's deadline: gRPC cancels it)."""
        seconds = request.timeout_seconds or MAX_WATCH_SECONDS
        if seconds > MAX_WATCH_SECONDS:
            raise InvalidInput("timeout_seconds", f"must be between 1 and {MAX_WATCH_SECONDS} (0: the most)")
        async for status in self._mfa.approvals.watch(request.challenge_id, timeout=float(seconds)):
            yield pb.ChallengeStatus(status=_APPROVAL_STATUS[status])

    async def CompleteChallenge(self, request: pb.CompleteChallengeRequest,
                                context: Context) -> pb.CompleteChallengeResponse:
        method = convert.method(request.method)
        proof = request.WhichOneof("proof")
        response = request.assertion_json if proof == "assertion_json" else request.code
        done = await self._mfa.selfservice.complete(request.challenge_id, method, response, attempt(request.client),
                                                    caller=current_caller().name, remember=request.remember_device,
                                                    remember_label=user_agent(request.client))
        r = done.result
        if not r.accepted or r.user is None or done.session is None:
            return pb.CompleteChallengeResponse(outcome=pb.SIGN_IN_OUTCOME_REFUSED)
        out = pb.CompleteChallengeResponse(outcome=pb.SIGN_IN_OUTCOME_ALLOWED, username=r.user.username,
                                           session=user_session(done.session))
        if r.remembered_token is not None:
            out.remembered.CopyFrom(pb.RememberedToken(token=r.remembered_token,
                                                       expires_at=convert.timestamp(done.remembered_expires_at)))
        return out

    async def VerifyCode(self, request: pb.VerifyCodeRequest, context: Context) -> pb.VerifyCodeResponse:
        method = Method.TOTP if request.method == pb.METHOD_UNSPECIFIED else convert.method(request.method)
        result = await self._mfa.signin.sign_in(SignInRequest(
            username=request.username, first_factor=VOUCHED, code=request.code, method=method, code_required=True,
            attempt=attempt(request.client)))
        return pb.VerifyCodeResponse(
            outcome=pb.VERIFY_OUTCOME_ACCEPTED if result.accepted else pb.VERIFY_OUTCOME_REFUSED)

    async def VerifySensitive(self, request: pb.VerifySensitiveRequest,
                              context: Context) -> pb.VerifySensitiveResponse:
        method = convert.method(request.method)
        if method is not Method.TOTP:
            return await self._two_call_step_up(request, method, context)
        if request.challenge_id:
            raise InvalidInput("challenge_id", "a TOTP step-up needs no challenge: leave it empty")
        if request.WhichOneof("proof") == "assertion_json":
            raise InvalidInput("assertion_json", "a TOTP step-up takes a code")
        step = await self._mfa.selfservice.step_up(token=session_of(context), username=request.username,
                                                   code=request.code, operation=request.operation,
                                                   attempt=attempt(request.client), caller=current_caller().name)
        if not step.verified:
            return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_REFUSED)
        return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_VERIFIED,
                                          verified_at=convert.timestamp(step.verified_at),
                                          valid_until=convert.timestamp(step.valid_until))

    async def _two_call_step_up(self, request: pb.VerifySensitiveRequest, method: Method,
                                context: Context) -> pb.VerifySensitiveResponse:
        """PASSKEY, U2F and EMAIL: the first call starts a challenge, the second brings the proof."""
        proof = request.WhichOneof("proof")
        token, where, caller = session_of(context), attempt(request.client), current_caller().name
        if not request.challenge_id:
            if proof is not None:
                raise InvalidInput("challenge_id", "send the proof with the challenge id the first call returned")
            started = await self._mfa.selfservice.start_step_up(
                token=token, username=request.username, method=method, operation=request.operation, attempt=where,
                caller=caller)
            if started is None:
                return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_REFUSED)
            return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_CHALLENGE_STARTED,
                                              challenge=convert.challenge_details(started.challenge_id,
                                                                                  started.started))
        if proof is None:
            raise InvalidInput("proof", "the second call of a step-up carries the code or assertion_json")
        response = request.assertion_json if proof == "assertion_json" else request.code
        step = await self._mfa.selfservice.finish_step_up(
            token=token, username=request.username, challenge_id=request.challenge_id, method=method,
            response=response, operation=request.operation, attempt=where, caller=caller)
        if not step.verified:
            return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_REFUSED)
        return pb.VerifySensitiveResponse(outcome=pb.STEP_UP_OUTCOME_VERIFIED,
                                          verified_at=convert.timestamp(step.verified_at),
                                          valid_until=convert.timestamp(step.valid_until))
