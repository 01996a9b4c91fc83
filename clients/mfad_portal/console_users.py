"""The console's users: search by prefix, paging, create, and one user's page (enable or
disable, set the password, unbind a lost device with a reason, reset a lock-out, revoke
remembered devices, recovery codes left, issue a one-time enrolment code — offered at once
after the user's last device is unbound —, that user's audit trail)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError
from mfad_client import types as t
from mfad_client.client import Admin
from mfad_portal import step_up
from mfad_portal.console import change, route, sensitive, show, staff
from mfad_portal.i18n import N_
from mfad_portal.web import BadRequest, Ctx, Portal

USERS = "/admin/users"
ENROLMENT_HOURS = 24
UNBOUND = N_("The device is unbound. The user's sessions are ended.")
PAGE_SIZE = 25
TRAIL = 20


def user_url(username: str) -> str:
    return "/admin/user?" + urlencode({"name": username})


def routes(portal: Portal) -> list[Route]:
    return [
        route(portal, USERS, "admin_users", users),
        route(portal, USERS, "admin_user_create", create, "POST"),
        route(portal, "/admin/user", "admin_user", user),
        route(portal, "/admin/user/enable", "admin_user_enable", enable, "POST"),
        route(portal, "/admin/user/disable", "admin_user_disable", disable, "POST"),
        route(portal, "/admin/user/password", "admin_user_password", set_password, "POST"),
        route(portal, "/admin/user/unbind", "admin_user_unbind", unbind, "POST"),
        route(portal, "/admin/user/lockout", "admin_user_lockout", reset_lockout, "POST"),
        route(portal, "/admin/user/remembered", "admin_user_remembered", revoke_remembered, "POST"),
        route(portal, "/admin/user/enrolment-code", "admin_user_enrolment_code", issue_enrolment_code, "POST"),
    ]


# --- the list ----------------------------------------------------------------------------------
async def users(ctx: Ctx, error: str = "", status: int = 200, typed: Mapping[str, str] | None = None) -> Response:
    """The list; ``typed``: what the create form held when it was refused (never the password)."""
    prefix = ctx.request.query_params.get("prefix", "").strip()
    after = ctx.request.query_params.get("page", "")

    async def load(admin: Admin) -> Mapping[str, Any]:
        found = await admin.list_users(page_size=PAGE_SIZE, page_token=after, prefix=prefix)
        following = USERS + "?" + urlencode({"prefix": prefix, "page": found.next_page_token}) \
            if found.next_page_token else ""
        return {"users": found.users, "next_page": following, "first_page": USERS + "?" + urlencode(
            {"prefix": prefix}) if after else ""}

    return await show(ctx, "console_users.html", load, error=error, status=status, prefix=prefix,
                      user_url=user_url, typed=typed or {})


async def create(ctx: Ctx) -> Response:
    username = (await ctx.field("username")).strip()
    kind = await ctx.field("kind")
    password = await ctx.field("password")
    typed = {"username": username, "kind": kind}
    if not username or kind not in ("local", "directory"):
        return await users(ctx, N_("Enter a username and choose how the user signs in."), 400, typed)
    if kind == "local" and not password:
        return await users(ctx, N_("A local user needs a password."), 400, typed)
    return await change(ctx, "admin_create_user",
                        lambda admin: admin.create_user(username, password if kind == "local" else None),
                        back=user_url(username), done=N_("The user is created."),
                        again=lambda text, status: users(ctx, text, status, typed))


# --- one user ----------------------------------------------------------------------------------
async def user(ctx: Ctx, error: str = "", status: int = 200, username: str | None = None,
               issued: t.EnrolmentCode | None = None) -> Response:
    """One user's page; ``issued``: an enrolment code just issued, shown in this answer only."""
    name = username if username is not None else ctx.request.query_params.get("name", "")
    if not name:
        raise BadRequest(400)

    async def load(admin: Admin) -> Mapping[str, Any]:
        details = await admin.get_user(name)
        return {"details": details, "remembered": await admin.list_remembered(name),
                "recovery": await admin.recovery_status(name),
                "trail": (await admin.query_audit(username=name, page_size=TRAIL)).events,
                "audit_url": "/admin/audit?" + urlencode({"user": name})}

    return await show(ctx, "console_user.html", load, error=error, status=status, operation="admin_user",
                      username=name, issued=issued, hours_default=ENROLMENT_HOURS,
                      offer_code=ctx.request.query_params.get("unbound") == "last")


async def target(ctx: Ctx) -> str:
    name = (await ctx.field("username")).strip()
    if not name:
        raise BadRequest(400)
    return name


async def on_user_page(ctx: Ctx, operation: str, call: Any, done: str) -> Response:
    name = await target(ctx)
    return await change(ctx, operation, call, back=user_url(name), done=done,
                        again=lambda text, status: user(ctx, text, status, name))


async def enable(ctx: Ctx) -> Response:
    name = await target(ctx)
    return await on_user_page(ctx, "admin_enable", lambda a: a.enable_user(name), N_("The user may sign in again."))


async def disable(ctx: Ctx) -> Response:
    name = await target(ctx)
    reason = (await ctx.field("reason")).strip()
    return await on_user_page(ctx, "admin_disable", lambda a: a.disable_user(name, reason),
                              N_("The user is disabled: every sign-in is refused."))


async def set_password(ctx: Ctx) -> Response:
    name = await target(ctx)
    password = await ctx.field("password")
    if not password:
        return await user(ctx, N_("Enter the new password."), 400, name)
    if password != await ctx.field("confirm"):
        return await user(ctx, N_("The two passwords are not the same."), 400, name)
    return await on_user_page(ctx, "admin_password", lambda a: a.set_password(name, password),
                              N_("The password is set. The user's remembered devices are forgotten."))


async def reset_lockout(ctx: Ctx) -> Response:
    name = await target(ctx)
    return await on_user_page(ctx, "admin_lockout", lambda a: a.reset_lockout(name), N_("The lock-out is reset."))


async def revoke_remembered(ctx: Ctx) -> Response:
    name = await target(ctx)
    remembered_id = await ctx.field("id")
    return await on_user_page(ctx, "admin_remembered",
                              lambda a: a.revoke_remembered(name, remembered_id, all=not remembered_id),
                              N_("Forgotten: that device asks for a second step again at its next sign-in."))


async def unbind(ctx: Ctx) -> Response:
    name = await target(ctx)
    device_id = await ctx.field("device_id")
    reason = (await ctx.field("reason")).strip()
    if not device_id:
        raise BadRequest(400)
    if not reason:
        return await user(ctx, N_("Say why the device is unbound (for the audit log)."), 400, name)
    return await step_up.begin(ctx, "console_unbind", username=name, device_id=device_id, reason=reason)


async def issue_enrolment_code(ctx: Ctx) -> Response:
    name = await target(ctx)
    typed = (await ctx.field("hours")).strip() or str(ENROLMENT_HOURS)
    if not (typed.isascii() and typed.isdigit()) or not 1 <= int(typed) <= 720:
        return await user(ctx, N_("Enter how many hours the code is valid: 1 to 720."), 400, name)
    try:
        issued = await staff(ctx).issue_enrolment_code(name, int(typed))
    except ClientError as exc:
        return await ctx.failure("admin_enrolment_code", exc,
                                 page=lambda text, status: user(ctx, text, status, name))
    return await user(ctx, username=name, issued=issued)


async def unbinding(ctx: Ctx, admin: Admin, values: dict[str, str]) -> Response | None:
    listing = await admin.unbind_device(values["username"], values["device_id"], values["reason"])
    if any(d.state is t.DeviceState.ACTIVE for d in listing.devices):
        return None
    # The last device is gone: the user's page offers an enrolment code at once.
    back = user_url(values["username"]) + "&unbound=last"
    if ctx.wants_json:
        ctx.session.flash = UNBOUND
        return JSONResponse({"redirect": back})
    return ctx.redirect(back, UNBOUND)


sensitive("console_unbind", operation="unbind_device", why=N_("Unbinding a user's device needs a fresh second step."),
          cancel=USERS, call=unbinding, back=lambda values: user_url(values["username"]),
          done=UNBOUND)
