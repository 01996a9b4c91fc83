# mypy: disable-error-code=type-arg
import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_UNSPECIFIED: _ClassVar[Method]
    METHOD_TOTP: _ClassVar[Method]
    METHOD_EMAIL: _ClassVar[Method]
    METHOD_PASSKEY: _ClassVar[Method]
    METHOD_U2F: _ClassVar[Method]
    METHOD_RECOVERY: _ClassVar[Method]
    METHOD_APPROVAL: _ClassVar[Method]

class DeviceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATE_UNSPECIFIED: _ClassVar[DeviceState]
    DEVICE_STATE_PENDING: _ClassVar[DeviceState]
    DEVICE_STATE_ACTIVE: _ClassVar[DeviceState]

class SignInOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGN_IN_OUTCOME_UNSPECIFIED: _ClassVar[SignInOutcome]
    SIGN_IN_OUTCOME_ALLOWED: _ClassVar[SignInOutcome]
    SIGN_IN_OUTCOME_SECOND_FACTOR_REQUIRED: _ClassVar[SignInOutcome]
    SIGN_IN_OUTCOME_ENROLMENT_REQUIRED: _ClassVar[SignInOutcome]
    SIGN_IN_OUTCOME_REFUSED: _ClassVar[SignInOutcome]

class VerifyOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_OUTCOME_UNSPECIFIED: _ClassVar[VerifyOutcome]
    VERIFY_OUTCOME_ACCEPTED: _ClassVar[VerifyOutcome]
    VERIFY_OUTCOME_REFUSED: _ClassVar[VerifyOutcome]

class StepUpOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_UP_OUTCOME_UNSPECIFIED: _ClassVar[StepUpOutcome]
    STEP_UP_OUTCOME_VERIFIED: _ClassVar[StepUpOutcome]
    STEP_UP_OUTCOME_CHALLENGE_STARTED: _ClassVar[StepUpOutcome]
    STEP_UP_OUTCOME_REFUSED: _ClassVar[StepUpOutcome]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_SERVICE: _ClassVar[Role]
    ROLE_PORTAL: _ClassVar[Role]

class UserRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_ROLE_UNSPECIFIED: _ClassVar[UserRole]
    USER_ROLE_ADMIN: _ClassVar[UserRole]
    USER_ROLE_HELPDESK: _ClassVar[UserRole]
    USER_ROLE_AUDITOR: _ClassVar[UserRole]

class EnrolmentProof(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLMENT_PROOF_UNSPECIFIED: _ClassVar[EnrolmentProof]
    ENROLMENT_PROOF_NONE: _ClassVar[EnrolmentProof]
    ENROLMENT_PROOF_ACCESS_CODE: _ClassVar[EnrolmentProof]
    ENROLMENT_PROOF_EMAIL_CODE: _ClassVar[EnrolmentProof]

class MfaRequired(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MFA_REQUIRED_UNSPECIFIED: _ClassVar[MfaRequired]
    MFA_REQUIRED_ALL: _ClassVar[MfaRequired]
    MFA_REQUIRED_ENROLLED: _ClassVar[MfaRequired]
    MFA_REQUIRED_OFF: _ClassVar[MfaRequired]

class SessionScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_SCOPE_UNSPECIFIED: _ClassVar[SessionScope]
    SESSION_SCOPE_FULL: _ClassVar[SessionScope]
    SESSION_SCOPE_ENROLMENT: _ClassVar[SessionScope]

class ApprovalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATUS_UNSPECIFIED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_UNKNOWN: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_PENDING: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_APPROVED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_USED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_REFUSED: _ClassVar[ApprovalStatus]
    APPROVAL_STATUS_EXPIRED: _ClassVar[ApprovalStatus]

class ApprovalDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_DECISION_UNSPECIFIED: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_APPROVE: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_DENY: _ClassVar[ApprovalDecision]
    APPROVAL_DECISION_LOCK_ACCOUNT: _ClassVar[ApprovalDecision]

class ApprovalOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_OUTCOME_UNSPECIFIED: _ClassVar[ApprovalOutcome]
    APPROVAL_OUTCOME_APPROVED: _ClassVar[ApprovalOutcome]
    APPROVAL_OUTCOME_DENIED: _ClassVar[ApprovalOutcome]
    APPROVAL_OUTCOME_REFUSED: _ClassVar[ApprovalOutcome]
    APPROVAL_OUTCOME_ACCOUNT_LOCKED: _ClassVar[ApprovalOutcome]
METHOD_UNSPECIFIED: Method
METHOD_TOTP: Method
METHOD_EMAIL: Method
METHOD_PASSKEY: Method
METHOD_U2F: Method
METHOD_RECOVERY: Method
METHOD_APPROVAL: Method
DEVICE_STATE_UNSPECIFIED: DeviceState
DEVICE_STATE_PENDING: DeviceState
DEVICE_STATE_ACTIVE: DeviceState
SIGN_IN_OUTCOME_UNSPECIFIED: SignInOutcome
SIGN_IN_OUTCOME_ALLOWED: SignInOutcome
SIGN_IN_OUTCOME_SECOND_FACTOR_REQUIRED: SignInOutcome
SIGN_IN_OUTCOME_ENROLMENT_REQUIRED: SignInOutcome
SIGN_IN_OUTCOME_REFUSED: SignInOutcome
VERIFY_OUTCOME_UNSPECIFIED: VerifyOutcome
VERIFY_OUTCOME_ACCEPTED: VerifyOutcome
VERIFY_OUTCOME_REFUSED: VerifyOutcome
STEP_UP_OUTCOME_UNSPECIFIED: StepUpOutcome
STEP_UP_OUTCOME_VERIFIED: StepUpOutcome
STEP_UP_OUTCOME_CHALLENGE_STARTED: StepUpOutcome
STEP_UP_OUTCOME_REFUSED: StepUpOutcome
ROLE_UNSPECIFIED: Role
ROLE_ADMIN: Role
ROLE_SERVICE: Role
ROLE_PORTAL: Role
USER_ROLE_UNSPECIFIED: UserRole
USER_ROLE_ADMIN: UserRole
USER_ROLE_HELPDESK: UserRole
USER_ROLE_AUDITOR: UserRole
ENROLMENT_PROOF_UNSPECIFIED: EnrolmentProof
ENROLMENT_PROOF_NONE: EnrolmentProof
ENROLMENT_PROOF_ACCESS_CODE: EnrolmentProof
ENROLMENT_PROOF_EMAIL_CODE: EnrolmentProof
MFA_REQUIRED_UNSPECIFIED: MfaRequired
MFA_REQUIRED_ALL: MfaRequired
MFA_REQUIRED_ENROLLED: MfaRequired
MFA_REQUIRED_OFF: MfaRequired
SESSION_SCOPE_UNSPECIFIED: SessionScope
SESSION_SCOPE_FULL: SessionScope
SESSION_SCOPE_ENROLMENT: SessionScope
APPROVAL_STATUS_UNSPECIFIED: ApprovalStatus
APPROVAL_STATUS_UNKNOWN: ApprovalStatus
APPROVAL_STATUS_PENDING: ApprovalStatus
APPROVAL_STATUS_APPROVED: ApprovalStatus
APPROVAL_STATUS_USED: ApprovalStatus
APPROVAL_STATUS_REFUSED: ApprovalStatus
APPROVAL_STATUS_EXPIRED: ApprovalStatus
APPROVAL_DECISION_UNSPECIFIED: ApprovalDecision
APPROVAL_DECISION_APPROVE: ApprovalDecision
APPROVAL_DECISION_DENY: ApprovalDecision
APPROVAL_DECISION_LOCK_ACCOUNT: ApprovalDecision
APPROVAL_OUTCOME_UNSPECIFIED: ApprovalOutcome
APPROVAL_OUTCOME_APPROVED: ApprovalOutcome
APPROVAL_OUTCOME_DENIED: ApprovalOutcome
APPROVAL_OUTCOME_REFUSED: ApprovalOutcome
APPROVAL_OUTCOME_ACCOUNT_LOCKED: ApprovalOutcome

class ClientInfo(_message.Message):
    __slots__ = ("ip", "user_agent")
    IP_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    ip: str
    user_agent: str
    def __init__(self, ip: _Optional[str] = ..., user_agent: _Optional[str] = ...) -> None: ...

class UserSession(_message.Message):
    __slots__ = ("token", "scope", "expires_at", "console_role", "proof_owed")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CONSOLE_ROLE_FIELD_NUMBER: _ClassVar[int]
    PROOF_OWED_FIELD_NUMBER: _ClassVar[int]
    token: str
    scope: SessionScope
    expires_at: _timestamp_pb2.Timestamp
    console_role: UserRole
    proof_owed: EnrolmentProof
    def __init__(self, token: _Optional[str] = ..., scope: _Optional[_Union[SessionScope, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., console_role: _Optional[_Union[UserRole, str]] = ..., proof_owed: _Optional[_Union[EnrolmentProof, str]] = ...) -> None: ...

class RememberedToken(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ChallengeDetails(_message.Message):
    __slots__ = ("challenge_id", "method", "masked_email", "resend_after", "request_options_json", "expires_at", "approval_number", "approval_url")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MASKED_EMAIL_FIELD_NUMBER: _ClassVar[int]
    RESEND_AFTER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_URL_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    method: Method
    masked_email: str
    resend_after: _timestamp_pb2.Timestamp
    request_options_json: str
    expires_at: _timestamp_pb2.Timestamp
    approval_number: str
    approval_url: str
    def __init__(self, challenge_id: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., masked_email: _Optional[str] = ..., resend_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_options_json: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approval_number: _Optional[str] = ..., approval_url: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "method", "name", "state", "created_at", "last_used_at", "security_level", "email", "passkey", "u2f")
    ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    SECURITY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSKEY_FIELD_NUMBER: _ClassVar[int]
    U2F_FIELD_NUMBER: _ClassVar[int]
    id: str
    method: Method
    name: str
    state: DeviceState
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    security_level: int
    email: EmailDetails
    passkey: PasskeyDetails
    u2f: U2fDetails
    def __init__(self, id: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., name: _Optional[str] = ..., state: _Optional[_Union[DeviceState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., security_level: _Optional[int] = ..., email: _Optional[_Union[EmailDetails, _Mapping]] = ..., passkey: _Optional[_Union[PasskeyDetails, _Mapping]] = ..., u2f: _Optional[_Union[U2fDetails, _Mapping]] = ...) -> None: ...

class EmailDetails(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class PasskeyDetails(_message.Message):
    __slots__ = ("backup_eligible", "backup_state", "aaguid")
    BACKUP_ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_STATE_FIELD_NUMBER: _ClassVar[int]
    AAGUID_FIELD_NUMBER: _ClassVar[int]
    backup_eligible: bool
    backup_state: bool
    aaguid: str
    def __init__(self, backup_eligible: _Optional[bool] = ..., backup_state: _Optional[bool] = ..., aaguid: _Optional[str] = ...) -> None: ...

class U2fDetails(_message.Message):
    __slots__ = ("app_id",)
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    def __init__(self, app_id: _Optional[str] = ...) -> None: ...

class TotpProvisioning(_message.Message):
    __slots__ = ("device_id", "otpauth_uri", "secret_base32", "qr_png", "qr_svg", "issuer", "account_name", "digits", "period_seconds", "expires_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OTPAUTH_URI_FIELD_NUMBER: _ClassVar[int]
    SECRET_BASE32_FIELD_NUMBER: _ClassVar[int]
    QR_PNG_FIELD_NUMBER: _ClassVar[int]
    QR_SVG_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_NAME_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    otpauth_uri: str
    secret_base32: str
    qr_png: bytes
    qr_svg: str
    issuer: str
    account_name: str
    digits: int
    period_seconds: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., otpauth_uri: _Optional[str] = ..., secret_base32: _Optional[str] = ..., qr_png: _Optional[bytes] = ..., qr_svg: _Optional[str] = ..., issuer: _Optional[str] = ..., account_name: _Optional[str] = ..., digits: _Optional[int] = ..., period_seconds: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EmailCodeSent(_message.Message):
    __slots__ = ("device_id", "masked_email", "resend_after", "expires_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MASKED_EMAIL_FIELD_NUMBER: _ClassVar[int]
    RESEND_AFTER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    masked_email: str
    resend_after: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., masked_email: _Optional[str] = ..., resend_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PasskeyRegistration(_message.Message):
    __slots__ = ("registration_id", "creation_options_json", "expires_at")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATION_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    creation_options_json: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, registration_id: _Optional[str] = ..., creation_options_json: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeviceList(_message.Message):
    __slots__ = ("devices", "lockout_risk")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LOCKOUT_RISK_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    lockout_risk: bool
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., lockout_risk: _Optional[bool] = ...) -> None: ...

class WatchChallengeRequest(_message.Message):
    __slots__ = ("challenge_id", "timeout_seconds")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    timeout_seconds: int
    def __init__(self, challenge_id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ...) -> None: ...

class ChallengeStatus(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: ApprovalStatus
    def __init__(self, status: _Optional[_Union[ApprovalStatus, str]] = ...) -> None: ...

class BeginSignInRequest(_message.Message):
    __slots__ = ("username", "password", "remembered_token", "client")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    remembered_token: str
    client: ClientInfo
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., remembered_token: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class BeginSignInResponse(_message.Message):
    __slots__ = ("outcome", "challenge_id", "methods", "challenge_expires_at", "session", "remembered", "username", "remember_days", "masked_email")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DAYS_FIELD_NUMBER: _ClassVar[int]
    MASKED_EMAIL_FIELD_NUMBER: _ClassVar[int]
    outcome: SignInOutcome
    challenge_id: str
    methods: _containers.RepeatedScalarFieldContainer[Method]
    challenge_expires_at: _timestamp_pb2.Timestamp
    session: UserSession
    remembered: RememberedToken
    username: str
    remember_days: int
    masked_email: str
    def __init__(self, outcome: _Optional[_Union[SignInOutcome, str]] = ..., challenge_id: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[Method, str]]] = ..., challenge_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session: _Optional[_Union[UserSession, _Mapping]] = ..., remembered: _Optional[_Union[RememberedToken, _Mapping]] = ..., username: _Optional[str] = ..., remember_days: _Optional[int] = ..., masked_email: _Optional[str] = ...) -> None: ...

class StartChallengeRequest(_message.Message):
    __slots__ = ("challenge_id", "method", "client")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    method: Method
    client: ClientInfo
    def __init__(self, challenge_id: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class StartChallengeResponse(_message.Message):
    __slots__ = ("challenge",)
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    challenge: ChallengeDetails
    def __init__(self, challenge: _Optional[_Union[ChallengeDetails, _Mapping]] = ...) -> None: ...

class CompleteChallengeRequest(_message.Message):
    __slots__ = ("challenge_id", "method", "code", "assertion_json", "remember_device", "client")
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_JSON_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    challenge_id: str
    method: Method
    code: str
    assertion_json: str
    remember_device: bool
    client: ClientInfo
    def __init__(self, challenge_id: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., code: _Optional[str] = ..., assertion_json: _Optional[str] = ..., remember_device: _Optional[bool] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class CompleteChallengeResponse(_message.Message):
    __slots__ = ("outcome", "username", "session", "remembered")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REMEMBERED_FIELD_NUMBER: _ClassVar[int]
    outcome: SignInOutcome
    username: str
    session: UserSession
    remembered: RememberedToken
    def __init__(self, outcome: _Optional[_Union[SignInOutcome, str]] = ..., username: _Optional[str] = ..., session: _Optional[_Union[UserSession, _Mapping]] = ..., remembered: _Optional[_Union[RememberedToken, _Mapping]] = ...) -> None: ...

class VerifyCodeRequest(_message.Message):
    __slots__ = ("username", "code", "method", "client")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    username: str
    code: str
    method: Method
    client: ClientInfo
    def __init__(self, username: _Optional[str] = ..., code: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class VerifyCodeResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: VerifyOutcome
    def __init__(self, outcome: _Optional[_Union[VerifyOutcome, str]] = ...) -> None: ...

class VerifySensitiveRequest(_message.Message):
    __slots__ = ("username", "operation", "method", "challenge_id", "code", "assertion_json", "client")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_JSON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    username: str
    operation: str
    method: Method
    challenge_id: str
    code: str
    assertion_json: str
    client: ClientInfo
    def __init__(self, username: _Optional[str] = ..., operation: _Optional[str] = ..., method: _Optional[_Union[Method, str]] = ..., challenge_id: _Optional[str] = ..., code: _Optional[str] = ..., assertion_json: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class VerifySensitiveResponse(_message.Message):
    __slots__ = ("outcome", "challenge", "verified_at", "valid_until")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    outcome: StepUpOutcome
    challenge: ChallengeDetails
    verified_at: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    def __init__(self, outcome: _Optional[_Union[StepUpOutcome, str]] = ..., challenge: _Optional[_Union[ChallengeDetails, _Mapping]] = ..., verified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "self_service", "allowed_methods", "emergency_session", "lost_device_ids", "email_recovery")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SELF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_SESSION_FIELD_NUMBER: _ClassVar[int]
    LOST_DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    EMAIL_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    devices: DeviceList
    self_service: bool
    allowed_methods: _containers.RepeatedScalarFieldContainer[Method]
    emergency_session: bool
    lost_device_ids: _containers.RepeatedScalarFieldContainer[str]
    email_recovery: bool
    def __init__(self, devices: _Optional[_Union[DeviceList, _Mapping]] = ..., self_service: _Optional[bool] = ..., allowed_methods: _Optional[_Iterable[_Union[Method, str]]] = ..., emergency_session: _Optional[bool] = ..., lost_device_ids: _Optional[_Iterable[str]] = ..., email_recovery: _Optional[bool] = ...) -> None: ...

class BeginTotpBindingRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class BeginTotpBindingResponse(_message.Message):
    __slots__ = ("provisioning",)
    PROVISIONING_FIELD_NUMBER: _ClassVar[int]
    provisioning: TotpProvisioning
    def __init__(self, provisioning: _Optional[_Union[TotpProvisioning, _Mapping]] = ...) -> None: ...

class ConfirmTotpBindingRequest(_message.Message):
    __slots__ = ("device_id", "code", "client")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    code: str
    client: ClientInfo
    def __init__(self, device_id: _Optional[str] = ..., code: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class ConfirmTotpBindingResponse(_message.Message):
    __slots__ = ("device", "devices", "session")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    session: UserSession
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ..., session: _Optional[_Union[UserSession, _Mapping]] = ...) -> None: ...

class BeginEmailBindingRequest(_message.Message):
    __slots__ = ("address", "client")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    address: str
    client: ClientInfo
    def __init__(self, address: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class BeginEmailBindingResponse(_message.Message):
    __slots__ = ("sent",)
    SENT_FIELD_NUMBER: _ClassVar[int]
    sent: EmailCodeSent
    def __init__(self, sent: _Optional[_Union[EmailCodeSent, _Mapping]] = ...) -> None: ...

class ConfirmEmailBindingRequest(_message.Message):
    __slots__ = ("device_id", "code", "client")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    code: str
    client: ClientInfo
    def __init__(self, device_id: _Optional[str] = ..., code: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class ConfirmEmailBindingResponse(_message.Message):
    __slots__ = ("device", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class BeginPasskeyBindingRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class BeginPasskeyBindingResponse(_message.Message):
    __slots__ = ("registration",)
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    registration: PasskeyRegistration
    def __init__(self, registration: _Optional[_Union[PasskeyRegistration, _Mapping]] = ...) -> None: ...

class CompletePasskeyBindingRequest(_message.Message):
    __slots__ = ("registration_id", "credential_json", "client")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_JSON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    credential_json: str
    client: ClientInfo
    def __init__(self, registration_id: _Optional[str] = ..., credential_json: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class CompletePasskeyBindingResponse(_message.Message):
    __slots__ = ("device", "devices", "session")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    session: UserSession
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ..., session: _Optional[_Union[UserSession, _Mapping]] = ...) -> None: ...

class BeginU2FUpgradeRequest(_message.Message):
    __slots__ = ("device_id", "name")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class BeginU2FUpgradeResponse(_message.Message):
    __slots__ = ("registration",)
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    registration: PasskeyRegistration
    def __init__(self, registration: _Optional[_Union[PasskeyRegistration, _Mapping]] = ...) -> None: ...

class CompleteU2FUpgradeRequest(_message.Message):
    __slots__ = ("registration_id", "credential_json", "client")
    REGISTRATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_JSON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    registration_id: str
    credential_json: str
    client: ClientInfo
    def __init__(self, registration_id: _Optional[str] = ..., credential_json: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class CompleteU2FUpgradeResponse(_message.Message):
    __slots__ = ("device", "retired_device_id", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RETIRED_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: Device
    retired_device_id: str
    devices: DeviceList
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., retired_device_id: _Optional[str] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class UnbindRequest(_message.Message):
    __slots__ = ("device_id", "client")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    client: ClientInfo
    def __init__(self, device_id: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class UnbindResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: DeviceList
    def __init__(self, devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class RememberedDevice(_message.Message):
    __slots__ = ("id", "label", "created_at", "last_used_at", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    label: str
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., label: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRememberedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecoveryStatus(_message.Message):
    __slots__ = ("codes_left", "created_at", "last_used_at")
    CODES_LEFT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_AT_FIELD_NUMBER: _ClassVar[int]
    codes_left: int
    created_at: _timestamp_pb2.Timestamp
    last_used_at: _timestamp_pb2.Timestamp
    def __init__(self, codes_left: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GenerateRecoveryCodesRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: ClientInfo
    def __init__(self, client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class GenerateRecoveryCodesResponse(_message.Message):
    __slots__ = ("codes", "status")
    CODES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[str]
    status: RecoveryStatus
    def __init__(self, codes: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[RecoveryStatus, _Mapping]] = ...) -> None: ...

class StartEnrolmentProofRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: ClientInfo
    def __init__(self, client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class StartEnrolmentProofResponse(_message.Message):
    __slots__ = ("proof", "masked_email", "expires_at")
    PROOF_FIELD_NUMBER: _ClassVar[int]
    MASKED_EMAIL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    proof: EnrolmentProof
    masked_email: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, proof: _Optional[_Union[EnrolmentProof, str]] = ..., masked_email: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PresentEnrolmentProofRequest(_message.Message):
    __slots__ = ("code", "client")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    code: str
    client: ClientInfo
    def __init__(self, code: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ...) -> None: ...

class PresentEnrolmentProofResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class GetRecoveryStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRecoveryStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: RecoveryStatus
    def __init__(self, status: _Optional[_Union[RecoveryStatus, _Mapping]] = ...) -> None: ...

class ListRememberedResponse(_message.Message):
    __slots__ = ("remembered",)
    REMEMBERED_FIELD_NUMBER: _ClassVar[int]
    remembered: _containers.RepeatedCompositeFieldContainer[RememberedDevice]
    def __init__(self, remembered: _Optional[_Iterable[_Union[RememberedDevice, _Mapping]]] = ...) -> None: ...

class RevokeRememberedRequest(_message.Message):
    __slots__ = ("id", "all")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    all: bool
    def __init__(self, id: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class RevokeRememberedResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPendingApprovalsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PendingApproval(_message.Message):
    __slots__ = ("id", "client", "source", "protocol", "created_at", "expires_at", "choices", "held")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    client: str
    source: str
    protocol: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    choices: _containers.RepeatedScalarFieldContainer[int]
    held: bool
    def __init__(self, id: _Optional[str] = ..., client: _Optional[str] = ..., source: _Optional[str] = ..., protocol: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., choices: _Optional[_Iterable[int]] = ..., held: _Optional[bool] = ...) -> None: ...

class ListPendingApprovalsResponse(_message.Message):
    __slots__ = ("approvals", "proof_methods")
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    PROOF_METHODS_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[PendingApproval]
    proof_methods: _containers.RepeatedScalarFieldContainer[Method]
    def __init__(self, approvals: _Optional[_Iterable[_Union[PendingApproval, _Mapping]]] = ..., proof_methods: _Optional[_Iterable[_Union[Method, str]]] = ...) -> None: ...

class DecideApprovalRequest(_message.Message):
    __slots__ = ("approval_id", "decision", "number", "challenge_id", "assertion_json", "client", "code")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSERTION_JSON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    decision: ApprovalDecision
    number: int
    challenge_id: str
    assertion_json: str
    client: ClientInfo
    code: str
    def __init__(self, approval_id: _Optional[str] = ..., decision: _Optional[_Union[ApprovalDecision, str]] = ..., number: _Optional[int] = ..., challenge_id: _Optional[str] = ..., assertion_json: _Optional[str] = ..., client: _Optional[_Union[ClientInfo, _Mapping]] = ..., code: _Optional[str] = ...) -> None: ...

class DecideApprovalResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: ApprovalOutcome
    def __init__(self, outcome: _Optional[_Union[ApprovalOutcome, str]] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "username", "disabled", "has_password", "created_at", "role")
    ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    HAS_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    username: str
    disabled: bool
    has_password: bool
    created_at: _timestamp_pb2.Timestamp
    role: UserRole
    def __init__(self, id: _Optional[str] = ..., username: _Optional[str] = ..., disabled: _Optional[bool] = ..., has_password: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., role: _Optional[_Union[UserRole, str]] = ...) -> None: ...

class GetConsoleAccessRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConsoleAccessResponse(_message.Message):
    __slots__ = ("username", "role", "permissions")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    username: str
    role: UserRole
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, username: _Optional[str] = ..., role: _Optional[_Union[UserRole, str]] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class SetUserRoleRequest(_message.Message):
    __slots__ = ("username", "role")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    username: str
    role: UserRole
    def __init__(self, username: _Optional[str] = ..., role: _Optional[_Union[UserRole, str]] = ...) -> None: ...

class SetUserRoleResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "username_prefix")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    username_prefix: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., username_prefix: _Optional[str] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    next_page_token: str
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user", "devices", "lockout")
    USER_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LOCKOUT_FIELD_NUMBER: _ClassVar[int]
    user: User
    devices: DeviceList
    lockout: Lockout
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ..., lockout: _Optional[_Union[Lockout, _Mapping]] = ...) -> None: ...

class PruneDirectoryUsersRequest(_message.Message):
    __slots__ = ("directory", "disable")
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    DISABLE_FIELD_NUMBER: _ClassVar[int]
    directory: str
    disable: bool
    def __init__(self, directory: _Optional[str] = ..., disable: _Optional[bool] = ...) -> None: ...

class StaleDirectoryUser(_message.Message):
    __slots__ = ("username", "directory", "why", "disabled")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    username: str
    directory: str
    why: str
    disabled: bool
    def __init__(self, username: _Optional[str] = ..., directory: _Optional[str] = ..., why: _Optional[str] = ..., disabled: _Optional[bool] = ...) -> None: ...

class PruneDirectoryUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[StaleDirectoryUser]
    def __init__(self, users: _Optional[_Iterable[_Union[StaleDirectoryUser, _Mapping]]] = ...) -> None: ...

class DisableUserRequest(_message.Message):
    __slots__ = ("username", "reason")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    username: str
    reason: str
    def __init__(self, username: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DisableUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("username", "reason")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    username: str
    reason: str
    def __init__(self, username: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteUserResponse(_message.Message):
    __slots__ = ("username", "devices_removed")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DEVICES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    username: str
    devices_removed: int
    def __init__(self, username: _Optional[str] = ..., devices_removed: _Optional[int] = ...) -> None: ...

class EnableUserRequest(_message.Message):
    __slots__ = ("username", "reason")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    username: str
    reason: str
    def __init__(self, username: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EnableUserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class SetPasswordRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class SetPasswordResponse(_message.Message):
    __slots__ = ("remembered_revoked",)
    REMEMBERED_REVOKED_FIELD_NUMBER: _ClassVar[int]
    remembered_revoked: int
    def __init__(self, remembered_revoked: _Optional[int] = ...) -> None: ...

class AdminListDevicesRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class AdminListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: DeviceList
    def __init__(self, devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class UnbindDeviceRequest(_message.Message):
    __slots__ = ("username", "device_id", "reason")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    username: str
    device_id: str
    reason: str
    def __init__(self, username: _Optional[str] = ..., device_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnbindDeviceResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: DeviceList
    def __init__(self, devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class BindTotpRequest(_message.Message):
    __slots__ = ("username", "name")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    name: str
    def __init__(self, username: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class BindTotpResponse(_message.Message):
    __slots__ = ("provisioning",)
    PROVISIONING_FIELD_NUMBER: _ClassVar[int]
    provisioning: TotpProvisioning
    def __init__(self, provisioning: _Optional[_Union[TotpProvisioning, _Mapping]] = ...) -> None: ...

class ConfirmTotpRequest(_message.Message):
    __slots__ = ("username", "device_id", "code")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    username: str
    device_id: str
    code: str
    def __init__(self, username: _Optional[str] = ..., device_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ConfirmTotpResponse(_message.Message):
    __slots__ = ("device", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class BindEmailRequest(_message.Message):
    __slots__ = ("username", "address")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    username: str
    address: str
    def __init__(self, username: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class BindEmailResponse(_message.Message):
    __slots__ = ("sent", "accepted")
    SENT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    sent: EmailCodeSent
    accepted: bool
    def __init__(self, sent: _Optional[_Union[EmailCodeSent, _Mapping]] = ..., accepted: _Optional[bool] = ...) -> None: ...

class ConfirmEmailRequest(_message.Message):
    __slots__ = ("username", "device_id", "code")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    username: str
    device_id: str
    code: str
    def __init__(self, username: _Optional[str] = ..., device_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ConfirmEmailResponse(_message.Message):
    __slots__ = ("device", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class ImportTotpRequest(_message.Message):
    __slots__ = ("username", "secret", "digits", "period", "algorithm", "name", "origin")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    username: str
    secret: bytes
    digits: int
    period: int
    algorithm: str
    name: str
    origin: str
    def __init__(self, username: _Optional[str] = ..., secret: _Optional[bytes] = ..., digits: _Optional[int] = ..., period: _Optional[int] = ..., algorithm: _Optional[str] = ..., name: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class ImportTotpResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class ImportU2FRequest(_message.Message):
    __slots__ = ("username", "name", "key_handle", "public_key", "app_id", "counter")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    username: str
    name: str
    key_handle: bytes
    public_key: bytes
    app_id: str
    counter: int
    def __init__(self, username: _Optional[str] = ..., name: _Optional[str] = ..., key_handle: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., app_id: _Optional[str] = ..., counter: _Optional[int] = ...) -> None: ...

class ImportU2FResponse(_message.Message):
    __slots__ = ("device", "devices")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    device: Device
    devices: DeviceList
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., devices: _Optional[_Union[DeviceList, _Mapping]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("mfa_required", "allowed_methods", "self_service", "remember_device", "remember_days", "sensitive_reauth_seconds", "require_backup_method", "enrolment_proof", "email_recovery", "roles_need_passkey", "approval_hold", "approval_with_totp", "approval_email_notice")
    MFA_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    SELF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DAYS_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_REAUTH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_BACKUP_METHOD_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_PROOF_FIELD_NUMBER: _ClassVar[int]
    EMAIL_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    ROLES_NEED_PASSKEY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_HOLD_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_WITH_TOTP_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_EMAIL_NOTICE_FIELD_NUMBER: _ClassVar[int]
    mfa_required: MfaRequired
    allowed_methods: _containers.RepeatedScalarFieldContainer[Method]
    self_service: bool
    remember_device: bool
    remember_days: int
    sensitive_reauth_seconds: int
    require_backup_method: bool
    enrolment_proof: EnrolmentProof
    email_recovery: bool
    roles_need_passkey: bool
    approval_hold: bool
    approval_with_totp: bool
    approval_email_notice: bool
    def __init__(self, mfa_required: _Optional[_Union[MfaRequired, str]] = ..., allowed_methods: _Optional[_Iterable[_Union[Method, str]]] = ..., self_service: _Optional[bool] = ..., remember_device: _Optional[bool] = ..., remember_days: _Optional[int] = ..., sensitive_reauth_seconds: _Optional[int] = ..., require_backup_method: _Optional[bool] = ..., enrolment_proof: _Optional[_Union[EnrolmentProof, str]] = ..., email_recovery: _Optional[bool] = ..., roles_need_passkey: _Optional[bool] = ..., approval_hold: _Optional[bool] = ..., approval_with_totp: _Optional[bool] = ..., approval_email_notice: _Optional[bool] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class MethodSet(_message.Message):
    __slots__ = ("methods",)
    METHODS_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedScalarFieldContainer[Method]
    def __init__(self, methods: _Optional[_Iterable[_Union[Method, str]]] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("mfa_required", "allowed_methods", "self_service", "remember_device", "remember_days", "sensitive_reauth_seconds", "require_backup_method", "enrolment_proof", "email_recovery", "roles_need_passkey", "approval_hold", "approval_with_totp", "approval_email_notice")
    MFA_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    SELF_SERVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DAYS_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_REAUTH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_BACKUP_METHOD_FIELD_NUMBER: _ClassVar[int]
    ENROLMENT_PROOF_FIELD_NUMBER: _ClassVar[int]
    EMAIL_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    ROLES_NEED_PASSKEY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_HOLD_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_WITH_TOTP_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_EMAIL_NOTICE_FIELD_NUMBER: _ClassVar[int]
    mfa_required: MfaRequired
    allowed_methods: MethodSet
    self_service: bool
    remember_device: bool
    remember_days: int
    sensitive_reauth_seconds: int
    require_backup_method: bool
    enrolment_proof: EnrolmentProof
    email_recovery: bool
    roles_need_passkey: bool
    approval_hold: bool
    approval_with_totp: bool
    approval_email_notice: bool
    def __init__(self, mfa_required: _Optional[_Union[MfaRequired, str]] = ..., allowed_methods: _Optional[_Union[MethodSet, _Mapping]] = ..., self_service: _Optional[bool] = ..., remember_device: _Optional[bool] = ..., remember_days: _Optional[int] = ..., sensitive_reauth_seconds: _Optional[int] = ..., require_backup_method: _Optional[bool] = ..., enrolment_proof: _Optional[_Union[EnrolmentProof, str]] = ..., email_recovery: _Optional[bool] = ..., roles_need_passkey: _Optional[bool] = ..., approval_hold: _Optional[bool] = ..., approval_with_totp: _Optional[bool] = ..., approval_email_notice: _Optional[bool] = ...) -> None: ...

class SetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class PolicyRule(_message.Message):
    __slots__ = ("name", "groups", "clients", "mfa_required", "allowed_methods", "remember_device", "remember_days")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    MFA_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    clients: _containers.RepeatedScalarFieldContainer[str]
    mfa_required: MfaRequired
    allowed_methods: MethodSet
    remember_device: bool
    remember_days: int
    def __init__(self, name: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., clients: _Optional[_Iterable[str]] = ..., mfa_required: _Optional[_Union[MfaRequired, str]] = ..., allowed_methods: _Optional[_Union[MethodSet, _Mapping]] = ..., remember_device: _Optional[bool] = ..., remember_days: _Optional[int] = ...) -> None: ...

class NameList(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPolicyRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPolicyRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class GetPolicyRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetPolicyRuleResponse(_message.Message):
    __slots__ = ("rule", "position")
    RULE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    rule: PolicyRule
    position: int
    def __init__(self, rule: _Optional[_Union[PolicyRule, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class AddPolicyRuleRequest(_message.Message):
    __slots__ = ("rule", "position")
    RULE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    rule: PolicyRule
    position: int
    def __init__(self, rule: _Optional[_Union[PolicyRule, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class AddPolicyRuleResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class UpdatePolicyRuleRequest(_message.Message):
    __slots__ = ("name", "groups", "clients", "mfa_required", "allowed_methods", "remember_device", "remember_days", "inherit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    MFA_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_METHODS_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DEVICE_FIELD_NUMBER: _ClassVar[int]
    REMEMBER_DAYS_FIELD_NUMBER: _ClassVar[int]
    INHERIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    groups: NameList
    clients: NameList
    mfa_required: MfaRequired
    allowed_methods: MethodSet
    remember_device: bool
    remember_days: int
    inherit: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., groups: _Optional[_Union[NameList, _Mapping]] = ..., clients: _Optional[_Union[NameList, _Mapping]] = ..., mfa_required: _Optional[_Union[MfaRequired, str]] = ..., allowed_methods: _Optional[_Union[MethodSet, _Mapping]] = ..., remember_device: _Optional[bool] = ..., remember_days: _Optional[int] = ..., inherit: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdatePolicyRuleResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class MovePolicyRuleRequest(_message.Message):
    __slots__ = ("name", "position")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    position: int
    def __init__(self, name: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class MovePolicyRuleResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class DeletePolicyRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeletePolicyRuleResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class Lockout(_message.Message):
    __slots__ = ("username", "locked", "locked_until", "hard_locked", "consecutive_failures", "lockouts")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCKED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    HARD_LOCKED_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LOCKOUTS_FIELD_NUMBER: _ClassVar[int]
    username: str
    locked: bool
    locked_until: _timestamp_pb2.Timestamp
    hard_locked: bool
    consecutive_failures: int
    lockouts: int
    def __init__(self, username: _Optional[str] = ..., locked: _Optional[bool] = ..., locked_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hard_locked: _Optional[bool] = ..., consecutive_failures: _Optional[int] = ..., lockouts: _Optional[int] = ...) -> None: ...

class GetUserRecoveryStatusRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class IssueEnrolmentCodeRequest(_message.Message):
    __slots__ = ("username", "hours")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    username: str
    hours: int
    def __init__(self, username: _Optional[str] = ..., hours: _Optional[int] = ...) -> None: ...

class IssueEnrolmentCodeResponse(_message.Message):
    __slots__ = ("code", "expires_at", "replaced")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    code: str
    expires_at: _timestamp_pb2.Timestamp
    replaced: bool
    def __init__(self, code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replaced: _Optional[bool] = ...) -> None: ...

class GetOverviewRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOverviewResponse(_message.Message):
    __slots__ = ("users", "users_without_mfa", "users_at_lockout_risk", "users_locked", "failed_sign_ins_24h", "outbox_depth", "outbox_oldest")
    USERS_FIELD_NUMBER: _ClassVar[int]
    USERS_WITHOUT_MFA_FIELD_NUMBER: _ClassVar[int]
    USERS_AT_LOCKOUT_RISK_FIELD_NUMBER: _ClassVar[int]
    USERS_LOCKED_FIELD_NUMBER: _ClassVar[int]
    FAILED_SIGN_INS_24H_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_OLDEST_FIELD_NUMBER: _ClassVar[int]
    users: int
    users_without_mfa: int
    users_at_lockout_risk: int
    users_locked: int
    failed_sign_ins_24h: int
    outbox_depth: int
    outbox_oldest: _timestamp_pb2.Timestamp
    def __init__(self, users: _Optional[int] = ..., users_without_mfa: _Optional[int] = ..., users_at_lockout_risk: _Optional[int] = ..., users_locked: _Optional[int] = ..., failed_sign_ins_24h: _Optional[int] = ..., outbox_depth: _Optional[int] = ..., outbox_oldest: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetUserRecoveryStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: RecoveryStatus
    def __init__(self, status: _Optional[_Union[RecoveryStatus, _Mapping]] = ...) -> None: ...

class GetLockoutRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class GetLockoutResponse(_message.Message):
    __slots__ = ("lockout",)
    LOCKOUT_FIELD_NUMBER: _ClassVar[int]
    lockout: Lockout
    def __init__(self, lockout: _Optional[_Union[Lockout, _Mapping]] = ...) -> None: ...

class ResetLockoutRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ResetLockoutResponse(_message.Message):
    __slots__ = ("lockout",)
    LOCKOUT_FIELD_NUMBER: _ClassVar[int]
    lockout: Lockout
    def __init__(self, lockout: _Optional[_Union[Lockout, _Mapping]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "at", "event", "outcome", "username", "method", "protocol", "source", "actor", "reason", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    at: _timestamp_pb2.Timestamp
    event: str
    outcome: str
    username: str
    method: str
    protocol: str
    source: str
    actor: str
    reason: str
    detail: str
    def __init__(self, id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event: _Optional[str] = ..., outcome: _Optional[str] = ..., username: _Optional[str] = ..., method: _Optional[str] = ..., protocol: _Optional[str] = ..., source: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class QueryAuditRequest(_message.Message):
    __slots__ = ("username", "event", "outcome", "since", "until", "page_size", "page_token")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    username: str
    event: str
    outcome: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, username: _Optional[str] = ..., event: _Optional[str] = ..., outcome: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryAuditResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CallerToken(_message.Message):
    __slots__ = ("id", "name", "role", "created_at", "revoked", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: Role
    created_at: _timestamp_pb2.Timestamp
    revoked: bool
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCallerTokenRequest(_message.Message):
    __slots__ = ("name", "role", "expires_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCallerTokenResponse(_message.Message):
    __slots__ = ("caller_token", "token")
    CALLER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    caller_token: CallerToken
    token: str
    def __init__(self, caller_token: _Optional[_Union[CallerToken, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListCallerTokensRequest(_message.Message):
    __slots__ = ("include_revoked",)
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    def __init__(self, include_revoked: _Optional[bool] = ...) -> None: ...

class ListCallerTokensResponse(_message.Message):
    __slots__ = ("caller_tokens",)
    CALLER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    caller_tokens: _containers.RepeatedCompositeFieldContainer[CallerToken]
    def __init__(self, caller_tokens: _Optional[_Iterable[_Union[CallerToken, _Mapping]]] = ...) -> None: ...

class RevokeCallerTokenRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RevokeCallerTokenResponse(_message.Message):
    __slots__ = ("caller_token",)
    CALLER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    caller_token: CallerToken
    def __init__(self, caller_token: _Optional[_Union[CallerToken, _Mapping]] = ...) -> None: ...

class ListUserRememberedRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ListUserRememberedResponse(_message.Message):
    __slots__ = ("remembered",)
    REMEMBERED_FIELD_NUMBER: _ClassVar[int]
    remembered: _containers.RepeatedCompositeFieldContainer[RememberedDevice]
    def __init__(self, remembered: _Optional[_Iterable[_Union[RememberedDevice, _Mapping]]] = ...) -> None: ...

class RevokeUserRememberedRequest(_message.Message):
    __slots__ = ("username", "id", "all")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    username: str
    id: str
    all: bool
    def __init__(self, username: _Optional[str] = ..., id: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class RevokeUserRememberedResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...
