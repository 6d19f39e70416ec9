"""Tests never import tests: what several test files share lives in a helper module
(tests/integration/workers.py, session.py, ...) or in a conftest fixture, so a test
module or a conftest is never imported; pytest alone loads those."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported(path: Path) -> Iterator[str]:
    """Every module name an import of `path` may load: `from a import b` may load a.b."""
    package = path.relative_to(TESTS.parent).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else ()
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def imports_of_tests(root: Path) -> list[str]:
    """`file: module` for each test module or conftest that a file under `root` imports."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for name in imported(path):
            last = name.rsplit(".", 1)[-1]
            if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                found.append(f"{path.relative_to(root.parent)}: {name}")
    return found


def test_no_file_under_tests_imports_a_test_module_or_a_conftest() -> None:
    assert imports_of_tests(TESTS) == []
