"""Anomaly detection on MNIST: one digit held out as the anomaly, VAE likelihood vs autoencoder error.

For each held-out digit d: train on the training images of the other nine digits, then score
the test images; the test images of digit d are the outliers (positives), the other test
images the inliers. Reported per digit: AUROC (and AUPRC) of
- the VAE's negative ELBO (nats; `vaezoo.evaluation.evaluate(..., score="elbo")`),
- the same VAE's reconstruction error (per-image MSE of the decoded posterior mean),
- a plain deterministic autoencoder's reconstruction error (same layer sizes, same epochs).

Protocol (default): MNIST from ../shared/data/mnist.npz, statically binarized at 0.5 (pixel >
127), the first 30,000 training images not of digit d, 5 epochs, batch 128, Adam 1e-3; MLP
encoders 784-256-16 and mirrored decoders, Bernoulli likelihood (VAE) / binary cross-entropy
(autoencoder). `--full`: every training image, 20 epochs, conv encoders, and a negative
IWAE (k = 100) column.

    python benchmarks/anomaly_detection.py              # about 10 minutes on 2 CPU cores
    python benchmarks/anomaly_detection.py --digits 0 1 --epochs 2 --no-append   # quick look
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def autoencoder(latent_dim, encoder):
    """A plain autoencoder with the VAE's layer sizes: image -> latent vector -> pixel logits."""
    import keras

    from vaezoo import networks

    enc = networks.build_encoder(encoder, (28, 28, 1), latent_dim)
    dec = networks.build_decoder(encoder, latent_dim, (28, 28, 1))
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, dec(enc(inputs)), name="autoencoder")


def main(argv=None):
    parser = argparse.ArgumentParser(description="MNIST anomaly detection: VAE ELBO vs autoencoder error")
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "mnist.npz"))
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None, help="training images per run (0: all)")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--full", action="store_true", help="all training images, 20 epochs, conv nets, IWAE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    epochs = args.epochs or (20 if args.full else 5)
    train_size = args.train_size if args.train_size is not None else (0 if args.full else 30000)
    encoder = {"type": "conv", "filters": [32, 64], "hidden": 256} if args.full else {"type": "mlp", "hidden": [256]}

    import keras
    import numpy as np

    import vaezoo
    from common import append_results, hardware_description, markdown_table
    from vaezoo import evaluation
    from vaezoo.data import load_npz

    x_train, y_train = load_npz(args.data, "x_train", "y_train")
    x_test, y_test = load_npz(args.data, "x_test", "y_test")
    x_train = (x_train > 127).astype(np.float32)
    x_test = (x_test > 127).astype(np.float32)

    rows, started = [], time.time()
    for digit in args.digits:
        t0 = time.time()
        keras.utils.set_random_seed(args.seed + digit)
        train = x_train[y_train != digit]
        if train_size:
            train = train[:train_size]
        inliers, outliers = x_test[y_test != digit], x_test[y_test == digit]

        vae = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=args.latent_dim, encoder=encoder,
                         likelihood="bernoulli", seed=args.seed + digit)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        vae.fit(train, epochs=epochs, batch_size=128, verbose=0)
        metrics = ("auroc", "auprc")
        by_elbo = evaluation.evaluate(vae, inliers, metrics=metrics, outliers=outliers, score="elbo",
                                      batch_size=500, seed=args.seed)
        by_recon = evaluation.evaluate(vae, inliers, metrics=metrics, outliers=outliers, score="reconstruction",
                                       batch_size=500)
        row = {"held-out digit": digit, "outliers": len(outliers), "inliers": len(inliers),
               "VAE -ELBO AUROC": by_elbo["auroc"], "VAE recon AUROC": by_recon["auroc"]}
        if args.full:
            by_iwae = evaluation.evaluate(vae, inliers, metrics=("auroc",), outliers=outliers, score="iwae", k=100,
                                          batch_size=100, seed=args.seed)
            row["VAE -IWAE100 AUROC"] = by_iwae["auroc"]

        ae = autoencoder(args.latent_dim, encoder)
        ae.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
        ae.fit(train, train, epochs=epochs, batch_size=128, verbose=0)

        def ae_errors(images):
            recon = 1.0 / (1.0 + np.exp(-ae.predict(images, batch_size=500, verbose=0)))
            return evaluation.per_image_mse(images, recon)

        in_scores, out_scores = ae_errors(inliers), ae_errors(outliers)
        row["AE recon AUROC"] = evaluation.auroc(in_scores, out_scores)
        row["VAE -ELBO AUPRC"] = by_elbo["auprc"]
        row["AE recon AUPRC"] = evaluation.average_precision(in_scores, out_scores)
        row["AUPRC chance"] = by_elbo["auprc_chance"]
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)

    mean = {"held-out digit": "mean"}
    for key in rows[0]:
        if key != "held-out digit" and isinstance(rows[0][key], float):
            mean[key] = float(np.mean([r[key] for r in rows]))
    rows.append(mean)
    columns = [c for c in rows[0] if c not in ("inliers", "seconds")]
    table = markdown_table(rows, columns)
    print(table)
    print(f"total {time.time() - started:.0f}s")
    if not args.no_append:
        protocol = (f"MNIST (../shared/data/mnist.npz) binarized at 0.5; train on the "
                    f"{'all' if not train_size else f'first {train_size}'} training images of the other nine "
                    f"digits, {epochs} epochs, batch 128, Adam 1e-3, {encoder['type']} nets, latent {args.latent_dim}; "
                    "outliers = test images of the held-out digit, inliers = the other test images; "
                    "scores: VAE negative ELBO (one posterior sample), per-image reconstruction MSE of the VAE "
                    "(posterior mean) and of a plain autoencoder with the same layers; AUROC by ranks, AUPRC as "
                    f"average precision (vaezoo.evaluation); seed {args.seed}")
        append_results("MNIST anomaly detection: one digit held out (VAE vs autoencoder)", table, protocol,
                       hardware_description())
    return 0


if __name__ == "__main__":
    sys.exit(main())
