"""Dependencies point one way (STYLE.md, "The shape").

Walks the imports of every module — including imports inside functions and
``TYPE_CHECKING`` blocks, and relative imports — and fails when a module under
``mfad/core/`` reaches a transport, a database driver, a metrics library, the config
file or an outer mfad package, or when modules or packages of ``mfad/`` import each
other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "mfad" / "core"

FORBIDDEN = (
    "grpc", "pyrad", "asyncpg", "aiosqlite", "sqlite3", "prometheus_client", "aiohttp", "aiosmtplib",
    "mfad.api", "mfad.radius", "mfad.store", "mfad.observability", "mfad.cli", "mfad.config", "mfad.mail",
    "mfad.app", "mfad.workers", "mfad.directory", "ldap3",
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
    assert forbidden("mfad.config") and forbidden("mfad.mail.smtp")
    assert not forbidden("grpcio_like") and not forbidden("mfad.storeroom") and not forbidden("mfad.configs")
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


# --- no import cycles ---------------------------------------------------------------------

MFAD_FILES = sorted(p for p in (ROOT / "mfad").rglob("*.py") if "_proto" not in p.parts)


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    """Module → the mfad modules it imports. Importing ``a.b.c`` runs ``a.b`` first, so a
    module depends on the packages above what it imports, too (never on its own parents,
    which Python has imported already by the time it runs)."""
    known = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps: set[str] = set()
        for imported in imported_modules(path):
            parts = imported.split(".")
            for i in range(len(parts), 0, -1):
                target = ".".join(parts[:i])
                if target in known and target != name and target not in parents:
                    deps.add(target)
        graph[name] = deps
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same edges between mfad's top-level parts (``mfad.core``, ``mfad.config`` …)."""
    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(part(module), set()).update(part(d) for d in deps if part(d) != part(module))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_of_mfad_imports_in_a_circle() -> None:
    assert cycles(import_graph(MFAD_FILES)) == []


def test_no_part_of_mfad_imports_in_a_circle() -> None:
    assert cycles(package_graph(import_graph(MFAD_FILES))) == []


#: What each part of mfad may import (docs/architecture.md, "The packages").
ALLOWED = {
    "mfad.core": set(),
    "mfad.net": set(),
    "mfad.observability": set(),
    "mfad.config": {"mfad.core", "mfad.net"},
    "mfad.store": {"mfad.core", "mfad.config"},
    "mfad.mail": {"mfad.core", "mfad.config"},
    "mfad.radius": {"mfad.core", "mfad.config", "mfad.net"},
    "mfad.directory": {"mfad.core", "mfad.config", "mfad.net", "mfad.radius"},
    "mfad.api": {"mfad.core", "mfad.config", "mfad.net", "mfad.observability"},
    "mfad.lifecycle": {"mfad.observability"},
}


def test_each_part_of_mfad_imports_only_what_the_architecture_allows() -> None:
    parts = package_graph(import_graph(MFAD_FILES))
    beyond = {part: sorted(parts.get(part, set()) - allowed) for part, allowed in ALLOWED.items()}
    assert {part: found for part, found in beyond.items() if found} == {}
    assert set(ALLOWED) <= set(parts)


def test_the_cycle_finder_finds_cycles(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert package_graph({"mfad.core.x": {"mfad.config"}, "mfad.config": {"mfad.core.model"}}) == {
        "mfad.core": {"mfad.config"}, "mfad.config": {"mfad.core"}}


# --- narrow ports ---------------------------------------------------------------------------

#: Only the composition root (``Mfa``) and the port's own module name the whole store.
WHOLE_STORE_ALLOWED = {"mfad/core/ports.py", "mfad/core/service.py"}


def names_the_whole_store(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return any((isinstance(node, ast.Name) and node.id == "Store")
               or (isinstance(node, ast.alias) and node.name == "Store")
               or (isinstance(node, ast.Constant) and isinstance(node.value, str)
                   and node.value.strip() in ("Store", "ports.Store"))
               for node in ast.walk(tree))


@pytest.mark.parametrize("path", [p for p in CORE_FILES if str(p.relative_to(ROOT)) not in WHOLE_STORE_ALLOWED],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_each_core_service_takes_only_the_store_slices_it_uses(path: Path) -> None:
    assert not names_the_whole_store(path), f"{path.relative_to(ROOT)} is typed to the whole Store"


def test_the_whole_store_check_sees_an_annotation(tmp_path: Path) -> None:
    wide = tmp_path / "wide.py"
    wide.write_text("from mfad.core.ports import Store\nclass A:\n    def __init__(self, store: Store) -> None: ...\n")
    narrow = tmp_path / "narrow.py"
    narrow.write_text("from mfad.core.ports import UserStore\nclass A:\n"
                      "    def __init__(self, store: UserStore) -> None: ...\n")
    assert names_the_whole_store(wide) and not names_the_whole_store(narrow)
