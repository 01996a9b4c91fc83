"""Confirming it is you before a sensitive change: the inline step-up every such page shares.

A page that makes a sensitive change (removing a device, new recovery codes, an
administrator's change) calls :func:`begin` with the name of its :class:`Sensitive`
action. The action calls mfad; when mfad answers FAILED_PRECONDITION (the session's
second factor is older than the policy's re-auth window) and no step-up was asked for
yet, the action shows :func:`page`: the user proves a factor of their own
(``VerifySensitive`` with the session, so mfad records it on the session), then the
action runs again. mfad decides whether a factor is fresh enough; the portal only
asks. Which action waits, and with what, is kept in the server-side session: a form
cannot name another one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError, Method, StepUpOutcome
from mfad_client import types as t
from mfad_portal import messages
from mfad_portal.web import BadRequest, Ctx, Portal, view

#: Runs the action; ``asked_for_step_up`` is True after the user just confirmed it is them.
Run = Callable[[Ctx, bool], Awaitable[Response]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sensitive:
    #: The operation mfad's audit row names for the step-up.
    operation: str
    #: One line saying why a fresh second step is asked for (a catalog text).
    why: str
    #: Where "Cancel" goes.
    cancel: str
    run: Run


_ACTIONS: dict[str, Sensitive] = {}


def register(name: str, action: Sensitive) -> None:
    _ACTIONS[name] = action


def routes(portal: Portal) -> list[Route]:
    def r(path: str, name: str, fn: Any) -> Route:
        return Route(path, view(portal, name, fn, needs="signed_in"), methods=["POST"])

    return [
        r("/security/step-up", "security_step_up", step_up_code),
        r("/security/step-up/email", "security_step_up_email", step_up_email),
        r("/security/step-up/passkey/options", "security_step_up_options", step_up_passkey_options),
        r("/security/step-up/passkey", "security_step_up_passkey", step_up_passkey),
    ]


async def begin(ctx: Ctx, name: str, **values: str) -> Response:
    """Start sensitive action ``name`` with ``values`` (kept for it in the session)."""
    ctx.session.pending["sensitive"] = {"action": name, **values}
    ctx.session.pending.pop("step_up", None)
    return await _ACTIONS[name].run(ctx, False)


def waiting(ctx: Ctx) -> dict[str, str]:
    """What the waiting action was started with; 400 when none waits."""
    pending = ctx.session.pending.get("sensitive")
    if pending is None or pending["action"] not in _ACTIONS:
        raise BadRequest(400)
    return dict(pending)


def done(ctx: Ctx) -> None:
    """The action happened: nothing waits any more."""
    ctx.session.pending.pop("sensitive", None)
    ctx.session.pending.pop("step_up", None)


def _action(ctx: Ctx) -> Sensitive:
    return _ACTIONS[waiting(ctx)["action"]]


def token(ctx: Ctx) -> str:
    assert ctx.session.token is not None  # the views let only signed-in sessions in
    return ctx.session.token


async def page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    """How the user may confirm it is them: the methods of their active devices."""
    action = _action(ctx)
    try:
        seen = await ctx.portal.client.enrollment.devices(token(ctx))
    except ClientError as exc:
        return await ctx.failure("step_up", exc)
    methods = {d.method.value for d in seen.listing.devices
               if d.method is not None and d.state is t.DeviceState.ACTIVE and d.method in seen.allowed_methods}
    step_up = ctx.session.pending.get("step_up", {})
    return ctx.render("step_up.html", status=status, error=error, methods=methods, why=action.why,
                      cancel=action.cancel, masked_email=step_up.get("masked", ""))


async def _verify(ctx: Ctx, method: Method, **proof: Any) -> t.StepUp:
    return await ctx.portal.client.auth.verify_sensitive(operation=_action(ctx).operation, session=token(ctx),
                                                         method=method, client=ctx.client_info(), **proof)


async def step_up_code(ctx: Ctx) -> Response:
    method = await ctx.field("method")
    if method not in ("totp", "email"):
        raise BadRequest(400)
    action = _action(ctx)
    challenge_id = ctx.session.pending.get("step_up", {}).get("challenge", "") if method == "email" else ""
    try:
        answer = await _verify(ctx, Method(method), challenge_id=challenge_id, code=(await ctx.field("code")).strip())
    except ClientError as exc:
        return await ctx.failure("step_up", exc, page=lambda text, status: page(ctx, text, status))
    if answer.outcome is not StepUpOutcome.VERIFIED:
        return await page(ctx, messages.STEP_UP_REFUSED)
    return await action.run(ctx, True)


async def step_up_email(ctx: Ctx) -> Response:
    try:
        answer = await _verify(ctx, Method.EMAIL)
    except ClientError as exc:
        return await ctx.failure("step_up", exc, page=lambda text, status: page(ctx, text, status))
    if answer.challenge is None:
        return await page(ctx, messages.STEP_UP_REFUSED)
    ctx.session.pending["step_up"] = {"challenge": answer.challenge.challenge_id,
                                      "masked": answer.challenge.masked_email}
    return await page(ctx)


async def step_up_passkey_options(ctx: Ctx) -> Response:
    method = str((await ctx.json()).get("method", ""))
    if method not in ("passkey", "u2f"):
        raise BadRequest(400)
    try:
        answer = await _verify(ctx, Method(method))
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
    action = _action(ctx)
    try:
        answer = await _verify(ctx, Method(pending["method"]), challenge_id=pending["challenge"],
                               assertion_json=json.dumps(credential))
    except ClientError as exc:
        return await ctx.failure("step_up", exc)
    if answer.outcome is not StepUpOutcome.VERIFIED:
        return JSONResponse({"error": ctx.t(messages.STEP_UP_REFUSED)}, status_code=400)
    return await action.run(ctx, True)
