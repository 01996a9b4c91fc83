"""One-time enrolment codes in a real browser against a real ``mfad serve``, on both store
engines: with ``enrolment_proof = access_code`` a new user who knows only the password cannot
bind a first device (neither through the page nor by posting the binding form); an admin
issues a code on the console user page (shown once); with the code the user binds a device,
and the code works once; after the admin unbinds the user's last device the console offers a
code at once; an expired code is refused (the daemon's wall clock moved with libfaketime).
Screenshots: docs/portal/signin-enrolment-code.png, console-enrolment-code.png."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from portal_support import (  # noqa: F401
    PASSWORD,
    DaemonClock,
    OathApp,
    Site,
    StartSite,
    Tab,
    chromium,
    mfad_daemon,
    post_form,
    read_qr,
    secret_of,
    site,
)
from test_portal_console import staff_with_app

from mfad_client import StaffRole

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite", "postgres"])]

REFUSED = "The enrolment code was not accepted. Check it, or ask your administrator for a new one."


async def enter_code(page: Page, code: str) -> None:
    await page.get_by_role("textbox", name="Enrolment code").fill(code)
    await page.get_by_role("button", name="Continue").click()


async def issue_on_console(tab: Tab, username: str, hours: str = "24") -> str:
    page = tab.page
    await tab.open(f"/admin/user?name={username}")
    await page.get_by_label("Valid for (hours)").fill(hours)
    await page.get_by_role("button", name="Issue enrolment code").click()
    code = (await page.get_by_label("New enrolment code").inner_text()).strip()
    assert len(code) == 14 and code.count("-") == 2
    return code


async def bind_totp(tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    assert await tab.heading() == "Bind an MFA device"
    await page.get_by_role("button", name="Bind a virtual MFA device").click()
    uri = read_qr(await page.get_by_role("img", name="QR code for your authenticator app").screenshot(), tmp_path)
    app = OathApp(secret_of(uri))
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_role("button", name="OK").click()
    assert await tab.heading() == "Security Information"


async def test_a_first_device_needs_the_enrolment_code_once(site: StartSite, chromium: Browser,
                                                           tmp_path: Path) -> None:
    clock = DaemonClock(tmp_path / "faketime")
    s = await site(policy={"enrolment_proof": "access_code"}, clock=clock)
    await s.admin.admin.create_user("nina", PASSWORD)
    admin_tab = await s.browser(chromium)
    await staff_with_app(s, admin_tab, "root", StaffRole.ADMIN)
    tab = await s.browser(chromium)
    page = tab.page

    # The password alone: the page asks for the code, and mfad refuses a binding without it.
    await tab.sign_in("nina")
    assert await tab.heading() == "Enrolment code"
    await tab.shot("signin-enrolment-code")
    await tab.open("/signin/bind")
    assert await tab.heading() == "Enrolment code"  # the bind page sends it back
    assert await post_form(tab, "/signin/bind/totp", {}) == 403
    await enter_code(page, "ABCD-EFGH-JKMN")
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert (await s.admin.admin.list_devices("nina")).devices == ()

    # The admin issues one on the console: shown once, on that answer only.
    code = await issue_on_console(admin_tab, "nina")
    await admin_tab.shot("console-enrolment-code")
    await admin_tab.open("/admin/user?name=nina")
    assert await admin_tab.page.get_by_label("New enrolment code").count() == 0
    await enter_code(page, code.lower().replace("-", " "))
    await bind_totp(tab, tmp_path)
    assert len((await s.admin.admin.list_devices("nina")).devices) == 1

    # The admin unbinds the last device: the console offers a code at once; the used code is refused.
    await admin_tab.open("/admin/user?name=nina")
    await admin_tab.page.get_by_label("Reason for unbinding authenticator app").fill("phone lost")
    await admin_tab.page.get_by_role("button", name="Unbind authenticator app").click()
    await expect(admin_tab.page.get_by_role("status")).to_have_text(
        "The device is unbound. The user's sessions are ended.")
    await expect(admin_tab.page.get_by_role("note").filter(has_text="nina has no device left")).to_be_visible()
    await tab.sign_in("nina")
    await enter_code(page, code)
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)

    # An expired code: issued for one hour, presented two hours later.
    short = await issue_on_console(admin_tab, "nina", hours="1")
    clock.set(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    await tab.sign_in("nina")
    assert await tab.heading() == "Enrolment code"
    await enter_code(page, short)
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert (await s.admin.admin.list_devices("nina")).devices == ()
    refusals = [e.reason for e in (await s.admin.admin.query_audit(username="nina", event="enrolment_proof")).events
                if e.outcome == "refused"]
    assert refusals == ["no_code"] * 3  # none issued yet, used, expired: all alike to the user


async def test_security_information_asks_for_the_code_before_a_first_device(site: StartSite, chromium: Browser,
                                                                            tmp_path: Path) -> None:
    """``mfa_required = enrolled``: a user with no device signs in with the password alone, and
    the Security Information page asks for the enrolment code before offering to bind."""
    s = await site(policy={"mfa_required": "enrolled", "enrolment_proof": "access_code"})
    await s.admin.admin.create_user("omar", PASSWORD)
    tab = await s.browser(chromium)
    page = tab.page
    await tab.sign_in("omar")
    assert await tab.heading() == "Security Information"
    await expect(page.get_by_role("heading", name="Enrolment code")).to_be_visible()
    assert await page.get_by_role("button", name="Bind a virtual MFA device").count() == 0
    assert await post_form(tab, "/security/totp", {}) == 403  # mfad refuses the binding itself
    assert await post_form(tab, "/security/proof", {"code": "ABCD-EFGH-JKMN"}, csrf=False) == 403
    await enter_code(page, "ABCD-EFGH-JKMN")
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    assert (await s.admin.admin.list_devices("omar")).devices == ()

    code = (await s.admin.admin.issue_enrolment_code("omar")).code
    await enter_code(page, code)
    await expect(page.get_by_role("status")).to_have_text(
        "Your code was accepted. You can now bind your first MFA device.")
    assert await page.get_by_role("heading", name="Enrolment code").count() == 0
    await page.get_by_role("button", name="Bind a virtual MFA device").click()
    uri = read_qr(await page.get_by_role("img", name="QR code for your authenticator app").screenshot(), tmp_path)
    await page.get_by_label("Verification code").fill(await OathApp(secret_of(uri)).next_code())
    await page.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("status")).to_have_text("Your virtual MFA device is bound.")
    assert len((await s.admin.admin.list_devices("omar")).devices) == 1
