"""TLS and mTLS with certificates made here: binding, client certificates, CN -> role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_doubles import ADMIN_TOKEN, SERVICE_TOKEN, SESSION, StartServer, bearer
from grpc_doubles import VALID_CODE, CertificateAuthority, Observed, Pem

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api.auth import CredentialKind
from mfad.core.errors import ConfigError
from mfad.core.model import Role

TIMEOUT = 5.0
VERIFY = pb.VerifyCodeRequest(username="alice", code=VALID_CODE)
SESSION_MD = (("x-mfad-session", SESSION),)


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    ca_file: Path
    server_cert: Path
    server_key: Path

    def client(self, cn: str, ca: CertificateAuthority | None = None) -> Pem:
        return (ca or self.ca).issue(cn, server=False)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority()
    ca_file = tmp_path / "clients-ca.pem"
    ca_file.write_bytes(ca.pem)
    cert, key = ca.issue("mfad.test", server=True).write(tmp_path, "server")
    return Pki(ca, ca_file, cert, key)


def tls_channel(address: str, pki: Pki, client: Pem | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.pem,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.aio.secure_channel(address, credentials)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def test_tls_binds_any_address_and_serves(start_server: StartServer, pki: Pki) -> None:
    server = await start_server(listen=("0.0.0.0:0",), tls_cert=pki.server_cert, tls_key=pki.server_key)
    address = f"127.0.0.1:{port_of(server.addresses[0])}"
    async with tls_channel(address, pki) as channel:
        reply = await pb_grpc.AuthenticationStub(channel).VerifyCode(
            VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
        )
    assert reply.outcome == pb.VERIFY_OUTCOME_ACCEPTED


async def test_tls_server_refuses_plaintext_clients(start_server: StartServer, pki: Pki) -> None:
    server = await start_server(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AuthenticationStub(channel).VerifyCode(
                VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_tls_without_token_is_unauthenticated(start_server: StartServer, pki: Pki) -> None:
    server = await start_server(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with tls_channel(server.addresses[0], pki) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AuthenticationStub(channel).VerifyCode(VERIFY, timeout=TIMEOUT)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def mtls_server(start_server: StartServer, pki: Pki) -> str:
    server = await start_server(
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        client_ca=pki.ca_file,
        client_roles={"portal.internal": Role.PORTAL, "ops.internal": Role.ADMIN},
    )
    return server.addresses[0]


async def test_mtls_rejects_a_client_without_certificate(start_server: StartServer, pki: Pki) -> None:
    address = await mtls_server(start_server, pki)
    async with tls_channel(address, pki) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            # Even with a valid token: the handshake itself needs a certificate.
            await pb_grpc.AuthenticationStub(channel).VerifyCode(
                VERIFY, metadata=bearer(SERVICE_TOKEN), timeout=TIMEOUT
            )
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def verify_code_refusal(address: str, pki: Pki, client: Pem) -> grpc.StatusCode:
    """The status VerifyCode fails with (no token sent) over TLS with ``client``'s certificate."""
    async with tls_channel(address, pki, client) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AuthenticationStub(channel).VerifyCode(VERIFY, timeout=TIMEOUT)
    return err.value.code()


async def test_mtls_rejects_a_certificate_from_another_ca(start_server: StartServer, pki: Pki) -> None:
    address = await mtls_server(start_server, pki)
    rogue = pki.client("portal.internal", ca=CertificateAuthority("rogue CA"))
    assert await verify_code_refusal(address, pki, rogue) is grpc.StatusCode.UNAVAILABLE


async def test_mtls_certificate_cn_maps_to_its_role(
    start_server: StartServer, pki: Pki, observed: Observed
) -> None:
    address = await mtls_server(start_server, pki)
    async with tls_channel(address, pki, pki.client("portal.internal")) as channel:
        reply = await pb_grpc.EnrollmentStub(channel).ListDevices(
            pb.ListDevicesRequest(), metadata=SESSION_MD, timeout=TIMEOUT
        )
        assert reply.devices.lockout_risk is True
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.AdminStub(channel).GetPolicy(pb.GetPolicyRequest(), timeout=TIMEOUT)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert [(c.name, c.role, c.via) for c in observed.callers] == [
        ("portal.internal", Role.PORTAL, CredentialKind.CERTIFICATE)
    ]


async def test_mtls_admin_certificate_reaches_admin(start_server: StartServer, pki: Pki) -> None:
    address = await mtls_server(start_server, pki)
    async with tls_channel(address, pki, pki.client("ops.internal")) as channel:
        reply = await pb_grpc.AdminStub(channel).GetPolicy(pb.GetPolicyRequest(), timeout=TIMEOUT)
    assert reply.policy.remember_days == 7


async def test_mtls_unmapped_cn_is_unauthenticated(start_server: StartServer, pki: Pki) -> None:
    address = await mtls_server(start_server, pki)
    assert await verify_code_refusal(address, pki, pki.client("stranger.internal")) is grpc.StatusCode.UNAUTHENTICATED


async def test_mtls_a_sent_token_decides_over_the_certificate(
    start_server: StartServer, pki: Pki, observed: Observed
) -> None:
    address = await mtls_server(start_server, pki)
    async with tls_channel(address, pki, pki.client("portal.internal")) as channel:
        admin = pb_grpc.AdminStub(channel)
        await admin.GetPolicy(pb.GetPolicyRequest(), metadata=bearer(ADMIN_TOKEN), timeout=TIMEOUT)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            # A bad token is not rescued by a good certificate.
            await admin.GetPolicy(pb.GetPolicyRequest(), metadata=bearer("wrong"), timeout=TIMEOUT)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert [(c.name, c.via) for c in observed.callers] == [("ops", CredentialKind.TOKEN)]


async def test_certificate_roles_are_ignored_without_client_ca(
    start_server: StartServer, pki: Pki
) -> None:
    # Without a client CA no certificate is verified, so none may name a caller.
    with pytest.raises(ConfigError) as err:
        await start_server(
            tls_cert=pki.server_cert, tls_key=pki.server_key, client_roles={"ops.internal": Role.ADMIN}
        )
    assert "grpc.client_roles" in str(err.value)


async def test_unreadable_tls_file_is_a_config_error(start_server: StartServer, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        await start_server(tls_cert=tmp_path / "missing.crt", tls_key=pki.server_key)
    assert "missing.crt" in str(err.value)
