"""The [[directory.*]] tables and first_factor keys: what loads, and every bad key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfad.config import load_config
from mfad.core.errors import ConfigError

GOOD = """
[[directory.ldap]]
name = "corp"
servers = ["ldaps://dc1.example.org", "ldaps://dc2.example.org:636"]
ca_file = "ca.pem"
bind_dn = "cn=mfad,ou=services,dc=example,dc=org"
bind_password_file = "bind.pw"
base_dn = "ou=people,dc=example,dc=org"
username_attribute = "sAMAccountName"
check_account_control = true

[[directory.radius]]
name = "nps"
servers = ["127.0.0.1:1812", "[::1]:1812"]
secret_file = "nps.secret"
group_attributes = ["Class", "Filter-Id"]

[radius]
first_factor = "ldap"

[[radius.clients]]
name = "vpn"
address = "10.0.0.0/24"
secret = "vpn-shared-secret-0123"
first_factor = "radius:nps"

[[radius.clients]]
name = "wifi"
address = "10.0.1.0/24"
secret = "wifi-shared-secret-0123"

[[radius.clients]]
name = "asa"
address = "10.0.2.0/24"
secret = "asa-shared-secret-01234"
mode = "otp_only"

[grpc]
first_factor = "ldap:corp"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    for name, secret in (("bind.pw", "service-password"), ("nps.secret", "nps-shared-secret-0123")):
        (tmp_path / name).write_text(secret + "\n")
        (tmp_path / name).chmod(0o600)
    path = tmp_path / "mfad.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    return caught.value.problems


def test_a_full_directory_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    corp, nps = config.directory.ldap[0], config.directory.radius[0]
    assert corp.bind_password == "service-password" and corp.ca_file == str(tmp_path / "ca.pem")
    assert nps.secret == "nps-shared-secret-0123"
    assert [c.first_factor for c in config.radius.clients] == ["nps", "corp", "none"]
    assert config.grpc.first_factor == "ldap:corp"


@pytest.mark.parametrize(("change", "key"), [
    (("ldaps://dc1.example.org", "http://dc1"), "directory.ldap[0].servers"),
    (('ca_file = "ca.pem"', 'ca_file = "missing.pem"'), "directory.ldap[0].ca_file"),
    (('base_dn = "ou=people,dc=example,dc=org"', 'base_dn = ""'), "directory.ldap[0].base_dn"),
    (('"ldaps://dc1.example.org", ', '"ldap://dc1.example.org"]\nstart_tls = false\nx = ['),
     "directory.ldap[0].start_tls"),
    (('bind_password_file = "bind.pw"\n', ""), "directory.ldap[0].bind_password_file"),
    (('secret_file = "nps.secret"', 'secret = "short"'), "directory.radius[0].secret"),
    (('"[::1]:1812"', '"nowhere"'), "directory.radius[0].servers[1]"),
    (('first_factor = "radius:nps"', 'first_factor = "radius:other"'), "radius.clients[0].first_factor"),
    (('first_factor = "radius:nps"', 'first_factor = "none"'), "radius.clients[0].first_factor"),
    (('mode = "otp_only"', 'mode = "otp_only"\nfirst_factor = "ldap"'), "radius.clients[2].first_factor"),
    (('first_factor = "ldap:corp"', 'first_factor = "kerberos"'), "grpc.first_factor"),
    (('name = "nps"', 'name = "corp"'), "directory.radius[0].name"),
    (('username_attribute = "sAMAccountName"', 'usernme_attribute = "x"'), "directory.ldap[0].usernme_attribute"),
    (('check_account_control = true', 'user_filter = "objectClass=person"'), "directory.ldap[0].user_filter"),
])
def test_a_bad_key_is_named(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in GOOD
    found = problems(tmp_path, GOOD.replace(old, new, 1))
    assert any(p.startswith(f"{key}:") for p in found), found


def test_plain_ldap_is_allowed_to_loopback(tmp_path: Path) -> None:
    text = GOOD.replace('"ldaps://dc1.example.org", "ldaps://dc2.example.org:636"', '"ldap://127.0.0.1:3389"')
    text = text.replace("check_account_control = true", "check_account_control = true\nstart_tls = false")
    assert load_config(write(tmp_path, text), env={}).directory.ldap[0].start_tls is False
