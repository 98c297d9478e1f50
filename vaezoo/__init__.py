"""vaezoo: a TensorFlow / Keras 3 model zoo of variational autoencoders.

Importing vaezoo is cheap: TensorFlow and the models load on first use of a public name.

Example:
    >>> import vaezoo
    >>> model = vaezoo.BetaVAE(input_shape=(64, 64, 1), latent_dim=10, beta=4.0)
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (loaded lazily, so `import vaezoo` builds no graph)
_LAZY = {
    "VAE": "vaezoo.models.vae",
    "BetaVAE": "vaezoo.models.vae",
    "CVAE": "vaezoo.models.cvae",
    "HierarchicalVAE": "vaezoo.models.hvae",
    "VQVAE": "vaezoo.models.vqvae",
    "RQVAE": "vaezoo.models.rqvae",
    "PixelCNN": "vaezoo.models.pixelcnn",
    "VectorQuantizer": "vaezoo.quantizer",
    "ResidualQuantizer": "vaezoo.quantizer",
    "LatentVariableModel": "vaezoo.models.base",
    "MODEL_CLASSES": "vaezoo.models",
    "model_from_config": "vaezoo.models",
    "train": "vaezoo.training",
    "Trainer": "vaezoo.training",
    "ConfigError": "vaezoo.validation",
    "load": "vaezoo.registry",
    "build": "vaezoo.registry",
    "list_models": "vaezoo.registry",
    "info": "vaezoo.registry",
    "export_model": "vaezoo.export",
    "export": "vaezoo.export",  # deprecated name of export_model
    "evaluate": "vaezoo.evaluation",
    "save_preset": "vaezoo.presets",
}
_SUBMODULES = {"registry", "data", "distributions", "networks", "models", "training", "validation", "visualize", "cli", "serving", "evaluation", "disentanglement", "presets", "hub"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


# after `import vaezoo`, keras.saving.load_model("x.keras") finds every family (no TensorFlow now)
from vaezoo import keras_interop as _keras_interop  # noqa: E402

_keras_interop.install()


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"vaezoo.{name}")
    raise AttributeError(f"module 'vaezoo' has no attribute {name!r}")


def __dir__():
    return __all__
