"""The core's settings: one frozen section per component, defaults and bounds beside the fields.

The core declares what it needs and nothing more (the email-code service never sees
the mail server's password); ``mfad.config`` reads the sections from TOML and the
environment and hands each component its own. A field's bound is a ``check`` in its
metadata — a function returning the reason a value is refused — so the loader can
name the key that broke it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from mfad.core.model import HashAlgorithm, Policy
from mfad.core.passwords import PasswordPolicy
from mfad.core.usernames import UsernameRules

Check = Callable[[Any], str | None]


def check(fn: Check) -> dict[str, Check]:
    """Field metadata carrying a bound: ``field(default=..., metadata=check(positive))``."""
    return {"check": fn}


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def between(lo: float, hi: float) -> Check:
    return lambda value: None if lo <= value <= hi else f"must be between {lo} and {hi}"


def short_text(value: Any) -> str | None:
    return None if 0 < len(value) <= 64 and value.isprintable() else "must be 1 to 64 printable characters"


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordSettings:
    # argon2id, RFC 9106 second recommended option (64 MiB, t=3, p=4).
    time_cost: int = field(default=3, metadata=check(between(1, 20)))
    memory_kib: int = field(default=65536, metadata=check(between(8, 4 * 1024 * 1024)))
    parallelism: int = field(default=4, metadata=check(between(1, 64)))
    max_concurrent: int = field(default=2, metadata=check(between(1, 64)))
    # The policy for a new local password (mfad.core.passwords.PasswordPolicy).
    min_length: int = field(default=12, metadata=check(between(1, 256)))
    max_length: int = field(default=256, metadata=check(between(16, 1024)))
    #: Refuse the bundled most common passwords and passwords built on them.
    refuse_common: bool = True

    def to_policy(self) -> PasswordPolicy:
        return PasswordPolicy(min_length=self.min_length, max_length=self.max_length,
                              refuse_common=self.refuse_common)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSettings:
    #: "Alice" and "alice" are one user (names are stored case-folded).
    case_insensitive: bool = True

    def to_rules(self) -> UsernameRules:
        return UsernameRules(case_insensitive=self.case_insensitive)


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpSettings:
    issuer: str = "mfad"
    digits: Literal[6, 8] = 6
    period: Literal[30, 60] = 30
    algorithm: HashAlgorithm = HashAlgorithm.SHA1
    window: int = field(default=1, metadata=check(between(0, 3)))
    pending_ttl_seconds: int = field(default=600, metadata=check(between(60, 86400)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitSettings:
    max_failures: int = field(default=10, metadata=check(between(1, 1000)))
    lockout_seconds: int = field(default=60, metadata=check(positive))
    lockout_max_seconds: int = field(default=3600, metadata=check(positive))
    #: Consecutive failures after which only an administrator can unlock.
    hard_lock_after: int = field(default=100, metadata=check(positive))
    source_failures_before_backoff: int = field(default=5, metadata=check(positive))
    source_backoff_seconds: int = field(default=30, metadata=check(positive))
    source_backoff_max_seconds: int = field(default=900, metadata=check(positive))
    #: Token bucket of failures per source (spraying across users); 0 disables it.
    source_failure_rate: float = field(default=2.0, metadata=check(non_negative))
    source_failure_burst: int = field(default=60, metadata=check(positive))
    #: The life of a sign-in challenge (a RADIUS State, a gRPC challenge id), every transport alike.
    challenge_ttl_seconds: int = field(default=300, metadata=check(between(10, 3600)))
    #: Wrong answers one challenge allows.
    challenge_tries: int = field(default=3, metadata=check(between(1, 10)))


#: Attestation statement formats python-fido2 can verify.
WEBAUTHN_ATTESTATION_FORMATS = ("packed", "fido-u2f", "tpm", "android-safetynet", "apple", "none")


def _origins(value: Any) -> str | None:
    for item in value:
        try:
            parts = urlsplit(item)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            return f"{item!r} is not an origin"
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path or parts.query \
                or parts.fragment or parts.username or parts.password:
            return f"{item!r} must be scheme://host[:port], nothing more"
        if parts.scheme == "http" and parts.hostname != "localhost" and not parts.hostname.endswith(".localhost"):
            return f"{item!r}: browsers allow WebAuthn over http only on localhost; use https"
    return None


def _attestation_formats(value: Any) -> str | None:
    unknown = [f for f in value if f not in WEBAUTHN_ATTESTATION_FORMATS]
    if unknown:
        return f"unknown format(s) {', '.join(map(repr, unknown))}; known: {', '.join(WEBAUTHN_ATTESTATION_FORMATS)}"
    return None if value else "must list at least one format"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebauthnSettings:
    """Passkeys and legacy U2F keys (the relying party). See docs/passkeys.md."""

    #: The relying party id: the site's domain (each origin's host is it or a subdomain).
    rp_id: str = "localhost"
    rp_name: str = field(default="mfad", metadata=check(short_text))
    #: Exact origins allowed in clientDataJSON ("https://portal.example.com"). Unset in the file:
    #: the portal's origin (the built-in portal's default, http://localhost:8080).
    origins: list[str] = field(default_factory=lambda: ["http://localhost:8080"], metadata=check(_origins))
    #: Discoverable credential ("resident key"): required makes usernameless sign-in possible.
    resident_key: Literal["required", "preferred", "discouraged"] = "required"
    #: "none" (default: no vendor data asked) or "direct" (verify the statement).
    attestation: Literal["none", "direct"] = "none"
    #: With attestation = "direct": the statement formats accepted ("none" accepts unattested keys too).
    attestation_formats: list[str] = field(
        default_factory=lambda: ["packed", "fido-u2f", "tpm", "android-safetynet", "apple"],
        metadata=check(_attestation_formats))
    #: PEM bundle of trusted attestation roots; when set, direct attestation must chain to one
    #: (self attestation is then refused). Without it only the statement's signature is checked.
    attestation_roots_file: str | None = None
    #: Lifetime of a registration or sign-in ceremony (DESIGN §4: 5 minutes).
    challenge_ttl_seconds: int = field(default=300, metadata=check(between(30, 900)))
    #: COSE algorithms offered and accepted, in order of preference.
    algorithms: list[Literal["ES256", "EdDSA", "RS256"]] = field(
        default_factory=lambda: ["ES256", "EdDSA", "RS256"],
        metadata=check(lambda v: None if v else "must list at least one algorithm"))
    #: Passkeys and U2F keys one user may hold.
    max_credentials_per_user: int = field(default=20, metadata=check(between(1, 64)))


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailCodeSettings:
    """Email codes (DESIGN.md §4): 6 digits, 5 minutes, 3 tries, 60 s apart, 10 an hour."""

    #: The From address; its domain also names the messages' Message-IDs.
    sender: str = "mfad@localhost.localdomain"
    #: Shown in the messages ("<site_name> verification code").
    site_name: str = "mfad"
    code_digits: int = 6
    code_ttl_seconds: int = 300
    code_tries: int = 3
    resend_seconds: int = 60
    hourly_limit: int = 10
    #: Where mail about security events goes (a user locked their account after denying a
    #: sign-in they did not start); empty: no such mail (the audit log and alerts remain).
    security_alerts_to: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxSettings:
    """The outbox sender: exponential back-off on temporary failures, leases between instances."""

    #: One SMTP step (connect, TLS, send); a delivery may take three of them.
    timeout_seconds: float = 10.0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    #: How long a claimed message is reserved for the instance sending it.
    lease_seconds: float = 60.0
    #: How often other instances' queued messages are looked for.
    poll_seconds: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    """Everything ``mfad.core.service.Mfa`` hands its components, one section each."""

    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    users: UserSettings = field(default_factory=UserSettings)
    totp: TotpSettings = field(default_factory=TotpSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    webauthn: WebauthnSettings = field(default_factory=WebauthnSettings)
    email_codes: EmailCodeSettings = field(default_factory=EmailCodeSettings)
    #: The policy written to an empty store (the live policy is the store's).
    initial_policy: Policy = field(default_factory=Policy)
    #: Lifetime of a signed-in user's session for self-service calls.
    session_ttl_seconds: int = 900
    #: The portal's Approve sign-in page, linked from the "an approval is waiting" mail
    #: (None: no portal is known, no such mail).
    approve_url: str | None = None
