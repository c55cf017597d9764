"""The test tree's layout holds: test modules import helpers from tests.support, never from
another test module, and the benchmark scripts reach into tests only through tests.support."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and (any(p.startswith("test_") for p in parts)
                                    or "conftest" in parts)


def test_no_test_module_imports_another():
    files = sorted((ROOT / "tests").rglob("test_*.py"))
    assert len(files) > 40
    offenders = {str(f.relative_to(ROOT)): sorted(n for n in imported_modules(f)
                                                  if is_test_module(n))
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_scripts_import_only_tests_support():
    files = sorted((ROOT / "scripts").glob("*.py"))
    assert files
    offenders = {str(f.relative_to(ROOT)): sorted(
        n for n in imported_modules(f)
        if n.split(".")[0] == "tests" and not n.startswith("tests.support")) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_checks_see_a_test_module_import():
    """The predicate the two tests rely on recognises the imports they forbid."""
    assert is_test_module("tests.unit.test_core")
    assert is_test_module("tests.conftest")
    assert not is_test_module("tests.support.fakes")
