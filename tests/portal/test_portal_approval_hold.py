"""Hold mode on the Approve sign-in page, in a real browser against ``mfad serve`` (both
engines): an append client with ``approval_hold_seconds``, the VPN played by radclient
retransmitting every 3 s. The page shows where and when the held sign-in comes from and no
number to choose; the passkey alone approves it, and the waiting request gets Access-Accept."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from portal_support import PASSWORD, StartSite, chromium, mfad_daemon, site  # noqa: F401
from test_portal_approval import approval_rows, with_passkey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import RADCLIENT, SECRET  # noqa: E402

pytestmark = [pytest.mark.slow]


def held_vpn() -> dict[str, object]:
    return {"reject_delay_seconds": 0.0,
            "clients": [{"name": "old-vpn", "address": "127.0.0.1", "secret": SECRET.decode(), "mode": "append",
                         "trust_calling_station_id": True, "approval_hold_seconds": 60}]}


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_held_sign_in_is_approved_with_the_passkey_alone(site: StartSite, chromium: Browser) -> None:
    s = await site(radius=held_vpn())
    tab = await with_passkey(s, chromium, "fay")
    page = tab.page
    assert RADCLIENT is not None
    nas = await asyncio.create_subprocess_exec(
        RADCLIENT, "-x", "-r", "20", "-t", "3", f"127.0.0.1:{s.mfad.radius_port}", "auth", SECRET.decode(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert nas.stdin is not None
    nas.stdin.write(f'User-Name = "fay"\nUser-Password = "{PASSWORD}approve"\n'
                    'Calling-Station-Id = "198.51.100.9"\nMessage-Authenticator = 0x00\n'.encode())
    nas.stdin.close()
    card = page.get_by_role("region", name="Sign-in through old-vpn")
    async with asyncio.timeout(20):
        while True:
            await tab.open("/approve")
            if await card.count():
                break
            await asyncio.sleep(0.2)
    await expect(card.get_by_text("198.51.100.9")).to_be_visible()
    assert await card.get_by_role("radio").count() == 0  # held: no number to match
    assert await card.get_by_role("group", name="Which number does your VPN show?").count() == 0
    await expect(card.get_by_text("shows no number: approve only if the place and time above are yours")).to_be_visible()
    await card.get_by_role("button", name="Approve with my passkey").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Approved. Go back to your VPN and press Enter to finish signing in.")
    async with asyncio.timeout(30):
        out, _ = await nas.communicate()
    assert "Received Access-Accept" in out.decode(errors="replace"), out.decode(errors="replace")
    assert ("approved", "passkey") in await approval_rows(s, "fay")
    assert ("pending", "held") in await approval_rows(s, "fay")
