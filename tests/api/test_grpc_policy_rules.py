"""Group policy rules managed through the Admin API and ``mfactl policy rule``, on both store
engines: every change audited, bad input named, and a change made through one instance
applied by another instance's gRPC front end on the same database."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from mfactl_runner import run_mfactl
from prometheus_client import CollectorRegistry
from real_servicers import GrpcMfad, grpc_mfad  # noqa: F401

from mfad.api.daemon import grpc_service
from mfad.config import Config, GrpcSettings
from mfad.core.model import Role
from mfad.core.ports import AuditFilter
from mfad.core.service import Mfa
from mfad_client import AlreadyExists, InvalidArgument, Method, MfadClient, MfaRequired, NotFound, PolicyRule
from mfad_client import SignInOutcome

PASSWORD = "correct horse battery"


async def test_mfactl_adds_lists_shows_updates_moves_and_removes_rules(grpc_mfad: GrpcMfad) -> None:
    token = grpc_mfad.tokens[Role.ADMIN]
    admin = grpc_mfad.admin.admin
    await admin.add_policy_rule(PolicyRule(name="staff", groups=("staff",), remember_days=30))

    added = await run_mfactl(grpc_mfad.address, token, "--json", "policy", "rule", "add", "contractors",
                             "--position", "0", "--groups", "vpn-contractors", "--allowed-methods", "passkey,totp",
                             "--remember-device", "false")
    assert added.returncode == 0, added.stderr
    assert [r["name"] for r in json.loads(added.stdout)["items"]] == ["contractors", "staff"]

    updated = await run_mfactl(grpc_mfad.address, token, "policy", "rule", "update", "contractors",
                               "--clients", "vpn,grpc", "--mfa-required", "all", "--inherit", "remember-device")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.splitlines()[1].split() == ["0", "contractors", "vpn-contractors", "vpn,grpc", "all",
                                                      "totp,passkey", "-", "-"]

    moved = await run_mfactl(grpc_mfad.address, token, "policy", "rule", "move", "contractors", "1")
    assert moved.returncode == 0, moved.stderr
    shown = await run_mfactl(grpc_mfad.address, token, "--json", "policy", "rule", "show", "contractors")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"position": 1, "rule": {
        "name": "contractors", "groups": ["vpn-contractors"], "clients": ["vpn", "grpc"], "mfa_required": "all",
        "allowed_methods": ["totp", "passkey"], "remember_device": None, "remember_days": None}}

    removed = await run_mfactl(grpc_mfad.address, token, "policy", "rule", "remove", "staff")
    assert removed.returncode == 0, removed.stderr
    listed = await run_mfactl(grpc_mfad.address, token, "--json", "policy", "rule", "list")
    assert [r["name"] for r in json.loads(listed.stdout)["items"]] == ["contractors"]
    gone = await run_mfactl(grpc_mfad.address, token, "policy", "rule", "remove", "staff")
    assert gone.returncode == 1 and "staff" in gone.stderr

    rows = [r.event for r in await grpc_mfad.mfa.store.query_audit(AuditFilter(limit=50))]
    changes = [(e.event, e.actor) for e in rows if e.event.startswith("policy_rule_")]
    assert sorted(changes) == sorted([("policy_rule_changed", "test-admin")] * 4
                                     + [("policy_rule_deleted", "test-admin")])


async def test_bad_rule_requests_are_refused_and_name_the_field(grpc_mfad: GrpcMfad) -> None:
    admin = grpc_mfad.admin.admin
    await admin.add_policy_rule(PolicyRule(name="lab", clients=("lab-vpn",), mfa_required=MfaRequired.OFF))
    with pytest.raises(AlreadyExists):
        await admin.add_policy_rule(PolicyRule(name="lab", remember_days=3))
    for bad, field in ((PolicyRule(name="x", remember_days=0), "remember_days"),
                       (PolicyRule(name="x", allowed_methods=()), "allowed_methods"),
                       (PolicyRule(name="", remember_days=3), "name"),
                       (PolicyRule(name="x", groups=("",), remember_days=3), "groups")):
        with pytest.raises(InvalidArgument, match=field):
            await admin.add_policy_rule(bad)
    with pytest.raises(InvalidArgument, match="position"):
        await admin.add_policy_rule(PolicyRule(name="y", remember_days=3), position=5)
    with pytest.raises(InvalidArgument, match="groups"):
        await admin.update_policy_rule("lab", inherit=["groups"])
    with pytest.raises(InvalidArgument, match="mfa_required"):
        await admin.update_policy_rule("lab", mfa_required=MfaRequired.ALL, inherit=["mfa_required"])
    with pytest.raises(InvalidArgument):
        await admin.update_policy_rule("lab")  # nothing to change
    for call in (admin.get_policy_rule("nope"), admin.update_policy_rule("nope", remember_days=3),
                 admin.move_policy_rule("nope", 0), admin.delete_policy_rule("nope")):
        with pytest.raises(NotFound):
            await call
    assert await admin.list_policy_rules() == [
        PolicyRule(name="lab", clients=("lab-vpn",), mfa_required=MfaRequired.OFF)]
    events = [r.event.event for r in await grpc_mfad.mfa.store.query_audit(AuditFilter(limit=50))]
    assert events.count("policy_rule_changed") == 1 and "policy_rule_deleted" not in events


@dataclasses.dataclass
class Instance:
    mfa: Mfa
    client: MfadClient
    ticks: list[float]


@pytest.fixture
async def second_instance(store_opener: Callable[..., Awaitable[Any]], mfa_factory: Callable[..., Awaitable[Mfa]],
                          config: Config, grpc_mfad: GrpcMfad) -> AsyncIterator[Instance]:
    """Another instance: its own store connections on the same database, its own gRPC
    front end, and a policy cache whose age the test moves."""
    ticks = [0.0]
    core = await mfa_factory(store=await store_opener(), monotonic=lambda: ticks[0])
    server = grpc_service(core, dataclasses.replace(config, grpc=GrpcSettings(listen=["127.0.0.1:0"],
                                                                              shutdown_grace_seconds=1.0)),
                          CollectorRegistry())
    await server.start()
    client = MfadClient(server.addresses[0], token=grpc_mfad.tokens[Role.PORTAL], timeout=10.0)
    yield Instance(mfa=core, client=client, ticks=ticks)
    await client.close()
    await server.aclose()


async def test_a_rule_change_through_one_instance_applies_on_another(
        grpc_mfad: GrpcMfad, second_instance: Instance) -> None:
    await grpc_mfad.mfa.users.create("alice", PASSWORD, actor="test")  # no device bound yet
    other = second_instance
    assert (await other.client.auth.begin_sign_in("alice", PASSWORD)).outcome is SignInOutcome.ENROLMENT_REQUIRED

    token = grpc_mfad.tokens[Role.ADMIN]
    added = await run_mfactl(grpc_mfad.address, token, "policy", "rule", "add", "portal-off",
                             "--clients", "test-portal", "--mfa-required", "off")
    assert added.returncode == 0, added.stderr
    # Within the cache's 2 seconds the other instance may still apply the old rules ...
    assert (await other.client.auth.begin_sign_in("alice", PASSWORD)).outcome is SignInOutcome.ENROLMENT_REQUIRED
    other.ticks[0] += 2.5  # ... and after them it applies the new one.
    assert (await other.client.auth.begin_sign_in("alice", PASSWORD)).outcome is SignInOutcome.ALLOWED

    await grpc_mfad.admin.admin.update_policy_rule("portal-off", inherit=["mfa_required"],
                                                   allowed_methods=[Method.TOTP])
    other.ticks[0] += 2.5
    assert (await other.client.auth.begin_sign_in("alice", PASSWORD)).outcome is SignInOutcome.ENROLMENT_REQUIRED
    assert (await other.mfa.policy.effective(None, "test-portal")).allowed_methods == {"totp"}
    await grpc_mfad.admin.admin.delete_policy_rule("portal-off")
    other.ticks[0] += 2.5
    assert await other.mfa.policy.rules() == []
