"""A passkey cannot be typed: over RADIUS (radclient against the RADIUS service on the real
core, both engines) a passkey-only user with the right password gets an Access-Reject whose
Reply-Message says so and what to do — except at a challenge-mode client, where a passkey user
is asked to approve the sign-in on the portal instead (tests/webauthn/test_approval.py); with
a wrong password the reply is the same as for anyone else (nothing about the account is told)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from relying import APP_ID, PASSWORD, Relying
from softauthn import SoftAuthenticator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "radius"))
from radius_peers import SECRET, radclient  # noqa: E402

from mfad.config import RadiusClientSettings, RadiusSettings  # noqa: E402
from mfad.radius import CountingMetrics  # noqa: E402
from mfad.radius.daemon import radius_service  # noqa: E402
from mfad.radius.signin import DENIED, PASSKEY_ONLY  # noqa: E402

Start = Callable[[str], Awaitable[tuple[str, int]]]


@pytest.fixture
async def radius(wa: Relying, config: Any) -> AsyncIterator[Start]:
    running = []

    async def start(mode: str) -> tuple[str, int]:
        settings = RadiusSettings(listen=["127.0.0.1:0"], mode=mode, reject_delay_seconds=0.0,  # type: ignore[arg-type]
                                  clients=[RadiusClientSettings(name="lo", address="127.0.0.1",
                                                                secret=SECRET.decode())])
        service = radius_service(wa.mfa, dataclasses.replace(config, radius=settings), None,
                                 metrics=CountingMetrics())
        await service.start()
        running.append((service, asyncio.create_task(service.run())))
        host, port = service.server.addresses[0]
        return host, port

    yield start
    for service, task in running:
        await service.aclose()
        await asyncio.wait_for(task, 10)


def pap(user: str, password: str) -> list[str]:
    return [f'User-Name = "{user}"', f'User-Password = "{password}"', "Message-Authenticator = 0x00"]


@pytest.mark.parametrize("mode", ["challenge", "append"])
async def test_a_passkey_only_user_is_told_a_passkey_cannot_be_used_here(wa: Relying, radius: Start,
                                                                         mode: str) -> None:
    await wa.user("alice")
    await wa.register("alice", SoftAuthenticator())
    await wa.user("bob")  # a legacy U2F key only: the same story
    _, point, _ = (key := SoftAuthenticator(u2f_only=True)).u2f_register(APP_ID)
    await wa.mfa.webauthn.import_u2f("bob", name="", key_handle=key.credentials[0].credential_id,
                                     public_key=point, app_id=APP_ID, counter=0)
    host, port = await radius(mode)
    for user in ("alice", "bob"):
        reply = await radclient(host, port, pap(user, PASSWORD))
        if mode == "challenge" and user == "alice":  # a passkey, not a U2F key: approval is offered
            assert reply.reply == "Access-Challenge", reply.output
            assert (reply.first("Reply-Message") or "").startswith("Approve this sign-in at ")
            continue
        assert reply.reply == "Access-Reject", reply.output
        message = reply.first("Reply-Message")
        assert message == PASSKEY_ONLY
        assert "passkey" in message and "cannot be typed here" in message and "authenticator app" in message
    wrong = await radclient(host, port, pap("alice", "not the password"))
    assert wrong.reply == "Access-Reject" and wrong.first("Reply-Message") == DENIED
    nobody = await radclient(host, port, pap("nobody", PASSWORD))
    assert nobody.first("Reply-Message") == DENIED
