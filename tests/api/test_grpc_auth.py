"""The interceptor: caller authentication, the role table, sessions, error mapping, metrics."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_doubles import ADMIN_TOKEN, PORTAL_TOKEN, SERVICE_TOKEN, SESSION, StartServer, bearer
from grpc_doubles import VALID_CODE, Observed, TokenTable
from prometheus_client import CollectorRegistry

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import PrometheusGrpcMetrics
from mfad.api.auth import CredentialKind
from mfad.core.model import Role

VERIFY = pb.VerifyCodeRequest(username="alice", code=VALID_CODE)
TIMEOUT = 5.0


async def status_of(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        bearer("no-such-token"),
        (("authorization", "Basic " + SERVICE_TOKEN),),
        (("authorization", SERVICE_TOKEN),),
        (("authorization", "Bearer "),),
        (("authorization", "Bearer " + "x" * 300),),
        (("authorization", "Bearer two tokens"),),
    ],
    ids=["missing", "unknown", "basic", "no-scheme", "empty", "too-long", "two-words"],
)
async def test_bad_caller_credentials_are_unauthenticated(
    start_server: StartServer, observed: Observed, metadata: tuple[tuple[str, str], ...]
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        stub = pb_grpc.AuthenticationStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.VerifyCode(VERIFY, metadata=metadata, timeout=TIMEOUT)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "missing or invalid caller credentials"
    assert observed.callers == []  # no servicer code ran


async def test_two_authorization_values_are_refused(start_server: StartServer) -> None:
    server = await start_server()
    metadata = bearer(ADMIN_TOKEN) + bearer(SERVICE_TOKEN)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = pb_grpc.AuthenticationStub(channel).VerifyCode(VERIFY, metadata=metadata, timeout=TIMEOUT)
        assert await status_of(call) is grpc.StatusCode.UNAUTHENTICATED


async def test_service_token_verifies_and_servicer_sees_the_caller(
    start_server: StartServer, observed: Observed
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        stub = pb_grpc.AuthenticationStub(channel)
        reply = await stub.VerifyCode(VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT)
    assert reply.outcome == pb.VERIFY_OUTCOME_ACCEPTED
    assert [(c.name, c.role, c.via) for c in observed.callers] == [
        ("vpn-gw", Role.SERVICE, CredentialKind.TOKEN)
    ]


@pytest.mark.parametrize(
    ("token", "service", "expected"),
    [
        (SERVICE_TOKEN, "Authentication", grpc.StatusCode.OK),
        (SERVICE_TOKEN, "Enrollment", grpc.StatusCode.PERMISSION_DENIED),
        (SERVICE_TOKEN, "Admin", grpc.StatusCode.PERMISSION_DENIED),
        (PORTAL_TOKEN, "Authentication", grpc.StatusCode.OK),
        (PORTAL_TOKEN, "Enrollment", grpc.StatusCode.OK),
        # With a user session the servicer decides by that user's console role
        # (tests/api/test_grpc_console_roles.py); without one, see the next test.
        (PORTAL_TOKEN, "Admin", grpc.StatusCode.OK),
        (ADMIN_TOKEN, "Authentication", grpc.StatusCode.OK),
        (ADMIN_TOKEN, "Enrollment", grpc.StatusCode.OK),
        (ADMIN_TOKEN, "Admin", grpc.StatusCode.OK),
    ],
)
async def test_role_table(
    start_server: StartServer, token: str, service: str, expected: grpc.StatusCode
) -> None:
    server = await start_server()
    metadata = bearer(token) + (("x-mfad-session", SESSION),)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call: Awaitable[object]
        if service == "Authentication":
            call = pb_grpc.AuthenticationStub(channel).VerifyCode(VERIFY, metadata=metadata, timeout=TIMEOUT)
        elif service == "Enrollment":
            call = pb_grpc.EnrollmentStub(channel).ListDevices(
                pb.ListDevicesRequest(), metadata=metadata, timeout=TIMEOUT
            )
        else:
            call = pb_grpc.AdminStub(channel).GetPolicy(pb.GetPolicyRequest(), metadata=metadata, timeout=TIMEOUT)
        assert await status_of(call) is expected


@pytest.mark.parametrize(
    ("token", "said"),
    [
        (SERVICE_TOKEN, "mfad.v1.Admin"),  # a service may not call Admin at all
        (PORTAL_TOKEN, "only for a signed-in user"),  # the portal may, with a user session only
    ],
    ids=["service", "portal-without-session"],
)
async def test_calling_admin_without_the_right_is_denied_before_servicer(
    start_server: StartServer, observed: Observed, token: str, said: str
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AdminStub(channel).GetPolicy(
                pb.GetPolicyRequest(), metadata=bearer(token), timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert said in (err.value.details() or "")
    assert observed.callers == []


async def test_portal_enrollment_passes_with_session(start_server: StartServer, observed: Observed) -> None:
    server = await start_server()
    metadata = bearer(PORTAL_TOKEN) + (("x-mfad-session", SESSION),)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        reply = await pb_grpc.EnrollmentStub(channel).ListDevices(
            pb.ListDevicesRequest(), metadata=metadata, timeout=TIMEOUT
        )
    assert reply.devices.lockout_risk is True
    assert [c.name for c in observed.callers] == ["portal"]
    assert observed.sessions == [SESSION]  # handed to the servicer for the core to resolve


@pytest.mark.parametrize("session", [None, "", "two words", "x" * 300])
async def test_enrollment_needs_a_session(
    start_server: StartServer, observed: Observed, session: str | None
) -> None:
    server = await start_server()
    metadata = bearer(PORTAL_TOKEN)
    if session is not None:
        metadata += (("x-mfad-session", session),)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.EnrollmentStub(channel).ListDevices(
                pb.ListDevicesRequest(), metadata=metadata, timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "x-mfad-session" in (err.value.details() or "")
    assert observed.callers == []


async def test_declared_but_unimplemented_method_is_unimplemented(start_server: StartServer) -> None:
    server = await start_server()
    metadata = bearer(PORTAL_TOKEN) + (("x-mfad-session", SESSION),)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.EnrollmentStub(channel).BeginEmailBinding(
                pb.BeginEmailBindingRequest(address="a@example.com"), metadata=metadata, timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_unimplemented_method_still_needs_credentials(start_server: StartServer) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = pb_grpc.EnrollmentStub(channel).BeginEmailBinding(pb.BeginEmailBindingRequest(), timeout=TIMEOUT)
        assert await status_of(call) is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("username", "code", "details"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "username: must not contain spaces"),
        ("down", grpc.StatusCode.UNAVAILABLE, "service unavailable, try again later"),
        ("boom", grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
async def test_servicer_exceptions_map_through_the_table(
    start_server: StartServer, username: str, code: grpc.StatusCode, details: str
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AuthenticationStub(channel).VerifyCode(
                pb.VerifyCodeRequest(username=username, code=VALID_CODE),
                metadata=bearer(SERVICE_TOKEN),
                timeout=TIMEOUT,
            )
    assert err.value.code() is code
    assert err.value.details() == details  # no host names, no internals


async def test_slow_caller_check_fails_closed(start_server: StartServer, tokens: TokenTable) -> None:
    tokens.delay = 5.0
    server = await start_server(auth_timeout=0.2)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AuthenticationStub(channel).VerifyCode(
                VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_metrics_count_calls_by_method_and_code(start_server: StartServer) -> None:
    registry = CollectorRegistry()
    server = await start_server(metrics=PrometheusGrpcMetrics(registry))
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        auth = pb_grpc.AuthenticationStub(channel)
        await auth.VerifyCode(VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT)
        await auth.VerifyCode(VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT)
        assert await status_of(auth.VerifyCode(VERIFY, timeout=TIMEOUT)) is grpc.StatusCode.UNAUTHENTICATED
        admin = pb_grpc.AdminStub(channel).GetPolicy(
            pb.GetPolicyRequest(), metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
        )
        assert await status_of(admin) is grpc.StatusCode.PERMISSION_DENIED
        bogus: Any = channel.unary_unary("/mfad.v1.Nope/Nothing")
        assert await status_of(bogus(b"", timeout=TIMEOUT)) is grpc.StatusCode.UNIMPLEMENTED

    def count(method: str, code: str) -> float | None:
        return registry.get_sample_value("mfad_grpc_requests_total", {"method": method, "code": code})

    verify = "mfad.v1.Authentication/VerifyCode"
    assert count(verify, "OK") == 2
    assert count(verify, "UNAUTHENTICATED") == 1
    assert count("mfad.v1.Admin/GetPolicy", "PERMISSION_DENIED") == 1
    assert registry.get_sample_value("mfad_grpc_request_duration_seconds_count", {"method": verify}) == 3
    # A method nobody registered is not a label value.
    methods = {
        s.labels.get("method")
        for metric in registry.collect()
        for s in metric.samples
    }
    assert "mfad.v1.Nope/Nothing" not in methods


async def test_credentials_never_reach_the_log(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="mfad")
    server = await start_server()
    secret = "wrong-token-must-not-be-logged"
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        auth = pb_grpc.AuthenticationStub(channel)
        await status_of(auth.VerifyCode(VERIFY, metadata=bearer(secret), timeout=TIMEOUT))
        await status_of(auth.VerifyCode(VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT))
        await status_of(
            pb_grpc.AdminStub(channel).GetPolicy(pb.GetPolicyRequest(), metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT)
        )
    assert caplog.records, "the refusals should be logged"
    assert secret not in caplog.text and SERVICE_TOKEN not in caplog.text
