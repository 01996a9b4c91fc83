"""The Security Information page: the signed-in user's passkeys, virtual MFA device, security
email, U2F keys and remembered devices — bind, remove, upgrade, revoke.

mfad decides what may be done (``self_service``, the methods allowed, the re-auth window
for removals); the page shows the answer. Removing a device asks mfad first: when mfad
wants a fresh second factor (FAILED_PRECONDITION), the page asks for one inline
(VerifySensitive with the session) and then removes the device.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError, FailedPrecondition, Method, StepUpOutcome
from mfad_client import types as t
from mfad_portal import messages
from mfad_portal.i18n import N_
from mfad_portal.signin import (
    begin_totp,
    confirm_totp,
    passkey_created,
    passkey_options,
)
from mfad_portal.web import BadRequest, Ctx, Portal, view

HOME = "/security"
STEP_UP_OPERATION = "unbind_device"


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
        r("/security/step-up", "security_step_up", step_up_code),
        r("/security/step-up/email", "security_step_up_email", step_up_email),
        r("/security/step-up/passkey/options", "security_step_up_options", step_up_passkey_options),
        r("/security/step-up/passkey", "security_step_up_passkey", step_up_passkey),
        r("/security/remembered/revoke", "security_revoke", revoke_one),
        r("/security/remembered/revoke-all", "security_revoke_all", revoke_all),
    ]


def token(ctx: Ctx) -> str:
    assert ctx.session.token is not None  # the view let only signed-in sessions in
    return ctx.session.token


# --- the page ----------------------------------------------------------------------------------
async def show(ctx: Ctx) -> Response:
    return await page(ctx)


async def page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    enrollment = ctx.portal.client.enrollment
    try:
        seen = await enrollment.devices(token(ctx))
        remembered: tuple[t.RememberedDevice, ...] = ()
        if seen.self_service:
            remembered = await enrollment.list_remembered(token(ctx))
    except ClientError as exc:
        return await ctx.failure("security", exc)
    by_method: dict[str, list[dict[str, Any]]] = {m.value: [] for m in Method}
    for d in seen.listing.devices:
        if d.method is not None:
            by_method[d.method.value].append(device_view(d))
    return ctx.render("security.html", status=status, error=error, manage=seen.self_service,
                      allowed=[m.value for m in seen.allowed_methods], lockout_risk=seen.listing.lockout_risk,
                      passkeys=by_method["passkey"], totp=by_method["totp"], email=by_method["email"],
                      u2f=by_method["u2f"], remembered=remembered,
                      passkey_begin="/security/passkey/options", passkey_finish="/security/passkey")


def device_view(d: t.Device) -> dict[str, Any]:
    return {"id": d.id, "name": d.name, "state": d.state.value if d.state else "", "created_at": d.created_at,
            "last_used_at": d.last_used_at, "passkey": d.passkey, "email_address": d.email_address or d.name}


async def failed(ctx: Ctx, operation: str, exc: ClientError) -> Response:
    """On a refusal: the Security Information page again, with mfad's words."""
    return await ctx.failure(operation, exc, page=lambda text, status: page(ctx, text, status))


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
        sent = await ctx.portal.client.enrollment.begin_email_binding(token(ctx), (await ctx.field("address")).strip(),
                                                                      client=ctx.client_info())
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
        await ctx.portal.client.enrollment.confirm_email_binding(token(ctx), pending["device_id"],
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
        await ctx.portal.client.enrollment.complete_u2f_upgrade(token(ctx), registration, json.dumps(credential),
                                                                client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("upgrade", exc)
    ctx.session.flash = N_("Your security key is now a passkey.")
    return JSONResponse({"redirect": HOME})


# --- removing a device, with the step-up mfad may ask for --------------------------------------
async def remove(ctx: Ctx) -> Response:
    device_id = await ctx.field("device_id")
    if not device_id:
        raise BadRequest(400)
    ctx.session.pending["remove"] = device_id
    return await removal(ctx, asked_for_step_up=False)


async def removal(ctx: Ctx, *, asked_for_step_up: bool) -> Response:
    device_id = ctx.session.pending.get("remove")
    if device_id is None:
        raise BadRequest(400)
    try:
        await ctx.portal.client.enrollment.unbind(token(ctx), device_id, client=ctx.client_info())
    except FailedPrecondition as exc:
        if asked_for_step_up:
            return await failed(ctx, "remove", exc)
        return await step_up_page(ctx)
    except ClientError as exc:
        return await failed(ctx, "remove", exc)
    ctx.session.pending.pop("remove", None)
    ctx.session.pending.pop("step_up", None)
    if ctx.wants_json:
        ctx.session.flash = N_("The device is removed.")
        return JSONResponse({"redirect": HOME})
    return ctx.redirect(HOME, N_("The device is removed."))


async def step_up_page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    """How the user may confirm it is them: the methods of their active devices."""
    try:
        seen = await ctx.portal.client.enrollment.devices(token(ctx))
    except ClientError as exc:
        return await failed(ctx, "remove", exc)
    methods = {d.method.value for d in seen.listing.devices
               if d.method is not None and d.state is t.DeviceState.ACTIVE and d.method in seen.allowed_methods}
    step_up = ctx.session.pending.get("step_up", {})
    return ctx.render("step_up.html", status=status, error=error, methods=methods,
                      masked_email=step_up.get("masked", ""))


async def step_up_code(ctx: Ctx) -> Response:
    method = await ctx.field("method")
    if method not in ("totp", "email") or "remove" not in ctx.session.pending:
        raise BadRequest(400)
    challenge_id = ctx.session.pending.get("step_up", {}).get("challenge", "") if method == "email" else ""
    try:
        answer = await ctx.portal.client.auth.verify_sensitive(
            operation=STEP_UP_OPERATION, session=token(ctx), method=Method(method), challenge_id=challenge_id,
            code=(await ctx.field("code")).strip(), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("step_up", exc, page=lambda text, status: step_up_page(ctx, text, status))
    if answer.outcome is not StepUpOutcome.VERIFIED:
        return await step_up_page(ctx, messages.STEP_UP_REFUSED)
    return await removal(ctx, asked_for_step_up=True)


async def step_up_email(ctx: Ctx) -> Response:
    if "remove" not in ctx.session.pending:
        raise BadRequest(400)
    try:
        answer = await ctx.portal.client.auth.verify_sensitive(
            operation=STEP_UP_OPERATION, session=token(ctx), method=Method.EMAIL, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("step_up", exc, page=lambda text, status: step_up_page(ctx, text, status))
    if answer.challenge is None:
        return await step_up_page(ctx, messages.STEP_UP_REFUSED)
    ctx.session.pending["step_up"] = {"challenge": answer.challenge.challenge_id,
                                      "masked": answer.challenge.masked_email}
    return await step_up_page(ctx)


async def step_up_passkey_options(ctx: Ctx) -> Response:
    method = str((await ctx.json()).get("method", ""))
    if method not in ("passkey", "u2f") or "remove" not in ctx.session.pending:
        raise BadRequest(400)
    try:
        answer = await ctx.portal.client.auth.verify_sensitive(
            operation=STEP_UP_OPERATION, session=token(ctx), method=Method(method), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("step_up", exc)
    if answer.challenge is None:
        return JSONResponse({"error": ctx.t(messages.STEP_UP_REFUSED)}, status_code=400)
    ctx.session.pending["step_up"] = {"challenge": answer.challenge.challenge_id, "method": method}
    return JSONResponse({"options": json.loads(answer.challenge.request_options_json)})


async def step_up_passkey(ctx: Ctx) -> Response:
    pending = ctx.session.pending.get("step_up", {})
    credential = (await ctx.json()).get("credential")
    if "challenge" not in pending or "method" not in pending or not isinstance(credential, dict):
        raise BadRequest(400)
    try:
        answer = await ctx.portal.client.auth.verify_sensitive(
            operation=STEP_UP_OPERATION, session=token(ctx), method=Method(pending["method"]),
            challenge_id=pending["challenge"], assertion_json=json.dumps(credential), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("step_up", exc)
    if answer.outcome is not StepUpOutcome.VERIFIED:
        return JSONResponse({"error": ctx.t(messages.STEP_UP_REFUSED)}, status_code=400)
    return await removal(ctx, asked_for_step_up=True)


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
        await ctx.portal.client.enrollment.revoke_remembered(token(ctx), remembered_id, all=all)
    except ClientError as exc:
        return await failed(ctx, "revoke", exc)
    return ctx.redirect(HOME, N_("Forgotten: that device asks for a second step again at its next sign-in."))
