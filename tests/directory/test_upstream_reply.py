"""An upstream RADIUS server's reply attributes reach the NAS only through the client's
allow-list (``upstream_reply_attributes``): a real FreeRADIUS upstream, the real core on
both store engines, mfad's RADIUS server asked by radclient in challenge and append mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from freeradius_peer import FREERADIUS, SECRET, Upstream, start_upstream
from mfad.config import Config, RadiusClientSettings, RadiusSettings, UpstreamRadiusSettings, DirectorySettings
from mfad.core.errors import ConfigError
from mfad.core.ports import Store
from mfad.core.service import Mfa
from mfad.directory import build
from mfad.directory.radius import UpstreamRadius
from mfad.radius import RadiusServer
from peer_tools import missing
from radius_peers import RADCLIENT
from signin_peers import StartDaemon, nas, radclient_sign_in, start_daemon  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(RADCLIENT is None, reason=missing("radclient", "freeradius-utils"))]
MakeMfa = Callable[..., Awaitable[Mfa]]


@pytest.fixture
async def freeradius(tmp_path: Path) -> AsyncIterator[Upstream]:
    if FREERADIUS is None:
        pytest.skip(missing("freeradius"))
    server = await start_upstream(tmp_path / "freeradius")
    yield server
    server.stop()


@pytest.fixture
async def upstream_mfa(mfa_factory: MakeMfa, store: Store, freeradius: Upstream) -> AsyncIterator[Mfa]:
    """Clients ``vpn`` (challenge), ``vpn-append`` and ``plain`` all check passwords upstream;
    ``vpn`` and ``vpn-append`` carry Filter-Id on, ``plain`` nothing."""
    directory = UpstreamRadius(UpstreamRadiusSettings(name="nps", servers=[freeradius.address], secret=SECRET,
                                                      timeout_seconds=1.0, require_message_authenticator=False))
    allowed = frozenset({"Filter-Id"})
    yield await mfa_factory(store=store, directories={"nps": directory},
                            first_factor_by_client={"vpn": "nps", "vpn-append": "nps", "plain": "nps"},
                            upstream_reply_attributes={"vpn": allowed, "vpn-append": allowed})


async def enrolled(mfa: Mfa, server: RadiusServer, bind: Callable[..., Awaitable[object]]) -> object:
    """erin signs in once (provisioned from the upstream), then binds an authenticator app."""
    first = await radclient_sign_in(server, "erin", "erin-upstream-pw")
    assert first.reply == "Access-Reject", first.output  # no device yet
    pending = await bind("erin", on=mfa)
    await mfa.devices.confirm_totp("erin", pending.device.id, pending.code())  # type: ignore[attr-defined]
    return pending


async def test_the_accept_after_the_code_carries_the_allowed_upstream_attributes_only(
        upstream_mfa: Mfa, start_daemon: StartDaemon, bind: Callable[..., Awaitable[object]]) -> None:
    server = await start_daemon(clients=[nas("vpn")], on=upstream_mfa)
    pending = await enrolled(upstream_mfa, server, bind)
    challenge = await radclient_sign_in(server, "erin", "erin-upstream-pw")
    assert challenge.reply == "Access-Challenge", challenge.output
    assert challenge.first("Filter-Id") is None  # only the final accept says what the session gets
    accepted = await radclient_sign_in(server, "erin", pending.code(1), challenge.first("State"))  # type: ignore[attr-defined]
    assert accepted.reply == "Access-Accept", accepted.output
    names = [name for name, _ in accepted.attributes]
    assert accepted.first("Filter-Id") == "vpn-acl", accepted.output
    # The upstream's Class and Reply-Message ("hello") are not on the allow-list.
    assert "Class" not in names and "hello" not in accepted.output, accepted.output


async def test_append_mode_carries_them_in_one_round(
        upstream_mfa: Mfa, start_daemon: StartDaemon, bind: Callable[..., Awaitable[object]]) -> None:
    server = await start_daemon(clients=[nas("vpn-append", mode="append")], on=upstream_mfa)
    pending = await enrolled(upstream_mfa, server, bind)
    accepted = await radclient_sign_in(server, "erin", "erin-upstream-pw" + pending.code(1))  # type: ignore[attr-defined]
    assert accepted.reply == "Access-Accept", accepted.output
    assert accepted.first("Filter-Id") == "vpn-acl", accepted.output
    wrong = await radclient_sign_in(server, "erin", "wrong-password" + pending.code(2))  # type: ignore[attr-defined]
    assert wrong.reply == "Access-Reject" and wrong.first("Filter-Id") is None, wrong.output


async def test_a_client_without_an_allow_list_gets_none_of_them(
        upstream_mfa: Mfa, start_daemon: StartDaemon, bind: Callable[..., Awaitable[object]]) -> None:
    server = await start_daemon(clients=[nas("plain")], on=upstream_mfa)
    pending = await enrolled(upstream_mfa, server, bind)
    challenge = await radclient_sign_in(server, "erin", "erin-upstream-pw")
    accepted = await radclient_sign_in(server, "erin", pending.code(1), challenge.first("State"))  # type: ignore[attr-defined]
    assert accepted.reply == "Access-Accept", accepted.output
    names = [name for name, _ in accepted.attributes]
    assert "Filter-Id" not in names and "Class" not in names, accepted.output


def _config(client: RadiusClientSettings) -> Config:
    upstream = UpstreamRadiusSettings(name="nps", servers=["127.0.0.1:1812"], secret=SECRET)
    return Config(radius=RadiusSettings(clients=[client]), directory=DirectorySettings(radius=[upstream]))


@pytest.mark.parametrize(("attributes", "first_factor", "complaint"), [
    (["Vendor-Specific"], "nps", "Vendor-Specific is never copied"),
    (["State"], "nps", "State is never copied"),
    (["Message-Authenticator"], "nps", "Message-Authenticator is never copied"),
    (["No-Such-Attribute"], "nps", "unknown RADIUS attribute"),
    (["Filter-Id"], "local", "only a client whose first_factor is an upstream RADIUS server"),
])
def test_the_allow_list_refuses_what_must_never_be_copied(attributes: list[str], first_factor: str,
                                                          complaint: str) -> None:
    client = RadiusClientSettings(name="vpn", address="127.0.0.1", secret="s" * 16, first_factor=first_factor,
                                  upstream_reply_attributes=attributes)
    with pytest.raises(ConfigError) as raised:
        build(_config(client))
    assert complaint in str(raised.value), raised.value


def test_an_allow_list_of_known_attributes_is_built() -> None:
    client = RadiusClientSettings(name="vpn", address="127.0.0.1", secret="s" * 16, first_factor="nps",
                                  upstream_reply_attributes=["Filter-Id", "Class", "Framed-IP-Address"])
    built = build(_config(client))
    assert built.reply_allowed == {"vpn": frozenset({"Filter-Id", "Class", "Framed-IP-Address"})}
