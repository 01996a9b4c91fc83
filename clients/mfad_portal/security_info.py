"""The Security Information page: the signed-in user's passkeys, virtual MFA device, security
email, U2F keys, recovery codes and remembered devices — bind, remove, upgrade, generate, revoke.

mfad decides what may be done (``self_service``, the methods allowed, the re-auth window
for removals and new recovery codes, whether a session signed in with the security email
may remove the devices it presumes lost); the page shows the answer. Removing a device and
making new recovery codes ask mfad first: when mfad wants a fresh second factor
(FAILED_PRECONDITION), the page asks for one inline (:mod:`mfad_portal.step_up`) and
then does it. New recovery codes are shown once, in that one answer, with *Download*
(a text file made in the page, no second request) and *Print*; the portal keeps no copy.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError, FailedPrecondition, Method
from mfad_client import types as t
from mfad_portal import messages, step_up
from mfad_portal.i18n import N_
from mfad_portal.signin import (
    begin_totp,
    confirm_totp,
    passkey_created,
    passkey_options,
)
from mfad_portal.web import BadRequest, Ctx, Portal, view

HOME = "/security"
RECOVERY = "/security/recovery"


def routes(portal: Portal) -> list[Route]:
    def r(path: str, name: str, fn: Any, method: str = "POST") -> Route:
        return Route(path, view(portal, name, fn, needs="signed_in"), methods=[method])

    return [
        r("/security", "security", show, "GET"),
        r("/security/totp", "security_totp", bind_totp),
        r("/security/totp/confirm", "security_totp_confirm", bind_totp_confirm),
        r("/security/email", "security_email", bind_email),
        r("/security/email/confirm", "security_email_confirm", confirm_email),
        r("/security/passkey/options", "security_passkey_options", new_passkey_options),
        r("/security/passkey", "security_passkey", new_passkey),
        r("/security/u2f/options", "security_u2f_options", upgrade_options),
        r("/security/u2f", "security_u2f", upgrade),
        r("/security/devices/remove", "security_remove", remove),
        r("/security/proof", "security_proof", present_proof),
        r("/security/proof/email", "security_proof_email", send_proof_email),
        r(RECOVERY, "security_recovery", show_recovery, "GET"),
        r(RECOVERY, "security_recovery_new", new_recovery_codes),
        *step_up.routes(portal),
        r("/security/remembered/revoke", "security_revoke", revoke_one),
        r("/security/remembered/revoke-all", "security_revoke_all", revoke_all),
    ]



# --- the page ----------------------------------------------------------------------------------
async def show(ctx: Ctx) -> Response:
    return await page(ctx)


async def page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    enrollment = ctx.portal.client.enrollment
    try:
        seen = await enrollment.devices(step_up.token(ctx))
        recovery = await enrollment.recovery_status(step_up.token(ctx))
        remembered: tuple[t.RememberedDevice, ...] = ()
        if seen.self_service:
            remembered = await enrollment.list_remembered(step_up.token(ctx))
    except ClientError as exc:
        return await ctx.failure("security", exc)
    by_method: dict[str, list[dict[str, Any]]] = {m.value: [] for m in Method}
    lost = set(seen.lost_device_ids)
    for d in seen.listing.devices:
        if d.method is not None:
            by_method[d.method.value].append({**device_view(d), "lost": d.id in lost})
    # mfad refuses the removal itself; the page only leaves out the buttons it would refuse.
    may_remove = seen.self_service and (not seen.emergency_session or seen.email_recovery)
    # mfad refuses a binding until the owed proof is in; the page asks for it first.
    proof = ctx.session.proof_owed if seen.self_service else ""
    return ctx.render("security.html", status=status, error=error, manage=seen.self_service,
                      bind=seen.self_service and not proof, proof=proof,
                      masked_email=ctx.session.pending.get("proof_email", ""),
                      emergency=seen.emergency_session, may_remove=may_remove, any_lost=bool(lost),
                      allowed=[m.value for m in seen.allowed_methods], lockout_risk=seen.listing.lockout_risk,
                      passkeys=by_method["passkey"], totp=by_method["totp"], email=by_method["email"],
                      u2f=by_method["u2f"], remembered=remembered, recovery=recovery,
                      passkey_begin="/security/passkey/options", passkey_finish="/security/passkey")


def device_view(d: t.Device) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "state": d.state.value if d.state else "", "created_at": d.created_at,
            "last_used_at": d.last_used_at, "passkey": d.passkey, "email_address": d.email_address or d.name}


async def failed(ctx: Ctx, operation: str, exc: ClientError) -> Response:
    """On a refusal: the Security Information page again, with mfad's words."""
    return await ctx.failure(operation, exc, page=lambda text, status: page(ctx, text, status))


# --- the proof before a first device (policy enrolment_proof) -------------------------------------
async def send_proof_email(ctx: Ctx) -> Response:
    if ctx.session.proof_owed != "email_code":
        raise BadRequest(400)
    try:
        started = await ctx.portal.client.enrollment.start_enrolment_proof(step_up.token(ctx),
                                                                           client=ctx.client_info())
    except ClientError as exc:
        return await failed(ctx, "enrolment_proof_email", exc)
    ctx.session.pending["proof_email"] = started.masked_email
    return ctx.redirect(HOME + "#proof")


async def present_proof(ctx: Ctx) -> Response:
    if not ctx.session.proof_owed:
        raise BadRequest(400)
    code = await ctx.field("code")
    try:
        accepted = await ctx.portal.client.enrollment.present_enrolment_proof(step_up.token(ctx), code,
                                                                              client=ctx.client_info())
    except ClientError as exc:
        return await failed(ctx, "enrolment_proof", exc)
    if not accepted:
        return await page(ctx, messages.PROOF_REFUSED[ctx.session.proof_owed == "email_code"], 400)
    ctx.session.proof_owed = ""
    ctx.session.pending.pop("proof_email", None)
    return ctx.redirect(HOME, N_("Your code was accepted. You can now bind your first MFA device."))


# --- virtual MFA device ------------------------------------------------------------------------
async def bind_totp(ctx: Ctx) -> Response:
    return await begin_totp(ctx, "/security/totp/confirm", on_error=lambda text, status: page(ctx, text, status))


async def bind_totp_confirm(ctx: Ctx) -> Response:
    bound = await confirm_totp(ctx)
    if isinstance(bound, Response):
        return bound
    return ctx.redirect(HOME, N_("Your virtual MFA device is bound."))


# --- security email ----------------------------------------------------------------------------
async def bind_email(ctx: Ctx) -> Response:
    try:
        sent = await ctx.portal.client.enrollment.begin_email_binding(
            step_up.token(ctx), (await ctx.field("address")).strip(), client=ctx.client_info())
    except ClientError as exc:
        return await failed(ctx, "bind_email", exc)
    ctx.session.pending["email"] = {"device_id": sent.device_id, "masked": sent.masked_email}
    return email_page(ctx)


def email_page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    pending = ctx.session.pending.get("email")
    if pending is None:
        raise BadRequest(400)
    return ctx.render("email_confirm.html", status=status, error=error, masked_email=pending["masked"])


async def confirm_email(ctx: Ctx) -> Response:
    pending = ctx.session.pending.get("email")
    if pending is None:
        raise BadRequest(400)
    try:
        await ctx.portal.client.enrollment.confirm_email_binding(step_up.token(ctx), pending["device_id"],
                                                                 (await ctx.field("code")).strip(),
                                                                 client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("confirm_code", exc, page=lambda text, status: email_page(ctx, text, status))
    ctx.session.pending.pop("email", None)
    return ctx.redirect(HOME, N_("Your security email is bound."))


# --- passkeys and U2F upgrades -----------------------------------------------------------------
async def new_passkey_options(ctx: Ctx) -> Response:
    return await passkey_options(ctx)


async def new_passkey(ctx: Ctx) -> Response:
    bound = await passkey_created(ctx)
    if isinstance(bound, Response):
        return bound
    ctx.session.flash = N_("Your passkey is created.")
    return JSONResponse({"redirect": HOME})


async def upgrade_options(ctx: Ctx) -> Response:
    device_id = str((await ctx.json()).get("device_id", ""))
    if not device_id:
        raise BadRequest(400)
    return await passkey_options(ctx, upgrade=device_id)


async def upgrade(ctx: Ctx) -> Response:
    registration = ctx.session.pending.pop("registration", None)
    credential = (await ctx.json()).get("credential")
    if registration is None or not isinstance(credential, dict):
        raise BadRequest(400)
    try:
        await ctx.portal.client.enrollment.complete_u2f_upgrade(
            step_up.token(ctx), registration, json.dumps(credential), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("upgrade", exc)
    ctx.session.flash = N_("Your security key is now a passkey.")
    return JSONResponse({"redirect": HOME})


# --- removing a device, with the step-up mfad may ask for --------------------------------------
async def remove(ctx: Ctx) -> Response:
    device_id = await ctx.field("device_id")
    if not device_id:
        raise BadRequest(400)
    return await step_up.begin(ctx, "remove", device_id=device_id)


async def removal(ctx: Ctx, asked_for_step_up: bool) -> Response:
    device_id = step_up.waiting(ctx)["device_id"]
    try:
        await ctx.portal.client.enrollment.unbind(step_up.token(ctx), device_id, client=ctx.client_info())
    except FailedPrecondition as exc:
        if asked_for_step_up:
            return await failed(ctx, "remove", exc)
        return await step_up.page(ctx)
    except ClientError as exc:
        return await failed(ctx, "remove", exc)
    step_up.done(ctx)
    if ctx.wants_json:
        ctx.session.flash = N_("The device is removed.")
        return JSONResponse({"redirect": HOME})
    return ctx.redirect(HOME, N_("The device is removed."))


# --- recovery codes ----------------------------------------------------------------------------
async def show_recovery(ctx: Ctx) -> Response:
    """The page that offers a new set (where a passkey step-up comes back to)."""
    return ctx.render("recovery.html")


async def new_recovery_codes(ctx: Ctx) -> Response:
    return await step_up.begin(ctx, "recovery")


async def generation(ctx: Ctx, asked_for_step_up: bool) -> Response:
    step_up.waiting(ctx)
    if ctx.wants_json:  # after a passkey step-up: codes are shown on a page of their own, not in JSON
        step_up.done(ctx)
        ctx.session.flash = N_("It is you. Now make your new recovery codes.")
        return JSONResponse({"redirect": RECOVERY})
    try:
        made = await ctx.portal.client.enrollment.generate_recovery_codes(step_up.token(ctx), client=ctx.client_info())
    except FailedPrecondition as exc:
        if asked_for_step_up:
            return await failed(ctx, "recovery", exc)
        return await step_up.page(ctx)
    except ClientError as exc:
        return await failed(ctx, "recovery", exc)
    step_up.done(ctx)
    # Shown once: the codes are in this answer only (no-store), never kept in the session.
    text = ctx.t(N_("Recovery codes for %(user)s. Each code works once."), user=ctx.session.username)
    download = "\n".join([text, "", *made.codes, ""])
    return ctx.render("recovery_codes.html", codes=made.codes, status_left=made.status,
                      download="data:text/plain;charset=utf-8," + quote(download),
                      filename=f"mfad-recovery-codes-{ctx.session.username}.txt")


step_up.register("remove", step_up.Sensitive(
    operation="unbind_device", why=N_("Removing a device needs a fresh second step."), cancel=HOME, run=removal))
step_up.register("recovery", step_up.Sensitive(
    operation="recovery_codes", why=N_("New recovery codes need a fresh second step."), cancel=HOME,
    run=generation))


# --- remembered devices ------------------------------------------------------------------------
async def revoke_one(ctx: Ctx) -> Response:
    remembered_id = await ctx.field("id")
    if not remembered_id:
        raise BadRequest(400)
    return await revoke(ctx, remembered_id, all=False)


async def revoke_all(ctx: Ctx) -> Response:
    return await revoke(ctx, "", all=True)


async def revoke(ctx: Ctx, remembered_id: str, *, all: bool) -> Response:
    try:
        await ctx.portal.client.enrollment.revoke_remembered(step_up.token(ctx), remembered_id, all=all)
    except ClientError as exc:
        return await failed(ctx, "revoke", exc)
    return ctx.redirect(HOME, N_("Forgotten: that device asks for a second step again at its next sign-in."))
