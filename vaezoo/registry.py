"""The model zoo: YAML cards in `zoo_configs/`, a name -> class table, and weights by URI.

A card (one YAML file per registry name) says what the model is (`family`: a registered class
name, `config`: its constructor arguments), how it was trained (`data`, `train`, `smoke`, and
for VQ-VAEs `prior_train`), where its weights are (`weights: {uri, sha256, bytes}`) and what
it measured (`metrics`, each with value, split, protocol, hardware, date and command; written
by `vaezoo eval NAME --write-card`, never by hand).

This module only reads: writing cards and shipped weights is `vaezoo.zoo_maintenance`'s job
(`vaezoo publish`, `vaezoo eval --write-card`), for the zoo's maintainers.

Weight URIs: `pretrained://FILE` (shipped inside the package, works offline), `file://PATH`,
`https://...` (downloaded once through `keras.utils.get_file`, verified, cached) and
`gs://...` (through `tf.io.gfile`). The cache lives in `$VAEZOO_HOME` (default
`~/.cache/vaezoo`); a second `load` makes no request. A file whose sha256 differs from the
card is an error and is removed from the cache.

Example:
    >>> vaezoo.list_models("vq*")
    ['vq-vae-cifar']
    >>> model = vaezoo.load("vq-vae-cifar")          # pretrained, offline
    >>> model.card["metrics"]["nmse"]["value"]
"""

import difflib
import fnmatch
import importlib.resources
import os
import shutil
import typing

from vaezoo.cards import (  # noqa: F401  (the card schema, also read as registry.X)
    CARD_KEYS, DATA_ONLY_KEYS, FAMILIES, METRIC_KEYS, NAME_PATTERN, OPTIONAL_METRIC_KEYS, REQUIRED_KEYS, WEIGHTS_KEYS,
    card_to_training_config, check_name, read_card, validate_card)
from vaezoo.io import atomic_path, sha256_of
from vaezoo.validation import ConfigError


class UnknownModelError(KeyError):
    """No card with that name; the message lists the closest names."""

    def __str__(self):
        return str(self.args[0])


class UnsafeFileError(ValueError):
    """A file asked to run code on load (e.g. a `.keras` file with a Lambda layer); refused."""


class WeightsError(ValueError):
    """Weights could not be fetched, or their sha256 differs from the card."""


def cards_dir():
    """Folder of the YAML cards (installed with the package as `vaezoo/zoo_configs`)."""
    return str(importlib.resources.files("vaezoo.zoo_configs"))


def pretrained_dir():
    return str(importlib.resources.files("vaezoo") / "pretrained")


def cache_dir(override=None):
    """`override`, else `$VAEZOO_HOME`, else `~/.cache/vaezoo`."""
    return os.path.abspath(os.path.expanduser(override or os.environ.get("VAEZOO_HOME") or "~/.cache/vaezoo"))


def _names():
    folder = cards_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f[: -len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))


def info(name):
    """The card of `name` as a dict (validated)."""
    check_name(name)
    names = _names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise UnknownModelError(f"No model named {name!r} in the zoo.{hint} Available: {', '.join(names)}.")
    card = read_card(os.path.join(cards_dir(), f"{name}.yaml"))
    if card["name"] != name:
        raise ConfigError(f"{name}.yaml names itself {card['name']!r}.")
    return card


def list_models(pattern="*", pretrained=None):
    """Registry names matching a shell-style `pattern`; `pretrained=True/False` filters on weights."""
    names = [n for n in _names() if fnmatch.fnmatch(n, pattern)]
    if pretrained is not None:
        names = [n for n in names if (info(n)["weights"] is not None) == pretrained]
    return names


def build(name, **overrides):
    """An untrained model from the card of `name`; `overrides` replace constructor arguments."""
    from vaezoo.models import model_from_config

    card = info(name)
    model = model_from_config({"class": card["family"], "config": {**card["config"], **overrides}})
    object.__setattr__(model, "card", card)  # a plain dict, not tracked by Keras
    return model


def _verified(path, expected, where):
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(f"sha256 of {where} is {actual}, the card says {expected}: refusing to load it.")
    return path


def fetch_weights(card, cache=None):
    """Local path of the card's weights file, downloading and verifying it if needed."""
    weights = card["weights"]
    if weights is None:
        raise WeightsError(f"{card['name']} has no pretrained weights yet (weights: null in its card).")
    uri, sha = weights["uri"], weights["sha256"]
    scheme, _, rest = uri.partition("://")
    if scheme == "pretrained":
        base = pretrained_dir()
        path = os.path.normpath(os.path.join(base, rest))
        if not path.startswith(base + os.sep):
            raise WeightsError(f"pretrained URI {uri!r} points outside the package's pretrained folder.")
        if not os.path.isfile(path):
            raise WeightsError(f"{uri} is missing from the installed package ({path}).")
        return _verified(path, sha, uri)
    if scheme == "file":
        if not os.path.isfile(rest):
            raise WeightsError(f"No weights file at {rest!r} ({uri}).")
        return _verified(rest, sha, uri)
    folder = os.path.join(cache_dir(cache), "weights")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, f"{check_name(card['name'])}-{sha[:16]}.weights.h5")
    if os.path.isfile(target):
        try:
            return _verified(target, sha, target)
        except WeightsError:
            os.remove(target)  # a bad cache entry is dropped and fetched again
    if scheme in ("https", "http"):
        return _download(uri, sha, target)
    if scheme == "gs":
        import tensorflow as tf

        with atomic_path(target) as tmp:
            tf.io.gfile.copy(uri, tmp, overwrite=True)
            _verified(tmp, sha, uri)
        return target
    raise WeightsError(f"Unsupported weights URI {uri!r}; use pretrained://, file://, https:// or gs://.")


def _download(uri, sha, target):
    """Download through keras.utils.get_file into a private temporary folder, verify, rename."""
    import tempfile

    import keras

    folder = os.path.dirname(target)
    staging = tempfile.mkdtemp(prefix=".download-", dir=folder)
    try:
        try:
            path = keras.utils.get_file(fname=os.path.basename(target), origin=uri, file_hash=sha,
                                        hash_algorithm="sha256", cache_dir=staging, cache_subdir=".")
        except Exception as error:  # HTTP errors, interrupted transfers, hash mismatch
            raise WeightsError(f"Could not download {uri}: {error}") from None
        _verified(path, sha, uri)
        os.replace(path, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load(name, *, weights=True, cache_dir=None):
    """The pretrained model `name` (card attached as `model.card`); `weights=False` skips loading.

    `name` may also be a preset folder or a hub URI (`hf://ORG/REPO[@REVISION]`,
    `kaggle://OWNER/MODEL/keras/VARIANT[/VERSION]`): those go through `resolve_model` like
    every other MODEL argument (see `vaezoo.presets`, `vaezoo.hub`).

    Example:
        >>> vaezoo.load("vae-mnist")              # zoo name (weights ship in the package)
        >>> vaezoo.load("presets/vae-mnist")      # a preset folder (vaezoo.save_preset)
        >>> vaezoo.load("hf://my-org/vae-mnist")  # a preset on the Hugging Face Hub
    """
    from vaezoo import hub, presets

    if hub.is_uri(name) or (isinstance(name, (str, os.PathLike)) and presets.is_preset(name)):
        return resolve_model(name).model
    model = build(name)
    if weights:
        path = fetch_weights(model.card, cache_dir)
        try:
            if "base" in model.card["weights"]:
                _load_shared_weights(model, path, cache_dir)
            else:
                model.load_weights(path)
        except WeightsError:
            raise
        except Exception as error:
            raise WeightsError(f"Could not load weights {path} into {name}: {error}") from None
        presets.remember_card_weights(model, model.card)  # a preset of it keeps the card's metrics
    return model


def _load_shared_weights(model, path, cache_dir=None):
    """Load a card whose file holds one part's weights (`weights.part`, e.g. an older context
    model): every other weight comes from the `weights.base` zoo model's file, which must still
    be the one pinned by `weights.base_sha256` (so the model is bit for bit what was published)."""
    weights = model.card["weights"]
    base_card = info(weights["base"])
    if (base_card["weights"] or {}).get("sha256") != weights["base_sha256"]:
        raise WeightsError(f"{model.card['name']} shares the weights of {weights['base']} as of sha256 "
                           f"{weights['base_sha256'][:16]}..., but {weights['base']} now ships "
                           f"{str((base_card['weights'] or {}).get('sha256'))[:16]}...: republish {model.card['name']} "
                           "with its own weights file before changing its base.")
    base = load(weights["base"], cache_dir=cache_dir)  # (a base may share weights too)
    part = weights["part"]
    ours, theirs = _weights_outside(model, part), _weights_outside(base, part)
    if [tuple(w.shape) for w in ours] != [tuple(w.shape) for w in theirs]:
        raise WeightsError(f"{model.card['name']} and its base {weights['base']} differ outside {part!r}: "
                           "their other weights cannot be shared.")
    for variable, value in zip(ours, theirs):
        variable.assign(value)
    getattr(model, part).load_weights(path)


def _weights_outside(model, part):
    """The model's weights, in order, without those of the sub-layer `part`."""
    if not model.built:
        model.build_from_images()
    inside = {id(w) for w in getattr(model, part).weights}
    return [w for w in model.weights if id(w) not in inside]


def load_codec_model(header):
    """The zoo VQ-VAE or RQ-VAE a `.vqz` header was written with (`vaezoo decompress FILE` without --model).

    Loads each pretrained zoo model of the VQVAE and RQVAE families and compares its weights
    sha256 with the header's (the first 4 bytes versions 2 and 3 store, the whole hash of
    version 1).

    Raises:
        UnknownModelError: no zoo model matches; the message says to pass --model.
    """
    from vaezoo.workdir import weights_fingerprint

    stored = getattr(header, "model_id", None) or header.weights_sha256
    for name in list_models(pretrained=True):
        if info(name)["family"] not in ("VQVAE", "RQVAE"):
            continue
        model = load(name)
        if weights_fingerprint(model).startswith(stored):
            return model
    raise UnknownModelError(f"No zoo model has the weights this .vqz was written with (sha256 {stored[:16]}...); "
                            "pass the model it was written with: --model MODEL or --tflite DIR.")


class ResolvedModel(typing.NamedTuple):
    """What `resolve_model` knows about a MODEL argument."""

    model: object  #: the vaezoo model
    name: str  #: what files and exports record: registry name, or the file / folder name
    data_spec: object  #: its evaluation data spec (dict), or None (a .keras file or a model object)
    kind: str  #: "object", "keras", "workdir", "preset" or "registry"


def resolve_model(ref):
    """The one resolver behind every command and API that takes a MODEL: a vaezoo model
    object, a `.keras` file (loaded with safe_mode=True), a preset folder or hub URI
    (`hf://...`, `kaggle://...`; `LatentVariableModel.from_preset`), a finished training
    workdir or a registry name. Returns a `ResolvedModel(model, name, data_spec, kind)`; the
    data spec is the workdir's or card's `eval_data` (else `data`).

    Raises:
        UnsafeFileError: a `.keras` file that holds code (a Lambda layer).
        FileNotFoundError: a path that is neither a `.keras` file nor a finished workdir.
        UnknownModelError: a name with no card (the message lists the closest names).
    """
    from vaezoo import hub, presets, workdir
    from vaezoo.models.base import LatentVariableModel

    if isinstance(ref, LatentVariableModel):
        return ResolvedModel(ref, ref.name, None, "object")
    if not isinstance(ref, (str, os.PathLike)):
        raise TypeError("MODEL must be a vaezoo model, a .keras file, a training workdir or a registry name; "
                        f"got {type(ref).__name__}.")
    path = os.fspath(ref)
    stem = os.path.basename(os.path.normpath(path))
    if hub.is_uri(path) or presets.is_preset(path):
        import vaezoo.models  # noqa: F401  (registers every family with Keras)

        model = LatentVariableModel.from_preset(path)
        card = model.card
        spec = card.get("eval_data") or card.get("data")
        if isinstance(spec, dict):
            spec = {k: v for k, v in spec.items() if k not in DATA_ONLY_KEYS}
        return ResolvedModel(model, card["name"], spec, "preset")
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ValueError(f"{path} is a file but not a .keras model (expected MODEL.keras).")
        import keras

        import vaezoo.models  # noqa: F401  (registers the classes for safe deserialization)

        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except ValueError as error:
            if "unsafe" in str(error).lower() or "lambda" in str(error).lower():
                raise UnsafeFileError(
                    f"{path!r} holds code (a Lambda layer or a serialized function); vaezoo loads .keras files "
                    f"with safe_mode=True and refuses to run code from a file.") from None
            raise
        return ResolvedModel(model, stem[: -len(".keras")], None, "keras")
    if os.path.isdir(path):
        workdir.require_finished(path)
        return ResolvedModel(workdir.load(path), stem, workdir.data_spec(path), "workdir")
    if os.sep in path or path.endswith((".keras", ".h5")) or path.startswith("."):
        raise FileNotFoundError(f"No such model file or workdir: {path}.")
    config = card_to_training_config(info(path))  # drops documentation-only data keys
    return ResolvedModel(load(path), path, config.get("eval_data") or config.get("data"), "registry")
