"""Plain Keras interop: after `import vaezoo`, `keras.saving.load_model("model.keras")` loads
every family.

The families are registered Keras serializable classes under the package name `vaezoo`
(`"registered_name": "vaezoo>VAE"` in a `.keras` file); Keras finds them once their modules
are imported. `import vaezoo` stays cheap (no TensorFlow), so the registration happens when
TensorFlow/Keras is there:

- if Keras is already imported, `install()` imports `vaezoo.models` at once;
- otherwise it leaves a one-shot import hook that imports `vaezoo.models` as soon as the
  outermost import of `keras` or `tensorflow` has finished (TensorFlow imports Keras from
  inside its own import, so the hook waits until neither is half-initialised), then removes
  itself.

When Keras is first imported by a vaezoo module itself (`import vaezoo.distributions` before
any Keras import), the families register with `vaezoo.models` instead, not at that moment.

Without `import vaezoo`, Keras cannot know the classes; its error then quotes the model's
`build_config`, which says to `import vaezoo` (see `LatentVariableModel.get_build_config`).

Example:
    >>> import keras, vaezoo
    >>> model = keras.saving.load_model("bvae.keras")   # safe_mode=True by default
"""

import importlib
import sys

_WATCHED = ("keras", "tensorflow")


def _initialising(name):
    module = sys.modules.get(name)
    return module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False)


def register_families():
    """Import `vaezoo.models`, which registers every family with Keras (idempotent)."""
    importlib.import_module("vaezoo.models")


class _RegisterAfter:
    """Loader wrapper: run the real loader, then register the families if no watched module
    is still half-initialised."""

    def __init__(self, loader, finder):
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = module.__spec__.loader = self.loader
        if not any(_initialising(name) for name in _WATCHED if name != module.__name__):
            self.finder.remove()
            # A vaezoo module that imports Keras for itself (distributions, networks, ...) is
            # half-initialised here; importing the families now would import it again, in a
            # cycle. The families register when `vaezoo.models` is imported, which is what
            # loads them for `load`, `build` and every family class anyway.
            if not any(_initialising(name) for name in list(sys.modules) if name.startswith("vaezoo.")):
                register_families()


class _KerasImportHook:
    """A `sys.meta_path` finder that wraps the loaders of `keras` and `tensorflow` (whatever
    finder supplies them, e.g. the command line's quiet TensorFlow start-up)."""

    def find_spec(self, name, path=None, target=None):
        if name not in _WATCHED:
            return None
        finders = sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else sys.meta_path
        for finder in finders:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfter(spec.loader, self)
                return spec
        return None

    def remove(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install():
    """Make Keras' registry know vaezoo's families now (Keras loaded) or once Keras loads."""
    if any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        return
    if "keras" in sys.modules and not any(_initialising(name) for name in _WATCHED):
        register_families()
    else:
        sys.meta_path.insert(0, _KerasImportHook())
