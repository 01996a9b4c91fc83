"""Group policy rules on top of the global policy: first match wins, audited, shared."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mfad.core.clock import Clock
from mfad.core.errors import InvalidInput
from mfad.core.model import Method, MfaRequired, Policy, PolicyRule, User, UserId
from mfad.core.policy import PolicyService
from mfad.core.ports import AuditFilter, Store


def member(*groups: str) -> User:
    return User(id=UserId(1), username="u", disabled=False, created_at=datetime(2026, 1, 1, tzinfo=UTC),
                groups=groups)


async def test_first_matching_rule_wins_and_the_global_policy_is_the_default(store: Store, clock: Clock) -> None:
    ticks = [0.0]
    service = PolicyService(store, clock, Policy(remember_device=True), monotonic=lambda: ticks[0])
    await service.seed()
    await service.set_rule(PolicyRule(name="contractors", groups=("VPN-Contractors",),
                                      allowed_methods=frozenset({Method.PASSKEY, Method.TOTP}),
                                      remember_device=False), position=None, actor="admin")
    await service.set_rule(PolicyRule(name="staff", groups=("staff",), remember_days=30), position=None,
                           actor="admin")
    await service.set_rule(PolicyRule(name="lab", clients=("lab-switch",), mfa_required=MfaRequired.OFF),
                           position=0, actor="admin")

    contractor = await service.effective(member("vpn-contractors", "staff"), "vpn")
    assert contractor.allowed_methods == {Method.PASSKEY, Method.TOTP} and not contractor.remember_device
    staff = await service.effective(member("staff"), "vpn")
    assert staff.remember_device and staff.remember_days == 30 and staff.allowed_methods == frozenset(Method)
    assert (await service.effective(member("staff"), "lab-switch")).mfa_required is MfaRequired.OFF
    assert await service.effective(member("other"), "vpn") == await service.current()
    assert await service.effective(None, None) == await service.current()

    # Replacing a rule keeps its place; the change and the deletion are audited.
    await service.set_rule(PolicyRule(name="staff", groups=("staff",), remember_days=2), position=None,
                           actor="admin")
    assert [r.name for r in await service.rules()] == ["lab", "contractors", "staff"]
    assert await service.delete_rule("lab", actor="admin")
    assert not await service.delete_rule("lab", actor="admin")
    events = [r.event.event for r in await store.query_audit(AuditFilter(limit=20))]
    assert events.count("policy_rule_changed") == 4 and events.count("policy_rule_deleted") == 1


async def test_another_instance_sees_a_rule_change_after_the_cache(store: Store, clock: Clock) -> None:
    ticks = [0.0]
    reader = PolicyService(store, clock, Policy(), monotonic=lambda: ticks[0])
    writer = PolicyService(store, clock, Policy())
    assert await reader.effective(member("staff"), None) == Policy()
    await writer.set_rule(PolicyRule(name="staff", groups=("staff",), mfa_required=MfaRequired.OFF),
                          position=None, actor="admin")
    assert (await reader.effective(member("staff"), None)).mfa_required is MfaRequired.ALL  # cached
    ticks[0] += 3
    assert (await reader.effective(member("staff"), None)).mfa_required is MfaRequired.OFF


@pytest.mark.parametrize("rule", [
    PolicyRule(name=""),
    PolicyRule(name="x", allowed_methods=frozenset()),
    PolicyRule(name="x", remember_days=0),
    PolicyRule(name="x", groups=("",)),
])
async def test_bad_rules_name_the_field(store: Store, clock: Clock, rule: PolicyRule) -> None:
    with pytest.raises(InvalidInput):
        await PolicyService(store, clock, Policy()).set_rule(rule, position=None, actor="admin")
    assert await store.load_policy_rules() == []
