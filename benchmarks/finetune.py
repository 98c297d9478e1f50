"""Fine-tuning measured: `vae-mnist` fine-tuned on Fashion-MNIST against the same architecture
trained from scratch, with equal steps and equal hyper-parameters.

Both arms train the `vae-mnist` architecture (conv [32, 64], dense 512, 32 latents, Bernoulli
likelihood) on dynamically binarized Fashion-MNIST (`../shared/data/fashion_mnist.npz`,
x_train) with one recipe: Adam, constant learning rate 1e-3, batch 128, no KL warm-up, seed
per run. The zoo arm starts from `vae-mnist`'s weights (`vaezoo train --init vae-mnist`), the
scratch arm from a fresh initialisation (model seed = run seed). With a constant learning rate
a run of N steps is the first N steps of a longer run, so each (arm, seed) trains once to the
largest budget and is measured at every budget on the way (the run is continued from its
checkpoint: the same steps, data order and noise as separate runs).

Measured: the IWAE (k = 1000) estimate of log p(x) on the first `--test-images` images of the
Fashion-MNIST test set (binarized with seed 1; the same images and evaluation seed for every
cell, so the zoo-minus-scratch difference is paired per image), plus `vae-mnist` as shipped
(budget 0). Cells are cached in `RUNS/cells.json` as they finish: a rerun continues where an
interrupted one stopped (and training resumes from the runs' checkpoints).

    nohup python benchmarks/finetune.py > finetune.log 2>&1 &
    python benchmarks/finetune.py --budgets 5 10 --seeds 0 --test-images 4 --k 8 --runs /tmp/ft --no-append  # smoke
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ARMS = ("zoo", "scratch")  # zoo: starts from vae-mnist; scratch: fresh initialisation
START = "vae-mnist"


def recipe(data_path, seed, steps):
    """The one training config of both arms: vae-mnist's model on Fashion-MNIST, `steps` steps."""
    from vaezoo import registry

    card = registry.info(START)
    binarized = {"source": "npz", "path": os.path.abspath(data_path), "preprocess": "binarize_dynamic"}
    return {
        "name": "vae-fashion-mnist",
        "model": {"class": card["family"], "config": {**card["config"], "kl_warmup_steps": 0, "seed": seed}},
        "data": {**binarized, "key": "x_train"},
        "eval_data": {**binarized, "key": "x_test"},
        "train": {"steps": steps, "batch_size": 128, "learning_rate": 1e-3, "lr_schedule": "constant",
                  "log_every": 250, "checkpoint_every": 1000, "keep_checkpoints": 1, "eval_batches": 4,
                  "seed": seed, "strategy": "one_device"},
    }


def protocol_of(args):
    return {"test_images": args.test_images, "k": args.k, "data": os.path.abspath(args.data),
            "recipe": recipe(args.data, 0, 1)}


def load_cells(path, protocol):
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    if saved.get("protocol") != protocol:
        raise SystemExit(f"{path} holds cells of another protocol ({saved.get('protocol')}); "
                         "use another --runs folder or delete it.")
    return saved["cells"]


def save_cells(path, protocol, cells):
    from vaezoo.io import write_json

    write_json({"protocol": protocol, "cells": cells}, path)  # atomic: a kill never leaves half a file


def measure(model, images, k):
    """Per-image IWAE_k (nats), evaluation seed 0, and the seconds it took."""
    from vaezoo.evaluation import iwae_per_example, seeded

    started = time.time()
    with seeded(model, 0):
        values = iwae_per_example(model, images, k=k)
    return [float(v) for v in values], time.time() - started


def train_to(arm, seed, steps, args):
    """The (arm, seed) run continued to `steps`; returns the model and the training seconds."""
    import vaezoo
    from vaezoo import workdir

    folder = os.path.join(args.runs, f"{arm}-seed{seed}")
    init = vaezoo.load(START) if arm == "zoo" else None
    started = time.time()
    metrics = vaezoo.train(recipe(args.data, seed, steps), folder, verbose=True, init=init,
                           init_name=START if init is not None else None)
    if metrics["steps"] != steps:  # a run folder left by a run with other budgets
        raise SystemExit(f"{folder} holds a run already past {steps} steps ({metrics['steps']}); delete it.")
    return workdir.load(folder), time.time() - started


def sd(values):
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(cells, args):
    """One table row per budget: both arms' mean IWAE over seeds and the paired difference."""
    import numpy as np

    rows, verdicts = [], []
    before = cells.get("vae-mnist/0")
    if before:
        rows.append({"steps": 0, "from vae-mnist (nats)": np.mean(before["iwae"]), "from scratch (nats)": "n/a",
                     "zoo - scratch (nats)": "", "zoo better in": "", "verdict": "vae-mnist as shipped"})
    for budget in args.budgets:
        keys = [(f"zoo/{s}/{budget}", f"scratch/{s}/{budget}") for s in args.seeds]
        if not all(a in cells and b in cells for a, b in keys):
            continue
        zoo = np.array([np.mean(cells[a]["iwae"]) for a, _ in keys])
        scratch = np.array([np.mean(cells[b]["iwae"]) for _, b in keys])
        diff = zoo - scratch  # per seed: mean over the same images of the paired difference
        spread = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        if (diff > 0).all() and diff.mean() > 2 * spread:
            verdict = "helped"
        elif (diff < 0).all() and -diff.mean() > 2 * spread:
            verdict = "hurt"
        else:
            verdict = "no clear difference"
        verdicts.append((budget, verdict))
        rows.append({"steps": budget, "from vae-mnist (nats)": f"{zoo.mean():.2f} ± {sd(zoo):.2f}",
                     "from scratch (nats)": f"{scratch.mean():.2f} ± {sd(scratch):.2f}",
                     "zoo - scratch (nats)": f"{diff.mean():+.2f} ± {spread:.2f}",
                     "zoo better in": f"{int((diff > 0).sum())}/{len(diff)} seeds", "verdict": verdict})
    return rows, verdicts


def conclusion(verdicts):
    if not verdicts:
        return "no budget finished"
    helped = [b for b, v in verdicts if v == "helped"]
    hurt = [b for b, v in verdicts if v == "hurt"]
    if len(helped) == len(verdicts):
        return "starting from vae-mnist helped at every budget"
    parts = []
    if helped:
        parts.append(f"starting from vae-mnist helped at {', '.join(map(str, helped))} steps")
    if hurt:
        parts.append(f"it hurt at {', '.join(map(str, hurt))} steps")
    rest = [b for b, v in verdicts if v == "no clear difference"]
    if rest:
        parts.append(f"no clear difference at {', '.join(map(str, rest))} steps")
    return "; ".join(parts)


def publish(name, cells, args):
    """Ship seed 0's run of the better arm at the largest budget as the zoo model `name`: its card
    is the benchmark's recipe (naming vae-mnist as `init` when that arm won); float16, compressed.
    Measure it with `vaezoo eval NAME --metrics elbo iwae mse active_units --k 1000 --limit 0 --write-card`."""
    import numpy as np

    from vaezoo import registry, zoo_maintenance

    budget = args.budgets[-1]
    means = {arm: np.mean([np.mean(cells[f"{arm}/{s}/{budget}"]["iwae"]) for s in args.seeds]) for arm in ARMS}
    arm = max(ARMS, key=means.get)
    folder = os.path.join(args.runs, f"{arm}-seed0")
    config = recipe(args.data, 0, budget)
    start = registry.info(START)
    shared = os.path.join("..", "shared", "data", os.path.basename(args.data))  # as the other cards say it
    card = {"name": name,
            "description": f"{start['description'].split(' on ')[0]} on dynamically binarized 28x28 Fashion-MNIST"
                           + (f", fine-tuned from {START}." if arm == "zoo" else ", trained from scratch."),
            "family": start["family"], "config": config["model"]["config"],
            **({"init": START} if arm == "zoo" else {}),
            "data": {"tfds": "fashion_mnist", **config["data"], "path": shared},
            "eval_data": {**config["eval_data"], "path": shared},
            "train": {k: v for k, v in config["train"].items() if k != "strategy"},
            "smoke": {"train": {"steps": 10, "log_every": 5, "checkpoint_every": 5, "eval_batches": 1}},
            "weights": None, "metrics": {},
            "notes": {"data": "Fashion-MNIST (Xiao, Rasul and Vollgraf 2017), the lossless copy in "
                              "../shared/data/fashion_mnist.npz (from Debian's dataset-fashion-mnist package); "
                              "dynamic binarization (a fresh Bernoulli draw from the grey level each time).",
                      "training": f"the {arm} arm of benchmarks/finetune.py at {budget} steps, seed 0 (its mean IWAE "
                                  f"over seeds {args.seeds} beat the other arm's: {means[arm]:.2f} vs "
                                  f"{means[ARMS[1 - ARMS.index(arm)]]:.2f} nats on {args.test_images} test images).",
                      "storage": "weights stored as float16 and gzip-compressed (vaezoo publish --float16 --compress); "
                                 "the model loads them into float32 variables.",
                      "license": "Fashion-MNIST is MIT-licensed by Zalando Research; vaezoo code and these weights "
                                 "are Apache-2.0."}}
    zoo_maintenance.write_card(card)
    weights = zoo_maintenance.publish(folder, name, float16=True, compress=True)
    print(f"published {folder} as {name} ({arm} arm): {weights}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="vae-mnist fine-tuned on Fashion-MNIST vs trained from scratch")
    # about 3 steps/s at batch 128 on 2 shared cores: 6 runs of 1,000 steps take half an hour
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000], help="training steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-images", type=int, default=100,
                        help="first N Fashion-MNIST test images for IWAE (0: all 10,000)")
    parser.add_argument("--k", type=int, default=1000, help="IWAE importance samples")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(HERE), "..", "shared", "data",
                                                       "fashion_mnist.npz"))
    parser.add_argument("--runs", default=os.path.join(os.path.dirname(HERE), "runs", "finetune"),
                        help="training workdirs and cells.json (the cache a rerun continues from)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument("--publish", metavar="NAME",
                        help="after the table, ship seed 0's run of the better arm at the largest budget as zoo "
                             "model NAME (maintainers, in a source checkout)")
    args = parser.parse_args(argv)
    args.budgets = sorted(set(args.budgets))
    if not os.path.isfile(args.data):
        raise SystemExit(f"No Fashion-MNIST npz at {args.data} (see ../shared/data/README.md); pass --data PATH.")

    import common
    from vaezoo import data as datasets
    import vaezoo

    os.makedirs(args.runs, exist_ok=True)
    cache = os.path.join(args.runs, "cells.json")
    protocol = protocol_of(args)
    cells = load_cells(cache, protocol)
    spec = recipe(args.data, 0, 1)["eval_data"]
    images, _ = datasets.load_split(spec, "test", limit=args.test_images or None)
    print(f"{len(images)} test images, IWAE k = {args.k}; cache {cache} ({len(cells)} cells done)", flush=True)

    if "vae-mnist/0" not in cells:
        values, seconds = measure(vaezoo.load(START), images, args.k)
        cells["vae-mnist/0"] = {"iwae": values, "eval_seconds": seconds, "images_evaluated": len(values)}
        save_cells(cache, protocol, cells)
        print(f"vae-mnist as shipped: IWAE {sum(values) / len(values):.2f} nats ({seconds:.0f} s)", flush=True)
    for seed in args.seeds:
        for arm in ARMS:
            for budget in args.budgets:
                key = f"{arm}/{seed}/{budget}"
                if key in cells:
                    continue
                model, train_seconds = train_to(arm, seed, budget, args)
                values, seconds = measure(model, images, args.k)
                cells[key] = {"iwae": values, "eval_seconds": seconds, "train_seconds": train_seconds,
                      "images_evaluated": len(values)}
                save_cells(cache, protocol, cells)
                print(f"{key}: IWAE {sum(values) / len(values):.2f} nats (train {train_seconds:.0f} s, "
                      f"eval {seconds:.0f} s)", flush=True)

    rows, verdicts = summarize(cells, args)
    columns = ["steps", "from vae-mnist (nats)", "from scratch (nats)", "zoo - scratch (nats)", "zoo better in",
               "verdict"]
    table = common.markdown_table(rows, columns)
    said = conclusion(verdicts)
    evals = [c["eval_seconds"] for c in cells.values() if c.get("images_evaluated", len(images)) == len(images)]
    longer = [key for key, c in cells.items() if c.get("images_evaluated", len(images)) != len(images)]
    text = (f"{table}\n\nResult: {said}. Values: mean ± standard deviation over {len(args.seeds)} seeds of the "
            f"mean IWAE; difference: mean ± standard error over seeds (paired on the same images). "
            f"\"helped\": the zoo start was better in every seed and by more than two standard errors.")
    print(text)
    timing = f"{min(evals):.0f}-{max(evals):.0f} s" if evals else "n/a"
    protocol_line = (
        f"vae-mnist's architecture on dynamically binarized Fashion-MNIST (../shared/data/fashion_mnist.npz, "
        f"60,000 training images); both arms: Adam, constant learning rate 1e-3, batch 128, no KL warm-up, equal "
        f"steps; zoo arm starts from vae-mnist's weights, scratch arm from a fresh initialisation (model seed = "
        f"run seed); seeds {', '.join(map(str, args.seeds))}; held-out IWAE (k = {args.k}) log p(x) in nats "
        f"(higher is better) on the first {len(images)} Fashion-MNIST test images (binarized with seed 1, "
        f"evaluation seed 0); one IWAE evaluation of {len(images)} images took {timing} here, which is why the "
        f"table uses a test subset")
    if longer:
        protocol_line += (f"; cells {', '.join(longer)} were evaluated on more images in one call and use the first "
                          f"{len(images)} values")
    protocol_line += ("; the zoo model published from this run (vae-fashion-mnist) records its own metrics in its "
                      "card (vaezoo eval --write-card)")
    if not args.no_append:
        common.append_results(f"Fine-tuning vae-mnist on Fashion-MNIST vs training from scratch (IWAE k = {args.k})",
                              text, protocol_line, common.hardware_description())
    if args.publish:
        publish(args.publish, cells, args)


if __name__ == "__main__":
    main()
