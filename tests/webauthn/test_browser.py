"""A real browser: headless Debian Chromium, driven by Playwright, with the DevTools virtual
authenticator, against a page served on https://localhost that relays to mfad's gRPC API.

- a CTAP2 platform authenticator (resident keys, user verification) binds a passkey at
  first sign-in, signs in with it, and signs in usernameless;
- a U2F (CTAP1) security key imported from an older system signs in under its AppID, and
  cannot become a passkey: the browser refuses (it cannot verify the user) and, when the
  page bends the options, mfad refuses with words that say why — the key keeps working;
- a legacy key signs in under its AppID, a CTAP2 authenticator (the same key speaking
  CTAP2 with a PIN) completes the upgrade to a passkey, and the old U2F credential is
  refused afterwards.

The browser is never downloaded (``playwright install`` is not used): Playwright drives
``/usr/bin/chromium`` with flags that keep it off the network. Store engine: SQLite only —
the browser half is what these tests add; the store half runs on both engines elsewhere.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_page import PortalPage, self_signed
from chromium import chromium  # noqa: F401
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.async_api import Browser, CDPSession, Page
from playwright.async_api import Error as PlaywrightError
from relying import PASSWORD, GrpcRelying, serve_grpc

from mfad_client import Method, MfadClient


pytestmark = pytest.mark.parametrize("engine", ["sqlite"])


@dataclass
class Live:
    page: Page
    cdp: CDPSession
    portal: PortalPage
    grpc: GrpcRelying
    admin: MfadClient

    @property
    def app_id(self) -> str:
        return f"{self.portal.origin}/u2f/appid.json"

    async def authenticator(self, **options: Any) -> str:
        answer = await self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "automaticPresenceSimulation": True, **options}})
        return str(answer["authenticatorId"])

    async def touch(self, authenticator_id: str, *, instead_of: str) -> None:
        """Which of two authenticators the user touches from now on."""
        for which, on in ((instead_of, False), (authenticator_id, True)):
            await self.cdp.send("WebAuthn.setAutomaticPresenceSimulation",
                                {"authenticatorId": which, "enabled": on})

    async def sign_in(self, username: str, password: str | None, method: str,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.page.evaluate("([u, p, m, x]) => signIn(u, p, m, x)", [username, password, method, extra])
        assert isinstance(result, dict)
        return result

    async def legacy_key(self, username: str, authenticator_id: str, *, counter: int) -> tuple[str, bytes]:
        """A U2F registration from "the older system": imported into mfad, and its private key
        put into the virtual authenticator under the AppID. (device id, key handle)"""
        key = ec.generate_private_key(ec.SECP256R1())
        handle = os.urandom(64)
        point = key.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        device, _ = await self.admin.admin.import_u2f(username, key_handle=handle, public_key=point,
                                                      app_id=self.app_id, counter=counter, name="old key")
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        await self.cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": {
            "credentialId": base64.b64encode(handle).decode(), "isResidentCredential": False, "rpId": self.app_id,
            "privateKey": base64.b64encode(pkcs8).decode(), "signCount": counter}})
        return device.id, handle


@pytest.fixture
async def live(chromium: Browser, wa_factory: Any, config: Any, tmp_path: Path) -> AsyncIterator[Live]:
    portal = PortalPage()
    await portal.start(self_signed(tmp_path))
    wa = await wa_factory(rp_id="localhost", origins=[portal.origin])
    server, grpc = await serve_grpc(wa, config)
    portal.client = grpc.portal
    context = await chromium.new_context(ignore_https_errors=True)
    page = await context.new_page()
    await page.goto(portal.origin + "/")
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    try:
        yield Live(page=page, cdp=cdp, portal=portal, grpc=grpc, admin=grpc.admin)
    finally:
        await context.close()
        await grpc.close()
        await server.aclose()
        await portal.aclose()


async def test_passkey_enrol_sign_in_and_usernameless(live: Live) -> None:
    authenticator = await live.authenticator(protocol="ctap2", ctap2Version="ctap2_1", transport="internal",
                                             hasResidentKey=True, hasUserVerification=True, isUserVerified=True)
    await live.admin.admin.create_user("alice", PASSWORD)
    first = await live.sign_in("alice", PASSWORD, "passkey")
    assert first["outcome"] == "enrolment_required" and "passkey" in first["methods"]
    bound = await live.page.evaluate("([s]) => registerPasskey(s, 'this laptop')", [first["session"]])
    assert bound["method"] == "passkey"

    signed = await live.sign_in("alice", PASSWORD, "passkey")
    assert signed["outcome"] == "allowed" and signed["username"] == "alice" \
        and signed["methods"] == ["passkey", "approval"]
    usernameless = await live.sign_in("", None, "passkey")
    assert usernameless["outcome"] == "allowed" and usernameless["username"] == "alice"

    [credential] = (await live.cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
    assert credential["isResidentCredential"] and credential["rpId"] == "localhost"
    [device] = (await live.admin.admin.list_devices("alice")).devices
    assert device.method is Method.PASSKEY and device.name == "this laptop" and device.passkey is not None
    [stored] = await live.grpc.wa.mfa.store.load_credentials((await live.grpc.wa.mfa.users.get("alice")).id)
    assert stored.sign_count == credential["signCount"]


async def test_a_u2f_key_signs_in_under_its_appid_and_cannot_become_a_passkey(live: Live) -> None:
    u2f = await live.authenticator(protocol="u2f", transport="usb", hasResidentKey=False, hasUserVerification=False)
    await live.admin.admin.create_user("bob", PASSWORD)
    device_id, _ = await live.legacy_key("bob", u2f, counter=3)

    signed = await live.sign_in("bob", PASSWORD, "u2f")
    assert signed["outcome"] == "allowed" and signed["methods"] == ["u2f"]
    assert signed["extensions"] == {"appid": True}
    session = signed["session"]

    # The browser will not ask a key that cannot verify its user for a passkey...
    honest = await live.page.evaluate("([s, d]) => upgradeU2f(s, d)", [session, device_id])
    assert honest == {"browser_error": "NotAllowedError"}
    # ...and a page that bends the options gets mfad's refusal, saying why.
    with pytest.raises(PlaywrightError, match=r"only U2F \(CTAP1\), so it cannot become a passkey"):
        await live.page.evaluate("([s, d]) => upgradeU2f(s, d, {userVerification: 'discouraged', "
                                 "residentKey: 'discouraged', requireResidentKey: false})", [session, device_id])
    [device] = (await live.admin.admin.list_devices("bob")).devices
    assert device.method is Method.U2F and device.id == device_id
    again = await live.sign_in("bob", PASSWORD, "u2f")
    assert again["outcome"] == "allowed"  # the key keeps working


async def test_a_ctap2_key_completes_the_upgrade_and_the_old_u2f_credential_is_refused(live: Live) -> None:
    # The legacy key as the old system knew it (U2F), and the same key speaking CTAP2 with a
    # PIN: the virtual authenticators speak one protocol each, where a real key speaks both.
    # Only the one "touched" answers (the other would end a ceremony it has no credential for).
    u2f = await live.authenticator(protocol="u2f", transport="usb", hasResidentKey=False, hasUserVerification=False)
    ctap2 = await live.authenticator(protocol="ctap2", ctap2Version="ctap2_1", transport="usb", hasResidentKey=True,
                                     hasUserVerification=True, isUserVerified=True,
                                     automaticPresenceSimulation=False)
    await live.admin.admin.create_user("carol", PASSWORD)
    device_id, handle = await live.legacy_key("carol", u2f, counter=0)

    signed = await live.sign_in("carol", PASSWORD, "u2f")
    assert signed["outcome"] == "allowed" and signed["extensions"] == {"appid": True}
    await live.touch(ctap2, instead_of=u2f)
    upgraded = await live.page.evaluate("([s, d]) => upgradeU2f(s, d)", [signed["session"], device_id])
    assert upgraded["method"] == "passkey" and upgraded["retired"] == device_id
    [device] = (await live.admin.admin.list_devices("carol")).devices
    assert device.method is Method.PASSKEY and device.name == "old key"
    [resident] = (await live.cdp.send("WebAuthn.getCredentials", {"authenticatorId": ctap2}))["credentials"]
    assert resident["isResidentCredential"]

    new = await live.sign_in("carol", PASSWORD, "passkey")
    assert new["outcome"] == "allowed" and new["methods"] == ["passkey", "approval"]

    # U2F is no longer offered, and the old credential, still in the key, is refused.
    with pytest.raises(PlaywrightError, match="not offered"):
        await live.sign_in("carol", PASSWORD, "u2f")
    await live.touch(u2f, instead_of=ctap2)
    handle_b64 = base64.urlsafe_b64encode(handle).rstrip(b"=").decode()
    old = await live.sign_in("carol", PASSWORD, "passkey", {
        "allowCredentials": [{"type": "public-key", "id": handle_b64}], "extensions": {"appid": live.app_id},
        "userVerification": "discouraged"})
    assert old["outcome"] == "refused" and old["extensions"] == {"appid": True}
    refusal = await live.admin.admin.query_audit(username="carol", event="verify", outcome="refused")
    assert refusal.events[0].reason == "webauthn_unknown_credential"
