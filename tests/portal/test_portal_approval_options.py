"""The Approve sign-in page's options in a real browser (a DevTools virtual authenticator),
with a VPN played by radclient against the same ``mfad serve``: a TOTP code typed on the page
instead of the passkey once ``mfactl policy set --approval-with-totp true`` allows it (the
right number and code → the VPN's next request gets Access-Accept; a wrong code → refused and
counted); a TOTP code typed at the VPN prompt itself still signs in; and the mail saying an
approval waits, sent once to the bound security email however many attempts come. The
screenshot is docs/approval/approve-code.png."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, OathApp, Site, StartSite, Tab, chromium, mfad_daemon, site  # noqa: F401
from test_portal_approval import Vpn, approval_rows, vpn_client, with_passkey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))

pytestmark = [pytest.mark.slow]

CODE_FIELD = "Or the code from your authenticator app"


async def with_passkey_and_app(s: Site, chromium: Browser, user: str) -> tuple[Tab, OathApp]:
    """``user`` signed in with a passkey, and an authenticator app an administrator bound."""
    tab = await with_passkey(s, chromium, user)
    provisioning = await s.admin.admin.bind_totp(user)
    app = OathApp(provisioning.secret_base32)
    await s.admin.admin.confirm_totp(user, provisioning.device_id, await app.next_code())
    return tab, app


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_approve_with_the_number_and_a_code_once_the_policy_allows_it(
        site: StartSite, chromium: Browser) -> None:
    s = await site(radius=vpn_client())
    tab, app = await with_passkey_and_app(s, chromium, "fran")
    page = tab.page
    vpn = Vpn(s)

    _, number, state = await vpn.sign_in("fran")
    await tab.open("/approve")
    card = page.get_by_role("region", name="Sign-in through office-vpn")
    await expect(card.get_by_role("button", name="Approve with my passkey")).to_be_visible()
    assert await card.get_by_label(CODE_FIELD).count() == 0  # off by default

    changed = await s.mfad.mfactl("policy", "set", "--approval-with-totp", "true", "--json")
    assert changed.code == 0, changed.err
    assert changed.json()["approval_with_totp"] is True
    await page.reload()

    await card.get_by_label(number, exact=True).check()
    await card.get_by_label(CODE_FIELD).fill(await app.next_code())
    await tab.shot("approve-code")
    await card.get_by_role("button", name="Approve with the code").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Approved. Go back to your VPN and press Enter to finish signing in.")
    assert await vpn.enter("fran", state) == "Access-Accept"
    assert ("approved", "totp") in await approval_rows(s, "fran")

    # A wrong code: refused, counted as a failure; the sign-in still waits for a right one.
    _, number, state = await vpn.sign_in("fran")
    await page.reload()
    await card.get_by_label(number, exact=True).check()
    await card.get_by_label(CODE_FIELD).fill(app.wrong_codes()[0])
    await card.get_by_role("button", name="Approve with the code").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("^The sign-in was not approved: the number or "
                                                                    "the code did not match"))
    assert (await s.admin.admin.get_lockout("fran")).consecutive_failures == 1
    assert await vpn.enter("fran", state) == "Access-Challenge"
    # The code that approved the last sign-in: spent (replay guard), not approved.
    await card.get_by_label(number, exact=True).check()
    await card.get_by_label(CODE_FIELD).fill(app.last_code)
    await card.get_by_role("button", name="Approve with the code").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("^The sign-in was not approved"))
    assert await vpn.enter("fran", state) == "Access-Challenge"
    # The next code approves it.
    await card.get_by_label(number, exact=True).check()
    await card.get_by_label(CODE_FIELD).fill(await app.next_code())
    await card.get_by_role("button", name="Approve with the code").click()
    await expect(page.get_by_role("status")).to_have_text(re.compile("^Approved"))
    assert await vpn.enter("fran", state) == "Access-Accept"


async def test_a_code_typed_at_the_vpn_prompt_still_signs_in(site: StartSite, chromium: Browser) -> None:
    s = await site(radius=vpn_client())
    tab, app = await with_passkey_and_app(s, chromium, "gil")
    page = tab.page
    vpn = Vpn(s)
    _, _, state = await vpn.sign_in("gil")
    await tab.open("/approve")
    await expect(page.get_by_role("region", name="Sign-in through office-vpn")).to_be_visible()
    done = await vpn.send('User-Name = "gil"', f'User-Password = "{await app.next_code()}"', f"State = {state}")
    assert done.reply == "Access-Accept", done.output
    await page.reload()
    await expect(page.get_by_text("No sign-in is waiting for your approval.")).to_be_visible()
    assert await vpn.enter("gil", state) == "Access-Reject"  # that sign-in is over


async def test_the_user_is_mailed_once_that_an_approval_waits(site: StartSite, chromium: Browser) -> None:
    s = await site(radius=vpn_client(), policy={"approval_email_notice": True})
    tab = await with_passkey(s, chromium, "hana")
    page = tab.page
    await page.get_by_label("Email address").fill("hana@example.com")
    await page.get_by_role("button", name="Send code").click()
    await page.get_by_label("Verification code").fill(await s.mailed_code(1))
    await page.get_by_role("button", name="OK").click()
    await expect(page.get_by_role("status")).to_have_text("Your security email is bound.")

    vpn = Vpn(s)
    for _ in range(4):  # a burst of password attempts
        _, number, _ = await vpn.sign_in("hana")
    [_, notice] = await s.mail.wait_for(2, timeout=20)
    assert notice.envelope_to == ["hana@example.com"]
    assert notice.message["Subject"] == "A mfad sign-in is waiting for your approval"
    assert f"open {s.url}/approve and choose the number your VPN shows" in notice.text
    assert "through office-vpn from 198.51.100.7" in notice.text
    queued = await s.admin.admin.query_audit(username="hana", event="approval_notice")
    assert [e.outcome for e in queued.events] == ["queued"]  # one mail for the burst
    # The mail approves nothing: the sign-in still waits for the page.
    await tab.open("/approve")
    card = page.get_by_role("region", name="Sign-in through office-vpn")
    await expect(card.get_by_label(number, exact=True)).to_be_visible()


async def test_pam_radius_auth_in_challenge_mode_completes_an_approval_made_in_the_browser(
        site: StartSite, chromium: Browser, tmp_path: Path) -> None:
    """pamtester + pam_radius_auth 2.0 (no Message-Authenticator) against ``mfad serve``: the
    prompt shows the number; the user approves in the browser meanwhile, then presses Enter."""
    import asyncio

    from pam_peers import pam_service, pamtester_started
    from radius_peers import SECRET

    s = await site(radius={"reject_delay_seconds": 0.0, "clients": [
        {"name": "ssh-host", "address": "127.0.0.1", "secret": SECRET.decode(), "mode": "challenge",
         "require_message_authenticator": False}]})
    tab = await with_passkey(s, chromium, "ivan")
    page = tab.page
    with pam_service(tmp_path) as (service, conf):
        conf.write_text(f"127.0.0.1:{s.mfad.radius_port} {SECRET.decode()} 3\n")
        conf.chmod(0o600)
        process = await pamtester_started(service, "ivan", PASSWORD)
        assert process.stdout is not None
        shown = b""
        async with asyncio.timeout(20):  # until pam_radius_auth shows the approval prompt
            while not (found := re.search(rb"and choose (\d\d), then press Enter", shown)):
                chunk = await process.stdout.read(256)
                assert chunk, shown.decode(errors="replace")
                shown += chunk
        number = found.group(1).decode()
        assert f"Approve this sign-in at {s.url}/approve".encode() in shown

        await tab.open("/approve")
        card = page.get_by_role("region", name="Sign-in through ssh-host")
        await card.get_by_label(number, exact=True).check()
        await card.get_by_role("button", name="Approve with my passkey").click()
        await expect(page.get_by_role("status")).to_have_text(re.compile("^Approved"))

        async with asyncio.timeout(30):
            rest, _ = await process.communicate(b"\n")  # Enter at the prompt
        text = (shown + rest).decode(errors="replace")
        assert process.returncode == 0, text
        assert "successfully authenticated" in text
    assert ("approved", "passkey") in await approval_rows(s, "ivan")
