"""Client table, decisions, duplicate cache and rate limits: the pieces without sockets."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from radius_peers import SECRET

from mfad.config import RadiusClientSettings, RadiusSettings
from mfad.radius import (
    ClientMode,
    ClientTable,
    Decision,
    Outcome,
    RadiusClient,
    RadiusConfigError,
    RadiusEncodeError,
    RequestKey,
    parse_listen_address,
    parse_network,
)
from mfad.radius.cache import Pending, ReplyCache
from mfad.radius.daemon import OTP_ONLY_RATE, client_table
from mfad.radius.limits import TokenBuckets


def client(name: str, network: str, **options: object) -> RadiusClient:
    return RadiusClient(name=name, network=parse_network(network), secret=SECRET, **options)  # type: ignore[arg-type]


def test_longest_prefix_wins_for_ipv4_and_ipv6() -> None:
    table = ClientTable(
        [
            client("all-10", "10.0.0.0/8"),
            client("lab", "10.1.0.0/16"),
            client("gw", "10.1.2.3"),
            client("v6-site", "2001:db8::/32"),
            client("v6-host", "2001:db8::7"),
        ]
    )
    assert table.lookup("10.1.2.3") is table.by_name("gw")
    assert table.lookup("10.1.2.4") is table.by_name("lab")
    assert table.lookup("10.200.0.1") is table.by_name("all-10")
    assert table.lookup("11.0.0.1") is None
    assert table.lookup("2001:db8::7") is table.by_name("v6-host")
    assert table.lookup("2001:db8:1::1") is table.by_name("v6-site")
    assert table.lookup("2001:db9::1") is None


def test_ipv4_mapped_and_scoped_sources() -> None:
    table = ClientTable([client("gw", "192.0.2.1"), client("ll", "fe80::/64")])
    assert table.lookup("::ffff:192.0.2.1") is table.by_name("gw")
    assert table.lookup("fe80::1%eth0") is table.by_name("ll")
    assert table.lookup("not-an-address") is None


def test_lookup_memo_stays_bounded() -> None:
    table = ClientTable([client("any", "0.0.0.0/0")])
    for index in range(10_000):
        assert table.lookup(str(ipaddress.IPv4Address(index))) is table.by_name("any")
    assert len(table._memo) <= 4096


@pytest.mark.parametrize(
    "clients",
    [
        [client("a", "192.0.2.1"), client("a", "192.0.2.2")],
        [client("a", "192.0.2.0/24"), client("b", "192.0.2.0/24")],
    ],
)
def test_duplicate_names_or_networks_are_refused(clients: list[RadiusClient]) -> None:
    with pytest.raises(RadiusConfigError):
        ClientTable(clients)


def test_client_validation_names_the_client_never_the_secret() -> None:
    with pytest.raises(RadiusConfigError, match="vpn") as info:
        RadiusClient(name="vpn", network=parse_network("192.0.2.1"), secret=b"short-secret")
    assert "short-secret" not in str(info.value)
    with pytest.raises(RadiusConfigError):
        RadiusClient(name="", network=parse_network("192.0.2.1"), secret=SECRET)
    with pytest.raises(RadiusConfigError, match="mode"):
        RadiusClient(name="x", network=parse_network("192.0.2.1"), secret=SECRET, mode="push")  # type: ignore[arg-type]
    assert SECRET.decode() not in repr(client("x", "192.0.2.1"))


def test_mode_from_text_and_defaults_are_safe() -> None:
    nas = client("x", "192.0.2.1", mode="otp_only")
    assert nas.mode is ClientMode.OTP_ONLY
    default = client("y", "192.0.2.2")
    assert default.mode is ClientMode.CHALLENGE
    assert default.require_message_authenticator and default.limit_proxy_state
    assert not default.trust_calling_station_id


@pytest.mark.parametrize("text", ["10.0.0.1/8", "example.org", "300.1.1.1", ""])
def test_parse_network_refuses_typos(text: str) -> None:
    with pytest.raises(RadiusConfigError):
        parse_network(text)


def test_parse_listen_address() -> None:
    assert parse_listen_address("0.0.0.0:1812") == ("0.0.0.0", 1812)
    assert parse_listen_address("[::1]:1812") == ("::1", 1812)
    for bad in ("localhost:1812", "127.0.0.1", "127.0.0.1:x", "[::1]:70000"):
        with pytest.raises(RadiusConfigError):
            parse_listen_address(bad)


def test_decisions_validate_and_encode_at_construction() -> None:
    challenge = Decision.challenge("Enter code", b"s1", attributes=[("Session-Timeout", 120)])
    assert challenge.code == 11
    assert challenge.encoded == ((18, b"Enter code"), (24, b"s1"), (27, (120).to_bytes(4, "big")))
    long = Decision.reject("x" * 600)
    assert [len(value) for _, value in long.encoded] == [253, 253, 94]
    with pytest.raises(RadiusEncodeError):
        Decision(outcome=Outcome.CHALLENGE, message="no state")
    with pytest.raises(RadiusEncodeError):
        Decision(outcome=Outcome.REJECT, state=b"s")
    for reserved in (
        "Message-Authenticator",
        "Proxy-State",
        "State",
        "Reply-Message",
        "User-Password",
    ):
        with pytest.raises(RadiusEncodeError):
            Decision.accept(attributes=[(reserved, b"x")])
    with pytest.raises(RadiusEncodeError):
        Decision.accept(attributes=[("Not-An-Attribute", 1)])


KEY = RequestKey("192.0.2.1", 1645, 7, bytes(16))


def test_cache_in_flight_then_reply_then_expiry() -> None:
    cache = ReplyCache(ttl=10.0)
    assert cache.lookup(KEY, 0.0) is None
    cache.begin(KEY)
    assert cache.lookup(KEY, 1.0) is Pending.IN_FLIGHT
    cache.complete(KEY, b"reply", send_at=2.0)
    assert cache.lookup(KEY, 1.5) is Pending.HELD
    assert cache.lookup(KEY, 2.0) == b"reply"
    assert cache.lookup(KEY, 11.9) == b"reply"
    assert cache.lookup(KEY, 12.0) is None
    assert len(cache) == 0


def test_cache_forgets_requests_without_reply_only() -> None:
    cache = ReplyCache()
    cache.begin(KEY)
    cache.forget(KEY)
    assert cache.lookup(KEY, 0.0) is None
    cache.begin(KEY)
    cache.complete(KEY, b"reply", 0.0)
    cache.forget(KEY)
    assert cache.lookup(KEY, 0.0) == b"reply"


def test_cache_is_bounded_oldest_first() -> None:
    cache = ReplyCache(ttl=100.0, max_entries=3)
    keys = [RequestKey("192.0.2.1", 1000 + index, 1, bytes(16)) for index in range(5)]
    for index, key in enumerate(keys):
        cache.begin(key)
        cache.complete(key, bytes([index]), float(index))
    assert len(cache) == 3
    assert cache.lookup(keys[0], 5.0) is None
    assert cache.lookup(keys[4], 5.0) == b"\x04"


def test_a_delayed_reject_expires_after_a_later_accept() -> None:
    cache = ReplyCache(ttl=10.0)
    reject, accept = KEY, RequestKey("192.0.2.1", 1645, 8, bytes(16))
    cache.begin(reject)
    cache.complete(reject, b"reject", send_at=1.0)
    cache.begin(accept)
    cache.complete(accept, b"accept", send_at=0.5)
    assert cache.lookup(accept, 10.6) is None
    assert cache.lookup(reject, 10.6) == b"reject"
    assert cache.lookup(reject, 11.0) is None


def test_request_key_digest_is_unambiguous() -> None:
    first = RequestKey("10.0.0.1", 1, 2, bytes(16))
    assert first.digest() != RequestKey("10.0.0.11", 1, 2, bytes(16)).digest()
    assert first.digest() == RequestKey("10.0.0.1", 1, 2, bytes(16)).digest()
    assert len(first.digest()) == 32


def test_token_bucket_allows_burst_then_rate() -> None:
    buckets = TokenBuckets(rate=10.0, burst=5)
    assert [buckets.allow("nas", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.allow("other", 0.0)
    assert not buckets.allow("nas", 0.05)
    assert buckets.allow("nas", 0.15)
    assert sum(buckets.allow("nas", 100.0) for _ in range(10)) == 5


def test_token_bucket_rate_zero_is_unlimited() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1)
    assert all(buckets.allow("nas", 0.0) for _ in range(1000))


def test_default_client_rates_follow_what_the_process_can_serve() -> None:
    entries = [RadiusClientSettings(name=name, address=address, secret="s" * 16, mode=mode)  # type: ignore[arg-type]
               for name, address, mode in (("vpn", "192.0.2.1", "challenge"), ("pam", "192.0.2.2", "append"),
                                           ("proxy", "192.0.2.3", "otp_only"))]
    derived = {c.name: c.rate_per_second for c in client_table(RadiusSettings(clients=entries), 30.0)}
    # A password sign-in is two requests, of which one hashes: twice the hasher's capacity.
    assert derived == {"vpn": 60.0, "pam": 60.0, "proxy": OTP_ONLY_RATE}
    fixed = client_table(RadiusSettings(clients=entries, client_rate_per_second=250.0), 30.0)
    assert {c.rate_per_second for c in fixed} == {250.0}


def test_the_listener_timeouts_are_radius_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    from mfad.config import load_config
    from mfad.core.errors import ConfigError
    from mfad.radius.daemon import server_settings

    good = tmp_path / "good.toml"
    good.write_text("[radius]\nhandler_timeout_seconds = 2.5\ndrain_timeout_seconds = 0\n"
                    "shared_cache_timeout_seconds = 0.25\nshared_wait_seconds = 3\n", encoding="utf-8")
    settings = server_settings(load_config(good, env={}).radius, reuse_port=False)
    assert (settings.handler_timeout, settings.drain_timeout, settings.shared_cache_timeout,
            settings.shared_wait) == (2.5, 0.0, 0.25, 3.0)
    defaults = server_settings(load_config(None, env={}).radius, reuse_port=False)
    assert (defaults.handler_timeout, defaults.drain_timeout, defaults.shared_cache_timeout,
            defaults.shared_wait) == (5.0, 5.0, 0.5, 1.0)

    bad = tmp_path / "bad.toml"
    bad.write_text("[radius]\nhandler_timeout_seconds = 0\ndrain_timeout_seconds = -1\n"
                   "shared_cache_timeout_seconds = 11\nshared_wait_seconds = \"soon\"\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(bad, env={})
    named = sorted(problem.split(":")[0] for problem in err.value.problems)
    assert named == ["radius.drain_timeout_seconds", "radius.handler_timeout_seconds",
                     "radius.shared_cache_timeout_seconds", "radius.shared_wait_seconds"]
    with pytest.raises(ConfigError) as from_env:
        load_config(None, env={"MFAD_RADIUS_HANDLER_TIMEOUT_SECONDS": "99"})
    assert any("radius.handler_timeout_seconds" in p for p in from_env.value.problems)
