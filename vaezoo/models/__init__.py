"""Model families and the name -> class table used by configs and the registry."""

from vaezoo.models.base import LatentVariableModel
from vaezoo.models.cvae import CVAE
from vaezoo.models.hvae import HierarchicalVAE
from vaezoo.models.vae import VAE, BetaVAE
from vaezoo.models.rqvae import RQVAE
from vaezoo.models.vqvae import VQVAE
from vaezoo.validation import ConfigError

#: registered family name -> class; configs and zoo cards name a family by these keys.
MODEL_CLASSES = {cls.__name__: cls for cls in (VAE, BetaVAE, HierarchicalVAE, CVAE, VQVAE, RQVAE)}


def model_from_config(spec):
    """Build a model from `{"class": NAME, "config": {...constructor arguments...}}`."""
    from vaezoo.validation import check_keys

    check_keys(spec, {"class", "config"}, "model spec")
    name = spec.get("class")
    if name not in MODEL_CLASSES:
        raise ConfigError(f"Unknown model class {name!r}; registered: {', '.join(sorted(MODEL_CLASSES))}.")
    cls = MODEL_CLASSES[name]
    config = dict(spec.get("config") or {})
    import inspect

    valid = set()
    for klass in cls.__mro__:
        if klass is LatentVariableModel.__mro__[1]:
            break
        valid |= set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
    check_keys(config, valid | {"name"}, f"{name} config")
    return cls(**config)


__all__ = ["LatentVariableModel", "VAE", "BetaVAE", "CVAE", "HierarchicalVAE", "VQVAE", "RQVAE", "MODEL_CLASSES", "model_from_config"]
