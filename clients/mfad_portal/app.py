"""The portal as an ASGI application: the sign-in page, the Security Information page,
health, readiness and (when run alone) metrics.

    app = create_app(client, settings, registry)

``client`` is an :class:`mfad_client.MfadClient` holding a caller token of role
``portal``; it is the portal's only way to mfad.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mfad.config import PortalSettings
from mfad_client import MfadClient
from mfad_portal import approve, console, console_audit, console_policy, console_rules, console_tokens, console_users, messages, security_info, signin
from mfad_portal.sessions import Sessions
from mfad_portal.web import Ctx, Guard, Portal, PortalMetrics, environments, view

STATIC = Path(__file__).parent / "static"


def when(value: datetime | None) -> str:
    """A time as every language reads it: ISO date and minutes, UTC; "—" for never."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def create_app(client: MfadClient, settings: PortalSettings, registry: CollectorRegistry, *,
               serve_metrics: bool = False) -> Starlette:
    envs = environments()
    for env in envs.values():
        env.filters["when"] = when
    metrics = PortalMetrics(registry)
    portal = Portal(client=client, settings=settings, metrics=metrics, envs=envs,
                    sessions=Sessions(idle=settings.session_idle_seconds, absolute=settings.session_absolute_seconds))

    async def home(ctx: Ctx) -> Response:
        return ctx.redirect("/security" if ctx.session.is_signed_in else "/signin")

    async def healthz(request: Request) -> Response:
        request.scope["mfad_route"] = "healthz"
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        request.scope["mfad_route"] = "readyz"
        if await client.ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("mfad does not answer\n", status_code=503)

    async def metrics_page(request: Request) -> Response:
        request.scope["mfad_route"] = "metrics"
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        ctx = Ctx(portal, request, "other")
        return ctx.finish(ctx.render("message.html", status=404, heading=messages.NOT_FOUND_PAGE))

    routes: list[Route | Mount] = [
        Route("/", view(portal, "home", home), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *signin.routes(portal),
        *security_info.routes(portal),
        *approve.routes(portal),
        *console.routes(portal), *console_users.routes(portal), *console_policy.routes(portal),
        *console_audit.routes(portal), *console_tokens.routes(portal), *console_rules.routes(portal),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if serve_metrics:
        routes.append(Route("/metrics", metrics_page, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(Guard, metrics=metrics, hsts=settings.origin.startswith("https://"))
    app.state.portal = portal
    return app


