"""The passkey and U2F parts of the gRPC servicers: binding and upgrade (Enrollment),
import (Admin), and the WebAuthn details of a started challenge (Authentication).

The Enrollment and Admin parts are mixins the servicer classes inherit, so each RPC
stays one core use case next to the others. WebAuthn JSON crosses the boundary
unchanged: options as the core made them (Level 3 JSON for
``parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON``), credentials as the
browser's ``toJSON()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from datetime import datetime
from typing import Any

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.api import convert
from mfad.api.auth import current_caller
from mfad.api.servicers.base import finish_enrolment
from mfad.core.selfservice import SELF_ACTOR, Use
from mfad.core.service import Mfa
from mfad.core.sessions import UserSession
from mfad.core.webauthn.registration import Registration

Context = grpc.aio.ServicerContext[Any, Any]


def registration(reg: Registration) -> pb.PasskeyRegistration:
    return pb.PasskeyRegistration(registration_id=reg.registration_id, creation_options_json=reg.options_json,
                                  expires_at=convert.timestamp(reg.expires_at))


class PasskeyEnrollment:
    """Enrollment: passkeys (also at first sign-in, with an enrolment session) and U2F upgrades."""

    _mfa: Mfa

    #: The caller's session, checked for ``use`` (EnrollmentServicer's, this mixin's host).
    session: Callable[[Context, Use], Awaitable[UserSession]]

    async def BeginPasskeyBinding(self, request: pb.BeginPasskeyBindingRequest,
                                  context: Context) -> pb.BeginPasskeyBindingResponse:
        session = await self.session(context, Use.ENROL)
        reg = await self._mfa.webauthn.begin_registration(session.username, name=request.name, actor=SELF_ACTOR)
        return pb.BeginPasskeyBindingResponse(registration=registration(reg))

    async def CompletePasskeyBinding(self, request: pb.CompletePasskeyBindingRequest,
                                     context: Context) -> pb.CompletePasskeyBindingResponse:
        session = await self.session(context, Use.ENROL)
        done = await self._mfa.webauthn.complete_registration(session.username, request.registration_id,
                                                              request.credential_json, actor=SELF_ACTOR)
        listing = await self._mfa.devices.list(session.username)
        out = pb.CompletePasskeyBindingResponse(device=convert.device(done.device),
                                                devices=convert.device_list(listing))
        await finish_enrolment(self._mfa, session, request.client, done.device.method, into=out.session)
        return out

    async def BeginU2FUpgrade(self, request: pb.BeginU2FUpgradeRequest,
                              context: Context) -> pb.BeginU2FUpgradeResponse:
        session = await self.session(context, Use.MANAGE)
        reg = await self._mfa.webauthn.begin_registration(session.username, name=request.name, actor=SELF_ACTOR,
                                                          upgrade=convert.device_id(request.device_id))
        return pb.BeginU2FUpgradeResponse(registration=registration(reg))

    async def CompleteU2FUpgrade(self, request: pb.CompleteU2FUpgradeRequest,
                                 context: Context) -> pb.CompleteU2FUpgradeResponse:
        session = await self.session(context, Use.MANAGE)
        done = await self._mfa.webauthn.complete_registration(session.username, request.registration_id,
                                                              request.credential_json, actor=SELF_ACTOR,
                                                              upgrade=True)
        listing = await self._mfa.devices.list(session.username)
        return pb.CompleteU2FUpgradeResponse(device=convert.device(done.device),
                                             retired_device_id=str(done.retired or ""),
                                             devices=convert.device_list(listing))


class U2fAdmin:
    """Admin: import legacy U2F registrations from an older system."""

    _mfa: Mfa

    async def ImportU2F(self, request: pb.ImportU2FRequest, context: Context) -> pb.ImportU2FResponse:
        device = await self._mfa.webauthn.import_u2f(
            request.username, name=request.name, key_handle=request.key_handle, public_key=request.public_key,
            app_id=request.app_id, counter=request.counter, actor=current_caller().name)
        listing = await self._mfa.devices.list(request.username)
        return pb.ImportU2FResponse(device=convert.device(device), devices=convert.device_list(listing))
