"""The ``mfad`` command and the daemon skeleton, run as real subprocesses."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from signin_calls import verify_code
from loopback import free_port

PG_DSN = os.environ.get("MFAD_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def mfad(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mfad", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def write_config(path: Path, storage_url: str, extra: str = "") -> dict[str, int]:
    ports = {"metrics": free_port(), "grpc": free_port(), "radius": free_port(socket.SOCK_DGRAM)}
    path.write_text(f"""
[storage]
url = "{storage_url}"
[secrets]
key_file = "{path.parent / 'secrets.key'}"
[passwords]
time_cost = 1
memory_kib = 64
parallelism = 1
[metrics]
listen = ["127.0.0.1:{ports['metrics']}"]
[grpc]
listen = ["127.0.0.1:{ports['grpc']}"]
[radius]
listen = ["127.0.0.1:{ports['radius']}"]
[portal]
listen = ["127.0.0.1:0"]
token_file = "{path.parent / 'portal.token'}"
{extra}
""")
    return ports


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if http_get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("daemon not ready in time")


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one daemon, dropped afterwards."""
    name = f"mfad_cli_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_check_config_accepts_defaults_and_the_example(tmp_path: Path) -> None:
    # Free ports: check-config binds every listener once, and the defaults may be taken here.
    env = {"MFAD_RADIUS_LISTEN": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
           "MFAD_GRPC_LISTEN": f"127.0.0.1:{free_port()}", "MFAD_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
           "MFAD_PORTAL_LISTEN": f"127.0.0.1:{free_port()}"}
    done = mfad("check-config", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"store sqlite {tmp_path}/mfad-data/mfad.db (no database yet: serve creates it)" in done.stdout
    done = mfad("check-config", "--config", str(REPO / "mfad.example.toml"), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr


def test_check_config_names_every_bad_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("""
[storage]
colour = "blue"
[totp]
digits = 7
[[radius.clients]]
name = "a"
address = "10.0.0.1"
secret = "0123456789abcdef"
[[radius.clients]]
name = "b"
address = "10.0.0.0/8"
secret = "0123456789abcdef"
[[radius.clients]]
name = "c"
address = "192.0.2.1"
secret = "short"
""")
    done = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    assert "storage.colour: unknown key" in done.stderr
    assert "totp.digits: must be one of 6, 8" in done.stderr
    assert "radius.clients[2].secret: must be at least 16 characters" in done.stderr


def test_check_config_missing_file_and_bad_toml(tmp_path: Path) -> None:
    assert mfad("check-config", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path).returncode == 2
    broken = tmp_path / "broken.toml"
    broken.write_text("[storage\nurl=")
    done = mfad("check-config", "--config", str(broken), cwd=tmp_path)
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_environment_overrides_are_validated(tmp_path: Path) -> None:
    done = mfad("check-config", cwd=tmp_path, env={"MFAD_LIMITS_MAX_FAILURES": "0"})
    assert done.returncode == 2 and "limits.max_failures" in done.stderr


def test_token_create_prints_once_and_stores_only_a_hash(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    done = mfad("token", "create", "ops", "--role", "admin", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("mfad_") and len(token) > 40
    db = sqlite3.connect(tmp_path / "mfad.db")
    stored = [row[0] for row in db.execute("SELECT token_hash FROM caller_tokens")]
    dump = "\n".join(db.iterdump())
    db.close()
    assert len(stored) == 1 and token not in dump
    listing = mfad("token", "list", "--json", "--config", str(cfg), cwd=tmp_path)
    assert '"name": "ops"' in listing.stdout and token not in listing.stdout
    again = mfad("token", "create", "ops", "--role", "admin", "--config", str(cfg), cwd=tmp_path)
    assert again.returncode == 1
    assert mfad("token", "revoke", "ops", "--config", str(cfg), cwd=tmp_path).returncode == 0
    assert mfad("token", "revoke", "ops", "--config", str(cfg), cwd=tmp_path).returncode == 1


def test_token_create_with_an_expiry(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    before = datetime.now(UTC)
    done = mfad("token", "create", "batch", "--role", "service", "--expires-in", "30", "--json", "--config", str(cfg),
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expires = datetime.fromisoformat(json.loads(done.stdout)["expires_at"])
    assert timedelta(days=30) <= expires - before < timedelta(days=30, minutes=1)
    listing = mfad("token", "list", "--config", str(cfg), cwd=tmp_path)
    assert "batch\tservice\t" in listing.stdout and f"\tactive\t{expires.isoformat()}" in listing.stdout
    refused = mfad("token", "create", "late", "--role", "service", "--expires-in", "0", "--config", str(cfg),
                   cwd=tmp_path)
    assert refused.returncode == 2 and "expires_at: must be in the future" in refused.stderr


def test_token_create_refuses_unknown_role(tmp_path: Path) -> None:
    assert mfad("token", "create", "x", "--role", "root", cwd=tmp_path).returncode == 2


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    first = mfad("migrate", "--config", str(cfg), cwd=tmp_path)
    assert first.returncode == 0 and "applied" in first.stdout
    second = mfad("migrate", "--config", str(cfg), cwd=tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    key = tmp_path / "secrets.key"
    key.write_text("k1 not-base64!!\n")
    key.chmod(0o600)
    done = mfad("token", "create", "ops", "--role", "admin", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{key}:1" in done.stderr and "base64" in done.stderr


def test_rotate_key_reseals_secrets_and_retires_the_old_key(tmp_path: Path) -> None:
    from mfad.app import open_core
    from mfad.config import load_config
    from mfad.core import totp
    from mfad.core.verification import Attempt

    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    config = load_config(cfg)

    async def bind() -> bytes:
        async with open_core(config) as mfa:
            await mfa.users.create("alice", "pw-0123456789")
            binding = await mfa.devices.begin_totp("alice")
            key = base64.b32decode(binding.secret_base32)
            code = totp.hotp(key, totp.step_at(mfa.clock.now(), 30))
            await mfa.devices.confirm_totp("alice", binding.device.id, code)
            return key

    async def verify_next(key: bytes) -> bool:
        async with open_core(config) as mfa:
            code = totp.hotp(key, totp.step_at(mfa.clock.now(), 30) + 1)  # the next step: not a replay
            result = await verify_code(mfa.signin, "alice", code, Attempt(protocol="test"))
            return result.accepted

    key = asyncio.run(bind())
    before = _kids(tmp_path / "secrets.key")
    done = mfad("rotate-key", "--retire", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 secret(s)" in done.stdout
    after = _kids(tmp_path / "secrets.key")
    assert len(before) == 1 and len(after) == 1 and after != before
    assert oct((tmp_path / "secrets.key").stat().st_mode & 0o777) == "0o600"
    db = sqlite3.connect(tmp_path / "mfad.db")
    (sealed,) = db.execute("SELECT sealed_secret FROM devices").fetchone()
    db.close()
    assert sealed.startswith(after[0] + ":")
    assert asyncio.run(verify_next(key))


def _kids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_serve_is_ready_exports_metrics_and_stops_on_sigterm(engine: str, tmp_path: Path,
                                                            request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path}/data/mfad.db" if engine == "sqlite" else request.getfixturevalue("pg_database")
    cfg = tmp_path / "mfad.toml"
    ports = write_config(cfg, url)
    proc = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(cfg)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(proc, ports["metrics"])
        assert http_get(ports["metrics"], "/healthz") == (200, "ok\n")
        status, body = http_get(ports["metrics"], "/metrics")
        assert status == 200 and "mfad_build_info" in body and "mfad_store_up 1.0" in body
        version = mfad("--version", cwd=tmp_path).stdout.split()[-1]
        assert f'mfad_build_info{{store="{engine}",version="{version}"}} 1.0' in body
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert http_get(ports["metrics"], "/nope")[0] == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, err = proc.communicate()
    assert "mfad stopped" in err
    if engine == "sqlite":
        assert oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"
        assert oct((tmp_path / "data" / "mfad.db").stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_serve_refuses_a_schema_newer_than_it_knows(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    assert mfad("migrate", "--config", str(cfg), cwd=tmp_path).returncode == 0
    db = sqlite3.connect(tmp_path / "mfad.db")
    db.execute("INSERT INTO mfad_schema (version, applied_at) VALUES (999, 0)")
    db.commit()
    db.close()
    done = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    assert "newer than this mfad knows" in done.stderr


@pytest.mark.slow
def test_serve_refuses_a_port_already_taken(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    ports = write_config(cfg, f"sqlite:///{tmp_path}/mfad.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["metrics"]))
        taken.listen()
        done = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert f"metrics.listen: cannot listen on 127.0.0.1:{ports['metrics']}: Address already in use" in done.stderr
