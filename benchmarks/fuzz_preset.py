"""Fuzz the preset reader: mutate the files of a valid preset (bit flips, byte changes,
truncation, extension, splices, random bodies; `fuzz_vqz.mutations`), half of the time with
metadata.json's hashes updated to match (so the parsing behind the hash check is reached), and
check every preset either loads or is refused with a ValueError (`PresetError`, or the weights
loader's ValueError) — never another exception, a crash or a hang. A changed file whose hash
was not updated must be refused by the hash (`PresetHashError`).

Records the number of inputs tried and the failures in benchmarks/RESULTS.md.

    python benchmarks/fuzz_preset.py --seconds 120
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402
from fuzz_vqz import mutations  # noqa: E402


def damage(preset_dir, name, data, rehash):
    """Write `data` as file `name` of the preset at `preset_dir`; with `rehash`, update
    metadata.json's hashes to the files as they now are."""
    with open(os.path.join(preset_dir, name), "wb") as f:
        f.write(data)
    if rehash and name != "metadata.json":
        path = os.path.join(preset_dir, "metadata.json")
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        for member in meta["files"]:
            with open(os.path.join(preset_dir, member), "rb") as f:
                meta["files"][member] = hashlib.sha256(f.read()).hexdigest()
        meta["weights_sha256"] = meta["files"]["model.weights.h5"]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(meta, f)


def outcome(preset_dir, name, changed, rehash):
    """'loaded', 'refused' (a ValueError) or 'hash' (PresetHashError) after file `name` was
    changed (or not); raises on any other exception, and if a changed hashed file (every file
    but metadata.json) whose hash was not updated got past the hash check."""
    import vaezoo
    from vaezoo import presets

    must_fail_hash = changed and not rehash and name != presets.METADATA
    try:
        vaezoo.load(preset_dir)
    except presets.PresetHashError:
        return "hash"
    except ValueError:
        if must_fail_hash:
            raise AssertionError(f"a changed {name} passed the hash check") from None
        return "refused"
    if must_fail_hash:
        raise AssertionError(f"a changed {name} loaded without its hash being updated")
    return "loaded"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import vaezoo
    from vaezoo import presets

    work = tempfile.mkdtemp(prefix="fuzz-preset-")
    model = vaezoo.VAE(input_shape=(8, 8, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [4]}, seed=0)
    base = presets.save_preset(model, os.path.join(work, "base"))
    originals = {name: open(os.path.join(base, name), "rb").read() for name in presets.FILES}
    rng = random.Random(args.seed)
    streams = {name: mutations([data], rng) for name, data in originals.items()}
    counts = {"inputs": 0, "loaded": 0, "refused": 0, "hash": 0, "other": 0}
    failures = []
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        name = rng.choice(presets.FILES)
        data, rehash = next(streams[name]), rng.random() < 0.5
        target = os.path.join(work, "case")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(base, target)
        damage(target, name, data, rehash)
        counts["inputs"] += 1
        try:
            counts[outcome(target, name, data != originals[name], rehash)] += 1
        except Exception:  # anything else is a reader bug
            counts["other"] += 1
            if len(failures) < 5:
                failures.append((name, rehash, data[:64].hex(), traceback.format_exc(limit=3)))
    shutil.rmtree(work, ignore_errors=True)
    for name, rehash, sample, trace in failures:
        print(f"FAILURE: {name} (rehash {rehash}) starting {sample}\n{trace}")
    rows = [{"inputs tried": counts["inputs"], "loaded": counts["loaded"],
             "refused by the hash": counts["hash"], "refused with a ValueError": counts["refused"],
             "other exceptions": counts["other"]}]
    table = markdown_table(rows, list(rows[0]))
    print(table)
    append_results("preset reader fuzzing", table,
                   protocol=f"{args.seconds:.0f} s of mutations of one file of a tiny VAE preset (bit flips, byte "
                            "overwrites, truncation, extension, splices, random bodies), half with metadata.json's "
                            f"hashes updated to match, seed {args.seed}",
                   hardware=hardware_description())
    return 1 if counts["other"] else 0


if __name__ == "__main__":
    sys.exit(main())
