"""Likelihood bounds: the ELBO and the IWAE_k estimate of log p(x), per example and as metrics."""

import math

import numpy as np

from vaezoo import validation
from vaezoo.evaluation.records import Metric, as_float64, batches, condition_kwargs, stderr


def elbo_per_example(model, images, condition=None, batch_size=128):
    """ELBO of every image in nats: `model.elbo` in batches, as float64 `(n,)`.

    Protocol: one posterior sample per image and the analytic KL where TFP has it (the
    model's `elbo`); higher is better. Divide the negative mean by `D ln 2` for bits/dim.

    Args:
        model: a vaezoo model.
        images: uint8 in [0, 255] or float in [0, 1], `(n, *model.image_shape)`.
        condition: one condition per image for conditional models.
        batch_size: images per forward pass.
    """
    out = [as_float64(model.elbo(images[s], **condition_kwargs(condition, s))) for s in batches(len(images), batch_size)]
    return np.concatenate(out)


def iwae_per_example(model, images, k=64, condition=None, batch_size=128, max_parallel_samples=4096,
                     progress=False):
    """IWAE_k estimate of log p(x) for every image in nats, float64 `(n,)`.

    Protocol (Burda et al., 2016): `log (1/k) sum_i p(x, z_i) / q(z_i | x)` with k independent
    posterior samples per image, combined with a log-sum-exp (`model.iwae`), so it is stable
    for k in the thousands. In expectation it is a lower bound of log p(x), equal to the ELBO
    for k = 1, and it tightens towards log p(x) as k grows; with the exact posterior it
    equals log p(x) for every k (every importance weight is p(x)). Images are processed in batches of `batch_size`, and the k
    samples of a batch in chunks, so that at most `max_parallel_samples` image-sample pairs go
    through the decoder at once.

    Args:
        model: a vaezoo model.
        images: uint8 in [0, 255] or float in [0, 1], `(n, *model.image_shape)`.
        k: importance samples per image, >= 1.
        condition: one condition per image for conditional models.
        batch_size: images per batch.
        max_parallel_samples: bound on batch * samples per decoder pass (memory).
        progress: show a progress bar with an ETA (k = 1000 on 10,000 images takes tens of
            minutes on a CPU).
    """
    validation.check_int("k", k, 1)
    validation.check_int("batch_size", batch_size, 1)
    validation.check_int("max_parallel_samples", max_parallel_samples, 1)
    bar = None
    if progress:
        import keras

        print(f"IWAE with k = {k} on {len(images)} images", flush=True)
        bar = keras.utils.Progbar(len(images), unit_name="image")
    out = []
    for s in batches(len(images), batch_size):
        n = s.stop - s.start
        chunk = max(1, min(k, max_parallel_samples // n))
        out.append(as_float64(model.iwae(images[s], k=k, chunk_size=chunk, **condition_kwargs(condition, s))))
        if bar is not None:
            bar.update(s.stop)
    return np.concatenate(out)


def elbos(run):
    """Per-example ELBOs of the run's images (computed once)."""
    return run.cached("elbo", lambda: elbo_per_example(run.model, run.images, run.condition, run.options.batch_size))


def iwaes(run):
    """Per-example IWAE_k estimates of the run's images (computed once)."""
    o = run.options
    return run.cached("iwae", lambda: iwae_per_example(run.model, run.images, o.k, run.condition, o.batch_size,
                                                        o.max_parallel_samples, progress=o.progress))


def _bits_per_dim(model, nats):
    return -nats / (model.num_dims * math.log(2.0))


def _elbo(run):
    values = elbos(run)
    mean = float(np.mean(values))
    return {"elbo": mean, "elbo_stderr": stderr(values), "elbo_bits_per_dim": _bits_per_dim(run.model, mean)}


def _iwae(run):
    values = iwaes(run)
    mean = float(np.mean(values))
    return {"iwae": mean, "iwae_stderr": stderr(values), "iwae_bits_per_dim": _bits_per_dim(run.model, mean),
            "iwae_k": int(run.options.k)}


ELBO = Metric(
    "elbo", "ELBO, nats per example (higher is better) and bits/dim", _elbo,
    keys=("elbo", "elbo_bits_per_dim"), bookkeeping=("elbo_stderr",),
)
IWAE = Metric(
    "iwae", "IWAE_k estimate of log p(x), nats per example, and bits/dim", _iwae,
    keys=("iwae", "iwae_bits_per_dim"), bookkeeping=("iwae_stderr", "iwae_k"),
    card_protocol=lambda metric, results, report, data: f"{metric.description}; {data}; k = {results['iwae_k']}",
)
RECORDS = (ELBO, IWAE)
