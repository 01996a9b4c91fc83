"""MFA devices: binding, confirming, listing and unbinding.

Guarantees: a TOTP secret is 160 random bits, sealed before it reaches the
store and shown only in the binding answer; a device counts only once it is
confirmed with a valid code (a pending device expires after the configured
ten minutes); a user holds at most one TOTP device; binding, confirming and
unbinding each write an audit row and revoke the user's remembered devices.
"""

from __future__ import annotations

import asyncio
import builtins

from dataclasses import dataclass, field
from typing import Protocol
from datetime import datetime, timedelta

from mfad.core.settings import TotpSettings
from mfad.core import totp
from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from mfad.core.keyring import Keyring, aad_for
from mfad.core.model import AuditEvent, Device, DeviceId, DeviceState, Method, TotpParams, User
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, DeviceStore
from mfad.core.users import UserService

MAX_DEVICE_NAME = 64
#: Imported secrets: RFC 4226 asks for at least 128 bits, but google-authenticator and
#: many older systems made 80-bit ones; refusing those would strand their users.
MIN_IMPORTED_SECRET_BYTES = 10
MAX_IMPORTED_SECRET_BYTES = 64
#: What the verifier supports (TotpSettings offers the same).
IMPORTABLE_DIGITS = (6, 8)
IMPORTABLE_PERIODS = (30, 60)


def check_imported_totp(secret: bytes, params: TotpParams, name: str) -> None:
    """What an imported TOTP device must be (InvalidInput names what is not)."""
    if not name or len(name) > MAX_DEVICE_NAME or not name.isprintable():
        raise InvalidInput("name", f"must be 1 to {MAX_DEVICE_NAME} printable characters")
    if not MIN_IMPORTED_SECRET_BYTES <= len(secret) <= MAX_IMPORTED_SECRET_BYTES:
        raise InvalidInput("secret", f"must be {MIN_IMPORTED_SECRET_BYTES * 8} to "
                                     f"{MAX_IMPORTED_SECRET_BYTES * 8} bits")
    if params.digits not in IMPORTABLE_DIGITS:
        raise InvalidInput("digits", "must be 6 or 8")
    if params.period not in IMPORTABLE_PERIODS:
        raise InvalidInput("period", "must be 30 or 60 seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpBinding:
    device: Device
    uri: str
    secret_base32: str
    qr_png: bytes
    qr_svg: str
    lockout_risk: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceListing:
    user: User
    devices: list[Device]
    #: Fewer than two method types bound: losing one device locks the user out.
    lockout_risk: bool


def lockout_risk(devices: list[Device]) -> bool:
    return len({d.method for d in devices if d.is_active}) < 2


async def load_unconfirmed(store: DeviceStore, user: User, device_id: DeviceId, method: Method, *,
                           confirmed: str) -> Device:
    """``user``'s device ``device_id`` of ``method``, still to be confirmed. NotFound when it is
    missing, another user's or another method's; PreconditionFailed(``confirmed``) when active."""
    device = await store.load_device(device_id)
    if device is None or device.user_id != user.id or device.method is not method:
        raise NotFound("device not found")
    if device.state is DeviceState.ACTIVE:
        raise PreconditionFailed(confirmed)
    return device


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportedSecret:
    """An active TOTP device's secret in clear, for a migration out of mfad."""

    username: str
    name: str
    secret: bytes = field(repr=False)
    params: TotpParams


class DeviceServiceStore(DeviceStore, AuditStore, Protocol):
    """The store as the device service uses it."""


class DeviceService:
    def __init__(self, *, store: DeviceServiceStore, keyring: Keyring, clock: Clock, users: UserService,
                 policy: PolicyService, settings: TotpSettings) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._users = users
        self._policy = policy
        self._settings = settings

    async def list(self, username: str) -> DeviceListing:
        user = await self._users.get(username)
        devices = await self._store.load_devices(user.id)
        now = self._clock.now()
        live = [d for d in devices if d.is_active or (d.expires_at is not None and d.expires_at > now)]
        return DeviceListing(user=user, devices=live, lockout_risk=lockout_risk(live))

    async def export_totp_secrets(self, *, actor: str, page: int = 500) -> tuple[ExportedSecret, ...]:
        """Every active TOTP device's secret, opened — for ``mfad export --include-secrets``,
        which encrypts them at once. One audit row per device (``device_secret_exported``)."""
        exported: builtins.list[ExportedSecret] = []  # "list" is a method name here
        audit: builtins.list[AuditEvent] = []
        after: str | None = None
        while True:
            users = await self._users.list(after=after, limit=page)
            for user in users:
                for device in await self._store.load_devices(user.id):
                    if device.method is not Method.TOTP or not device.is_active or device.sealed_secret is None:
                        continue
                    secret = self._keyring.open_secret(device.sealed_secret,
                                                       aad_for("devices", "sealed_secret", device.id))
                    exported.append(ExportedSecret(username=user.username, name=device.name, secret=secret,
                                                   params=device.totp or TotpParams()))
                    audit.append(AuditEvent(event="device_secret_exported", outcome="ok", user_id=user.id,
                                            username=user.username, method="totp", actor=actor,
                                            detail=f"device={device.id}"))
            if len(users) < page:
                break
            after = users[-1].username
        if audit:
            await self._store.append_audit(self._clock.now(), audit)
        return tuple(exported)

    async def begin_totp(self, username: str, *, name: str = "authenticator app", actor: str | None = None) -> TotpBinding:
        if not name or len(name) > MAX_DEVICE_NAME or not name.isprintable():
            raise InvalidInput("name", f"must be 1 to {MAX_DEVICE_NAME} printable characters")
        if not (await self._policy.current()).allows(Method.TOTP):
            raise PermissionDenied("the MFA policy does not allow TOTP devices")
        user = await self._users.get(username)
        s = self._settings
        params = TotpParams(digits=s.digits, period=s.period, algorithm=s.algorithm)
        secret = totp.new_secret()
        now = self._clock.now()

        def seal(device_id: DeviceId) -> str:
            return self._keyring.seal(secret, aad_for("devices", "sealed_secret", device_id))

        def audit(device_id: DeviceId) -> list[AuditEvent]:
            return [AuditEvent(event="device_bind_started", outcome="ok", user_id=user.id, username=user.username,
                               method="totp", actor=actor, detail=f"device={device_id}")]

        device = await self._store.insert_pending_totp(user.id, name, params, now,
                                                       now + timedelta(seconds=s.pending_ttl_seconds), seal, audit)
        uri = totp.provisioning_uri(secret, account=user.username, issuer=s.issuer, params=params)
        devices = await self._store.load_devices(user.id)
        # Rendering the QR code costs tens of milliseconds of CPU: keep it off the event loop.
        png, svg = await asyncio.gather(asyncio.to_thread(totp.qr_png, uri), asyncio.to_thread(totp.qr_svg, uri))
        return TotpBinding(device=device, uri=uri, secret_base32=totp.base32_secret(secret), qr_png=png,
                           qr_svg=svg, lockout_risk=lockout_risk(devices))

    async def import_totp(self, username: str, secret: bytes, params: TotpParams, *, name: str = "authenticator app",
                          origin: str, actor: str | None = None) -> Device:
        """A TOTP device from another system, active at once: its user already has the secret
        in an app. Sealed like a generated one; ``origin`` (the format) goes to the audit row."""
        check_imported_totp(secret, params, name)
        if not (await self._policy.current()).allows(Method.TOTP):
            raise PermissionDenied("the MFA policy does not allow TOTP devices")
        user = await self._users.get(username)

        def seal(device_id: DeviceId) -> str:
            return self._keyring.seal(secret, aad_for("devices", "sealed_secret", device_id))

        def audit(device_id: DeviceId) -> list[AuditEvent]:
            return [AuditEvent(event="device_imported", outcome="ok", user_id=user.id, username=user.username,
                               method="totp", actor=actor, detail=f"device={device_id} from={origin}")]

        return await self._store.insert_active_totp(user.id, name, params, self._clock.now(), seal, audit)

    async def confirm_totp(self, username: str, device_id: DeviceId, code: str, *, actor: str | None = None) -> Device:
        """Prove a pending device with a valid code. Refusals raise PreconditionFailed
        (wrong/expired code) — the binding stays pending and can be retried."""
        totp.check_code_input(code)
        user = await self._users.get(username)
        device = await load_unconfirmed(self._store, user, device_id, Method.TOTP,
                                        confirmed="the device is already confirmed")
        now = self._clock.now()
        if device.expires_at is None or device.expires_at <= now or device.sealed_secret is None \
                or device.totp is None:
            raise PreconditionFailed("the binding expired: start again")
        key = self._keyring.open_secret(device.sealed_secret, aad_for("devices", "sealed_secret", device.id))
        found = totp.match_code(key, code, now, device.totp, last_step=device.last_step, drift=0,
                                window=self._settings.window)
        if not isinstance(found, totp.TotpMatch):
            await self._store.append_audit(now, [AuditEvent(
                event="device_bind_confirmed", outcome="refused", user_id=user.id, username=user.username,
                method="totp", actor=actor, reason="wrong_code", detail=f"device={device.id}")])
            raise PreconditionFailed("the code does not match: check the device's clock and try the next code")
        ok = await self._store.activate_device(device.id, found.step, found.drift, now, [AuditEvent(
            event="device_bound", outcome="ok", user_id=user.id, username=user.username, method="totp",
            actor=actor, detail=f"device={device.id}")])
        if not ok:
            raise PreconditionFailed("the binding expired or was already confirmed")
        confirmed = await self._store.load_device(device.id)
        assert confirmed is not None
        return confirmed

    async def unbind(self, username: str, device_id: DeviceId, *, actor: str | None,
                     as_admin: bool, second_factor_at: datetime | None = None, reason: str | None = None) -> Device:
        """Remove a device. Self-service needs a second factor within the policy's reauth
        window; an administrator (the lost-device path) does not."""
        user = await self._users.get(username)
        now = self._clock.now()
        if not as_admin:
            window = (await self._policy.current()).sensitive_reauth_seconds
            if second_factor_at is None or (now - second_factor_at).total_seconds() > window:
                raise PermissionDenied("unbinding needs a fresh second factor")
        device = await self._store.delete_device(device_id, user.id, now, [AuditEvent(
            event="device_unbound", outcome="ok", user_id=user.id, username=user.username, actor=actor,
            reason=reason or None, detail=f"device={device_id} by={'admin' if as_admin else 'user'}")])
        if device is None:
            raise NotFound("device not found")
        return device
