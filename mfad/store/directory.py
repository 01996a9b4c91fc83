"""The store's part for directory users and group policy rules.

Mixed into ``SqlStore``; the SQL is shared by both engines (``$n`` parameters).

Guarantees:
- a directory user is created once: ``INSERT … ON CONFLICT DO NOTHING`` then a read, so
  two instances provisioning one name at once both get the same row; the audit row is
  written in the creating transaction only;
- profile and groups are rewritten only when they changed (no write per sign-in);
- the rule list is replaced whole in one transaction with its audit row, so every
  instance reads either the old list or the new one, never a mix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

from mfad.core.directory import DirectoryEntry
from mfad.core.model import AuditEvent, Method, MfaRequired, PolicyRule, User, UserId
from mfad.store.sql import USER_COLUMNS, Row, SqlParts, user_from

RULE_COLUMNS = ("name, match_groups, match_clients, mfa_required, allowed_methods, remember_device, "
                "remember_days")


class DirectorySql(SqlParts):
    """Implements ``mfad.core.ports.DirectoryUserStore`` and ``PolicyRuleStore``."""

    async def provision_user(self, username: str, directory: str, entry: DirectoryEntry, now: datetime,
                             audit: Callable[[UserId], Sequence[AuditEvent]]) -> tuple[User, bool]:
        """The user named ``username``, created from ``entry`` when absent: (user, created)."""
        at = now.timestamp()
        groups = json.dumps(list(entry.groups))
        async with self._timed("provision_user", write=True) as tx:
            row = await tx.fetchrow(
                "INSERT INTO users (username, password_hash, disabled, created_at, updated_at, directory, "
                "display_name, profile_email, groups) VALUES ($1, NULL, 0, $2, $2, $3, $4, $5, $6) "
                f"ON CONFLICT (username) DO NOTHING RETURNING {USER_COLUMNS}",
                username, at, directory, entry.display_name, entry.email, groups)
            if row is not None:
                user = user_from(row)
                await self._audit(tx, now, audit(user.id))
                return user, True
            row = await tx.fetchrow(f"SELECT {USER_COLUMNS} FROM users WHERE username = $1", username)
        assert row is not None
        return user_from(row), False

    async def update_directory_profile(self, user_id: UserId, entry: DirectoryEntry, now: datetime) -> None:
        async with self._timed("update_directory_profile", write=True) as tx:
            await tx.execute(
                "UPDATE users SET display_name = $2, profile_email = $3, groups = $4, updated_at = $5 "
                "WHERE id = $1 AND (display_name IS DISTINCT FROM $2 OR profile_email IS DISTINCT FROM $3 "
                "OR groups IS DISTINCT FROM $4)",
                user_id, entry.display_name, entry.email, json.dumps(list(entry.groups)), now.timestamp())

    async def list_directory_users(self, directory: str, after_id: int, limit: int) -> list[User]:
        async with self._timed("list_directory_users", write=False) as tx:
            rows = await tx.fetch(f"SELECT {USER_COLUMNS} FROM users WHERE directory = $1 AND id > $2 "
                                  "ORDER BY id LIMIT $3", directory, after_id, limit)
        return [user_from(r) for r in rows]

    async def load_policy_rules(self) -> list[PolicyRule]:
        async with self._timed("load_policy_rules", write=False) as tx:
            rows = await tx.fetch(f"SELECT {RULE_COLUMNS} FROM policy_rules ORDER BY position")
        return [_rule_from(r) for r in rows]

    async def save_policy_rules(self, rules: Sequence[PolicyRule], now: datetime,
                                audit: Sequence[AuditEvent]) -> None:
        at = now.timestamp()
        async with self._timed("save_policy_rules", write=True) as tx:
            await tx.execute("DELETE FROM policy_rules")
            for position, r in enumerate(rules):
                methods = None if r.allowed_methods is None else json.dumps(sorted(r.allowed_methods))
                await tx.execute(
                    f"INSERT INTO policy_rules (position, {RULE_COLUMNS}, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    position, r.name, json.dumps(list(r.groups)), json.dumps(list(r.clients)),
                    None if r.mfa_required is None else r.mfa_required.value, methods,
                    None if r.remember_device is None else int(r.remember_device), r.remember_days, at)
            await self._audit(tx, now, audit)


def _rule_from(row: Row) -> PolicyRule:
    methods = row["allowed_methods"]
    remember = row["remember_device"]
    return PolicyRule(name=row["name"], groups=tuple(json.loads(row["match_groups"])),
                      clients=tuple(json.loads(row["match_clients"])),
                      mfa_required=None if row["mfa_required"] is None else MfaRequired(row["mfa_required"]),
                      allowed_methods=None if methods is None else frozenset(Method(m) for m in json.loads(methods)),
                      remember_device=None if remember is None else bool(remember),
                      remember_days=row["remember_days"])
