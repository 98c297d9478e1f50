"""The package's shape: every module imports alone, `__all__` names what exists, no two
modules import each other (directly or through others, even from inside functions), and no
module outside `vaezoo/models/` reaches into a family (private hooks, family classes, hasattr)."""

import ast
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import vaezoo

MODULES = sorted(m.name for m in pkgutil.walk_packages(vaezoo.__path__, "vaezoo."))
PACKAGE_DIR = os.path.dirname(vaezoo.__file__)


@pytest.mark.parametrize("name", MODULES)
def test_star_import(name):
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names {missing}, which {name} does not define"
    namespace = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    assert set(getattr(module, "__all__", namespace.keys() - {"__builtins__"})) <= set(namespace)


@pytest.mark.slow
def test_every_module_imports_alone(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    failed = {}
    for name in MODULES:
        # outside the source tree, so that the installed package is the one imported
        result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=env,
                                timeout=300, cwd=tmp_path)
        if result.returncode:
            failed[name] = result.stderr.strip().splitlines()[-1]
    assert failed == {}


def import_graph(package_dir=PACKAGE_DIR, package="vaezoo"):
    """`{module: {vaezoo modules it imports}}`, from every import statement, including the ones
    inside functions (vaezoo imports heavy modules lazily, and a lazy cycle is still a cycle)."""
    paths = {}
    for folder, _, files in os.walk(package_dir):
        for file in files:
            if file.endswith(".py"):
                relative = os.path.relpath(os.path.join(folder, file), os.path.dirname(package_dir))
                name = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
                paths[name] = os.path.join(folder, file)
    graph = {}
    for name, path in paths.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # `from vaezoo import registry` imports the module vaezoo.registry
                imported |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = {m for m in imported if m in paths and m != name and m != package}
    return graph


def import_cycles(graph):
    """Every import cycle, as a list of modules in import order (empty when there is none)."""
    cycles, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(trail[trail.index(other):] + [other])
            elif other not in state:
                visit(other, trail + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_import_cycle_finder_finds_a_planted_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")  # lazy, inside a function
    (package / "b.py").write_text("import pkg.c\n")
    (package / "c.py").write_text("from . import a\n")  # relative
    graph = import_graph(str(package), "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_no_import_cycles_in_the_package():
    assert import_cycles(import_graph()) == []


# --------------------------------------------------------------------------- families stay behind the contract
FAMILY_CLASSES = {"VAE", "BetaVAE", "CVAE", "VQVAE", "RQVAE", "HierarchicalVAE", "PixelCNN"}


def private_model_methods(models_dir=os.path.join(PACKAGE_DIR, "models")):
    """Names of the `_private` methods the model classes define (their hooks and helpers)."""
    names = set()
    for file in os.listdir(models_dir):
        if file.endswith(".py"):
            with open(os.path.join(models_dir, file), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    names |= {item.name for item in node.body if isinstance(item, ast.FunctionDef)
                              and item.name.startswith("_") and not item.name.startswith("__")}
    return names


def family_reaches(source, private_methods):
    """Places in `source` that depend on which family a model is: calls of a family's private
    methods, `isinstance` against a family class, `hasattr` on a model."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in private_methods:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
            if node.func.id == "isinstance" and len(node.args) == 2:
                classes = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                classes |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                if classes & FAMILY_CLASSES:
                    found.append(f"line {node.lineno}: isinstance(..., {sorted(classes & FAMILY_CLASSES)})")
            if node.func.id == "hasattr" and "model" in ast.unparse(node.args[0]):
                found.append(f"line {node.lineno}: hasattr({ast.unparse(node.args[0])}, ...)")
    return found


def test_no_module_outside_models_reaches_into_a_family():
    private = private_model_methods()
    assert {"_encode", "_decode", "_sample", "_top_down", "_next_seed", "_score_terms"} <= private
    reaches = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        if os.path.relpath(folder, PACKAGE_DIR).split(os.sep)[0] == "models":
            continue
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path, encoding="utf-8") as f:
                    found = family_reaches(f.read(), private)
                if found:
                    reaches[os.path.relpath(path, PACKAGE_DIR)] = found
    assert reaches == {}


def test_the_family_check_sees_each_kind_of_reach():
    private = private_model_methods()
    assert family_reaches("z = model._encode(x).mean()", private) == ["line 1: ._encode"]
    assert family_reaches("if isinstance(model, VQVAE): pass", private) == ["line 1: isinstance(..., ['VQVAE'])"]
    assert family_reaches("ok = hasattr(self.model, 'fit_prior')", private) == ["line 1: hasattr(self.model, ...)"]
    assert family_reaches("z = self._encode(x); ok = model.latent_kind == 'vector'", private) == []
