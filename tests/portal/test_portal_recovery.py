"""Recovery codes on the portal, in a real browser against a real ``mfad serve``: made on the
Security Information page (shown once, Download, Print, the count left, a fresh second factor
for new ones), refused when the policy disallows them; signing in with one ("Use a recovery
code" at the second-factor step), accepted once, refused the second time; both store engines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, PHONE, StartSite, chromium, mfad_daemon, site  # noqa: F401

from mfad_client import Method, VerifyOutcome

pytestmark = pytest.mark.slow  # a real mfad serve and a browser


async def test_sign_in_with_a_recovery_code(site: StartSite, chromium: Browser) -> None:
    s = await site()
    app = await s.user_with_app("alice")
    # The user made their codes earlier (the daemon's Enrollment API, after a fresh second factor).
    begun = await s.admin.auth.begin_sign_in("alice", PASSWORD)
    done = await s.admin.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=await app.next_code())
    assert done.session is not None
    codes = (await s.admin.enrollment.generate_recovery_codes(done.session.token)).codes

    tab = await s.browser(chromium)
    page = tab.page
    await tab.sign_in("alice")
    assert await tab.heading() == "Verify it is you"
    await page.get_by_role("link", name="Use a recovery code").click()
    await expect(page.get_by_text("Enter one of the recovery codes you saved")).to_be_visible()
    await tab.shot("verify-recovery")
    await page.get_by_label("Recovery code").fill(codes[0].lower())
    await page.get_by_role("button", name="Verify").click()
    assert await tab.heading() == "Security Information"
    await tab.sign_out()

    await tab.sign_in("alice")
    await page.get_by_role("link", name="Use a recovery code").click()
    await page.get_by_label("Recovery code").fill(codes[0])
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("."))
    assert await tab.heading() == "Verify it is you"
    assert (await s.admin.admin.recovery_status("alice")).codes_left == 9


async def test_security_information_makes_recovery_codes_shown_once_with_download_print_and_step_up(
        site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"remember_device": True, "remember_days": 7})
    app = await s.user_with_app("bob")
    tab = await s.browser(chromium)
    page = tab.page
    await tab.context.add_init_script("window.print = function () { window.printed = (window.printed || 0) + 1; };")

    # Just signed in with the app: the second factor is fresh, so no step-up is asked for.
    await tab.sign_in("bob")
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Verify").click()
    assert await tab.heading() == "Security Information"
    section = page.get_by_role("region", name="Recovery codes")
    await expect(section.get_by_text("No recovery codes yet.")).to_be_visible()
    await section.get_by_role("button", name="Make recovery codes").click()

    assert await tab.heading() == "Your recovery codes"
    await expect(page.get_by_text("they are shown only this once")).to_be_visible()
    shown = [c.strip() for c in await page.get_by_role("list", name="Recovery codes").get_by_role(
        "listitem").all_inner_texts()]
    assert len(shown) == 10 and len(set(shown)) == 10
    assert all(re.fullmatch(r"[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}", c) for c in shown), shown
    await tab.shot("security-recovery-codes")
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name="Download").click()
    download = await downloading.value
    assert download.suggested_filename == "mfad-recovery-codes-bob.txt"
    text = Path(await download.path()).read_text(encoding="utf-8")
    assert [line for line in text.splitlines() if "-" in line and len(line) == 11] == shown
    assert text.startswith("Recovery codes for bob. Each code works once.")
    await page.get_by_role("button", name="Print").click()
    assert await page.evaluate("window.printed") == 1
    await page.get_by_role("link", name="I have saved them").click()

    assert await tab.heading() == "Security Information"
    await expect(section.get_by_text("10 recovery codes left")).to_be_visible()
    assert shown[0] not in await page.content()  # shown once: never again
    assert (await s.admin.admin.recovery_status("bob")).codes_left == 10

    # New codes revoked the remembered devices (mfad's rule): the next sign-in asks again.
    await tab.sign_out()
    await tab.sign_in("bob")
    assert await tab.heading() == "Verify it is you"
    await page.get_by_label("Verification code").fill(await app.next_code())
    await page.get_by_label("Remember this device for 7 days").check()
    await page.get_by_role("button", name="Verify").click()
    # Remembered, the sign-in after that has no second factor: new codes ask for one first.
    await tab.sign_out()
    await tab.sign_in("bob")
    assert await tab.heading() == "Security Information"
    await section.get_by_role("button", name="Make new recovery codes").click()
    assert await tab.heading() == "Confirm it is you"
    await expect(page.get_by_text("New recovery codes need a fresh second step.")).to_be_visible()
    await page.get_by_label("Verification code", exact=True).fill("000000")
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text("That did not confirm it is you. Try again.")
    assert (await s.admin.admin.recovery_status("bob")).codes_left == 10  # nothing made yet
    await page.get_by_label("Verification code", exact=True).fill(await app.next_code())
    await page.get_by_role("button", name="Confirm", exact=True).click()
    assert await tab.heading() == "Your recovery codes"
    fresh = [c.strip() for c in await page.get_by_role("list", name="Recovery codes").get_by_role(
        "listitem").all_inner_texts()]
    assert len(fresh) == 10 and not set(fresh) & set(shown)
    await page.set_viewport_size(PHONE)
    await tab.shot("security-recovery-codes-phone")

    # The old set is gone, the new one works, once.
    refused = await s.admin.auth.verify_code("bob", shown[1], method=Method.RECOVERY)
    assert refused is VerifyOutcome.REFUSED
    assert await s.admin.auth.verify_code("bob", fresh[1], method=Method.RECOVERY) is VerifyOutcome.ACCEPTED
    assert await s.admin.auth.verify_code("bob", fresh[1], method=Method.RECOVERY) is VerifyOutcome.REFUSED
    made = await s.admin.admin.query_audit(username="bob", event="recovery_codes")
    assert sorted(e.outcome for e in made.events) == ["generated", "regenerated"]


async def test_recovery_codes_when_the_policy_disallows_them(site: StartSite, chromium: Browser) -> None:
    s = await site(policy={"allowed_methods": ["passkey", "totp", "email", "u2f"]})
    app = await s.user_with_app("carol")
    tab = await s.browser(chromium, locale="zh-CN")
    page = tab.page
    await tab.open("/signin")
    await page.get_by_label("用户名").fill("carol")
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录", exact=True).click()
    await page.get_by_label("验证码").fill(await app.next_code())
    await page.get_by_role("button", name="验证").click()
    section = page.get_by_role("region", name="恢复码")
    await expect(section.get_by_text("您的管理员不允许使用恢复码。")).to_be_visible()
    assert await section.get_by_role("button").count() == 0
