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


def _write_float16_copy(source, target):
    """Copy a Keras `.weights.h5` file with every float32 array stored as float16.

    Keras casts on load, so the model keeps float32 variables; only the file halves. A fresh
    file is written (deleting HDF5 datasets in place would not reclaim their space).
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
                    if isinstance(data, np.ndarray) and data.dtype == np.float32:
                        data = data.astype(np.float16)
                    group_out.create_dataset(key, data=data)
                    group_out[key].attrs.update(dict(item.attrs))

        copy(src, dst)


def publish(workdir, name, float16=False):
    """Ship a finished training run's weights as `pretrained://NAME.weights.h5` and record
    their sha256 and size in the card (the way weights enter the zoo; never by hand).

    With `float16=True` the file stores float16 arrays (half the size; the model loads them
    into float32 variables). Metrics in the card that were measured on other weights are
    dropped: they describe a different model. Measure the shipped weights with
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
        if float16:
            _write_float16_copy(source, tmp)
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


def record_metrics(name, records):
    """Merge `{metric: {value, split, protocol, hardware, date, command}}` into the card."""
    card = registry.info(name)
    card["metrics"] = {**(card["metrics"] or {}), **records}
    write_card(card)
    return card
