"""Zoo maintenance: the only code that writes cards and shipped weights.

`vaezoo publish RUN --name NAME` ships a finished run's weights into the package and records
their sha256 in the card; `vaezoo eval NAME --write-card` records measured metrics. Both write
into the package's own folders (`zoo_configs/`, `pretrained/`), so they are for the zoo's
maintainers working in a source checkout; `vaezoo.registry`, which `load`, `build`, `info` and
`list_models` use, never writes.
"""

import os
import shutil

from vaezoo import registry
from vaezoo import workdir as workdirs
from vaezoo.io import atomic_path


def write_card(card):
    """Validate and write a card back to `zoo_configs/NAME.yaml` (atomically)."""
    import yaml

    registry.validate_card(card)
    path = os.path.join(registry.cards_dir(), f"{registry.check_name(card['name'])}.yaml")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(card, f, sort_keys=False, width=100, allow_unicode=True)
    return path


def _write_copy(source, target, float16=False, compress=False):
    """Copy a Keras `.weights.h5` file array by array: float32 arrays stored as float16 with
    `float16`, and arrays gzip-compressed (HDF5's shuffle + gzip filters, lossless) with `compress`.

    Keras reads both through h5py (casting float16 into the model's float32 variables), so only
    the file shrinks. A fresh file is written (deleting HDF5 datasets in place would not reclaim
    their space).
    """
    import h5py
    import numpy as np

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        def copy(group_in, group_out):
            group_out.attrs.update(dict(group_in.attrs))
            for key, item in group_in.items():
                if isinstance(item, h5py.Group):
                    copy(item, group_out.create_group(key))
                else:
                    data = item[()]
                    if float16 and isinstance(data, np.ndarray) and data.dtype == np.float32:
                        data = data.astype(np.float16)
                    filters = {}
                    # (on a few numbers an HDF5 chunk costs more than gzip saves)
                    if compress and isinstance(data, np.ndarray) and data.size >= 1024:
                        filters = {"compression": "gzip", "compression_opts": 9, "shuffle": True}
                    group_out.create_dataset(key, data=data, **filters)
                    group_out[key].attrs.update(dict(item.attrs))

        copy(src, dst)


def _arrays(path):
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, item: found.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def compress_shipped(name):
    """Rewrite the shipped weights of `name` gzip-compressed, losslessly, and record the new
    sha256 and size in the card. Every array is checked bit-identical to the old file's, so the
    card's metrics (measured on those values) are kept. Returns the card's new `weights`."""
    import numpy as np

    card = registry.info(name)
    uri = (card.get("weights") or {}).get("uri", "")
    if "base" in (card.get("weights") or {}):
        raise ValueError(f"{name} ships only its {card['weights']['part']} (already compressed); nothing to compress.")
    if not uri.startswith("pretrained://"):
        raise ValueError(f"{name}'s weights are not shipped in the package ({uri or 'none'}); nothing to compress.")
    path = registry.fetch_weights(card)  # verifies the current sha256
    with atomic_path(path) as tmp:
        _write_copy(path, tmp, compress=True)
        old, new = _arrays(path), _arrays(tmp)
        same = old.keys() == new.keys() and all(
            old[k].dtype == new[k].dtype and np.array_equal(old[k], new[k]) for k in old)
        if not same:
            raise AssertionError(f"the compressed copy of {path} does not hold the same arrays; not written.")
        registry.build(name).load_weights(tmp)
    os.chmod(path, 0o644)
    card["weights"] = {**card["weights"], "sha256": registry.sha256_of(path), "bytes": os.path.getsize(path)}
    if isinstance(card.get("notes"), dict):
        said = "arrays gzip-compressed (lossless, the same values; scripts/compress_shipped_weights.py)"
        previous = card["notes"].get("storage")
        if said not in str(previous):
            card["notes"]["storage"] = f"{previous.rstrip('.')}; {said}." if previous else f"weights {said}."
    write_card(card)
    return card["weights"]


def publish(workdir, name, float16=False, compress=False):
    """Ship a finished training run's weights as `pretrained://NAME.weights.h5` and record
    their sha256 and size in the card (the way weights enter the zoo; never by hand).

    With `float16=True` the file stores float16 arrays (half the size; the model loads them
    into float32 variables); with `compress=True` its arrays are gzip-compressed (lossless).
    Metrics in the card that were measured on other weights are dropped: they describe a
    different model. Measure the shipped weights with
    `vaezoo eval NAME --write-card`."""
    card = registry.info(name)
    source = os.path.join(workdir, workdirs.WEIGHTS)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source} does not exist: is {workdir!r} a finished training run?")
    model = registry.build(name)
    model.load_weights(source)  # refuse weights that do not fit the card's architecture
    filename = f"{name}.weights.h5"
    target = os.path.join(registry.pretrained_dir(), filename)
    with atomic_path(target) as tmp:
        if float16 or compress:
            _write_copy(source, tmp, float16=float16, compress=compress)
            registry.build(name).load_weights(tmp)  # the converted file must load into the card's model
        else:
            shutil.copyfile(source, tmp)
    os.chmod(target, 0o644)  # installed package data: readable by every user
    previous = (card.get("weights") or {}).get("sha256")
    card["weights"] = {"uri": f"pretrained://{filename}", "sha256": registry.sha256_of(target),
                       "bytes": os.path.getsize(target)}
    if card.get("metrics") and previous != card["weights"]["sha256"]:
        print(f"{name}: new weights; dropped the card's {len(card['metrics'])} metric(s) measured on the old ones "
              f"(measure again with `vaezoo eval {name} --write-card`)")
        card["metrics"] = {}
    write_card(card)
    return card["weights"]


def keep_as(name, new_name, description):
    """Keep zoo model `name`'s shipped weights loadable as `new_name` before new weights replace
    them, so that `.vqz` files written with them still decode (their headers name the weights
    fingerprint, not the zoo name; `vaezoo decompress` finds `new_name` from it).

    `new_name` gets a byte-identical copy of the weights file and `name`'s card (config, recipe
    and metrics: the same weights) with `description`; models that ship only a part of their
    weights on top of `name`'s (`share_base_weights`) are pointed at `new_name`, whose file is
    the one they were pinned to. Every model touched must load with the weights fingerprint it
    had, else nothing changes. Returns `new_name`'s card.
    """
    import copy

    from vaezoo.workdir import weights_fingerprint

    card = registry.info(name)
    weights = card.get("weights") or {}
    if not weights.get("uri", "").startswith("pretrained://") or "base" in weights:
        raise ValueError(f"{name} has no full weights file in the package to keep.")
    registry.check_name(new_name)
    if new_name in registry.list_models():
        raise ValueError(f"{new_name} is already a zoo model; choose another name.")
    cards = [registry.info(other) for other in registry.list_models()]
    dependents = [other for other in cards if (other.get("weights") or {}).get("base") == name]
    names = [d["name"] for d in dependents]
    before = {n: weights_fingerprint(registry.load(n)) for n in [name] + names}
    kept = copy.deepcopy(card)
    kept["name"], kept["description"] = new_name, description
    filename = f"{new_name}.weights.h5"
    target = os.path.join(registry.pretrained_dir(), filename)
    with atomic_path(target) as tmp:
        shutil.copyfile(registry.fetch_weights(card), tmp)
    os.chmod(target, 0o644)
    kept["weights"] = {**weights, "uri": f"pretrained://{filename}", "sha256": registry.sha256_of(target)}
    if isinstance(kept.get("notes"), dict):
        kept["notes"]["kept"] = (f"{name}'s weights (sha256 {weights['sha256'][:12]}) kept under this name when "
                                 f"{name} got new ones, so that .vqz files written with them decode "
                                 "(scripts/keep_weights_as.py)")
    try:
        write_card(kept)
        for dependent in dependents:
            dependent["weights"] = {**dependent["weights"], "base": new_name}
            write_card(dependent)
        after = {n: weights_fingerprint(registry.load(n)) for n in [new_name] + names}
        if after != {new_name: before[name], **{n: before[n] for n in names}}:
            raise AssertionError(f"{new_name} (or a model sharing {name}'s weights) does not load as it did.")
    except Exception:
        for path in (os.path.join(registry.cards_dir(), f"{new_name}.yaml"), target):
            if os.path.exists(path):
                os.remove(path)
        for dependent in dependents:
            dependent["weights"] = {**dependent["weights"], "base": name}
            write_card(dependent)
        raise
    return kept


def share_base_weights(name, base, part="context_model"):
    """Ship only `part`'s weights for `name`, taking every other weight from the zoo model
    `base` (which must hold exactly the same values there): a superseded model kept so that
    old `.vqz` files decode (for example vq-vae-cifar-groups5, whose autoencoder and prior are
    vq-vae-cifar's) then costs the package its context model instead of a full copy.

    The part is stored float16 when that is lossless and gzip-compressed. The model that
    `registry.load(name)` then builds must have bit for bit the weights it had (the same
    `weights_fingerprint`, which `.vqz` headers record), else nothing changes; the card keeps its
    metrics. Returns the card's new `weights`.
    """
    import tempfile

    import numpy as np

    from vaezoo.workdir import weights_fingerprint

    card, old_path = registry.info(name), None
    if not (card.get("weights") or {}).get("uri", "").startswith("pretrained://") or "base" in card["weights"]:
        raise ValueError(f"{name} has no full weights file in the package to split.")
    old_path = registry.fetch_weights(card)
    model, other = registry.load(name), registry.load(base)
    before = weights_fingerprint(model)
    ours, theirs = registry._weights_outside(model, part), registry._weights_outside(other, part)
    if len(ours) != len(theirs) or not all(a.shape == b.shape and np.array_equal(a.numpy(), b.numpy())
                                           for a, b in zip(ours, theirs)):
        raise ValueError(f"{name} and {base} differ outside {part!r}: {name} cannot share {base}'s weights.")
    values = [w.numpy() for w in getattr(model, part).weights]
    float16 = all(v.dtype != np.float32 or np.array_equal(v.astype(np.float16).astype(np.float32), v) for v in values)
    filename = f"{name}.{part}.weights.h5"
    target = os.path.join(registry.pretrained_dir(), filename)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "part.weights.h5")
        getattr(model, part).save_weights(path)
        with atomic_path(target) as tmp:
            _write_copy(path, tmp, float16=float16, compress=True)
    os.chmod(target, 0o644)
    card["weights"] = {"uri": f"pretrained://{filename}", "sha256": registry.sha256_of(target),
                       "bytes": os.path.getsize(target), "base": base,
                       "base_sha256": registry.info(base)["weights"]["sha256"], "part": part}
    previous = registry.info(name)
    write_card(card)
    try:
        after = weights_fingerprint(registry.load(name))
    except Exception:
        after = None
    if after != before:
        write_card(previous)
        os.remove(target)
        raise AssertionError(f"{name} loaded from {filename} and {base} is not the model it was; nothing changed.")
    os.remove(old_path)
    if isinstance(card.get("notes"), dict):
        said = (f"now only its {part} ships ({filename}, {'float16, ' if float16 else ''}gzip-compressed) and every "
                f"other weight is {base}'s (sha256 {card['weights']['base_sha256'][:12]}), the same values "
                "(scripts/share_base_weights.py; weights fingerprint unchanged)")
        previous_note = card["notes"].get("storage")
        card["notes"]["storage"] = f"{previous_note.rstrip('.')}; {said}." if previous_note else f"{said[4:]}."
        write_card(card)
    return card["weights"]


def record_metrics(name, records):
    """Merge `{metric: {value, split, protocol, hardware, date, command}}` into the card."""
    card = registry.info(name)
    card["metrics"] = {**(card["metrics"] or {}), **records}
    write_card(card)
    return card
