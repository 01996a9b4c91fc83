"""Signing in on the portal with a recovery code, in a real browser against a real
``mfad serve``: "Use a recovery code" at the second-factor step, accepted once, refused the
second time; both store engines."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, StartSite, chromium, mfad_daemon, site  # noqa: F401

from mfad_client import Method

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
