"""The timeline service's rules see no vendor: its service layer imports no gRPC, psycopg or
Redis module, anywhere in the file (the README's layers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "timeline_svc"
RULES = ["service.py", "home.py", "pull.py", "fanout.py", "cache.py", "visibility.py"]
VENDORS = ("grpc", "psycopg", "psycopg_pool", "redis")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", RULES)
def test_a_rules_module_imports_no_vendor(module: str) -> None:
    vendors = {name for name in imported(PACKAGE / module) if name.split(".")[0] in VENDORS}
    assert vendors == set()


def test_the_check_sees_a_vendor_import() -> None:
    assert "redis.asyncio" in imported(PACKAGE / "storage.py")
