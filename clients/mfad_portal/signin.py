"""The sign-in page: username and password, then what mfad asks for — a second factor, or
binding a first device (passkey or virtual MFA device only) — and the usernameless passkey.

Each route reads its form, calls one ``mfad_client`` method and shows the answer. What
is pending between two steps (the challenge, the methods mfad offered, a binding in
progress) lives in the server-side portal session, never in the page: a form cannot
claim a challenge or a method it was not given.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mfad_client import ClientError, Method, SignInOutcome
from mfad_client import types as t
from mfad_portal import messages
from mfad_portal.i18n import N_
from mfad_portal.web import REMEMBER_COOKIE, BadRequest, Ctx, Portal, view

METHOD_NAMES = {"passkey": N_("Passkey"), "u2f": N_("Security key"), "totp": N_("Virtual MFA device"),
                "email": N_("Security email"), "recovery": N_("Recovery code")}
SIGNED_IN_HOME = "/security"


def routes(portal: Portal) -> list[Route]:
    def r(path: str, name: str, fn: Any, method: str, needs: str | None = None) -> Route:
        return Route(path, view(portal, name, fn, needs=needs), methods=[method], name=f"{name}_{method.lower()}")

    return [
        r("/signin", "sign_in", show_sign_in, "GET"),
        r("/signin", "sign_in", sign_in, "POST"),
        r("/signin/verify", "verify", show_verify, "GET"),
        r("/signin/verify/code", "verify_code", verify_code, "POST"),
        r("/signin/verify/email", "send_email_code", send_email_code, "POST"),
        r("/signin/verify/passkey/options", "verify_passkey_options", verify_passkey_options, "POST"),
        r("/signin/verify/passkey", "verify_passkey", verify_passkey, "POST"),
        r("/signin/passkey/options", "usernameless_options", usernameless_options, "POST"),
        r("/signin/proof", "proof", show_proof, "GET", "enrolling"),
        r("/signin/proof", "proof", present_proof, "POST", "enrolling"),
        r("/signin/proof/email", "proof_email", send_proof_email, "POST", "enrolling"),
        r("/signin/bind", "bind", show_bind, "GET", "enrolling"),
        r("/signin/bind/totp", "bind_totp", bind_totp, "POST", "enrolling"),
        r("/signin/bind/totp/confirm", "bind_totp_confirm", bind_totp_confirm, "POST", "enrolling"),
        r("/signin/bind/passkey/options", "bind_passkey_options", bind_passkey_options, "POST", "enrolling"),
        r("/signin/bind/passkey", "bind_passkey", bind_passkey, "POST", "enrolling"),
        r("/signout", "sign_out", sign_out, "POST"),
    ]


# --- username and password ---------------------------------------------------------------------
async def show_sign_in(ctx: Ctx) -> Response:
    if ctx.session.is_signed_in:
        return ctx.redirect(SIGNED_IN_HOME)
    return sign_in_page(ctx)


def sign_in_page(ctx: Ctx, error: str = "", status: int = 200, username: str = "") -> Response:
    return ctx.render("signin.html", status=status, error=error, username=username)


async def sign_in(ctx: Ctx) -> Response:
    username, password = await ctx.field("username"), await ctx.field("password")
    try:
        begun = await ctx.portal.client.auth.begin_sign_in(
            username, password, remembered_token=ctx.request.cookies.get(REMEMBER_COOKIE, "")[:256],
            client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("sign_in", exc, page=lambda text, status: sign_in_page(ctx, text, status, username))
    if begun.outcome is SignInOutcome.REFUSED:
        return sign_in_page(ctx, messages.SIGN_IN_REFUSED, 200, username)
    return first_factor_passed(ctx, begun, username)


def first_factor_passed(ctx: Ctx, begun: t.SignIn, username: str) -> Response:
    if begun.outcome is SignInOutcome.ALLOWED and begun.session is not None:
        remember(ctx, begun.remembered)
        signed_in(ctx, begun.username or username, begun.session)
        return ctx.redirect(SIGNED_IN_HOME)
    if begun.outcome is SignInOutcome.ENROLMENT_REQUIRED and begun.session is not None:
        signed_in(ctx, username, begun.session)
        ctx.session.pending = {"bind_methods": [m.value for m in begun.methods]}
        if begun.session.proof_owed is not None:
            # mfad refuses a binding until the proof is in; the page asks for it first.
            ctx.session.pending["proof"] = begun.session.proof_owed.value
            return ctx.redirect("/signin/proof")
        return ctx.redirect("/signin/bind")
    # Approval is for sign-ins elsewhere (a VPN); here the passkey itself is used.
    methods = [m.value for m in begun.methods if m is not Method.APPROVAL]
    ctx.session.pending = {"challenge": begun.challenge_id, "methods": methods,
                           "remember_days": begun.remember_days, "username": username,
                           "email_to": begun.masked_email}
    return ctx.redirect("/signin/verify")


def signed_in(ctx: Ctx, username: str, session: t.Session) -> None:
    ctx.session = ctx.portal.sessions.sign_in(ctx.session, username, session)


def remember(ctx: Ctx, token: t.RememberedToken | None) -> None:
    if token is None:
        return
    max_age = 0
    if token.expires_at is not None:
        max_age = max(1, int((token.expires_at - datetime.now(UTC)).total_seconds()))
    ctx.set_cookie(REMEMBER_COOKIE, token.token, max_age)


# --- the second factor -------------------------------------------------------------------------
def challenge(ctx: Ctx, method: str | None = None) -> dict[str, Any]:
    """The sign-in in progress; ``method`` must be one mfad offered for it."""
    pending = ctx.session.pending
    if "challenge" not in pending or method is not None and method not in pending["methods"]:
        raise BadRequest(400)
    return pending


async def show_verify(ctx: Ctx) -> Response:
    if "challenge" not in ctx.session.pending:
        return ctx.redirect("/signin")
    return verify_page(ctx, ctx.request.query_params.get("method", ""))


def verify_page(ctx: Ctx, method: str, error: str = "", status: int = 200) -> Response:
    pending = ctx.session.pending
    methods: list[str] = pending["methods"]
    if method not in methods:
        method = methods[0] if methods else "totp"
    # The security email is the way back when the usual device is lost ("Lost your device?"),
    # offered apart from the other methods whenever the user has one of those too.
    emergency = "email" in methods and any(m != "email" for m in methods)
    return ctx.render("verify.html", status=status, error=error, method=method,
                      others=[m for m in methods if m != method and not (emergency and m == "email")],
                      method_names=METHOD_NAMES, lost_offer=emergency and method != "email",
                      emergency=emergency and method == "email",
                      remember_days=pending["remember_days"],
                      masked_email=pending.get("masked_email", "") if method == "email" else "",
                      email_to=pending.get("email_to", ""))


async def verify_code(ctx: Ctx) -> Response:
    method = await ctx.field("method")
    pending = challenge(ctx, method)
    if method not in ("totp", "email", "recovery"):
        raise BadRequest(400)
    try:
        done = await ctx.portal.client.auth.complete_challenge(
            pending["challenge"], Method(method), code=(await ctx.field("code")).strip(),
            remember_device=await ctx.field("remember") == "1" and pending["remember_days"] > 0,
            client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("sign_in", exc, page=lambda text, status: verify_page(ctx, method, text, status))
    if done.outcome is not SignInOutcome.ALLOWED or done.session is None:
        return verify_page(ctx, method, messages.SIGN_IN_REFUSED)
    return second_factor_passed(ctx, done)


def second_factor_passed(ctx: Ctx, done: t.Completion) -> Response:
    assert done.session is not None
    remember(ctx, done.remembered)
    signed_in(ctx, done.username, done.session)
    return ctx.redirect(SIGNED_IN_HOME)


async def send_email_code(ctx: Ctx) -> Response:
    pending = challenge(ctx, "email")
    try:
        sent = await ctx.portal.client.auth.start_challenge(pending["challenge"], Method.EMAIL,
                                                            client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("send_code", exc, page=lambda text, status: verify_page(ctx, "email", text, status))
    pending["masked_email"] = sent.masked_email
    return ctx.redirect("/signin/verify?method=email")


async def verify_passkey_options(ctx: Ctx) -> Response:
    method = str((await ctx.json()).get("method", ""))
    pending = challenge(ctx, method)
    if method not in ("passkey", "u2f"):
        raise BadRequest(400)
    try:
        details = await ctx.portal.client.auth.start_challenge(pending["challenge"], Method(method),
                                                               client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("sign_in", exc)
    return JSONResponse({"options": json.loads(details.request_options_json)})


async def verify_passkey(ctx: Ctx) -> Response:
    body = await ctx.json()
    method = str(body.get("method", ""))
    pending = challenge(ctx, method)
    if method not in ("passkey", "u2f") or not isinstance(body.get("credential"), dict):
        raise BadRequest(400)
    try:
        done = await ctx.portal.client.auth.complete_challenge(
            pending["challenge"], Method(method), assertion_json=json.dumps(body["credential"]),
            remember_device=body.get("remember") is True and pending["remember_days"] > 0, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("sign_in", exc)
    if done.outcome is not SignInOutcome.ALLOWED or done.session is None:
        return JSONResponse({"error": ctx.t(messages.SIGN_IN_REFUSED)}, status_code=400)
    second_factor_passed(ctx, done)
    return JSONResponse({"redirect": SIGNED_IN_HOME})


async def usernameless_options(ctx: Ctx) -> Response:
    """"Sign in with a passkey": no username; the discoverable credential names the user."""
    client = ctx.portal.client
    try:
        begun = await client.auth.begin_sign_in("", None, client=ctx.client_info())
        if begun.outcome is not SignInOutcome.SECOND_FACTOR_REQUIRED:
            return JSONResponse({"error": ctx.t(messages.SIGN_IN_REFUSED)}, status_code=400)
        details = await client.auth.start_challenge(begun.challenge_id, Method.PASSKEY, client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("sign_in", exc)
    ctx.session.pending = {"challenge": begun.challenge_id, "methods": ["passkey"],
                           "remember_days": begun.remember_days, "username": ""}
    return JSONResponse({"options": json.loads(details.request_options_json)})


# --- binding at first sign-in ------------------------------------------------------------------
# --- the proof before a first device (policy enrolment_proof) -------------------------------------
async def show_proof(ctx: Ctx) -> Response:
    if "proof" not in ctx.session.pending:
        return ctx.redirect("/signin/bind")
    return proof_page(ctx)


def proof_page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    pending = ctx.session.pending
    return ctx.render("enrolment_proof.html", status=status, error=error, proof=pending.get("proof", ""),
                      masked_email=pending.get("proof_email", ""))


async def send_proof_email(ctx: Ctx) -> Response:
    if ctx.session.pending.get("proof") != "email_code":
        raise BadRequest(400)
    try:
        started = await ctx.portal.client.enrollment.start_enrolment_proof(ctx.session.token or "",
                                                                           client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("enrolment_proof_email", exc, page=lambda text, status: proof_page(ctx, text, status))
    ctx.session.pending["proof_email"] = started.masked_email
    return ctx.redirect("/signin/proof")


async def present_proof(ctx: Ctx) -> Response:
    if "proof" not in ctx.session.pending:
        raise BadRequest(400)
    code = await ctx.field("code")
    try:
        accepted = await ctx.portal.client.enrollment.present_enrolment_proof(ctx.session.token or "", code,
                                                                              client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("enrolment_proof", exc, page=lambda text, status: proof_page(ctx, text, status))
    if not accepted:
        return proof_page(ctx, messages.PROOF_REFUSED[ctx.session.pending["proof"] == "email_code"], 400)
    for key in ("proof", "proof_email"):
        ctx.session.pending.pop(key, None)
    return ctx.redirect("/signin/bind")


async def show_bind(ctx: Ctx) -> Response:
    if "proof" in ctx.session.pending:
        return ctx.redirect("/signin/proof")
    return bind_page(ctx)


def bind_page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    return ctx.render("bind.html", status=status, error=error,
                      methods=ctx.session.pending.get("bind_methods", ["passkey", "totp"]),
                      passkey_begin="/signin/bind/passkey/options", passkey_finish="/signin/bind/passkey")


async def bind_totp(ctx: Ctx) -> Response:
    return await begin_totp(ctx, "/signin/bind/totp/confirm", on_error=lambda text, status: bind_page(ctx, text, status))


async def begin_totp(ctx: Ctx, confirm_url: str, *, on_error: Any) -> Response:
    """Shared by first sign-in and the Security Information page: a pending device and its key,
    kept in the portal session (memory only) until the code proves it."""
    assert ctx.session.token is not None
    try:
        prov = await ctx.portal.client.enrollment.begin_totp_binding(ctx.session.token, ctx.t(N_("authenticator app")))
    except ClientError as exc:
        return await ctx.failure("bind_totp", exc, page=on_error)
    ctx.session.pending["totp"] = {
        "device_id": prov.device_id, "qr_png": base64.b64encode(prov.qr_png).decode("ascii"),
        "secret_grouped": " ".join(prov.secret_base32[i:i + 4] for i in range(0, len(prov.secret_base32), 4)),
        "issuer": prov.issuer, "account": prov.account_name, "confirm_url": confirm_url}
    return totp_page(ctx)


def totp_page(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    totp = ctx.session.pending.get("totp")
    if totp is None:
        raise BadRequest(400)
    return ctx.render("bind_totp.html", status=status, error=error, totp=totp, confirm_url=totp["confirm_url"])


async def confirm_totp(ctx: Ctx) -> t.Bound | Response:
    """The code for the pending device: the Bound answer, or the page again with mfad's words."""
    totp = ctx.session.pending.get("totp")
    if totp is None or ctx.session.token is None:
        raise BadRequest(400)
    try:
        bound = await ctx.portal.client.enrollment.confirm_totp(ctx.session.token, totp["device_id"],
                                                                (await ctx.field("code")).strip(),
                                                                client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("confirm_code", exc, page=lambda text, status: totp_page(ctx, text, status))
    ctx.session.pending.pop("totp", None)
    return bound


async def bind_totp_confirm(ctx: Ctx) -> Response:
    bound = await confirm_totp(ctx)
    if isinstance(bound, Response):
        return bound
    return enrolled(ctx, bound, N_("Your virtual MFA device is bound. You are signed in."))


def enrolled(ctx: Ctx, bound: t.Bound, flash: str) -> Response:
    if bound.session is None:  # mfad did not complete the sign-in: sign in with the new device
        ctx.portal.sessions.drop(ctx.session)
        ctx.session = ctx.portal.sessions.new()
        return ctx.redirect("/signin", N_("Your device is bound. Sign in with it."))
    signed_in(ctx, ctx.session.username, bound.session)
    return ctx.redirect(SIGNED_IN_HOME, flash)


async def bind_passkey_options(ctx: Ctx) -> Response:
    return await passkey_options(ctx)


async def passkey_options(ctx: Ctx, upgrade: str = "") -> Response:
    """WebAuthn creation options for a new passkey (or for re-registering U2F key ``upgrade``)."""
    assert ctx.session.token is not None
    name = str((await ctx.json()).get("name", "")).strip() or ctx.t(N_("My passkey"))
    enrollment = ctx.portal.client.enrollment
    try:
        if upgrade:
            reg = await enrollment.begin_u2f_upgrade(ctx.session.token, upgrade)
        else:
            reg = await enrollment.begin_passkey_binding(ctx.session.token, name[:64])
    except ClientError as exc:
        return await ctx.failure("upgrade" if upgrade else "passkey", exc)
    ctx.session.pending["registration"] = reg.registration_id
    return JSONResponse({"options": json.loads(reg.creation_options_json)})


async def passkey_created(ctx: Ctx) -> t.Bound | Response:
    registration = ctx.session.pending.pop("registration", None)
    credential = (await ctx.json()).get("credential")
    if registration is None or not isinstance(credential, dict) or ctx.session.token is None:
        raise BadRequest(400)
    try:
        return await ctx.portal.client.enrollment.complete_passkey(ctx.session.token, registration,
                                                                   json.dumps(credential), client=ctx.client_info())
    except ClientError as exc:
        return await ctx.failure("passkey", exc)


async def bind_passkey(ctx: Ctx) -> Response:
    bound = await passkey_created(ctx)
    if isinstance(bound, Response):
        return bound
    page = enrolled(ctx, bound, N_("Your passkey is created. You are signed in."))
    return JSONResponse({"redirect": page.headers["location"]})


# --- sign-out ----------------------------------------------------------------------------------
async def sign_out(ctx: Ctx) -> Response:
    if ctx.session.token is not None:
        try:
            await ctx.portal.client.enrollment.end_session(ctx.session.token)
        except ClientError:
            pass  # already ended in mfad (expired, revoked): the portal session ends all the same
    ctx.portal.sessions.drop(ctx.session)
    ctx.session = ctx.portal.sessions.new()
    return ctx.redirect("/signin", N_("You are signed out."))
