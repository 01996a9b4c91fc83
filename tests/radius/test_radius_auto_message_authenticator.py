"""``require_message_authenticator = "auto"``: a NAS is answered without
Message-Authenticator until it has sent one, then never again; remembered in the store
(both engines) so another instance — or this one after a restart — holds it too. The
NAS is radclient, which sends a Message-Authenticator only when told to."""

from __future__ import annotations

import pytest

from mfad.core.ports import Store
from mfad.radius import RadiusServer
from peer_tools import missing
from radius_peers import RADCLIENT, radclient
from signin_peers import StartDaemon, address, nas, start_daemon  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(RADCLIENT is None, reason=missing("radclient", "freeradius-utils"))]
WITH_MA = "Message-Authenticator = 0x00"


async def ask(server: RadiusServer, *, signed: bool) -> str | None:
    host, port = address(server)
    lines = ['User-Name = "alice"', 'User-Password = "not-her-password"']
    return (await radclient(host, port, [*lines, WITH_MA] if signed else lines)).reply


async def test_auto_requires_it_once_the_nas_has_sent_one_on_every_instance(
        start_daemon: StartDaemon, store: Store) -> None:
    first = await start_daemon(clients=[nas("vpn", require_message_authenticator="auto")])
    assert await ask(first, signed=False) == "Access-Reject"  # an old NAS is answered
    assert await ask(first, signed=False) == "Access-Reject"
    assert await store.load_radius_signed_clients() == set()
    assert await ask(first, signed=True) == "Access-Reject"
    # From now on an unsigned request from that NAS is dropped, as a forgery would be.
    assert await ask(first, signed=False) is None
    assert await ask(first, signed=True) == "Access-Reject"
    assert await store.load_radius_signed_clients() == {("vpn", "127.0.0.1")}
    # Another instance on the same store (or this one restarted) knows it from the start.
    second = await start_daemon(clients=[nas("vpn", require_message_authenticator="auto")])
    assert await ask(second, signed=False) is None
    assert await ask(second, signed=True) == "Access-Reject"


async def test_a_client_that_does_not_require_it_stays_answered(start_daemon: StartDaemon, store: Store) -> None:
    server = await start_daemon(clients=[nas("old", require_message_authenticator=False)])
    assert await ask(server, signed=True) == "Access-Reject"
    assert await ask(server, signed=False) == "Access-Reject"
    assert await store.load_radius_signed_clients() == set()


def test_auto_is_a_config_value(tmp_path: object) -> None:
    from mfad.config import load_config

    path = tmp_path / "mfad.toml"  # type: ignore[operator]
    path.write_text('[radius]\nrequire_message_authenticator = "auto"\n'
                    '[[radius.clients]]\nname = "vpn"\naddress = "10.0.0.1"\nsecret = "0123456789abcdef"\n'
                    'require_message_authenticator = "auto"\n'
                    '[[radius.clients]]\nname = "bad"\naddress = "10.0.0.2"\nsecret = "0123456789abcdef"\n'
                    'require_message_authenticator = "sometimes"\n')
    from mfad.core.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "radius.clients[1].require_message_authenticator" in str(raised.value)
    assert "radius.clients[0]" not in str(raised.value) and "radius.require" not in str(raised.value)
