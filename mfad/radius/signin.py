"""The RADIUS sign-in adapter: one Access-Request in, the core's decision out as a reply.

RADIUS is only a translation here: every Access-Request without a State becomes one
``SignInService.sign_in`` request, per client mode:

- ``challenge``: User-Password is the password (``Password``); a second
  factor owed becomes an Access-Challenge whose State carries the core's challenge id
  and whose Reply-Message is the prompt; the next Access-Request brings the State back
  with the code → ``SignInService.complete`` (another Access-Challenge while tries
  remain after a wrong code). Typing ``email`` asks the core to start the email method
  (``SignInService.start_challenge``): refused with a clear prompt until that method
  is registered with the core.
- a challenge that offers ``approval`` (a user with a passkey, docs/approval.md) names the
  portal's Approve sign-in page and the number to choose there; the next Access-Request
  with the State (an empty or any password) gets Access-Accept once approved, another
  Access-Challenge ("not approved yet") while it waits, Access-Reject when it was denied
  or expired. No request is ever held. A TOTP code, a recovery code or ``email`` still
  work at the same prompt.
- ``append``: User-Password is the password followed by the code (``PasswordThenCode``:
  the core splits them by the device's digits).
- ``otp_only``: the NAS checked the password (``VOUCHED``); User-Password is the code.
- hold mode (``append``/``otp_only`` clients with ``approval_hold_seconds``): the password
  followed by ``approve`` (append) or just ``approve`` (otp_only) opens a *held* approval
  for a user with a passkey, and the request gets no reply until it is approved
  (Access-Accept), denied or refused, or the hold ends (Access-Reject) — kept by
  :mod:`mfad.radius.hold`, without a task; its retransmissions are answered by the
  server's duplicate cache. Where the policy forbids hold mode, or the user has no
  passkey, the request is refused at once.

Guarantees:

- An Access-Accept after an upstream RADIUS first factor also carries the attributes of
  the upstream's Access-Accept that the client's ``upstream_reply_attributes`` names
  (the core keeps them with the challenge between the two rounds); nothing else of the
  upstream reply reaches the NAS.
- Only a core result that says *allowed* becomes an Access-Accept. The store
  unavailable (:class:`~mfad.core.errors.Unavailable`) becomes no reply at all, so the
  NAS fails over; input that can never be valid (:class:`~mfad.core.errors.InvalidInput`)
  becomes an Access-Reject; any other fault propagates and the server stays silent.
- Reply-Messages never tell whether a user exists: every refusal reads the same, and
  the messages that say what to do (enrol first, a passkey cannot be typed here) are
  only sent after mfad itself checked the password. An ``otp_only`` client, whose NAS
  vouches for the password, gets one text for every refusal that covers both cases.
- The source the core rate-limits by is the Calling-Station-Id only for clients with
  ``trust_calling_station_id`` (which are also the only ones whose stations are
  remembered or honoured); otherwise, and when none is sent, it is the NAS itself (its
  name and address). An untrusted Calling-Station-Id may be chosen by the end user,
  and a guesser choosing a fresh one per request would get a fresh back-off each time.
- State values are ``mfad1`` + the method being answered + the core's challenge id
  (128 random bits, single use, expiring and bounded in tries by the core, valid on
  every instance sharing the store) + a tag of the User-Name it was made for: a State
  presented with another User-Name is refused before the core sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Final

from mfad.core import recovery
from mfad.core.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed, RateLimited, Unavailable
from mfad.core.model import Method
from mfad.core.signin import SignInService
from mfad.core.verification import (
    VOUCHED,
    Attempt,
    Outcome,
    Password,
    PasswordThenCode,
    Reason,
    SignInRequest,
    SignInResult,
)
from mfad.radius.clients import ClientMode, RadiusClient
from mfad.radius.codec import PasswordIssue, RadiusRequest
from mfad.radius.handler import NO_REPLY, Decision, Deferred, NoReply
from mfad.radius.hold import HeldSignIns

log = logging.getLogger("mfad.radius")

PROTOCOL: Final = "radius"

# Every Reply-Message fits one attribute (pam_radius_auth shows only the first), and a
# prompt ends in ": " so the answer is typed on the same line.
DENIED: Final = "Access denied."
OTP_ONLY_DENIED: Final = (
    "Access denied. Enter the current code from your authenticator app. "
    "No app yet, or only a passkey? Add an authenticator app in the self-service portal first."
)
ENROL_FIRST: Final = (
    "Access denied: two-step verification is required and you have no authenticator app yet. "
    "Set one up in the self-service portal, then sign in again."
)
PASSKEY_ONLY: Final = (
    "Access denied: your account signs in with a passkey, which cannot be typed here. "
    "Add an authenticator app in the self-service portal to sign in here."
)
NEEDS_APP: Final = (
    "Access denied: signing in here needs the code from an authenticator app. "
    "Add one in the self-service portal to sign in here."
)
ENTER_CODE: Final = "Enter the code from your authenticator app: "
ENTER_CODE_OR_EMAIL: Final = "Enter the code from your authenticator app, or type email to get a code by email: "
ASK_EMAIL: Final = "Type email to get a sign-in code at your security email: "
ENTER_RECOVERY: Final = "Enter one of your recovery codes: "
WRONG_CODE: Final = "Wrong code, try again. "
EMAIL_SENT: Final = "A code was sent to {where}. Enter it: "
EMAIL_UNAVAILABLE: Final = "Codes by email are not available for this sign-in. "
EMAIL_TOO_SOON: Final = "A code was sent a moment ago; enter it or wait a minute: "
EMAIL_WORD: Final = "email"
APPROVE: Final = "Approve this sign-in at {url} and choose {number}, then press Enter"
APPROVE_OR: Final = {
    frozenset(): ": ",
    frozenset({Method.TOTP}): ". Or type the code from your authenticator app: ",
    frozenset({Method.TOTP, Method.EMAIL}): ". Or type the code from your authenticator app, or type email to get "
                                            "a code by email: ",
    frozenset({Method.EMAIL}): ". Or type email to get a code by email: ",
}
NOT_APPROVED_YET: Final = "Not approved yet. "
#: What a hold-mode user types (after the password, for append clients) to approve on the portal.
HOLD_WORD: Final = "approve"

STATE_PREFIX: Final = b"mfad1"
_STATE_METHOD: Final = {Method.TOTP: b"t", Method.EMAIL: b"e", Method.RECOVERY: b"r", Method.APPROVAL: b"a"}
#: An approval State also carries the number shown and the typed methods offered beside it
#: (one byte), so that "not approved yet" repeats the same prompt without a store read.
_APPROVAL_ALSO: Final = {frozenset(): b"-", frozenset({Method.TOTP}): b"t", frozenset({Method.EMAIL}): b"e",
                         frozenset({Method.TOTP, Method.EMAIL}): b"b"}
_ALSO_OF_BYTE: Final = {ord(v): k for k, v in _APPROVAL_ALSO.items()}
#: A TOTP challenge that also offers the email method: after a wrong code the prompt
#: still says "or type email" (it is the same challenge, with the same choices).
_TOTP_OR_EMAIL: Final = b"o"
_METHOD_OF_STATE: Final = {**{ord(v): k for k, v in _STATE_METHOD.items()}, ord(_TOTP_OR_EMAIL): Method.TOTP}
_MAX_CHALLENGE_ID: Final = 64
_TAG_BYTES: Final = 8
_RETRY_REASONS: Final = frozenset({Reason.WRONG_CODE, Reason.REPLAY})
# The replies without per-request content, built (and their attributes encoded) once:
# a Decision is immutable.
_ACCEPT: Final = Decision.accept()
_REJECT: Final = Decision.reject(DENIED)
_OTP_ONLY_REJECT: Final = Decision.reject(OTP_ONLY_DENIED)


def _accept(copied: tuple[tuple[str, bytes], ...]) -> Decision:
    """The Access-Accept: the prebuilt one, unless an upstream first factor's allowed
    attributes go with it."""
    return Decision.accept(copied=copied) if copied else _ACCEPT


def user_tag(username: str) -> bytes:
    """What a State carries of the user it was made for (not a secret: a consistency check)."""
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).digest()[:_TAG_BYTES]


def encode_state(method: Method, challenge_id: str, username: str, *, email_offered: bool = False) -> bytes:
    kind = _TOTP_OR_EMAIL if method is Method.TOTP and email_offered else _STATE_METHOD[method]
    return STATE_PREFIX + kind + challenge_id.encode("ascii") + b":" + user_tag(username)


def encode_approval_state(number: str, also: frozenset[Method], challenge_id: str, username: str) -> bytes:
    """The State of an approval prompt: its number and what else it offers, then as above."""
    return encode_state(Method.APPROVAL, number + _APPROVAL_ALSO[also].decode() + challenge_id, username)


def approval_of_state(challenge_body: str) -> tuple[str, frozenset[Method], str] | None:
    """(number, other methods offered, challenge id) of an approval State's body."""
    number, also, challenge_id = challenge_body[:2], challenge_body[2:3], challenge_body[3:]
    if not (number.isdigit() and also and ord(also) in _ALSO_OF_BYTE and challenge_id):
        return None
    return number, _ALSO_OF_BYTE[ord(also)], challenge_id


def state_offers_email(state: bytes) -> bool:
    """Whether the challenge of a State (one :func:`decode_state` accepts) offers email too."""
    return state[len(STATE_PREFIX):len(STATE_PREFIX) + 1] == _TOTP_OR_EMAIL


def decode_state(state: bytes) -> tuple[Method, str, bytes] | None:
    """(method being answered, challenge id, user tag), or None for a State mfad did not make."""
    body, sep, tag = state[len(STATE_PREFIX) + 1:].rpartition(b":")
    if not state.startswith(STATE_PREFIX) or not sep or len(tag) != _TAG_BYTES \
            or not 0 < len(body) <= _MAX_CHALLENGE_ID:
        return None
    method = _METHOD_OF_STATE.get(state[len(STATE_PREFIX)])
    if method is None or not body.isascii():
        return None
    return method, body.decode("ascii"), tag


def nas_source(client: RadiusClient, request: RadiusRequest) -> str:
    """The NAS as the source of its requests: its name and address (a CIDR client's hosts
    are each their own source)."""
    return f"nas:{client.name}/{request.source_address}"


class SignInHandler:
    """The :class:`~mfad.radius.handler.RadiusHandler` that asks the core."""

    def __init__(self, signin: SignInService, *, challenge_ttl: int, approve_url: str | None = None,
                 holds: HeldSignIns | None = None) -> None:
        """``challenge_ttl``: the core's challenge lifetime, sent as an Access-Challenge's Session-Timeout;
        ``approve_url``: the portal's Approve sign-in page (None: approval is not offered over RADIUS);
        ``holds``: where hold-mode requests wait (None: hold mode off)."""
        self._signin = signin
        self._ttl = challenge_ttl
        self._approve_url = approve_url
        self.holds = holds

    async def __call__(self, request: RadiusRequest, client: RadiusClient) -> Decision | NoReply | Deferred:
        try:
            return await self._decide(request, client)
        except Unavailable as exc:
            log.warning("store unavailable, RADIUS request from client %s left unanswered: %s", client.name, exc)
            return NO_REPLY
        except InvalidInput as exc:
            log.debug("RADIUS request from client %s refused: %s", client.name, exc.field)
            return self._denied(client)

    async def _decide(self, request: RadiusRequest, client: RadiusClient) -> Decision | Deferred:
        username = request.user_name
        typed = request.password
        if typed is PasswordIssue.ABSENT and request.state is not None:
            typed = ""  # Enter at a challenge prompt: some NASes then send no User-Password at all
        if username is None or isinstance(typed, PasswordIssue):
            return self._denied(client)
        trusted = request.calling_station_id if client.trust_calling_station_id else None
        attempt = Attempt(protocol=PROTOCOL, source=trusted or nas_source(client, request), client=client.name)
        state = request.state
        if state is not None:
            return await self._answer_challenge(state, username, typed, attempt, trusted)
        if client.approval_hold_seconds and self.holds is not None and self._approve_url:
            hold = self._hold_request(client.mode, username, typed, attempt, trusted)
            if hold is not None:
                return await self._held_sign_in(hold, client, attempt, username, trusted)
        result = await self._signin.sign_in(self._request(client.mode, username, typed, attempt, trusted))
        if (client.mode is ClientMode.CHALLENGE and result.outcome is Outcome.SECOND_FACTOR_REQUIRED
                and Method.APPROVAL in result.methods and result.challenge_id and self._approve_url):
            return await self._offer_approval(result.challenge_id, result.methods, attempt, username)
        return self._translate(result, client, username)

    @staticmethod
    def _hold_request(mode: ClientMode, username: str, typed: str, attempt: Attempt,
                      station: str | None) -> SignInRequest | None:
        """The sign-in of a request that asks to be held (``approve`` typed), else None."""
        if mode is ClientMode.APPEND and len(typed) > len(HOLD_WORD) and typed[-len(HOLD_WORD):].lower() == HOLD_WORD:
            return SignInRequest(username=username, first_factor=Password(typed[:-len(HOLD_WORD)]), attempt=attempt,
                                 station=station)
        if mode is ClientMode.OTP_ONLY and typed.strip().lower() == HOLD_WORD:
            return SignInRequest(username=username, first_factor=VOUCHED, attempt=attempt, station=station)
        return None

    async def _held_sign_in(self, request: SignInRequest, client: RadiusClient, attempt: Attempt, username: str,
                            station: str | None) -> Decision | Deferred:
        """The first factor, then a held approval: no reply until it is decided or the hold ends."""
        assert self.holds is not None
        result = await self._signin.sign_in(request)
        if result.outcome is Outcome.ALLOWED:
            return Decision.accept()  # nothing owed (a remembered station, MFA off for the user)
        if not (result.outcome is Outcome.SECOND_FACTOR_REQUIRED and Method.APPROVAL in result.methods
                and result.challenge_id):
            return self._denied(client)
        deferred = self.holds.hold(result.challenge_id, username, attempt, station, client.approval_hold_seconds,
                                   self._denied(client))
        if deferred is None:
            return self._denied(client)
        try:
            await self._signin.start_challenge(result.challenge_id, Method.APPROVAL, attempt,
                                               hold_seconds=client.approval_hold_seconds)
        except (PermissionDenied, NotFound, PreconditionFailed) as exc:
            self.holds.forget(deferred)
            log.info("RADIUS hold refused for client %s: %s", client.name, exc)
            return self._denied(client)
        except BaseException:
            self.holds.forget(deferred)
            raise
        return deferred

    async def _offer_approval(self, challenge_id: str, methods: frozenset[Method], attempt: Attempt,
                              username: str) -> Decision:
        started = await self._signin.start_challenge(challenge_id, Method.APPROVAL, attempt)
        also = frozenset(methods & {Method.TOTP, Method.EMAIL})
        return self._approval_challenge("", started.shown or "", also, challenge_id, username)

    def _approval_challenge(self, lead: str, number: str, also: frozenset[Method], challenge_id: str,
                            username: str) -> Decision:
        prompt = lead + APPROVE.format(url=self._approve_url, number=number) + APPROVE_OR[also]
        return Decision.challenge(prompt, encode_approval_state(number, also, challenge_id, username),
                                  attributes=(("Session-Timeout", self._ttl), ("Prompt", 1)))

    def _request(self, mode: ClientMode, username: str, typed: str, attempt: Attempt,
                 station: str | None) -> SignInRequest:
        """What User-Password means for the client's mode."""
        if mode is ClientMode.CHALLENGE:
            return SignInRequest(username=username, first_factor=Password(typed), attempt=attempt, station=station)
        if mode is ClientMode.APPEND:
            return SignInRequest(username=username, first_factor=PasswordThenCode(typed), attempt=attempt,
                                 station=station)
        return SignInRequest(username=username, first_factor=VOUCHED, code=typed, attempt=attempt, station=station)

    def _translate(self, result: SignInResult, client: RadiusClient, username: str = "") -> Decision:
        """The one table from a sign-in result to a reply."""
        if result.outcome is Outcome.ALLOWED:
            return _accept(result.first_factor_reply)
        if result.outcome is Outcome.REFUSED:
            return self._denied(client)
        if client.mode is ClientMode.OTP_ONLY:
            return _OTP_ONLY_REJECT
        if result.outcome is Outcome.ENROLMENT_REQUIRED:
            return Decision.reject(ENROL_FIRST)
        prompt = _prompt(result.methods)
        if prompt is None or result.challenge_id is None:
            only_passkeys = result.methods and result.methods <= {Method.PASSKEY, Method.U2F, Method.APPROVAL}
            return Decision.reject(PASSKEY_ONLY if only_passkeys else NEEDS_APP)
        method = next(m for m in (Method.TOTP, Method.EMAIL, Method.RECOVERY) if m in result.methods)
        return self._challenge(prompt, method, result.challenge_id, username,
                               email_offered=Method.EMAIL in result.methods)

    async def _answer_challenge(self, state: bytes, username: str, typed: str, attempt: Attempt,
                                station: str | None) -> Decision:
        decoded = decode_state(state)
        if decoded is None:
            return _REJECT
        method, challenge_id, tag = decoded
        if not hmac.compare_digest(tag, user_tag(username)):
            # The State is a bearer token made for one User-Name: another one gets nowhere
            # near the challenge (no try spent, no failure counted against its user).
            log.warning("RADIUS challenge answered with another User-Name (client %s)", attempt.client)
            return _REJECT
        if method is Method.APPROVAL:
            return await self._answer_approval(challenge_id, username, typed, attempt, station)
        if typed.strip().lower() == EMAIL_WORD:
            return await self._start_email(challenge_id, attempt, username)
        answered = recovery.typed_method(method, typed)
        result = await self._signin.complete(challenge_id, answered, typed, attempt, station=station)
        if result.accepted:
            if result.user is None or result.user.username != username:
                log.warning("RADIUS challenge answered with another User-Name (client %s)", attempt.client)
                return _REJECT
            return _accept(result.first_factor_reply)
        if result.tries_left > 0 and result.reason in _RETRY_REASONS:
            email = state_offers_email(state)
            again = ENTER_CODE_OR_EMAIL if email and method is Method.TOTP else _again(method)
            return self._challenge(WRONG_CODE + again, method, challenge_id, username, email_offered=email)
        return _REJECT

    async def _answer_approval(self, body: str, username: str, typed: str, attempt: Attempt,
                               station: str | None) -> Decision:
        """Enter (or any text) asks whether the sign-in was approved; a code is checked as a code."""
        found = approval_of_state(body)
        if found is None:
            return _REJECT
        number, also, challenge_id = found
        code = typed.strip()
        if code.lower() == EMAIL_WORD:
            return await self._start_email(challenge_id, attempt, username)
        if Method.TOTP in also and code.isascii() and code.isdigit():
            answered, response = Method.TOTP, code
        elif recovery.looks_like_code(code):
            answered, response = Method.RECOVERY, code
        else:
            answered, response = Method.APPROVAL, ""
        result = await self._signin.complete(challenge_id, answered, response, attempt, station=station)
        if result.accepted:
            if result.user is None or result.user.username != username:
                log.warning("RADIUS challenge answered with another User-Name (client %s)", attempt.client)
                return _REJECT
            return _accept(result.first_factor_reply)
        if result.reason is Reason.APPROVAL_PENDING:
            return self._approval_challenge(NOT_APPROVED_YET, number, also, challenge_id, username)
        if result.tries_left > 0 and result.reason in _RETRY_REASONS:
            return self._approval_challenge(WRONG_CODE, number, also, challenge_id, username)
        return _REJECT

    async def _start_email(self, challenge_id: str, attempt: Attempt, username: str) -> Decision:
        try:
            started = await self._signin.start_challenge(challenge_id, Method.EMAIL, attempt)
        except NotFound:
            return _REJECT
        except PreconditionFailed:
            # Not offered (or not available yet): the State stays valid for the app's code.
            return self._challenge(EMAIL_UNAVAILABLE + ENTER_CODE, Method.TOTP, challenge_id, username)
        except RateLimited:
            return self._challenge(EMAIL_TOO_SOON, Method.EMAIL, challenge_id, username)
        return self._challenge(EMAIL_SENT.format(where=started.shown or "your security email"), Method.EMAIL,
                               challenge_id, username)

    def _challenge(self, prompt: str, method: Method, challenge_id: str, username: str, *,
                   email_offered: bool = False) -> Decision:
        # Session-Timeout in an Access-Challenge: how long the NAS should wait for the
        # answer (RFC 2865 §5.27); Prompt: the code may be echoed as it is typed.
        return Decision.challenge(prompt, encode_state(method, challenge_id, username, email_offered=email_offered),
                                  attributes=(("Session-Timeout", self._ttl), ("Prompt", 1)))

    @staticmethod
    def _denied(client: RadiusClient) -> Decision:
        return _OTP_ONLY_REJECT if client.mode is ClientMode.OTP_ONLY else _REJECT


def _prompt(methods: frozenset[Method]) -> str | None:
    if Method.TOTP in methods:
        return ENTER_CODE_OR_EMAIL if Method.EMAIL in methods else ENTER_CODE
    if Method.EMAIL in methods:
        return ASK_EMAIL
    if Method.RECOVERY in methods:
        return ENTER_RECOVERY
    return None


def _again(method: Method) -> str:
    return {Method.TOTP: ENTER_CODE, Method.RECOVERY: ENTER_RECOVERY}.get(method, "Enter the code from the email: ")


__all__ = ["SignInHandler", "decode_state", "encode_state", "nas_source"]
