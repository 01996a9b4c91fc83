"""``mfad export --include-secrets``: the TOTP secrets leave mfad only encrypted (PSKC under a
pre-shared key), audited per device, and ``mfad import pskc`` on another store (the other
engine) takes them back: the original authenticator app's codes work there."""

from __future__ import annotations

import asyncio
import base64
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest

from test_cli import mfad, pg_database, write_config  # noqa: F401 (pg_database: a fresh database per test)


def _bind(cfg: Path) -> bytes:
    from mfad.app import open_core
    from mfad.config import load_config
    from mfad.core import totp

    async def bind() -> bytes:
        async with open_core(load_config(cfg, env={})) as mfa:
            await mfa.users.create("alice", None)
            binding = await mfa.devices.begin_totp("alice", name="alice's phone")
            key = base64.b32decode(binding.secret_base32)
            await mfa.devices.confirm_totp("alice", binding.device.id, totp.hotp(key, totp.step_at(mfa.clock.now(), 30)))
            await mfa.users.create("bob", None)  # no device: nothing of his exported
            return key

    return asyncio.run(bind())


def _audit(cfg: Path) -> list[tuple[str, str | None, str | None]]:
    from mfad.app import open_core
    from mfad.config import load_config
    from mfad.core.ports import AuditFilter

    async def read() -> list[tuple[str, str | None, str | None]]:
        async with open_core(load_config(cfg, env={})) as mfa:
            rows = await mfa.store.query_audit(AuditFilter(event="device_secret_exported", limit=10))
            return [(r.event.event, r.event.username, r.event.actor) for r in rows]

    return asyncio.run(read())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_export_then_import_round_trip(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    source = tmp_path / "source"
    target = tmp_path / "target"
    source.mkdir()
    target.mkdir()
    url = f"sqlite:///{source}/mfad.db" if engine == "sqlite" else str(request.getfixturevalue("pg_database"))
    write_config(source / "mfad.toml", url)
    write_config(target / "mfad.toml", f"sqlite:///{target}/mfad.db")
    key = _bind(source / "mfad.toml")
    psk = tmp_path / "export.key"
    psk.write_text(secrets.token_hex(16) + "\n")
    psk.chmod(0o600)
    out = tmp_path / "alice.pskc"

    done = mfad("export", "--include-secrets", "--pskc-key-file", str(psk), "-o", str(out),
                "--config", str(source / "mfad.toml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exported 1 TOTP secret(s)" in done.stdout
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    text = out.read_text()
    assert base64.b64encode(key).decode() not in text and "PlainValue" not in text.split("TimeInterval")[0]
    assert "<UserId>alice</UserId>" in text and "bob" not in text
    assert _audit(source / "mfad.toml") == [("device_secret_exported", "alice", "cli")]
    again = mfad("export", "--include-secrets", "--pskc-key-file", str(psk), "-o", str(out),
                 "--config", str(source / "mfad.toml"), cwd=tmp_path)
    assert again.returncode == 2 and "cannot create" in again.stderr  # never overwrites

    other = tmp_path / "other.key"
    other.write_text(secrets.token_hex(16) + "\n")
    other.chmod(0o600)
    wrong = mfad("import", "pskc", str(out), "--create-users", "--pskc-key-file", str(other),
                 "--config", str(target / "mfad.toml"), cwd=tmp_path)
    # A wrong key: the MAC key does not decrypt (or, 1 in 256, decrypts to garbage the MACs refuse).
    assert wrong.returncode == 2, wrong.stderr
    assert "MACKey: cannot be decrypted with this key" in wrong.stderr or "ValueMAC does not match" in wrong.stderr
    imported = mfad("import", "pskc", str(out), "--create-users", "--pskc-key-file", str(psk),
                    "--config", str(target / "mfad.toml"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr

    # The original app's next code, by oathtool: accepted by the target store.
    code = subprocess.run(["oathtool", "--totp", "-b", base64.b32encode(key).decode(), "-N", "now + 30 seconds"],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()

    async def verify() -> bool:
        from mfad.app import open_core
        from mfad.config import load_config
        from mfad.core.verification import VOUCHED, Attempt, SignInRequest

        async with open_core(load_config(target / "mfad.toml", env={})) as mfa:
            devices = (await mfa.devices.list("alice")).devices
            assert [d.name for d in devices] == ["alice's phone"]
            result = await mfa.signin.sign_in(SignInRequest(username="alice", first_factor=VOUCHED, code=code,
                                                            code_required=True, attempt=Attempt(protocol="test")))
            return str(result.outcome) == "allowed"

    assert asyncio.run(verify())
    db = sqlite3.connect(target / "mfad.db")
    assert db.execute("SELECT count(*) FROM devices").fetchone()[0] == 1
    db.close()
