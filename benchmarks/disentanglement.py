"""Disentanglement of beta-VAEs on dSprites: BetaVAE score, FactorVAE score and MIG for beta in {1, 4, 8}.

Each beta trains a `vaezoo.BetaVAE` (10 latents, the conv net of the demo config, Bernoulli
likelihood, KL warm-up over the first half of training) and is scored on its posterior mean
with `vaezoo.disentanglement`.

Protocol (default, small: about 15 minutes on 2 idle CPU cores): a pool of 20,000 random dSprites
images (`vaezoo.data.DSprites`, the exact factor grid of Higgins et al.; seed 0) is rendered
once; each model trains on it for 800 steps of batch 64 (Adam 1e-3) and is evaluated on it
through `ArrayFactorSampler` (pairs/batches that share a factor are drawn from the pool):
BetaVAE score with 300 training and 200 evaluation points of 64 pairs, FactorVAE score with
300 / 200 votes of batches of 64 and 5,000 images for the variances, MIG on 10,000 images
(20 bins). Also: ELBO and active units on 2,000 pool images.
`--full`: 30,000 steps, and the disentanglement_lib sizes on the procedural grid (factors
drawn uniformly from all 737,280 combinations): BetaVAE 10,000 / 5,000 points, FactorVAE
10,000 / 5,000 votes and 10,000 variance images, MIG 10,000 images.

    python benchmarks/disentanglement.py
    python benchmarks/disentanglement.py --betas 4 --steps 50 --pool 2000 --points 20 --no-append   # smoke
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ENCODER = {"type": "conv", "filters": [32, 32, 64, 64], "hidden": 256}


def render_pool(size, seed):
    """`size` random dSprites images (float32 {0, 1}) and their factor classes."""
    import numpy as np

    from vaezoo.data import DSprites

    sprites = DSprites()
    indices = np.random.default_rng(seed).choice(len(sprites), size=size, replace=False)
    images = np.concatenate([sprites.render(indices[i : i + 2000]) for i in range(0, size, 2000)])
    return images.astype(np.float32), sprites.factor_classes(indices)


def main(argv=None):
    parser = argparse.ArgumentParser(description="beta-VAE disentanglement on dSprites")
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0, 8.0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--pool", type=int, default=20000, help="dSprites images rendered for training/evaluation")
    parser.add_argument("--full", action="store_true", help="long training and disentanglement_lib sizes")
    parser.add_argument("--baseline", action="store_true", help="also score an untrained encoder")
    parser.add_argument("--points", type=int, default=None,
                        help="BetaVAE/FactorVAE training points (evaluation: 2/3 of it); default 300, --full 10000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    steps = args.steps or (30000 if args.full else 800)
    if args.full:
        sizes = {"beta_train": 10000, "beta_eval": 5000, "fvae_train": 10000, "fvae_eval": 5000, "variance": 10000}
    else:
        sizes = {"beta_train": 300, "beta_eval": 200, "fvae_train": 300, "fvae_eval": 200, "variance": 5000}
    if args.points:
        points = args.points
        sizes.update(beta_train=points, beta_eval=max(1, 2 * points // 3), fvae_train=points,
                     fvae_eval=max(1, 2 * points // 3))

    import keras
    import tensorflow as tf

    import vaezoo
    from common import append_results, hardware_description, markdown_table
    from vaezoo import disentanglement as dis
    from vaezoo import evaluation

    started = time.time()
    images, factors = render_pool(args.pool, args.seed)
    print(f"rendered {len(images)} dSprites images in {time.time() - started:.0f}s", flush=True)
    names = dis.FactorSampler.dsprites().factor_names
    sampler = dis.FactorSampler.dsprites() if args.full else dis.ArrayFactorSampler(images, factors, names)

    def score(model):
        rep = dis.mean_representation(model, batch_size=512)
        t0 = time.time()
        out = {
            "BetaVAE score": dis.beta_vae_score(rep, sampler, sizes["beta_train"], sizes["beta_eval"], seed=args.seed,
                                                representation_batch=2048)["score"],
            "FactorVAE score": dis.factor_vae_score(rep, sampler, sizes["fvae_train"], sizes["fvae_eval"],
                                                    num_variance_estimate=sizes["variance"], seed=args.seed,
                                                    representation_batch=2048)["score"],
            "MIG": dis.mig(rep, sampler, num_train=10000, seed=args.seed, batch_size=2048)["score"],
        }
        r = evaluation.evaluate(model, images[:2000], metrics=("elbo", "active_units", "kl_per_dim"),
                                batch_size=500, seed=args.seed)
        out.update({"ELBO (nats)": r["elbo"], "KL (nats)": float(sum(r["kl_per_dim"])),
                    "active units": r["active_units"], "metric seconds": round(time.time() - t0)})
        return out

    rows = []
    if args.baseline:
        model = vaezoo.BetaVAE(input_shape=(64, 64, 1), latent_dim=10, beta=1.0, encoder=ENCODER, seed=args.seed)
        rows.append({"beta": "untrained", "steps": 0, **score(model)})
        print(rows[-1], flush=True)
    for beta in args.betas:
        keras.utils.set_random_seed(args.seed)
        model = vaezoo.BetaVAE(input_shape=(64, 64, 1), latent_dim=10, beta=beta, encoder=ENCODER,
                               likelihood="bernoulli", kl_warmup_steps=steps // 2, seed=args.seed)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        ds = (tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=args.seed).repeat()
              .batch(64, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        t0 = time.time()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        train_seconds = round(time.time() - t0)
        rows.append({"beta": beta, "steps": steps, **score(model), "train seconds": train_seconds})
        print(rows[-1], flush=True)

    columns = ["beta", "steps", "BetaVAE score", "FactorVAE score", "MIG", "ELBO (nats)", "KL (nats)",
               "active units", "train seconds"]
    table = markdown_table(rows, columns)
    print(table)
    print(f"total {time.time() - started:.0f}s")
    if not args.no_append:
        if args.full:
            where = ("factors drawn uniformly from the whole procedural grid (FactorSampler.dsprites()); "
                     "BetaVAE 10,000/5,000 points of 64 pairs, FactorVAE 10,000/5,000 votes of 64 and 10,000 "
                     "variance images, MIG 10,000 images (disentanglement_lib sizes)")
        else:
            where = (f"evaluated on the same pool (ArrayFactorSampler: pairs/batches sharing a factor drawn from "
                     f"the pool); BetaVAE {sizes['beta_train']}/{sizes['beta_eval']} points of 64 pairs, "
                     f"FactorVAE {sizes['fvae_train']}/{sizes['fvae_eval']} votes of 64 and {sizes['variance']} "
                     "variance images, MIG 10,000 images, 20 bins")
        protocol = (f"dSprites generated by vaezoo.data.DSprites, a pool of {args.pool} random images (seed "
                    f"{args.seed}); BetaVAE 10 latents, conv encoder {ENCODER['filters']}, Bernoulli, "
                    f"{steps} steps of batch 64, Adam 1e-3, KL warm-up over {steps // 2} steps; representation = "
                    f"posterior mean; {where}; ELBO/active units (Cov > 0.01) on 2,000 pool images; train seconds are "
                    "wall clock (see the run line for the machine's load)")
        append_results("Disentanglement on dSprites: beta-VAE with beta in {" +
                       ", ".join(f"{b:g}" for b in args.betas) + "}", table, protocol, hardware_description())
    return 0


if __name__ == "__main__":
    sys.exit(main())
