"""mfad.v1.Enrollment: self-service for the signed-in user named by ``x-mfad-session``.

Each method first asks the core whether the session may do this kind of
thing (``SelfService.authorize``: live, issued to this caller, scope and
policy), then calls one core use case. Passkey binding and U2F upgrade come
from :class:`mfad.api.servicers.passkeys.PasskeyEnrollment`, which asks
``self.session(context, Use.…)`` the same way.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import convert
from mfad.api.auth import current_caller, session_of
from mfad.api.servicers import email
from mfad.api.servicers.approval import ApprovalEnrollment
from mfad.core.emergency import lost_devices
from mfad.api.servicers.base import attempt, finish_enrolment, strongest_first
from mfad.api.servicers.passkeys import PasskeyEnrollment
from mfad.core.errors import InvalidInput
from mfad.core.selfservice import Use
from mfad.core.service import Mfa
from mfad.core.sessions import SessionScope, UserSession

Context = grpc.aio.ServicerContext[Any, Any]


class EnrollmentServicer(PasskeyEnrollment, ApprovalEnrollment, pb_grpc.EnrollmentServicer):
    def __init__(self, mfa: Mfa, *, issuer: str) -> None:
        self._mfa = mfa
        self._issuer = issuer

    async def session(self, context: Context, use: Use) -> UserSession:
        """The call's user session, if it may be used for ``use`` (else the core raises)."""
        return await self._mfa.selfservice.authorize(session_of(context), current_caller().name, use)

    async def ListDevices(self, request: pb.ListDevicesRequest, context: Context) -> pb.ListDevicesResponse:
        session = await self.session(context, Use.VIEW)
        listing = await self._mfa.selfservice.list_devices(session)
        policy = await self._mfa.policy.current()
        lost = lost_devices(listing.devices) if session.is_emergency else []
        return pb.ListDevicesResponse(devices=convert.device_list(listing), self_service=policy.self_service,
                                      allowed_methods=strongest_first(policy.allowed_methods),
                                      emergency_session=session.is_emergency,
                                      lost_device_ids=[str(d.id) for d in lost], email_recovery=policy.email_recovery)

    async def BeginTotpBinding(self, request: pb.BeginTotpBindingRequest,
                               context: Context) -> pb.BeginTotpBindingResponse:
        session = await self.session(context, Use.ENROL)
        binding = await self._mfa.selfservice.begin_totp(session, request.name)
        return pb.BeginTotpBindingResponse(provisioning=convert.totp_provisioning(
            binding, issuer=self._issuer, account=session.username))

    async def ConfirmTotpBinding(self, request: pb.ConfirmTotpBindingRequest,
                                 context: Context) -> pb.ConfirmTotpBindingResponse:
        session = await self.session(context, Use.ENROL)
        device, listing = await self._mfa.selfservice.confirm_totp(session, convert.device_id(request.device_id),
                                                                   request.code)
        out = pb.ConfirmTotpBindingResponse(device=convert.device(device), devices=convert.device_list(listing))
        await finish_enrolment(self._mfa, session, request.client, device.method, into=out.session)
        return out

    async def BeginEmailBinding(self, request: pb.BeginEmailBindingRequest,
                                context: Context) -> pb.BeginEmailBindingResponse:
        # An enrolment session is refused (only a passkey or TOTP at first sign-in), and so is a
        # session that still owes the enrolment proof.
        session = await self.session(context, Use.BIND_EMAIL)
        sent = await self._mfa.email.begin_binding(session.username, request.address, attempt(request.client),
                                                   enrolment=session.scope is SessionScope.ENROLMENT, actor="user")
        return pb.BeginEmailBindingResponse(sent=email.code_sent(sent))

    async def ConfirmEmailBinding(self, request: pb.ConfirmEmailBindingRequest,
                                  context: Context) -> pb.ConfirmEmailBindingResponse:
        session = await self.session(context, Use.BIND_EMAIL)
        device = await self._mfa.email.confirm_binding(session.username, convert.device_id(request.device_id),
                                                       request.code, attempt(request.client), actor="user")
        listing = await self._mfa.devices.list(session.username)
        return pb.ConfirmEmailBindingResponse(device=convert.device(device), devices=convert.device_list(listing))

    async def Unbind(self, request: pb.UnbindRequest, context: Context) -> pb.UnbindResponse:
        session = await self.session(context, Use.MANAGE)
        listing = await self._mfa.selfservice.unbind(session, convert.device_id(request.device_id))
        return pb.UnbindResponse(devices=convert.device_list(listing))

    async def ListRemembered(self, request: pb.ListRememberedRequest, context: Context) -> pb.ListRememberedResponse:
        session = await self.session(context, Use.MANAGE)
        items = await self._mfa.selfservice.list_remembered(session)
        return pb.ListRememberedResponse(remembered=convert.remembered_devices(items))

    async def GenerateRecoveryCodes(self, request: pb.GenerateRecoveryCodesRequest,
                                    context: Context) -> pb.GenerateRecoveryCodesResponse:
        session = await self.session(context, Use.MANAGE)
        made = await self._mfa.selfservice.generate_recovery_codes(session, attempt(request.client))
        status = await self._mfa.selfservice.recovery_status(session)
        return pb.GenerateRecoveryCodesResponse(codes=list(made.codes), status=convert.recovery_status(status))

    async def GetRecoveryStatus(self, request: pb.GetRecoveryStatusRequest,
                                context: Context) -> pb.GetRecoveryStatusResponse:
        session = await self.session(context, Use.VIEW)
        status = await self._mfa.selfservice.recovery_status(session)
        return pb.GetRecoveryStatusResponse(status=convert.recovery_status(status))

    async def StartEnrolmentProof(self, request: pb.StartEnrolmentProofRequest,
                                  context: Context) -> pb.StartEnrolmentProofResponse:
        started = await self._mfa.selfservice.start_enrolment_proof(session_of(context), current_caller().name,
                                                                    attempt(request.client))
        out = pb.StartEnrolmentProofResponse(proof=convert.ENROLMENT_PROOF_TO_PB[started.proof])
        if started.sent is not None:
            out.masked_email = started.sent.masked_address
            out.expires_at.FromDatetime(started.sent.expires_at)
        return out

    async def PresentEnrolmentProof(self, request: pb.PresentEnrolmentProofRequest,
                                    context: Context) -> pb.PresentEnrolmentProofResponse:
        accepted = await self._mfa.selfservice.present_enrolment_proof(
            session_of(context), current_caller().name, request.code, attempt(request.client))
        return pb.PresentEnrolmentProofResponse(accepted=accepted)

    async def RevokeRemembered(self, request: pb.RevokeRememberedRequest,
                               context: Context) -> pb.RevokeRememberedResponse:
        series = remembered_target(request.id, request.all)
        session = await self.session(context, Use.MANAGE)
        return pb.RevokeRememberedResponse(revoked=await self._mfa.selfservice.revoke_remembered(session, series))

    async def EndSession(self, request: pb.EndSessionRequest, context: Context) -> pb.EndSessionResponse:
        await self._mfa.selfservice.end(session_of(context), current_caller().name, attempt(None))
        return pb.EndSessionResponse()


def remembered_target(id_: str, all_: bool) -> str | None:
    """One remembered device by id, or None for all of them."""
    if all_ and id_:
        raise InvalidInput("id", "give an id or all, not both")
    if not all_ and not id_:
        raise InvalidInput("id", "must not be empty (or set all)")
    return id_ or None
