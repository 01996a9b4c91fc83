"""The ``[smtp]`` section: every bad key is named, secrets come from files, and ``mfad
check-config`` exits 2 naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from config_files import config_problems

from mfad.config import load_config
from mfad.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_design() -> None:
    smtp = load_config(None, env={}).smtp
    assert (smtp.code_digits, smtp.code_ttl_seconds, smtp.code_tries, smtp.resend_seconds, smtp.hourly_limit) == (
        6, 300, 3, 60, 10)
    assert smtp.security == "starttls"


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    found = config_problems(tmp_path, """
[smtp]
port = 70000
security = "ssl"
from = "mfad@localhost"
code_digits = 9
code_ttl_seconds = 3600
hourly_limit = 0
colour = "blue"
""")
    keys = sorted(p.split(":")[0] for p in found)
    assert keys == ["smtp.code_digits", "smtp.code_ttl_seconds", "smtp.colour", "smtp.from", "smtp.hourly_limit",
                    "smtp.port", "smtp.security"], found


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-relay-password\n")
    (tmp_path / "pw").chmod(0o644)
    file = tmp_path / "mfad.toml"
    file.write_text('[smtp]\nhost = "smtp.example.com"\nusername = "mfad"\npassword_file = "pw"\n'
                    'from = "mfa@example.com"\n')
    with pytest.raises(ConfigError, match="smtp.password_file: .* is readable by group or others \\(mode 0644\\)"):
        load_config(file, env={})
    (tmp_path / "pw").chmod(0o600)
    smtp = load_config(file, env={}).smtp
    assert smtp.password == "s3cret-relay-password" and smtp.password_file is None
    assert "s3cret" not in repr(smtp)


def test_password_rules(tmp_path: Path) -> None:
    assert config_problems(tmp_path, '[smtp]\nusername = "mfad"\npassword_file = "missing"\n')[0].startswith(
        "smtp.password_file: cannot read")
    assert config_problems(tmp_path, '[smtp]\nhost = "smtp.example.com"\nsecurity = "none"\nusername = "u"\n'
                              'password = "p"\n') == [
        "smtp.security: 'none' would send the password in clear to a remote host: use starttls or tls"]
    load_config(None, env={"MFAD_SMTP_SECURITY": "none", "MFAD_SMTP_USERNAME": "u", "MFAD_SMTP_PASSWORD": "p"})


def test_check_config_exits_2_naming_the_smtp_key(tmp_path: Path) -> None:
    file = tmp_path / "mfad.toml"
    file.write_text('[smtp]\nfrom = "not an address"\n')
    run = subprocess.run([sys.executable, "-m", "mfad", "check-config", "--config", str(file)], capture_output=True,
                         text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert run.returncode == 2
    assert "smtp.from:" in run.stderr
