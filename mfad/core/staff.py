"""Console roles: people who administer mfad through their own signed-in session.

An administrator is a user with a role (:class:`~mfad.core.model.StaffRole`), not a
caller token: the portal's console calls the Admin API with its own caller token *and*
that user's session, and every such call is decided here.

Guarantees:
- a call is allowed only for a live full session (issued to that caller) whose user
  *now* has a role that holds the permission the call needs — the role is read with the
  session on every call, so a role taken away stops the next call, also in sessions
  signed in before; a disabled user's sessions are gone already;
- sensitive permissions (policy, roles, caller tokens, unbinding) also need a second
  factor within the policy's ``sensitive_reauth_seconds`` on that session
  (``PreconditionFailed`` otherwise: step up, then call again);
- with the policy's ``roles_need_passkey``, a role works only in a session that signed in
  with a passkey (``PermissionDenied`` otherwise, audited like any other refusal), and a
  sensitive call also needs the session's latest second factor to be a passkey (a TOTP
  or email step-up does not count: ``PreconditionFailed``);
- every refusal for want of a role or permission is audited (``console_denied``) and
  answered ``PermissionDenied`` with the same words whatever was missing; an unknown,
  expired or foreign session is ``Unauthenticated`` as for self-service;
- giving or taking a role is audited in the transaction that changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from mfad.core.clock import Clock
from mfad.core.errors import PermissionDenied, PreconditionFailed, Unauthenticated
from mfad.core.model import AuditEvent, Method, StaffRole, User
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditStore, UserStore
from mfad.core.selfservice import SESSION_REFUSED, SelfService
from mfad.core.sessions import SessionScope, UserSession
from mfad.core.users import UserService


class Permission(StrEnum):
    """What one Admin call needs."""

    #: Open the console at all (who am I, which pages).
    CONSOLE = "console"
    VIEW_USERS = "view_users"
    MANAGE_USERS = "manage_users"  # create, enable/disable, set password, delete, bind for a user
    UNBIND = "unbind"
    RESET_LOCKOUT = "reset_lockout"
    REVOKE_REMEMBERED = "revoke_remembered"
    ISSUE_ENROLMENT_CODE = "issue_enrolment_code"
    VIEW_AUDIT = "view_audit"
    VIEW_POLICY = "view_policy"
    MANAGE_POLICY = "manage_policy"
    VIEW_TOKENS = "view_tokens"
    MANAGE_TOKENS = "manage_tokens"
    MANAGE_ROLES = "manage_roles"


#: The role table. helpdesk never sees policy or tokens; auditor changes nothing.
ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.ADMIN: frozenset(Permission),
    StaffRole.HELPDESK: frozenset({
        Permission.CONSOLE, Permission.VIEW_USERS, Permission.UNBIND, Permission.RESET_LOCKOUT,
        Permission.REVOKE_REMEMBERED, Permission.ISSUE_ENROLMENT_CODE, Permission.VIEW_AUDIT}),
    StaffRole.AUDITOR: frozenset({
        Permission.CONSOLE, Permission.VIEW_USERS, Permission.VIEW_AUDIT, Permission.VIEW_POLICY,
        Permission.VIEW_TOKENS}),
}

#: Changes that need a fresh second factor on the session (the product rules).
SENSITIVE: frozenset[Permission] = frozenset({
    Permission.MANAGE_POLICY, Permission.MANAGE_ROLES, Permission.MANAGE_TOKENS, Permission.UNBIND})

DENIED = "your console role does not allow this"


@dataclass(frozen=True, slots=True, kw_only=True)
class Staff:
    """Who is administering: the session's user and their role."""

    username: str
    role: StaffRole
    session: UserSession

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    @property
    def actor(self) -> str:
        """How the audit log names them (never mistaken for a caller token's name)."""
        return f"user:{self.username}"


class StaffStore(UserStore, AuditStore, Protocol):
    """The store as the staff service uses it: roles and their audit rows."""


class StaffService:
    def __init__(self, *, store: StaffStore, clock: Clock, users: UserService, selfservice: SelfService,
                 policy: PolicyService) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._users = users
        self._selfservice = selfservice

    async def authorize(self, token: str | None, caller: str, permission: Permission | None, *,
                        operation: str, protocol: str, source: str | None = None) -> Staff:
        """The staff member behind ``token`` if their role holds ``permission`` now (None: no
        role holds it; the call is refused). ``operation`` names the call in the audit log."""
        session = await self._selfservice.resolve(token, caller)
        if session.scope is not SessionScope.FULL:
            raise Unauthenticated(SESSION_REFUSED)
        policy = await self._policy.current()
        reason = None
        if session.role is None or permission is None or permission not in ROLE_PERMISSIONS[session.role]:
            reason = f"role={session.role or 'none'} needs={permission or 'nothing grants it'}"
        elif policy.roles_need_passkey and session.signed_in_with != Method.PASSKEY.value:
            reason = f"role={session.role} needs=passkey_sign_in signed_in_with={session.signed_in_with or 'unknown'}"
        if reason is not None:
            await self._store.append_audit(self._clock.now(), [AuditEvent(
                event="console_denied", outcome="refused", user_id=session.user_id, username=session.username,
                protocol=protocol, source=source, actor=caller, reason=reason, detail=f"operation={operation}")])
            raise PermissionDenied(DENIED)
        assert session.role is not None and permission is not None
        if permission in SENSITIVE:
            await self._selfservice.fresh_second_factor(session, operation)
            if policy.roles_need_passkey and session.second_factor_with != Method.PASSKEY.value:
                raise PreconditionFailed(f"{operation} needs a fresh passkey: step up with your passkey first")
        return Staff(username=session.username, role=session.role, session=session)

    async def set_role(self, username: str, role: StaffRole | None, *, actor: str | None) -> User:
        """Give ``username`` a console role, or take it away (None)."""
        user = await self._users.get(username)
        return await self._store.update_user_role(user.id, role, self._clock.now(), [AuditEvent(
            event="role_set", outcome="ok" if role else "removed", user_id=user.id, username=user.username,
            actor=actor, detail=f"role={role or 'none'} was={user.role or 'none'}")])
