"""The console's caller tokens: list (with revoked ones), create (the secret shown once, in
that one answer), revoke. Creating and revoking need a fresh second factor."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import Role
from mfad_client.client import Admin
from mfad_portal import step_up
from mfad_portal.console import route, sensitive, show
from mfad_portal.i18n import N_
from mfad_portal.web import Ctx, Portal

TOKENS = "/admin/tokens"
ROLES = tuple(r.value for r in Role)


def routes(portal: Portal) -> list[Route]:
    return [route(portal, TOKENS, "admin_tokens", tokens),
            route(portal, TOKENS, "admin_token_create", create, "POST"),
            route(portal, TOKENS + "/revoke", "admin_token_revoke", revoke, "POST")]


async def listing(admin: Admin) -> Mapping[str, Any]:
    return {"tokens": await admin.list_caller_tokens(include_revoked=True), "roles": ROLES}


async def tokens(ctx: Ctx, error: str = "", status: int = 200, typed: Mapping[str, str] | None = None) -> Response:
    return await show(ctx, "console_tokens.html", listing, error=error, status=status, typed=typed or {})


async def create(ctx: Ctx) -> Response:
    name = (await ctx.field("name")).strip()
    role = await ctx.field("role")
    days = (await ctx.field("days")).strip()
    typed = {"name": name, "role": role, "days": days}
    if not name or role not in ROLES:
        return await tokens(ctx, N_("Enter a name and choose a role."), 400, typed)
    if days and not (days.isascii() and days.isdigit() and 1 <= int(days) <= 3650):
        return await tokens(ctx, N_("Expires after: a whole number of days from 1 to 3650, or empty."), 400, typed)
    return await step_up.begin(ctx, "console_token_create", token_name=name, role=role, days=days)


async def creating(ctx: Ctx, admin: Admin, values: dict[str, str]) -> Response:
    if ctx.wants_json:  # after a passkey step-up: the secret is shown on a page, never in JSON
        ctx.session.flash = N_("It is you. Now create the token.")
        return JSONResponse({"redirect": TOKENS})
    expires_at = datetime.now(UTC) + timedelta(days=int(values["days"])) if values["days"] else None
    made = await admin.create_caller_token(values["token_name"], Role(values["role"]), expires_at=expires_at)

    async def load(admin: Admin) -> Mapping[str, Any]:
        return {**await listing(admin), "made": made}

    return await show(ctx, "console_tokens.html", load)


async def revoke(ctx: Ctx) -> Response:
    name = (await ctx.field("name")).strip()
    if not name:
        return await tokens(ctx, N_("Choose a token to revoke."), 400)
    return await step_up.begin(ctx, "console_token_revoke", token_name=name)


async def revoking(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    await admin.revoke_caller_token(values["token_name"])


sensitive("console_token_create", operation="create_caller_token", why=N_("A new caller token needs a fresh second step."),
          cancel=TOKENS, call=creating, back=lambda _: TOKENS, done=N_("The token is created."))
sensitive("console_token_revoke", operation="revoke_caller_token", why=N_("Revoking a caller token needs a fresh second step."),
          cancel=TOKENS, call=revoking, back=lambda _: TOKENS, done=N_("The token is revoked: it stops working at once."))
