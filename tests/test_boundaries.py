"""Dependencies point one way: geo and notifier never import server (STYLE 1)."""

import ast
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_services

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "geo": {"geo", "shapely"},
    "notifier": {"notifier", "firebase_admin", "httpx", "google"},
}


def imported_roots(package: str) -> set[str]:
    roots = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_standard_library_and_its_allowed_packages(package):
    outside = {name for name in imported_roots(package) if name not in sys.stdlib_module_names}
    assert outside <= ALLOWED[package], f"{package} imports {sorted(outside - ALLOWED[package])}"
