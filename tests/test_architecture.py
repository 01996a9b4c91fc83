"""The core knows nothing of transports, drivers or metrics (STYLE.md, "The shape").

Walks the imports of every module under ``mfad/core/`` — including imports inside
functions and ``TYPE_CHECKING`` blocks, and relative imports — and fails on any that
reaches a transport, a database driver, a metrics library or an outer mfad package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "mfad" / "core"

FORBIDDEN = (
    "grpc", "pyrad", "asyncpg", "aiosqlite", "sqlite3", "prometheus_client", "aiohttp",
    "mfad.api", "mfad.radius", "mfad.store", "mfad.observability", "mfad.cli",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every module a file imports, with relative imports resolved to absolute names."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from mfad import store" imports mfad.store.
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
    return found


def forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_the_core_has_modules() -> None:
    assert {"model", "signin", "totp", "ports"} <= {p.stem for p in CORE_FILES}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_transport_driver_or_metrics(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if forbidden(m))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    assert forbidden("grpc.aio") and forbidden("mfad.store.base") and forbidden("sqlite3")
    assert not forbidden("grpcio_like") and not forbidden("mfad.storeroom") and not forbidden("mfad.config")
    assert module_name(CORE / "signin.py") == "mfad.core.signin"
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from .. import store\n"
        "from ..radius.codec import decode\n"
        "from . import totp\n"
        "import importlib\n"
        "def late():\n"
        "    import asyncpg\n"
        "    return importlib.import_module('prometheus_client')\n")
    found = imported_modules(sample, "mfad.core.sample")
    assert {"mfad.store", "mfad.radius.codec", "mfad.core.totp", "asyncpg", "prometheus_client"} <= found
    assert sorted(m for m in found if forbidden(m)) == ["asyncpg", "mfad.radius.codec", "mfad.radius.codec.decode",
                                                          "mfad.store", "prometheus_client"]
