"""mfad.v1.Admin: users, devices, policy, lock-outs, audit, caller tokens and console roles.

Callers of role ROLE_ADMIN may call everything; a ROLE_PORTAL caller calls for the
console user whose session the call carries (the interceptor refuses it without
one). :meth:`AdminServicer.admit` runs before every method: for a console user it
asks the core whether that user's role *now* holds the permission the method needs
(:data:`PERMISSIONS`; a method missing from the table is refused), and a fresh
second factor for the sensitive ones. Every change is made by the core with the
caller's name — or ``user:<name>`` for a console user — as the audit actor. Users
are addressed by username and an unknown one answers NOT_FOUND: administrators
may know who exists. U2F import comes from
:class:`mfad.api.servicers.passkeys.U2fAdmin`.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any

import grpc.aio

from mfad._proto.mfad.v1 import mfad_pb2 as pb
from mfad._proto.mfad.v1 import mfad_pb2_grpc as pb_grpc
from mfad.api import convert
from mfad.api.auth import current_caller, session_of
from mfad.api.servicers import email
from mfad.api.servicers.enrollment import remembered_target
from mfad.api.servicers.passkeys import U2fAdmin
from mfad.core.admin import clean_reason
from mfad.core.email_codes import DELIVERY_WAIT_SECONDS
from mfad.core.errors import InvalidInput, NotFound, PreconditionFailed
from mfad.core.model import HashAlgorithm, Method, PolicyRule, Role, TotpParams
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad.core.verification import Attempt
from mfad.core.staff import Permission, Staff

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def page_size(value: int) -> int:
    if value > MAX_PAGE_SIZE:
        raise InvalidInput("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return value or DEFAULT_PAGE_SIZE


def username_token(username: str) -> str:
    """A ListUsers page token: the last username of the page (opaque to callers)."""
    return "u." + base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")


def username_after(text: str) -> str | None:
    if not text:
        return None
    try:
        if not text.startswith("u.") or len(text) > 1024:
            raise ValueError(text)
        body = text[2:]
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("page_token", "is not a page token from a previous answer") from None


def page_token(text: str) -> int | None:
    """Page tokens are the last id of the previous page (opaque to callers)."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidInput("page_token", "is not a page token from a previous answer")
    return int(text)


P = Permission
#: What each Admin method needs of a console user's role (ROLE_ADMIN callers need nothing).
PERMISSIONS: Mapping[str, Permission] = {
    "GetConsoleAccess": P.CONSOLE, "GetOverview": P.VIEW_USERS, "SetUserRole": P.MANAGE_ROLES,
    "CreateUser": P.MANAGE_USERS, "ListUsers": P.VIEW_USERS, "GetUser": P.VIEW_USERS,
    "DisableUser": P.MANAGE_USERS, "EnableUser": P.MANAGE_USERS, "PruneDirectoryUsers": P.MANAGE_USERS, "DeleteUser": P.MANAGE_USERS,
    "SetPassword": P.MANAGE_USERS, "ListDevices": P.VIEW_USERS, "UnbindDevice": P.UNBIND,
    "BindTotp": P.MANAGE_USERS, "ConfirmTotp": P.MANAGE_USERS, "BindEmail": P.MANAGE_USERS,
    "ConfirmEmail": P.MANAGE_USERS, "ImportTotp": P.MANAGE_USERS, "ImportU2F": P.MANAGE_USERS,
    "GetPolicy": P.VIEW_POLICY, "SetPolicy": P.MANAGE_POLICY, "GetLockout": P.VIEW_USERS,
    "ListPolicyRules": P.VIEW_POLICY, "GetPolicyRule": P.VIEW_POLICY, "AddPolicyRule": P.MANAGE_POLICY,
    "UpdatePolicyRule": P.MANAGE_POLICY, "MovePolicyRule": P.MANAGE_POLICY, "DeletePolicyRule": P.MANAGE_POLICY,
    "GetUserRecoveryStatus": P.VIEW_USERS, "ResetLockout": P.RESET_LOCKOUT, "QueryAudit": P.VIEW_AUDIT,
    "CreateCallerToken": P.MANAGE_TOKENS, "ListCallerTokens": P.VIEW_TOKENS, "RevokeCallerToken": P.MANAGE_TOKENS,
    "ListUserRemembered": P.VIEW_USERS, "RevokeUserRemembered": P.REVOKE_REMEMBERED,
    "IssueEnrolmentCode": P.ISSUE_ENROLMENT_CODE,
}

#: The console user the current call acts for (None: a ROLE_ADMIN caller).
_staff: ContextVar[Staff | None] = ContextVar("mfad_console_user", default=None)


@contextlib.asynccontextmanager
async def _acting(staff: Staff | None) -> AsyncIterator[None]:
    token = _staff.set(staff)
    try:
        yield
    finally:
        _staff.reset(token)


def _actor() -> str:
    staff = _staff.get()
    return staff.actor if staff is not None else current_caller().name


def _admin_attempt() -> Attempt:
    return Attempt(protocol="grpc", client=_actor())


def _rules(rules: list[PolicyRule]) -> list[pb.PolicyRule]:
    return [convert.policy_rule(r) for r in rules]


class AdminServicer(U2fAdmin, pb_grpc.AdminServicer):
    def __init__(self, mfa: Mfa, *, issuer: str, on_token_revoked: Callable[[str], None] | None = None) -> None:
        self._mfa = mfa
        self._issuer = issuer
        self._on_token_revoked = on_token_revoked

    async def admit(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        """Whether this call may run ``method`` (raises when not); held while it runs."""
        caller = current_caller()
        if caller.role is Role.ADMIN:
            return _acting(None)
        staff = await self._mfa.staff.authorize(session_of(context), caller.name, PERMISSIONS.get(method),
                                                operation=method, protocol="grpc")
        return _acting(staff)

    # --- console users -------------------------------------------------------------------------
    async def GetConsoleAccess(self, request: pb.GetConsoleAccessRequest,
                               context: Context) -> pb.GetConsoleAccessResponse:
        staff = _staff.get()
        if staff is None:
            raise PreconditionFailed("GetConsoleAccess answers for a console user's session (ROLE_PORTAL callers)")
        return pb.GetConsoleAccessResponse(username=staff.username, role=convert.STAFF_ROLE_TO_PB[staff.role],
                                           permissions=sorted(p.value for p in staff.permissions))

    async def GetOverview(self, request: pb.GetOverviewRequest, context: Context) -> pb.GetOverviewResponse:
        seen = await self._mfa.admin.overview()
        c = seen.counts
        return pb.GetOverviewResponse(users=c.users, users_without_mfa=c.without_mfa,
                                      users_at_lockout_risk=c.one_method_type, users_locked=c.locked,
                                      failed_sign_ins_24h=c.failed_sign_ins, outbox_depth=seen.outbox_depth,
                                      outbox_oldest=convert.timestamp(seen.outbox_oldest))

    async def SetUserRole(self, request: pb.SetUserRoleRequest, context: Context) -> pb.SetUserRoleResponse:
        user = await self._mfa.staff.set_role(request.username, convert.staff_role(request.role), actor=_actor())
        return pb.SetUserRoleResponse(user=convert.user(user))

    # --- users -------------------------------------------------------------------------------
    async def CreateUser(self, request: pb.CreateUserRequest, context: Context) -> pb.CreateUserResponse:
        password = request.password if request.HasField("password") else None
        user = await self._mfa.users.create(request.username, password, actor=_actor())
        return pb.CreateUserResponse(user=convert.user(user))

    async def ListUsers(self, request: pb.ListUsersRequest, context: Context) -> pb.ListUsersResponse:
        size = page_size(request.page_size)
        users = await self._mfa.users.list(after=username_after(request.page_token), limit=size,
                                           prefix=request.username_prefix or None)
        return pb.ListUsersResponse(users=[convert.user(u) for u in users],
                                    next_page_token=username_token(users[-1].username) if len(users) == size else "")

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.GetUserResponse:
        listing = await self._mfa.devices.list(request.username)
        state = await self._mfa.lockout(request.username)
        return pb.GetUserResponse(user=convert.user(listing.user), devices=convert.device_list(listing),
                                  lockout=convert.lockout(listing.user.username, state, self._mfa.clock.now()))

    async def DisableUser(self, request: pb.DisableUserRequest, context: Context) -> pb.DisableUserResponse:
        await self._mfa.users.set_disabled(request.username, True, actor=_actor(), reason=clean_reason(request.reason))
        return pb.DisableUserResponse(user=convert.user(await self._mfa.users.get(request.username)))

    async def PruneDirectoryUsers(self, request: pb.PruneDirectoryUsersRequest,
                                  context: Context) -> pb.PruneDirectoryUsersResponse:
        found = await self._mfa.directory_users.prune(request.directory or None, disable=request.disable,
                                                      actor=_actor())
        return pb.PruneDirectoryUsersResponse(users=[
            pb.StaleDirectoryUser(username=s.username, directory=s.directory, why=s.why, disabled=s.disabled)
            for s in found])

    async def EnableUser(self, request: pb.EnableUserRequest, context: Context) -> pb.EnableUserResponse:
        await self._mfa.users.set_disabled(request.username, False, actor=_actor(),
                                           reason=clean_reason(request.reason))
        return pb.EnableUserResponse(user=convert.user(await self._mfa.users.get(request.username)))

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> pb.DeleteUserResponse:
        username = self._mfa.users.normalize(request.username)
        removed = await self._mfa.admin.delete_user(username, actor=_actor(), reason=request.reason)
        return pb.DeleteUserResponse(username=username, devices_removed=removed)

    async def ImportTotp(self, request: pb.ImportTotpRequest, context: Context) -> pb.ImportTotpResponse:
        algorithm = request.algorithm.upper() or HashAlgorithm.SHA1.value
        if algorithm not in {a.value for a in HashAlgorithm}:
            raise InvalidInput("algorithm", "must be SHA1, SHA256 or SHA512")
        params = TotpParams(digits=request.digits or 6, period=request.period or 30,
                            algorithm=HashAlgorithm(algorithm))
        device = await self._mfa.devices.import_totp(request.username, request.secret, params,
                                                     name=request.name or "authenticator app",
                                                     origin=request.origin or "api", actor=_actor())
        return pb.ImportTotpResponse(device=convert.device(device))

    async def SetPassword(self, request: pb.SetPasswordRequest, context: Context) -> pb.SetPasswordResponse:
        revoked = await self._mfa.admin.set_password(request.username, request.password, actor=_actor())
        return pb.SetPasswordResponse(remembered_revoked=revoked)

    # --- devices -----------------------------------------------------------------------------
    async def ListDevices(self, request: pb.AdminListDevicesRequest, context: Context) -> pb.AdminListDevicesResponse:
        return pb.AdminListDevicesResponse(devices=convert.device_list(await self._mfa.devices.list(request.username)))

    async def UnbindDevice(self, request: pb.UnbindDeviceRequest, context: Context) -> pb.UnbindDeviceResponse:
        listing = await self._mfa.admin.unbind(request.username, convert.device_id(request.device_id),
                                               actor=_actor(), reason=request.reason)
        return pb.UnbindDeviceResponse(devices=convert.device_list(listing))

    async def BindTotp(self, request: pb.BindTotpRequest, context: Context) -> pb.BindTotpResponse:
        binding = await self._mfa.devices.begin_totp(request.username, name=request.name, actor=_actor())
        return pb.BindTotpResponse(provisioning=convert.totp_provisioning(binding, issuer=self._issuer,
                                                                          account=request.username))

    async def ConfirmTotp(self, request: pb.ConfirmTotpRequest, context: Context) -> pb.ConfirmTotpResponse:
        device = await self._mfa.devices.confirm_totp(request.username, convert.device_id(request.device_id),
                                                      request.code, actor=_actor())
        listing = await self._mfa.devices.list(request.username)
        return pb.ConfirmTotpResponse(device=convert.device(device), devices=convert.device_list(listing))

    async def BindEmail(self, request: pb.BindEmailRequest, context: Context) -> pb.BindEmailResponse:
        sent = await self._mfa.email.begin_binding(request.username, request.address, _admin_attempt(),
                                                   actor=_actor())
        # Wait for the mail server, but answer well within the caller's deadline.
        left = context.time_remaining()
        within = DELIVERY_WAIT_SECONDS if left is None else max(0.0, min(DELIVERY_WAIT_SECONDS, left / 2))
        return pb.BindEmailResponse(sent=email.code_sent(sent), accepted=await self._mfa.email.wait_sent(sent, within))

    async def ConfirmEmail(self, request: pb.ConfirmEmailRequest, context: Context) -> pb.ConfirmEmailResponse:
        device = await self._mfa.email.confirm_binding(request.username, convert.device_id(request.device_id),
                                                       request.code, _admin_attempt(), actor=_actor())
        listing = await self._mfa.devices.list(request.username)
        return pb.ConfirmEmailResponse(device=convert.device(device), devices=convert.device_list(listing))

    # --- policy ------------------------------------------------------------------------------
    async def GetPolicy(self, request: pb.GetPolicyRequest, context: Context) -> pb.GetPolicyResponse:
        return pb.GetPolicyResponse(policy=convert.policy(await self._mfa.policy.current()))

    async def SetPolicy(self, request: pb.SetPolicyRequest, context: Context) -> pb.SetPolicyResponse:
        changes: dict[str, Any] = {}
        if request.HasField("mfa_required"):
            changes["mfa_required"] = convert.mfa_required(request.mfa_required)
        if request.HasField("allowed_methods"):
            methods: set[Method] = {convert.method(m, "allowed_methods.methods")
                                    for m in request.allowed_methods.methods}
            changes["allowed_methods"] = frozenset(methods)
        for name in ("self_service", "remember_device", "remember_days", "sensitive_reauth_seconds",
                     "require_backup_method", "email_recovery", "roles_need_passkey", "approval_hold",
                     "approval_with_totp", "approval_email_notice"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        if request.HasField("enrolment_proof"):
            changes["enrolment_proof"] = convert.enrolment_proof(request.enrolment_proof)
        policy = await self._mfa.policy.update(actor=_actor(), **changes) if changes \
            else await self._mfa.policy.current()
        return pb.SetPolicyResponse(policy=convert.policy(policy))

    # --- group rules -------------------------------------------------------------------------
    async def ListPolicyRules(self, request: pb.ListPolicyRulesRequest,
                              context: Context) -> pb.ListPolicyRulesResponse:
        return pb.ListPolicyRulesResponse(rules=_rules(await self._mfa.policy.stored_rules()))

    async def GetPolicyRule(self, request: pb.GetPolicyRuleRequest, context: Context) -> pb.GetPolicyRuleResponse:
        position, rule = await self._mfa.policy.get_rule(request.name)
        return pb.GetPolicyRuleResponse(rule=convert.policy_rule(rule), position=position)

    async def AddPolicyRule(self, request: pb.AddPolicyRuleRequest, context: Context) -> pb.AddPolicyRuleResponse:
        fields = convert.policy_rule_fields(request.rule)
        rule = PolicyRule(name=request.rule.name, **fields)  # type: ignore[arg-type]
        rules = await self._mfa.policy.add_rule(
            rule, position=request.position if request.HasField("position") else None, actor=_actor())
        return pb.AddPolicyRuleResponse(rules=_rules(rules))

    async def UpdatePolicyRule(self, request: pb.UpdatePolicyRuleRequest,
                               context: Context) -> pb.UpdatePolicyRuleResponse:
        fields = convert.policy_rule_fields(request)
        if not fields and not request.inherit:
            raise InvalidInput("name", "nothing to change: set a field or name one in inherit")
        rules = await self._mfa.policy.update_rule(request.name, actor=_actor(), inherit=frozenset(request.inherit),
                                                   **fields)
        return pb.UpdatePolicyRuleResponse(rules=_rules(rules))

    async def MovePolicyRule(self, request: pb.MovePolicyRuleRequest, context: Context) -> pb.MovePolicyRuleResponse:
        rules = await self._mfa.policy.move_rule(request.name, request.position, actor=_actor())
        return pb.MovePolicyRuleResponse(rules=_rules(rules))

    async def DeletePolicyRule(self, request: pb.DeletePolicyRuleRequest,
                               context: Context) -> pb.DeletePolicyRuleResponse:
        if not await self._mfa.policy.delete_rule(request.name, actor=_actor()):
            raise NotFound(f"no policy rule named {request.name!r}")
        return pb.DeletePolicyRuleResponse(rules=_rules(await self._mfa.policy.stored_rules()))

    # --- lock-outs and audit -----------------------------------------------------------------
    async def GetLockout(self, request: pb.GetLockoutRequest, context: Context) -> pb.GetLockoutResponse:
        state = await self._mfa.lockout(request.username)
        return pb.GetLockoutResponse(lockout=convert.lockout(request.username, state, self._mfa.clock.now()))

    async def GetUserRecoveryStatus(self, request: pb.GetUserRecoveryStatusRequest,
                                    context: Context) -> pb.GetUserRecoveryStatusResponse:
        status = await self._mfa.recovery.status(request.username)
        return pb.GetUserRecoveryStatusResponse(status=convert.recovery_status(status))

    async def IssueEnrolmentCode(self, request: pb.IssueEnrolmentCodeRequest,
                                 context: Context) -> pb.IssueEnrolmentCodeResponse:
        issued = await self._mfa.enrolment.issue(request.username, request.hours, _admin_attempt(), actor=_actor())
        return pb.IssueEnrolmentCodeResponse(code=issued.code, expires_at=convert.timestamp(issued.expires_at),
                                             replaced=issued.replaced)

    async def ResetLockout(self, request: pb.ResetLockoutRequest, context: Context) -> pb.ResetLockoutResponse:
        await self._mfa.reset_lockout(request.username, actor=_actor())
        state = await self._mfa.lockout(request.username)
        return pb.ResetLockoutResponse(lockout=convert.lockout(request.username, state, self._mfa.clock.now()))

    async def QueryAudit(self, request: pb.QueryAuditRequest, context: Context) -> pb.QueryAuditResponse:
        size = page_size(request.page_size)
        f = AuditFilter(event=request.event or None, outcome=request.outcome or None,
                        since=convert.from_timestamp(request.since) if request.HasField("since") else None,
                        until=convert.from_timestamp(request.until) if request.HasField("until") else None,
                        before_id=page_token(request.page_token), limit=size)
        records = await (self._mfa.audit_for(request.username, f) if request.username else self._mfa.audit(f))
        return pb.QueryAuditResponse(events=[convert.audit_event(r) for r in records],
                                     next_page_token=str(records[-1].id) if len(records) == size else "")

    # --- caller tokens -----------------------------------------------------------------------
    async def CreateCallerToken(self, request: pb.CreateCallerTokenRequest,
                                context: Context) -> pb.CreateCallerTokenResponse:
        if not _TOKEN_NAME.fullmatch(request.name):
            raise InvalidInput("name", "must be 1 to 64 letters, digits, '.', '_' or '-'")
        role = convert.role(request.role)
        expires_at = convert.from_timestamp(request.expires_at) if request.HasField("expires_at") else None
        caller, token = await self._mfa.callers.create(request.name, role, actor=_actor(), expires_at=expires_at)
        return pb.CreateCallerTokenResponse(caller_token=convert.caller_token(caller), token=token)

    async def ListCallerTokens(self, request: pb.ListCallerTokensRequest,
                               context: Context) -> pb.ListCallerTokensResponse:
        tokens = [t for t in await self._mfa.callers.list() if request.include_revoked or not t.revoked]
        return pb.ListCallerTokensResponse(
            caller_tokens=[convert.caller_token(t) for t in sorted(tokens, key=lambda t: (t.name, t.id))])

    async def RevokeCallerToken(self, request: pb.RevokeCallerTokenRequest,
                                context: Context) -> pb.RevokeCallerTokenResponse:
        if not request.name:
            raise InvalidInput("name", "must not be empty")
        await self._mfa.callers.revoke(request.name, actor=_actor())
        if self._on_token_revoked is not None:
            self._on_token_revoked(request.name)
        revoked = [t for t in await self._mfa.callers.list() if t.name == request.name]
        if not revoked:
            raise NotFound(f"no token named {request.name!r}")
        return pb.RevokeCallerTokenResponse(caller_token=convert.caller_token(max(revoked, key=lambda t: t.id)))

    # --- remembered devices --------------------------------------------------------------------
    async def ListUserRemembered(self, request: pb.ListUserRememberedRequest,
                                 context: Context) -> pb.ListUserRememberedResponse:
        items = await self._mfa.admin.list_remembered(request.username)
        return pb.ListUserRememberedResponse(remembered=convert.remembered_devices(items))

    async def RevokeUserRemembered(self, request: pb.RevokeUserRememberedRequest,
                                   context: Context) -> pb.RevokeUserRememberedResponse:
        series = remembered_target(request.id, request.all)
        count = await self._mfa.admin.revoke_remembered(request.username, series, actor=_actor())
        return pb.RevokeUserRememberedResponse(revoked=count)
