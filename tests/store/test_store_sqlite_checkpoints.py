"""SQLite copies its WAL back after commits, never on a timer of its own: an idle store
does nothing, a commit asks for one checkpoint, closing leaves none behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from mfad.core.model import AuditEvent
from mfad.store.sqlite import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_checkpoints_follow_commits_and_an_idle_store_runs_none(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "mfad.sqlite3")
    try:
        await store.migrate()
        await store.ping()
        await store.load_user_by_name("nobody")
        assert not store.checkpoint_scheduled  # reads and an idle loop schedule nothing
        await store.append_audit(NOW, [AuditEvent(event="test", outcome="ok")])
        assert store.checkpoint_scheduled
        await store.append_audit(NOW, [AuditEvent(event="test", outcome="ok")])
        assert store.checkpoint_scheduled  # still the one: the commits of that second share it
        writes = [asyncio.create_task(store.append_audit(NOW, [AuditEvent(event="test", outcome="ok")]))
                  for _ in range(5)]
        await asyncio.gather(*writes)
    finally:
        await store.aclose()
    assert not store.checkpoint_scheduled
    reopened = await SqliteStore.open(tmp_path / "mfad.sqlite3")
    try:
        assert not reopened.checkpoint_scheduled
    finally:
        await reopened.aclose()
