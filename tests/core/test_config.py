"""Configuration: safe defaults, every error at once with its full key path, secrets from
files, ``MFAD_<SECTION>_<KEY>`` environment overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mfad.config import Config, LimitSettings, load_config, parse_address
from mfad.core.errors import ConfigError
from mfad.core.model import HashAlgorithm, MfaRequired

SECRET = "s3cret-shared-with-the-nas"


def write(tmp_path: Path, text: str, name: str = "mfad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    assert isinstance(err.value, ValueError)  # ConfigError is also a ValueError
    assert str(err.value) == "\n".join(err.value.problems)
    return err.value.problems


def test_defaults_are_safe_without_a_file() -> None:
    config = load_config(None, env={})
    data = Path.cwd() / "mfad-data"  # without a file, relative paths are the working directory's
    assert config.storage.url == f"sqlite:///{data}/mfad.db"
    assert config.secrets.key_file == str(data / "secrets.key")
    assert config.portal.token_file == str(data / "portal.token")
    defaults = Config()
    assert dataclasses.replace(config, storage=defaults.storage, secrets=defaults.secrets,
                               portal=defaults.portal) == defaults
    assert config.radius.listen == ["127.0.0.1:1812"] and config.radius.require_message_authenticator
    assert config.grpc.listen == ["127.0.0.1:50051"] and config.metrics.listen == ["127.0.0.1:9812"]
    assert config.policy.mfa_required is MfaRequired.ALL and not config.policy.remember_device
    assert (config.totp.digits, config.totp.period, config.totp.algorithm, config.totp.window) == (
        6, 30, HashAlgorithm.SHA1, 1)
    assert config.totp.pending_ttl_seconds == 600
    assert config.limits == LimitSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.storage.url = "x"  # type: ignore[misc]


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
[storage]
url = "postgresql://mfad@db.example/mfad"
pool_size = 20

[radius]
listen = ["0.0.0.0:1812", "[::1]:1812"]

[[radius.clients]]
name = "vpn"
address = "10.0.0.0/8"
secret = "{SECRET}"
mode = "append"

[totp]
issuer = "Example Corp"
digits = 8
algorithm = "SHA256"

[limits]
max_failures = 5

[policy]
mfa_required = "enrolled"
allowed_methods = ["totp", "passkey"]
remember_device = true
""")
    config = load_config(path, env={})
    assert config.storage.pool_size == 20 and config.storage.url.startswith("postgresql://")
    assert parse_address(config.radius.listen[1]) == ("::1", 1812)
    client = config.radius.clients[0]
    assert (client.name, client.address, client.secret, client.mode) == ("vpn", "10.0.0.0/8", SECRET, "append")
    assert SECRET not in repr(client)  # secrets stay out of reprs (and logs)
    assert (config.totp.issuer, config.totp.digits, config.totp.algorithm) == ("Example Corp", 8,
                                                                               HashAlgorithm.SHA256)
    assert config.limits.max_failures == 5
    assert config.policy.to_policy().mfa_required is MfaRequired.ENROLLED


def test_every_problem_is_reported_at_once_with_its_full_path(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
bogus_section = 1

[storage]
url = "mysql://nope"
pool_size = true
colour = "blue"

[[radius.clients]]
name = "ok"
address = "10.0.0.1"
secret = "{SECRET}"

[[radius.clients]]
name = "old-switch"
address = "not-an-ip"
secret = "short"

[[radius.clients]]
name = "no-secret"
address = "192.0.2.0/24"

[totp]
digits = 7
algorithm = "MD5"
window = 9

[limits]
lockout_seconds = 600
lockout_max_seconds = 60

[grpc]
tls_cert = "/etc/mfad/cert.pem"
""")
    found = problems(path)
    expected = [
        "bogus_section: unknown key",
        "storage.url: must start with sqlite:/// or postgresql://",
        "storage.pool_size: must be an integer",
        "storage.colour: unknown key",
        "radius.clients[1].address: must be an IP address or CIDR network",
        "radius.clients[1].secret: must be at least 16 characters",
        "radius.clients[2].secret: is required (or secret_file)",
        "totp.digits: must be one of 6, 8",
        "totp.algorithm: must be one of 'SHA1', 'SHA256', 'SHA512'",
        "totp.window: must be between 0 and 3",
        "limits.lockout_max_seconds: must not be less than limits.lockout_seconds",
        "grpc.tls_key: tls_cert and tls_key go together",
    ]
    for line in expected:
        assert line in found, f"missing {line!r} in {found}"
    assert len(found) == len(expected), found


def test_secret_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "vpn.secret").write_text(f"  {SECRET}\n")
    (tmp_path / "short.secret").write_text("tiny\n")
    (tmp_path / "shared.secret").write_text(f"{SECRET}\n")
    for name, mode in (("secrets/vpn.secret", 0o600), ("short.secret", 0o600), ("shared.secret", 0o640)):
        (tmp_path / name).chmod(mode)
    path = write(tmp_path, f"""
[[radius.clients]]
name = "vpn"
address = "10.0.0.1"
secret_file = "secrets/vpn.secret"

[[radius.clients]]
name = "short"
address = "10.0.0.2"
secret_file = "short.secret"

[[radius.clients]]
name = "missing"
address = "10.0.0.3"
secret_file = "{tmp_path}/nope.secret"

[[radius.clients]]
name = "both"
address = "10.0.0.4"
secret = "{SECRET}"
secret_file = "secrets/vpn.secret"

[[radius.clients]]
name = "group-readable"
address = "10.0.0.5"
secret_file = "shared.secret"
""")
    found = problems(path)
    assert (f"radius.clients[4].secret_file: {tmp_path}/shared.secret is readable by group or others (mode 0640): "
            "chmod 600 it") in found
    assert "radius.clients[1].secret_file: must be at least 16 characters" in found
    assert any(p.startswith(f"radius.clients[2].secret_file: cannot read {tmp_path}/nope.secret") for p in found)
    assert "radius.clients[3].secret_file: give secret or secret_file, not both" in found
    assert not any(p.startswith("radius.clients[0]") for p in found)

    good = write(tmp_path, """
[[radius.clients]]
name = "vpn"
address = "10.0.0.1"
secret_file = "secrets/vpn.secret"
""", "good.toml")
    client = load_config(good, env={}).radius.clients[0]
    assert client.secret == SECRET and client.secret_file is None


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[storage]
url = "sqlite:///from-file.db"
[limits]
max_failures = 7
""")
    env = {
        "MFAD_STORAGE_URL": "postgresql://postgres@127.0.0.1/mfad",
        "MFAD_LIMITS_MAX_FAILURES": "12",
        "MFAD_RADIUS_LISTEN": '["127.0.0.1:11812"]',
        "MFAD_POLICY_REMEMBER_DEVICE": "true",
        "MFAD_TOTP_ISSUER": "Plain words need no quotes",
        "MFAD_TEST_POSTGRES_DSN": "postgresql://ignored",
        "OTHER_STORAGE_URL": "ignored",
    }
    config = load_config(path, env=env)
    assert config.storage.url == "postgresql://postgres@127.0.0.1/mfad"
    assert config.limits.max_failures == 12
    assert config.radius.listen == ["127.0.0.1:11812"]
    assert config.policy.remember_device is True
    assert config.totp.issuer == "Plain words need no quotes"


def test_the_old_radius_challenge_keys_still_set_the_one_knob_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_config(None, env={}).limits.challenge_ttl_seconds == 300
    path = write(tmp_path, "[radius]\nchallenge_ttl_seconds = 90\nchallenge_tries = 2\n")
    with caplog.at_level("WARNING", logger="mfad.config"):
        config = load_config(path, env={})
    assert (config.limits.challenge_ttl_seconds, config.limits.challenge_tries) == (90, 2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "mfad.config"]
    assert warnings == ["radius.challenge_ttl_seconds is deprecated: use limits.challenge_ttl_seconds",
                        "radius.challenge_tries is deprecated: use limits.challenge_tries"]
    from_env = load_config(None, env={"MFAD_RADIUS_CHALLENGE_TRIES": "4"})
    assert from_env.limits.challenge_tries == 4
    both = write(tmp_path, "[radius]\nchallenge_tries = 2\n[limits]\nchallenge_tries = 5\n", "both.toml")
    assert load_config(both, env={}).limits.challenge_tries == 5  # the new key wins
    assert problems(write(tmp_path, "[radius]\nchallenge_tries = 99\n", "bad.toml")) == [
        "limits.challenge_tries: must be between 1 and 10"]


def test_bad_environment_values_name_their_variable_and_key() -> None:
    found = problems(None, env={"MFAD_LIMITS_MAX_FAILURES": "five", "MFAD_STORAGE_NOPE": "1",
                                "MFAD_TOTP_PERIOD": "45"})
    assert "environment MFAD_LIMITS_MAX_FAILURES: limits.max_failures: must be an integer" in found
    assert "environment MFAD_STORAGE_NOPE: storage.nope: unknown key" in found
    assert "environment MFAD_TOTP_PERIOD: totp.period: must be one of 30, 60" in found


def test_unknown_mfad_variables_are_refused_by_name() -> None:
    found = problems(None, env={"MFAD_NOSUCH_KEY": "1", "MFAD_RADIUSLISTEN": "x",
                                # mfactl's and the test suite's own variables are not configuration
                                "MFAD_ADDR": "127.0.0.1:1", "MFAD_TOKEN": "t", "MFAD_TLS_CA": "/x",
                                "MFAD_CONFIG": "/x", "MFAD_TEST_POSTGRES_DSN": "postgresql://x"})
    assert len(found) == 2
    assert found[0].startswith("environment MFAD_NOSUCH_KEY: unknown variable")
    assert found[1].startswith("environment MFAD_RADIUSLISTEN: unknown variable")


def test_list_keys_from_the_environment_as_toml_or_comma_separated() -> None:
    config = load_config(None, env={"MFAD_RADIUS_LISTEN": "127.0.0.1:11812, [::1]:11812",
                                    "MFAD_GRPC_LISTEN": '["127.0.0.1:15051"]',
                                    "MFAD_POLICY_ALLOWED_METHODS": "totp,passkey",
                                    "MFAD_PORTAL_TRUSTED_PROXIES": "10.0.0.0/8"})
    assert config.radius.listen == ["127.0.0.1:11812", "[::1]:11812"]
    assert config.grpc.listen == ["127.0.0.1:15051"]
    assert [m.value for m in config.policy.allowed_methods] == ["totp", "passkey"]
    assert config.portal.trusted_proxies == ["10.0.0.0/8"]
    found = problems(None, env={"MFAD_RADIUS_LISTEN": "127.0.0.1:11812,nonsense"})
    assert found == ["environment MFAD_RADIUS_LISTEN: radius.listen: 'nonsense': must be host:port"]


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write(etc, """
[storage]
url = "sqlite:///data/mfad.db"
[secrets]
key_file = "data/secrets.key"
[portal]
token_file = "portal.token"
""")
    config = load_config(path, env={})
    assert config.storage.url == f"sqlite:///{etc}/data/mfad.db"
    assert config.secrets.key_file == str(etc / "data" / "secrets.key")
    assert config.portal.token_file == str(etc / "portal.token")
    absolute = write(etc, 'storage.url = "sqlite:////srv/mfad.db"\n', "abs.toml")
    config = load_config(absolute, env={})
    assert config.storage.url == "sqlite:////srv/mfad.db"
    # Unset, the key file and the portal's token live beside the database (the data directory).
    assert (config.secrets.key_file, config.portal.token_file) == ("/srv/secrets.key", "/srv/portal.token")


def test_grpc_off_loopback_without_tls_is_a_config_error() -> None:
    found = problems(None, env={"MFAD_GRPC_LISTEN": "0.0.0.0:50051"})
    assert found == ["environment MFAD_GRPC_LISTEN: grpc.listen: 0.0.0.0:50051 is not a loopback address; "
                     "without TLS mfad listens on loopback only (set grpc.tls_cert and grpc.tls_key)"]


@pytest.mark.parametrize(("text", "why"), [
    ("[storage\nurl = 1", "not valid TOML"),
    ("\xff\xfe", "cannot read"),
])
def test_unreadable_files_are_config_errors(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1"))
    found = problems(path)
    assert len(found) == 1 and str(path) in found[0] and why in found[0]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.toml") == [f"{tmp_path / 'absent.toml'}: no such file"]


@pytest.mark.parametrize(("address", "parsed"), [
    ("127.0.0.1:1812", ("127.0.0.1", 1812)),
    ("[::1]:50051", ("::1", 50051)),
    ("radius.example:0", ("radius.example", 0)),
])
def test_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["::1:1812", "[::1]", "host", ":1812", "host:70000", "host:x"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        parse_address(address)


def test_approval_hold_seconds_is_checked_and_named(tmp_path: Path) -> None:
    """Hold mode (docs/approval.md): off by default; only for append/otp_only UDP clients,
    within the challenge's life, with a portal to approve on; bad values named by key."""
    secret = 'secret = "0123456789abcdef0123"'
    path = write(tmp_path, f"""
[[radius.clients]]
name = "vpn"
address = "10.0.0.1"
{secret}
mode = "append"
approval_hold_seconds = 60

[[radius.clients]]
name = "challenger"
address = "10.0.0.2"
{secret}
approval_hold_seconds = 60

[[radius.clients]]
name = "too-long"
address = "10.0.0.3"
{secret}
mode = "otp_only"
approval_hold_seconds = 301

[[radius.clients]]
name = "negative"
address = "10.0.0.4"
{secret}
mode = "otp_only"
approval_hold_seconds = -1
""")
    found = problems(path)
    assert not any(p.startswith("radius.clients[0]") for p in found), found
    assert any(p.startswith("radius.clients[1].approval_hold_seconds: hold mode is for append and otp_only")
               for p in found), found
    assert "radius.clients[2].approval_hold_seconds: must be between 0 and 600" in found or \
        "radius.clients[2].approval_hold_seconds: must not exceed limits.challenge_ttl_seconds (300)" in found, found
    assert "radius.clients[3].approval_hold_seconds: must be between 0 and 600" in found, found

    no_portal = write(tmp_path, f"""
[portal]
enabled = false

[[radius.clients]]
name = "vpn"
address = "10.0.0.1"
{secret}
mode = "append"
approval_hold_seconds = 60
""", "no-portal.toml")
    assert any(p.startswith("radius.clients[0].approval_hold_seconds: needs the portal")
               for p in problems(no_portal))

    good = write(tmp_path, f"""
[policy]
approval_hold = false

[[radius.clients]]
name = "vpn"
address = "10.0.0.1"
{secret}
mode = "otp_only"
approval_hold_seconds = 90

[[radius.clients]]
name = "plain"
address = "10.0.0.2"
{secret}
""", "good-hold.toml")
    config = load_config(good, env={})
    assert [c.approval_hold_seconds for c in config.radius.clients] == [90, 0]
    assert config.policy.to_policy().approval_hold is False
