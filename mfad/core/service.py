"""The core's façade: what transports and the CLI are handed, built from the core's settings.

Each component gets its own settings section; the store and the metrics are
injected so the core stays free of drivers and transports.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from mfad.core.admin import AdminService
from mfad.core.approval import ApprovalMetrics, ApprovalService, NullApprovalMetrics
from mfad.core.approval_waits import ApprovalWaiters
from mfad.core.approval_notice import NoticingApprovalVerifier, ReportingApprovalService
from mfad.core.callers import CallerService
from mfad.core.clock import Clock, SystemClock
from mfad.core.devices import DeviceService
from mfad.core.imports import ImportService
from mfad.core.email_codes import EmailCodeService, EmailVerifier
from mfad.core.enrolment import EnrolmentService
from mfad.core.emergency import EmergencyMetrics, EmergencySignIns
from mfad.core.errors import NotFound
from mfad.core.keyring import Keyring, aad_for
from mfad.core.model import AuditEvent, AuditRecord, LimitState
from mfad.core.outbox import EmailMetrics
from mfad.core.passwords import PasswordHasher
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditFilter, CoreMetrics, NullMetrics, Store
from mfad.core.recovery import RecoveryService, RecoveryVerifier
from mfad.core.selfservice import SelfService
from mfad.core.directory import Directory
from mfad.core.provisioning import DirectoryUsers
from mfad.core.first_factor import FirstFactorRouter, LocalPasswordCheck
from mfad.core.settings import CoreSettings
from mfad.core.signin import SignInService
from mfad.core.staff import StaffService
from mfad.core.users import UserService
from mfad.core.webauthn import WebauthnService
from mfad.core.webauthn.assertion import PasskeyVerifier, U2fVerifier
from mfad.core.webauthn.relying_party import WebauthnMetrics


class Mfa:
    def __init__(self, *, settings: CoreSettings, store: Store, keyring: Keyring, clock: Clock | None = None,
                 metrics: CoreMetrics | None = None, passwords: PasswordHasher | None = None,
                 email_metrics: EmailMetrics | None = None, directories: Mapping[str, Directory] | None = None,
                 first_factor_by_client: Mapping[str, str] | None = None,
                 first_factor_by_protocol: Mapping[str, str] | None = None,
                 upstream_reply_attributes: Mapping[str, frozenset[str]] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.clock = clock or SystemClock()
        self.metrics = metrics or NullMetrics()
        p = settings.passwords
        self.passwords = passwords or PasswordHasher(time_cost=p.time_cost, memory_kib=p.memory_kib,
                                                     parallelism=p.parallelism, max_concurrent=p.max_concurrent)
        #: ``monotonic``: elapsed time for the policy cache (tests move it; default time.monotonic).
        self.policy = PolicyService(store, self.clock, settings.initial_policy,
                                    monotonic=monotonic or time.monotonic)
        self.users = UserService(store, self.passwords, self.clock, usernames=settings.users.to_rules(),
                                 password_policy=settings.passwords.to_policy())
        self.devices = DeviceService(store=store, keyring=keyring, clock=self.clock, users=self.users,
                                     policy=self.policy, settings=settings.totp)
        self.imports = ImportService(store=store, keyring=keyring, clock=self.clock, users=self.users,
                                     policy=self.policy)
        self.callers = CallerService(store, self.clock)
        #: Directories that check first factors (LDAP, upstream RADIUS), by name.
        self.directories: dict[str, Directory] = dict(directories or {})
        first_factor = FirstFactorRouter(LocalPasswordCheck(self.passwords), self.directories,
                                         by_client=first_factor_by_client or {},
                                         by_protocol=first_factor_by_protocol or {},
                                         reply_allowed=upstream_reply_attributes)
        self.signin = SignInService(store=store, keyring=keyring, clock=self.clock, passwords=self.passwords,
                                    policy=self.policy, totp_settings=settings.totp, limits=settings.limits,
                                    metrics=self.metrics, usernames=self.users.usernames, first_factor=first_factor)
        self.directory_users = DirectoryUsers(store, self.clock, self.directories)
        self.email = EmailCodeService(store=store, keyring=keyring, clock=self.clock, settings=settings.email_codes,
                                      policy=self.policy, users=self.users, metrics=email_metrics,
                                      core_metrics=self.metrics)
        self.signin.register(EmailVerifier(self.email))
        self.recovery = RecoveryService(store=store, keyring=keyring, clock=self.clock, policy=self.policy,
                                        users=self.users, email=self.email)
        self.signin.register(RecoveryVerifier(self.recovery))
        self.webauthn = WebauthnService(store=store, clock=self.clock, users=self.users, policy=self.policy,
                                        settings=settings.webauthn,
                                        metrics=self.metrics if isinstance(self.metrics, WebauthnMetrics) else None)
        self.signin.register_usernameless(PasskeyVerifier(self.webauthn))
        self.signin.register(U2fVerifier(self.webauthn))
        approval_metrics = self.metrics if isinstance(self.metrics, ApprovalMetrics) else NullApprovalMetrics()
        self.enrolment = EnrolmentService(store=store, keyring=keyring, clock=self.clock, users=self.users,
                                          email=self.email)
        self.signin.register(NoticingApprovalVerifier(store, approval_metrics, keyring=keyring, email=self.email,
                                                      approve_url=settings.approve_url))
        self.approvals: ApprovalService = ReportingApprovalService(
            store=store, clock=self.clock, signin=self.signin, metrics=approval_metrics,
            waiters=ApprovalWaiters(store), policy=self.policy, keyring=keyring, email=self.email)
        self.selfservice = SelfService(store=store, clock=self.clock, policy=self.policy, signin=self.signin,
                                       devices=self.devices, recovery=self.recovery, enrolment=self.enrolment,
                                       session_ttl_seconds=settings.session_ttl_seconds,
                                       emergency=EmergencySignIns(
                                           keyring=keyring, email=self.email,
                                           metrics=self.metrics if isinstance(self.metrics, EmergencyMetrics)
                                           else None))
        self.admin = AdminService(store=store, clock=self.clock, users=self.users, devices=self.devices)
        self.staff = StaffService(store=store, clock=self.clock, users=self.users, selfservice=self.selfservice,
                                  policy=self.policy)

    async def start(self) -> None:
        await self.policy.seed()

    def close(self) -> None:
        self.passwords.close()

    # --- lock-outs and audit (administration) ------------------------------------------
    async def lockout(self, username: str) -> LimitState:
        user = await self.users.get(username)
        return await self.store.load_limits(user.id)

    async def reset_lockout(self, username: str, *, actor: str | None) -> bool:
        user = await self.users.get(username)
        return await self.store.reset_limits(user.id, self.clock.now(), [AuditEvent(
            event="lockout_reset", outcome="ok", user_id=user.id, username=user.username, actor=actor)])

    async def audit(self, f: AuditFilter) -> list[AuditRecord]:
        return await self.store.query_audit(f)

    async def audit_for(self, username: str, f: AuditFilter) -> list[AuditRecord]:
        user = await self.store.load_user_by_name(self.users.normalize(username))
        if user is None:
            raise NotFound("user not found")
        return await self.store.query_audit(dataclasses.replace(f, user_id=user.id))

    # --- secrets -------------------------------------------------------------------------
    async def reencrypt_secrets(self, batch: int = 500) -> int:
        """Re-seal every secret under the active key; safe while daemons keep running
        (each row is swapped only if unchanged since it was read)."""
        done = 0
        active = self.keyring.active_kid
        while True:
            rows = await self.store.load_sealed_secrets(active, batch)
            if not rows:
                return done
            for device_id, sealed in rows:
                aad = aad_for("devices", "sealed_secret", device_id)
                fresh = self.keyring.seal(self.keyring.open_secret(sealed, aad), aad)
                if await self.store.update_sealed_secret(device_id, sealed, fresh):
                    done += 1

