"""The global MFA policy and the group rules on top of it: stored, cached briefly,
changed only with an audit row.

Guarantee: every instance sees a change within ``CACHE_SECONDS``; the instance
that made it sees it at once. Turning "remember this device" off revokes every
remembered device in the same transaction. The policy that applies to a sign-in
is the global one changed by the first rule matching the user's directory groups
and the client (``effective``); with no rule matching, the global policy.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Iterable
from typing import Any

from mfad.core.clock import Clock
from mfad.core.errors import AlreadyExists, InvalidInput, NotFound
from mfad.core.model import AuditEvent, EnrolmentProof, Method, MfaRequired, Policy, PolicyRule, User
from mfad.core.ports import PolicyRuleStore, PolicyStore

CACHE_SECONDS = 2.0  # bounds how stale another instance's policy change can be


class PolicyServiceStore(PolicyStore, PolicyRuleStore, typing.Protocol):
    """The store as the policy service uses it."""


MAX_RULES = 100  # evaluated on every sign-in: a bound keeps that cheap


class PolicyService:
    def __init__(self, store: PolicyServiceStore, clock: Clock, initial: Policy, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic  # the cache's age: elapsed time, whatever the wall clock does
        self._initial = initial
        self._cached: Policy | None = None
        self._cached_at = 0.0
        self._rules: list[PolicyRule] | None = None
        self._rules_at = 0.0

    async def seed(self) -> None:
        """Write the configured initial policy once, if the store has none yet."""
        await self._store.save_policy(self._initial, self._clock.now(), [AuditEvent(
            event="policy_changed", outcome="ok", actor="config", detail=_describe(self._initial))],
            only_if_absent=True)

    async def current(self) -> Policy:
        if self._cached is not None and self._monotonic() - self._cached_at < CACHE_SECONDS:
            return self._cached
        policy = await self._store.load_policy() or self._initial
        self._cached, self._cached_at = policy, self._monotonic()
        return policy

    async def rules(self) -> list[PolicyRule]:
        if self._rules is not None and self._monotonic() - self._rules_at < CACHE_SECONDS:
            return self._rules
        rules = await self._store.load_policy_rules()
        self._rules, self._rules_at = rules, self._monotonic()
        return rules

    async def stored_rules(self) -> list[PolicyRule]:
        """The rules as stored now (no cache: what an administrator lists)."""
        return await self._store.load_policy_rules()

    async def effective(self, user: User | None, client: str | None) -> Policy:
        """The policy for a sign-in of ``user`` through ``client`` (a RADIUS client's name,
        or ``grpc``): the first matching rule applied to the global policy."""
        policy = await self.current()
        groups = user.groups if user is not None else ()
        for rule in await self.rules():
            if rule.matches(groups, client):
                return rule.apply(policy)
        return policy

    async def set_rule(self, rule: PolicyRule, *, position: int | None, actor: str | None) -> list[PolicyRule]:
        """Add ``rule`` (at ``position``, default last) or replace the rule of its name
        (moved to ``position`` when given)."""
        rule = _validated_rule(rule)
        current = await self._store.load_policy_rules()
        old = next((i for i, r in enumerate(current) if r.name == rule.name), None)
        rules = [r for r in current if r.name != rule.name]
        at = position if position is not None else (old if old is not None else len(rules))
        if not 0 <= at <= len(rules):
            raise InvalidInput("position", f"must be between 0 and {len(rules)}")
        rules.insert(at, rule)
        if len(rules) > MAX_RULES:
            raise InvalidInput("rules", f"at most {MAX_RULES} rules")
        event = AuditEvent(event="policy_rule_changed", outcome="ok", actor=actor,
                           detail=f"position={at} {_describe_rule(rule)}")
        return await self._save_rules(rules, event)

    async def add_rule(self, rule: PolicyRule, *, position: int | None, actor: str | None) -> list[PolicyRule]:
        """Add a new rule (at ``position``, default last); AlreadyExists when its name is taken."""
        if any(r.name == rule.name for r in await self._store.load_policy_rules()):
            raise AlreadyExists(f"a policy rule named {rule.name!r} exists")
        return await self.set_rule(rule, position=position, actor=actor)

    async def get_rule(self, name: str) -> tuple[int, PolicyRule]:
        """The rule of that name and its position, as stored now (NotFound)."""
        _rule_name(name)
        for i, rule in enumerate(await self._store.load_policy_rules()):
            if rule.name == name:
                return i, rule
        raise NotFound(f"no policy rule named {name!r}")

    async def update_rule(self, name: str, *, actor: str | None, inherit: frozenset[str] = frozenset(),
                          **changes: Any) -> list[PolicyRule]:
        """Change some fields of the rule ``name`` (NotFound); the fields named in ``inherit``
        go back to the global policy's value."""
        settable = {f.name for f in dataclasses.fields(PolicyRule)} - {"name"}
        for field_name in (*changes, *inherit):
            if field_name not in settable:
                raise InvalidInput(field_name, "is not a policy rule field")
        inheritable = settable - {"groups", "clients"}
        for field_name in inherit:
            if field_name not in inheritable:
                raise InvalidInput(field_name, "cannot be inherited (give an empty list instead)")
            if field_name in changes:
                raise InvalidInput(field_name, "is both set and inherited")
        position, rule = await self.get_rule(name)
        reset: dict[str, Any] = {f: None for f in inherit}
        changed = dataclasses.replace(rule, **changes, **reset)
        return await self.set_rule(changed, position=position, actor=actor)

    async def move_rule(self, name: str, position: int, *, actor: str | None) -> list[PolicyRule]:
        """Move the rule ``name`` (NotFound) to ``position`` (0: evaluated first)."""
        _, rule = await self.get_rule(name)
        return await self.set_rule(rule, position=position, actor=actor)

    async def delete_rule(self, name: str, *, actor: str | None) -> bool:
        _rule_name(name)
        rules = await self._store.load_policy_rules()
        kept = [r for r in rules if r.name != name]
        if len(kept) == len(rules):
            return False
        await self._save_rules(kept, AuditEvent(event="policy_rule_deleted", outcome="ok", actor=actor,
                                                detail=f"name={name}"))
        return True

    async def _save_rules(self, rules: list[PolicyRule], event: AuditEvent) -> list[PolicyRule]:
        await self._store.save_policy_rules(rules, self._clock.now(), [event])
        self._rules, self._rules_at = rules, self._monotonic()
        return rules

    async def update(self, *, actor: str | None, **changes: Any) -> Policy:
        """Change some fields. Unknown fields or bad values raise InvalidInput naming the field."""
        old = await self.current()
        known = {f.name for f in dataclasses.fields(Policy)}
        for name in changes:
            if name not in known:
                raise InvalidInput(name, "is not a policy field")
        new = _validated(dataclasses.replace(old, **changes))
        revoke = old.remember_device and not new.remember_device
        await self._store.save_policy(new, self._clock.now(), [AuditEvent(
            event="policy_changed", outcome="ok", actor=actor, detail=_describe(new))], revoke_remembered=revoke)
        self._cached, self._cached_at = new, self._monotonic()
        return new


def _mfa_required(value: str) -> MfaRequired:
    try:
        return MfaRequired(value)
    except ValueError:
        raise InvalidInput("mfa_required", "must be all, enrolled or off") from None


def _allowed_methods(values: Iterable[str]) -> frozenset[Method]:
    """Known methods, at least one."""
    try:
        methods = frozenset(Method(m) for m in values)
    except ValueError:
        raise InvalidInput("allowed_methods", "must be passkey, totp, email, u2f, recovery or approval") from None
    if not methods:
        raise InvalidInput("allowed_methods", "must allow at least one method")
    return methods


def _validated(p: Policy) -> Policy:
    mfa = _mfa_required(p.mfa_required)
    methods = _allowed_methods(p.allowed_methods)
    if not 1 <= p.remember_days <= 365:
        raise InvalidInput("remember_days", "must be between 1 and 365")
    if not 30 <= p.sensitive_reauth_seconds <= 86400:
        raise InvalidInput("sensitive_reauth_seconds", "must be between 30 and 86400")
    try:
        proof = EnrolmentProof(p.enrolment_proof)
    except ValueError:
        raise InvalidInput("enrolment_proof", "must be none, access_code or email_code") from None
    for flag in ("self_service", "remember_device", "require_backup_method", "email_recovery", "roles_need_passkey"):
        if not isinstance(getattr(p, flag), bool):
            raise InvalidInput(flag, "must be true or false")
    if p.roles_need_passkey and not p.allows(Method.PASSKEY):
        raise InvalidInput("roles_need_passkey", "needs passkey among the allowed methods")
    return dataclasses.replace(p, mfa_required=mfa, allowed_methods=methods, enrolment_proof=proof)


def _describe(p: Policy) -> str:
    return (f"mfa_required={p.mfa_required} allowed_methods={','.join(sorted(p.allowed_methods))} "
            f"self_service={p.self_service} remember_device={p.remember_device} remember_days={p.remember_days} "
            f"sensitive_reauth_seconds={p.sensitive_reauth_seconds} "
            f"require_backup_method={p.require_backup_method} enrolment_proof={p.enrolment_proof} "
            f"email_recovery={p.email_recovery} roles_need_passkey={p.roles_need_passkey} "
            f"approval_hold={p.approval_hold} approval_with_totp={p.approval_with_totp} "
            f"approval_email_notice={p.approval_email_notice}")


#: One line per policy field saying what it does (the console and ``mfactl policy get`` show them).
FIELD_HELP: dict[str, str] = {
    "mfa_required": "who must give a second factor: all users, only enrolled ones, or nobody",
    "allowed_methods": "which second factors may be used and bound",
    "self_service": "whether users may manage their own devices on the Security Information page",
    "remember_device": "whether a user may tick \"remember this device\" to skip the second factor there",
    "remember_days": "how many days a remembered device skips the second factor",
    "sensitive_reauth_seconds": "how recent a second factor must be for sensitive changes",
    "require_backup_method": "whether users must keep a second method type against lock-out",
    "enrolment_proof": ("what a user with no device must present before binding the first one: "
                        "nothing more than the password (none), a one-time enrolment code from an "
                        "administrator (access_code), or a code mailed to the user (email_code)"),
    "email_recovery": ("whether a user who signed in with the security email (lost device) may remove "
                       "their devices themselves, instead of an administrator"),
    "roles_need_passkey": ("whether console roles work only in sessions signed in with a passkey, with "
                           "passkey step-up for sensitive changes"),
    "approval_hold": ("whether RADIUS clients with approval_hold_seconds may hold a sign-in unanswered "
                      "until the user approves it on the portal (no number matching)"),
    "approval_with_totp": "whether the Approve sign-in page also takes a TOTP code instead of a passkey",
    "approval_email_notice": ("whether users get a mail linking to the Approve sign-in page when a sign-in "
                              "waits for them (at most one every 15 minutes)"),
}


def _rule_name(name: str) -> str:
    """A rule name as a request names it: never empty (that names no rule; say so)."""
    if not name or len(name) > 64 or not name.isprintable():
        raise InvalidInput("name", "must be 1 to 64 printable characters")
    return name


def _validated_rule(rule: PolicyRule) -> PolicyRule:
    _rule_name(rule.name)
    for field_name, items in (("groups", rule.groups), ("clients", rule.clients)):
        if len(items) > 50 or any(not item or len(item) > 256 or not item.isprintable() for item in items):
            raise InvalidInput(field_name, "must be at most 50 names of 1 to 256 printable characters")
    if rule.allowed_methods is not None:
        rule = dataclasses.replace(rule, allowed_methods=_allowed_methods(rule.allowed_methods))
    if rule.remember_days is not None and not 1 <= rule.remember_days <= 365:
        raise InvalidInput("remember_days", "must be between 1 and 365")
    if rule.mfa_required is not None:
        rule = dataclasses.replace(rule, mfa_required=_mfa_required(rule.mfa_required))
    return rule


def _describe_rule(r: PolicyRule) -> str:
    parts = [f"name={r.name}", f"groups={','.join(r.groups)}", f"clients={','.join(r.clients)}"]
    if r.mfa_required is not None:
        parts.append(f"mfa_required={r.mfa_required}")
    if r.allowed_methods is not None:
        parts.append(f"allowed_methods={','.join(sorted(r.allowed_methods))}")
    if r.remember_device is not None:
        parts.append(f"remember_device={r.remember_device}")
    if r.remember_days is not None:
        parts.append(f"remember_days={r.remember_days}")
    return " ".join(parts)
