"""Floors by dependency: chirp_core < the services (graph, tweets, timeline, the edge) < chirp_app <
bench. Every module of those packages is parsed, and every import counts, at module level or
inside a function: nothing imports a higher floor, services do not import each other, chirp_core
imports no service and no chirp_app, and no modules import each other in a ring."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {
    "chirp_core": 0,
    "graph_svc": 1,
    "tweets_svc": 1,
    "timeline_svc": 1,
    "edge_proxy": 1,
    "chirp_app": 2,
    "bench": 3,
}
SERVICES = {package for package, floor in FLOORS.items() if floor == 1}
# Imports from one service into another that are being moved out of the way right now, as
# (importing package, imported package). Each one must go; none may be added.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()
# The rules of each service (the layer between the servicer and the storage): they see no vendor.
RULES = [
    "graph_svc/service.py",
    "tweets_svc/service.py",
    "tweets_svc/media/service.py",
    *(f"timeline_svc/{name}.py" for name in ("service", "home", "pull", "fanout", "cache", "visibility")),
]
VENDORS = ("grpc", "psycopg", "psycopg_pool", "redis", "boto3", "botocore", "aiohttp")

Graph = dict[str, set[str]]


def modules_of(root: Path, packages: list[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` under `root`."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours `name` is, or is in (an attribute of a module, a module's submodule)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours `module` imports anywhere in its file. `from package import name` is
    package.name when that is a module, else the package."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        for target in targets:
            known = _known(target, modules)
            if known is not None and known != module:
                found.add(known)
    return found


def import_graph(root: Path, packages: list[str]) -> Graph:
    modules = modules_of(root, packages)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def package_of(module: str) -> str:
    return module.partition(".")[0]


def upward_imports(graph: Graph) -> list[str]:
    return sorted(
        f"{module} (floor {FLOORS[package_of(module)]}) imports {target} (floor {FLOORS[package_of(target)]})"
        for module, targets in graph.items()
        for target in targets
        if FLOORS[package_of(target)] > FLOORS[package_of(module)]
    )


def crossings(graph: Graph) -> dict[tuple[str, str], list[str]]:
    """Imports from one service into another, by (importing package, imported package)."""
    found: dict[tuple[str, str], list[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            pair = (package_of(module), package_of(target))
            if pair[0] in SERVICES and pair[1] in SERVICES and pair[0] != pair[1]:
                found.setdefault(pair, []).append(f"{module} imports {target}")
    return found


def cycle_in(graph: Graph) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        ring: list[str] = cycle.args[1]
        return ring
    return None


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT, list(FLOORS))


def test_every_floor_is_parsed(graph: Graph) -> None:
    assert {package_of(module) for module in graph} == set(FLOORS)
    assert "chirp_app.cli" in graph and "bench.run" in graph


def test_no_import_cycle(graph: Graph) -> None:
    assert cycle_in(graph) is None, " -> ".join(cycle_in(graph) or [])


def test_nothing_imports_a_higher_floor(graph: Graph) -> None:
    assert upward_imports(graph) == []


def test_chirp_core_imports_no_service_and_no_app(graph: Graph) -> None:
    above = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if package_of(module) == "chirp_core"
        for target in targets
        if package_of(target) != "chirp_core"
    )
    assert above == []


def test_services_do_not_import_each_other(graph: Graph) -> None:
    found = crossings(graph)
    unexpected = {pair: lines for pair, lines in found.items() if pair not in KNOWN_CROSSINGS}
    assert unexpected == {}
    gone = KNOWN_CROSSINGS - set(found)
    assert not gone, f"these crossings are gone: remove them from KNOWN_CROSSINGS: {sorted(gone)}"


def test_the_checks_see_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The rules above on a made-up tree: each kind of import they must catch is caught."""
    files = {
        "chirp_core/__init__.py": "",
        "chirp_core/settings.py": "def load():\n    from graph_svc.server import start\n",
        "graph_svc/__init__.py": "",
        "graph_svc/server.py": "from . import storage\nfrom .storage import rows\n",
        "graph_svc/storage.py": "import tweets_svc.models\nrows = 1\n",
        "tweets_svc/__init__.py": "",
        "tweets_svc/models.py": "from graph_svc import server\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    made_up = import_graph(tmp_path, ["chirp_core", "graph_svc", "tweets_svc"])
    assert made_up["chirp_core.settings"] == {"graph_svc.server"}
    assert made_up["graph_svc.server"] == {"graph_svc.storage"}
    assert upward_imports(made_up) == ["chirp_core.settings (floor 0) imports graph_svc.server (floor 1)"]
    assert set(crossings(made_up)) == {("graph_svc", "tweets_svc"), ("tweets_svc", "graph_svc")}
    ring = cycle_in(made_up)
    assert ring is not None
    assert {"graph_svc.server", "graph_svc.storage", "tweets_svc.models"} <= set(ring)


def vendors_imported(path: Path) -> set[str]:
    """The vendor modules (VENDORS) `path` imports anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in VENDORS}


@pytest.mark.parametrize("rules", RULES)
def test_the_rules_of_a_service_import_no_vendor(rules: str) -> None:
    """servicer -> service (the rules) -> storage: gRPC, the database and Redis stay outside."""
    assert vendors_imported(ROOT / rules) == set()


def test_the_vendor_check_sees_a_vendor_import() -> None:
    assert "redis.asyncio" in vendors_imported(ROOT / "timeline_svc/storage.py")
    assert "psycopg" in vendors_imported(ROOT / "graph_svc/storage.py")
