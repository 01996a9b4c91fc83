"""The administrators' console under ``/admin``: overview, users, policy, audit, caller tokens.

The console decides nothing. Every page and every change calls mfad's ``Admin`` API for the
signed-in user (``MfadClient.admin_as`` with the session's token), and mfad checks that
user's role as it is *now* on each call: a page the role does not allow answers 403 with
mfad's ``PERMISSION_DENIED``, a role taken away ends the console at the next request.
The pages ask mfad which permissions the role holds (``GetConsoleAccess``) only to leave
out links and forms the role could not use. Sensitive changes (policy, caller tokens,
unbinding a device) go through the inline step-up of :mod:`mfad_portal.step_up`, which
keeps what is to be done in the server-side session.

This module holds what the pages share and the overview; the users, policy, audit and
token pages are in the ``console_*`` modules (each with its ``routes``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError, FailedPrecondition
from mfad_client.client import Admin
from mfad_portal import step_up
from mfad_portal.i18n import N_
from mfad_portal.web import Ctx, Portal, View, view

ADMIN = "/admin"
#: The console's pages, in the order of its navigation, with the permission each needs.
PAGES = (("/admin", N_("Overview"), "console"), ("/admin/users", N_("Users"), "view_users"),
         ("/admin/policy", N_("Policy"), "view_policy"), ("/admin/rules", N_("Group rules"), "view_policy"),
         ("/admin/audit", N_("Audit"), "view_audit"),
         ("/admin/tokens", N_("Caller tokens"), "view_tokens"))

#: Loads what a page shows, as the signed-in user.
Load = Callable[[Admin], Awaitable[Mapping[str, Any]]]
#: Does a sensitive change with the values kept for it; a page to show, or None for "done".
Change = Callable[[Ctx, Admin, dict[str, str]], Awaitable[Response | None]]


def route(portal: Portal, path: str, name: str, fn: View, method: str = "GET") -> Route:
    return Route(path, view(portal, name, fn, needs="signed_in"), methods=[method])


def routes(portal: Portal) -> list[Route]:
    return [route(portal, ADMIN, "admin_overview", overview)]


def staff(ctx: Ctx) -> Admin:
    """The Admin API as the signed-in user (their role decides every call)."""
    return ctx.portal.client.admin_as(step_up.token(ctx))


async def show(ctx: Ctx, template: str, load: Load, *, error: str = "", status: int = 200,
               operation: str = "console", **values: Any) -> Response:
    """A console page: what the role allows as mfad says now, then what the page loads
    (mfad's refusal worded for ``operation``)."""
    admin = staff(ctx)
    try:
        access = await admin.console_access()
        loaded = await load(admin)
    except ClientError as exc:
        return await ctx.failure(operation, exc)
    nav = [(path, label) for path, label, needs in PAGES if access.may(needs)]
    return ctx.render(template, status=status, error=error, access=access, nav=nav, here=ctx.request.url.path,
                      **{**loaded, **values})


async def change(ctx: Ctx, operation: str, call: Callable[[Admin], Awaitable[object]], *, back: str, done: str,
                 again: Callable[[str, int], Awaitable[Response]]) -> Response:
    """A change that needs no step-up: done → back to ``back`` saying ``done``; refused → the
    page again (``again``) with mfad's words."""
    try:
        await call(staff(ctx))
    except ClientError as exc:
        return await ctx.failure(operation, exc, page=again)
    return ctx.redirect(back, done)


def sensitive(name: str, *, operation: str, why: str, cancel: str, call: Change,
              back: Callable[[dict[str, str]], str], done: str) -> None:
    """Register a console change that needs a fresh second factor: mfad says when
    (FAILED_PRECONDITION), then the step-up page asks and the change runs again."""

    async def run(ctx: Ctx, asked_for_step_up: bool) -> Response:
        values = step_up.waiting(ctx)
        try:
            shown = await call(ctx, staff(ctx), values)
        except FailedPrecondition as exc:
            if asked_for_step_up:
                return await ctx.failure(name, exc)
            return await step_up.page(ctx)
        except ClientError as exc:
            step_up.done(ctx)
            return await ctx.failure(name, exc)
        step_up.done(ctx)
        if shown is not None:
            return shown
        if ctx.wants_json:  # after a passkey step-up
            ctx.session.flash = done
            return JSONResponse({"redirect": back(values)})
        return ctx.redirect(back(values), done)

    step_up.register(name, step_up.Sensitive(operation=operation, why=why, cancel=cancel, run=run))


# --- the overview ------------------------------------------------------------------------------
async def overview(ctx: Ctx) -> Response:
    async def load(admin: Admin) -> Mapping[str, Any]:
        return {"counts": await admin.overview()}

    return await show(ctx, "console_overview.html", load)
