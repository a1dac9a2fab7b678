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


# server's domain packages, each above the ones it may import. `server.services` (the lifespan's
# bag of what it built) may be named by any of them for type checking only.
LAYERS = {
    "core": set(),
    "accounts": {"core"},
    "positions": {"core", "accounts"},
    "alerts": {"core", "accounts", "positions"},
    "trips": {"core", "accounts", "positions", "alerts"},
    "sharing": {"core", "accounts", "positions", "alerts", "trips"},
    "phones": {"core", "accounts", "positions", "alerts", "trips"},
    "console": {"core", "accounts", "positions", "alerts"},
    "privacy": {"core", "accounts", "positions", "alerts", "trips", "sharing", "phones"},
}


def server_imports(package: str) -> dict[str, set[str]]:
    """Which of server's packages each module of `package` imports at run time."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "server" / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                     and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "server" and len(parts) > 1 and parts[1] != package:
                    found.setdefault(str(path.relative_to(ROOT)), set()).add(parts[1])
    return found


def test_every_server_package_has_a_layer():
    packages = {path.name for path in (ROOT / "server").iterdir() if (path / "__init__.py").exists()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_a_server_package_imports_only_the_packages_below_it(package):
    wrong = {module: sorted(names - LAYERS[package]) for module, names in server_imports(package).items()
             if names - LAYERS[package]}
    assert not wrong, f"{package} reaches above itself: {wrong}"
