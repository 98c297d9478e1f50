"""Zoo cards: their schema, reading and validation, and the training config a card describes.

A card (one YAML file per registry name, in `zoo_configs/`) says what the model is (`family`,
`config`), how it was trained (`data`, `train`, `smoke`, `prior_train`), where its weights are
(`weights: {uri, sha256, bytes}`) and what it measured (`metrics`). This module is pure data
(no TensorFlow, no model code), so both `vaezoo.registry` (which serves cards) and
`vaezoo.training` (which trains a card's recipe) build on it.
"""

import copy
import os
import re

from vaezoo.validation import ConfigError, check_keys

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
CARD_KEYS = {"name", "description", "family", "config", "init", "data", "eval_data", "train", "smoke",
             "prior_train", "weights", "metrics", "notes"}  # init: the model a fine-tuned recipe starts from
REQUIRED_KEYS = {"name", "family", "config", "data", "train", "weights", "metrics", "notes"}
WEIGHTS_KEYS = {"uri", "sha256", "bytes"}
#: a card whose file holds one part's weights names where the others come from: `base`, a zoo
#: model whose weights file (pinned by `base_sha256`) gives every weight outside `part`.
SHARED_WEIGHTS_KEYS = {"base", "base_sha256", "part"}
#: the parts a card's file may hold alone (model attributes).
SHAREABLE_PARTS = ("context_model",)
METRIC_KEYS = {"value", "split", "protocol", "hardware", "date", "command"}
OPTIONAL_METRIC_KEYS = {"stderr"}  # standard error of the mean, for per-example averages (elbo, iwae)
FAMILIES = ("VAE", "BetaVAE", "CVAE", "VQVAE", "RQVAE", "HierarchicalVAE")  # the model classes a card may name
DATA_ONLY_KEYS = {"tfds"}  # card data keys that document the canonical source, not read by the Trainer


def check_name(name):
    """Refuse names that are not lowercase-hyphenated (so none can reach outside the zoo)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"Registry names are lowercase-hyphenated like 'vq-vae-cifar'; got {name!r}.")
    return name


def validate_card(card, source="card"):
    """Check a card's schema; unknown keys are errors. Returns the card.

    Reads no model code (so `vaezoo list` and `vaezoo info` need no TensorFlow): the family is
    checked against `FAMILIES`, which a test keeps equal to `vaezoo.models.MODEL_CLASSES`."""
    if not isinstance(card, dict):
        raise ConfigError(f"{source} must be a YAML mapping, got {type(card).__name__}.")
    check_keys(card, CARD_KEYS, source)
    missing = sorted(REQUIRED_KEYS - set(card))
    if missing:
        raise ConfigError(f"{source} lacks required key(s) {missing}.")
    check_name(card["name"])
    if card["family"] not in FAMILIES:
        raise ConfigError(f"{source}: unknown family {card['family']!r}; registered: {sorted(FAMILIES)}.")
    if not isinstance(card["config"], dict):
        raise ConfigError(f"{source}: 'config' must be a mapping of constructor arguments.")
    if card.get("init") is not None and not isinstance(card["init"], str):
        raise ConfigError(f"{source}: 'init' names the model the recipe starts from (a zoo name, preset or URI); "
                          f"got {card['init']!r}.")
    weights = card["weights"]
    if weights is not None:
        if not isinstance(weights, dict):
            raise ConfigError(f"{source}: 'weights' must be null or a mapping with {sorted(WEIGHTS_KEYS)}.")
        check_keys(weights, WEIGHTS_KEYS | SHARED_WEIGHTS_KEYS, f"{source} weights")
        shared = set(weights) & SHARED_WEIGHTS_KEYS
        if set(weights) - shared != WEIGHTS_KEYS or shared not in (set(), SHARED_WEIGHTS_KEYS):
            raise ConfigError(f"{source}: 'weights' needs {sorted(WEIGHTS_KEYS)} (and all or none of "
                              f"{sorted(SHARED_WEIGHTS_KEYS)}), got {sorted(weights)}.")
        for key in ("sha256", "base_sha256"):
            if key in weights and not re.fullmatch(r"[0-9a-f]{64}", str(weights[key])):
                raise ConfigError(f"{source}: weights {key} must be 64 lowercase hex digits.")
        if shared:
            check_name(weights["base"])
            if weights["base"] == card["name"] or weights["part"] not in SHAREABLE_PARTS:
                raise ConfigError(f"{source}: weights 'base' must name another zoo model and 'part' one of "
                                  f"{list(SHAREABLE_PARTS)}; got base {weights['base']!r}, part {weights['part']!r}.")
    metrics = card["metrics"] or {}
    if not isinstance(metrics, dict):
        raise ConfigError(f"{source}: 'metrics' must be a mapping of metric name -> record.")
    for metric, record in metrics.items():
        if not isinstance(record, dict):
            raise ConfigError(f"{source}: metric {metric!r} must be a mapping with {sorted(METRIC_KEYS)}.")
        check_keys(record, METRIC_KEYS | OPTIONAL_METRIC_KEYS, f"{source} metric {metric!r}")
    return card


def read_card(path):
    """Load and validate one card file (`yaml.safe_load` only: no tags that build objects)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            card = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not a valid card (safe YAML only): {error}") from None
    return validate_card(card, source=os.path.basename(path))


def card_to_training_config(card):
    """The Trainer's config (model, data, eval_data, train, smoke, prior_train) from a card."""
    config = {
        "name": card["name"],
        "model": {"class": card["family"], "config": copy.deepcopy(card["config"])},
        "data": {k: v for k, v in card["data"].items() if k not in DATA_ONLY_KEYS},
        "train": copy.deepcopy(card["train"]),
    }
    for key in ("init", "eval_data", "smoke", "prior_train"):
        if card.get(key) is not None:
            config[key] = copy.deepcopy(card[key])
    if "eval_data" in config:
        config["eval_data"] = {k: v for k, v in config["eval_data"].items() if k not in DATA_ONLY_KEYS}
    return config
