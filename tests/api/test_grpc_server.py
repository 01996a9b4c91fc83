"""The server shell: health, reflection, limits, binding rules, graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_doubles import SERVICE_TOKEN, StartServer, always_ready, bearer
from grpc_doubles import VALID_CODE, Observed, TokenTable
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from loopback import free_port

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import GrpcServer, GrpcServerSettings, ListenError, ServiceBinding
from mfad.api.auth import AUTHENTICATION_SERVICE
from mfad.core.errors import ConfigError

TIMEOUT = 5.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Switch:
    """A readiness callback the test flips; ``hang`` makes it never answer."""

    def __init__(self) -> None:
        self.ready = True
        self.hang = False
        self.fail = False

    async def __call__(self) -> bool:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            raise ConnectionRefusedError("store down")
        return self.ready


async def health_status(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its type stubs declare no methods
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    status: int = reply.status
    return status


async def test_health_follows_readiness_without_credentials(start_server: StartServer) -> None:
    switch = Switch()
    server = await start_server(readiness=switch, readiness_timeout=0.2)
    address = server.addresses[0]
    assert await health_status(address) == NOT_SERVING  # not checked yet: fail safe
    assert await server.check_readiness() is True
    assert await health_status(address) == SERVING
    assert await health_status(address, "mfad.v1.Authentication") == SERVING
    switch.ready = False
    assert await server.check_readiness() is False
    assert await health_status(address) == NOT_SERVING
    assert await health_status(address, "mfad.v1.Admin") == NOT_SERVING
    switch.ready, switch.fail = True, True
    assert await server.check_readiness() is False
    assert await health_status(address) == NOT_SERVING
    switch.fail, switch.hang = False, True
    started = time.monotonic()
    assert await server.check_readiness() is False  # bounded by readiness_timeout
    assert time.monotonic() - started < 2.0
    switch.hang = False
    assert await server.check_readiness() is True
    assert await health_status(address) == SERVING


async def test_run_publishes_health_and_returns_after_aclose(
    observed: Observed, tokens: TokenTable
) -> None:
    server = GrpcServer(
        GrpcServerSettings(listen=("127.0.0.1:0",), health_interval=0.05, shutdown_grace=1.0),
        services=[],
        authenticator=tokens,
        readiness=always_ready,
    )
    await server.start()
    runner = asyncio.create_task(server.run())
    try:
        for _ in range(100):
            if server.addresses:
                try:
                    if await health_status(server.addresses[0]) == SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
            await asyncio.sleep(0.02)
        assert await health_status(server.addresses[0]) == SERVING
    finally:
        await server.aclose()
    async with asyncio.timeout(5):
        await runner  # returns by itself once closed


async def reflection_list(address: str) -> list[str]:
    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async with grpc.aio.insecure_channel(address) as channel:
        # The type stubs know only sync channels; grpc.aio channels work at runtime.
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
        async for reply in stub.ServerReflectionInfo(requests(), timeout=TIMEOUT):
            return [s.name for s in reply.list_services_response.service]
    raise AssertionError("no reflection answer")


async def test_reflection_lists_the_services_without_credentials(start_server: StartServer) -> None:
    server = await start_server()
    names = await reflection_list(server.addresses[0])
    assert {"mfad.v1.Authentication", "mfad.v1.Enrollment", "mfad.v1.Admin", "grpc.health.v1.Health"} <= set(names)


async def test_oversize_request_is_resource_exhausted(start_server: StartServer, observed: Observed) -> None:
    server = await start_server(max_receive_message_bytes=64 * 1024)
    big = pb.VerifyCodeRequest(username="alice", code="1" * (65 * 1024))
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        stub = pb_grpc.AuthenticationStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.VerifyCode(big, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert observed.callers == []
        # The server stays up and answers the next (normal) call.
        ok = await stub.VerifyCode(
            pb.VerifyCodeRequest(username="alice", code=VALID_CODE), metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
        )
    assert ok.outcome == pb.VERIFY_OUTCOME_ACCEPTED


async def test_second_server_on_the_same_port_fails_to_bind(start_server: StartServer) -> None:
    first = await start_server()
    with pytest.raises(ListenError):
        await start_server(listen=(first.addresses[0],))
    assert await health_status(first.addresses[0]) == NOT_SERVING  # the first still answers


async def test_port_held_by_another_socket_fails_to_bind(start_server: StartServer) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ListenError):
            await start_server(listen=(f"127.0.0.1:{port}",))


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "192.0.2.1:50051", "mfad.example.org:50051"])
def test_without_tls_only_loopback(address: str, tokens: TokenTable) -> None:
    with pytest.raises(ConfigError) as err:
        GrpcServer(
            GrpcServerSettings(listen=(address,)), services=[], authenticator=tokens, readiness=always_ready
        )
    assert "loopback" in str(err.value) and address in str(err.value)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0", "localhost:0", "127.0.0.2:0"])
def test_loopback_addresses_are_accepted_without_tls(address: str, tokens: TokenTable) -> None:
    GrpcServer(GrpcServerSettings(listen=(address,)), services=[], authenticator=tokens, readiness=always_ready)


@pytest.mark.parametrize("address", ["50051", "127.0.0.1", "127.0.0.1:port", "127.0.0.1:70000", ":50051"])
def test_malformed_addresses_are_config_errors(address: str, tokens: TokenTable) -> None:
    with pytest.raises(ConfigError) as err:
        GrpcServer(GrpcServerSettings(listen=(address,)), services=[], authenticator=tokens, readiness=always_ready)
    assert "grpc.listen" in str(err.value)


def test_settings_report_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        GrpcServerSettings(listen=(), client_ca=Path("/ca.pem"), shutdown_grace=0)
    problems = err.value.problems
    assert any(p.startswith("grpc.listen") for p in problems)
    assert any(p.startswith("grpc.client_ca") for p in problems)
    assert any(p.startswith("grpc.shutdown_grace") for p in problems)


async def test_graceful_shutdown_lets_inflight_call_finish(
    start_server: StartServer, observed: Observed
) -> None:
    observed.slow_seconds = 0.5
    server = await start_server(shutdown_grace=5.0)
    address = server.addresses[0]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AuthenticationStub(channel)
        slow = asyncio.ensure_future(
            stub.VerifyCode(
                pb.VerifyCodeRequest(username="slow", code=VALID_CODE), metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
            )
        )
        await asyncio.wait_for(observed.slow_entered.wait(), TIMEOUT)
        started = time.monotonic()
        closing = asyncio.create_task(server.aclose())
        await asyncio.sleep(0.1)
        # No new calls once shutdown began.
        async with grpc.aio.insecure_channel(address) as fresh:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.AuthenticationStub(fresh).VerifyCode(
                    pb.VerifyCodeRequest(username="alice", code=VALID_CODE),
                    metadata=bearer(SERVICE_TOKEN),
                    timeout=1.0,
                )
            assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        reply = await slow  # the in-flight call completes normally
        assert reply.outcome == pb.VERIFY_OUTCOME_ACCEPTED
        await asyncio.wait_for(closing, TIMEOUT)
    assert time.monotonic() - started < 4.0  # returned once drained, not after the whole grace


async def test_shutdown_cancels_calls_that_outlast_the_grace(
    start_server: StartServer, observed: Observed
) -> None:
    observed.slow_seconds = 30.0
    server = await start_server(shutdown_grace=0.3)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        slow = pb_grpc.AuthenticationStub(channel).VerifyCode(
            pb.VerifyCodeRequest(username="slow", code=VALID_CODE), metadata=bearer(SERVICE_TOKEN), timeout=10.0
        )
        slow_task = asyncio.ensure_future(slow)
        await asyncio.wait_for(observed.slow_entered.wait(), TIMEOUT)
        started = time.monotonic()
        await server.aclose()
        assert time.monotonic() - started < 3.0
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await slow_task
    assert err.value.code() in {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}


async def test_aclose_is_idempotent_and_safe_before_start(tokens: TokenTable) -> None:
    server = GrpcServer(GrpcServerSettings(listen=("127.0.0.1:0",)), services=[], authenticator=tokens, readiness=always_ready)
    await server.aclose()
    await server.aclose()


async def test_failed_bind_releases_the_addresses_already_bound(start_server: StartServer) -> None:
    first = await start_server()
    port = free_port()
    with pytest.raises(ListenError):
        await start_server(listen=(f"127.0.0.1:{port}", first.addresses[0]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again: nothing half-started holds it


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback on this host")
async def test_ipv6_loopback_serves(start_server: StartServer) -> None:
    server = await start_server(listen=("[::1]:0",))
    (address,) = server.addresses
    assert address.startswith("[::1]:")
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.AuthenticationStub(channel).VerifyCode(
            pb.VerifyCodeRequest(username="alice", code=VALID_CODE), metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
        )
    assert reply.outcome == pb.VERIFY_OUTCOME_ACCEPTED


async def test_start_says_it_is_loopback_only_without_tls(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mfad")
    server = await start_server()
    assert any(
        server.addresses[0] in r.getMessage() and "loopback only" in r.getMessage() for r in caplog.records
    )


async def test_no_start_after_aclose(tokens: TokenTable) -> None:
    server = GrpcServer(GrpcServerSettings(listen=("127.0.0.1:0",)), services=[], authenticator=tokens, readiness=always_ready)
    await server.aclose()
    with pytest.raises(RuntimeError):
        await server.run()
    assert server.addresses == ()


async def test_handlers_a_service_adds_by_either_way_are_guarded(tokens: TokenTable) -> None:
    """A service sees only a registry that guards what it adds: a generic handler alone is
    guarded too, and nothing but adding handlers can be done with it."""
    seen: list[str] = []

    async def verify(request: pb.VerifyCodeRequest, context: object) -> pb.VerifyCodeResponse:
        seen.append(request.username)
        return pb.VerifyCodeResponse(outcome=pb.VERIFY_OUTCOME_ACCEPTED)

    handler = grpc.unary_unary_rpc_method_handler(verify, pb.VerifyCodeRequest.FromString,
                                                  pb.VerifyCodeResponse.SerializeToString)
    generic_only = ServiceBinding(AUTHENTICATION_SERVICE, lambda s: s.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(AUTHENTICATION_SERVICE, {"VerifyCode": handler}),)))
    server = GrpcServer(GrpcServerSettings(listen=("127.0.0.1:0",), shutdown_grace=1.0), services=[generic_only],
                        authenticator=tokens, readiness=always_ready)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
            stub = pb_grpc.AuthenticationStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.VerifyCode(pb.VerifyCodeRequest(username="alice"), timeout=TIMEOUT)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert seen == []
            reply = await stub.VerifyCode(pb.VerifyCodeRequest(username="bob"), metadata=bearer(SERVICE_TOKEN),
                                          timeout=TIMEOUT)
        assert reply.outcome == pb.VERIFY_OUTCOME_ACCEPTED and seen == ["bob"]
    finally:
        await server.aclose()

    def bind_a_port(s: grpc.aio.Server) -> None:
        s.add_insecure_port("127.0.0.1:0")

    binds = ServiceBinding(AUTHENTICATION_SERVICE, bind_a_port)
    other = GrpcServer(GrpcServerSettings(listen=("127.0.0.1:0",)), services=[binds], authenticator=tokens,
                       readiness=always_ready)
    with pytest.raises(AttributeError):
        await other.start()
    await other.aclose()
