"""How many bits an RQ-VAE's codes would cost under a raster-order context (a study for issue 16).

    python benchmarks/stack_context_study.py                         # rq-vae-cifar, depths 1, 2, 5, 8
    python benchmarks/stack_context_study.py --model rq-vae-cifar-groups5   # against the 5-group coder
    python benchmarks/stack_context_study.py --depths 1 --no-append  # one depth, nothing recorded

A model's shipped context model is what its `.vqz` files pay: for `rq-vae-cifar-groups5` a
`GroupedContextModel` that codes each depth in 5 interleaved groups, seeing the same depth's
earlier groups and the depth before at each position, through 3x3 convolutions of at most 86
channels; for `rq-vae-cifar` the raster-order coder this study led to. This study trains, for
each given depth k, a small float network that sees what a raster-order coder of code stacks
gives it: the 24 codes of `integer_entropy.causal_window(3, 3)` at depth k (as
`RasterContextModel` does for a VQ-VAE) and, for k > 1, the 3x3 codes of depth k - 1 around the
position (all known, since depth k - 1 is coded first). Its test cross-entropy (bits per code)
is set beside the shipped model's exact bits per code at the same depth, on the same codes.

The network is float (an embedding of 24 entries per code and window slot, two dense layers
of 256, softmax over K), trained with Adam (2e-3, per-epoch cosine) on the codes of
`--train-images` training images (evenly spaced: the CIFAR-10 copy is sorted by class). It estimates what a raster-order coder of code stacks could
save; it is not a coder: an exact (integer, quantization-aware) network of that kind would have
to be built and trained to know its rate, which may land above or below the float estimate.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, exact_bits_per_depth, hardware_description, load_rq_model, markdown_table  # noqa: E402,E501

TITLE = "Context study: raster-order windows for an RQ-VAE's code stacks (CIFAR-10 (JPEG q75 copy))"


def window_inputs(stacks, depth, num_embeddings, rows_above=3, radius=3):
    """`(inputs (n * h * w, taps), targets (n * h * w,))` of depth index `depth` of code stacks
    `(n, h, w, D)`: the causal window's codes at that depth, then (depth > 0) the 3x3 codes of
    the depth before, offset by K + 1 so the two kinds have their own rows; K outside the grid."""
    from vaezoo.integer_entropy import causal_window

    k = num_embeddings
    h, w = stacks.shape[1:3]
    pad = [[0, 0], [rows_above, 1], [radius, radius]]
    current = np.pad(stacks[..., depth], pad, constant_values=k)
    columns = [current[:, rows_above + dr : rows_above + dr + h, radius + dc : radius + dc + w]
               for dr, dc in causal_window(rows_above, radius).tolist()]
    if depth > 0:
        before = np.pad(stacks[..., depth - 1], pad, constant_values=k)
        columns += [before[:, rows_above + dr : rows_above + dr + h, radius + dc : radius + dc + w] + (k + 1)
                    for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    return np.stack(columns, -1).reshape(-1, len(columns)), stacks[..., depth].reshape(-1)


def float_rate(train, test, depth, num_embeddings, epochs, seed=0):
    """Test bits per code of the study's float network after `epochs` epochs."""
    import keras

    keras.utils.set_random_seed(seed)
    x_train, y_train = window_inputs(train, depth, num_embeddings)
    x_test, y_test = window_inputs(test, depth, num_embeddings)
    inputs = keras.Input((x_train.shape[1],), dtype="int32")
    h = keras.layers.Flatten()(keras.layers.Embedding(2 * (num_embeddings + 1), 24)(inputs))
    h = keras.layers.Dense(256, activation="relu")(keras.layers.Dense(256, activation="relu")(h))
    model = keras.Model(inputs, keras.layers.Dense(num_embeddings)(h))
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for epoch in range(epochs):
        model.optimizer.learning_rate.assign(2e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs)))
        model.fit(x_train, y_train, batch_size=1024, epochs=1, verbose=0)
    return float(model.evaluate(x_test, y_test, batch_size=4096, verbose=0) / np.log(2.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rq-vae-cifar")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 5, 8], help="depths studied (1-based)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo import data

    model, spec = load_rq_model(args.model)
    bad = [d for d in args.depths if not 1 <= d <= model.depth]
    if bad:
        raise SystemExit(f"--depths must be in 1..{model.depth}, got {bad}.")

    def stacks(split, limit):
        images, _ = data.load_split(spec, split, limit=limit, spread=True)
        return np.concatenate([np.asarray(model.encode_to_codes(images[i : i + 500]))
                               for i in range(0, len(images), 500)]).astype(np.int32)

    start = time.time()
    train, test = stacks("train", args.train_images), stacks("test", args.test_images)
    print(f"codes: train {train.shape}, test {test.shape} ({time.time() - start:.0f} s)", flush=True)
    shipped = exact_bits_per_depth(model, test)
    rows = []
    for depth in args.depths:
        estimate = float_rate(train, test, depth - 1, model.num_embeddings, args.epochs)
        rows.append({"depth": depth, "shipped context model (exact bits per code)": round(float(shipped[depth - 1]), 3),
                     "raster window estimate (float, bits per code)": round(estimate, 3),
                     "change": f"{100 * (estimate / shipped[depth - 1] - 1):+.1f}%",
                     "bytes per image saved at this depth": round(float(64 * (shipped[depth - 1] - estimate) / 8), 1)})
        print(rows[-1], f"({time.time() - start:.0f} s)", flush=True)
    table = markdown_table(rows, list(rows[0]))
    print(table)
    if not args.no_append:
        protocol = (f"`{args.model}`'s code stacks of {len(train)} training and {len(test)} test images (evenly "
                    "spaced over the class-sorted splits) "
                    f"of {spec.get('source')}:{spec.get('path')} (CIFAR-10 (JPEG q75 copy)); shipped: its context "
                    "network's exact rate (LiteRT); estimate: the float network of the script's docstring, "
                    f"{args.epochs} epochs, test cross-entropy; 'bytes saved' counts 64 codes per 32x32 image")
        append_results(TITLE, table, protocol, hardware_description())


if __name__ == "__main__":
    main()
