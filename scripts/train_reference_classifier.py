"""Train the MNIST reference classifier that scores CVAE samples (conditional accuracy).

Writes `vaezoo/pretrained/mnist_classifier.weights.h5` and, beside it, `mnist_classifier.json`
with the architecture config (so `vaezoo.classifier.load_reference_classifier()` rebuilds the
network from config and loads the weights), the measured test accuracy, the command, date,
hardware and the weights' sha256.

Protocol: MNIST from ../shared/data/mnist.npz (uint8 / 255, no augmentation), the
`vaezoo.classifier.DEFAULT_CONFIG` CNN, Adam (1e-3, cosine decay to 0), batch 128, `--epochs` passes over the
60,000 training images (the last 5,000 held out for validation), accuracy on the 10,000 test
images. One epoch takes 1 to 2 minutes on 2 CPU cores; the shipped weights are from 8 epochs.

    python scripts/train_reference_classifier.py [--epochs 8] [--data ../shared/data/mnist.npz]
"""

import argparse
import datetime
import hashlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist.npz"),
                        help="MNIST .npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="weights path (default: vaezoo/pretrained/mnist_classifier.weights.h5)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from vaezoo.classifier import DEFAULT_CONFIG, build_classifier, pretrained_dir
    from vaezoo.data import load_npz
    from vaezoo.io import atomic_path, write_json

    keras.utils.set_random_seed(args.seed)
    x_train, y_train = load_npz(args.data, "x_train", "y_train")
    x_test, y_test = load_npz(args.data, "x_test", "y_test")
    x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    x_val, y_val = x_train[-5000:], y_train[-5000:]
    x_fit, y_fit = x_train[:-5000], y_train[:-5000]

    model = build_classifier(**DEFAULT_CONFIG)
    # Cosine decay to zero over the run: the last epochs at a small step size add the final
    # few tenths of a percent of test accuracy.
    steps = args.epochs * -(-len(x_fit) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.time()
    model.fit(x_fit, y_fit, epochs=args.epochs, batch_size=args.batch_size, validation_data=(x_val, y_val), verbose=2)
    seconds = time.time() - started
    logits = model.predict(x_test, batch_size=1000, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_test))
    print(f"test accuracy {accuracy:.4f} ({len(y_test)} MNIST test images), trained in {seconds:.0f}s")

    out = args.out or os.path.join(pretrained_dir(), "mnist_classifier.weights.h5")
    shipped = build_classifier(**DEFAULT_CONFIG)  # uncompiled: the file holds no optimizer state
    shipped.set_weights(model.get_weights())
    with atomic_path(out) as tmp:
        shipped.save_weights(tmp)
    os.chmod(out, 0o644)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from common import hardware_description

        hardware = hardware_description()
    except ImportError:
        hardware = "unknown"
    write_json({
        "config": DEFAULT_CONFIG,
        "test_accuracy": accuracy,
        "protocol": f"MNIST train[:55000], {args.epochs} epochs, Adam 1e-3 with cosine decay, batch {args.batch_size}, "
                    f"seed {args.seed}; accuracy on the 10,000 MNIST test images",
        "command": " ".join(["python scripts/train_reference_classifier.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": hardware,
        "train_seconds": round(seconds, 1),
        "sha256": digest,
    }, out[: -len(".weights.h5")] + ".json")
    os.chmod(out[: -len(".weights.h5")] + ".json", 0o644)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
