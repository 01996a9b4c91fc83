"""Numbered SQL migrations, one folder per engine: ``NNNN_name.sql``."""

from __future__ import annotations

from importlib import resources


def migrations(engine: str) -> list[tuple[int, str]]:
    """(version, SQL) for every migration of ``engine``, in order."""
    folder = resources.files(__package__).joinpath(engine)
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version(engine: str) -> int:
    return max((v for v, _ in migrations(engine)), default=0)
