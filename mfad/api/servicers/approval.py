"""Enrollment's out-of-band approval RPCs (docs/approval.md): the Approve sign-in page's
calls on behalf of the signed-in user. A mixin of the Enrollment servicer, like the
passkey part; each RPC is one ``ApprovalService`` use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from typing import Any

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api import convert
from mfad.api.servicers.base import attempt
from mfad.core.approval import Decided, PendingSignIn, Proof
from mfad.core.errors import InvalidInput, PermissionDenied
from mfad.core.model import Method, User
from mfad.core.selfservice import Use
from mfad.core.service import Mfa
from mfad.core.sessions import SessionScope, UserSession

Context = grpc.aio.ServicerContext[Any, Any]

_OUTCOME = {Decided.APPROVED: pb.APPROVAL_OUTCOME_APPROVED, Decided.DENIED: pb.APPROVAL_OUTCOME_DENIED,
            Decided.REFUSED: pb.APPROVAL_OUTCOME_REFUSED}


def pending_approval(p: PendingSignIn) -> pb.PendingApproval:
    return pb.PendingApproval(id=p.approval_id, client=p.client or "", source=p.source or "", protocol=p.protocol,
                              created_at=convert.timestamp(p.created_at), expires_at=convert.timestamp(p.expires_at),
                              choices=list(p.choices), held=p.held)


class ApprovalEnrollment:
    _mfa: Mfa

    #: The caller's session, checked for ``use`` (EnrollmentServicer's, this mixin's host).
    session: Callable[[Context, Use], Awaitable[UserSession]]

    async def _approver(self, context: Context) -> User:
        # VIEW: deciding about one's own sign-in is not managing devices (self_service may be off).
        session = await self.session(context, Use.VIEW)
        if session.scope is not SessionScope.FULL:
            raise PermissionDenied("sign in with your passkey first")
        return await self._mfa.users.get(session.username)

    async def ListPendingApprovals(self, request: pb.ListPendingApprovalsRequest,
                                   context: Context) -> pb.ListPendingApprovalsResponse:
        user = await self._approver(context)
        pending = await self._mfa.approvals.list_pending(user)
        proofs = await self._mfa.approvals.proof_methods(user)
        return pb.ListPendingApprovalsResponse(approvals=[pending_approval(p) for p in pending],
                                               proof_methods=sorted(convert.METHOD_TO_PB[m] for m in proofs))

    async def DecideApproval(self, request: pb.DecideApprovalRequest, context: Context) -> pb.DecideApprovalResponse:
        user = await self._approver(context)
        where = attempt(request.client)
        approvals = self._mfa.approvals
        if request.decision == pb.APPROVAL_DECISION_APPROVE:
            decided = await approvals.approve(user, request.approval_id, request.number, _proof(request), where)
        elif request.decision == pb.APPROVAL_DECISION_DENY:
            decided = await approvals.deny(user, request.approval_id, where)
        elif request.decision == pb.APPROVAL_DECISION_LOCK_ACCOUNT:
            await approvals.report(user, where)
            return pb.DecideApprovalResponse(outcome=pb.APPROVAL_OUTCOME_ACCOUNT_LOCKED)
        else:
            raise InvalidInput("decision", "must be APPROVE, DENY or LOCK_ACCOUNT")
        return pb.DecideApprovalResponse(outcome=_OUTCOME[decided])


def _proof(request: pb.DecideApprovalRequest) -> Proof:
    """A passkey assertion for its step-up challenge, or a TOTP code (never both)."""
    if request.code:
        if request.challenge_id or request.assertion_json:
            raise InvalidInput("code", "give a TOTP code or a passkey assertion, not both")
        return Proof(method=Method.TOTP, response=request.code)
    if not request.challenge_id or not request.assertion_json:
        raise InvalidInput("assertion_json", "an approval needs the passkey step-up's challenge and assertion, "
                                             "or a TOTP code")
    return Proof(method=Method.PASSKEY, challenge_id=request.challenge_id, response=request.assertion_json)
