"""The async client: one channel, three typed facades (``auth``, ``enrollment``, ``admin``).

    async with MfadClient("127.0.0.1:50051", token=os.environ["MFAD_TOKEN"]) as mfad:
        answer = await mfad.auth.verify_code("alice", "123456")

Every call carries the caller token (``authorization: Bearer …``) when one is
given, and for Enrollment the user session (``x-mfad-session``); every call
has a deadline. A failed call raises a :class:`~mfad_client.errors.ClientError`
subclass; refusals are outcomes, not exceptions.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad_client import types as t
from mfad_client.errors import error_for

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
DEFAULT_TOTP_NAME = "authenticator app"

_METHOD = {t.Method.TOTP: pb.METHOD_TOTP, t.Method.EMAIL: pb.METHOD_EMAIL, t.Method.PASSKEY: pb.METHOD_PASSKEY,
           t.Method.U2F: pb.METHOD_U2F, t.Method.RECOVERY: pb.METHOD_RECOVERY, t.Method.APPROVAL: pb.METHOD_APPROVAL}
_APPROVAL_STATUS = {pb.APPROVAL_STATUS_UNKNOWN: t.ApprovalStatus.UNKNOWN, pb.APPROVAL_STATUS_PENDING: t.ApprovalStatus.PENDING,
                    pb.APPROVAL_STATUS_APPROVED: t.ApprovalStatus.APPROVED, pb.APPROVAL_STATUS_USED: t.ApprovalStatus.USED,
                    pb.APPROVAL_STATUS_REFUSED: t.ApprovalStatus.REFUSED,
                    pb.APPROVAL_STATUS_EXPIRED: t.ApprovalStatus.EXPIRED}
_APPROVAL_OUTCOME = {pb.APPROVAL_OUTCOME_APPROVED: t.ApprovalOutcome.APPROVED,
                     pb.APPROVAL_OUTCOME_DENIED: t.ApprovalOutcome.DENIED,
                     pb.APPROVAL_OUTCOME_ACCOUNT_LOCKED: t.ApprovalOutcome.ACCOUNT_LOCKED}
_METHOD_BACK: dict[int, t.Method] = {int(v): k for k, v in _METHOD.items()}
_STATE = {pb.DEVICE_STATE_PENDING: t.DeviceState.PENDING, pb.DEVICE_STATE_ACTIVE: t.DeviceState.ACTIVE}
_SIGN_IN = {pb.SIGN_IN_OUTCOME_ALLOWED: t.SignInOutcome.ALLOWED,
            pb.SIGN_IN_OUTCOME_SECOND_FACTOR_REQUIRED: t.SignInOutcome.SECOND_FACTOR_REQUIRED,
            pb.SIGN_IN_OUTCOME_ENROLMENT_REQUIRED: t.SignInOutcome.ENROLMENT_REQUIRED,
            pb.SIGN_IN_OUTCOME_REFUSED: t.SignInOutcome.REFUSED}
_STEP_UP = {pb.STEP_UP_OUTCOME_VERIFIED: t.StepUpOutcome.VERIFIED,
            pb.STEP_UP_OUTCOME_CHALLENGE_STARTED: t.StepUpOutcome.CHALLENGE_STARTED,
            pb.STEP_UP_OUTCOME_REFUSED: t.StepUpOutcome.REFUSED}
_ROLE = {t.Role.ADMIN: pb.ROLE_ADMIN, t.Role.SERVICE: pb.ROLE_SERVICE, t.Role.PORTAL: pb.ROLE_PORTAL}
_ROLE_BACK = {v: k for k, v in _ROLE.items()}
_STAFF_ROLE = {t.StaffRole.ADMIN: pb.USER_ROLE_ADMIN, t.StaffRole.HELPDESK: pb.USER_ROLE_HELPDESK,
               t.StaffRole.AUDITOR: pb.USER_ROLE_AUDITOR}
_STAFF_ROLE_BACK = {v: k for k, v in _STAFF_ROLE.items()}
_MFA = {t.MfaRequired.ALL: pb.MFA_REQUIRED_ALL, t.MfaRequired.ENROLLED: pb.MFA_REQUIRED_ENROLLED,
        t.MfaRequired.OFF: pb.MFA_REQUIRED_OFF}
_MFA_BACK = {v: k for k, v in _MFA.items()}
_PROOF = {t.EnrolmentProof.NONE: pb.ENROLMENT_PROOF_NONE, t.EnrolmentProof.ACCESS_CODE: pb.ENROLMENT_PROOF_ACCESS_CODE,
          t.EnrolmentProof.EMAIL_CODE: pb.ENROLMENT_PROOF_EMAIL_CODE}
_PROOF_BACK = {v: k for k, v in _PROOF.items()}
_SCOPE = {pb.SESSION_SCOPE_FULL: t.SessionScope.FULL, pb.SESSION_SCOPE_ENROLMENT: t.SessionScope.ENROLMENT}

R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """TLS for the channel: ``ca`` verifies the server (system roots when None);
    ``cert`` and ``key`` are the client certificate for mTLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    #: Check the server certificate for this name instead of the address's host.
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


# --- protobuf → client values --------------------------------------------------------------
def _time(ts: Timestamp, present: bool = True) -> datetime | None:
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _ts(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when.astimezone(UTC))
    return out


def _methods(values: Iterable[int]) -> tuple[t.Method, ...]:
    return tuple(_METHOD_BACK[v] for v in values if v in _METHOD_BACK)


def _user(m: pb.User) -> t.User:
    return t.User(id=m.id, username=m.username, disabled=m.disabled, has_password=m.has_password,
                  created_at=_time(m.created_at, m.HasField("created_at")), role=_STAFF_ROLE_BACK.get(m.role))


def _device(m: pb.Device) -> t.Device:
    return t.Device(id=m.id, method=_METHOD_BACK.get(m.method), name=m.name, state=_STATE.get(m.state),
                    created_at=_time(m.created_at, m.HasField("created_at")),
                    last_used_at=_time(m.last_used_at, m.HasField("last_used_at")), security_level=m.security_level,
                    passkey=t.PasskeyDetails(backup_eligible=m.passkey.backup_eligible,
                                             backup_state=m.passkey.backup_state, aaguid=m.passkey.aaguid)
                    if m.HasField("passkey") else None,
                    u2f=t.U2fDetails(app_id=m.u2f.app_id) if m.HasField("u2f") else None,
                    email_address=m.email.address if m.HasField("email") else "")


def _registration(m: pb.PasskeyRegistration) -> t.PasskeyRegistration:
    return t.PasskeyRegistration(registration_id=m.registration_id, creation_options_json=m.creation_options_json,
                                 expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _device_list(m: pb.DeviceList) -> t.DeviceList:
    return t.DeviceList(devices=tuple(_device(d) for d in m.devices), lockout_risk=m.lockout_risk)


def _lockout(m: pb.Lockout) -> t.Lockout:
    return t.Lockout(username=m.username, locked=m.locked, locked_until=_time(m.locked_until, m.HasField("locked_until")),
                     hard_locked=m.hard_locked, consecutive_failures=m.consecutive_failures, lockouts=m.lockouts)


def _recovery(m: pb.RecoveryStatus) -> t.RecoveryStatus:
    return t.RecoveryStatus(codes_left=m.codes_left, created_at=_time(m.created_at, m.HasField("created_at")),
                            last_used_at=_time(m.last_used_at, m.HasField("last_used_at")))


def _policy(m: pb.Policy) -> t.Policy:
    return t.Policy(mfa_required=_MFA_BACK.get(m.mfa_required), allowed_methods=_methods(m.allowed_methods),
                    self_service=m.self_service, remember_device=m.remember_device, remember_days=m.remember_days,
                    sensitive_reauth_seconds=m.sensitive_reauth_seconds,
                    require_backup_method=m.require_backup_method,
                    enrolment_proof=_PROOF_BACK.get(m.enrolment_proof, t.EnrolmentProof.NONE),
                    email_recovery=m.email_recovery,
                    roles_need_passkey=m.roles_need_passkey, approval_hold=m.approval_hold,
                    approval_with_totp=m.approval_with_totp,
                    approval_email_notice=m.approval_email_notice)


def _rule(m: pb.PolicyRule) -> t.PolicyRule:
    return t.PolicyRule(
        name=m.name, groups=tuple(m.groups), clients=tuple(m.clients),
        mfa_required=_MFA_BACK.get(m.mfa_required) if m.HasField("mfa_required") else None,
        allowed_methods=_methods(m.allowed_methods.methods) if m.HasField("allowed_methods") else None,
        remember_device=m.remember_device if m.HasField("remember_device") else None,
        remember_days=m.remember_days if m.HasField("remember_days") else None)


def _rules(items: Iterable[pb.PolicyRule]) -> list[t.PolicyRule]:
    return [_rule(m) for m in items]


def _rule_fields(target: pb.PolicyRule | pb.UpdatePolicyRuleRequest, mfa_required: t.MfaRequired | None,
                 allowed_methods: Iterable[t.Method] | None, remember_device: bool | None,
                 remember_days: int | None) -> None:
    if mfa_required is not None:
        target.mfa_required = _MFA[mfa_required]
    if allowed_methods is not None:
        target.allowed_methods.CopyFrom(pb.MethodSet(methods=[_METHOD[m] for m in allowed_methods]))
    if remember_device is not None:
        target.remember_device = remember_device
    if remember_days is not None:
        target.remember_days = remember_days


def _provisioning(m: pb.TotpProvisioning) -> t.TotpProvisioning:
    return t.TotpProvisioning(device_id=m.device_id, otpauth_uri=m.otpauth_uri, secret_base32=m.secret_base32,
                              qr_png=m.qr_png, qr_svg=m.qr_svg, issuer=m.issuer, account_name=m.account_name,
                              digits=m.digits, period_seconds=m.period_seconds,
                              expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _session(m: pb.UserSession, present: bool) -> t.Session | None:
    if not present:
        return None
    return t.Session(token=m.token, scope=_SCOPE.get(m.scope), expires_at=_time(m.expires_at, m.HasField("expires_at")),
                     console_role=_STAFF_ROLE_BACK.get(m.console_role),
                     proof_owed=None if m.proof_owed in (pb.ENROLMENT_PROOF_UNSPECIFIED, pb.ENROLMENT_PROOF_NONE)
                     else _PROOF_BACK.get(m.proof_owed))


def _remembered_token(m: pb.RememberedToken, present: bool) -> t.RememberedToken | None:
    if not present:
        return None
    return t.RememberedToken(token=m.token, expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _challenge(m: pb.ChallengeDetails) -> t.ChallengeDetails:
    return t.ChallengeDetails(challenge_id=m.challenge_id, method=_METHOD_BACK.get(m.method),
                              approval_number=m.approval_number, approval_url=m.approval_url,
                              masked_email=m.masked_email,
                              resend_after=_time(m.resend_after, m.HasField("resend_after")),
                              request_options_json=m.request_options_json,
                              expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _audit(m: pb.AuditEvent) -> t.AuditEvent:
    return t.AuditEvent(id=m.id, at=_time(m.at, m.HasField("at")), event=m.event, outcome=m.outcome,
                        username=m.username, method=m.method, protocol=m.protocol, source=m.source, actor=m.actor,
                        reason=m.reason, detail=m.detail)


def _email_sent(m: pb.EmailCodeSent) -> t.EmailCodeSent:
    return t.EmailCodeSent(device_id=m.device_id, masked_email=m.masked_email,
                           resend_after=_time(m.resend_after, m.HasField("resend_after")),
                           expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _caller_token(m: pb.CallerToken) -> t.CallerToken:
    return t.CallerToken(id=m.id, name=m.name, role=_ROLE_BACK.get(m.role),
                         created_at=_time(m.created_at, m.HasField("created_at")), revoked=m.revoked,
                         expires_at=_time(m.expires_at, m.HasField("expires_at")))


def _remembered(items: Iterable[pb.RememberedDevice]) -> tuple[t.RememberedDevice, ...]:
    return tuple(t.RememberedDevice(id=r.id, label=r.label, created_at=_time(r.created_at, r.HasField("created_at")),
                                    last_used_at=_time(r.last_used_at, r.HasField("last_used_at")),
                                    expires_at=_time(r.expires_at, r.HasField("expires_at"))) for r in items)


def _client(info: t.ClientInfo | None) -> pb.ClientInfo | None:
    return None if info is None else pb.ClientInfo(ip=info.ip, user_agent=info.user_agent)


# --- the client ----------------------------------------------------------------------------
class _Calls:
    """Metadata, deadline and error translation shared by the facades."""

    def __init__(self, token: str | None, timeout: float) -> None:
        self._token = token
        self._timeout = timeout

    async def __call__(self, rpc: Callable[..., Awaitable[R]], request: Any, *, session: str | None = None) -> R:
        metadata: list[tuple[str, str]] = []
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        if session is not None:
            metadata.append(("x-mfad-session", session))
        try:
            return await rpc(request, metadata=tuple(metadata), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise error_for(exc.code(), exc.details()) from None

    async def stream(self, rpc: Callable[..., Any], request: Any, *, timeout: float) -> AsyncIterator[Any]:
        """A server-streaming call's messages, with its own deadline."""
        metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        try:
            async for message in rpc(request, metadata=metadata, timeout=timeout):
                yield message
        except grpc.aio.AioRpcError as exc:
            raise error_for(exc.code(), exc.details()) from None


class Authentication:
    """Signing users in (callers of any role)."""

    def __init__(self, stub: pb_grpc.AuthenticationStub, calls: _Calls) -> None:
        self._stub = stub
        self._call = calls

    async def begin_sign_in(self, username: str, password: str | None = None, *, remembered_token: str = "",
                            client: t.ClientInfo | None = None) -> t.SignIn:
        """``password=None`` means "checked by the caller" (service and admin callers only)."""
        request = pb.BeginSignInRequest(username=username, remembered_token=remembered_token, client=_client(client))
        if password is not None:
            request.password = password
        m = await self._call(self._stub.BeginSignIn, request)
        return t.SignIn(outcome=_SIGN_IN.get(m.outcome, t.SignInOutcome.REFUSED), challenge_id=m.challenge_id,
                        methods=_methods(m.methods),
                        challenge_expires_at=_time(m.challenge_expires_at, m.HasField("challenge_expires_at")),
                        session=_session(m.session, m.HasField("session")),
                        remembered=_remembered_token(m.remembered, m.HasField("remembered")), username=m.username,
                        remember_days=int(m.remember_days), masked_email=m.masked_email)

    async def start_challenge(self, challenge_id: str, method: t.Method, *,
                              client: t.ClientInfo | None = None) -> t.ChallengeDetails:
        m = await self._call(self._stub.StartChallenge, pb.StartChallengeRequest(
            challenge_id=challenge_id, method=_METHOD[method], client=_client(client)))
        return _challenge(m.challenge)

    async def watch_challenge(self, challenge_id: str, *, timeout_seconds: int = 0) -> AsyncIterator[t.ApprovalStatus]:
        """The challenge's approval now and at each change, until it is decided or expired (or
        ``timeout_seconds``, 0: the most mfad allows, runs out): no polling needed. After
        ``APPROVED``, ``complete_challenge(challenge_id, Method.APPROVAL)`` signs in."""
        request = pb.WatchChallengeRequest(challenge_id=challenge_id, timeout_seconds=timeout_seconds)
        # The deadline leaves the server room to end the stream itself.
        async for m in self._call.stream(self._stub.WatchChallenge, request,
                                          timeout=(timeout_seconds or 600) + 5.0):
            yield _APPROVAL_STATUS.get(m.status, t.ApprovalStatus.UNKNOWN)

    async def complete_challenge(self, challenge_id: str, method: t.Method, *, code: str | None = None,
                                 assertion_json: str | None = None, remember_device: bool = False,
                                 client: t.ClientInfo | None = None) -> t.Completion:
        request = pb.CompleteChallengeRequest(challenge_id=challenge_id, method=_METHOD[method],
                                              remember_device=remember_device, client=_client(client))
        if code is not None:
            request.code = code
        if assertion_json is not None:
            request.assertion_json = assertion_json
        m = await self._call(self._stub.CompleteChallenge, request)
        return t.Completion(outcome=_SIGN_IN.get(m.outcome, t.SignInOutcome.REFUSED), username=m.username,
                            session=_session(m.session, m.HasField("session")),
                            remembered=_remembered_token(m.remembered, m.HasField("remembered")))

    async def verify_code(self, username: str, code: str, *, method: t.Method = t.Method.TOTP,
                          client: t.ClientInfo | None = None) -> t.VerifyOutcome:
        """A TOTP code, or with ``method=Method.RECOVERY`` one of the user's recovery codes."""
        m = await self._call(self._stub.VerifyCode, pb.VerifyCodeRequest(
            username=username, code=code, method=_METHOD[method], client=_client(client)))
        return t.VerifyOutcome.ACCEPTED if m.outcome == pb.VERIFY_OUTCOME_ACCEPTED else t.VerifyOutcome.REFUSED

    async def verify_sensitive(self, *, operation: str, code: str | None = None, username: str = "",
                               session: str | None = None, method: t.Method = t.Method.TOTP,
                               challenge_id: str = "", assertion_json: str | None = None,
                               client: t.ClientInfo | None = None) -> t.StepUp:
        """Step up: with ``session`` the session records the fresh second factor. TOTP: one call
        with ``code``. Passkey, U2F key, email: a first call without proof answers
        CHALLENGE_STARTED (WebAuthn options or where the code went); the second call sends
        ``challenge_id`` with ``assertion_json`` (credential.toJSON()) or ``code``."""
        request = pb.VerifySensitiveRequest(username=username, operation=operation, method=_METHOD[method],
                                            challenge_id=challenge_id, client=_client(client))
        if code is not None:
            request.code = code
        if assertion_json is not None:
            request.assertion_json = assertion_json
        m = await self._call(self._stub.VerifySensitive, request, session=session)
        return t.StepUp(outcome=_STEP_UP.get(m.outcome, t.StepUpOutcome.REFUSED),
                        challenge=_challenge(m.challenge) if m.HasField("challenge") else None,
                        verified_at=_time(m.verified_at, m.HasField("verified_at")),
                        valid_until=_time(m.valid_until, m.HasField("valid_until")))


class Enrollment:
    """Self-service for the user whose session token is passed to each call (portal callers)."""

    def __init__(self, stub: pb_grpc.EnrollmentStub, calls: _Calls) -> None:
        self._stub = stub
        self._call = calls

    async def list_devices(self, session: str) -> t.DeviceList:
        return (await self.devices(session)).listing

    async def devices(self, session: str) -> t.Devices:
        """The listing with the policy's word on it (read-only when ``self_service`` is False)."""
        m = await self._call(self._stub.ListDevices, pb.ListDevicesRequest(), session=session)
        return t.Devices(listing=_device_list(m.devices), self_service=m.self_service,
                         allowed_methods=_methods(m.allowed_methods), emergency_session=m.emergency_session,
                         lost_device_ids=tuple(m.lost_device_ids), email_recovery=m.email_recovery)

    async def pending_approvals(self, session: str) -> tuple[t.PendingApproval, ...]:
        return (await self.approvals(session)).approvals

    async def approvals(self, session: str) -> t.PendingApprovals:
        """The session user's waiting sign-ins and how they may approve them."""
        m = await self._call(self._stub.ListPendingApprovals, pb.ListPendingApprovalsRequest(), session=session)
        pending = tuple(t.PendingApproval(id=a.id, client=a.client, source=a.source, protocol=a.protocol,
                                          created_at=_time(a.created_at, a.HasField("created_at")),
                                          expires_at=_time(a.expires_at, a.HasField("expires_at")),
                                          choices=tuple(a.choices), held=a.held) for a in m.approvals)
        return t.PendingApprovals(approvals=pending, proof_methods=_methods(m.proof_methods))

    async def approve(self, session: str, approval_id: str, number: int, *, challenge_id: str, assertion_json: str,
                      client: t.ClientInfo | None = None, code: str = "") -> t.ApprovalOutcome:
        """Approve a pending sign-in: the number its prompt shows and a passkey assertion for a
        step-up challenge of this session (``auth.verify_sensitive(..., operation="approve_signin")``).
        (``code`` is sent as well when given; mfad refuses a decision with both.)"""
        return await self._decide(session, pb.DecideApprovalRequest(
            approval_id=approval_id, decision=pb.APPROVAL_DECISION_APPROVE, number=number, challenge_id=challenge_id,
            assertion_json=assertion_json, client=_client(client), code=code))

    async def approve_with_code(self, session: str, approval_id: str, number: int, code: str, *,
                                client: t.ClientInfo | None = None) -> t.ApprovalOutcome:
        """Approve a pending sign-in with the number and a TOTP code (where the policy's
        ``approval_with_totp`` allows it; PERMISSION_DENIED otherwise)."""
        return await self._decide(session, pb.DecideApprovalRequest(
            approval_id=approval_id, decision=pb.APPROVAL_DECISION_APPROVE, number=number, code=code,
            client=_client(client)))

    async def deny(self, session: str, approval_id: str, *, client: t.ClientInfo | None = None) -> t.ApprovalOutcome:
        """"This wasn't me": the sign-in is refused."""
        return await self._decide(session, pb.DecideApprovalRequest(
            approval_id=approval_id, decision=pb.APPROVAL_DECISION_DENY, client=_client(client)))

    async def lock_account(self, session: str, *, client: t.ClientInfo | None = None) -> t.ApprovalOutcome:
        """After a denial: lock the account until an administrator resets the lock-out."""
        return await self._decide(session, pb.DecideApprovalRequest(
            decision=pb.APPROVAL_DECISION_LOCK_ACCOUNT, client=_client(client)))

    async def _decide(self, session: str, request: pb.DecideApprovalRequest) -> t.ApprovalOutcome:
        m = await self._call(self._stub.DecideApproval, request, session=session)
        return _APPROVAL_OUTCOME.get(m.outcome, t.ApprovalOutcome.REFUSED)

    async def end_session(self, session: str) -> None:
        """Sign-out: mfad refuses the session token from now on."""
        await self._call(self._stub.EndSession, pb.EndSessionRequest(), session=session)

    async def begin_totp_binding(self, session: str, name: str = DEFAULT_TOTP_NAME) -> t.TotpProvisioning:
        m = await self._call(self._stub.BeginTotpBinding, pb.BeginTotpBindingRequest(name=name), session=session)
        return _provisioning(m.provisioning)

    async def confirm_totp_binding(self, session: str, device_id: str, code: str,
                                   client: t.ClientInfo | None = None) -> tuple[t.Device, t.DeviceList]:
        bound = await self.confirm_totp(session, device_id, code, client)
        return bound.device, bound.listing

    async def confirm_totp(self, session: str, device_id: str, code: str,
                           client: t.ClientInfo | None = None) -> t.Bound:
        """As :meth:`confirm_totp_binding`, with the full session a first binding at sign-in earns."""
        m = await self._call(self._stub.ConfirmTotpBinding, pb.ConfirmTotpBindingRequest(
            device_id=device_id, code=code, client=_client(client)), session=session)
        return t.Bound(device=_device(m.device), listing=_device_list(m.devices),
                       session=_session(m.session, m.HasField("session")))

    async def unbind(self, session: str, device_id: str, client: t.ClientInfo | None = None) -> t.DeviceList:
        m = await self._call(self._stub.Unbind, pb.UnbindRequest(device_id=device_id, client=_client(client)),
                             session=session)
        return _device_list(m.devices)

    async def generate_recovery_codes(self, session: str, client: t.ClientInfo | None = None) -> t.RecoveryCodes:
        """A new set replacing the old one (needs a fresh second factor: FailedPrecondition otherwise)."""
        m = await self._call(self._stub.GenerateRecoveryCodes, pb.GenerateRecoveryCodesRequest(
            client=_client(client)), session=session)
        return t.RecoveryCodes(codes=tuple(m.codes), status=_recovery(m.status))

    async def recovery_status(self, session: str) -> t.RecoveryStatus:
        m = await self._call(self._stub.GetRecoveryStatus, pb.GetRecoveryStatusRequest(), session=session)
        return _recovery(m.status)

    async def start_enrolment_proof(self, session: str,
                                    client: t.ClientInfo | None = None) -> t.EnrolmentProofStarted:
        """What the enrolment session owes; for an email code, the code is mailed now."""
        m = await self._call(self._stub.StartEnrolmentProof, pb.StartEnrolmentProofRequest(client=_client(client)),
                             session=session)
        return t.EnrolmentProofStarted(proof=_PROOF_BACK.get(m.proof, t.EnrolmentProof.NONE),
                                       masked_email=m.masked_email,
                                       expires_at=_time(m.expires_at, m.HasField("expires_at")))

    async def present_enrolment_proof(self, session: str, code: str, client: t.ClientInfo | None = None) -> bool:
        """The enrolment code or the mailed code; True: the session may now bind a first device."""
        m = await self._call(self._stub.PresentEnrolmentProof, pb.PresentEnrolmentProofRequest(
            code=code, client=_client(client)), session=session)
        return m.accepted

    async def list_remembered(self, session: str) -> tuple[t.RememberedDevice, ...]:
        m = await self._call(self._stub.ListRemembered, pb.ListRememberedRequest(), session=session)
        return _remembered(m.remembered)

    async def revoke_remembered(self, session: str, remembered_id: str = "", *, all: bool = False) -> int:
        m = await self._call(self._stub.RevokeRemembered, pb.RevokeRememberedRequest(id=remembered_id, all=all),
                             session=session)
        return int(m.revoked)

    async def begin_email_binding(self, session: str, address: str,
                                  client: t.ClientInfo | None = None) -> t.EmailCodeSent:
        m = await self._call(self._stub.BeginEmailBinding, pb.BeginEmailBindingRequest(
            address=address, client=_client(client)), session=session)
        return _email_sent(m.sent)

    async def confirm_email_binding(self, session: str, device_id: str, code: str,
                                    client: t.ClientInfo | None = None) -> tuple[t.Device, t.DeviceList]:
        m = await self._call(self._stub.ConfirmEmailBinding, pb.ConfirmEmailBindingRequest(
            device_id=device_id, code=code, client=_client(client)), session=session)
        return _device(m.device), _device_list(m.devices)

    async def begin_passkey_binding(self, session: str, name: str) -> t.PasskeyRegistration:
        m = await self._call(self._stub.BeginPasskeyBinding, pb.BeginPasskeyBindingRequest(name=name),
                             session=session)
        return _registration(m.registration)

    async def complete_passkey_binding(self, session: str, registration_id: str, credential_json: str,
                                       client: t.ClientInfo | None = None) -> tuple[t.Device, t.DeviceList]:
        bound = await self.complete_passkey(session, registration_id, credential_json, client)
        return bound.device, bound.listing

    async def complete_passkey(self, session: str, registration_id: str, credential_json: str,
                               client: t.ClientInfo | None = None) -> t.Bound:
        """As :meth:`complete_passkey_binding`, with the full session a first binding at sign-in earns."""
        m = await self._call(self._stub.CompletePasskeyBinding, pb.CompletePasskeyBindingRequest(
            registration_id=registration_id, credential_json=credential_json, client=_client(client)),
            session=session)
        return t.Bound(device=_device(m.device), listing=_device_list(m.devices),
                       session=_session(m.session, m.HasField("session")))

    async def begin_u2f_upgrade(self, session: str, device_id: str, name: str = "") -> t.PasskeyRegistration:
        m = await self._call(self._stub.BeginU2FUpgrade, pb.BeginU2FUpgradeRequest(device_id=device_id, name=name),
                             session=session)
        return _registration(m.registration)

    async def complete_u2f_upgrade(self, session: str, registration_id: str, credential_json: str,
                                   client: t.ClientInfo | None = None) -> tuple[t.Device, str, t.DeviceList]:
        """The new passkey, the id of the U2F key it retired, and the listing after."""
        m = await self._call(self._stub.CompleteU2FUpgrade, pb.CompleteU2FUpgradeRequest(
            registration_id=registration_id, credential_json=credential_json, client=_client(client)),
            session=session)
        return _device(m.device), m.retired_device_id, _device_list(m.devices)


class Admin:
    """Administration: as an admin caller, or (``MfadClient.admin_as``) as a portal caller for
    the console user whose session each call carries (their role decides)."""

    def __init__(self, stub: pb_grpc.AdminStub, calls: _Calls, session: str | None = None) -> None:
        self._stub = stub
        self._calls = calls
        self._session = session

    async def _call(self, rpc: Callable[..., Awaitable[R]], request: Any) -> R:
        return await self._calls(rpc, request, session=self._session)

    # console users
    async def console_access(self) -> t.ConsoleAccess:
        """The session user's role and what it allows (for ``admin_as`` facades)."""
        m = await self._call(self._stub.GetConsoleAccess, pb.GetConsoleAccessRequest())
        return t.ConsoleAccess(username=m.username, role=_STAFF_ROLE_BACK.get(m.role),
                               permissions=frozenset(m.permissions))

    async def overview(self) -> t.Overview:
        m = await self._call(self._stub.GetOverview, pb.GetOverviewRequest())
        return t.Overview(users=m.users, users_without_mfa=m.users_without_mfa,
                          users_at_lockout_risk=m.users_at_lockout_risk, users_locked=m.users_locked,
                          failed_sign_ins_24h=m.failed_sign_ins_24h, outbox_depth=m.outbox_depth,
                          outbox_oldest=_time(m.outbox_oldest, m.HasField("outbox_oldest")))

    async def set_role(self, username: str, role: t.StaffRole | None) -> t.User:
        """Give a console role, or take it away (None)."""
        m = await self._call(self._stub.SetUserRole, pb.SetUserRoleRequest(
            username=username, role=_STAFF_ROLE[role] if role else pb.USER_ROLE_UNSPECIFIED))
        return _user(m.user)

    # users
    async def create_user(self, username: str, password: str | None = None) -> t.User:
        request = pb.CreateUserRequest(username=username)
        if password is not None:
            request.password = password
        return _user((await self._call(self._stub.CreateUser, request)).user)

    async def list_users(self, *, page_size: int = 0, page_token: str = "", prefix: str = "") -> t.UserPage:
        m = await self._call(self._stub.ListUsers, pb.ListUsersRequest(
            page_size=page_size, page_token=page_token, username_prefix=prefix))
        return t.UserPage(users=tuple(_user(u) for u in m.users), next_page_token=m.next_page_token)

    async def get_user(self, username: str) -> t.UserDetails:
        m = await self._call(self._stub.GetUser, pb.GetUserRequest(username=username))
        return t.UserDetails(user=_user(m.user), devices=_device_list(m.devices), lockout=_lockout(m.lockout))

    async def disable_user(self, username: str, reason: str = "") -> t.User:
        return _user((await self._call(self._stub.DisableUser,
                                       pb.DisableUserRequest(username=username, reason=reason))).user)

    async def prune_directory_users(self, directory: str = "", *, disable: bool = False) -> list[t.StaleDirectoryUser]:
        reply = await self._call(self._stub.PruneDirectoryUsers,
                                 pb.PruneDirectoryUsersRequest(directory=directory, disable=disable))
        return [t.StaleDirectoryUser(username=u.username, directory=u.directory, why=u.why, disabled=u.disabled)
                for u in reply.users]

    async def enable_user(self, username: str, reason: str = "") -> t.User:
        return _user((await self._call(self._stub.EnableUser,
                                       pb.EnableUserRequest(username=username, reason=reason))).user)

    async def import_totp(self, username: str, secret: bytes, *, digits: int = 6, period: int = 30,
                          algorithm: str = "SHA1", name: str = "", origin: str = "") -> t.Device:
        """A TOTP device from another system, active at once."""
        m = await self._call(self._stub.ImportTotp, pb.ImportTotpRequest(
            username=username, secret=secret, digits=digits, period=period, algorithm=algorithm, name=name,
            origin=origin))
        return _device(m.device)

    async def delete_user(self, username: str, reason: str = "") -> int:
        """Delete a user with their devices, sessions and remembered devices; returns the devices removed."""
        return int((await self._call(self._stub.DeleteUser,
                                     pb.DeleteUserRequest(username=username, reason=reason))).devices_removed)

    async def set_password(self, username: str, password: str) -> int:
        """Returns how many remembered devices the change revoked."""
        m = await self._call(self._stub.SetPassword, pb.SetPasswordRequest(username=username, password=password))
        return int(m.remembered_revoked)

    # devices
    async def list_devices(self, username: str) -> t.DeviceList:
        m = await self._call(self._stub.ListDevices, pb.AdminListDevicesRequest(username=username))
        return _device_list(m.devices)

    async def unbind_device(self, username: str, device_id: str, reason: str = "") -> t.DeviceList:
        m = await self._call(self._stub.UnbindDevice, pb.UnbindDeviceRequest(
            username=username, device_id=device_id, reason=reason))
        return _device_list(m.devices)

    async def bind_totp(self, username: str, name: str = DEFAULT_TOTP_NAME) -> t.TotpProvisioning:
        m = await self._call(self._stub.BindTotp, pb.BindTotpRequest(username=username, name=name))
        return _provisioning(m.provisioning)

    async def confirm_totp(self, username: str, device_id: str, code: str) -> tuple[t.Device, t.DeviceList]:
        m = await self._call(self._stub.ConfirmTotp, pb.ConfirmTotpRequest(
            username=username, device_id=device_id, code=code))
        return _device(m.device), _device_list(m.devices)

    async def bind_email(self, username: str, address: str) -> t.EmailCodeSent:
        m = await self._call(self._stub.BindEmail, pb.BindEmailRequest(username=username, address=address))
        return replace(_email_sent(m.sent), accepted=m.accepted)

    async def confirm_email(self, username: str, device_id: str, code: str) -> tuple[t.Device, t.DeviceList]:
        m = await self._call(self._stub.ConfirmEmail, pb.ConfirmEmailRequest(
            username=username, device_id=device_id, code=code))
        return _device(m.device), _device_list(m.devices)

    async def import_u2f(self, username: str, *, key_handle: bytes, public_key: bytes, app_id: str,
                         counter: int = 0, name: str = "") -> tuple[t.Device, t.DeviceList]:
        """Import a legacy U2F registration (key handle, 65-byte public key, AppID, counter)."""
        m = await self._call(self._stub.ImportU2F, pb.ImportU2FRequest(
            username=username, name=name, key_handle=key_handle, public_key=public_key, app_id=app_id,
            counter=counter))
        return _device(m.device), _device_list(m.devices)

    # policy
    async def get_policy(self) -> t.Policy:
        return _policy((await self._call(self._stub.GetPolicy, pb.GetPolicyRequest())).policy)

    async def set_policy(self, *, mfa_required: t.MfaRequired | None = None,
                         allowed_methods: Iterable[t.Method] | None = None, self_service: bool | None = None,
                         remember_device: bool | None = None, remember_days: int | None = None,
                         sensitive_reauth_seconds: int | None = None,
                         require_backup_method: bool | None = None,
                         enrolment_proof: t.EnrolmentProof | None = None, email_recovery: bool | None = None,
                         roles_need_passkey: bool | None = None, approval_hold: bool | None = None,
                         approval_with_totp: bool | None = None,
                         approval_email_notice: bool | None = None) -> t.Policy:
        """Change the given fields; the others keep their values."""
        request = pb.SetPolicyRequest()
        if enrolment_proof is not None:
            request.enrolment_proof = _PROOF[enrolment_proof]
        if mfa_required is not None:
            request.mfa_required = _MFA[mfa_required]
        if allowed_methods is not None:
            request.allowed_methods.CopyFrom(pb.MethodSet(methods=[_METHOD[m] for m in allowed_methods]))
        optional: Mapping[str, bool | int | None] = {
            "self_service": self_service, "remember_device": remember_device, "remember_days": remember_days,
            "sensitive_reauth_seconds": sensitive_reauth_seconds, "require_backup_method": require_backup_method,
            "email_recovery": email_recovery, "roles_need_passkey": roles_need_passkey,
            "approval_hold": approval_hold,
            "approval_with_totp": approval_with_totp, "approval_email_notice": approval_email_notice}
        for name, value in optional.items():
            if value is not None:
                setattr(request, name, value)
        return _policy((await self._call(self._stub.SetPolicy, request)).policy)

    # group rules
    async def list_policy_rules(self) -> list[t.PolicyRule]:
        return _rules((await self._call(self._stub.ListPolicyRules, pb.ListPolicyRulesRequest())).rules)

    async def get_policy_rule(self, name: str) -> tuple[int, t.PolicyRule]:
        """The rule and its position (0: evaluated first); NotFound."""
        m = await self._call(self._stub.GetPolicyRule, pb.GetPolicyRuleRequest(name=name))
        return m.position, _rule(m.rule)

    async def add_policy_rule(self, rule: t.PolicyRule, *, position: int | None = None) -> list[t.PolicyRule]:
        """Add a rule (last, or at ``position``); AlreadyExists when the name is taken."""
        m = pb.PolicyRule(name=rule.name, groups=list(rule.groups), clients=list(rule.clients))
        _rule_fields(m, rule.mfa_required, rule.allowed_methods, rule.remember_device, rule.remember_days)
        request = pb.AddPolicyRuleRequest(rule=m)
        if position is not None:
            request.position = position
        return _rules((await self._call(self._stub.AddPolicyRule, request)).rules)

    async def update_policy_rule(self, name: str, *, groups: Iterable[str] | None = None,
                                 clients: Iterable[str] | None = None, mfa_required: t.MfaRequired | None = None,
                                 allowed_methods: Iterable[t.Method] | None = None,
                                 remember_device: bool | None = None, remember_days: int | None = None,
                                 inherit: Iterable[str] = ()) -> list[t.PolicyRule]:
        """Change the given fields; ``inherit`` names fields that go back to the global value."""
        request = pb.UpdatePolicyRuleRequest(name=name, inherit=list(inherit))
        if groups is not None:
            request.groups.CopyFrom(pb.NameList(names=list(groups)))
        if clients is not None:
            request.clients.CopyFrom(pb.NameList(names=list(clients)))
        _rule_fields(request, mfa_required, allowed_methods, remember_device, remember_days)
        return _rules((await self._call(self._stub.UpdatePolicyRule, request)).rules)

    async def move_policy_rule(self, name: str, position: int) -> list[t.PolicyRule]:
        request = pb.MovePolicyRuleRequest(name=name, position=position)
        return _rules((await self._call(self._stub.MovePolicyRule, request)).rules)

    async def delete_policy_rule(self, name: str) -> list[t.PolicyRule]:
        request = pb.DeletePolicyRuleRequest(name=name)
        return _rules((await self._call(self._stub.DeletePolicyRule, request)).rules)

    # lock-outs and audit
    async def get_lockout(self, username: str) -> t.Lockout:
        return _lockout((await self._call(self._stub.GetLockout, pb.GetLockoutRequest(username=username))).lockout)

    async def recovery_status(self, username: str) -> t.RecoveryStatus:
        m = await self._call(self._stub.GetUserRecoveryStatus, pb.GetUserRecoveryStatusRequest(username=username))
        return _recovery(m.status)

    async def issue_enrolment_code(self, username: str, hours: int = 0) -> t.EnrolmentCode:
        """A one-time enrolment code for ``username`` (0 hours: 24), shown once; replaces an older one."""
        m = await self._call(self._stub.IssueEnrolmentCode, pb.IssueEnrolmentCodeRequest(username=username,
                                                                                         hours=hours))
        return t.EnrolmentCode(code=m.code, expires_at=_time(m.expires_at, m.HasField("expires_at")),
                               replaced=m.replaced)

    async def reset_lockout(self, username: str) -> t.Lockout:
        m = await self._call(self._stub.ResetLockout, pb.ResetLockoutRequest(username=username))
        return _lockout(m.lockout)

    async def query_audit(self, *, username: str = "", event: str = "", outcome: str = "",
                          since: datetime | None = None, until: datetime | None = None, page_size: int = 0,
                          page_token: str = "") -> t.AuditPage:
        request = pb.QueryAuditRequest(username=username, event=event, outcome=outcome, page_size=page_size,
                                       page_token=page_token)
        if since is not None:
            request.since.CopyFrom(_ts(since))
        if until is not None:
            request.until.CopyFrom(_ts(until))
        m = await self._call(self._stub.QueryAudit, request)
        return t.AuditPage(events=tuple(_audit(e) for e in m.events), next_page_token=m.next_page_token)

    # caller tokens
    async def create_caller_token(self, name: str, role: t.Role, *,
                                  expires_at: datetime | None = None) -> t.NewCallerToken:
        request = pb.CreateCallerTokenRequest(name=name, role=_ROLE[role])
        if expires_at is not None:
            request.expires_at.CopyFrom(_ts(expires_at))
        m = await self._call(self._stub.CreateCallerToken, request)
        return t.NewCallerToken(caller_token=_caller_token(m.caller_token), token=m.token)

    async def list_caller_tokens(self, *, include_revoked: bool = False) -> tuple[t.CallerToken, ...]:
        m = await self._call(self._stub.ListCallerTokens, pb.ListCallerTokensRequest(include_revoked=include_revoked))
        return tuple(_caller_token(c) for c in m.caller_tokens)

    async def revoke_caller_token(self, name: str) -> t.CallerToken:
        m = await self._call(self._stub.RevokeCallerToken, pb.RevokeCallerTokenRequest(name=name))
        return _caller_token(m.caller_token)

    # remembered devices
    async def list_remembered(self, username: str) -> tuple[t.RememberedDevice, ...]:
        m = await self._call(self._stub.ListUserRemembered, pb.ListUserRememberedRequest(username=username))
        return _remembered(m.remembered)

    async def revoke_remembered(self, username: str, remembered_id: str = "", *, all: bool = False) -> int:
        m = await self._call(self._stub.RevokeUserRemembered, pb.RevokeUserRememberedRequest(
            username=username, id=remembered_id, all=all))
        return int(m.revoked)


class MfadClient:
    """A connection to mfad. Use as ``async with``, or call :meth:`close`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, token: str | None = None, tls: TlsFiles | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        options: list[tuple[str, Any]] = [("grpc.enable_retries", 0)]
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.aio.secure_channel(address, tls.credentials(), options=options)
        calls = _Calls(token, timeout)
        self._calls = calls
        self.address = address
        self.auth = Authentication(pb_grpc.AuthenticationStub(self._channel), calls)
        self.enrollment = Enrollment(pb_grpc.EnrollmentStub(self._channel), calls)
        self.admin = Admin(pb_grpc.AdminStub(self._channel), calls)

    def admin_as(self, session: str) -> Admin:
        """Admin calls made for the console user signed in with ``session`` (portal callers)."""
        return Admin(pb_grpc.AdminStub(self._channel), self._calls, session)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> MfadClient:
        """``MFAD_ADDR``, ``MFAD_TOKEN`` and ``MFAD_TLS_CA``/``_CERT``/``_KEY``/``_SERVER_NAME``."""
        env = os.environ if env is None else env
        tls = None
        if any(env.get(f"MFAD_TLS_{k}") for k in ("CA", "CERT", "KEY")):
            tls = TlsFiles(ca=_path(env.get("MFAD_TLS_CA")), cert=_path(env.get("MFAD_TLS_CERT")),
                           key=_path(env.get("MFAD_TLS_KEY")), server_name=env.get("MFAD_TLS_SERVER_NAME") or None)
        kwargs: dict[str, Any] = {"token": env.get("MFAD_TOKEN") or None, "tls": tls}
        kwargs.update(overrides)
        return cls(env.get("MFAD_ADDR") or DEFAULT_ADDRESS, **kwargs)

    async def ready(self, timeout: float = 2.0) -> bool:
        """Whether mfad says it is serving (the standard gRPC health service; no credentials)."""
        # The published stubs declare no methods on HealthStub (they are set in its __init__).
        check: Callable[..., Awaitable[health_pb2.HealthCheckResponse]] = getattr(
            health_pb2_grpc.HealthStub(self._channel), "Check")
        try:
            reply = await check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> MfadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
