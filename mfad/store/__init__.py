"""Store engines behind the core's ``Store`` interface; ``open_store`` picks one by URL."""

from __future__ import annotations

from urllib.parse import unquote

from mfad.config import StorageSettings
from mfad.core.errors import ConfigError
from mfad.core.ports import Store, StoreMetrics


async def open_store(settings: StorageSettings, *, metrics: StoreMetrics | None = None,
                     schema: str | None = None, readonly: bool = False) -> Store:
    """The engine ``settings.url`` names; ``readonly``: an existing database, opened so that
    nothing can change it (the pre-flight's view)."""
    url = settings.url
    if url.startswith("sqlite:///"):
        from mfad.store.sqlite import SqliteStore

        path = unquote(url[len("sqlite:///"):])  # sqlite:///rel/path or sqlite:////abs/path
        return await SqliteStore.open(path, timeout=settings.timeout_seconds, metrics=metrics, readonly=readonly)
    if url.startswith(("postgresql://", "postgres://")):
        from mfad.store.postgres import PostgresStore

        return await PostgresStore.open(url, pool_size=settings.pool_size, timeout=settings.timeout_seconds,
                                        schema=schema, metrics=metrics, readonly=readonly)
    raise ConfigError([f"storage.url: unsupported scheme in {url!r}"])
