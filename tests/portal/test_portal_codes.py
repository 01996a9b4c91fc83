"""The portal in a real browser, with codes: first sign-in binding a virtual MFA device (the QR code
the page shows read back by zbarimg, codes from oathtool), a security email bound on the
Security Information page (code from a real SMTP server), sign-in with TOTP and with an email
code, "remember this device" then a sign-in without a second factor, removal of a device with
the inline step-up, revocation; both store engines."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect
from portal_support import (  # noqa: F401
    PASSWORD,
    PHONE,
    OathApp,
    StartSite,
    chromium,
    mfad_daemon,
    read_qr,
    secret_of,
    site,
)

from mfad_client import Method

pytestmark = pytest.mark.slow  # a real mfad serve and a browser


async def test_first_sign_in_binds_a_virtual_mfa_device_then_email_remember_and_step_up(
        site: StartSite, chromium: Browser, tmp_path: object) -> None:
    s = await site(policy={"remember_device": True, "remember_days": 7})
    await s.admin.admin.create_user("alice", PASSWORD)
    tab = await s.browser(chromium)
    page = tab.page

    await tab.open("/signin")
    await tab.shot("signin")
    await tab.sign_in("alice")
    assert await tab.heading() == "Bind an MFA device"
    await tab.shot("bind")
    # At first sign-in only a passkey or a virtual MFA device: no way to bind an email here.
    await expect(page.get_by_role("button", name="Create passkey")).to_be_visible()
    assert await page.get_by_label("Email address").count() == 0

    await page.get_by_role("button", name="Bind a virtual MFA device").click()
    assert await tab.heading() == "Bind a virtual MFA device"
    await tab.shot("bind-totp")
    uri = read_qr(await page.get_by_role("img", name="QR code for your authenticator app").screenshot(),
                  tmp_path)  # type: ignore[arg-type]
    assert uri.startswith("otpauth://totp/mfad:alice?")
    secret = secret_of(uri)
    shown_key = (await page.get_by_label("Key").inner_text()).replace(" ", "")
    assert shown_key == secret
    await expect(page.get_by_text("mfad: alice")).to_be_visible()
    app = OathApp(secret)
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_role("button", name="OK").click()

    assert await tab.heading() == "Security Information"  # binding completed the sign-in
    await expect(page.get_by_role("status")).to_have_text("Your virtual MFA device is bound. You are signed in.")
    await expect(page.get_by_text("bind at least two types, e.g. a passkey and a security email")).to_be_visible()
    await expect(page.get_by_text("ask the IT help desk (helpdesk@example.com) to remove it")).to_be_visible()
    await tab.shot("security-first")

    # A security email, from the Security Information page only.
    await expect(page.get_by_text("The email address in your profile is not your security email")).to_be_visible()
    await page.get_by_label("Email address").fill("alice@example.com")
    await page.get_by_role("button", name="Send code").click()
    assert await tab.heading() == "Bind a security email"
    await expect(page.get_by_text("a***@example.com")).to_be_visible()
    await tab.shot("bind-email")
    await page.get_by_label("Verification code").fill("000000")
    await page.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("not accepted"))
    await page.get_by_label("Verification code").fill(await s.mailed_code(1))
    await page.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("status")).to_have_text("Your security email is bound.")
    await expect(page.get_by_text("alice@example.com")).to_be_visible()
    assert await page.get_by_text("bind at least two types").count() == 0
    await tab.shot("security")
    await tab.page.set_viewport_size(PHONE)
    await tab.shot("security-phone")
    await tab.page.set_viewport_size({"width": 1100, "height": 900})

    await tab.sign_out()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    ended = await s.admin.admin.query_audit(username="alice", event="session_ended")
    assert len(ended.events) == 1  # sign-out ended the session in mfad too

    # Second sign-in: the strongest method first (TOTP), the email code one link away.
    await tab.sign_in("alice")
    assert await tab.heading() == "Verify it is you"
    await expect(page.get_by_label("Verification code")).to_be_visible()
    await expect(page.get_by_label("Remember this device for 7 days")).to_be_visible()
    await tab.shot("verify-totp")
    await page.get_by_role("link", name="Sign in with your security email").click()
    await s.resend_allowed()
    await page.get_by_role("button", name="Send a code to a***@example.com").click()
    await expect(page.get_by_text("We sent a code to a***@example.com")).to_be_visible()
    await tab.shot("verify-email")
    await page.get_by_label("Verification code").fill(await s.mailed_code(2))
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Verify").click()
    assert await tab.heading() == "Security Information"
    remember = await tab.cookie("mfad_remember")
    assert remember is not None and remember["httpOnly"] and remember["sameSite"] == "Lax"
    session = await tab.cookie("mfad_session")
    assert session is not None and session["httpOnly"]
    await expect(page.get_by_role("button", name="Revoke", exact=True)).to_have_count(1)

    # Remembered: the next sign-in skips the second factor (and the token rotates).
    await tab.sign_out()
    await tab.sign_in("alice")
    assert await tab.heading() == "Security Information"
    rotated = await tab.cookie("mfad_remember")
    assert rotated is not None and rotated["value"] != remember["value"]

    # That sign-in had no second factor: removing a device asks for one, inline.
    await page.get_by_role("button", name="Remove alice@example.com").click()
    assert await tab.heading() == "Confirm it is you"
    await tab.shot("step-up")
    await page.get_by_label("Verification code", exact=True).fill("000000")
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text("That did not confirm it is you. Try again.")
    assert [d.method for d in (await s.admin.admin.list_devices("alice")).devices].count(Method.EMAIL) == 1
    await page.get_by_label("Verification code", exact=True).fill(await app.next_code())
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("The device is removed.")
    assert [d.method for d in (await s.admin.admin.list_devices("alice")).devices] == [Method.TOTP]

    # Removing a device revoked the remembered ones (mfad's rule): the next sign-in asks again.
    await tab.sign_out()
    await tab.sign_in("alice")
    assert await tab.heading() == "Verify it is you"
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Verify").click()
    assert await tab.heading() == "Security Information"
    await page.get_by_role("button", name="Revoke all").click()
    await expect(page.get_by_text("No device is remembered.")).to_be_visible()
    await tab.sign_out()
    await tab.sign_in("alice")
    assert await tab.heading() == "Verify it is you"  # revoked: a second factor again
