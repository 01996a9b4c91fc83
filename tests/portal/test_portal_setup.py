"""How the portal is set up: its configuration checks (origins, TLS), the caller token
``mfad serve`` provisions for it, and ``mfad-portal`` running alone against a daemon."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from portal_support import mfad_daemon  # noqa: F401
from e2e_daemon import StartDaemon
from config_files import config_problems
from e2e_support import child_env, free_port

from mfad.config import load_config, load_portal_config
from mfad.core.errors import ConfigError
from mfad.core.service import Mfa
from mfad.embedded_portal import portal_token


def test_webauthn_takes_the_portals_origin_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_config(None, env={}).webauthn.origins == ["http://localhost:8080"]
    path = tmp_path / "mfad.toml"
    path.write_text('[portal]\npublic_url = "https://id.example.com"\ntrusted_proxies = ["10.0.0.0/8"]\n'
                    '[webauthn]\nrp_id = "example.com"\n')
    assert load_config(path, env={}).webauthn.origins == ["https://id.example.com"]
    path.write_text('[portal]\nenabled = false\n[webauthn]\norigins = ["https://a.localhost"]\n')
    assert load_config(path, env={}).webauthn.origins == ["https://a.localhost"]


def test_check_config_refuses_a_portal_origin_webauthn_would_reject(tmp_path: Path) -> None:
    found = config_problems(tmp_path, '[portal]\npublic_url = "https://id.example.com"\ntls_cert = "c.pem"\n'
                            'tls_key = "k.pem"\n[webauthn]\nrp_id = "example.com"\n'
                            'origins = ["https://other.example.com"]\n')
    assert any("portal.public_url" in p and "webauthn.origins" in p for p in found), found
    found = config_problems(tmp_path, '[portal]\npublic_url = "https://id.example.com"\n'
                            'trusted_proxies = ["10.0.0.1"]\n')
    assert any("portal.public_url" in p and "webauthn.rp_id" in p for p in found), found
    found = config_problems(tmp_path, '[portal]\npublic_url = "http://id.example.com"\n'
                            '[webauthn]\nrp_id = "example.com"\n')
    assert any("must be served over https" in p for p in found), found
    found = config_problems(tmp_path, '[portal]\npublic_url = "https://id.example.com"\n'
                            '[webauthn]\nrp_id = "example.com"\n')
    assert any("portal.tls_cert" in p and "trusted_proxies" in p for p in found), found
    cli = subprocess.run([sys.executable, "-m", "mfad", "check-config", "--config", str(tmp_path / "mfad.toml")],
                         capture_output=True, text=True, env=child_env(), timeout=60)
    assert cli.returncode == 2 and "portal.public_url" in cli.stderr


def test_the_standalone_file_holds_only_portal_and_needs_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "portal.toml"
    path.write_text('[portal]\nlisten = ["127.0.0.1:0"]\n[grpc]\nlisten = []\n')
    with pytest.raises(ConfigError) as refused:
        load_portal_config(path, env={})
    assert any(p.startswith("grpc:") for p in refused.value.problems)
    assert any(p.startswith("portal.daemon_address") for p in refused.value.problems)


async def test_serve_provisions_the_portal_token_once_and_replaces_a_lost_one(mfa: Mfa, tmp_path: Path) -> None:
    path = tmp_path / "data" / "portal.token"
    first = await portal_token(mfa, path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert await portal_token(mfa, path) == first  # a restart keeps it
    path.unlink()
    second = await portal_token(mfa, path)
    assert second != first and await mfa.callers.authenticate(first) is None
    live = [t for t in await mfa.callers.list() if not t.revoked]
    assert len(live) == 1 and live[0].name.startswith("portal-builtin-")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"])
async def test_mfad_portal_runs_alone_against_a_daemon(mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    running = await mfad_daemon()  # its own portal off; this one runs beside it
    with portal_alone(tmp_path, running.address, running.tokens["portal"]) as (proc, port):
        ready = await wait_for(f"http://127.0.0.1:{port}/readyz")
        assert ready == (200, "ready\n")
        status, page = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/signin")
        assert status == 200 and "<h1>Sign in</h1>" in page
        status, metrics = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert 'mfad_portal_requests_total{route="sign_in",status="200"} 1.0' in metrics
        await running.daemon.stop()
        status, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
        assert status == 503  # mfad does not answer: not ready (but alive)
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz"))[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0


@contextlib.contextmanager
def portal_alone(tmp_path: Path, daemon_address: str, token: str,
                 extra: str = "") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``mfad-portal`` in a process of its own on a free port, calling mfad at ``daemon_address``
    with ``token`` (``extra``: more [portal] lines); stopped at the end if it still runs."""
    token_file = tmp_path / "portal.token"
    token_file.write_text(token)
    port = free_port()
    config = tmp_path / "portal.toml"
    config.write_text(f'[portal]\nlisten = ["127.0.0.1:{port}"]\ndaemon_address = "{daemon_address}"\n'
                      f'token_file = "{token_file}"\n{extra}')
    proc = subprocess.Popen([sys.executable, "-m", "mfad_portal.cli", "--config", str(config)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc, port
    finally:
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def wait_for(url: str) -> tuple[int, str]:
    for _ in range(200):
        try:
            answer = await asyncio.to_thread(get, url)
            if answer[0] == 200:
                return answer
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")




@pytest.mark.slow
async def test_a_daemon_that_never_answers_costs_a_page_only_daemon_timeout_seconds(tmp_path: Path) -> None:
    """``[portal] daemon_timeout_seconds``: mfad's address accepts connections and says nothing."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    hole_port = black_hole.sockets[0].getsockname()[1]
    try:
        with portal_alone(tmp_path, f"127.0.0.1:{hole_port}", "mfad_not-checked-by-anyone",
                          "daemon_timeout_seconds = 1.5\n") as (_, port):
            url = f"http://localhost:{port}"
            async with httpx.AsyncClient(base_url=url, headers={"origin": url}, timeout=30) as http:
                for _ in range(200):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                form = await http.get("/signin")
                csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert csrf is not None
                started = time.monotonic()
                answer = await http.post("/signin", data={"csrf": csrf.group(1), "username": "alice", "password": "x"})
                took = time.monotonic() - started
            assert answer.status_code == 503 and "not available right now" in answer.text
            assert 1.4 < took < 6, took  # the setting, not the 10 s default
    finally:
        for writer in held:
            writer.close()
        black_hole.close()


def test_every_step_up_the_portal_asks_for_names_an_operation_mfad_takes() -> None:
    """mfad answers a badly named operation INVALID_ARGUMENT, which the step-up page could only
    word as "that did not confirm it is you": so every name the portal sends is checked here."""
    from mfad.core.selfservice import check_operation
    from mfad_portal import app, approve, step_up  # noqa: F401  (app imports every page that registers one)

    names = {action.operation for action in step_up._ACTIONS.values()} | {approve.OPERATION}
    assert {"set_policy", "unbind_device", "create_caller_token", "revoke_caller_token"} <= names
    for name in names:
        assert check_operation(name) == name
