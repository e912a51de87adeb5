"""The layers point one way: scripts → handlers → projections → streams; engine imports none
of them (nor asyncio or nats), and only streams/ imports nats."""

from __future__ import annotations

import ast
import importlib
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


# Surfaces inside handlers/: each may use the ones below it, never one above or beside it.
SURFACE_RANK = {"runtime": 0, "loop": 1, "promotion": 2, "cluster": 3, "matchmaking": 3, "pipeline": 3}
HANDLER_MODULES = [p for p in sorted((ROOT / "handlers").rglob("*.py")) if p.parent != ROOT / "handlers"]


def project_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` for every absolute import of a project module."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in PACKAGES:
                out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] in PACKAGES]
    return out


def test_handlers_is_one_level_of_surface_packages():
    loose = [p.name for p in (ROOT / "handlers").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside a surface package: {loose}"
    for folder in (ROOT / "handlers").iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert folder.name in SURFACE_RANK, f"handlers/{folder.name} is not a known surface"


@pytest.mark.parametrize("path", HANDLER_MODULES, ids=[str(p.relative_to(ROOT)) for p in HANDLER_MODULES])
def test_surfaces_import_one_way(path):
    own = path.relative_to(ROOT / "handlers").parts[0]
    for module, names in project_imports(path):
        parts = module.split(".")
        if parts[0] != "handlers":
            continue
        targets = [parts[1]] if len(parts) > 1 else names
        for other in targets:
            if other == own:
                continue
            assert SURFACE_RANK[other] < SURFACE_RANK[own], (
                f"{path.relative_to(ROOT)} ({own}) imports handlers.{other}: surfaces import downwards only"
            )


@pytest.mark.parametrize("package,path", MODULES, ids=[str(p.relative_to(ROOT)) for _, p in MODULES])
def test_no_module_imports_a_private_name_of_another(package, path):
    for module, names in project_imports(path):
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{path.relative_to(ROOT)} imports private {private} from {module}"


def test_every_package_states_its_public_surface():
    for init in [ROOT / "handlers" / "__init__.py", *sorted((ROOT / "handlers").glob("*/__init__.py"))]:
        tree = ast.parse(init.read_text())
        names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)]
        assert "__all__" in names, f"{init.relative_to(ROOT)} has no __all__"
        package = ".".join(init.parent.relative_to(ROOT).parts)
        mod = importlib.import_module(package)
        for name in mod.__all__:
            assert (init.parent / f"{name}.py").exists() or (init.parent / name).is_dir() \
                or hasattr(mod, name), f"{package}.__all__ names {name}, which does not exist"
