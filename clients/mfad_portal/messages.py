"""What a page says when mfad did not do something: one table from (operation, gRPC status)
to a text for people and an HTTP status.

mfad decides; this table only words its answer. An operation's own line wins over the
general one for the same status. Sign-in refusals read the same whatever the reason
(mfad answers REFUSED alike for an unknown user, a wrong password or code and a locked
account; input mfad cannot even read gets the same words here, so nothing tells them apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mfad_client import ClientError
from mfad_portal.i18n import N_

Code = grpc.StatusCode

SIGN_IN_REFUSED = N_("The sign-in did not succeed. Check your username, password and verification code, "
                     "then try again.")
SESSION_ENDED = N_("Your session has ended. Please sign in again.")
FORM_EXPIRED = N_("This form has expired. Go back, reload the page and try again.")
BAD_INPUT = N_("Check what you entered and try again.")
CODE_REFUSED = N_("The verification code was not accepted. Enter the current code and try again.")
STEP_UP_REFUSED = N_("That did not confirm it is you. Try again.")
PASSKEY_FAILED = N_("The passkey was not created. Try again, or use another method.")
NOT_FOUND_PAGE = N_("There is no such page.")
HTTPS_ONLY = N_("This site is served over https only.")
CONSOLE_DENIED = N_("Your console role does not allow this.")
#: An enrolment proof refused (wrong, expired, used, none issued: the same words), by "is a mailed code".
PROOF_REFUSED = {
    False: N_("The enrolment code was not accepted. Check it, or ask your administrator for a new one."),
    True: N_("The code was not accepted. Enter the code from the latest email, or send a new one."),
}
#: After a step-up mfad still wants a fresh factor: only a passkey counts (the policy's roles_need_passkey).
CONSOLE_PASSKEY = N_("Your administrator requires your passkey to confirm console changes. Try again and use "
                     "your passkey.")
CODE_WAIT = N_("A code was sent a moment ago. Wait a minute before you ask for another.")


@dataclass(frozen=True, slots=True)
class Said:
    text: str
    http_status: int


_GENERAL: dict[Code, Said] = {
    Code.UNAUTHENTICATED: Said(SESSION_ENDED, 401),
    Code.PERMISSION_DENIED: Said(N_("Your administrator does not allow this."), 403),
    Code.FAILED_PRECONDITION: Said(N_("This cannot be done right now."), 409),
    Code.INVALID_ARGUMENT: Said(BAD_INPUT, 400),
    Code.NOT_FOUND: Said(N_("That item no longer exists. Reload the page."), 404),
    Code.ALREADY_EXISTS: Said(N_("That exists already."), 409),
    Code.RESOURCE_EXHAUSTED: Said(N_("Too many attempts. Wait a moment, then try again."), 429),
    Code.UNAVAILABLE: Said(N_("The sign-in service is not available right now. Try again in a moment."), 503),
    Code.DEADLINE_EXCEEDED: Said(N_("The sign-in service is not available right now. Try again in a moment."), 503),
}

_BY_OPERATION: dict[tuple[str, Code], Said] = {
    ("sign_in", Code.INVALID_ARGUMENT): Said(SIGN_IN_REFUSED, 200),
    ("sign_in", Code.FAILED_PRECONDITION): Said(SIGN_IN_REFUSED, 200),
    ("sign_in", Code.NOT_FOUND): Said(SIGN_IN_REFUSED, 200),
    ("bind_totp", Code.FAILED_PRECONDITION): Said(
        N_("You have a virtual MFA device already. Remove it before you bind another."), 409),
    ("confirm_code", Code.INVALID_ARGUMENT): Said(CODE_REFUSED, 400),
    ("confirm_code", Code.FAILED_PRECONDITION): Said(CODE_REFUSED, 400),
    ("bind_email", Code.FAILED_PRECONDITION): Said(
        N_("You have a security email already. Remove it before you bind another."), 409),
    ("bind_email", Code.INVALID_ARGUMENT): Said(N_("Enter a valid email address."), 400),
    ("bind_email", Code.RESOURCE_EXHAUSTED): Said(CODE_WAIT, 429),
    ("send_code", Code.RESOURCE_EXHAUSTED): Said(CODE_WAIT, 429),
    ("enrolment_proof_email", Code.RESOURCE_EXHAUSTED): Said(CODE_WAIT, 429),
    ("enrolment_proof_email", Code.FAILED_PRECONDITION): Said(
        N_("No email address is known for your account. Ask your administrator for an enrolment code."), 409),
    ("enrolment_proof", Code.INVALID_ARGUMENT): Said(PROOF_REFUSED[False], 400),
    ("passkey", Code.INVALID_ARGUMENT): Said(PASSKEY_FAILED, 400),
    ("passkey", Code.FAILED_PRECONDITION): Said(PASSKEY_FAILED, 400),
    ("upgrade", Code.FAILED_PRECONDITION): Said(
        N_("This key cannot become a passkey: it cannot verify you with a PIN or biometrics. "
           "It keeps working as a security key."), 409),
    ("upgrade", Code.INVALID_ARGUMENT): Said(
        N_("The key was not upgraded. It keeps working as a security key."), 400),
    ("remove", Code.FAILED_PRECONDITION): Said(
        N_("This device cannot be removed now. Your administrator may require it."), 409),
    ("remove", Code.PERMISSION_DENIED): Said(
        N_("You cannot remove devices yourself now (for example after signing in with your security email). "
           "Ask your administrator to remove a lost device."), 403),
    ("recovery", Code.PERMISSION_DENIED): Said(N_("Your administrator does not allow recovery codes."), 403),
    ("console", Code.PERMISSION_DENIED): Said(N_(
        "Your console role does not allow this. If your administrator requires a passkey for the console, "
        "sign out, then sign in with your passkey."), 403),
    ("console_policy", Code.INVALID_ARGUMENT): Said(
        N_("The policy was not changed: a value is not allowed. Check it and try again."), 400),
    ("admin_create_user", Code.ALREADY_EXISTS): Said(N_("A user with that name exists already."), 409),
    ("admin_create_user", Code.INVALID_ARGUMENT): Said(
        N_("That username cannot be used: it starts with a letter or a digit, then has only letters, digits and "
           ". _ - @ +, at most 64 characters."), 400),
    ("admin_enrolment_code", Code.NOT_FOUND): Said(N_("There is no such user. Check the name and search again."), 404),
    ("admin_enrolment_code", Code.PERMISSION_DENIED): Said(CONSOLE_DENIED, 403),
    ("admin_user", Code.NOT_FOUND): Said(N_("There is no such user. Check the name and search again."), 404),
    ("admin_user", Code.PERMISSION_DENIED): Said(CONSOLE_DENIED, 403),
    ("console_token_revoke", Code.NOT_FOUND): Said(N_("There is no caller token of that name."), 404),
    ("console_policy", Code.FAILED_PRECONDITION): Said(CONSOLE_PASSKEY, 409),
    ("console_token_create", Code.FAILED_PRECONDITION): Said(CONSOLE_PASSKEY, 409),
    ("console_token_revoke", Code.FAILED_PRECONDITION): Said(CONSOLE_PASSKEY, 409),
    ("console_unbind", Code.FAILED_PRECONDITION): Said(CONSOLE_PASSKEY, 409),
    ("step_up", Code.INVALID_ARGUMENT): Said(STEP_UP_REFUSED, 400),
    ("step_up", Code.FAILED_PRECONDITION): Said(STEP_UP_REFUSED, 400),
}

_UNKNOWN = Said(N_("Something went wrong. Try again in a moment."), 500)


def said(operation: str, error: ClientError) -> Said:
    """The words for ``error`` (raised by mfad for ``operation``)."""
    return _BY_OPERATION.get((operation, error.code)) or _GENERAL.get(error.code) or _UNKNOWN
