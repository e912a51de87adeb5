"""The layers point one way: scripts → handlers → projections → streams; engine imports none
of them (nor asyncio or nats), and only streams/ imports nats."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "streams", "projections", "handlers", "scripts")
FORBIDDEN = {
    "engine": {"streams", "projections", "handlers", "scripts", "asyncio", "nats", "uvloop"},
    "streams": {"projections", "handlers", "scripts", "torch"},
    "projections": {"handlers", "scripts", "nats", "torch"},
    "handlers": {"scripts", "nats"},
    "scripts": {"nats"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


MODULES = [(pkg, p) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("package,path", MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES])
def test_module_respects_its_layer(package, path):
    bad = imports_of(path) & FORBIDDEN[package]
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package,path", MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES])
def test_module_opens_with_a_docstring(package, path):
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"
