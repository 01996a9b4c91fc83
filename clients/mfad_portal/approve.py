"""The Approve sign-in page: the signed-in user's sign-ins waiting for approval (a VPN that
showed "approve this sign-in at … and choose 47"), docs/approval.md.

For each one the page shows where and when it comes from and three numbers; the user picks
the one their VPN shows and confirms with their passkey — a fresh assertion for a step-up
challenge of this session, handed to mfad together with the number in one
``DecideApproval`` — or, where mfad says the policy allows it (``proof_methods``), a code
from their authenticator app typed on the page (a plain form, no JavaScript). **Deny — this wasn't me** refuses it, and then offers to lock the
account (mfad audits it for the administrators). mfad decides everything: which numbers,
whether the number and the passkey are right, whether the approval is still open.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ApprovalOutcome, ClientError, Method
from mfad_portal import step_up
from mfad_portal.i18n import N_
from mfad_portal.web import BadRequest, Ctx, Portal, view

PAGE = "/approve"
#: The step-up operation mfad's audit names for the passkey of an approval.
OPERATION = "approve_signin"

APPROVED = N_("Approved. Go back to your VPN and press Enter to finish signing in.")
NOT_APPROVED = N_("The sign-in was not approved: the number or the passkey did not match, or it expired. "
                  "If it was you, start the sign-in again.")
NOT_APPROVED_CODE = N_("The sign-in was not approved: the number or the code did not match, or it expired. "
                       "If it was you, wait for the next code and try again.")
DENIED = N_("The sign-in is refused.")
LOCKED = N_("Your account is locked and your administrator is told. Ask them to unlock it when it is safe.")
CHOOSE = N_("Choose the number your VPN shows.")
ENTER_CODE = N_("Enter the code from your authenticator app.")


def routes(portal: Portal) -> list[Route]:
    def r(path: str, name: str, fn: Any, method: str = "POST") -> Route:
        return Route(path, view(portal, name, fn, needs="signed_in"), methods=[method])

    return [
        r(PAGE, "approve", show, "GET"),
        r(f"{PAGE}/passkey/options", "approve_options", passkey_options),
        r(f"{PAGE}/passkey", "approve_passkey", approve),
        r(f"{PAGE}/code", "approve_code", approve_code),
        r(f"{PAGE}/deny", "approve_deny", deny),
        r(f"{PAGE}/lock", "approve_lock", lock),
    ]



async def show(ctx: Ctx) -> Response:
    return await page(ctx)


async def page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    try:
        listing = await ctx.portal.client.enrollment.approvals(step_up.token(ctx))
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    return ctx.render("approve.html", status=status, error=error, pending=listing.approvals,
                      with_code=Method.TOTP in listing.proof_methods)


async def passkey_options(ctx: Ctx) -> Response:
    """The passkey request for approving ``approval_id`` with ``number`` (kept for the answer).
    A held approval (hold mode: the NAS shows no number) is approved without one."""
    body = await ctx.json()
    approval_id, number = str(body.get("approval_id", "")), str(body.get("number", ""))
    if not approval_id or len(approval_id) > 64:
        raise BadRequest(400)
    if not number and await _is_held(ctx, approval_id):
        number = "00"
    if not (number.isascii() and number.isdigit() and len(number) == 2):
        return JSONResponse({"error": ctx.t(CHOOSE)}, status_code=400)
    try:
        started = await ctx.portal.client.auth.verify_sensitive(operation=OPERATION, session=step_up.token(ctx),
                                                                method=Method.PASSKEY, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    if started.challenge is None:
        return JSONResponse({"error": ctx.t(NOT_APPROVED)}, status_code=400)
    ctx.session.pending["approval"] = {"id": approval_id, "number": int(number),
                                       "challenge": started.challenge.challenge_id}
    return JSONResponse({"options": json.loads(started.challenge.request_options_json)})


async def _is_held(ctx: Ctx, approval_id: str) -> bool:
    try:
        pending = await ctx.portal.client.enrollment.pending_approvals(step_up.token(ctx))
    except ClientError:
        return False
    return any(p.id == approval_id and p.held for p in pending)


async def approve(ctx: Ctx) -> Response:
    asked = ctx.session.pending.pop("approval", None)
    credential = (await ctx.json()).get("credential")
    if asked is None or not isinstance(credential, dict):
        raise BadRequest(400)
    try:
        outcome = await ctx.portal.client.enrollment.approve(
            step_up.token(ctx), asked["id"], asked["number"], challenge_id=asked["challenge"],
            assertion_json=json.dumps(credential), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    if outcome is not ApprovalOutcome.APPROVED:
        return JSONResponse({"error": ctx.t(NOT_APPROVED)}, status_code=400)
    ctx.session.flash = APPROVED
    return JSONResponse({"redirect": PAGE})


async def approve_code(ctx: Ctx) -> Response:
    """The number and a TOTP code, as a plain form (mfad checks the policy, the code and the number)."""
    approval_id, number = await ctx.field("approval_id"), await ctx.field("number")
    code = (await ctx.field("code")).strip()
    if not approval_id or len(approval_id) > 64:
        raise BadRequest(400)
    if not (number.isascii() and number.isdigit() and len(number) == 2):
        return await page(ctx, CHOOSE, 400)
    if not (code.isascii() and code.isdigit() and len(code) <= 10):  # mfad checks the rest
        return await page(ctx, ENTER_CODE, 400)
    try:
        outcome = await ctx.portal.client.enrollment.approve_with_code(
            step_up.token(ctx), approval_id, int(number), code, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    if outcome is not ApprovalOutcome.APPROVED:
        return await page(ctx, NOT_APPROVED_CODE, 400)
    return ctx.redirect(PAGE, APPROVED)


async def deny(ctx: Ctx) -> Response:
    approval_id = await ctx.field("approval_id")
    if not approval_id or len(approval_id) > 64:
        raise BadRequest(400)
    try:
        outcome = await ctx.portal.client.enrollment.deny(step_up.token(ctx), approval_id, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    if outcome is not ApprovalOutcome.DENIED:
        return await page(ctx, NOT_APPROVED)
    return ctx.render("approve_denied.html")


async def lock(ctx: Ctx) -> Response:
    try:
        await ctx.portal.client.enrollment.lock_account(step_up.token(ctx), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("approve", exc)
    return ctx.render("message.html", heading=LOCKED)

