"""The console's group rules page (/admin/rules) in a real browser against a real ``mfad serve``,
on both store engines: an admin adds a rule (a fresh second factor asked for first, since the
session came from a remembered device), adds another at a position, moves, edits (a field given
back to the global policy) and removes rules, and mfad stores and audits each change; bad input
and a missing CSRF token change nothing, a taken name reads mfad's answer; an auditor reads the
rules but cannot change them, helpdesk does not see the page. Screenshots:
docs/portal/console-rules.png, console-rule-edit.png, console-rules-zh-phone.png."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect
from portal_support import PHONE, OathApp, Site, StartSite, Tab, chromium, mfad_daemon, post_form, site  # noqa: F401

from mfad_client import Method, MfaRequired, StaffRole
from mfad_client import types as t

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite", "postgres"])]


async def staff(s: Site, tab: Tab, username: str, role: StaffRole, *, remember: bool = False) -> OathApp:
    app = await s.user_with_app(username)
    await s.admin.admin.set_role(username, role)
    await tab.sign_in(username)
    if remember:
        await tab.page.get_by_label("Remember this device for 7 days").check()
    await tab.page.get_by_label("Verification code").fill(await app.next_code())
    await tab.page.get_by_role("button", name="Verify", exact=True).click()
    await tab.page.wait_for_url("**/security")
    return app


async def names(s: Site) -> list[str]:
    return [r.name for r in await s.admin.admin.list_policy_rules()]


async def test_an_admin_adds_moves_edits_and_removes_group_rules(site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"remember_device": True})
    tab = await s.browser(chromium)
    page = tab.page
    app = await staff(s, tab, "root", StaffRole.ADMIN, remember=True)
    # Signed in again through the remembered device: no fresh second factor on this session.
    await tab.sign_out()
    await tab.sign_in("root")
    assert await tab.heading() == "Security Information"

    await page.get_by_role("link", name="Console").click()
    await page.get_by_role("link", name="Group rules").click()
    assert await tab.heading() == "Group rules"
    await expect(page.get_by_text("No rules: the global policy applies to every sign-in.")).to_be_visible()

    # "group vpn-contractors: passkey or TOTP only, no remembered devices" — after a step-up.
    await page.get_by_label("Rule name").fill("contractors")
    await page.get_by_label("Directory groups").fill("vpn-contractors")
    await page.get_by_label("The global policy's methods").uncheck()
    await page.get_by_label("passkey", exact=True).check()
    await page.get_by_label("totp", exact=True).check()
    await page.get_by_label("Remember devices").select_option("no")
    await page.get_by_role("button", name="Add the rule").click()
    assert await tab.heading() == "Confirm it is you"
    assert await names(s) == []  # nothing stored before the step-up
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("The rule is added.")
    [rule] = await s.admin.admin.list_policy_rules()
    assert rule.allowed_methods is not None and set(rule.allowed_methods) == {Method.PASSKEY, Method.TOTP}
    assert rule == t.PolicyRule(name="contractors", groups=("vpn-contractors",), allowed_methods=rule.allowed_methods,
                                remember_device=False)

    # The session's second factor is fresh now: the next changes need no step-up.
    await page.get_by_label("Rule name").fill("staff")
    await page.get_by_label("Directory groups").fill("staff, admins")
    await page.get_by_label("RADIUS clients or gRPC callers").fill("vpn")
    await page.get_by_label("MFA required").select_option("enrolled")
    await page.get_by_label("Position (1 is tried first; empty: last)").fill("1")
    await page.get_by_role("button", name="Add the rule").click()
    await expect(page.get_by_role("status")).to_have_text("The rule is added.")
    assert await names(s) == ["staff", "contractors"]
    contractors = page.get_by_role("row", name="2 contractors vpn-contractors any global totp, passkey no")
    await expect(contractors).to_be_visible()
    await tab.shot("console-rules")

    await page.get_by_role("button", name="Move contractors up").click()
    await expect(page.get_by_role("status")).to_have_text("The rule is moved.")
    assert await names(s) == ["contractors", "staff"]

    await page.get_by_role("link", name="Edit staff").click()
    assert await tab.heading() == "Edit rule staff"
    await expect(page.get_by_label("Directory groups")).to_have_value("staff, admins")
    await page.get_by_label("Remember for (days, empty: as the global policy)").fill("3")
    await tab.shot("console-rule-edit")
    await page.get_by_role("button", name="Save the rule").click()
    await expect(page.get_by_role("status")).to_have_text("The rule is changed.")
    _, staff_rule = await s.admin.admin.get_policy_rule("staff")
    assert (staff_rule.remember_days, staff_rule.mfa_required, staff_rule.clients) == (3, MfaRequired.ENROLLED,
                                                                                        ("vpn",))
    # A field set back to "as the global policy" is given back to it (inherit).
    await page.get_by_role("link", name="Edit staff").click()
    await page.get_by_label("MFA required").select_option("")
    await page.get_by_role("button", name="Save the rule").click()
    await expect(page.get_by_role("status")).to_have_text("The rule is changed.")
    _, staff_rule = await s.admin.admin.get_policy_rule("staff")
    assert staff_rule.mfa_required is None and staff_rule.remember_days == 3

    await page.get_by_role("button", name="Remove contractors").click()
    await expect(page.get_by_role("status")).to_have_text("The rule is removed.")
    assert await names(s) == ["staff"]
    changes = (await s.admin.admin.query_audit(event="policy_rule_changed")).events
    assert len(changes) == 5 and {e.actor for e in changes} == {"user:root"}
    assert [e.actor for e in (await s.admin.admin.query_audit(event="policy_rule_deleted")).events] == ["user:root"]

    # mfad's refusal in its words: the name is taken.
    await page.get_by_label("Rule name").fill("staff")
    await page.get_by_role("button", name="Add the rule").click()
    assert await tab.heading() == "That exists already."

    # Bad input and a missing CSRF token: refused, nothing changed.
    await tab.open("/admin/rules")
    before = await s.admin.admin.list_policy_rules()
    bad = [("/admin/rules/add", {"name": "", "methods_global": "on"}),
           ("/admin/rules/add", {"name": "x", "mfa_required": "sometimes", "methods_global": "on"}),
           ("/admin/rules/add", {"name": "x"}),  # no method and not the global ones
           ("/admin/rules/add", {"name": "x", "methods_global": "on", "remember_days": "0"}),
           ("/admin/rules/add", {"name": "x", "methods_global": "on", "remember_device": "maybe"}),
           ("/admin/rules/add", {"name": "x", "methods_global": "on", "position": "-1"}),
           ("/admin/rules/update", {"name": "staff", "methods_global": "on", "remember_days": "366"}),
           ("/admin/rules/update", {"name": "", "methods_global": "on"}),
           ("/admin/rules/move", {"name": "staff", "to": "0"}),
           ("/admin/rules/remove", {"name": " "})]
    for path, form in bad:
        assert await post_form(tab, path, form) == 400, (path, form)
    assert await post_form(tab, "/admin/rules/remove", {"name": "staff"}, csrf=False) == 403
    assert await post_form(tab, "/admin/rules/add", {"name": "x", "methods_global": "on"}, csrf=False) == 403
    assert await s.admin.admin.list_policy_rules() == before

    # Chinese at phone width.
    zh = await s.browser(chromium, locale="zh-CN", viewport=PHONE)
    await zh.context.add_cookies(await tab.context.cookies())
    await zh.open("/admin/rules")
    assert await zh.heading() == "组规则"
    await zh.shot("console-rules-zh-phone")


async def test_an_auditor_reads_the_rules_and_helpdesk_does_not_see_them(site: StartSite, chromium: Browser) -> None:
    s = await site()
    await s.admin.admin.add_policy_rule(t.PolicyRule(name="contractors", groups=("vpn-contractors",),
                                                     remember_device=False))
    tab = await s.browser(chromium)
    page = tab.page
    await staff(s, tab, "aldo", StaffRole.AUDITOR)
    await page.get_by_role("link", name="Console").click()
    await page.get_by_role("link", name="Group rules").click()
    await expect(page.get_by_role("row", name="1 contractors vpn-contractors any global global no")).to_be_visible()
    await expect(page.get_by_role("button", name="Add the rule")).to_have_count(0)
    await expect(page.get_by_role("button", name="Remove contractors")).to_have_count(0)
    # The forms sent anyway: mfad refuses the role (PERMISSION_DENIED), nothing changes.
    assert await post_form(tab, "/admin/rules/remove", {"name": "contractors"}) == 403
    assert await post_form(tab, "/admin/rules/add", {"name": "x", "methods_global": "on"}) == 403
    assert await names(s) == ["contractors"]

    helpdesk = await s.browser(chromium)
    await staff(s, helpdesk, "hana", StaffRole.HELPDESK)
    await helpdesk.page.get_by_role("link", name="Console").click()
    await expect(helpdesk.page.get_by_role("link", name="Group rules")).to_have_count(0)
    listing = await helpdesk.page.request.get(s.url + "/admin/rules")
    assert listing.status == 403 and "Your console role does not allow this." in await listing.text()
