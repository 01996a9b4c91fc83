"""The README walk-through against a real ``mfad serve``, driven by ``mfactl`` (both engines).

Token from ``mfad token create`` (offline, on the daemon's store, while it runs), user
with a password from standard input, TOTP bound (QR code read back with ``zbarimg``, the
confirming code from ``oathtool``), a code accepted once and refused the second time,
then lock-out and reset, the lost-device path, and the metrics the calls leave behind.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime

import pytest
from e2e_daemon import Running, StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import AuthenticatorApp, mfactl_argv, run

from peer_tools import need_tool
from mfad_client import ClientInfo, Method, SignInOutcome, Unauthenticated, VerifyOutcome

pytestmark = pytest.mark.slow  # real mfad serve subprocesses
PASSWORD = "correct horse battery staple"


async def oathtool(secret: str, step: int) -> str:
    at = datetime.fromtimestamp(step * 30, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    result = await run(["oathtool", "--totp", "-b", secret, "-N", at], env={"PATH": "/usr/bin:/bin"})
    assert result.code == 0, result
    return result.out.strip()


async def zbarimg(path: str) -> str:
    result = await run(["zbarimg", "--quiet", "--raw", path], env={"PATH": "/usr/bin:/bin"})
    assert result.code == 0, result
    return result.out.strip()


async def test_readme_walkthrough(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon(tokens={})
    made = await mfad.mfad("token", "create", "ops", "--role", "admin")
    assert made.code == 0, made
    mfad.tokens["ops"] = made.out.strip()
    assert mfad.tokens["ops"].startswith("mfad_") and "shown once" in made.err

    created = await mfad.mfactl("user", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.code == 0 and "user:       alice" in created.out, created
    png, svg = mfad.workdir / "alice.png", mfad.workdir / "alice.svg"
    svg.write_text("an older file, world-readable")
    svg.chmod(0o644)
    bound = await mfad.mfactl("--json", "totp", "bind", "alice", "--qr-png", str(png), "--qr-svg", str(svg))
    assert bound.code == 0, bound
    binding = bound.json()
    assert binding["otpauth_uri"] == f"otpauth://totp/mfad:alice?secret={binding['secret_base32']}&issuer=mfad"
    need_tool("zbarimg", "zbar-tools")
    assert await zbarimg(str(png)) == binding["otpauth_uri"]
    assert svg.read_text().startswith("<svg")
    assert [oct(f.stat().st_mode & 0o777) for f in (png, svg)] == ["0o600", "0o600"], "a QR code is the secret"

    app = AuthenticatorApp(binding["secret_base32"])
    code = await app.next_code()
    need_tool("oathtool", "oathtool")
    assert await oathtool(binding["secret_base32"], app.last_step) == code
    confirmed = await mfad.mfactl("totp", "confirm", "alice", binding["device_id"], code)
    assert confirmed.code == 0 and "confirmed" in confirmed.out, confirmed

    code = await app.next_code()
    first = await mfad.mfactl("verify", "alice", code)
    assert (first.code, first.out.strip()) == (0, "accepted"), first
    again = await mfad.mfactl("verify", "alice", code)
    assert (again.code, again.out.strip()) == (1, "refused"), again

    tail = await mfad.mfactl("--json", "audit", "tail", "--user", "alice", "-n", "3")
    assert tail.code == 0, tail
    assert [(e["event"], e["outcome"], e["reason"]) for e in tail.json()["items"]][-2:] == [
        ("verify", "accepted", "accepted"), ("verify", "refused", "replay")]
    shown = await mfad.mfactl("--json", "user", "show", "alice")
    details = shown.json()
    assert [d["method"] for d in details["devices"]["devices"]] == ["totp"]
    assert details["devices"]["lockout_risk"] is True

    status, metrics = mfad.daemon.http("/metrics")
    assert status == 200
    assert 'mfad_grpc_requests_total{code="OK",method="mfad.v1.Authentication/VerifyCode"} 2.0' in metrics
    assert re.search(r'mfad_verifications_total\{method="totp",protocol="grpc",result="accepted"\} [1-9]', metrics)
    assert await mfad.daemon.stop() == 0
    assert "grpc stopped" in mfad.daemon.log()


async def test_lockout_is_shown_and_reset_by_an_administrator(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    admin = mfad.client("ops").admin
    await admin.create_user("bob", PASSWORD)
    app = AuthenticatorApp((await admin.bind_totp("bob")).secret_base32)
    device, _ = await admin.confirm_totp("bob", (await admin.list_devices("bob")).devices[0].id,
                                         await app.next_code())
    gateway = mfad.client("gw").auth
    for wrong in app.wrong_codes()[:10]:
        assert await gateway.verify_code("bob", wrong) is VerifyOutcome.REFUSED
    valid = await app.next_code()
    assert await gateway.verify_code("bob", valid) is VerifyOutcome.REFUSED  # locked: the same refusal

    shown = await mfad.mfactl("--json", "lockout", "show", "bob")
    lock = shown.json()
    assert lock["locked"] is True and lock["lockouts"] == 1 and lock["locked_until"], shown
    reset = await mfad.mfactl("lockout", "reset", "bob")
    assert reset.code == 0 and "not locked" in reset.out, reset
    assert await gateway.verify_code("bob", valid) is VerifyOutcome.ACCEPTED  # not consumed while locked
    reasons = [e.reason for e in (await admin.query_audit(username="bob", event="verify")).events]
    assert reasons[:2] == ["accepted", "locked"]
    assert await mfad.daemon.stop() == 0


async def test_an_administrator_unbinds_a_lost_device(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    admin = mfad.client("ops").admin
    await admin.create_user("carol", PASSWORD)
    provisioning = await admin.bind_totp("carol", "old phone")
    app = AuthenticatorApp(provisioning.secret_base32)
    await admin.confirm_totp("carol", provisioning.device_id, await app.next_code())

    portal = mfad.client("portal")
    begun = await portal.auth.begin_sign_in("carol", PASSWORD, client=ClientInfo(ip="192.0.2.7"))
    done = await portal.auth.complete_challenge(begun.challenge_id, Method.TOTP, code=await app.next_code())
    assert done.outcome is SignInOutcome.ALLOWED and done.session is not None

    unbound = await mfad.mfactl("device", "unbind", "carol", provisioning.device_id, "--reason", "lost phone")
    assert unbound.code == 0 and "no devices" in unbound.out, unbound
    try:
        await portal.enrollment.list_devices(done.session.token)
        raise AssertionError("the session outlived the lost device")
    except Unauthenticated:
        pass
    again = await portal.auth.begin_sign_in("carol", PASSWORD)
    assert again.outcome is SignInOutcome.ENROLMENT_REQUIRED
    assert await gateway_refuses(mfad, "carol", app)
    events = (await admin.query_audit(username="carol", event="device_unbound")).events
    assert [(e.actor, e.reason) for e in events] == [("ops", "lost phone")]
    assert await mfad.daemon.stop() == 0


async def gateway_refuses(mfad: Running, username: str, app: AuthenticatorApp) -> bool:
    code = await app.next_code()
    return await mfad.client("gw").auth.verify_code(username, code) is VerifyOutcome.REFUSED


async def test_audit_tail_follows_new_events(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    proc = await asyncio.create_subprocess_exec(
        *mfactl_argv(), "--json", "audit", "tail", "-f", "-n", "1", "--interval", "0.2",
        env=mfad.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 15)  # the newest event so far
        await mfad.client("ops").admin.create_user("dora")
        deadline = time.monotonic() + 15
        seen = []
        while time.monotonic() < deadline and "user_created" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 15)
            seen.append(json.loads(line)["event"])
        assert "user_created" in seen
    finally:
        proc.terminate()
        await proc.wait()
    assert await mfad.daemon.stop() == 0


async def test_mfactl_user_delete_asks_for_yes_and_keeps_the_audit(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    await mfad.mfactl("user", "create", "Erin")
    refused = await mfad.mfactl("user", "delete", "erin")
    assert refused.code == 2 and "add --yes" in refused.err, refused
    deleted = await mfad.mfactl("--json", "user", "delete", "ERIN", "--yes", "--reason", "left")
    assert (deleted.code, deleted.json()) == (0, {"username": "ERIN", "devices_removed": 0}), deleted
    gone = await mfad.mfactl("user", "show", "erin")
    assert gone.code == 1 and "NOT_FOUND" in gone.err, gone
    tail = await mfad.mfactl("--json", "audit", "tail", "--event", "user_deleted")
    assert [(e["username"], e["reason"]) for e in tail.json()["items"]] == [("erin", "left")]
    assert await mfad.daemon.stop() == 0


async def test_mfactl_token_create_with_an_expiry(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    made = await mfad.mfactl("--json", "token", "create", "batch", "--role", "service", "--expires-in", "7")
    assert made.code == 0, made
    expires = datetime.fromisoformat(made.json()["caller_token"]["expires_at"])
    assert 6.99 < (expires - datetime.now(UTC)).total_seconds() / 86400 <= 7
    listing = await mfad.mfactl("token", "list")
    assert listing.out.splitlines()[0].split() == ["NAME", "ROLE", "CREATED", "EXPIRES", "STATE"], listing
    assert any(line.startswith("batch") and line.endswith("active") and "never" not in line
               for line in listing.out.splitlines())
    assert await mfad.daemon.stop() == 0


async def test_mfactl_lists_share_one_json_shape_and_page(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    for name in ("ann", "bob", "cat"):
        await mfad.client("ops").admin.create_user(name)
    first = await mfad.mfactl("--json", "user", "list", "--limit", "2")
    assert [u["username"] for u in first.json()["items"]] == ["ann", "bob"] and first.json()["next_page_token"]
    rest = await mfad.mfactl("--json", "user", "list", "--page-token", first.json()["next_page_token"])
    assert ([u["username"] for u in rest.json()["items"]], rest.json()["next_page_token"]) == (["cat"], "")
    for argv in (["token", "list"], ["remembered", "list", "ann"], ["device", "list", "ann"],
                 ["passkey", "list", "ann"], ["audit", "tail", "-n", "2"]):
        listed = await mfad.mfactl("--json", *argv)
        assert listed.code == 0 and isinstance(listed.json()["items"], list), listed
        assert isinstance(listed.json()["next_page_token"], str), listed
    older = await mfad.mfactl("--json", "audit", "tail", "-n", "2")
    before = await mfad.mfactl("--json", "audit", "tail", "-n", "2", "--page-token", older.json()["next_page_token"])
    assert max(int(e["id"]) for e in before.json()["items"]) < min(int(e["id"]) for e in older.json()["items"])
    assert await mfad.daemon.stop() == 0
