"""`evaluate` and `plan`: check every planned metric record, then run them over the data."""

import contextlib
import difflib

import numpy as np

from vaezoo import validation
from vaezoo.evaluation import anomaly, codebook, compression, factors, latents, likelihood, reconstruction, samples
from vaezoo.evaluation.records import EvaluationRun, Inputs, Options

#: every metric record, in the order `evaluate` computes and reports them.
METRICS = {
    metric.name: metric
    for module in (likelihood, reconstruction, codebook, compression, latents, anomaly, samples, factors)
    for metric in module.RECORDS
}
#: metrics that need ground-truth factors (`factors=`, a `vaezoo.disentanglement.FactorSampler`).
DISENTANGLEMENT_METRICS = tuple(metric.name for metric in factors.RECORDS)
#: what `evaluate` computes when no metrics are named: valid for every family.
DEFAULT_METRICS = ("elbo", "iwae", "mse", "nmse", "psnr")


def _tf():
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def seeded(model, seed):
    """Run a block with the model's random generator set from `seed`, then restore it.

    With `seed=None` the generator is left alone (each evaluation draws fresh samples).
    """
    if seed is None:
        yield
        return
    validation.check_int("seed", seed, 0)
    state = model.seed_generator.state
    saved = state.numpy()
    state.assign(np.asarray([seed, 0], dtype=saved.dtype))
    try:
        yield
    finally:
        state.assign(saved)


def check_metric_names(metrics):
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(",", " ").split() if m]
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"metrics is empty; choose from {', '.join(METRICS)} (or 'all').")
    for name in metrics:
        if name != "all" and name not in METRICS:
            close = difflib.get_close_matches(str(name), list(METRICS) + ["all"], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown metric {name!r}.{hint} Available: {', '.join(METRICS)} (or 'all').")
    return list(dict.fromkeys(metrics))


def plan(model, metrics=DEFAULT_METRICS, outliers=None, classifier=None, factors=None):
    """The metric names `evaluate` will compute, after expanding `"all"` and checking each applies.

    Raises:
        ValueError: unknown name (with the closest valid one), or a metric that does not apply
            to this model or misses its input (outliers, classifier, factors).
    """
    from vaezoo.models.base import check_model

    check_model(model, "evaluate")
    names = check_metric_names(metrics)
    inputs = Inputs(outliers=outliers, classifier=classifier, factors=factors)
    if "all" in names:
        expanded = [m for m in METRICS if METRICS[m].applies(model, inputs) is None]
        names = list(dict.fromkeys(expanded + [m for m in names if m != "all"]))
    for name in names:
        reason = METRICS[name].applies(model, inputs)
        if reason:
            raise ValueError(reason + ".")
    return names


def evaluate(
    model,
    data,
    metrics=DEFAULT_METRICS,
    k=64,
    batch_size=128,
    outliers=None,
    score="elbo",
    classifier=None,
    samples_per_class=100,
    active_threshold=0.01,
    data_variance=None,
    max_parallel_samples=4096,
    seed=None,
    factors=None,
    disentanglement_points=(10000, 5000),
    progress=False,
):
    """Evaluate a model on a data set; returns a flat, JSON-safe dict of numbers.

    Everything is checked before any computation: metric names, that each metric applies to
    the model, the data's shape and dtype (and conditions for a CVAE), `k`, `batch_size`, the
    outlier set, the anomaly score and the classifier.

    Keys of the result, by metric (all means are over the evaluated images):
    - `elbo`: `elbo` (nats per example), `elbo_stderr`, `elbo_bits_per_dim` (`-elbo / (D ln 2)`)
    - `iwae`: `iwae` (IWAE_k estimate of log p(x), nats), `iwae_stderr`, `iwae_bits_per_dim`
      (negative log-likelihood in bits/dim), `iwae_k`
    - `mse`, `nmse` (with `data_variance`), `psnr` (dB): reconstructions of posterior means
    - `perplexity`, `codebook_usage`, `codes_used`: VQ code histogram over the whole set
    - `prior_bits_per_code`: VQ codes under the PixelCNN prior
    - `active_units` (and `latent_variances`; for a HierarchicalVAE `active_units_per_layer`)
    - `kl_per_dim` (list), `kl_per_layer` (list)
    - `auroc`, `auprc` (with `anomaly_score`, `outliers`, `auprc_chance`)
    - `conditional_accuracy`, `conditional_accuracy_per_class`
    - `mig` (and `mig_per_factor`), `beta_vae_score`, `factor_vae_score`: on fresh draws from
      `factors`, not on `data` (see `vaezoo.disentanglement` for each protocol)
    plus `examples` (number of images).

    Args:
        model: a vaezoo model (any family).
        data: images `(n, *model.image_shape)`, uint8 in [0, 255] or float in [0, 1]; or
            `(images, conditions)`, a dict with `image` and `label`/`condition`, or a finite
            `tf.data.Dataset` of those. Conditions are required for a CVAE.
        metrics: names from `METRICS`, or `"all"` (every metric that applies to the model and
            the given inputs). A comma/space separated string works too.
        k: importance samples per image for `iwae` (and the `iwae` anomaly score), >= 1.
        batch_size: images per forward pass.
        outliers: outlier images (same forms as `data`) for `auroc` / `auprc`; `data` are
            the inliers.
        score: anomaly score, one of `SCORES`: `"elbo"`, `"iwae"`, `"reconstruction"`.
        classifier: reference classifier for `conditional_accuracy`.
        samples_per_class: CVAE samples per class for `conditional_accuracy`.
        active_threshold: threshold of `active_units` (Burda et al. use 0.01).
        data_variance: variance for `nmse`; default the variance of the evaluated pixels.
        max_parallel_samples: bound on images x samples per decoder pass in `iwae`.
        seed: integer for reproducible sampling (the model's generator is restored after);
            `None` uses the model's generator as it is.
        factors: a `vaezoo.disentanglement.FactorSampler` for the disentanglement metrics.
        disentanglement_points: `(num_train, num_eval)` of the BetaVAE and FactorVAE scores
            (disentanglement_lib: 10,000 and 5,000; each point encodes 64 images or pairs).
        progress: progress bars for the IWAE estimate and the BetaVAE / FactorVAE scores (the
            longest metrics); `vaezoo eval` shows them.

    Example:
        >>> results = evaluate(model, x_test, metrics=("elbo", "iwae"), k=1000)
        >>> results["elbo"] <= results["iwae"]
        True
        >>> evaluate(model, x_normal, metrics="auroc,auprc", outliers=x_anomalous, score="iwae", k=100)
    """
    names = plan(model, metrics, outliers, classifier, factors)
    validation.check_int("k", k, 1)
    validation.check_int("batch_size", batch_size, 1)
    validation.check_int("max_parallel_samples", max_parallel_samples, 1)
    validation.check_positive("active_threshold", active_threshold, allow_zero=True)
    if seed is not None:
        validation.check_int("seed", seed, 0)
    if data_variance is not None:
        validation.check_positive("data_variance", data_variance)
    if score not in anomaly.SCORES:
        raise ValueError(f"score must be one of {', '.join(anomaly.SCORES)}, got {score!r}.")
    x, condition = as_arrays(model, data, "data")
    if outliers is not None:
        users = [m for m in METRICS if "outliers" in METRICS[m].takes]
        if not any(m in names for m in users):
            raise ValueError("outliers were given but no anomaly metric was asked for; add "
                             f"{' and/or '.join(repr(m) for m in users)} to metrics.")
        if _is_empty(outliers):
            raise ValueError(
                "the outlier set is empty; auroc/auprc need at least one outlier image of shape "
                f"(n, {', '.join(map(str, model.image_shape))})."
            )
        outliers = as_arrays(model, outliers, "outliers")
    options = Options(k=k, batch_size=batch_size, score=score, samples_per_class=samples_per_class,
                      active_threshold=active_threshold, data_variance=data_variance,
                      max_parallel_samples=max_parallel_samples, seed=seed,
                      disentanglement_points=disentanglement_points, progress=progress)
    run = EvaluationRun(model, x, condition, Inputs(outliers, classifier, factors), options)
    for name in names:
        if METRICS[name].prepare is not None:
            METRICS[name].prepare(run)
    model.build_from_images()

    # ---- compute, in the records' order
    results = {"examples": int(len(x))}
    with seeded(model, seed):
        for name in (m for m in METRICS if m in names):
            results.update(METRICS[name].compute(run))
    return results


def _split_element(element, conditional):
    if isinstance(element, dict):
        if "image" not in element:
            raise ValueError(f"a dict data element needs an 'image' key, got keys {sorted(element)}.")
        return element["image"], element.get("condition", element.get("label"))
    if isinstance(element, tuple):
        if len(element) != 2:
            raise ValueError(f"a tuple data element must be (images, conditions), got {len(element)} items.")
        return element
    return element, None


def as_arrays(model, data, name="data"):
    """Any accepted data form -> `(images float32 [0, 1], conditions or None)`, validated.

    Accepted: an array of images `(n, *image_shape)` (uint8 in [0, 255] or float in [0, 1]),
    a tuple `(images, conditions)`, a dict `{"image": ..., "label" | "condition": ...}`, or a
    finite `tf.data.Dataset` of any of these (batched or not). Conditions are required by
    conditional models and ignored by unconditional ones (as in `fit`).
    """
    tf = _tf()
    conditional = model.conditional
    if isinstance(data, tf.data.Dataset):
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(f"{name} is an infinite tf.data.Dataset (repeat()); pass a finite one, e.g. ds.take(n).")
        images, conditions = [], []
        for element in data:
            x, c = _split_element(element, conditional)
            x = np.asarray(x)
            single = x.ndim == len(model.image_shape)
            images.append(x[None] if single else x)
            if c is not None:
                c = np.asarray(c)
                conditions.append(c[None] if single else c)
        if not images:
            raise ValueError(f"{name} is an empty dataset; expected images of shape (n, {', '.join(map(str, model.image_shape))}).")
        images = np.concatenate(images)
        conditions = np.concatenate(conditions) if conditions else None
    else:
        images, conditions = _split_element(data, conditional)
        if isinstance(images, (tf.Tensor, tf.Variable)):
            images = images.numpy()
        images = np.asarray(images)
        if conditions is not None and isinstance(conditions, (tf.Tensor, tf.Variable)):
            conditions = conditions.numpy()
    if images.ndim >= 1 and images.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected images of shape (n, {', '.join(map(str, model.image_shape))}).")
    x = np.asarray(validation.check_images(images, model.image_shape, name=name))
    if not conditional:
        return x, None
    if conditions is None:
        model.check_condition(None, len(x))  # raises the model's own message
    conditions = np.asarray(conditions)
    model.check_condition(conditions, len(x))
    return x, conditions


def _is_empty(data):
    tf = _tf()
    if isinstance(data, tf.data.Dataset):
        return int(data.cardinality()) == 0
    images, _ = _split_element(data, False)
    shape = np.shape(images)
    return len(shape) == 0 or shape[0] == 0


def format_table(results, title=None):
    """A two-column text table of `evaluate`'s results (lists shortened to 3 decimals)."""
    rows = []
    for key, value in results.items():
        if isinstance(value, float):
            text = f"{value:.4f}" if abs(value) < 1e4 else f"{value:.1f}"
        elif isinstance(value, list):
            flat = [v for row in value for v in (row if isinstance(row, list) else [row])]
            text = "[" + ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in flat[:16])
            text += ", ...]" if len(flat) > 16 else "]"
        else:
            text = str(value)
        rows.append((key, text))
    width = max([len(k) for k, _ in rows] + [6])
    lines = ([title] if title else []) + [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
