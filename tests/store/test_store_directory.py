"""Directory users and group policy rules in the store, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mfad.core.directory import DirectoryEntry
from mfad.core.model import AuditEvent, Method, MfaRequired, PolicyRule, UserId
from mfad.core.ports import AuditFilter, Store
from mfad.core.clock import Clock

Opener = Callable[..., Awaitable[Store]]


def created(user_id: UserId) -> list[AuditEvent]:
    return [AuditEvent(event="user_provisioned", outcome="ok", user_id=user_id, username="dave")]


async def test_a_directory_user_is_provisioned_once(store: Store, store_opener: Opener, clock: Clock) -> None:
    other = await store_opener()
    entry = DirectoryEntry(username="dave", display_name="Dave Staff", email="dave@example.org",
                           groups=("staff", "vpn-contractors"))
    results = await asyncio.gather(*(s.provision_user("dave", "corp", entry, clock.now(), created)
                                     for s in (store, other, store, other)))
    assert sum(made for _, made in results) == 1
    assert len({u.id for u, _ in results}) == 1
    user = await store.load_user_by_name("dave")
    assert user is not None and user.password_hash is None
    assert (user.directory, user.display_name, user.profile_email, user.groups) == (
        "corp", "Dave Staff", "dave@example.org", ("staff", "vpn-contractors"))
    audit = await store.query_audit(AuditFilter(event="user_provisioned"))
    assert len(audit) == 1
    # The sign-in path sees the same record.
    subject = await store.load_subject("dave", None)
    assert subject.user == user


async def test_profile_updates_and_listing(store: Store, clock: Clock) -> None:
    entry = DirectoryEntry(username="dave", display_name="Dave", email=None, groups=("staff",))
    user, _ = await store.provision_user("dave", "corp", entry, clock.now(), created)
    await store.create_user("local", None, clock.now(), lambda uid: [])
    await store.update_directory_profile(user.id, DirectoryEntry(username="dave", display_name="Dave S.",
                                                                 email="d@example.org", groups=()), clock.now())
    again = await store.load_user(user.id)
    assert again is not None and (again.display_name, again.profile_email, again.groups) == (
        "Dave S.", "d@example.org", ())
    assert [u.username for u in await store.list_directory_users("corp", 0, 10)] == ["dave"]
    assert await store.list_directory_users("other", 0, 10) == []


async def test_policy_rules_are_replaced_whole_and_read_in_order(store: Store, store_opener: Opener,
                                                                 clock: Clock) -> None:
    rules = [
        PolicyRule(name="contractors", groups=("vpn-contractors",), allowed_methods=frozenset({Method.PASSKEY,
                                                                                              Method.TOTP}),
                   remember_device=False),
        PolicyRule(name="lab", clients=("lab-switch",), mfa_required=MfaRequired.OFF, remember_days=3),
    ]
    await store.save_policy_rules(rules, clock.now(), [AuditEvent(event="policy_rule_changed", outcome="ok")])
    other = await store_opener()
    assert await other.load_policy_rules() == rules
    await other.save_policy_rules(rules[::-1], clock.now(), [])
    assert [r.name for r in await store.load_policy_rules()] == ["lab", "contractors"]
    await store.save_policy_rules([], clock.now(), [])
    assert await other.load_policy_rules() == []


# --- fitting into RADIUS networks (migration 0016) -----------------------------------------
async def test_a_challenge_keeps_the_upstream_reply_attributes_byte_for_byte(store: Store, clock: Clock) -> None:
    from datetime import timedelta

    from mfad.core.model import Challenge

    now = clock.now()
    user = await store.create_user("erin", None, now, lambda uid: [])
    carried = (("Filter-Id", b"vpn-acl"), ("Class", bytes(range(256))[:253]), ("Class", b""))
    for id_hash, reply in (("a" * 64, carried), ("b" * 64, ())):
        await store.insert_challenge(Challenge(id_hash=id_hash, user_id=user.id, purpose="signin",
                                               methods=frozenset({Method.TOTP}), created_at=now,
                                               expires_at=now + timedelta(minutes=2), tries_left=3, source=None,
                                               protocol="radius", first_factor_reply=reply), [])
        loaded = await store.load_challenge(id_hash)
        assert loaded is not None and loaded.first_factor_reply == reply


async def test_signed_radius_clients_are_remembered_once(store: Store) -> None:
    assert await store.load_radius_signed_clients() == set()
    await store.save_radius_signed_client("vpn", "10.0.0.5", 1.0)
    await store.save_radius_signed_client("vpn", "10.0.0.5", 2.0)  # again: no conflict
    await store.save_radius_signed_client("vpn", "10.0.0.6", 3.0)
    assert await store.load_radius_signed_clients() == {("vpn", "10.0.0.5"), ("vpn", "10.0.0.6")}
