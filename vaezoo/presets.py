"""Presets: a model as a folder in KerasHub's layout, the one module that knows that layout.

A preset directory holds::

    DIR/config.json        {"module", "class_name", "config", "registered_name", "build_config",
                            "weights": "model.weights.h5"}: the class (a registered vaezoo
                            family) and its constructor arguments, as KerasHub writes it
    DIR/model.weights.h5   the weights (Keras `save_weights`)
    DIR/metadata.json      {"format": "vaezoo-preset", "format_version", "vaezoo_version",
                            "keras_version", "tensorflow_version", "parameter_count", "date",
                            "weights_sha256", "files": {name: sha256}}
    DIR/card.yaml          the zoo card (what, data, recipe, weights, measured metrics)
    DIR/README.md          a model card generated from card.yaml

Reading verifies every file named in `metadata.json["files"]` by sha256 before anything is
built, and builds the model from `config.json` alone (no code is ever loaded from a preset).
Writing is atomic: the folder is written beside the target under a temporary name and renamed
into place, so a reader sees the old preset or the complete new one.

This module reads and writes files only; building the model from what `read_preset` returns is
`vaezoo.models.base.LatentVariableModel.from_preset`, and every MODEL argument reaches it
through `vaezoo.registry.resolve_model` (`vaezoo.load(DIR)`).

Example:
    >>> model = vaezoo.load("vae-mnist")
    >>> vaezoo.save_preset(model, "presets/vae-mnist")      # or model.save_to_preset(...)
    >>> same = vaezoo.load("presets/vae-mnist")             # or vaezoo.VAE.from_preset(...)
"""

import copy
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
import typing

from vaezoo.cards import FAMILIES, validate_card
from vaezoo.io import sha256_of, write_json
from vaezoo.validation import ConfigError

FORMAT = "vaezoo-preset"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.weights.h5"
METADATA = "metadata.json"
CARD = "card.yaml"
README = "README.md"
#: every file of a preset; hub downloads fetch exactly these.
FILES = (CONFIG, WEIGHTS, METADATA, CARD, README)
_HASHED = (CONFIG, WEIGHTS, CARD, README)  # metadata.json cannot hash itself


class PresetError(ValueError):
    """A folder that is not a vaezoo preset, or a damaged one; the message names the source."""


class PresetHashError(PresetError):
    """A preset file whose sha256 differs from `metadata.json`: refused, nothing is loaded."""


class Preset(typing.NamedTuple):
    """What `read_preset` found, verified: build the model with `family` and `config`."""

    path: str  #: the local folder
    family: str  #: registered family name, e.g. "VAE"
    config: dict  #: constructor arguments
    weights: str  #: path of the verified weights file
    card: dict  #: the card (validated)
    metadata: dict  #: metadata.json


def weights_fingerprint(model):
    """sha256 of the model's weight values, in order (the same digest as
    `vaezoo.workdir.weights_fingerprint`, which sits above the models and so cannot be imported
    here; a test keeps the two equal)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def remember_card_weights(model, card):
    """Attach `card` to a freshly loaded model with the fingerprint of the weights its metrics
    describe, so `save_preset` can tell whether the model changed since (fine-tuning)."""
    object.__setattr__(model, "card", card)  # plain values, not tracked by Keras
    object.__setattr__(model, "card_weights_fingerprint", weights_fingerprint(model))
    return model


def is_preset(path):
    """True if `path` is a folder with a preset's `config.json` and `metadata.json`."""
    path = os.fspath(path)
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in (CONFIG, METADATA))


def _read_json(path, what, source):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PresetError(f"{source}: {what} is not valid JSON ({error}); the preset is damaged.") from None
    if not isinstance(value, dict):
        raise PresetError(f"{source}: {what} must hold a JSON object, got {type(value).__name__}.")
    return value


def read_preset(path, source=None):
    """Read and verify the preset folder `path`.

    Args:
        path: a local preset folder.
        source: what to name in error messages (e.g. the `hf://` URI it came from); default `path`.

    Returns:
        A `Preset(path, family, config, weights, card, metadata)`.

    Raises:
        PresetError: a file is missing or unreadable, or the folder is not a vaezoo preset.
        PresetHashError: a file's sha256 differs from `metadata.json`.

    Example:
        >>> preset = vaezoo.presets.read_preset("presets/vae-mnist")
        >>> preset.family, preset.metadata["parameter_count"]
    """
    import yaml

    path = os.fspath(path)
    source = source or path
    if not os.path.isdir(path):
        raise PresetError(f"{source}: no preset folder at {path!r}.")
    missing = [f for f in FILES if not os.path.isfile(os.path.join(path, f))]
    if METADATA in missing or CONFIG in missing:
        present = sorted(os.listdir(path))[:10]
        raise PresetError(f"{source} is not a vaezoo preset: expected {', '.join(FILES)}; missing {', '.join(missing)} "
                          f"(found: {', '.join(present) or 'nothing'}).")
    if missing:
        raise PresetError(f"{source}: the preset is incomplete, missing {', '.join(missing)}.")
    metadata = _read_json(os.path.join(path, METADATA), METADATA, source)
    if metadata.get("format") != FORMAT:
        raise PresetError(f"{source} is not a vaezoo preset: {METADATA} has format {metadata.get('format')!r}, "
                          f"expected {FORMAT!r}.")
    if not isinstance(metadata.get("format_version"), int) or metadata["format_version"] > FORMAT_VERSION:
        raise PresetError(f"{source}: preset format_version {metadata.get('format_version')!r}; this vaezoo reads "
                          f"versions up to {FORMAT_VERSION} (upgrade vaezoo).")
    files = metadata.get("files")
    if not isinstance(files, dict) or files.get(WEIGHTS) != metadata.get("weights_sha256") or \
            not all(isinstance(files.get(f), str) for f in _HASHED):
        raise PresetError(f"{source}: {METADATA} must list the sha256 of {', '.join(_HASHED)} under 'files' "
                          "(and weights_sha256 equal to that of the weights).")
    for name in _HASHED:  # every check runs before anything is parsed or built
        actual = sha256_of(os.path.join(path, name))
        if actual != files[name]:
            raise PresetHashError(f"{source}: sha256 of {name} is {actual}, but {METADATA} says {files[name]}: "
                                  "the file is corrupted or was changed; refusing to load it.")
    config = _read_json(os.path.join(path, CONFIG), CONFIG, source)
    family = config.get("class_name")
    if family not in FAMILIES or config.get("registered_name") not in (None, f"vaezoo>{family}"):
        raise PresetError(f"{source} is not a vaezoo preset: {CONFIG} names class {family!r} "
                          f"(registered as {config.get('registered_name')!r}); expected one of {', '.join(FAMILIES)}.")
    if config.get("weights") != WEIGHTS or not isinstance(config.get("config"), dict):
        raise PresetError(f"{source}: {CONFIG} must give 'config' (constructor arguments) and "
                          f"'weights': {WEIGHTS!r}.")
    try:
        with open(os.path.join(path, CARD), encoding="utf-8") as f:
            card = validate_card(yaml.safe_load(f), source=f"{source} {CARD}")
    except yaml.YAMLError as error:
        raise PresetError(f"{source}: {CARD} is not valid YAML (safe YAML only): {error}") from None
    except ConfigError as error:
        raise PresetError(str(error)) from None
    return Preset(path, family, config["config"], os.path.join(path, WEIGHTS), card, metadata)


def _card_name(text):
    name = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    return name if name and name[0].isalnum() else "model"


def preset_card(model, weights_sha256, weights_bytes, name=None):
    """The card a preset carries: the model's own card (a zoo model's), else a minimal one.

    The card's `weights` record describes the preset's weights file. If the weight values
    changed since the card was attached (a fine-tuned zoo model), its metrics are dropped, as
    `vaezoo publish` does: they describe a different model."""
    card = copy.deepcopy(getattr(model, "card", None))
    family = type(model).__name__
    config = json.loads(json.dumps(model.get_config()))  # plain JSON values (Keras wraps dicts it tracks)
    if card is None:
        card = {"name": _card_name(name or model.name), "description": f"A {family} saved with vaezoo.save_preset.",
                "family": family, "config": {k: v for k, v in config.items() if k != "name"},
                "data": None, "train": None, "weights": None, "metrics": {},
                "notes": "No training recipe or measured metrics were recorded with this model."}
    elif name is not None:
        card["name"] = _card_name(name)
    unchanged = getattr(model, "card_weights_fingerprint", None) == weights_fingerprint(model)
    card["weights"] = {"uri": WEIGHTS, "sha256": weights_sha256, "bytes": int(weights_bytes)}
    if isinstance(card.get("notes"), dict) and "storage" in card["notes"]:  # it described the zoo's own file
        card["notes"]["storage"] = (f"This preset's {WEIGHTS} is written by Keras save_weights (the model's float32 "
                                    f"variables). The zoo's note on its shipped file: {card['notes']['storage']}")
    if card.get("metrics") and not unchanged:
        card["metrics"] = {}
        dropped = "The card's metrics were measured on other weights (before fine-tuning) and were dropped."
        if isinstance(card.get("notes"), dict):
            card["notes"]["metrics"] = dropped
        else:
            card["notes"] = (str(card.get("notes") or "") + " " + dropped).strip()
    return validate_card(card, source="preset card")


def _as_text(value):
    if value is None:
        return "not recorded"
    import yaml

    return "\n```yaml\n" + yaml.safe_dump(value, sort_keys=False, width=100).rstrip() + "\n```"


def model_card_markdown(card, metadata):
    """README.md of a preset, generated from its card and metadata: what the model is, data,
    training recipe, measured metrics with their protocols, licence, and how to load it."""
    lines = [f"---\nlibrary_name: vaezoo\nlicense: {card.get('license', 'apache-2.0')}\ntags: [vaezoo, keras, vae]\n---",
             f"# {card['name']}", "", str(card.get("description") or f"A {card['family']} model."), "",
             "## Model", "",
             f"- Family: `{card['family']}` (vaezoo {metadata['vaezoo_version']}, Keras {metadata['keras_version']}, "
             f"TensorFlow {metadata['tensorflow_version']})",
             f"- Parameters: {metadata['parameter_count']:,}",
             f"- Weights: `{WEIGHTS}`, sha256 `{metadata['weights_sha256']}`",
             f"- Saved: {metadata['date']}", "",
             "Constructor arguments:" + _as_text(card["config"]), "",
             "## Data", "", "Training data:" + _as_text(card.get("data")), ""]
    if card.get("eval_data"):
        lines += ["Evaluation data:" + _as_text(card["eval_data"]), ""]
    lines += ["## Training recipe", ""]
    if card.get("init"):
        lines += [f"Fine-tuned: training started from the weights of `{card['init']}`.", ""]
    lines += [_as_text(card.get("train")).lstrip("\n"), "", "## Measured metrics", ""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["| metric | value | split | protocol | hardware | date | command |", "|---|---|---|---|---|---|---|"]
        for metric, record in metrics.items():
            value = record.get("value")
            value = f"{value:.6g}" if isinstance(value, (int, float)) else str(value)
            if record.get("stderr") is not None:
                value += f" +- {record['stderr']:.3g}"
            cells = [metric, value] + [str(record.get(k, "")).replace("|", "/").replace("\n", " ")
                                       for k in ("split", "protocol", "hardware", "date", "command")]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("None recorded with these weights.")
    notes = card.get("notes") or "-"
    data_licence = notes.get("license") if isinstance(notes, dict) else None
    if isinstance(notes, dict):
        notes = "\n".join(f"- **{key}**: {value}" for key, value in notes.items())
    lines += ["", "## Notes", "", str(notes), "",
              "## Licence", "", "The weights and code: Apache-2.0 (vaezoo's licence). The training data keeps its own "
              "licence" + (f": {data_licence}" if data_licence else "."), "",
              "## Use", "", "```python", "import vaezoo  # pip install \"vaezoo[hub]\" for hf:// and kaggle://", "",
              f'model = vaezoo.load("hf://ORG/{card["name"]}")  # or the preset folder, or a kaggle:// URI',
              "```", ""]
    return "\n".join(lines)


def save_preset(model, directory, name=None, overwrite=False):
    """Write `model` as a preset folder (KerasHub's layout plus a card), atomically.

    Args:
        model: a vaezoo model (a zoo model's card, `model.card`, goes with it).
        directory: the preset folder to create.
        name: the card's name (default: the zoo card's, else the model's name).
        overwrite: replace an existing preset at `directory`.

    Returns:
        `directory`.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.

    Example:
        >>> vaezoo.save_preset(vaezoo.load("vae-mnist"), "presets/vae-mnist")
        >>> vaezoo.load("presets/vae-mnist")
    """
    import keras
    import tensorflow as tf

    import vaezoo

    directory = os.path.abspath(os.fspath(directory))
    if os.path.lexists(directory) and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True (--overwrite) to replace it.")
    family = type(model).__name__
    if family not in FAMILIES:
        raise TypeError(f"save_preset takes a vaezoo model ({', '.join(FAMILIES)}); got {family}.")
    parent, base = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    try:
        model.save_weights(os.path.join(staging, WEIGHTS))
        config = keras.saving.serialize_keras_object(model)
        config.pop("compile_config", None)  # an optimizer is not part of a preset
        config["weights"] = WEIGHTS
        write_json(config, os.path.join(staging, CONFIG))
        weights_path = os.path.join(staging, WEIGHTS)
        weights_sha = sha256_of(weights_path)
        card = preset_card(model, weights_sha, os.path.getsize(weights_path), name)
        import yaml

        with open(os.path.join(staging, CARD), "w", encoding="utf-8") as f:
            yaml.safe_dump(card, f, sort_keys=False, width=100, allow_unicode=True)
        metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "vaezoo_version": vaezoo.__version__,
                    "keras_version": keras.__version__, "tensorflow_version": tf.__version__,
                    "parameter_count": int(model.count_params()),
                    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "weights_sha256": weights_sha}
        with open(os.path.join(staging, README), "w", encoding="utf-8") as f:
            f.write(model_card_markdown(card, metadata))
        metadata["files"] = {f: sha256_of(os.path.join(staging, f)) for f in _HASHED}
        write_json(metadata, os.path.join(staging, METADATA))
        for f in FILES:
            os.chmod(os.path.join(staging, f), 0o644)
        os.chmod(staging, 0o755)
        if os.path.lexists(directory):  # overwrite: move the old one aside, rename, then delete it
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.replace(directory, os.path.join(old, base))
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


__all__ = ["FILES", "FORMAT", "Preset", "PresetError", "PresetHashError", "is_preset", "model_card_markdown",
           "preset_card", "read_preset", "remember_card_weights", "save_preset", "weights_fingerprint"]
