"""Emergency sign-in and passkey-only console roles in a real browser against a real
``mfad serve`` (both store engines), with a real SMTP server:

- "Lost your device?" at the second-factor step → a code to the security email → the
  Security Information page marks the lost device; without the policy's
  ``email_recovery`` it offers no removal and says to ask an administrator (and mfad
  refuses a removal sent anyway); with it, the user removes the lost device; a notice
  mail and the audit record the emergency sign-in;
- with ``roles_need_passkey`` the console refuses an administrator signed in with a TOTP
  code, opens after a passkey sign-in, and a TOTP step-up does not confirm a policy change
  while a passkey one does.

Screenshots: docs/portal/verify-lost-device.png, security-emergency.png,
security-emergency-recovery.png, console-needs-passkey.png."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, expect
from portal_support import HELP, PASSWORD, OathApp, Site, StartSite, Tab, chromium, mfad_daemon, site  # noqa: F401

from mfad_client import Method, StaffRole

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite", "postgres"])]


async def with_security_email(s: Site, username: str) -> tuple[OathApp, str]:
    """A user with an authenticator app and a bound security email; (the app, the TOTP device id)."""
    app = await s.user_with_app(username)
    sent = await s.admin.admin.bind_email(username, f"{username}@example.com")
    await s.admin.admin.confirm_email(username, sent.device_id, await s.mailed_code(1))
    [totp] = [d for d in (await s.admin.admin.list_devices(username)).devices if d.method is Method.TOTP]
    return app, totp.id


async def lost_device_sign_in(s: Site, tab: Tab, username: str) -> None:
    page = tab.page
    await tab.sign_in(username)
    assert await tab.heading() == "Verify it is you"
    lost = page.get_by_role("region", name="Lost your device?")
    await expect(lost).to_be_visible()
    await expect(page.get_by_role("link", name="Security email", exact=True)).to_have_count(0)
    await tab.shot("verify-lost-device")
    await lost.get_by_role("link", name="Sign in with your security email").click()
    await expect(page.get_by_text("Sign in with a one-time code sent to your security email")).to_be_visible()
    await s.resend_allowed()
    await page.get_by_role("button", name=f"Send a code to {username[0]}***@example.com").click()
    await page.get_by_label("Verification code").fill(await s.mailed_code(2))
    await page.get_by_role("button", name="Verify").click()
    assert await tab.heading() == "Security Information"


async def test_lost_device_sign_in_marks_the_device_and_sends_to_an_administrator(
        site: StartSite, chromium: Browser) -> None:
    s = await site()
    _, totp_id = await with_security_email(s, "alice")
    tab = await s.browser(chromium)
    page = tab.page
    await lost_device_sign_in(s, tab, "alice")

    note = page.get_by_role("note").filter(has_text="You signed in with your security email")
    await expect(note).to_be_visible()
    await expect(note).to_contain_text(f"Ask {HELP} to remove a lost device, then bind a new one.")
    totp = page.get_by_role("region", name="Virtual MFA device")
    await expect(totp.get_by_text("Possibly lost")).to_be_visible()
    await expect(page.get_by_role("region", name="Security email").get_by_text("Possibly lost")).to_have_count(0)
    await expect(page.get_by_role("button", name="Remove", exact=False)).to_have_count(0)
    await tab.shot("security-emergency")

    # The page only leaves the button out: mfad itself refuses a removal sent anyway.
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = await page.request.post(s.url + "/security/devices/remove", form={"csrf": token or "",
                                                                               "device_id": totp_id},
                                     headers={"Origin": s.url}, max_redirects=0)
    assert answer.status == 403
    assert "You cannot remove devices yourself now" in await answer.text()
    assert totp_id in [d.id for d in (await s.admin.admin.list_devices("alice")).devices]

    notice = (await s.mail.wait_for(3, timeout=20))[2]
    assert notice.envelope_to == ["alice@example.com"] and "Emergency sign-in" in notice.message["Subject"]
    signed = await s.admin.admin.query_audit(username="alice", event="emergency_signin")
    assert [e.detail for e in signed.events] == [f"lost={totp_id} email_recovery=false"]


async def test_with_email_recovery_the_user_removes_the_lost_device(site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"email_recovery": True})
    _, totp_id = await with_security_email(s, "bob")
    tab = await s.browser(chromium, locale="en-US")
    page = tab.page
    await lost_device_sign_in(s, tab, "bob")
    note = page.get_by_role("note").filter(has_text="You signed in with your security email")
    await expect(note).to_contain_text("If you lost one, remove it and bind a new device.")
    totp = page.get_by_role("region", name="Virtual MFA device")
    await expect(totp.get_by_text("Possibly lost")).to_be_visible()
    await tab.shot("security-emergency-recovery")
    await totp.get_by_role("button", name="Remove authenticator app").click()
    await expect(page.get_by_role("status")).to_have_text("The device is removed.")
    assert [d.method for d in (await s.admin.admin.list_devices("bob")).devices] == [Method.EMAIL]
    # Removed: nothing is presumed lost any more, and the way to bind a new device is there.
    await expect(page.get_by_text("Possibly lost")).to_have_count(0)
    await expect(page.get_by_role("button", name="Bind a virtual MFA device")).to_be_visible()


async def test_the_console_needs_a_passkey_sign_in_and_a_passkey_step_up(site: StartSite,
                                                                         chromium: Browser) -> None:
    s = await site(policy={"roles_need_passkey": True, "sensitive_reauth_seconds": 30})
    app = await s.user_with_app("ada")
    await s.admin.admin.set_role("ada", StaffRole.ADMIN)
    tab = await s.browser(chromium)
    page = tab.page
    await tab.passkey_authenticator()

    await tab.sign_in("ada")
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_role("button", name="Verify", exact=True).click()
    assert await tab.heading() == "Security Information"
    answer = await page.goto(s.url + "/admin")
    assert answer is not None and answer.status == 403
    await expect(page.get_by_text("If your administrator requires a passkey for the console")).to_be_visible()
    await tab.shot("console-needs-passkey")

    await tab.open("/security")
    await page.get_by_label("Passkey name").fill("laptop")
    await page.get_by_role("button", name="Create passkey").click()
    await expect(page.get_by_role("status")).to_be_visible()
    await tab.sign_out()
    await tab.sign_in("ada")
    await page.get_by_role("button", name="Use my passkey").click()
    await page.wait_for_url("**/security")
    await page.get_by_role("link", name="Console").click()
    assert await tab.heading() == "Console overview"

    await page.get_by_role("link", name="Policy").click()
    await expect(page.get_by_label("Console needs a passkey")).to_be_checked()
    await expect(page.get_by_label("Recovery with the security email")).not_to_be_checked()
    await expect(page.get_by_text("After an emergency sign-in with their security email")).to_be_visible()
    await asyncio.sleep(31)  # past the policy's 30 s: the sign-in's passkey is no longer fresh
    await page.get_by_label("Remember for (days)").fill("9")
    await page.get_by_role("button", name="Review the change").click()
    await page.get_by_role("button", name="Save the policy").click()
    assert await tab.heading() == "Confirm it is you"
    await page.get_by_label("Verification code", exact=True).fill(await app.next_code())
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(page.get_by_text("Your administrator requires your passkey to confirm console changes.")) \
        .to_be_visible()
    assert (await s.admin.admin.get_policy()).remember_days == 7  # a TOTP step-up did not save it

    await tab.open("/admin/policy")
    await page.get_by_label("Remember for (days)").fill("9")
    await page.get_by_role("button", name="Review the change").click()
    await page.get_by_role("button", name="Save the policy").click()
    assert await tab.heading() == "Confirm it is you"
    await page.get_by_role("button", name="Use my passkey").click()
    await expect(page.get_by_role("status")).to_have_text("The policy is changed.")
    assert (await s.admin.admin.get_policy()).remember_days == 9
    denied = await s.admin.admin.query_audit(username="ada", event="console_denied")
    assert any("needs=passkey_sign_in signed_in_with=totp" in (e.reason or "") for e in denied.events)
