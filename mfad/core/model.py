"""The domain's vocabulary: ids, enums and the immutable records the store returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType

UserId = NewType("UserId", int)
DeviceId = NewType("DeviceId", int)


class Method(StrEnum):
    PASSKEY = "passkey"
    TOTP = "totp"
    EMAIL = "email"
    U2F = "u2f"
    #: One-time recovery codes: the user's own way back when the device is lost.
    RECOVERY = "recovery"
    #: Out-of-band approval of a sign-in on the portal's Approve sign-in page, with a fresh
    #: passkey assertion and number matching (docs/approval.md). Not a device: a user may use
    #: it while they hold an active passkey.
    APPROVAL = "approval"


#: Security level per method (the product rules): passkey highest, email lowest.
SECURITY_LEVEL: dict[Method, int] = {
    Method.PASSKEY: 3,
    Method.TOTP: 2,
    Method.U2F: 2,
    Method.EMAIL: 1,
    # A printed list is something you have, like a mailbox's code: the lowest level.
    Method.RECOVERY: 1,
    # Proven by a passkey assertion with user verification, on the user's own device.
    Method.APPROVAL: 3,
}

#: Methods a user may bind while signing in for the first time (never email).
ENROLMENT_METHODS: frozenset[Method] = frozenset({Method.PASSKEY, Method.TOTP})

#: Methods of which a user may hold at most one device.
SINGLE_DEVICE_METHODS: frozenset[Method] = frozenset({Method.TOTP, Method.EMAIL, Method.RECOVERY})

#: Methods whose response can be typed at a prompt (RADIUS, VerifyCode).
TYPED_METHODS: frozenset[Method] = frozenset({Method.TOTP, Method.EMAIL, Method.RECOVERY})


class DeviceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"


class MfaRequired(StrEnum):
    ALL = "all"
    ENROLLED = "enrolled"
    OFF = "off"


class EnrolmentProof(StrEnum):
    """What a user with no device must present before binding the first one at sign-in."""

    NONE = "none"  # the first factor alone (the password)
    ACCESS_CODE = "access_code"  # a one-time enrolment code an administrator issued
    EMAIL_CODE = "email_code"  # a code mailed to the user's security or profile email


class Role(StrEnum):
    ADMIN = "admin"
    SERVICE = "service"
    PORTAL = "portal"


class StaffRole(StrEnum):
    """What a user may do in the administrators' console (their own session calls Admin)."""

    ADMIN = "admin"
    HELPDESK = "helpdesk"
    AUDITOR = "auditor"


class HashAlgorithm(StrEnum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: UserId
    username: str
    disabled: bool
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)
    #: A console role (None: an ordinary user).
    role: StaffRole | None = None
    #: The directory that provisioned the user (``[[directory.*]]`` name); None: a local user.
    directory: str | None = None
    #: Profile data as the directory last told it (never a security email).
    display_name: str | None = None
    profile_email: str | None = None
    #: Directory groups as of the last directory sign-in (policy rules match them).
    groups: tuple[str, ...] = ()

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpParams:
    digits: int = 6
    period: int = 30
    algorithm: HashAlgorithm = HashAlgorithm.SHA1


@dataclass(frozen=True, slots=True, kw_only=True)
class WebauthnInfo:
    """What a passkey or U2F device shows (kept in ``devices.data``); no key material."""

    credential_id: str  # base64url
    #: BE flag: the credential may be synced to other devices.
    backup_eligible: bool = False
    #: BS flag as last seen: the credential is synced now.
    backup_state: bool = False
    #: Lower-case UUID when the authenticator told it (attested), else None.
    aaguid: str | None = None
    #: U2F: the AppID it was registered under (sent as the ``appid`` extension).
    app_id: str | None = None
    transports: tuple[str, ...] = ()
    #: The attestation statement format seen at registration ("none" when not asked).
    attestation: str | None = None
    #: credProps.rk as the browser reported it (None: not reported).
    discoverable: bool | None = None

    def to_json(self) -> str:
        import json

        return json.dumps({"credential_id": self.credential_id, "backup_eligible": self.backup_eligible,
                           "backup_state": self.backup_state, "aaguid": self.aaguid, "app_id": self.app_id,
                           "transports": list(self.transports), "attestation": self.attestation,
                           "discoverable": self.discoverable}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WebauthnInfo:
        import json

        d = json.loads(text)
        return cls(credential_id=str(d["credential_id"]), backup_eligible=bool(d.get("backup_eligible")),
                   backup_state=bool(d.get("backup_state")), aaguid=d.get("aaguid"), app_id=d.get("app_id"),
                   transports=tuple(d.get("transports") or ()), attestation=d.get("attestation"),
                   discoverable=d.get("discoverable"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    id: DeviceId
    user_id: UserId
    method: Method
    name: str
    state: DeviceState
    created_at: datetime
    confirmed_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    #: AES-GCM sealed secret (TOTP key); never the clear secret.
    sealed_secret: str | None = field(default=None, repr=False)
    totp: TotpParams | None = None
    #: Highest TOTP step ever accepted (the replay guard); -1 before the first.
    last_step: int = -1
    #: Remembered clock drift of the authenticator, in steps.
    drift: int = 0
    #: Passkey and U2F devices: their WebAuthn details.
    webauthn: WebauthnInfo | None = None
    #: Security email: the bound (or pending) address, ASCII, never the profile email.
    email: str | None = None

    @property
    def security_level(self) -> int:
        return SECURITY_LEVEL[self.method]

    @property
    def is_active(self) -> bool:
        return self.state is DeviceState.ACTIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    mfa_required: MfaRequired = MfaRequired.ALL
    allowed_methods: frozenset[Method] = frozenset(Method)
    self_service: bool = True
    remember_device: bool = False
    remember_days: int = 7
    sensitive_reauth_seconds: int = 300
    require_backup_method: bool = False
    enrolment_proof: EnrolmentProof = EnrolmentProof.NONE
    #: A session signed in with the security email (an emergency sign-in) may remove the
    #: user's devices; off: an administrator removes a lost device.
    email_recovery: bool = False
    #: Console roles (admin, helpdesk, auditor) work only in a session signed in with a
    #: passkey, and their sensitive changes need a passkey step-up.
    roles_need_passkey: bool = False
    #: RADIUS hold mode (docs/approval.md): an append/otp_only client with
    #: ``approval_hold_seconds`` may keep a request unanswered until it is approved. It
    #: gives up number matching; False forbids it everywhere.
    approval_hold: bool = True
    #: The Approve sign-in page may take a TOTP code instead of a passkey (docs/approval.md).
    approval_with_totp: bool = False
    #: Mail the user's security email that a sign-in waits for approval (a link, never an approval).
    approval_email_notice: bool = False

    def allows(self, method: Method) -> bool:
        return method in self.allowed_methods


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyRule:
    """One group rule on top of the global policy: it applies to a sign-in whose user is in
    one of ``groups`` (any, when empty) and which comes through one of ``clients`` (RADIUS
    client names or ``grpc``; any, when empty). Fields left None keep the global value.
    Rules are ordered; the first that matches wins."""

    name: str
    groups: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    mfa_required: MfaRequired | None = None
    allowed_methods: frozenset[Method] | None = None
    remember_device: bool | None = None
    remember_days: int | None = None

    def matches(self, groups: tuple[str, ...], client: str | None) -> bool:
        folded = {g.casefold() for g in groups}
        if self.groups and not any(g.casefold() in folded for g in self.groups):
            return False
        return not self.clients or (client is not None and client in self.clients)

    def apply(self, policy: Policy) -> Policy:
        return dataclasses.replace(
            policy,
            mfa_required=self.mfa_required if self.mfa_required is not None else policy.mfa_required,
            allowed_methods=self.allowed_methods if self.allowed_methods is not None else policy.allowed_methods,
            remember_device=policy.remember_device if self.remember_device is None else self.remember_device,
            remember_days=self.remember_days if self.remember_days is not None else policy.remember_days)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One row of the audit log. ``reason`` is for operators only, never for callers."""

    event: str
    outcome: str
    user_id: UserId | None = None
    username: str | None = None
    method: str | None = None
    protocol: str | None = None
    source: str | None = None
    reason: str | None = None
    actor: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    id: int
    at: datetime
    event: AuditEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitState:
    """A user's failure counters, shared by every method, protocol and instance."""

    failures: int = 0
    total_failures: int = 0
    lockouts: int = 0
    locked_until: datetime | None = None
    hard_locked: bool = False
    last_wrong_hash: str | None = None
    #: Failures from the current (user, source) pair since the user's last success.
    source_failures: int = 0
    source_blocked_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A sign-in in progress: the first factor passed, a second factor is owed."""

    id_hash: str
    user_id: UserId
    purpose: str
    methods: frozenset[Method]
    created_at: datetime
    expires_at: datetime
    tries_left: int
    source: str | None
    protocol: str
    consumed: bool = False
    #: What the first factor's upstream RADIUS server answered that the client's allow-list
    #: names ((attribute name, octets), opaque to the core): the final accept carries it.
    first_factor_reply: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RememberedDevice:
    series: str
    user_id: UserId
    label: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerToken:
    id: int
    name: str
    role: Role
    created_at: datetime
    revoked: bool
    #: None: never expires.
    expires_at: datetime | None = None

    def is_live(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)
