"""The registries are explicit lists of what exists, and a module that fails to import fails
loudly: ``projections.PROJECTIONS`` holds every projection class, the ``jetzero`` command every
sub-app, and a broken projection or command module breaks the import instead of going missing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import scripts.cli as cli
from handlers.loop.config import CurriculumStage, LoopConfig
from projections import PROJECTIONS, build_projection

ROOT = Path(__file__).resolve().parents[2]


def projection_classes() -> set[str]:
    """The ``name`` of every class in projections/ that defines ``name`` and ``initial``."""
    found = set()
    for path in (ROOT / "projections").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            named = [n.value.value for n in node.body if isinstance(n, ast.Assign)
                     and any(isinstance(t, ast.Name) and t.id == "name" for t in n.targets)
                     and isinstance(n.value, ast.Constant)]
            if "initial" in methods and named and named[0] != "base":
                found.add(named[0])
    return found


def test_every_projection_is_registered_under_its_name():
    assert projection_classes() == set(PROJECTIONS)
    config = LoopConfig()
    for name in PROJECTIONS:
        assert build_projection(name, config).name == name


def test_the_curriculum_gets_the_stages_of_the_config_it_is_given():
    stages = [CurriculumStage(name="a", until_generation=3), CurriculumStage(name="b")]
    projection = build_projection("curriculum", LoopConfig(curriculum=stages))
    assert [s.name for s in projection.stages] == ["a", "b"]
    assert projection.initial().stage == "a"


def test_the_cli_has_every_sub_app():
    apps = {}
    for path in (ROOT / "scripts").glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "app" for t in n.targets)
               and isinstance(n.value, ast.Call) and getattr(n.value.func, "attr", "") == "Typer"
               for n in tree.body) and path.stem != "cli":
            apps[path.stem] = path
    registered = {group.typer_instance for group in cli.app.registered_groups}
    assert len(registered) == len(apps) == len(cli.SUBAPPS)
    for stem in apps:
        module = __import__(f"scripts.{stem}", fromlist=["app"])
        assert isinstance(module.app, typer.Typer) and module.app in registered, stem
    assert {"models", "promotion", "loop", "events"} <= set(cli.SUBAPPS)


BREAK = """
import importlib.abc, sys
class Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == {module!r}:
            raise ModuleNotFoundError("broken on purpose", name=name)
sys.meta_path.insert(0, Broken())
import {importer}
"""


@pytest.mark.parametrize("module,importer", [
    ("projections.pool", "projections"),
    ("projections.curriculum", "projections"),
    ("scripts.models_cli", "scripts.cli"),
    ("scripts.promotion_cli", "scripts.cli"),
])
def test_a_module_that_fails_to_import_fails_its_registry_loudly(module, importer):
    out = subprocess.run([sys.executable, "-c", BREAK.format(module=module, importer=importer)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode != 0, out.stdout
    assert "broken on purpose" in out.stderr or module.rsplit(".", 1)[1] in out.stderr.splitlines()[-1]
