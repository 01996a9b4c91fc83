"""The console's audit log: filters (user, event, outcome, time range), paging, CSV export.

Times are read as UTC (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``). The CSV is safe to open
in a spreadsheet: a cell starting with ``= + - @`` (or a tab or carriage return) gets a
leading apostrophe, so no cell is ever taken for a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from mfad_client import ClientError
from mfad_client import types as t
from mfad_client.client import Admin
from mfad_portal import messages
from mfad_portal.console import route, show, staff
from mfad_portal.i18n import N_
from mfad_portal.web import Ctx, Portal

AUDIT = "/admin/audit"
PAGE_SIZE = 50
#: The export's page size and its bound (rows), so one click cannot read the whole log forever.
EXPORT_PAGE = 500
EXPORT_MAX = 50_000
FILTERS = ("user", "event", "outcome", "since", "until")
#: The longest filter value: mfad's own bound for usernames is lower still.
MAX_FILTER = 256
COLUMNS = ("id", "at", "event", "outcome", "username", "method", "protocol", "source", "actor", "reason", "detail")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BadTime(ValueError):
    pass


def routes(portal: Portal) -> list[Route]:
    return [route(portal, AUDIT, "admin_audit", audit), route(portal, AUDIT + ".csv", "admin_audit_csv", export)]


def when(text: str) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(text) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def filters(ctx: Ctx) -> dict[str, str]:
    return {name: ctx.request.query_params.get(name, "").strip() for name in FILTERS}


def problem(chosen: Mapping[str, str]) -> str:
    """What is wrong with the filters ("" when nothing): too long, not UTF-8 (the query's bad
    bytes arrive as U+FFFD), or a time that is not one."""
    if any(len(v) > MAX_FILTER or "\ufffd" in v for v in chosen.values()):
        return messages.BAD_INPUT
    try:
        when(chosen["since"]), when(chosen["until"])
    except BadTime:
        return N_("Enter times as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC).")
    return ""


async def query(admin: Admin, chosen: Mapping[str, str], *, page_size: int, page_token: str = "") -> t.AuditPage:
    return await admin.query_audit(username=chosen["user"], event=chosen["event"], outcome=chosen["outcome"],
                                   since=when(chosen["since"]), until=when(chosen["until"]), page_size=page_size,
                                   page_token=page_token)


async def audit(ctx: Ctx) -> Response:
    chosen = filters(ctx)
    after = ctx.request.query_params.get("page", "")
    if wrong := problem(chosen):
        return await show(ctx, "console_audit.html", empty, error=wrong, status=400, chosen=chosen)

    async def load(admin: Admin) -> Mapping[str, Any]:
        found = await query(admin, chosen, page_size=PAGE_SIZE, page_token=after)
        return {"events": found.events,
                "next_page": AUDIT + "?" + urlencode({**chosen, "page": found.next_page_token})
                if found.next_page_token else "",
                "first_page": AUDIT + "?" + urlencode(chosen) if after else ""}

    return await show(ctx, "console_audit.html", load, chosen=chosen, csv_url=AUDIT + ".csv?" + urlencode(chosen))


async def empty(_: Admin) -> Mapping[str, Any]:
    return {"events": (), "next_page": "", "first_page": "", "csv_url": ""}


def cell(value: object) -> str:
    text = "" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) \
        else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


async def export(ctx: Ctx) -> Response:
    chosen = filters(ctx)
    if wrong := problem(chosen):
        return await show(ctx, "console_audit.html", empty, error=wrong, status=400, chosen=chosen)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    admin, token, rows = staff(ctx), "", 0
    try:
        while rows < EXPORT_MAX:
            found = await query(admin, chosen, page_size=EXPORT_PAGE, page_token=token)
            for e in found.events:
                writer.writerow([cell(getattr(e, c)) for c in COLUMNS])
            rows += len(found.events)
            token = found.next_page_token
            if not token:
                break
    except ClientError as exc:
        return await ctx.failure("console", exc)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="mfad-audit.csv"'})
