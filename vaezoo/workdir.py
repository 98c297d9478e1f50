"""A training workdir on disk: the one module that knows its layout.

`vaezoo train CONFIG --workdir DIR` writes::

    DIR/config.json               the resolved training config (model, data, eval_data, train, ...)
    DIR/checkpoints/              tf.train.CheckpointManager files (resume)
    DIR/tensorboard/, pictures/   logs and PNG grids
    DIR/metrics.json              the final evaluation
    DIR/final/model_config.json   `{"class": ..., "config": {...}}`: the model's constructor arguments
    DIR/final/model.weights.h5    its weights
    DIR/final/model.keras         the same model as one Keras file (loads with safe_mode=True)

A workdir is *finished* once `final/model_config.json` exists; `load` rebuilds the model from
config + weights, so no code is ever read from a workdir.

Example:
    >>> from vaezoo import workdir
    >>> workdir.is_finished("runs/vae")
    True
    >>> model = workdir.load("runs/vae")
"""

import hashlib
import json
import os

from vaezoo.io import atomic_path, write_json

RUN_CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
FINAL = "final"
MODEL_CONFIG = os.path.join(FINAL, "model_config.json")
WEIGHTS = os.path.join(FINAL, "model.weights.h5")
KERAS_FILE = os.path.join(FINAL, "model.keras")


def is_finished(path):
    """True if `path` is a folder holding a finished run (`final/model_config.json`)."""
    return os.path.isfile(os.path.join(path, MODEL_CONFIG))


def require_finished(path):
    """Raise `FileNotFoundError` naming what is missing unless `path` is a finished workdir."""
    if not is_finished(path):
        raise FileNotFoundError(
            f"{path} is a folder but not a finished training workdir (no {MODEL_CONFIG}); expected a "
            ".keras file, a workdir written by `vaezoo train` (finished), or a registry name.")


def save_final(path, model, model_config, metrics):
    """Write the finished run: weights, `.keras` file, model config and metrics (each atomically)."""
    os.makedirs(os.path.join(path, FINAL), exist_ok=True)
    with atomic_path(os.path.join(path, WEIGHTS)) as tmp:
        model.save_weights(tmp)
    with atomic_path(os.path.join(path, KERAS_FILE)) as tmp:
        model.save(tmp)
    write_json(model_config, os.path.join(path, MODEL_CONFIG))
    write_json(metrics, os.path.join(path, METRICS))


def load(path):
    """The model of a finished run (config + weights; no code is loaded)."""
    from vaezoo.models import model_from_config

    require_finished(path)
    with open(os.path.join(path, MODEL_CONFIG), encoding="utf-8") as f:
        model = model_from_config(json.load(f))
    model.load_weights(os.path.join(path, WEIGHTS))
    return model


def data_spec(path):
    """The run's evaluation data spec (`eval_data`, else `data`, of its config), or None."""
    config_path = os.path.join(path, RUN_CONFIG)
    if not os.path.isfile(config_path):
        return None
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    return config.get("eval_data") or config.get("data")


def weights_fingerprint(model):
    """sha256 of all weights' bytes, in order: equal fingerprints mean identical weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()
