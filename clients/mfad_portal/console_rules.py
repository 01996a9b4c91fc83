"""The console's group policy rules: the ordered rules on top of the global policy
(docs/directory.md), listed in evaluation order; added, edited, moved and removed through
mfad's ``Admin`` rule RPCs. Every change is a policy change: it needs a fresh second
factor (the inline step-up keeps the change in the server-side session meanwhile), and
mfad checks the role, validates the rule and audits it. The page only reads the form's
shape; a field left at "as the global policy" is not set on the rule (an edit gives it
back to the global policy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from mfad_client import Method, MfaRequired
from mfad_client import types as t
from mfad_client.client import Admin
from mfad_portal import step_up
from mfad_portal.console import route, sensitive, show
from mfad_portal.i18n import N_
from mfad_portal.web import BadRequest, Ctx, Portal

RULES = "/admin/rules"
CHOICES = tuple(m.value for m in MfaRequired)
METHODS = tuple(m.value for m in Method)
#: The fields a rule may leave to the global policy (the names UpdatePolicyRule's inherit takes).
OPTIONAL = ("mfa_required", "allowed_methods", "remember_device", "remember_days")


class Unreadable(Exception):
    """A form value that is not one of its field's values."""


def routes(portal: Portal) -> list[Route]:
    return [route(portal, RULES, "admin_rules", rules),
            route(portal, RULES + "/edit", "admin_rule_edit", edit),
            route(portal, RULES + "/add", "admin_rule_add", add, "POST"),
            route(portal, RULES + "/update", "admin_rule_update", update, "POST"),
            route(portal, RULES + "/move", "admin_rule_move", move, "POST"),
            route(portal, RULES + "/remove", "admin_rule_remove", remove, "POST")]


def as_text(rule: t.PolicyRule) -> dict[str, str]:
    """A rule as the form shows it ("" for a field left to the global policy)."""
    return {"name": rule.name, "groups": ", ".join(rule.groups), "clients": ", ".join(rule.clients),
            "mfa_required": rule.mfa_required.value if rule.mfa_required else "",
            # In one order everywhere (the form's), whatever order mfad keeps them in.
            "allowed_methods": ",".join(m for m in METHODS if Method(m) in rule.allowed_methods)
            if rule.allowed_methods is not None else "",
            "remember_device": "" if rule.remember_device is None else "yes" if rule.remember_device else "no",
            "remember_days": "" if rule.remember_days is None else str(rule.remember_days)}


def _names(raw: str) -> str:
    return ",".join(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))


def read_form(form: Mapping[str, str]) -> dict[str, str]:
    """The rule's fields as texts (what the step-up keeps); Unreadable for a malformed one."""
    values = {"groups": _names(form.get("groups", "")), "clients": _names(form.get("clients", ""))}
    choice = form.get("mfa_required", "")
    if choice not in ("", *CHOICES):
        raise Unreadable(N_("Choose all, enrolled, off or the global policy for MFA required."))
    values["mfa_required"] = choice
    if form.get("methods_global") == "on":
        values["allowed_methods"] = ""
    else:
        chosen = [m for m in METHODS if form.get(f"method_{m}") == "on"]
        if not chosen:
            raise Unreadable(N_("Allow at least one method, or keep the global policy's methods."))
        values["allowed_methods"] = ",".join(chosen)
    remember = form.get("remember_device", "")
    if remember not in ("", "yes", "no"):
        raise Unreadable(N_("Choose yes, no or the global policy for remembering devices."))
    values["remember_device"] = remember
    days = form.get("remember_days", "").strip()
    if days and not (days.isascii() and days.isdigit() and 1 <= int(days) <= 365):
        raise Unreadable(N_("Remember for: a whole number of days from 1 to 365, or empty."))
    values["remember_days"] = str(int(days)) if days else ""
    return values


def as_call(values: Mapping[str, str]) -> dict[str, Any]:
    """The kept texts as rule fields (None: left to the global policy)."""
    return {"groups": tuple(n for n in values["groups"].split(",") if n),
            "clients": tuple(n for n in values["clients"].split(",") if n),
            "mfa_required": MfaRequired(values["mfa_required"]) if values["mfa_required"] else None,
            "allowed_methods": tuple(Method(m) for m in values["allowed_methods"].split(","))
            if values["allowed_methods"] else None,
            "remember_device": {"yes": True, "no": False}.get(values["remember_device"]),
            "remember_days": int(values["remember_days"]) if values["remember_days"] else None}


def _position(raw: str) -> str:
    raw = raw.strip()
    if raw and not (raw.isascii() and raw.isdigit() and int(raw) <= 10_000):
        raise Unreadable(N_("Position: a whole number (1 is evaluated first), or empty for last."))
    return str(int(raw)) if raw else ""


async def listing(admin: Admin) -> Mapping[str, Any]:
    return {"rules": [as_text(r) for r in await admin.list_policy_rules()], "choices": CHOICES, "methods": METHODS}


async def rules(ctx: Ctx, error: str = "", status: int = 200, typed: Mapping[str, str] | None = None) -> Response:
    return await show(ctx, "console_rules.html", listing, error=error, status=status, typed=typed or {})


def _typed(form: Mapping[str, str]) -> dict[str, str]:
    """What the form held, to be corrected."""
    chosen = ",".join(m for m in METHODS if form.get(f"method_{m}") == "on")
    return {"name": form.get("name", "").strip()[:64], "groups": form.get("groups", "")[:2000],
            "clients": form.get("clients", "")[:2000], "mfa_required": form.get("mfa_required", "")[:16],
            "allowed_methods": "" if form.get("methods_global") == "on" else chosen,
            "remember_device": form.get("remember_device", "")[:8], "remember_days": form.get("remember_days", "")[:8],
            "position": form.get("position", "")[:8]}


async def add(ctx: Ctx) -> Response:
    form = await ctx.form()
    name = form.get("name", "").strip()
    try:
        if not name:
            raise Unreadable(N_("Give the rule a name."))
        values = read_form(form)
        position = _position(form.get("position", ""))
    except Unreadable as bad:
        return await rules(ctx, str(bad), 400, _typed(form))
    return await step_up.begin(ctx, "console_rule_add", rule=name, position=position, **values)


async def edit(ctx: Ctx, error: str = "", status: int = 200, typed: Mapping[str, str] | None = None) -> Response:
    name = ctx.request.query_params.get("name", "") if typed is None else typed["name"]
    if not name:
        raise BadRequest(400)

    async def load(admin: Admin) -> Mapping[str, Any]:
        position, rule = await admin.get_policy_rule(name)
        return {"rule": typed or as_text(rule), "position": position + 1, "choices": CHOICES, "methods": METHODS}

    return await show(ctx, "console_rule_edit.html", load, error=error, status=status)


async def update(ctx: Ctx) -> Response:
    form = await ctx.form()
    name = form.get("name", "").strip()
    if not name:
        raise BadRequest(400)
    try:
        values = read_form(form)
    except Unreadable as bad:
        return await edit(ctx, str(bad), 400, _typed(form))
    return await step_up.begin(ctx, "console_rule_update", rule=name, **values)


async def move(ctx: Ctx) -> Response:
    name = (await ctx.field("name")).strip()
    to = (await ctx.field("to")).strip()
    if not name or not (to.isascii() and to.isdigit() and 1 <= int(to) <= 10_000):
        return await rules(ctx, N_("Choose a rule and where it goes."), 400)
    return await step_up.begin(ctx, "console_rule_move", rule=name, to=str(int(to)))


async def remove(ctx: Ctx) -> Response:
    name = (await ctx.field("name")).strip()
    if not name:
        return await rules(ctx, N_("Choose a rule to remove."), 400)
    return await step_up.begin(ctx, "console_rule_remove", rule=name)


# --- the changes, run after the step-up ------------------------------------------------------
async def adding(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    rule = t.PolicyRule(name=values["rule"], **as_call(values))
    position = int(values["position"]) - 1 if values["position"] else None
    await admin.add_policy_rule(rule, position=max(0, position) if position is not None else None)


async def updating(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    fields = as_call(values)
    inherit = [f for f in OPTIONAL if fields[f] is None]
    await admin.update_policy_rule(values["rule"], inherit=inherit,
                                   **{k: v for k, v in fields.items() if v is not None or k in ("groups", "clients")})


async def moving(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    await admin.move_policy_rule(values["rule"], int(values["to"]) - 1)


async def removing(ctx: Ctx, admin: Admin, values: dict[str, str]) -> None:
    await admin.delete_policy_rule(values["rule"])


_WHY = N_("Changing the group rules needs a fresh second step.")
sensitive("console_rule_add", operation="policy_rule", why=_WHY, cancel=RULES, call=adding,
          back=lambda _: RULES, done=N_("The rule is added."))
sensitive("console_rule_update", operation="policy_rule", why=_WHY, cancel=RULES, call=updating,
          back=lambda _: RULES, done=N_("The rule is changed."))
sensitive("console_rule_move", operation="policy_rule", why=_WHY, cancel=RULES, call=moving,
          back=lambda _: RULES, done=N_("The rule is moved."))
sensitive("console_rule_remove", operation="policy_rule", why=_WHY, cancel=RULES, call=removing,
          back=lambda _: RULES, done=N_("The rule is removed."))

