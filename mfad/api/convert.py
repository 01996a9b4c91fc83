"""Between mfad.v1 messages and the core's values: one table per vocabulary, no decisions.

Guarantee: every enum crosses the boundary through exactly one table here, so
an outcome the core adds without a mapping fails loudly (KeyError → INTERNAL)
instead of being sent as a wrong value; a zero (UNSPECIFIED) input value is
refused as InvalidInput naming the field unless the caller says what it means.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad.core.devices import DeviceListing, TotpBinding
from mfad.core.errors import InvalidInput
from mfad.core.model import (
    AuditRecord,
    CallerToken,
    Device,
    EnrolmentProof,
    DeviceId,
    DeviceState,
    LimitState,
    Method,
    MfaRequired,
    Policy,
    PolicyRule,
    RememberedDevice,
    Role,
    StaffRole,
    User,
)
from mfad.core.ports import RecoverySet
from mfad.core.sessions import SessionScope
from mfad.core.verification import ChallengeStarted, Outcome

METHOD_TO_PB: Mapping[Method, pb.Method] = {
    Method.TOTP: pb.METHOD_TOTP,
    Method.EMAIL: pb.METHOD_EMAIL,
    Method.PASSKEY: pb.METHOD_PASSKEY,
    Method.U2F: pb.METHOD_U2F,
    Method.RECOVERY: pb.METHOD_RECOVERY,
    Method.APPROVAL: pb.METHOD_APPROVAL,
}
METHOD_FROM_PB: Mapping[int, Method] = {v: k for k, v in METHOD_TO_PB.items()}

STATE_TO_PB: Mapping[DeviceState, pb.DeviceState] = {
    DeviceState.PENDING: pb.DEVICE_STATE_PENDING,
    DeviceState.ACTIVE: pb.DEVICE_STATE_ACTIVE,
}

OUTCOME_TO_PB: Mapping[Outcome, pb.SignInOutcome] = {
    Outcome.ALLOWED: pb.SIGN_IN_OUTCOME_ALLOWED,
    Outcome.SECOND_FACTOR_REQUIRED: pb.SIGN_IN_OUTCOME_SECOND_FACTOR_REQUIRED,
    Outcome.ENROLMENT_REQUIRED: pb.SIGN_IN_OUTCOME_ENROLMENT_REQUIRED,
    Outcome.REFUSED: pb.SIGN_IN_OUTCOME_REFUSED,
}

SCOPE_TO_PB: Mapping[SessionScope, pb.SessionScope] = {
    SessionScope.FULL: pb.SESSION_SCOPE_FULL,
    SessionScope.ENROLMENT: pb.SESSION_SCOPE_ENROLMENT,
}

ROLE_TO_PB: Mapping[Role, pb.Role] = {
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.SERVICE: pb.ROLE_SERVICE,
    Role.PORTAL: pb.ROLE_PORTAL,
}
ROLE_FROM_PB: Mapping[int, Role] = {v: k for k, v in ROLE_TO_PB.items()}

STAFF_ROLE_TO_PB: Mapping[StaffRole, pb.UserRole] = {
    StaffRole.ADMIN: pb.USER_ROLE_ADMIN,
    StaffRole.HELPDESK: pb.USER_ROLE_HELPDESK,
    StaffRole.AUDITOR: pb.USER_ROLE_AUDITOR,
}
STAFF_ROLE_FROM_PB: Mapping[int, StaffRole] = {v: k for k, v in STAFF_ROLE_TO_PB.items()}

MFA_REQUIRED_TO_PB: Mapping[MfaRequired, pb.MfaRequired] = {
    MfaRequired.ALL: pb.MFA_REQUIRED_ALL,
    MfaRequired.ENROLLED: pb.MFA_REQUIRED_ENROLLED,
    MfaRequired.OFF: pb.MFA_REQUIRED_OFF,
}
MFA_REQUIRED_FROM_PB: Mapping[int, MfaRequired] = {v: k for k, v in MFA_REQUIRED_TO_PB.items()}
ENROLMENT_PROOF_TO_PB: Mapping[EnrolmentProof, pb.EnrolmentProof] = {
    EnrolmentProof.NONE: pb.ENROLMENT_PROOF_NONE,
    EnrolmentProof.ACCESS_CODE: pb.ENROLMENT_PROOF_ACCESS_CODE,
    EnrolmentProof.EMAIL_CODE: pb.ENROLMENT_PROOF_EMAIL_CODE,
}
ENROLMENT_PROOF_FROM_PB: Mapping[int, EnrolmentProof] = {v: k for k, v in ENROLMENT_PROOF_TO_PB.items()}

_MAX_DEVICE_ID_DIGITS = 19  # a BIGINT
_E = TypeVar("_E")


def timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(UTC))
    return ts


def challenge_details(challenge_id: str, started: ChallengeStarted) -> pb.ChallengeDetails:
    """What a started challenge shows (StartChallenge, a two-call step-up): the core decided it all."""
    details = pb.ChallengeDetails(challenge_id=challenge_id, method=METHOD_TO_PB[started.method],
                                  expires_at=timestamp(started.expires_at),
                                  resend_after=timestamp(started.resend_after))
    if started.method is Method.EMAIL:
        details.masked_email = started.shown or ""
    elif started.method is Method.APPROVAL:
        details.approval_number = started.shown or ""
    elif started.shown is not None:
        details.request_options_json = started.shown
    return details


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _known(table: Mapping[int, _E], value: int, field: str, refusal: str) -> _E:
    """``table``'s value for the wire value ``value``; a value it lacks (UNSPECIFIED, or one
    from a newer client) is InvalidInput naming ``field``, with ``refusal`` as the reason."""
    found = table.get(value)
    if found is None:
        raise InvalidInput(field, refusal)
    return found


def method(value: int, field: str = "method") -> Method:
    return _known(METHOD_FROM_PB, value, field, "must name a method")


def role(value: int, field: str = "role") -> Role:
    return _known(ROLE_FROM_PB, value, field, "must be ROLE_ADMIN, ROLE_SERVICE or ROLE_PORTAL")


def staff_role(value: int, field: str = "role") -> StaffRole | None:
    """A user's console role; USER_ROLE_UNSPECIFIED is None (no role)."""
    if value == pb.USER_ROLE_UNSPECIFIED:
        return None
    return _known(STAFF_ROLE_FROM_PB, value, field,
                  "must be USER_ROLE_UNSPECIFIED, USER_ROLE_ADMIN, USER_ROLE_HELPDESK or USER_ROLE_AUDITOR")


def enrolment_proof(value: int, field: str = "enrolment_proof") -> EnrolmentProof:
    return _known(ENROLMENT_PROOF_FROM_PB, value, field,
                  "must be ENROLMENT_PROOF_NONE, ENROLMENT_PROOF_ACCESS_CODE or ENROLMENT_PROOF_EMAIL_CODE")


def mfa_required(value: int, field: str = "mfa_required") -> MfaRequired:
    return _known(MFA_REQUIRED_FROM_PB, value, field,
                  "must be MFA_REQUIRED_ALL, MFA_REQUIRED_ENROLLED or MFA_REQUIRED_OFF")


def device_id(text: str, field: str = "device_id") -> DeviceId:
    if not text:
        raise InvalidInput(field, "must not be empty")
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_DEVICE_ID_DIGITS:
        raise InvalidInput(field, "is not a device id")
    return DeviceId(int(text))


def client_ip(info: pb.ClientInfo) -> str | None:
    """The end user's address as the source for limits and audit; None when unknown."""
    if not info.ip:
        return None
    try:
        return str(ipaddress.ip_address(info.ip))
    except ValueError:
        raise InvalidInput("client.ip", "must be an IPv4 or IPv6 address") from None


def device(d: Device) -> pb.Device:
    w = d.webauthn
    return pb.Device(id=str(d.id), method=METHOD_TO_PB[d.method], name=d.name, state=STATE_TO_PB[d.state],
                     created_at=timestamp(d.created_at), last_used_at=timestamp(d.last_used_at),
                     security_level=d.security_level,
                     email=pb.EmailDetails(address=d.email) if d.email is not None else None,
                     u2f=pb.U2fDetails(app_id=w.app_id or "") if w and d.method is Method.U2F else None,
                     passkey=pb.PasskeyDetails(backup_eligible=w.backup_eligible, backup_state=w.backup_state,
                                               aaguid=w.aaguid or "")
                     if w and d.method is not Method.U2F else None)


def device_list(listing: DeviceListing) -> pb.DeviceList:
    newest_first = sorted(listing.devices, key=lambda d: (d.created_at, d.id), reverse=True)
    return pb.DeviceList(devices=[device(d) for d in newest_first], lockout_risk=listing.lockout_risk)


def totp_provisioning(binding: TotpBinding, *, issuer: str, account: str) -> pb.TotpProvisioning:
    params = binding.device.totp
    return pb.TotpProvisioning(
        device_id=str(binding.device.id), otpauth_uri=binding.uri, secret_base32=binding.secret_base32,
        qr_png=binding.qr_png, qr_svg=binding.qr_svg, issuer=issuer, account_name=account,
        digits=params.digits if params else 0, period_seconds=params.period if params else 0,
        expires_at=timestamp(binding.device.expires_at))


def user(u: User) -> pb.User:
    return pb.User(id=str(u.id), username=u.username, disabled=u.disabled, has_password=u.has_password,
                   created_at=timestamp(u.created_at),
                   role=STAFF_ROLE_TO_PB[u.role] if u.role else pb.USER_ROLE_UNSPECIFIED)


def policy(p: Policy) -> pb.Policy:
    return pb.Policy(mfa_required=MFA_REQUIRED_TO_PB[p.mfa_required],
                     allowed_methods=sorted(METHOD_TO_PB[m] for m in p.allowed_methods),
                     self_service=p.self_service, remember_device=p.remember_device,
                     remember_days=p.remember_days, sensitive_reauth_seconds=p.sensitive_reauth_seconds,
                     require_backup_method=p.require_backup_method,
                     enrolment_proof=ENROLMENT_PROOF_TO_PB[p.enrolment_proof], email_recovery=p.email_recovery,
                     roles_need_passkey=p.roles_need_passkey, approval_hold=p.approval_hold,
                     approval_with_totp=p.approval_with_totp,
                     approval_email_notice=p.approval_email_notice)


def policy_rule(r: PolicyRule) -> pb.PolicyRule:
    out = pb.PolicyRule(name=r.name, groups=list(r.groups), clients=list(r.clients))
    if r.mfa_required is not None:
        out.mfa_required = MFA_REQUIRED_TO_PB[r.mfa_required]
    if r.allowed_methods is not None:
        out.allowed_methods.methods.extend(sorted(METHOD_TO_PB[m] for m in r.allowed_methods))
    if r.remember_device is not None:
        out.remember_device = r.remember_device
    if r.remember_days is not None:
        out.remember_days = r.remember_days
    return out


def policy_rule_fields(m: pb.PolicyRule | pb.UpdatePolicyRuleRequest) -> dict[str, object]:
    """The rule fields a request sets (groups and clients of a PolicyRule are always set)."""
    fields: dict[str, object] = {}
    if isinstance(m, pb.PolicyRule):
        fields["groups"], fields["clients"] = tuple(m.groups), tuple(m.clients)
    else:
        for name in ("groups", "clients"):
            if m.HasField(name):
                fields[name] = tuple(getattr(m, name).names)
    if m.HasField("mfa_required"):
        fields["mfa_required"] = mfa_required(m.mfa_required)
    if m.HasField("allowed_methods"):
        fields["allowed_methods"] = frozenset(method(v, "allowed_methods.methods") for v in m.allowed_methods.methods)
    if m.HasField("remember_device"):
        fields["remember_device"] = m.remember_device
    if m.HasField("remember_days"):
        fields["remember_days"] = m.remember_days
    return fields


def lockout(username: str, state: LimitState, now: datetime) -> pb.Lockout:
    locked_now = state.locked_until is not None and state.locked_until > now
    return pb.Lockout(username=username, locked=state.hard_locked or locked_now,
                      locked_until=timestamp(state.locked_until) if locked_now else None,
                      hard_locked=state.hard_locked, consecutive_failures=state.failures, lockouts=state.lockouts)


def audit_event(r: AuditRecord) -> pb.AuditEvent:
    e = r.event
    return pb.AuditEvent(id=str(r.id), at=timestamp(r.at), event=e.event, outcome=e.outcome,
                         username=e.username or "", method=e.method or "", protocol=e.protocol or "",
                         source=e.source or "", actor=e.actor or "", reason=e.reason or "", detail=e.detail or "")


def caller_token(t: CallerToken) -> pb.CallerToken:
    return pb.CallerToken(id=str(t.id), name=t.name, role=ROLE_TO_PB[t.role], created_at=timestamp(t.created_at),
                          revoked=t.revoked, expires_at=timestamp(t.expires_at))


def recovery_status(found: RecoverySet | None) -> pb.RecoveryStatus:
    if found is None:
        return pb.RecoveryStatus(codes_left=0)
    return pb.RecoveryStatus(codes_left=found.codes_left, created_at=timestamp(found.created_at),
                             last_used_at=timestamp(found.last_used_at))


def remembered_devices(items: Iterable[RememberedDevice]) -> list[pb.RememberedDevice]:
    newest_first = sorted(items, key=lambda r: r.created_at, reverse=True)
    return [pb.RememberedDevice(id=r.series, label=r.label, created_at=timestamp(r.created_at),
                                last_used_at=timestamp(r.last_used_at), expires_at=timestamp(r.expires_at))
            for r in newest_first]
