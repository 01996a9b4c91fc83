"""The HTTP side every page shares: the session cookie, CSRF, security headers, size limits,
languages, metrics and the error table.

Guarantees:
- every POST needs the session's CSRF token (form field ``csrf`` or header
  ``X-CSRF-Token``) *and* an ``Origin`` (or, lacking one, ``Referer``) equal to the
  portal's public origin; otherwise 403 and nothing is called;
- cookies are ``HttpOnly; SameSite=Lax``, ``Secure`` unless the portal is served
  on ``http://localhost``; the session cookie is ``__Host-`` prefixed when Secure;
- every answer carries a CSP without inline script (``script-src 'self'``),
  ``frame-ancestors 'none'``, ``Referrer-Policy``, ``nosniff``, and HSTS on https;
  pages are ``Cache-Control: no-store``;
- request bodies over ``max_body_bytes`` answer 413 unread; form fields must be
  UTF-8 and at most ``MAX_FIELD`` characters (400 otherwise): bad bytes never reach mfad;
- a ClientError from mfad becomes a page (or JSON) through :mod:`mfad_portal.messages`;
  no traceback reaches the browser, and no form value is logged.
"""

from __future__ import annotations

import gettext
import hmac
import inspect
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mfad.config import PortalSettings
from mfad_client import ClientError, ClientInfo, MfadClient
from mfad_portal import i18n, messages
from mfad_portal.sessions import Sessions

log = logging.getLogger("mfad.portal")

TEMPLATES = Path(__file__).parent / "templates"
MAX_FIELD = 4096
MAX_FIELDS = 32
REMEMBER_COOKIE = "mfad_remember"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


#: Shows a page again with an error text and HTTP status.
Page = Callable[[str, int], "Response | Awaitable[Response]"]


class BadRequest(Exception):
    """The request itself is unusable (too large, not UTF-8, too many fields)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class PortalMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("mfad_portal_requests_total", "Portal HTTP requests by route and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("mfad_portal_request_duration_seconds", "Portal HTTP request latency by route",
                                 ["route"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


@dataclass(frozen=True, slots=True, kw_only=True)
class Portal:
    """What every page needs: the client, the settings, the sessions, the templates."""

    client: MfadClient
    settings: PortalSettings
    sessions: Sessions
    envs: Mapping[str, Environment]
    metrics: PortalMetrics

    @property
    def origin(self) -> str:
        return self.settings.origin

    @property
    def secure_cookies(self) -> bool:
        host = urlsplit(self.origin).hostname or ""
        return not (self.origin.startswith("http://") and (host == "localhost" or host.endswith(".localhost")))

    @property
    def session_cookie(self) -> str:
        return "__Host-mfad_session" if self.secure_cookies else "mfad_session"


def environments() -> dict[str, Environment]:
    """One template environment per language (gettext installed into each, so concurrent
    requests in different languages never share a translation)."""
    out = {}
    for tag, translations in i18n.load_all().items():
        env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                          extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        env.globals["lang"] = tag
        env.globals["translations"] = translations  # for texts made in Python (Ctx.t)
        out[tag] = env
    return out


class Ctx:
    """One request as a page sees it."""

    def __init__(self, portal: Portal, request: Request, route: str) -> None:
        self.portal = portal
        self.request = request
        self.route = route
        self.lang = i18n.negotiate(request.headers.get("accept-language", ""))
        self.env = portal.envs[self.lang]
        existing = portal.sessions.get(request.cookies.get(portal.session_cookie))
        self.had_session = existing is not None
        self.session = existing or portal.sessions.new()
        self._form: dict[str, str] | None = None
        self._json: dict[str, Any] | None = None
        self.cookies: list[tuple[str, str, int | None]] = []

    # --- input -----------------------------------------------------------------------------------
    async def body(self) -> bytes:
        limit = self.portal.settings.max_body_bytes
        declared = self.request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise BadRequest(413)
        chunks, size = [], 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def form(self) -> dict[str, str]:
        if self._form is None:
            raw = await self.body()
            if self.request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
                self._form = {}
                return self._form
            try:
                pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict",
                                  max_num_fields=MAX_FIELDS)
            except (UnicodeDecodeError, ValueError):
                raise BadRequest(400) from None
            if any(len(v) > MAX_FIELD or any(ord(c) < 32 and c not in "\t\r\n" for c in v) for _, v in pairs):
                raise BadRequest(400)
            self._form = dict(pairs)
        return self._form

    async def field(self, name: str) -> str:
        return (await self.form()).get(name, "")

    async def json(self) -> dict[str, Any]:
        if self._json is None:
            try:
                value = json.loads(await self.body())
            except (UnicodeDecodeError, ValueError):
                raise BadRequest(400) from None
            if not isinstance(value, dict):
                raise BadRequest(400)
            self._json = value
        return self._json

    def over_tls(self) -> bool:
        """Whether this request reached the portal the way its origin says: directly over its
        own TLS, on http://localhost, or through a trusted proxy that says it terminated TLS."""
        if not self.portal.origin.startswith("https://") or self.portal.settings.tls_cert:
            return True
        peer = self.request.client.host if self.request.client else ""
        said = self.request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return is_trusted(peer, self.portal.settings.trusted_proxies) and said == "https"

    def client_info(self) -> ClientInfo:
        return ClientInfo(ip=client_ip(self.request, self.portal.settings.trusted_proxies),
                          user_agent=self.request.headers.get("user-agent", "")[:512])

    async def csrf_ok(self) -> bool:
        origin = self.request.headers.get("origin")
        if origin is None:
            referer = self.request.headers.get("referer", "")
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
        if origin != self.portal.origin or not self.had_session:
            return False
        sent = self.request.headers.get("x-csrf-token")
        if sent is None:
            sent = await self.field("csrf")
        return hmac.compare_digest(sent.encode(), self.session.csrf.encode())

    # --- output ----------------------------------------------------------------------------------
    def t(self, text: str, **values: Any) -> str:
        translations: gettext.NullTranslations = self.env.globals["translations"]  # type: ignore[assignment]
        said = translations.gettext(text)
        return said % values if values else said

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        flash, self.session.flash = self.session.flash, ""
        html = self.env.get_template(template).render(
            csrf=self.session.csrf, session=self.session, flash=flash, help_contact=self.portal.settings.help_contact,
            **values)
        return HTMLResponse(html, status_code=status)

    def redirect(self, url: str, flash: str = "") -> RedirectResponse:
        if flash:
            self.session.flash = flash
        return RedirectResponse(url, status_code=303)

    def set_cookie(self, name: str, value: str, max_age: int | None) -> None:
        self.cookies.append((name, value, max_age))

    def finish(self, response: Response) -> Response:
        secure = self.portal.secure_cookies
        response.set_cookie(self.portal.session_cookie, self.session.sid, httponly=True, secure=secure,
                            samesite="lax", path="/")
        for name, value, max_age in self.cookies:
            if max_age == 0:
                response.delete_cookie(name, path="/", httponly=True, secure=secure, samesite="lax")
            else:
                response.set_cookie(name, value, max_age=max_age, httponly=True, secure=secure, samesite="lax",
                                    path="/")
        return response

    async def failure(self, operation: str, error: ClientError, *, page: Page | None = None) -> Response:
        """mfad refused to do something: its words through the table, on ``page`` (JSON for
        the passkey requests; a plain message page when no page is given)."""
        words = messages.said(operation, error)
        log.info("portal %s: mfad answered %s", operation, error.code.name)
        if error.code.name == "UNAUTHENTICATED":
            self.portal.sessions.drop(self.session)
            self.session = self.portal.sessions.new()
            if self.wants_json:
                return JSONResponse({"error": self.t(words.text), "redirect": "/signin"}, status_code=401)
            return self.redirect("/signin", words.text)
        if self.wants_json:
            return JSONResponse({"error": self.t(words.text)}, status_code=words.http_status)
        if page is None:
            return self.render("message.html", status=words.http_status, heading=words.text)
        shown = page(words.text, words.http_status)
        return await shown if inspect.isawaitable(shown) else shown

    @property
    def wants_json(self) -> bool:
        return self.request.headers.get("content-type", "").startswith("application/json")


View = Callable[[Ctx], Awaitable[Response]]



def view(portal: Portal, name: str, fn: View, *, needs: str | None = None) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint: the session, CSRF on POST, who may see it (``needs``: "signed_in" or
    "enrolling"), then ``fn``; cookies set on the way out."""

    async def endpoint(request: Request) -> Response:
        request.scope["mfad_route"] = name
        ctx = Ctx(portal, request, name)
        try:
            if not ctx.over_tls():
                return ctx.finish(ctx.render("message.html", status=400, heading=messages.HTTPS_ONLY))
            if request.method == "POST" and not await ctx.csrf_ok():
                return ctx.finish(ctx.render("message.html", status=403, heading=messages.FORM_EXPIRED))
            if needs == "signed_in" and not ctx.session.is_signed_in or \
                    needs == "enrolling" and not ctx.session.is_enrolling:
                if ctx.wants_json:
                    return ctx.finish(JSONResponse({"error": ctx.t(messages.SESSION_ENDED), "redirect": "/signin"},
                                                   status_code=401))
                return ctx.finish(ctx.redirect("/signin"))
            return ctx.finish(await fn(ctx))
        except BadRequest as bad:
            text = messages.BAD_INPUT
            if ctx.wants_json:
                return ctx.finish(JSONResponse({"error": ctx.t(text)}, status_code=bad.status))
            return ctx.finish(ctx.render("message.html", status=bad.status, heading=text))

    return endpoint


def client_ip(request: Request, trusted: list[str]) -> str:
    """The user's address: the peer, or — when the peer is a trusted proxy — the last
    X-Forwarded-For hop that is not one."""
    peer = request.client.host if request.client else ""
    if not is_trusted(peer, trusted):
        return _ip_or_empty(peer)
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return _ip_or_empty(hop)
    return _ip_or_empty(peer)


def is_trusted(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in trusted)


def _ip_or_empty(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


class Guard:
    """ASGI middleware: security headers on every answer, and the request metrics."""

    def __init__(self, app: ASGIApp, *, metrics: PortalMetrics, hsts: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        static = scope.get("path", "").startswith("/static/")

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"),
                            (b"cross-origin-opener-policy", b"same-origin")]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("mfad_route") or ("static" if static else "other")
            self.metrics.requests.labels(route=route, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
