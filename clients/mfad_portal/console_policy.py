"""The console's policy page: every field of the global policy with a line saying what it
does; a change is shown (old → new) before it is saved, then saved with a fresh second
factor, and mfad audits it. The proposed change waits in the server-side session between
the two steps, so what is saved is what was shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from mfad_client import ClientError, Method, MfaRequired
from mfad_client import types as t
from mfad_client.client import Admin
from mfad_portal import messages, step_up
from mfad_portal.console import route, sensitive, show, staff
from mfad_portal.i18n import N_
from mfad_portal.web import BadRequest, Ctx, Portal

POLICY = "/admin/policy"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    help: str
    #: "choice" (one of ``choices``), "methods", "flag" or "number".
    kind: str
    low: int = 0
    high: int = 0
    choices: tuple[str, ...] = ()


CHOICES = tuple(m.value for m in MfaRequired)
PROOFS = tuple(p.value for p in t.EnrolmentProof)
METHODS = tuple(m.value for m in Method)
FIELDS = (
    Field("mfa_required", N_("MFA required"),
          N_("all: every user needs a second factor; enrolled: only users with a device; off: nobody."), "choice",
          choices=CHOICES),
    Field("allowed_methods", N_("Allowed methods"), N_("The second factors users may bind and sign in with."),
          "methods"),
    Field("self_service", N_("Self-service"), N_("Users may bind and remove their own devices on the portal."),
          "flag"),
    Field("remember_device", N_("Remember devices"),
          N_("Users may let a browser skip the second factor for a number of days."), "flag"),
    Field("remember_days", N_("Remember for (days)"), N_("How long a remembered device skips the second factor."),
          "number", 1, 365),
    Field("sensitive_reauth_seconds", N_("Fresh second factor (seconds)"),
          N_("How recent a second factor must be for a sensitive change (removing a device, this policy)."),
          "number", 30, 86400),
    Field("require_backup_method", N_("Require a backup method"),
          N_("Users must bind a second method type so that one lost device does not lock them out."), "flag"),
    Field("enrolment_proof", N_("Enrolment proof"),
          N_("What a user with no device must show before binding the first one: none (the password alone), "
             "access_code (an enrolment code from an administrator; recommended) or email_code (a mailed code)."),
          "choice", choices=PROOFS),
    Field("email_recovery", N_("Recovery with the security email"),
          N_("After an emergency sign-in with their security email, users may remove their lost devices "
             "themselves. Off: an administrator removes them."), "flag"),
    Field("roles_need_passkey", N_("Console needs a passkey"),
          N_("Administrators, helpdesk and auditors can use the console only after signing in with a passkey, "
             "and confirm sensitive changes with it."), "flag"),
    Field("approval_with_totp", N_("Approve sign-ins with a TOTP code"),
          N_("The Approve sign-in page also takes a code from the authenticator app instead of a passkey."), "flag"),
    Field("approval_email_notice", N_("Mail that an approval is waiting"),
          N_("Users get a mail linking to the Approve sign-in page when a sign-in waits for them "
             "(at most one every 15 minutes; it cannot approve anything)."), "flag"),
    Field("approval_hold", N_("Hold mode for VPN approvals"),
          N_("RADIUS clients with approval_hold_seconds may keep a sign-in unanswered until the user approves it "
             "on the portal (no number matching). Off forbids it for every client."), "flag"),
)
#: How a refused choice is worded, by field.
BAD_CHOICE = {"mfa_required": N_("Choose all, enrolled or off for MFA required."),
              "enrolment_proof": N_("Choose none, access_code or email_code for the enrolment proof.")}


class Unreadable(Exception):
    """A form value that is not one of its field's values."""


def routes(portal: Portal) -> list[Route]:
    return [route(portal, POLICY, "admin_policy", policy),
            route(portal, POLICY, "admin_policy_preview", preview, "POST"),
            route(portal, POLICY + "/save", "admin_policy_save", save, "POST")]


def as_text(p: t.Policy) -> dict[str, str]:
    """The policy as the form shows it (one text per field)."""
    return {"mfa_required": p.mfa_required.value if p.mfa_required else "",
            "allowed_methods": ",".join(m.value for m in p.allowed_methods),
            "self_service": str(p.self_service).lower(), "remember_device": str(p.remember_device).lower(),
            "remember_days": str(p.remember_days), "sensitive_reauth_seconds": str(p.sensitive_reauth_seconds),
            "require_backup_method": str(p.require_backup_method).lower(),
            "enrolment_proof": p.enrolment_proof.value,
            "email_recovery": str(p.email_recovery).lower(), "roles_need_passkey": str(p.roles_need_passkey).lower(),
            "approval_with_totp": str(p.approval_with_totp).lower(),
            "approval_email_notice": str(p.approval_email_notice).lower(),
            "approval_hold": str(p.approval_hold).lower()}


def read_form(form: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for f in FIELDS:
        raw = form.get(f.name, "").strip()
        if f.kind == "flag":
            values[f.name] = "true" if raw == "on" else "false"
        elif f.kind == "methods":
            chosen = [m for m in METHODS if form.get(f"method_{m}") == "on"]
            if not chosen:
                raise Unreadable(N_("Allow at least one method."))
            values[f.name] = ",".join(chosen)
        elif f.kind == "choice":
            if raw not in f.choices:
                raise Unreadable(BAD_CHOICE[f.name])
            values[f.name] = raw
        else:
            if not (raw.isascii() and raw.isdigit()) or not f.low <= int(raw) <= f.high:
                raise Unreadable(N_("Enter whole numbers in the ranges shown."))
            values[f.name] = str(int(raw))
    return values


def as_call(values: Mapping[str, str]) -> dict[str, Any]:
    """The stored texts as ``Admin.set_policy`` arguments."""
    out: dict[str, Any] = {}
    for f in FIELDS:
        value = values.get(f.name)
        if value is None:
            continue
        if f.kind == "flag":
            out[f.name] = value == "true"
        elif f.kind == "methods":
            out[f.name] = [Method(m) for m in value.split(",")]
        elif f.name == "enrolment_proof":
            out[f.name] = t.EnrolmentProof(value)
        elif f.kind == "choice":
            out[f.name] = MfaRequired(value)
        else:
            out[f.name] = int(value)
    return out


async def current(admin: Admin) -> Mapping[str, Any]:
    return {"values": as_text(await admin.get_policy()), "fields": FIELDS, "methods": METHODS}


def as_typed(form: Mapping[str, str]) -> dict[str, str]:
    """What the form held, as the form shows it: a refused change is shown again to correct."""
    chosen = ",".join(m for m in METHODS if form.get(f"method_{m}") == "on")
    return {f.name: chosen if f.kind == "methods" else ("true" if form.get(f.name) == "on" else "false")
            if f.kind == "flag" else form.get(f.name, "").strip()[:16] for f in FIELDS}


async def policy(ctx: Ctx, error: str = "", status: int = 200, typed: Mapping[str, str] | None = None) -> Response:
    shown: dict[str, Any] = {"values": typed} if typed else {}  # typed: what to correct, over the stored
    return await show(ctx, "console_policy.html", current, error=error, status=status, **shown)


async def preview(ctx: Ctx) -> Response:
    """Step one: what would change, shown before anything is saved."""
    try:
        proposed = read_form(await ctx.form())
    except Unreadable as bad:
        return await policy(ctx, str(bad), 400, as_typed(await ctx.form()))
    admin = staff(ctx)
    try:
        # Reviewing is for those who may save (mfad says who): an auditor reads the policy only.
        if not (await admin.console_access()).may("manage_policy"):
            return ctx.render("message.html", status=403, heading=messages.CONSOLE_DENIED)
        now = as_text(await admin.get_policy())
    except ClientError as exc:
        return await ctx.failure("console", exc)
    changes = {name: value for name, value in proposed.items() if now[name] != value}
    if not changes:
        return await policy(ctx, N_("Nothing would change."), 400)
    ctx.session.pending["policy"] = changes
    rows = [(f, now[f.name], changes[f.name]) for f in FIELDS if f.name in changes]

    async def load(_: Admin) -> Mapping[str, Any]:
        return {"rows": rows}

    return await show(ctx, "console_policy_confirm.html", load)


async def save(ctx: Ctx) -> Response:
    """Step two: the change shown, with a fresh second factor."""
    changes = ctx.session.pending.pop("policy", None)
    if not changes:
        raise BadRequest(400)
    return await step_up.begin(ctx, "console_policy", **changes)


async def saving(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    await admin.set_policy(**as_call(values))


sensitive("console_policy", operation="set_policy", why=N_("Changing the policy needs a fresh second step."),
          cancel=POLICY, call=saving, back=lambda _: POLICY, done=N_("The policy is changed."))
