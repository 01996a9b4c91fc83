"""What the portal tests share: a real ``mfad serve`` with its portal on a known port (so its
origin, and WebAuthn's, is known), a real SMTP server, headless Chromium, an authenticator app
whose codes come from ``oathtool``, and screenshots.

Import into a test module (``from portal_support import *  # noqa: F403``): the fixtures come
along. This folder has no ``conftest.py`` (a second module named ``conftest`` would shadow
another folder's when folders run together).

``site``      ``await site(policy=..., https=False, radius=..., limits=..., **portal_keys)`` → :class:`Site`: the daemon
              with the portal on, its mail server, an admin client; ``site.browser(chromium,
              locale=...)`` → a :class:`Tab` (a page with the DevTools virtual authenticator on).
``chromium``  the browser (tests/webauthn/chromium.py), one per test that asks for it.

Screenshots go to ``$MFAD_TEST_SCREENSHOTS`` when set (not ``MFAD_PORTAL_*``: that prefix sets the
daemon's ``[portal]`` keys; ``docs/portal/`` to refresh the
documentation's pictures), else to the test's temporary folder; every page a test visits
is saved once per name.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
for folder in ("e2e", "webauthn", "email"):
    if str(HERE.parent / folder) not in sys.path:
        sys.path.insert(0, str(HERE.parent / folder))

from browser_page import self_signed  # noqa: E402
from chromium import chromium  # noqa: E402, F401
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: E402, F401
from e2e_support import AuthenticatorApp, DaemonClock, free_port  # noqa: E402
from email_peers import MailServer  # noqa: E402
from playwright.async_api import Browser, BrowserContext, CDPSession, Page  # noqa: E402

from mfad_client import MfadClient  # noqa: E402

PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}
HELP = "the IT help desk (helpdesk@example.com)"
#: mfad's shortest resend cool-down for email codes (per user): tests wait it out between two mails.
RESEND_SECONDS = 10


class OathApp(AuthenticatorApp):
    """The authenticator app, its codes computed by ``oathtool`` (an independent implementation)."""

    def code_at(self, step: int) -> str:
        done = subprocess.run(["oathtool", "--totp", "-b", self.secret_base32, "-N", f"@{step * self.period}"],
                              capture_output=True, text=True, check=True, timeout=10)
        return done.stdout.strip()


def read_qr(png: bytes, directory: Path) -> str:
    """The text of the QR code in ``png``, read by ``zbarimg``."""
    path = directory / f"qr-{time.monotonic_ns()}.png"
    path.write_bytes(png)
    done = subprocess.run(["zbarimg", "--quiet", "--raw", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Tab:
    page: Page
    context: BrowserContext
    cdp: CDPSession
    site: Site
    shots: Path

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=self.shots / f"{name}.png", full_page=True)

    async def open(self, path: str) -> None:
        await self.page.goto(self.site.url + path)

    async def sign_in(self, username: str, password: str = PASSWORD) -> None:
        await self.open("/signin")
        await self.page.get_by_label("Username").fill(username)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign in", exact=True).click()
        await self.page.wait_for_load_state()

    async def heading(self) -> str:
        return (await self.page.get_by_role("heading", level=1).inner_text()).strip()

    async def sign_out(self) -> None:
        await self.page.get_by_role("button", name="Sign out").click()
        await self.page.wait_for_url("**/signin")

    async def authenticator(self, **options: Any) -> str:
        answer = await self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "automaticPresenceSimulation": True, **options}})
        return str(answer["authenticatorId"])

    async def passkey_authenticator(self, **options: Any) -> str:
        return await self.authenticator(**{"protocol": "ctap2", "ctap2Version": "ctap2_1", "transport": "internal",
                                           "hasResidentKey": True, "hasUserVerification": True,
                                           "isUserVerified": True, **options})

    async def touch(self, authenticator_id: str, *, instead_of: str) -> None:
        """Which of two authenticators the user touches from now on."""
        for which, on in ((instead_of, False), (authenticator_id, True)):
            await self.cdp.send("WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": which, "enabled": on})

    async def credentials(self, authenticator_id: str) -> list[dict[str, Any]]:
        answer = await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
        return list(answer["credentials"])

    async def cookie(self, name: str) -> dict[str, Any] | None:
        return next((dict(c) for c in await self.context.cookies() if c["name"] == name), None)


async def post_form(tab: Tab, path: str, form: dict[str, str], *, csrf: bool = True) -> int:
    """A form sent as the browser of ``tab`` would (its cookies, its Origin, the page's CSRF
    token unless ``csrf`` is False), with any values: the answer's status, not followed."""
    token = await tab.page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = await tab.page.request.post(tab.site.url + path, form={**form, **({"csrf": token or ""} if csrf else {})},
                                         headers={"Origin": tab.site.url}, max_redirects=0)
    return answer.status


@dataclass
class Site:
    mfad: Running
    url: str
    mail: MailServer
    admin: MfadClient
    shots: Path
    tabs: list[Tab] = field(default_factory=list)
    last_mail: float = 0.0

    async def browser(self, chromium: Browser, *, locale: str = "en-US", viewport: dict[str, int] = DESKTOP) -> Tab:
        context = await chromium.new_context(locale=locale, viewport=viewport,  # type: ignore[arg-type]
                                                  ignore_https_errors=True)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable", {"enableUI": False})
        tab = Tab(page=page, context=context, cdp=cdp, site=self, shots=self.shots)
        self.tabs.append(tab)
        return tab

    async def user_with_app(self, username: str) -> OathApp:
        """A user whose virtual MFA device an administrator bound (its codes from oathtool)."""
        await self.admin.admin.create_user(username, PASSWORD)
        provisioning = await self.admin.admin.bind_totp(username)
        app = OathApp(provisioning.secret_base32)
        await self.admin.admin.confirm_totp(username, provisioning.device_id, await app.next_code())
        return app

    async def mailed_code(self, count: int) -> str:
        """The code in the ``count``-th mail the SMTP server received."""
        received = await self.mail.wait_for(count, timeout=20)
        self.last_mail = time.monotonic()
        return received[count - 1].code

    async def resend_allowed(self) -> None:
        """Wait out mfad's resend cool-down since the last mail."""
        await asyncio.sleep(max(0.0, self.last_mail + RESEND_SECONDS + 0.5 - time.monotonic()))

    async def legacy_key(self, tab: Tab, username: str, authenticator_id: str, *, counter: int) -> str:
        """A U2F registration from an older system: imported into mfad, its private key put into
        the virtual authenticator under the AppID (an https URL on the portal's origin)."""
        key = ec.generate_private_key(ec.SECP256R1())
        handle = os.urandom(64)
        point = key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        app_id = f"{self.url}/u2f/appid.json"
        device, _ = await self.admin.admin.import_u2f(username, key_handle=handle, public_key=point, app_id=app_id,
                                                      counter=counter, name="old key")
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        await tab.cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": {
            "credentialId": base64.b64encode(handle).decode(), "isResidentCredential": False, "rpId": app_id,
            "privateKey": base64.b64encode(pkcs8).decode(), "signCount": counter}})
        return device.id


StartSite = Callable[..., Awaitable[Site]]


def screenshots_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("MFAD_TEST_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path / "screens"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def site(mfad_daemon: StartDaemon, tmp_path: Path) -> AsyncIterator[StartSite]:
    started: list[Site] = []
    mails: list[MailServer] = []

    async def start(*, policy: dict[str, Any] | None = None, https: bool = False,
                    radius: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
                    clock: DaemonClock | None = None, **portal: Any) -> Site:
        mail = MailServer()
        await mail.start()
        mails.append(mail)
        port = free_port()
        scheme = "https" if https else "http"
        portal_keys: dict[str, Any] = {"enabled": True, "listen": [f"127.0.0.1:{port}"], "help_contact": HELP,
                                       **portal}
        if https:
            self_signed(tmp_path)
            portal_keys.update(tls_cert=str(tmp_path / "page.crt"), tls_key=str(tmp_path / "page.key"),
                               public_url=f"https://localhost:{port}")
        sections: dict[str, dict[str, Any]] = {
            "portal": portal_keys,
            "smtp": {"host": "127.0.0.1", "port": mail.port, "security": "none", "from": "mfad@mfad.test",
                     "poll_seconds": 0.05, "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2,
                     "resend_seconds": RESEND_SECONDS},
            "policy": policy or {},
            "radius": radius or {},
            "limits": limits or {},
        }
        running = await mfad_daemon(sections=sections, clock=clock)
        made = Site(mfad=running, url=f"{scheme}://localhost:{port}", mail=mail, admin=running.client("ops"),
                    shots=screenshots_dir(tmp_path))
        started.append(made)
        await wait_ready(made.url, https)
        return made

    yield start
    for s in started:
        for tab in s.tabs:
            await tab.context.close()
    for mail in mails:
        await mail.stop()


async def wait_ready(url: str, https: bool) -> None:
    import httpx

    async with httpx.AsyncClient(verify=False) as client:
        for _ in range(100):
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the portal at {url} did not become ready")


def secret_of(uri: str) -> str:
    match = re.search(r"[?&]secret=([A-Z2-7]+)", uri)
    assert match, uri
    return match.group(1)
