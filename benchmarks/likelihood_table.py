"""MNIST log-likelihood of the zoo's VAEs beside published figures.

For each zoo model (`vae-mnist`, `hvae-mnist`) two vaezoo rows:

- `card`: the IWAE figure written into the model card by `vaezoo eval NAME --metrics iwae --k 1000
  --limit 0 --write-card` (the card holds the exact command, its test images and date);
- `rerun`: the same estimator recomputed by this script on the first `--limit` test images
  (default 1,000, so the table refreshes in minutes on 2 cores; `--limit 0` for all).

Protocol of the vaezoo rows: MNIST test split from ../shared/data/mnist.npz, dynamically
binarized (a fresh Bernoulli draw from each grey level, seed fixed), IWAE_k bound with
k = `--k` (default 1000) importance samples per image, negative log-likelihood in nats per
image (lower is better), with the standard error over images.

Published rows are quoted, not rerun: Burda et al. 2016 (IWAE paper, Table 1: 1 stochastic
layer VAE trained with k = 1, NLL estimated with 5,000 samples), pythae's reproduced VAE
(Chadebec et al., examples/scripts/reproducibility in clementchadebec/benchmark_VAE) and
the Ladder VAE (Sønderby et al. 2016, 5 stochastic layers, 5,000 importance samples). Their
architectures and training budgets differ from the zoo's; the table compares end results.

    python benchmarks/likelihood_table.py [--k 1000] [--limit 1000] [--models vae-mnist hvae-mnist]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, hardware_description, markdown_table  # noqa: E402

ZOO = ("vae-mnist", "hvae-mnist")
PUBLISHED = (
    {"model": "IWAE paper: VAE, 1 stochastic layer (Burda et al. 2016)", "nll": 86.76,
     "protocol": "published; k = 5000, dynamically binarized MNIST test"},
    {"model": "pythae: reproduced VAE", "nll": 89.78,
     "protocol": "published in pythae's reproducibility results"},
    {"model": "Ladder VAE, 5 layers (Sønderby et al. 2016)", "nll": 81.74,
     "protocol": "published; k = 5000, dynamically binarized MNIST test"},
)


def card_row(name):
    import vaezoo

    card = vaezoo.info(name)
    metric = (card.get("metrics") or {}).get("iwae")
    row = {"model": f"vaezoo {name} (card)"}
    if not card.get("weights") or metric is None:
        row.update(nll="n/a (not trained yet)", protocol="recipe only")
        return row
    row.update(nll=-metric["value"], stderr=metric.get("stderr", ""),
               protocol=f"{metric['protocol']}; `{metric['command']}`")
    return row


def rerun_row(name, k, limit, batch_size):
    import vaezoo
    from vaezoo.reports import run_eval

    row = {"model": f"vaezoo {name} (rerun)"}
    if not vaezoo.info(name).get("weights"):
        row.update(nll="n/a (not trained yet)", protocol="recipe only")
        return row
    report = run_eval(name, metrics=["iwae"], k=k, limit=limit, batch_size=batch_size)
    m = report["metrics"]
    row.update(nll=-m["iwae"], stderr=m["iwae_stderr"],
               protocol=f"IWAE k = {m['iwae_k']} on the first {m['examples']} test images, dynamically binarized")
    print(f"{name}: NLL {-m['iwae']:.2f} +- {m['iwae_stderr']:.2f} nats ({m['examples']} images, k = {k})", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=ZOO)
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image (>= 1)")
    parser.add_argument("--limit", type=int, default=1000, help="test images to rerun on (0: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.k < 1 or args.limit < 0:
        parser.error("--k must be >= 1 and --limit >= 0")

    rows = []
    for name in args.models:
        rows.append(card_row(name))
        rows.append(rerun_row(name, args.k, args.limit, args.batch_size))
    rows += [dict(r) for r in PUBLISHED]
    table = markdown_table(rows, ["model", "nll", "stderr", "protocol"])
    print(table)
    append_results(
        "MNIST negative log-likelihood (nats, lower is better): zoo VAEs beside published figures", table,
        protocol=("vaezoo rows: MNIST test (../shared/data/mnist.npz), dynamic binarization, IWAE bound with "
                  f"k = {args.k}; `card` rows on the test images of the card's command (in the row), `rerun` rows "
                  f"the first {args.limit or 10000} images, recomputed by this run. Published rows are quoted "
                  "from the papers, with different architectures and training budgets"),
        hardware=hardware_description())


if __name__ == "__main__":
    main()
