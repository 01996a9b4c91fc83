"""The values the client returns: frozen dataclasses and string enums, no protobuf.

Times are aware UTC datetimes (None where the server sent none); ids are the
server's opaque strings. :func:`to_json` turns any of them into JSON-ready
data (``mfactl --json`` prints exactly that).
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Method(StrEnum):
    TOTP = "totp"
    EMAIL = "email"
    PASSKEY = "passkey"
    U2F = "u2f"
    RECOVERY = "recovery"
    APPROVAL = "approval"


class DeviceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"


class SignInOutcome(StrEnum):
    ALLOWED = "allowed"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    ENROLMENT_REQUIRED = "enrolment_required"
    REFUSED = "refused"


class VerifyOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


class StepUpOutcome(StrEnum):
    VERIFIED = "verified"
    CHALLENGE_STARTED = "challenge_started"
    REFUSED = "refused"


class Role(StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    PORTAL = "portal"


class StaffRole(StrEnum):
    """A user's console role (admin: everything; helpdesk: users and lost devices; auditor: read-only)."""

    ADMIN = "admin"
    HELPDESK = "helpdesk"
    AUDITOR = "auditor"


class MfaRequired(StrEnum):
    ALL = "all"
    ENROLLED = "enrolled"
    OFF = "off"


class EnrolmentProof(StrEnum):
    """What a user with no device must present before binding the first one."""

    NONE = "none"
    ACCESS_CODE = "access_code"
    EMAIL_CODE = "email_code"


class SessionScope(StrEnum):
    FULL = "full"
    ENROLMENT = "enrolment"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientInfo:
    """The end user's client as the caller saw it (for limits and the audit log)."""

    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: str
    username: str
    disabled: bool
    has_password: bool
    created_at: datetime | None
    #: The console role (None: an ordinary user).
    role: StaffRole | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleDirectoryUser:
    """A provisioned user the directory no longer knows ("unknown") or has disabled."""

    username: str
    directory: str
    why: str
    disabled: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleAccess:
    """The console as a signed-in user may see it: their role and what it allows."""

    username: str
    role: StaffRole | None
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True, slots=True, kw_only=True)
class PasskeyDetails:
    #: BE flag: the credential may be synced to other devices.
    backup_eligible: bool
    #: BS flag: it is synced now.
    backup_state: bool
    #: The authenticator model (lower-case UUID) when it told; "" otherwise.
    aaguid: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class U2fDetails:
    #: The AppID the legacy key was registered under.
    app_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    id: str
    method: Method | None
    name: str
    state: DeviceState | None
    created_at: datetime | None
    last_used_at: datetime | None
    security_level: int
    passkey: PasskeyDetails | None = None
    u2f: U2fDetails | None = None
    #: A security email's bound address ("" for other methods).
    email_address: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PasskeyRegistration:
    """A WebAuthn registration to finish in the browser: pass ``creation_options_json`` to
    ``PublicKeyCredential.parseCreationOptionsFromJSON`` and send ``credential.toJSON()`` back."""

    registration_id: str
    creation_options_json: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceList:
    devices: tuple[Device, ...]
    #: Fewer than two method types bound: losing one device locks the user out.
    lockout_risk: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Devices:
    """A session user's devices as Enrollment.ListDevices answers, with what the policy lets them do."""

    listing: DeviceList
    #: False: read-only; an administrator manages the devices.
    self_service: bool
    #: Strongest first.
    allowed_methods: tuple[Method, ...]
    #: The session signed in with the security email (an emergency sign-in).
    emergency_session: bool = False
    #: With ``emergency_session``: the devices presumed lost (their ids).
    lost_device_ids: tuple[str, ...] = ()
    #: The policy lets an emergency session remove devices (else an administrator does).
    email_recovery: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """A device bound, the listing after it, and — when it was the first device bound at
    sign-in with an enrolment session — the full session the sign-in has now earned."""

    device: Device
    listing: DeviceList
    session: Session | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockout:
    username: str
    locked: bool
    locked_until: datetime | None
    hard_locked: bool
    consecutive_failures: int
    lockouts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    """The console's overview counts."""

    users: int
    users_without_mfa: int
    users_at_lockout_risk: int
    users_locked: int
    failed_sign_ins_24h: int
    outbox_depth: int
    outbox_oldest: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryStatus:
    """A user's recovery codes: how many are left (0: no set), since when."""

    codes_left: int
    created_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryCodes:
    """A new set, shown once."""

    codes: tuple[str, ...]
    status: RecoveryStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDetails:
    user: User
    devices: DeviceList
    lockout: Lockout


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    mfa_required: MfaRequired | None
    allowed_methods: tuple[Method, ...]
    self_service: bool
    remember_device: bool
    remember_days: int
    sensitive_reauth_seconds: int
    require_backup_method: bool
    enrolment_proof: EnrolmentProof = EnrolmentProof.NONE
    email_recovery: bool = False
    roles_need_passkey: bool = False
    approval_hold: bool = True
    approval_with_totp: bool = False
    approval_email_notice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentCode:
    """A new one-time enrolment code, shown once."""

    code: str = field(repr=False)
    expires_at: datetime | None
    #: An unused older code was replaced.
    replaced: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrolmentProofStarted:
    """What an enrolment session must present; for an email code, where it went."""

    proof: EnrolmentProof
    masked_email: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRule:
    """A group rule on top of the global policy; None keeps the global value."""

    name: str
    groups: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    mfa_required: MfaRequired | None = None
    allowed_methods: tuple[Method, ...] | None = None
    remember_device: bool | None = None
    remember_days: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpProvisioning:
    """A pending TOTP device's secret: show it to the user once, never log it."""

    device_id: str
    otpauth_uri: str = field(repr=False)
    secret_base32: str = field(repr=False)
    qr_png: bytes = field(repr=False)
    qr_svg: str = field(repr=False)
    issuer: str
    account_name: str
    digits: int
    period_seconds: int
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailCodeSent:
    device_id: str
    masked_email: str
    resend_after: datetime | None
    expires_at: datetime | None
    #: Administrator binding only: the mail server accepted the message (else only queued).
    accepted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A user session token: send it with Enrollment calls. A secret."""

    token: str = field(repr=False)
    scope: SessionScope | None
    expires_at: datetime | None
    #: The user's console role when the session was issued (a hint: mfad checks it on every call).
    console_role: StaffRole | None = None
    #: An enrolment session: the proof it must present before binding (None: nothing owed).
    proof_owed: EnrolmentProof | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RememberedToken:
    """A "remember this device" token: keep it on the user's device; it rotates on use."""

    token: str = field(repr=False)
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignIn:
    outcome: SignInOutcome
    challenge_id: str = ""
    methods: tuple[Method, ...] = ()
    challenge_expires_at: datetime | None = None
    session: Session | None = None
    remembered: RememberedToken | None = None
    username: str = ""
    #: SECOND_FACTOR_REQUIRED: offer "remember this device" for so many days (0: the policy does not allow it).
    remember_days: int = 0
    #: SECOND_FACTOR_REQUIRED with email among the methods: where a code would go, masked.
    masked_email: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeDetails:
    challenge_id: str
    method: Method | None
    masked_email: str = ""
    resend_after: datetime | None = None
    request_options_json: str = ""
    expires_at: datetime | None = None
    #: Method APPROVAL: the number to show and the page where the user approves.
    approval_number: str = ""
    approval_url: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    outcome: SignInOutcome
    username: str = ""
    session: Session | None = None
    remembered: RememberedToken | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepUp:
    outcome: StepUpOutcome
    challenge: ChallengeDetails | None = None
    verified_at: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RememberedDevice:
    id: str
    label: str
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    id: str
    at: datetime | None
    event: str
    outcome: str
    username: str
    method: str
    protocol: str
    source: str
    actor: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPage:
    events: tuple[AuditEvent, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPage:
    users: tuple[User, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerToken:
    id: str
    name: str
    role: Role | None
    created_at: datetime | None
    revoked: bool
    #: None: never expires.
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCallerToken:
    caller_token: CallerToken
    #: The bearer token, shown once.
    token: str = field(repr=False)


def to_json(value: Any) -> Any:
    """JSON-ready data for any client value (secrets included: the caller asked for them)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingApproval:
    """A sign-in waiting for the user's approval (the Approve sign-in page)."""

    id: str
    #: The NAS (RADIUS client name) or service that asked.
    client: str
    #: The end client as the NAS told it, or the NAS's address.
    source: str
    protocol: str
    created_at: datetime | None
    expires_at: datetime | None
    #: Three numbers, one of them the one the sign-in's prompt shows (none when held).
    choices: tuple[int, ...]
    #: Hold mode: the NAS shows nothing, so there is no number; approve with the passkey alone.
    held: bool = False


class ApprovalStatus(StrEnum):
    """Where a challenge's approval stands (``watch_challenge``)."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    APPROVED = "approved"
    USED = "used"
    REFUSED = "refused"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingApprovals:
    """The Approve sign-in page's listing."""

    approvals: tuple[PendingApproval, ...]
    #: PASSKEY, and TOTP where the policy lets the page take a TOTP code.
    proof_methods: tuple[Method, ...]


class ApprovalOutcome(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    REFUSED = "refused"
    ACCOUNT_LOCKED = "account_locked"

