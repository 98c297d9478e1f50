"""Dead hidden units in exact context-model training, and centred kernels (a study for issue 16).

    python benchmarks/dead_units_study.py                                   # rq-vae-cifar, 1 epoch each
    python benchmarks/dead_units_study.py --codes runs/ctx/codes.npz --no-append

Every layer of an exact context model reads non-negative inputs (embedding rows and clipped
activations, 0..127). An Adam step moves all of a unit's weights by about the learning rate in
the same direction when their gradients share its sign, which they do when all inputs are
non-negative, so the unit's pre-activation moves by about fan-in x mean input x learning rate:
tens of activation units per step. Units pushed below zero for every input get no gradient
and never come back. `center_kernels=True` trains each kernel centred over its fan-in, with
each unit's mean weight in a separate offset divided by the fan-in (see `GroupedContextModel`).

This script trains the same `RasterContextModel` of `--model`'s code stacks (an RQ-VAE's, in
raster order, each depth given the one before) with and without centred kernels, from the
same initialization and data order (one run per `--seeds` seed, each in a fresh process),
and reports for each the exact bits per code of the
frozen network on the test codes, per depth, and the share of each hidden layer's units that
are zero at every test position (dead). The shipped context model's dead units are counted
the same way, on the same codes.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, hardware_description, load_rq_model, markdown_table  # noqa: E402

TITLE = "Context-model training: dead hidden units and centred kernels (rq-vae-cifar, CIFAR-10 (JPEG q75 copy))"


def hidden_activations(network, stacks, depth):
    """The integer activations `(positions, C)` of every hidden layer of a frozen context
    network at every position of depth index `depth` of code stacks `(n, h, w, D)` (as the
    coder computes them: a grouped network's inputs are those of its last group)."""
    from vaezoo import integer_entropy as ie

    n, h, w = stacks.shape[:3]
    if network.schedule == ie.RASTER:
        windows = network.window(ie.raster_stack_input(stacks, depth, network.num_embeddings), np.arange(h * w))
        a = network.embedding[windows.reshape(n * h * w, -1)].reshape(n * h * w, -1).astype(np.float64)
        step = lambda a, kernel: a @ kernel  # noqa: E731
    else:
        groups = ie.group_map(h, w, network.schedule)
        rows = ie.network_input(network, stacks, groups, int(groups.max()), depth)
        a = network.embedding[rows].reshape(n, h, w, -1).astype(np.float64)
        step = lambda a, kernel: ie._conv3x3(a, kernel)  # noqa: E731
    out = []
    for kernel, bias, shift in zip(network.kernels, network.biases, network.shifts):
        a = np.clip(np.floor((step(a, kernel.astype(np.float64)) + bias) * 2.0 ** -int(shift)), 0, 127)
        out.append(a.reshape(-1, a.shape[-1]))
    return out


def dead_shares(network, stacks):
    """Per hidden layer, the share of units zero at every position of every depth of `stacks`."""
    alive = None
    for depth in range(stacks.shape[-1]):
        layers = [np.any(a > 0, axis=0) for a in hidden_activations(network, stacks, depth)]
        alive = layers if alive is None else [x | y for x, y in zip(alive, layers)]
    return [float(1 - np.mean(x)) for x in alive]


def train_raster(train, num_embeddings, depths, center, channels, layers, epochs, seed=0):
    """The frozen network's arrays (`to_arrays`) of a `RasterContextModel` trained on `train`."""
    import keras
    import tensorflow as tf

    from vaezoo.models.context_model import RasterContextModel

    keras.utils.set_random_seed(seed)
    model = RasterContextModel(num_embeddings, channels=channels, num_layers=layers, seed=seed, depths=depths,
                               center_kernels=center)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train), seed=seed).batch(128)
    for epoch in range(epochs):
        model.optimizer.learning_rate.assign(2e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs)))
        model.fit(dataset, epochs=1, verbose=0)
    return model.freeze().to_arrays()


def train_in_fresh_process(*args):
    """`train_raster` in a process of its own, as `scripts/train_context_model.py` trains: runs
    share no Keras or TensorFlow state."""
    import multiprocessing

    from vaezoo import integer_entropy as ie

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return ie.network_from_arrays(pool.apply(train_raster, args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rq-vae-cifar")
    parser.add_argument("--codes", default=None, metavar="CODES_NPZ",
                        help="code stacks cached by scripts/train_context_model.py for --model (arrays train, test); "
                             "default: encode the data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one run per seed and setting")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=50000, help="N evenly spaced training images")
    parser.add_argument("--test-images", type=int, default=2000,
                        help="N evenly spaced test images (the data's files are grouped by class)")
    parser.add_argument("--dead-images", type=int, default=200, help="test images whose positions count for dead units")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo import data
    from vaezoo import integer_entropy as ie

    model, spec = load_rq_model(args.model)
    start = time.time()
    if args.codes:
        with np.load(args.codes) as f:
            train, test = f["train"], f["test"]
        if train.ndim != 4 or train.shape[-1] != model.depth:
            raise SystemExit(f"{args.codes} does not hold {args.model}'s code stacks (n, h, w, {model.depth}); "
                             f"got {train.shape}.")
    else:
        def stacks(split, limit):
            images, _ = data.load_split(spec, split, limit=limit)
            return np.concatenate([np.asarray(model.encode_to_codes(images[i : i + 500]))
                                   for i in range(0, len(images), 500)]).astype(np.int32)

        train, test = stacks("train", 0), stacks("test", 0)
    # the data's files are grouped by class: evenly spaced images keep the classes balanced
    train = train[data.evenly_spaced(len(train), args.train_images)]
    test = test[data.evenly_spaced(len(test), args.test_images)]
    print(f"codes: train {train.shape}, test {test.shape} ({time.time() - start:.0f} s)", flush=True)
    k, depths = model.num_embeddings, model.depth
    rows = []
    shipped = model.context_network()
    networks = [(f"shipped ({shipped.schedule}, {len(shipped.kernels)} layers)", shipped, None)]
    for center in (False, True):
        for seed in args.seeds:
            name = (f"raster {args.channels} x {args.layers}, {'centred' if center else 'plain'} kernels, "
                    f"{args.epochs} epoch(s), seed {seed}")
            networks.append((name, train_in_fresh_process(train, k, depths, center, args.channels, args.layers,
                                                          args.epochs, seed), center))
            print(f"trained: {name} ({time.time() - start:.0f} s)", flush=True)
    for name, network, _ in networks:
        per_depth = ie.code_bits(network, test, per_depth=True).sum(axis=0) / (len(test) * np.prod(test.shape[1:3]))
        dead = dead_shares(network, test[data.evenly_spaced(len(test), args.dead_images)])
        rows.append({"context model": name, "exact bits per code": round(float(per_depth.mean()), 3),
                     "depth 1": round(float(per_depth[0]), 3), "depth 2": round(float(per_depth[1]), 3),
                     f"depth {depths}": round(float(per_depth[-1]), 3),
                     "dead units per hidden layer": " / ".join(f"{100 * d:.0f}%" for d in dead)})
        print(rows[-1], f"({time.time() - start:.0f} s)", flush=True)
    table = markdown_table(rows, list(rows[0]))
    print(table)
    if not args.no_append:
        protocol = (f"`{args.model}`'s code stacks of {len(train)} training and {len(test)} test images "
                    f"(evenly spaced in the class-grouped files: all classes alike) of {spec.get('source')}:{spec.get('path')} "
                    "(CIFAR-10 (JPEG q75 copy)); each raster model: "
                    f"RasterContextModel of the code stacks ({args.channels} channels x {args.layers} layers, each "
                    f"depth given the depth before's 3x3), Adam 2e-3 with per-epoch cosine decay, batch 128, seeds "
                    f"{', '.join(map(str, args.seeds))} (each run in a fresh process), {args.epochs} epoch(s), one "
                    f"depth per stack and step; exact bits: the frozen network's masses "
                    f"on the test codes; dead: units zero at every position of every depth of {args.dead_images} of "
                    "those test stacks, spread the same way")
        append_results(TITLE, table, protocol, hardware_description())


if __name__ == "__main__":
    main()
