"""The administrators' console (/admin) in a real browser against a real ``mfad serve``, on both
store engines: an admin signs in with a passkey, changes the policy (confirm step, then an
inline passkey step-up), creates a user and a caller token; every console form refuses bad
input and a missing CSRF token, changing nothing; helpdesk unbinds a lost device, cannot open
the policy (nor call GetPolicy over gRPC: PERMISSION_DENIED) and loses the console the moment
the role is taken away; an auditor exports the audit log as CSV (formula cells escaped).
Every console page is saved as a screenshot (docs/portal/console-*.png)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import grpc
import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, PHONE, Site, StartSite, Tab, chromium, mfad_daemon, post_form, site  # noqa: F401

from mfad_client import ClientError, Method, SignInOutcome, StaffRole

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite", "postgres"])]


async def staff_with_app(s: Site, tab: Tab, username: str, role: StaffRole) -> None:
    app = await s.user_with_app(username)
    await s.admin.admin.set_role(username, role)
    await tab.sign_in(username)
    await tab.page.get_by_label("Verification code").fill(await app.next_code())
    await tab.page.get_by_role("button", name="Verify", exact=True).click()
    await tab.page.wait_for_url("**/security")


async def test_an_admin_changes_the_policy_with_step_up_creates_a_user_and_a_token(
        site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"remember_device": True})
    await s.admin.admin.create_user("root", PASSWORD)
    await s.admin.admin.set_role("root", StaffRole.ADMIN)
    await s.user_with_app("lee")
    tab = await s.browser(chromium)
    page = tab.page
    await tab.passkey_authenticator()

    await tab.sign_in("root")
    await page.get_by_label("Passkey name").fill("laptop")
    await page.get_by_role("button", name="Create passkey").click()
    await page.wait_for_url("**/security")
    # Signed in again through a remembered device (no second factor): sensitive changes ask for one.
    await tab.sign_out()
    await tab.sign_in("root")
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Use my passkey").click()
    await page.wait_for_url("**/security")
    await tab.sign_out()
    await tab.sign_in("root")
    assert await tab.heading() == "Security Information"

    await page.get_by_role("link", name="Console").click()
    assert await tab.heading() == "Console overview"
    await expect(page.get_by_text("Users without MFA")).to_be_visible()
    assert await page.locator("dl.counts dd").first.inner_text() == "2"
    await tab.shot("console-overview")

    # The policy: the change shown first, then the step-up, then saved and audited.
    await page.get_by_role("link", name="Policy").click()
    await tab.shot("console-policy")
    await page.get_by_label("Remember for (days)").fill("14")
    await page.get_by_label("Require a backup method").check()
    await page.get_by_label("Approve sign-ins with a TOTP code").check()
    await page.get_by_role("button", name="Review the change").click()
    assert await tab.heading() == "Confirm the policy change"
    await expect(page.get_by_role("row", name="Remember for (days) 7 14")).to_be_visible()
    await tab.shot("console-policy-confirm")
    assert (await s.admin.admin.get_policy()).remember_days == 7  # nothing saved yet
    await page.get_by_role("button", name="Save the policy").click()
    assert await tab.heading() == "Confirm it is you"
    await page.get_by_role("button", name="Use my passkey").click()
    await expect(page.get_by_role("status")).to_have_text("The policy is changed.")
    changed = await s.admin.admin.get_policy()
    assert changed.remember_days == 14 and changed.require_backup_method
    assert changed.approval_with_totp and not changed.approval_email_notice
    changes = (await s.admin.admin.query_audit(event="policy_changed")).events
    assert [e.actor for e in changes if e.actor.startswith("user:")] == ["user:root"]

    # Users: create one, search, the user's page.
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Username", exact=True).fill("dana")
    await page.get_by_label("Password (local users)").fill(PASSWORD)
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_role("status")).to_have_text("The user is created.")
    assert await tab.heading() == "User dana"
    assert (await s.admin.admin.get_user("dana")).user.has_password
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Username starts with").fill("l")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("link", name="lee")).to_be_visible()
    await expect(page.get_by_role("link", name="dana")).to_have_count(0)
    await tab.shot("console-users")
    await page.get_by_role("link", name="lee").click()
    await expect(page.get_by_label("Reason for unbinding authenticator app")).to_be_visible()
    await tab.shot("console-user")

    # A caller token: after the step-up the token is made on the page itself (shown once there).
    await page.get_by_role("link", name="Caller tokens").click()
    for attempt in range(2):
        await page.get_by_label("Name", exact=True).fill("ci-runner")
        await page.get_by_label("Role").select_option("service")
        await page.get_by_role("button", name="Create token").click()
        if attempt == 0 and await tab.heading() == "Confirm it is you":
            await page.get_by_role("button", name="Use my passkey").click()
            await expect(page.get_by_role("status")).to_have_text("It is you. Now create the token.")
            continue
        break
    secret = await page.locator("#new-token").inner_text()
    assert secret.startswith("mfad_")
    await tab.shot("console-tokens")
    async with s.mfad.client(secret) as made:
        assert (await made.auth.begin_sign_in("lee", PASSWORD)).outcome is SignInOutcome.SECOND_FACTOR_REQUIRED

    # Bad input on every form: a clear error, nothing changed.
    before = await s.mfad.counts()
    await page.goto(s.url + "/admin/policy")
    await page.get_by_label("Remember for (days)").fill("abc")
    await page.get_by_role("button", name="Review the change").click()
    await expect(page.get_by_role("alert")).to_have_text("Enter whole numbers in the ranges shown.")
    bad = [("/admin/policy", {"mfa_required": "sometimes", "remember_days": "7",
                              "sensitive_reauth_seconds": "300", "method_totp": "on"}),
           ("/admin/policy", {"mfa_required": "all", "remember_days": "7", "sensitive_reauth_seconds": "300"}),
           ("/admin/users", {"username": "erin", "kind": "local", "password": ""}),
           ("/admin/users", {"username": "", "kind": "local", "password": PASSWORD}),
           ("/admin/users", {"username": "erin", "kind": "ldap?", "password": PASSWORD}),
           ("/admin/user/password", {"username": "lee", "password": "one", "confirm": "two"}),
           ("/admin/user/password", {"username": "lee", "password": "", "confirm": ""}),
           ("/admin/user/unbind", {"username": "lee", "device_id": "1", "reason": " "}),
           ("/admin/user/unbind", {"username": "lee", "device_id": "", "reason": "lost"}),
           ("/admin/user/enable", {"username": ""}),
           ("/admin/tokens", {"name": "x", "role": "root", "days": ""}),
           ("/admin/tokens", {"name": "x", "role": "service", "days": "-3"}),
           ("/admin/tokens", {"name": "bad name!", "role": "service", "days": ""}),
           ("/admin/tokens/revoke", {"name": ""}),
           ("/admin/policy/save", {})]
    for path, form in bad:
        assert await post_form(tab, path, form) == 400, (path, form)
    audit_page = await page.request.get(s.url + "/admin/audit?since=yesterday")
    assert audit_page.status == 400 and "YYYY-MM-DD" in await audit_page.text()
    after = await s.mfad.counts()
    assert {k: after[k] - before[k] for k in after if k != "audit"} == {k: 0 for k in after if k != "audit"}
    assert (await s.admin.admin.get_policy()).remember_days == 14

    # Without the CSRF token: 403, nothing done.
    assert await post_form(tab, "/admin/users", {"username": "erin", "kind": "local", "password": PASSWORD},
                      csrf=False) == 403
    assert await post_form(tab, "/admin/user/disable", {"username": "lee"}, csrf=False) == 403
    with pytest.raises(ClientError):
        await s.admin.admin.get_user("erin")
    assert not (await s.admin.admin.get_user("lee")).user.disabled

    # Phone width and Chinese.
    zh = await s.browser(chromium, locale="zh-CN", viewport=PHONE)
    await zh.context.add_cookies(await tab.context.cookies())
    await zh.open("/admin")
    assert await zh.heading() == "管理控制台概览"
    await zh.shot("console-overview-zh-phone")
    await zh.open("/admin/audit?user=lee")
    await expect(zh.page.get_by_role("cell", name="事件：device_bound")).to_be_visible()  # labelled cells
    await zh.shot("console-audit-zh-phone")
    phone = await s.browser(chromium, viewport=PHONE)
    await phone.context.add_cookies(await tab.context.cookies())
    await phone.open("/admin/user?name=lee")
    assert await phone.heading() == "User lee"
    await phone.shot("console-user-phone")
    # Keyboard: the first Tab reaches "Skip to the page", which moves focus to the page itself.
    await phone.page.keyboard.press("Tab")
    await expect(phone.page.get_by_role("link", name="Skip to the page")).to_be_focused()
    await phone.page.keyboard.press("Enter")
    await expect(phone.page.locator("main")).to_be_focused()


async def test_helpdesk_unbinds_a_lost_device_never_the_policy_and_loses_the_console_with_the_role(
        site: StartSite, chromium: Browser) -> None:
    s = await site()
    await s.user_with_app("lost")
    tab = await s.browser(chromium)
    page = tab.page
    await staff_with_app(s, tab, "hana", StaffRole.HELPDESK)

    await page.get_by_role("link", name="Console").click()
    await expect(page.get_by_role("link", name="Policy")).to_have_count(0)
    await expect(page.get_by_role("link", name="Caller tokens")).to_have_count(0)
    await page.get_by_role("link", name="Users").click()
    await expect(page.get_by_role("button", name="Create user")).to_have_count(0)
    await page.get_by_role("link", name="lost").click()
    await page.get_by_label("Reason for unbinding authenticator app").fill("=HYPERLINK(\"x\") phone lost")
    await page.get_by_role("button", name="Unbind authenticator app").click()
    await expect(page.get_by_role("status")).to_have_text("The device is unbound. The user's sessions are ended.")
    assert (await s.admin.admin.list_devices("lost")).devices == ()
    await tab.shot("console-user-helpdesk")

    policy = await page.request.get(s.url + "/admin/policy")
    assert policy.status == 403 and "Your console role does not allow this." in await policy.text()
    assert await post_form(tab, "/admin/policy", {"mfa_required": "off", "remember_days": "7",
                                             "sensitive_reauth_seconds": "300", "method_totp": "on"}) == 403
    # The gRPC call behind the page, with the portal's token and a helpdesk session of its own.
    app = await s.user_with_app("hugo")
    await s.admin.admin.set_role("hugo", StaffRole.HELPDESK)
    portal = s.mfad.client("portal")
    started = await portal.auth.begin_sign_in("hugo", PASSWORD)
    done = await portal.auth.complete_challenge(started.challenge_id, Method.TOTP, code=await app.next_code())
    assert done.session is not None
    with pytest.raises(ClientError) as refused:
        await portal.admin_as(done.session.token).get_policy()
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert (await s.admin.admin.get_policy()).mfa_required is not None

    # The role taken away: the same session's next console request is refused.
    await s.admin.admin.set_role("hana", None)
    again = await page.request.get(s.url + "/admin/users")
    assert again.status == 403
    assert await post_form(tab, "/admin/user/lockout", {"username": "lost"}) == 403
    denied = (await s.admin.admin.query_audit(event="console_denied", username="hana")).events
    assert len(denied) >= 2


async def test_an_auditor_reads_and_exports_the_audit_log_as_safe_csv(site: StartSite, chromium: Browser) -> None:
    s = await site()
    await s.user_with_app("lost")
    [device] = (await s.admin.admin.list_devices("lost")).devices
    await s.admin.admin.unbind_device("lost", device.id, "=cmd|' /C calc'!A0")
    tab = await s.browser(chromium)
    page = tab.page
    await staff_with_app(s, tab, "aldo", StaffRole.AUDITOR)

    await page.goto(s.url + "/admin/policy")
    await expect(page.get_by_role("button", name="Review the change")).to_have_count(0)
    await expect(page.get_by_label("Remember for (days)")).to_be_disabled()
    await page.goto(s.url + "/admin/audit")
    await page.get_by_label("User").fill("lost")
    await page.get_by_role("button", name="Show").click()
    await expect(page.get_by_role("cell", name="device_unbound")).to_be_visible()
    await tab.shot("console-audit")
    async with page.expect_download() as waiting:
        await page.get_by_role("link", name="Export CSV").click()
    download = await waiting.value
    assert download.suggested_filename == "mfad-audit.csv"
    rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text(encoding="utf-8"))))
    assert rows and all(r["username"] == "lost" for r in rows)
    [unbound] = [r for r in rows if r["event"] == "device_unbound"]
    assert unbound["reason"] == "'=cmd|' /C calc'!A0" and unbound["actor"] == "ops"
    assert {"user_created", "device_bound"} <= {r["event"] for r in rows}
    # Read-only: the auditor changes nothing.
    assert await post_form(tab, "/admin/user/lockout", {"username": "lost"}) == 403
    assert await post_form(tab, "/admin/users", {"username": "x", "kind": "local", "password": PASSWORD}) == 403
