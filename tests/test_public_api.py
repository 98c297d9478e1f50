"""Every public module's `__all__` names things that exist: `from vaezoo.X import *` works."""

import importlib
import pkgutil

import pytest

import vaezoo

MODULES = sorted(m.name for m in pkgutil.walk_packages(vaezoo.__path__, "vaezoo.") if m.name != "vaezoo.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_star_import(name):
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names {missing}, which {name} does not define"
    namespace = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    assert set(getattr(module, "__all__", namespace.keys() - {"__builtins__"})) <= set(namespace)
