"""Train the exact grouped context model (`.vqz` version 2) of a zoo VQ-VAE on its data's codes.

    python scripts/train_context_model.py --model vq-vae-cifar --workdir runs/context-cifar

Encodes the training and test images of the model's card data once (cached as
`codes.npz` in the workdir), trains a `GroupedContextModel` with Adam, checkpointing after
every epoch (rerunning the command resumes), then freezes it and reports the exact rate
(bits per code of the integer model's masses, what a file costs) on the test codes beside
the PixelCNN prior's -log2 p(codes). Writes `context_model.npz` (the frozen network) and
`report.json` into the workdir.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))


def encode_codes(model, spec, split, batch_size=500):
    from vaezoo import data

    images, _ = data.load_split(spec, split, limit=0)
    out = [np.asarray(model.encode_to_codes(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.int32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vq-vae-cifar")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import vaezoo
    from vaezoo.io import atomic_path, write_json
    from vaezoo.models.context_model import GroupedContextModel
    from vaezoo.registry import resolve_model

    os.makedirs(args.workdir, exist_ok=True)
    resolved = resolve_model(args.model)
    vq = resolved.model
    codes_path = os.path.join(args.workdir, "codes.npz")
    if not os.path.isfile(codes_path):
        spec = dict(resolved.data_spec)
        print("encoding the training and test images ...", flush=True)
        train, test = encode_codes(vq, spec, "train"), encode_codes(vq, spec, "test")
        with atomic_path(codes_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, train=train, test=test)
    with np.load(codes_path) as f:
        train, test = f["train"], f["test"]
    print(f"codes: train {train.shape}, test {test.shape}", flush=True)

    model = GroupedContextModel(vq.num_embeddings, channels=args.channels, num_layers=args.layers, seed=args.seed)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    state_path = os.path.join(args.workdir, "state.json")
    weights_path = os.path.join(args.workdir, "context.weights.h5")
    done = 0
    if os.path.isfile(state_path) and os.path.isfile(weights_path):
        with open(state_path, encoding="utf-8") as f:
            done = json.load(f)["epochs"]
        model.load_weights(weights_path)
        print(f"resuming after epoch {done}", flush=True)
    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train), seed=args.seed).batch(args.batch_size)
    start = time.time()
    for epoch in range(done, args.epochs):
        lr = args.learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))  # cosine decay per epoch
        model.optimizer.learning_rate.assign(lr)
        history = model.fit(dataset, epochs=1, verbose=0).history
        with atomic_path(weights_path) as tmp:
            model.save_weights(tmp)
        write_json({"epochs": epoch + 1}, state_path)
        print(f"epoch {epoch + 1}/{args.epochs}: {history['bits_per_code'][0]:.3f} bits/code (train, lr {lr:.2e}), "
              f"{time.time() - start:.0f} s", flush=True)

    network = model.freeze()
    with atomic_path(os.path.join(args.workdir, "context_model.npz")) as tmp, open(tmp, "wb") as f:
        np.savez(f, **network.to_arrays())
    from vaezoo.integer_entropy import code_bits

    exact = float(np.sum(code_bits(network, test))) / test.size
    pixelcnn = float(np.mean(np.concatenate([np.asarray(vq.prior.bits_per_code(test[i : i + 1000]))
                                              for i in range(0, len(test), 1000)])))
    report = {"model": args.model, "test_codes": int(test.shape[0]), "exact_bits_per_code": exact,
              "pixelcnn_bits_per_code": pixelcnn, "ratio": exact / pixelcnn, "epochs": args.epochs,
              "channels": args.channels, "layers": args.layers, "vaezoo": vaezoo.__version__}
    write_json(report, os.path.join(args.workdir, "report.json"))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
