"""The daemon's gRPC front end from outside: callers and roles, TLS and mTLS with certificates
made here, health, bad input, graceful shutdown with a call in flight, and ``mfactl``'s
exit codes and answers when a server does not offer a call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
from e2e_daemon import StartDaemon, mfad_daemon  # noqa: F401
from e2e_support import child_env, free_port, health, mfactl_argv, run
from tls_ca import TestCA
from grpc_health.v1 import health_pb2

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad_client import SignInOutcome, TlsFiles, Unavailable

# Transport behaviour: the store engine does not matter here.
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["sqlite"])]

SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_callers_need_a_valid_token_and_the_right_role(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    assert await health(mfad.address) == SERVING  # health needs no credentials
    for token in (None, "mfad_not-a-real-token", "garbage with spaces"):
        result = await mfad.mfactl("policy", "get", token=token)
        assert result.code == 2 and "UNAUTHENTICATED" in result.err, result
    denied = await mfad.mfactl("user", "list", token="gw")
    assert denied.code == 1 and "PERMISSION_DENIED" in denied.err, denied
    denied = await mfad.mfactl("--json", "user", "list", token="portal")
    assert denied.code == 1 and '"code": "PERMISSION_DENIED"' in denied.err, denied
    verified = await mfad.mfactl("verify", "nobody", "123456", token="gw")  # service callers may verify
    assert (verified.code, verified.out.strip()) == (1, "refused"), verified
    revoked = await mfad.mfactl("token", "revoke", "gw")
    assert revoked.code == 0, revoked
    after = await mfad.mfactl("verify", "nobody", "123456", token="gw")
    assert after.code == 2 and "UNAUTHENTICATED" in after.err, after
    listed = await mfad.mfactl("--json", "token", "list", "--all")
    assert listed.json()["next_page_token"] == ""
    assert {(t["name"], t["revoked"]) for t in listed.json()["items"]} == {("ops", False), ("gw", True), ("portal", False)}
    assert await mfad.daemon.stop() == 0


async def test_tls_and_client_certificates(mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    ca = TestCA(tmp_path, "mfad e2e CA")
    server_cert, server_key = ca.issue("mfad-server", server=True)
    admin_cert, admin_key = ca.issue("ops-laptop", server=False)
    stranger_cert, stranger_key = ca.issue("stranger", server=False)
    other_ca = TestCA(tmp_path, "other CA")
    forged_cert, forged_key = other_ca.issue("ops-laptop-forged", server=False)

    mfad = await mfad_daemon(sections={"grpc": {
        "tls_cert": str(server_cert), "tls_key": str(server_key), "client_ca": str(ca.cert_path),
        "client_roles": {"ops-laptop": "admin"}}})
    assert "(TLS with client certificates)" in mfad.daemon.log()
    tls = ["--tls-ca", str(ca.cert_path)]

    by_cert = await mfad.mfactl(*tls, "--tls-cert", str(admin_cert), "--tls-key", str(admin_key), "policy", "get",
                                token=None)
    assert by_cert.code == 0 and "mfa_required" in by_cert.out, by_cert
    unmapped = await mfad.mfactl(*tls, "--tls-cert", str(stranger_cert), "--tls-key", str(stranger_key),
                                 "policy", "get", token=None)
    assert unmapped.code == 2 and "UNAUTHENTICATED" in unmapped.err, unmapped
    # A bearer token decides alone, beside any valid client certificate.
    with_token = await mfad.mfactl(*tls, "--tls-cert", str(stranger_cert), "--tls-key", str(stranger_key),
                                   "policy", "get", token="ops")
    assert with_token.code == 0, with_token
    for extra in ([], ["--tls-cert", str(forged_cert), "--tls-key", str(forged_key)]):
        refused = await mfad.mfactl(*tls, *extra, "policy", "get", token="ops")  # no trusted client certificate
        assert refused.code == 1 and "UNAVAILABLE" in refused.err, refused
    plaintext = await mfad.mfactl("policy", "get", token="ops")
    assert plaintext.code == 1, plaintext
    env_tls = await mfad.mfactl("policy", "get", token=None, env={
        "MFAD_TLS_CA": str(ca.cert_path), "MFAD_TLS_CERT": str(admin_cert), "MFAD_TLS_KEY": str(admin_key)})
    assert env_tls.code == 0, env_tls
    missing = await mfad.mfactl("--tls-ca", str(tmp_path / "nope.pem"), "policy", "get")
    assert missing.code == 2 and "no such file" in missing.err, missing

    async with mfad.client(None, tls=TlsFiles(ca=ca.cert_path, cert=admin_cert, key=admin_key)) as client:
        assert (await client.admin.get_policy()).remember_days == 7
    assert await mfad.daemon.stop() == 0


async def test_server_only_tls_may_listen_beyond_loopback(mfad_daemon: StartDaemon, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    cert, key = ca.issue("mfad-server", server=True)
    port = free_port()
    mfad = await mfad_daemon(sections={"grpc": {"tls_cert": str(cert), "tls_key": str(key),
                                                "listen": [f"0.0.0.0:{port}"]}})
    mfad.daemon.grpc_port = port
    assert f"0.0.0.0:{port} (TLS)" in mfad.daemon.log()
    ok = await mfad.mfactl("--tls-ca", str(ca.cert_path), "--json", "policy", "get")
    assert ok.code == 0 and ok.json()["mfa_required"] == "all", ok
    assert await health(mfad.address, grpc.ssl_channel_credentials(ca.cert_path.read_bytes())) == SERVING
    assert await mfad.daemon.stop() == 0


async def test_without_tls_the_daemon_refuses_a_public_address(mfad_daemon: StartDaemon) -> None:
    with pytest.raises(RuntimeError, match="not a loopback address") as failed:
        await mfad_daemon(sections={"grpc": {"listen": [f"0.0.0.0:{free_port()}"]}})
    assert "exited with 2" in str(failed.value)


async def test_bad_input_is_refused_and_nothing_is_written(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    await mfad.client("ops").admin.create_user("alice", "pw-0123456789")
    before = await mfad.counts()
    metadata = (("authorization", f"Bearer {mfad.tokens['ops']}"),)
    async with grpc.aio.insecure_channel(mfad.address) as channel:
        raw = channel.unary_unary("/mfad.v1.Authentication/VerifyCode", request_serializer=lambda b: b,
                                  response_deserializer=pb.VerifyCodeResponse.FromString)
        cases = {
            "empty username": pb.VerifyCodeRequest(code="123456").SerializeToString(),
            "over-long username": pb.VerifyCodeRequest(username="a" * 65, code="123456").SerializeToString(),
            "control character": pb.VerifyCodeRequest(username="al\x00ice", code="123456").SerializeToString(),
            "invalid UTF-8": b"\x0a\x05al\xffce\x12\x06123456",
            "unknown method": pb.VerifyCodeRequest(username="alice", code="123456", method=42).SerializeToString(),
            "full-width digits": pb.VerifyCodeRequest(username="alice", code="１２３４５６").SerializeToString(),
            "bad client ip": pb.VerifyCodeRequest(username="alice", code="123456",
                                                  client=pb.ClientInfo(ip="not-an-ip")).SerializeToString(),
        }
        for what, body in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await raw(body, metadata=metadata, timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, what
        with pytest.raises(grpc.aio.AioRpcError) as huge:
            await raw(pb.VerifyCodeRequest(username="a" * 200_000).SerializeToString(), metadata=metadata, timeout=5)
        assert huge.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await mfad.counts() == before
    assert await health(mfad.address) == SERVING
    assert mfad.daemon.proc is not None and mfad.daemon.proc.poll() is None
    assert await mfad.daemon.stop() == 0


async def test_sigterm_lets_the_call_in_flight_finish_then_exits_0(mfad_daemon: StartDaemon) -> None:
    # A slow first factor (argon2id at a realistic cost) is the call in flight.
    mfad = await mfad_daemon(sections={"passwords": {"time_cost": 3, "memory_kib": 262144, "parallelism": 1}})
    portal = mfad.client("portal")
    await portal.auth.verify_code("nobody", "123456")  # the connection is up before the slow call
    in_flight = asyncio.create_task(portal.auth.begin_sign_in("nobody", "a password"))
    await asyncio.sleep(0.3)
    assert not in_flight.done()
    mfad.daemon.terminate()
    answer = await in_flight
    assert answer.outcome is SignInOutcome.REFUSED  # answered, not cut off
    code = await mfad.daemon.stop()
    assert code == 0, mfad.daemon.log()
    log = mfad.daemon.log()
    assert "grpc shutting down" in log and "mfad stopped" in log
    with pytest.raises(Unavailable):
        await mfad.client("portal").auth.begin_sign_in("nobody", "a password")


async def test_mfactl_answers_cleanly_when_the_server_does_not_offer_a_call(mfad_daemon: StartDaemon) -> None:
    mfad = await mfad_daemon()
    listed = await mfad.mfactl("passkey", "list", "nobody")
    assert listed.code == 1 and "NOT_FOUND" in listed.err, listed
    # A server that serves nothing of mfad.v1: every call is UNIMPLEMENTED.
    bare = grpc.aio.server()
    port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    try:
        env = child_env({"MFAD_ADDR": f"127.0.0.1:{port}", "MFAD_TOKEN": "mfad_x"})
        for args in (["email", "bind", "alice", "alice@example.com"], ["email", "confirm", "alice", "1", "123456"]):
            result = await run([*mfactl_argv(), *args], env=env)
            assert result.code == 1 and "does not offer it yet" in result.err and "Traceback" not in result.err, result
        as_json = await run([*mfactl_argv(), "--json", "passkey", "list", "alice"], env=env)
        assert as_json.code == 1 and '"code": "UNIMPLEMENTED"' in as_json.err, as_json
    finally:
        await bare.stop(None)
    down = await run([*mfactl_argv(), "--timeout", "2", "policy", "get"],
                     env=child_env({"MFAD_ADDR": f"127.0.0.1:{free_port()}", "MFAD_TOKEN": "mfad_x"}))
    assert down.code == 1 and "UNAVAILABLE" in down.err, down
    usage = await run([*mfactl_argv(), "user", "create"], env=child_env())
    assert usage.code == 2, usage
    assert await mfad.daemon.stop() == 0
