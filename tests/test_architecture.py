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
    "mfad.radius": {"mfad.core", "mfad.config", "mfad.net", "mfad.observability"},
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


# --- rules that keep fixed what was fixed ---------------------------------------------------

def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


#: The store modules that are one engine (they may say which); the rest is the shared layer.
ENGINE_MODULES = {"mfad/store/sqlite.py", "mfad/store/postgres.py", "mfad/store/__init__.py"}
SHARED_STORE_FILES = sorted(p for p in (ROOT / "mfad" / "store").rglob("*.py") if relative(p) not in ENGINE_MODULES)


def engine_branches(tree: ast.AST) -> list[int]:
    """Lines that compare an ``engine`` (``self.engine == "postgres"``) or name an engine class."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if (isinstance(operand, ast.Attribute) and operand.attr == "engine") or (
                        isinstance(operand, ast.Name) and operand.id == "engine"):
                    lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ("SqliteStore", "PostgresStore"):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", SHARED_STORE_FILES, ids=relative)
def test_the_shared_store_layer_does_not_branch_on_the_engine(path: Path) -> None:
    """Dialect differences live in each engine's SQL table (``dialect``), not in ``if``s."""
    assert engine_branches(parsed(path)) == [], f"{relative(path)} branches on the engine"


def message_matches(tree: ast.AST) -> list[int]:
    """Lines that look for text inside an exception's message (``"UNIQUE" in str(exc)``)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            for operand in node.comparators:
                if (isinstance(operand, ast.Call) and isinstance(operand.func, ast.Name)
                        and operand.func.id in ("str", "repr")) or (
                        isinstance(operand, ast.Subscript) and isinstance(operand.value, ast.Attribute)
                        and operand.value.attr == "args"):
                    lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "mfad" / "store").rglob("*.py")), ids=relative)
def test_store_errors_are_recognised_by_their_code_never_their_message(path: Path) -> None:
    assert message_matches(parsed(path)) == [], f"{relative(path)} matches an error message"


def test_the_rule_checkers_see_what_they_should() -> None:
    assert engine_branches(ast.parse("if self.engine == 'postgres':\n    pass\n")) == [1]
    assert engine_branches(ast.parse("x = isinstance(s, SqliteStore)\n")) == [1]
    assert engine_branches(ast.parse("x = self.dialect['lock']\n")) == []
    assert message_matches(ast.parse("ok = 'UNIQUE' in str(exc)\n")) == [1]
    assert message_matches(ast.parse("ok = 'locked' in exc.args[0]\n")) == [1]
    assert message_matches(ast.parse("ok = code in (1, 2)\n")) == []
    assert address_parsing(ast.parse("host, _, port = text.rpartition(':')\n")) == [1]
    assert address_parsing(ast.parse("def is_loopback(h): ...\n")) == [1]
    assert polling_loops(ast.parse("async def f():\n    while True:\n        await asyncio.sleep(1)\n")) == ["f"]
    assert polling_loops(ast.parse("async def f():\n    while x:\n        await asyncio.sleep(0)\n")) == []
    assert polling_loops(ast.parse("def g():\n    while x:\n        time.sleep(0.1)\n")) == ["g"]
    assert starts_itself(ast.parse("class S:\n    async def run(self):\n        await self.start()\n")) == ["S"]


MFAD_SOURCES = [p for p in MFAD_FILES if relative(p) != "mfad/net.py"]

#: Colons split there, but not "host:port": an otpauth label ("issuer:account"), an email
#: address literal's domain ("[192.0.2.1]").
NOT_ADDRESSES = {"mfad/importers.py", "mfad/core/addresses.py"}


def address_parsing(tree: ast.AST) -> list[int]:
    """Lines that split ``host:port`` or define a parser or loopback test of their own."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.lstrip("_") in (
                "parse_address", "split_host_port", "is_loopback"):
            lines.append(node.lineno)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("rpartition", "rsplit") and node.args
              and isinstance(node.args[0], ast.Constant) and node.args[0].value == ":"):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", [p for p in MFAD_SOURCES if relative(p) not in NOT_ADDRESSES], ids=relative)
def test_one_address_parser(path: Path) -> None:
    """``host:port`` and loopback are decided in ``mfad/net.py`` only (config, RADIUS and gRPC
    each add their own rule on top of it)."""
    assert address_parsing(parsed(path)) == [], f"{relative(path)} parses addresses itself"


#: Loops that wait on something no event can announce, with why.
POLLING_ALLOWED = {
    # BEGIN IMMEDIATE while another process holds SQLite's file lock: SQLite offers no
    # notification, its own busy handler sleeps too (in the commit thread, not the loop).
    ("mfad/store/sqlite.py", "_begin_waiting"),
    # Reconnecting the approval LISTEN connection after it was lost: the wait between tries
    # is a back-off, not a look at state (while connected it waits on the lost event).
    ("mfad/store/postgres.py", "_listen"),
    # An accept that failed (out of file descriptors): a short pause before the next accept
    # keeps the loop from spinning; accepting itself waits on the socket.
    ("mfad/radius/radsec.py", "_accept_loop"),
}


def polling_loops(tree: ast.AST) -> list[str]:
    """Functions with a ``while`` loop that sleeps (``asyncio.sleep(x)``, x ≠ 0, or ``time.sleep``)."""
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for loop in ast.walk(function):
            if not isinstance(loop, ast.While):
                continue
            for call in ast.walk(loop):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "sleep"
                        and not (call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value == 0)):
                    found.append(function.name)
                    break
            if function.name in found:
                break
    return found


@pytest.mark.parametrize("path", MFAD_FILES, ids=relative)
def test_no_polling_loops(path: Path) -> None:
    """Waiting is on events, conditions or a timer, not on a loop that sleeps and looks."""
    loops = [name for name in polling_loops(parsed(path)) if (relative(path), name) not in POLLING_ALLOWED]
    assert loops == [], f"{relative(path)}: {loops} poll"


def starts_itself(tree: ast.AST) -> list[str]:
    """Classes whose ``run()`` calls ``self.start()``."""
    found = []
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for method in cls.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and method.name == "run" and any(
                    isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "start"
                    and isinstance(c.func.value, ast.Name) and c.func.value.id == "self"
                    for c in ast.walk(method)):
                found.append(cls.name)
    return found


def services() -> list[type]:
    from mfad_portal import PortalService

    from mfad.api.server import GrpcServer
    from mfad.app import Housekeeping
    from mfad.core.outbox import OutboxSender
    from mfad.observability.http import MetricsHttpServer
    from mfad.radius.accounting import AccountingServer
    from mfad.radius.daemon import RadiusService
    from mfad.radius.radsec import RadsecServer
    from mfad.radius.server import RadiusServer
    from mfad.reload import Reloader
    return [GrpcServer, Housekeeping, OutboxSender, MetricsHttpServer, AccountingServer, RadiusService,
            RadsecServer, RadiusServer, Reloader, PortalService]


def test_every_long_running_piece_is_a_service_whose_run_does_not_start_it() -> None:
    import inspect

    for cls in services():
        for name in ("start", "run", "aclose"):
            assert inspect.iscoroutinefunction(getattr(cls, name, None)), f"{cls.__name__}.{name}"
        source = Path(inspect.getfile(cls))
        assert cls.__name__ not in starts_itself(parsed(source)), f"{cls.__name__}.run() starts it again"


@pytest.mark.parametrize("name", ["mfad/app.py", "mfad/lifecycle.py"])
def test_the_lifecycle_calls_services_by_their_protocol_not_by_getattr(name: str) -> None:
    calls = [node.lineno for node in ast.walk(parsed(ROOT / name)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")]
    assert calls == [], f"{name} looks methods up by name at lines {calls}"


def test_every_config_error_is_a_config_error_and_a_value_error() -> None:
    """``mfad check-config`` and ``serve`` catch ConfigError (exit 2, every problem listed):
    each part's config fault must be one."""
    import importlib

    from mfad.core.errors import ConfigError

    defined = [(module_name(p), node.name) for p in MFAD_FILES for node in ast.walk(parsed(p))
               if isinstance(node, ast.ClassDef) and node.name.endswith("ConfigError")]
    assert ("mfad.radius.errors", "RadiusConfigError") in defined
    for module, name in defined:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, ConfigError) and issubclass(cls, ValueError), f"{module}.{name}"
