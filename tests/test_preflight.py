"""The pre-flight, run as real ``mfad`` subprocesses: ``check-config`` finds what ``serve``
would refuse, and ``serve`` refuses it before it creates, migrates or binds anything."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import REPO, free_port, mfad, pg_database, wait_ready, write_config  # noqa: F401 (pg_database: a fresh database per test)


def _seal_a_device(cfg: Path) -> None:
    """A user with a confirmed TOTP device: the database now holds a value sealed by the key."""
    from mfad.app import open_core
    from mfad.config import load_config
    from mfad.core import totp

    async def bind() -> None:
        async with open_core(load_config(cfg, env={})) as mfa:
            await mfa.users.create("alice", "pw-0123456789abc")
            binding = await mfa.devices.begin_totp("alice")
            key = base64.b32decode(binding.secret_base32)
            await mfa.devices.confirm_totp("alice", binding.device.id, totp.hotp(key, totp.step_at(mfa.clock.now(), 30)))

    asyncio.run(bind())


def _set_key_file(cfg: Path, key_file: Path) -> None:
    text = cfg.read_text()
    start = text.index('key_file = "')
    end = text.index('"', start + len('key_file = "'))
    cfg.write_text(text[:start] + f'key_file = "{key_file}' + text[end:])


def _storage_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path}/mfad.db"
    return str(request.getfixturevalue("pg_database"))


def _schema_and_callers(engine: str, url: str) -> tuple[int, int]:
    """(schema version, caller tokens) straight from the database."""
    if engine == "sqlite":
        db = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return (db.execute("SELECT max(version) FROM mfad_schema").fetchone()[0],
                    db.execute("SELECT count(*) FROM caller_tokens").fetchone()[0])
        finally:
            db.close()
    import asyncpg

    async def read() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            return (await conn.fetchval("SELECT max(version) FROM mfad_schema"),
                    await conn.fetchval("SELECT count(*) FROM caller_tokens"))
        finally:
            await conn.close()

    return asyncio.run(read())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_mistyped_key_file_is_refused_never_replaced(engine: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    cfg = tmp_path / "mfad.toml"
    url = _storage_url(engine, tmp_path, request)
    write_config(cfg, url)
    _seal_a_device(cfg)
    before = _schema_and_callers(engine, url)
    typo = tmp_path / "secret.key"  # the real one is secrets.key
    _set_key_file(cfg, typo)

    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2
    assert f"secrets.key_file: {typo} does not exist, but the database" in check.stderr
    assert "a new key would open none of them" in check.stderr
    served = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert served.returncode == 2
    assert f"refusing to start: secrets.key_file: {typo} does not exist" in served.stderr
    workers = mfad("serve", "--workers", "2", "--config", str(cfg), cwd=tmp_path)
    assert workers.returncode == 2 and "refusing to start: secrets.key_file" in workers.stderr
    token = mfad("token", "create", "ops", "--role", "admin", "--config", str(cfg), cwd=tmp_path)
    assert token.returncode == 2 and "secrets.key_file" in token.stderr
    assert not typo.exists()  # no new key was made
    assert _schema_and_callers(engine, url) == before  # nothing was written

    # A key file that exists but holds another key: the stored secret does not open.
    other = tmp_path / "other.key"
    other.write_text(f"{_kid(tmp_path / 'secrets.key')} {base64.b64encode(secrets.token_bytes(32)).decode()}\n")
    other.chmod(0o600)
    _set_key_file(cfg, other)
    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2
    assert f"secrets.key_file: {other} cannot open what the database" in check.stderr
    assert "devices.sealed_secret" in check.stderr
    assert mfad("serve", "--config", str(cfg), cwd=tmp_path).returncode == 2

    _set_key_file(cfg, tmp_path / "secrets.key")  # the right one: all good
    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "(existing database)" in check.stdout


def _kid(path: Path) -> str:
    return next(line.split()[0] for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.slow
def test_check_config_reports_what_serve_refuses_all_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "mfad.toml"
    ports = write_config(cfg, f"sqlite:///{tmp_path}/nonexistent/dir/mfad.db")
    key = tmp_path / "secrets.key"
    key.write_text(f"k1 {base64.b64encode(secrets.token_bytes(32)).decode()}\n")
    key.chmod(0o644)
    text = cfg.read_text().replace(f'listen = ["127.0.0.1:{ports["grpc"]}"]', 'listen = ["0.0.0.0:50051"]')
    cfg.write_text(text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", ports["radius"]))
        check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2
    problems = [line.removeprefix("mfad: config: ") for line in check.stderr.splitlines()]
    # The configuration's own rule first, reported alone: the address is wrong whatever the machine.
    assert problems == ["grpc.listen: 0.0.0.0:50051 is not a loopback address; without TLS mfad listens on "
                        "loopback only (set grpc.tls_cert and grpc.tls_key)"]
    assert mfad("serve", "--config", str(cfg), cwd=tmp_path).returncode == 2

    cfg.write_text(text.replace('listen = ["0.0.0.0:50051"]', f'listen = ["127.0.0.1:{ports["grpc"]}"]'))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", ports["radius"]))
        check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2
    assert f"storage.url: the directory {tmp_path}/nonexistent does not exist" in check.stderr
    assert f"secrets.key_file: {key}: key file is readable by others (mode 644); chmod 600 it" in check.stderr
    assert f"radius.listen: cannot listen on 127.0.0.1:{ports['radius']}: Address already in use" in check.stderr

    served = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert served.returncode == 2
    assert "refusing to start: storage.url: the directory" in served.stderr
    assert "refusing to start: secrets.key_file" in served.stderr
    assert not (tmp_path / "nonexistent").exists()  # no directory made on the way


@pytest.mark.slow
def test_offline_commands_name_their_store_and_refuse_a_stray_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {"MFAD_GRPC_LISTEN": f"127.0.0.1:{free_port()}"}
    assert mfad("migrate", cwd=home, env=env).returncode == 0
    made = mfad("token", "create", "ops", "--role", "admin", cwd=home, env=env)
    assert made.returncode == 0, made.stderr
    assert f"mfad: store sqlite {home}/mfad-data/mfad.db (config: built-in defaults)" in made.stderr
    stray = mfad("token", "create", "ops2", "--role", "admin", cwd=elsewhere, env=env)
    assert stray.returncode == 2
    assert f"no configuration file and no database at sqlite {elsewhere}/mfad-data/mfad.db" in stray.stderr
    assert not (elsewhere / "mfad-data").exists()


@pytest.mark.slow
def test_the_config_is_found_in_etc_mfad(tmp_path: Path) -> None:
    """In a mount namespace whose /etc holds mfad/mfad.toml (the rest of /etc as it is), mfad
    run from any directory without --config uses that file, and its relative paths."""
    root = tmp_path / "etc"
    (root / "mfad").mkdir(parents=True)
    real = tmp_path / "real-etc"
    real.mkdir()
    data = tmp_path / "var"
    (root / "mfad" / "mfad.toml").write_text(f"""
[storage]
url = "sqlite:///{data}/mfad.db"
[secrets]
key_file = "keys/secrets.key"
[grpc]
listen = ["127.0.0.1:{free_port()}"]
""")
    (root / "mfad" / "keys").mkdir()
    script = f"""
set -e
mount --bind /etc {real}
for f in {real}/* {real}/.[!.]*; do [ -e "$f" ] && ln -s "$f" {root}/; done
mount --bind {root} /etc
cd {tmp_path}
{sys.executable} -m mfad migrate
{sys.executable} -m mfad token create ops --role admin
{sys.executable} -m mfad check-config
"""
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MFAD_")} |
                          {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert f"mfad: store sqlite {data}/mfad.db (config: /etc/mfad/mfad.toml)" in done.stderr
    assert "configuration ok (/etc/mfad/mfad.toml)" in done.stdout
    assert (root / "mfad" / "keys" / "secrets.key").exists()  # relative to the file's directory
    assert not (tmp_path / "mfad-data").exists()


def test_check_config_and_serve_refuse_an_expired_grpc_certificate(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    ended = dt.datetime(2020, 1, 2, 3, 4, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(ended - dt.timedelta(days=30))
            .not_valid_after(ended).sign(key, hashes.SHA256()))
    (tmp_path / "grpc.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "grpc.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (tmp_path / "grpc.key").chmod(0o600)
    (tmp_path / "secrets.key").write_text(f"k1 {base64.b64encode(secrets.token_bytes(32)).decode()}\n")
    (tmp_path / "secrets.key").chmod(0o600)
    cfg = tmp_path / "mfad.toml"
    cfg.write_text(f"""
[storage]
url = "sqlite:///{tmp_path}/mfad.db"
[secrets]
key_file = "secrets.key"
[grpc]
listen = ["127.0.0.1:{free_port()}"]
tls_cert = "grpc.crt"
tls_key = "grpc.key"
""")
    expected = f"grpc.tls_cert: {tmp_path}/grpc.crt expired on 2020-01-02 03:04 UTC"
    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2 and expected in check.stderr, check
    served = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert served.returncode == 2 and expected in served.stderr, served


def _tls_config(cfg: Path, ports: dict[str, int], files: dict[str, Path]) -> None:
    """gRPC with TLS and mTLS, the portal reaching it with its own CA bundle and client
    certificate, and RadSec with two client groups: every TLS file mfad loads."""
    data = cfg.parent / "data"
    cfg.write_text(f"""
[storage]
url = "sqlite:///{data}/mfad.db"
[secrets]
key_file = "{data}/secrets.key"
[passwords]
time_cost = 1
memory_kib = 64
parallelism = 1
[metrics]
listen = ["127.0.0.1:{ports['metrics']}"]
[radius]
listen = ["127.0.0.1:{ports['radius']}"]
accounting_listen = []
[[radius.clients]]
name = "campus-nas"
address = "127.0.0.1"
radsec_group = "campus"
certificate_name = "nas1"
[grpc]
listen = ["127.0.0.1:{ports['grpc']}"]
tls_cert = "{files['grpc_cert']}"
tls_key = "{files['grpc_key']}"
client_ca = "{files['client_ca']}"
[grpc.client_roles]
portal-web = "portal"
[portal]
listen = ["127.0.0.1:0"]
token_file = "{data}/portal.token"
daemon_ca = "{files['daemon_ca']}"
daemon_cert = "{files['daemon_cert']}"
daemon_key = "{files['daemon_key']}"
daemon_server_name = "localhost"
[smtp]
ca_file = "{files['smtp_ca']}"
[[directory.ldap]]
name = "corp"
servers = ["ldaps://127.0.0.1:636"]
base_dn = "dc=example,dc=com"
ca_file = "{files['ldap_ca']}"
[radsec]
listen = ["127.0.0.1:{ports['radsec']}"]
tls_cert = "{files['radsec_cert']}"
tls_key = "{files['radsec_key']}"
[[radsec.groups]]
name = "campus"
ca_file = "{files['campus_ca']}"
[[radsec.groups]]
name = "branch"
ca_file = "{files['branch_ca']}"
""")


@pytest.mark.slow
def test_check_config_and_serve_check_every_tls_file(tmp_path: Path) -> None:
    """Certificates made here, good and bad: a key of another certificate, expired CAs and
    certificates, a world-readable private key, a CA file that holds no certificate — for
    gRPC, the portal's connection to the daemon, the mail server, an LDAP directory and
    RadSec. All named at once; ``serve`` refuses before it makes a database; with every
    file good, ``check-config`` passes and ``serve`` starts with them."""
    import datetime as dt

    from tls_ca import TestCA

    ended = dt.datetime(2022, 3, 4, 5, 6, tzinfo=dt.UTC)
    good = TestCA(tmp_path, "good CA")
    old = TestCA(tmp_path, "old CA", not_after=ended)
    grpc_cert, grpc_key = good.issue("grpc-server", server=True)
    _, other_key = good.issue("another-server", server=True)
    daemon_cert, daemon_key = good.issue("portal-web", server=False)
    old_client, old_client_key = good.issue("portal-web-old", server=False, not_after=ended)
    radsec_cert, radsec_key = good.issue("radsec-server", server=True)
    old_radsec, old_radsec_key = good.issue("radsec-old", server=True, not_after=ended)
    nas_cert, nas_key = good.issue("nas1", server=False)
    old_client_key.chmod(0o644)  # a private key every user of the machine may read
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    cfg = tmp_path / "mfad.toml"
    ports = {"metrics": free_port(), "grpc": free_port(), "radius": free_port(socket.SOCK_DGRAM),
             "radsec": free_port()}
    bad = {"grpc_cert": grpc_cert, "grpc_key": other_key, "client_ca": old.cert_path, "daemon_ca": junk,
           "daemon_cert": old_client, "daemon_key": old_client_key, "radsec_cert": old_radsec,
           "radsec_key": old_radsec_key, "campus_ca": old.cert_path, "branch_ca": junk, "smtp_ca": old.cert_path,
           "ldap_ca": junk}
    _tls_config(cfg, ports, bad)

    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 2, check
    problems = [line.removeprefix("mfad: config: ") for line in check.stderr.splitlines()]
    when = "2022-03-04 05:06 UTC"
    assert problems == [
        f"grpc.tls_cert: {grpc_cert} and its key {other_key} do not go together (the key is another certificate's)",
        f"grpc.client_ca: {old.cert_path} expired on {when} (CN=old CA)",
        f"portal.daemon_ca: {junk} holds no PEM CA certificate that loads: Unable to load PEM file. See "
        "https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details. "
        "MalformedFraming",
        f"portal.daemon_key: {old_client_key} is readable by every user (mode 0644): chmod 600 it (or 640, its "
        "group one the daemon is in)",
        f"portal.daemon_cert: {old_client} expired on {when} (CN=portal-web-old)",
        f"smtp.ca_file: {old.cert_path} expired on {when} (CN=old CA)",
        f"directory.ldap[0].ca_file: {junk} holds no PEM CA certificate that loads: Unable to load PEM file. See "
        "https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details. "
        "MalformedFraming",
        f"radsec.tls_cert: {old_radsec} expired on {when} (CN=radsec-old)",
        f"radsec.groups[0].ca_file: {old.cert_path} expired on {when} (CN=old CA)",
        f"radsec.groups[1].ca_file: {junk} holds no PEM CA certificate that loads: Unable to load PEM file. See "
        "https://cryptography.io/en/latest/faq/#why-can-t-i-import-my-pem-file for more details. "
        "MalformedFraming",
    ], check.stderr
    served = mfad("serve", "--config", str(cfg), cwd=tmp_path)
    assert served.returncode == 2
    for problem in problems:
        assert f"refusing to start: {problem}" in served.stderr
    assert not (tmp_path / "data").exists()  # refused before the store was made

    # Every file good: check-config passes, and serve runs on them (RadSec answers a NAS's
    # TLS handshake with its certificate).
    _tls_config(cfg, ports, {"grpc_cert": grpc_cert, "grpc_key": grpc_key, "client_ca": good.cert_path,
                             "daemon_ca": good.cert_path, "daemon_cert": daemon_cert, "daemon_key": daemon_key,
                             "radsec_cert": radsec_cert, "radsec_key": radsec_key,
                             "campus_ca": good.cert_path, "branch_ca": good.cert_path, "smtp_ca": good.cert_path,
                             "ldap_ca": good.cert_path})
    check = mfad("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mfad", "serve", "--config", str(cfg)], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(proc, ports["metrics"])
        context = ssl.create_default_context(cafile=str(good.cert_path))
        context.load_cert_chain(nas_cert, nas_key)
        with socket.create_connection(("127.0.0.1", ports["radsec"]), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der == ssl.PEM_cert_to_DER_cert(radsec_cert.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
