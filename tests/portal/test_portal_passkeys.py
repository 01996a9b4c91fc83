"""The portal's passkey pages in a real browser (DevTools virtual authenticators), PostgreSQL under
the daemon: first sign-in binding a passkey, sign-in with it, usernameless sign-in, a second
passkey from the Security Information page; a U2F key imported from an older system upgraded to
a passkey (refused for a CTAP1-only key, which keeps working; done for a CTAP2 one), over https
because browsers take the U2F ``appid`` extension only there."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Route, expect
from portal_support import PASSWORD, StartSite, chromium, mfad_daemon, site  # noqa: F401

from mfad_client import Method

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["postgres"])]


async def test_first_sign_in_binds_a_passkey_then_passkey_and_usernameless_sign_in(
        site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"remember_device": True})
    await s.admin.admin.create_user("bob", PASSWORD)
    tab = await s.browser(chromium)
    page = tab.page
    laptop = await tab.passkey_authenticator()

    await tab.sign_in("bob")
    assert await tab.heading() == "Bind an MFA device"
    await page.get_by_label("Passkey name").fill("laptop")
    await page.get_by_role("button", name="Create passkey").click()
    await page.wait_for_url("**/security")
    await expect(page.get_by_role("status")).to_have_text("Your passkey is created. You are signed in.")
    [made] = await tab.credentials(laptop)
    assert made["isResidentCredential"] and made["rpId"] == "localhost"
    [device] = (await s.admin.admin.list_devices("bob")).devices
    assert device.method is Method.PASSKEY and device.name == "laptop"
    await expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()

    await tab.sign_out()
    await tab.sign_in("bob")
    assert await tab.heading() == "Verify it is you"
    await tab.shot("verify-passkey")
    await page.get_by_role("button", name="Use my passkey").click()
    await page.wait_for_url("**/security")

    await tab.sign_out()
    await page.get_by_role("button", name="Sign in with a passkey").click()  # no username, no password
    await page.wait_for_url("**/security")
    await expect(page.get_by_text("Signed in as bob")).to_be_visible()

    # A second passkey, on another authenticator (the first one already holds bob's).
    phone = await tab.passkey_authenticator(transport="usb", automaticPresenceSimulation=False)
    await tab.touch(phone, instead_of=laptop)
    await page.get_by_label("Passkey name").fill("phone")
    await page.get_by_role("button", name="Create passkey").click()
    await expect(page.get_by_role("status")).to_have_text("Your passkey is created.")
    assert len(await tab.credentials(phone)) == 1
    await expect(page.get_by_role("cell", name="phone", exact=True)).to_be_visible()
    await tab.shot("security-passkeys")

    # Signed in by a remembered device (no second factor): removing a passkey asks for one, inline.
    # (Binding the phone revoked remembered devices, mfad's rule: remember this one now.)
    await tab.sign_out()
    await tab.sign_in("bob")
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Use my passkey").click()
    await page.wait_for_url("**/security")
    assert await tab.cookie("mfad_remember") is not None
    await tab.sign_out()
    await tab.sign_in("bob")
    assert await tab.heading() == "Security Information"
    await page.get_by_role("button", name="Remove laptop").click()
    assert await tab.heading() == "Confirm it is you"
    await page.get_by_role("button", name="Use my passkey").click()
    await expect(page.get_by_role("status")).to_have_text("The device is removed.")
    assert [d.name for d in (await s.admin.admin.list_devices("bob")).devices] == ["phone"]


async def test_a_u2f_key_is_upgraded_to_a_passkey_only_by_a_ctap2_key(site: StartSite, chromium: Browser) -> None:
    s = await site(https=True)
    await s.admin.admin.create_user("carol", PASSWORD)
    tab = await s.browser(chromium)
    page = tab.page
    u2f = await tab.authenticator(protocol="u2f", transport="usb", hasResidentKey=False, hasUserVerification=False)
    device_id = await s.legacy_key(tab, "carol", u2f, counter=3)

    await tab.sign_in("carol")
    assert await tab.heading() == "Verify it is you"
    await tab.shot("verify-u2f")
    await page.get_by_role("button", name="Use my security key").click()
    await page.wait_for_url("**/security")
    await expect(page.get_by_role("heading", name="U2F security keys")).to_be_visible()

    # A CTAP1-only key cannot verify its user. The browser would wait for another key until the
    # ceremony's timeout (a person cancels); a page that bends the options gets a credential the
    # key can make, and mfad refuses it, saying why. The key stays and works.
    async def bend(route: Route) -> None:
        answer = await route.fetch()
        body = await answer.json()
        body["options"]["authenticatorSelection"] = {"userVerification": "discouraged",
                                                     "residentKey": "discouraged", "requireResidentKey": False}
        body["options"]["timeout"] = 5000
        await route.fulfill(response=answer, json=body)

    await page.route("**/security/u2f/options", bend)
    upgrade = page.get_by_role("button", name="Upgrade old key to passkey")
    await upgrade.click()
    dialog = page.get_by_role("dialog", name="Update U2F to Passkey")
    await expect(dialog).to_be_visible()
    await tab.shot("upgrade-dialog")
    await dialog.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "This key cannot become a passkey: it cannot verify you with a PIN or biometrics. "
        "It keeps working as a security key.")
    await tab.shot("upgrade-refused")
    await page.unroute("**/security/u2f/options")
    [still] = (await s.admin.admin.list_devices("carol")).devices
    assert still.method is Method.U2F and still.id == device_id

    # The same key speaking CTAP2 with a PIN completes it; the U2F record is retired.
    ctap2 = await tab.authenticator(protocol="ctap2", ctap2Version="ctap2_1", transport="usb", hasResidentKey=True,
                                    hasUserVerification=True, isUserVerified=True, automaticPresenceSimulation=False)
    await tab.touch(ctap2, instead_of=u2f)
    await upgrade.click()
    await dialog.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("status")).to_have_text("Your security key is now a passkey.")
    [device] = (await s.admin.admin.list_devices("carol")).devices
    assert device.method is Method.PASSKEY and device.name == "old key"
    assert await page.get_by_role("heading", name="U2F security keys").count() == 0
    hsts = await page.evaluate("async () => (await fetch('/security')).headers.get('strict-transport-security')")
    assert hsts == "max-age=31536000"
