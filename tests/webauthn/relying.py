"""Helpers for the passkey and U2F tests (a module of its own: ``conftest`` is ambiguous
when every test folder has one).

:class:`Relying` is a relying party as the tests drive it: ``mfa`` (a started Mfa whose
``[webauthn]`` is ``rp_id = "example.com"``, origin ``https://login.example.com``, with
real Prometheus metrics in ``registry``) and helpers that call the core the way a
transport does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from grpc_front import RoleClients, start_grpc_front
from prometheus_client import CollectorRegistry
from signin_calls import begin
from softauthn import SoftAuthenticator, SoftCredential, dumps

from mfad.api.server import GrpcServer
from mfad.config import WebauthnSettings
from mfad.core.clock import FixedClock
from mfad.core.model import AuditRecord, Device, Method, User
from mfad.core.ports import AuditFilter, Store
from mfad.core.service import Mfa
from mfad.core.verification import Attempt, Outcome, VerifyResult

RP_ID = "example.com"
ORIGIN = "https://login.example.com"
PASSWORD = "correct horse battery staple"
APP_ID = "https://login.example.com/u2f/appid.json"
ATTEMPT = Attempt(protocol="grpc", source="192.0.2.10", client="portal")

#: The tables this feature writes, for "nothing stored" checks.
WEBAUTHN_TABLES = ("devices", "webauthn_credentials", "webauthn_ceremonies", "remembered")


@dataclass
class Relying:
    mfa: Mfa
    registry: CollectorRegistry
    store: Store
    clock: FixedClock

    async def user(self, username: str = "alice") -> User:
        return await self.mfa.users.create(username, PASSWORD)

    async def register(self, username: str, auth: SoftAuthenticator, *, name: str = "laptop",
                       origin: str = ORIGIN, **create: Any) -> Device:
        reg = await self.mfa.webauthn.begin_registration(username, name=name, actor="user")
        done = await self.mfa.webauthn.complete_registration(
            username, reg.registration_id, dumps(auth.create(reg.options_json, origin, **create)), actor="user")
        return done.device

    async def challenge(self, username: str) -> str:
        """A sign-in with the right password, up to the second factor: the challenge id."""
        result = await begin(self.mfa.signin, username, PASSWORD, ATTEMPT)
        assert result.outcome is Outcome.SECOND_FACTOR_REQUIRED, result
        assert result.challenge_id is not None
        return result.challenge_id

    async def options(self, challenge_id: str, method: Method = Method.PASSKEY) -> dict[str, Any]:
        text = (await self.mfa.signin.start_challenge(challenge_id, method, ATTEMPT)).shown
        assert text is not None
        return dict(json.loads(text))

    async def complete(self, challenge_id: str, assertion: dict[str, Any] | str,
                       method: Method = Method.PASSKEY, **kw: Any) -> VerifyResult:
        text = assertion if isinstance(assertion, str) else dumps(assertion)
        return await self.mfa.signin.complete(challenge_id, method, text, ATTEMPT, **kw)

    async def sign_in(self, username: str, auth: SoftAuthenticator, *, method: Method = Method.PASSKEY,
                      credential: SoftCredential | None = None, origin: str = ORIGIN, **get: Any) -> VerifyResult:
        cid = await self.challenge(username)
        options = await self.options(cid, method)
        return await self.complete(cid, auth.get(options, origin, credential=credential, **get), method)

    async def audit(self, event: str | None = None) -> list[AuditRecord]:
        return await self.mfa.audit(AuditFilter(event=event, limit=500))

    async def rows(self, table: str) -> int:
        async with self.store.read() as tx:  # type: ignore[attr-defined]
            row = await tx.fetchrow(f"SELECT count(*) AS n FROM {table}")
        return int(row["n"])

    async def counts(self) -> dict[str, int]:
        return {t: await self.rows(t) for t in WEBAUTHN_TABLES}

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def webauthn_settings(**changes: Any) -> WebauthnSettings:
    return dataclasses.replace(WebauthnSettings(rp_id=RP_ID, origins=[ORIGIN]), **changes)


@dataclass(kw_only=True)
class GrpcRelying(RoleClients):
    """``wa`` behind the real gRPC front end, and typed clients for each caller role."""

    wa: Relying


async def serve_grpc(wa: Relying, config: Any) -> tuple[GrpcServer, GrpcRelying]:
    """``wa`` behind the real gRPC servicers on 127.0.0.1:0 (started), with a token per role."""
    server, tokens = await start_grpc_front(wa.mfa, config, CollectorRegistry())
    return server, GrpcRelying(wa=wa, address=server.addresses[0], tokens=tokens)
