"""The Approve sign-in page in a real browser (a DevTools virtual authenticator), with a VPN
played by radclient against the same ``mfad serve``, on both engines: the right number and the
passkey → the VPN's next request gets Access-Accept; a wrong number → refused and audited;
**Deny — this wasn't me** → Access-Reject, then the account locked on request; an approval
that comes too late → refused. The screenshots are docs/approval/*.png."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, PHONE, Site, StartSite, Tab, chromium, mfad_daemon, site  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, RadclientResult, radclient  # noqa: E402

pytestmark = [pytest.mark.slow]

PROMPT = re.compile(r"^Approve this sign-in at (\S+) and choose (\d\d), then press Enter")


def vpn_client(**extra: object) -> dict[str, object]:
    return {"reject_delay_seconds": 0.0, **extra,
            "clients": [{"name": "office-vpn", "address": "127.0.0.1", "secret": SECRET.decode(),
                         "mode": "challenge", "trust_calling_station_id": True}]}


class Vpn:
    def __init__(self, s: Site) -> None:
        self.port = s.mfad.radius_port

    async def send(self, *lines: str) -> RadclientResult:
        return await radclient("127.0.0.1", self.port, [*lines, "Message-Authenticator = 0x00"])

    async def sign_in(self, user: str) -> tuple[str, str, str]:
        """The password step: (the page's address, the number, the State)."""
        reply = await self.send(f'User-Name = "{user}"', f'User-Password = "{PASSWORD}"',
                                'Calling-Station-Id = "198.51.100.7"')
        assert reply.reply == "Access-Challenge", reply.output
        found = PROMPT.match(reply.first("Reply-Message") or "")
        assert found, reply.first("Reply-Message")
        state = reply.first("State")
        assert state is not None
        return found.group(1), found.group(2), state

    async def enter(self, user: str, state: str) -> str | None:
        """The user presses Enter at the prompt (no password)."""
        return (await self.send(f'User-Name = "{user}"', f"State = {state}")).reply


async def with_passkey(s: Site, chromium: Browser, user: str) -> Tab:
    """``user`` signed in to the portal with a passkey bound at first sign-in."""
    await s.admin.admin.create_user(user, PASSWORD)
    tab = await s.browser(chromium, viewport=PHONE)
    await tab.passkey_authenticator()
    await tab.sign_in(user)
    await tab.page.get_by_label("Passkey name").fill("phone")
    await tab.page.get_by_role("button", name="Create passkey").click()
    await tab.page.wait_for_url("**/security")
    return tab


async def approval_rows(s: Site, user: str) -> list[tuple[str, str]]:
    found = await s.admin.admin.query_audit(username=user, event="approval")
    return sorted((e.outcome, e.reason) for e in found.events)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_approve_with_the_right_number_and_a_passkey_then_wrong_number_then_deny(
        site: StartSite, chromium: Browser) -> None:
    s = await site(radius=vpn_client())
    tab = await with_passkey(s, chromium, "dana")
    page = tab.page
    vpn = Vpn(s)

    url, number, state = await vpn.sign_in("dana")
    assert url == f"{s.url}/approve"
    assert await vpn.enter("dana", state) == "Access-Challenge"  # not approved yet
    await page.get_by_role("link", name="Approve sign-in").click()
    assert await tab.heading() == "Approve sign-in"
    card = page.get_by_role("region", name="Sign-in through office-vpn")
    await expect(card.get_by_text("198.51.100.7")).to_be_visible()
    assert await card.get_by_role("radio").count() == 3
    await tab.shot("approve")
    await card.get_by_label(number, exact=True).check()
    await card.get_by_role("button", name="Approve with my passkey").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Approved. Go back to your VPN and press Enter to finish signing in.")
    await expect(page.get_by_text("No sign-in is waiting for your approval.")).to_be_visible()
    await tab.shot("approve-done")
    assert await vpn.enter("dana", state) == "Access-Accept"
    assert await vpn.enter("dana", state) == "Access-Reject"  # used once

    # A wrong number: refused, audited, counted; the VPN's sign-in is over.
    _, number, state = await vpn.sign_in("dana")
    await page.reload()
    choices = [await r.get_attribute("value") for r in await card.get_by_role("radio").all()]
    wrong = next(c for c in choices if c != number)
    assert wrong is not None
    await card.get_by_label(wrong, exact=True).check()
    await card.get_by_role("button", name="Approve with my passkey").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("^The sign-in was not approved"))
    assert await vpn.enter("dana", state) == "Access-Reject"
    assert ("refused", "approval_wrong_number") in await approval_rows(s, "dana")
    assert (await s.admin.admin.get_lockout("dana")).consecutive_failures == 1

    # "Deny — this wasn't me": refused, then the account locked on request.
    _, _, state = await vpn.sign_in("dana")
    await page.goto(s.url + "/approve")
    await card.get_by_role("button", name="Deny — this wasn't me").click()
    assert await tab.heading() == "The sign-in is refused"
    await tab.shot("approve-denied")
    assert await vpn.enter("dana", state) == "Access-Reject"
    await page.get_by_role("button", name="Lock my account and tell the administrator").click()
    assert (await tab.heading()).startswith("Your account is locked")
    assert ("denied", "approval_denied_by_user") in await approval_rows(s, "dana")
    reported = await s.admin.admin.query_audit(username="dana", event="approval_reported")
    assert [e.outcome for e in reported.events] == ["locked"]
    refused = await vpn.send('User-Name = "dana"', f'User-Password = "{PASSWORD}"')
    assert refused.reply == "Access-Reject"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_an_approval_after_the_state_expired_is_refused(site: StartSite, chromium: Browser) -> None:
    s = await site(radius=vpn_client(), limits={"challenge_ttl_seconds": 10})
    tab = await with_passkey(s, chromium, "erin")
    page = tab.page
    vpn = Vpn(s)
    _, number, state = await vpn.sign_in("erin")
    await tab.open("/approve")
    card = page.get_by_role("region", name="Sign-in through office-vpn")
    await card.get_by_label(number, exact=True).check()
    await asyncio.sleep(11)  # the State's life ([limits] challenge_ttl_seconds) runs out while the page is open
    await card.get_by_role("button", name="Approve with my passkey").click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("^The sign-in was not approved"))
    assert await vpn.enter("erin", state) == "Access-Reject"
    assert ("refused", "approval_decided_or_expired") in await approval_rows(s, "erin")
