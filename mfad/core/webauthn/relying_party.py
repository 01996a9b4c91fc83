"""The WebAuthn relying party both ceremonies (registration, sign-in) are made by."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol, runtime_checkable

from fido2.server import Fido2Server
from fido2.utils import sha256, websafe_encode
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    UserVerificationRequirement,
)

from mfad.core.clock import Clock
from mfad.core.credentials import StoredCredential, WebauthnStore
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, DeviceStore
from mfad.core.settings import WebauthnSettings
from mfad.core.users import UserService
from mfad.core.webauthn.attestation import AttestationCheck
from mfad.core.webauthn.input import KNOWN_TRANSPORTS

#: COSE algorithm ids of the algorithms ``[webauthn] algorithms`` may name.
ALGORITHMS: Mapping[str, int] = {"ES256": -7, "EdDSA": -8, "RS256": -257}
CHALLENGE_BYTES = 32  # DESIGN §4
UV = UserVerificationRequirement


@runtime_checkable
class WebauthnMetrics(Protocol):
    def clone_warning(self, method: str) -> None: ...
    def registration(self, kind: str, result: str) -> None: ...


class NullWebauthnMetrics:
    def clone_warning(self, method: str) -> None:
        pass

    def registration(self, kind: str, result: str) -> None:
        pass


class CeremonyStore(WebauthnStore, DeviceStore, AuditStore, Protocol):
    """The store as both ceremonies use it."""


class RelyingParty:
    """What both ceremonies share: the relying party's settings, its fido2 server (options and
    registrations; an assertion is checked by :mod:`mfad.core.webauthn.assertion`, for legacy U2F
    keys under their AppID too) and the ceremony lifetime."""

    def __init__(self, *, store: CeremonyStore, clock: Clock, users: UserService, policy: PolicyService,
                 settings: WebauthnSettings, metrics: WebauthnMetrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._users = users
        self._policy = policy
        self._settings = settings
        self._metrics = metrics or NullWebauthnMetrics()
        self._origins = frozenset(settings.origins)
        self._algorithms = [ALGORITHMS[a] for a in settings.algorithms]
        self._allowed_algs = frozenset(self._algorithms)
        self._ttl = timedelta(seconds=settings.challenge_ttl_seconds)
        self._rp_hash = sha256(settings.rp_id.encode("utf-8"))
        self._check_attestation = AttestationCheck(settings.attestation_formats, settings.attestation_roots_file)
        self._server = self._make_server(settings.rp_id)

    def _make_server(self, rp_id: str) -> Fido2Server:
        direct = self._settings.attestation == "direct"
        server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name=self._settings.rp_name),
                             attestation=(AttestationConveyancePreference.DIRECT if direct
                                          else AttestationConveyancePreference.NONE),
                             verify_origin=self._origin_ok, verify_attestation=self._check_attestation)
        # fido2's default list includes experimental algorithms (ES256K, ML-DSA): be explicit.
        server.allowed_algorithms = [PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=a)
                                     for a in self._algorithms]
        server.timeout = int(self._ttl.total_seconds() * 1000)  # type: ignore[assignment]  # fido2 annotates None
        return server

    @property
    def ceremony_ttl(self) -> timedelta:
        """How long a registration or sign-in ceremony is accepted."""
        return self._ttl

    def _origin_ok(self, origin: str) -> bool:
        return origin in self._origins

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _descriptor(c: StoredCredential) -> PublicKeyCredentialDescriptor:
        transports = [AuthenticatorTransport(t) for t in c.info.transports if t in KNOWN_TRANSPORTS]
        return PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c.credential_id,
                                             transports=transports or None)

    @staticmethod
    def _new_id() -> str:
        return websafe_encode(os.urandom(16))
