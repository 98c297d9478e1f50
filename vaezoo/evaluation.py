"""Evaluation of vaezoo models: likelihood bounds, reconstruction, codebook use, collapse, anomalies.

`evaluate(model, data, metrics=...)` validates everything first (metric names, data shape,
`k`, outliers, classifier) and only then runs the model over the data in batches; it returns
a flat, JSON-safe dict. Every metric is also a function of its own, with its protocol in its
docstring:

| metric name            | function                     | what it is                                        |
|------------------------|------------------------------|---------------------------------------------------|
| `elbo`                 | `elbo_per_example`           | ELBO in nats per example and bits/dim             |
| `iwae`                 | `iwae_per_example`           | IWAE_k estimate of log p(x) (Burda et al., 2016)  |
| `mse`, `nmse`, `psnr`  | `mse`, `normalized_mse`, `psnr` | reconstruction error of the posterior mean     |
| `perplexity`, `codebook_usage` | `codebook_stats`     | VQ code use over the whole eval set               |
| `prior_bits_per_code`  | `prior_bits_per_code`        | VQ: -log2 p(codes) / positions under the PixelCNN |
| `active_units`         | `active_units`               | Cov_x(E_q[z_i]) > 0.01 (Burda et al., 2016)       |
| `kl_per_dim`           | `kl_per_dim`                 | mean KL of each latent dimension (nats)           |
| `kl_per_layer`         | `kl_per_layer`               | HierarchicalVAE: mean KL of each latent layer     |
| `auroc`, `auprc`       | `auroc`, `average_precision` | inliers vs outliers for a chosen anomaly score    |
| `conditional_accuracy` | `conditional_accuracy`       | CVAE samples classified by a reference classifier |

Example:
    >>> from vaezoo.evaluation import evaluate
    >>> results = evaluate(model, x_test, metrics=("elbo", "iwae", "mse", "psnr"), k=1000)
    >>> results["iwae"], results["iwae_bits_per_dim"]
    >>> evaluate(model, x_inliers, metrics=("auroc", "auprc"), outliers=x_outliers, score="elbo")
"""

import contextlib
import difflib
import math

import numpy as np

from vaezoo import validation

#: metric name -> one-line description (what `evaluate` accepts, besides "all").
METRICS = {
    "elbo": "ELBO, nats per example (higher is better) and bits/dim",
    "iwae": "IWAE_k estimate of log p(x), nats per example, and bits/dim",
    "mse": "reconstruction mean squared error per pixel, images on the [0, 1] scale",
    "nmse": "reconstruction MSE / variance of the eval-set pixels (Sonnet VQ-VAE convention)",
    "psnr": "mean per-image PSNR of the reconstructions in dB (peak 1.0)",
    "perplexity": "VQ: exp(entropy) of the code histogram over the eval set",
    "codebook_usage": "VQ: fraction of the K codes used at least once over the eval set",
    "prior_bits_per_code": "VQ: -log2 p(codes) / code positions under the PixelCNN prior",
    "active_units": "latent dimensions with Cov_x(E_q[z_i]) > threshold (Burda et al.)",
    "kl_per_dim": "mean KL(q(z_i|x) || p(z_i)) of each latent dimension, nats",
    "kl_per_layer": "HierarchicalVAE: mean KL of each latent layer, nats",
    "auroc": "area under the ROC curve, outliers vs inliers, for the anomaly `score`",
    "auprc": "average precision (area under precision-recall), outliers as positives",
    "conditional_accuracy": "CVAE: accuracy of a reference classifier on class-conditional samples",
    "mig": "mutual information gap (Chen et al.) of the posterior means, 10,000 factor draws, 20 bins",
    "beta_vae_score": "BetaVAE score (Higgins et al.): logistic-regression accuracy on |z1 - z2| of 64 pairs",
    "factor_vae_score": "FactorVAE score (Kim & Mnih): majority-vote accuracy on the least-variant dimension",
}
#: metrics that need ground-truth factors (`factors=`, a `vaezoo.disentanglement.FactorSampler`).
DISENTANGLEMENT_METRICS = ("mig", "beta_vae_score", "factor_vae_score")
#: what `evaluate` computes when no metrics are named: valid for every family.
DEFAULT_METRICS = ("elbo", "iwae", "mse", "nmse", "psnr")
#: anomaly scores (higher = more anomalous).
SCORES = {
    "elbo": "negative ELBO (nats)",
    "iwae": "negative IWAE_k estimate (nats)",
    "reconstruction": "per-image reconstruction MSE",
}


# --------------------------------------------------------------------------- small helpers
def _tf():
    import tensorflow as tf

    return tf


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _np(x, dtype=np.float64):
    return np.asarray(x, dtype=dtype)


def _kw(condition, index=None):
    if condition is None:
        return {}
    return {"condition": condition if index is None else condition[index]}


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


def _family(model):
    """'vq', 'hierarchical' or 'gaussian' (vector latents with an encoder posterior)."""
    if hasattr(model, "encode_to_codes") and hasattr(model, "num_embeddings"):
        return "vq"
    if hasattr(model, "kl_per_layer") and hasattr(model, "num_latent_layers"):
        return "hierarchical"
    return "gaussian"


# --------------------------------------------------------------------------- per-example values
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
    out = [_np(model.elbo(images[s], **_kw(condition, s))) for s in _batches(len(images), batch_size)]
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
    for s in _batches(len(images), batch_size):
        n = s.stop - s.start
        chunk = max(1, min(k, max_parallel_samples // n))
        out.append(_np(model.iwae(images[s], k=k, chunk_size=chunk, **_kw(condition, s))))
        if bar is not None:
            bar.update(s.stop)
    return np.concatenate(out)


def reconstructions(model, images, condition=None, batch_size=128):
    """`model.reconstruct` in batches: float32 images in [0, 1] (decoded posterior means)."""
    out = [np.asarray(model.reconstruct(images[s], **_kw(condition, s)), np.float32)
           for s in _batches(len(images), batch_size)]
    return np.concatenate(out)


def reconstruction_errors(model, images, condition=None, batch_size=128):
    """Per-image MSE between images and their reconstructions, [0, 1] scale, float64 `(n,)`."""
    x = _as_unit_float(images)
    recon = reconstructions(model, x, condition, batch_size)
    return per_image_mse(x, recon)


def _as_unit_float(images):
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


# --------------------------------------------------------------------------- reconstruction
def per_image_mse(images, reconstructed):
    """Mean over pixels of `(images - reconstructed)^2` for every image, float64 `(n,)`."""
    a, b = _np(images), _np(reconstructed)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"images and reconstructions must have the same shape (n, ...), got {a.shape} and {b.shape}.")
    return np.mean(np.square(a - b).reshape(len(a), -1), axis=1)


def mse(images, reconstructed):
    """Mean squared error over every pixel of every image (both on the [0, 1] scale)."""
    return float(np.mean(per_image_mse(images, reconstructed)))


def normalized_mse(images, reconstructed, data_variance=None):
    """MSE divided by the variance of the data's pixels (the Sonnet VQ-VAE convention).

    Protocol: `mean((x - x_hat)^2) / var(x)` where `var(x)` is the variance of all pixel
    values of the evaluated images on the [0, 1] scale (population variance over every pixel
    of every image), unless `data_variance` is given (e.g. the training set's). 1.0 is the
    error of predicting the mean grey level everywhere.
    """
    variance = float(np.var(_np(images))) if data_variance is None else float(data_variance)
    if not variance > 0:
        raise ValueError(f"normalized MSE needs a data variance > 0, got {variance!r} (constant images?).")
    return mse(images, reconstructed) / variance


def psnr(images, reconstructed, max_value=1.0, min_mse=1e-10):
    """Mean over images of the per-image PSNR in dB: `10 log10(max_value^2 / MSE_i)`.

    Protocol: images on the [0, 1] scale (`max_value=1`); each image's MSE is floored at
    `min_mse` (so a perfect reconstruction scores 100 dB rather than infinity), and the
    per-image PSNRs are averaged (not the PSNR of the mean MSE).
    """
    errors = np.maximum(per_image_mse(images, reconstructed), min_mse)
    return float(np.mean(10.0 * np.log10(max_value**2 / errors)))


# --------------------------------------------------------------------------- VQ codebook
def encode_codes(model, images, batch_size=128):
    """All code grids of `images` under a VQVAE, int32 `(n, h, w)`."""
    return np.concatenate(
        [np.asarray(model.encode_to_codes(images[s]), np.int64) for s in _batches(len(images), batch_size)]
    )


def codebook_stats(codes, num_embeddings):
    """Perplexity and usage of a codebook over a whole set of code indices.

    Protocol: the histogram of every code index of every position of every image in the set
    (not batch by batch); `perplexity = exp(-sum_i p_i log p_i)` of that histogram (K for
    uniform use of K codes, 1 when a single code is used), `usage` the fraction of the K codes
    used at least once.

    Returns:
        dict with `perplexity` (float), `codebook_usage` (fraction in [0, 1]) and `codes_used`.
    """
    from vaezoo.quantizer import perplexity

    validation.check_int("num_embeddings", num_embeddings, 1)
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0:
        raise ValueError("codebook_stats needs at least one code index.")
    if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= num_embeddings:
        raise ValueError(f"codes must be integers in [0, {num_embeddings}).")
    counts = np.bincount(codes, minlength=num_embeddings)
    used = int(np.count_nonzero(counts))
    return {"perplexity": float(perplexity(counts)), "codebook_usage": used / num_embeddings, "codes_used": used}


def prior_bits_per_code(model, codes, batch_size=128):
    """Mean negative log2-likelihood per code position of code grids under the VQVAE's prior.

    Protocol: `-log2 p(codes) / (h * w)` per grid under the autoregressive PixelCNN prior
    (exact, no sampling), averaged over the grids. log2 K is the uniform prior's value.
    """
    if getattr(model, "prior", None) is None:
        raise ValueError("prior_bits_per_code needs a VQVAE with a PixelCNN prior; this one has prior=None.")
    values = [_np(model.prior.bits_per_code(codes[s])) for s in _batches(len(codes), batch_size)]
    return float(np.mean(np.concatenate(values)))


# --------------------------------------------------------------------------- collapse
def active_units(means, threshold=0.01):
    """Number of active latent units from posterior means (Burda et al., 2016, section 5.2).

    Protocol: unit i is active if `Cov_x(E_{q(z|x)}[z_i]) > threshold` (default 0.01): the
    variance over the data set (population variance, ddof 0) of the posterior mean of z_i.

    Args:
        means: posterior means, `(n, d)` (one row per data point).
        threshold: activity threshold.

    Returns:
        `(count, variances)`: the number of active units and the `(d,)` variances.
    """
    means = _np(means)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"active_units needs posterior means of shape (n >= 2, d), got {means.shape}.")
    variances = np.var(means, axis=0)
    return int(np.sum(variances > threshold)), variances


def posterior_means(model, images, condition=None, batch_size=128):
    """Posterior means E_q[z | x] per image.

    For vector-latent models, `(n, latent_dim)` from `model.encode(x).mean()`. For a
    HierarchicalVAE a list with one `(n, latent_dim)` array per layer (0 = bottom), from the
    top-down pass in which every layer takes its posterior mean, so the mean of layer l is
    that of q(z_l | x, z_>l = their means).
    """
    if _family(model) == "hierarchical":
        layers = [[] for _ in range(model.num_latent_layers)]
        for s in _batches(len(images), batch_size):
            x = model._images(images[s])
            out = model._top_down(model._bottom_up(x), use_mean=True)
            for layer, q in enumerate(out["posterior"]):
                layers[layer].append(_np(q.mean()))
        return [np.concatenate(m) for m in layers]
    out = [_np(model.encode(images[s], **_kw(condition, s)).mean()) for s in _batches(len(images), batch_size)]
    return np.concatenate(out)


def kl_per_dim(model, images, condition=None, batch_size=128):
    """Mean over images of KL(q(z_i | x) || p(z_i)) for every latent dimension i, `(d,)` nats.

    Protocol: the analytic per-dimension KL of the diagonal-Gaussian posterior from the prior
    (for a CVAE, its prior p(z | c), learned or standard), averaged over the images. The
    entries sum to the mean `kl` term of the ELBO. Near-zero entries are collapsed units.
    """
    from vaezoo.distributions import kl_divergence

    tf = _tf()
    total, count = None, 0
    for s in _batches(len(images), batch_size):
        x = model._images(images[s])
        c = model._check_condition(None if condition is None else condition[s], x.shape[0])
        posterior = model._encode(x, c)
        z = posterior.sample(seed=model._next_seed())
        if hasattr(model, "prior_distribution"):
            per_dim = kl_divergence(posterior.distribution, model.prior_distribution(c).distribution, z)
        else:
            per_dim = model._kl_per_dim(posterior, z)
        batch_sum = _np(tf.reduce_sum(per_dim, axis=0))
        total = batch_sum if total is None else total + batch_sum
        count += x.shape[0]
    return total / count


def kl_per_layer(model, images, batch_size=128):
    """Mean over images of the KL of each layer of a HierarchicalVAE, `(L,)` nats (0 = bottom).

    Protocol: `model.kl_per_layer` (analytic KL of layer l given one posterior sample of the
    layers above), averaged over the images; the entries sum to the mean `kl` of the ELBO.
    """
    out = [_np(model.kl_per_layer(images[s])) for s in _batches(len(images), batch_size)]
    return np.mean(np.concatenate(out), axis=0)


# --------------------------------------------------------------------------- anomaly detection
def _scores(values, name):
    values = _np(values).reshape(-1)
    if values.size == 0:
        raise ValueError(f"{name} is empty; anomaly metrics need at least one inlier and one outlier score.")
    if np.any(np.isnan(values)):
        raise ValueError(f"{name} contains NaN; anomaly scores must be numbers (inf is allowed).")
    return values


def _average_ranks(values):
    """Ranks 1..n of `values`, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values) != 0) + 1]
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auroc(inlier_scores, outlier_scores):
    """Area under the ROC curve of an anomaly score, outliers as the positive class.

    Protocol: higher scores mean "more anomalous". Computed from ranks (the Mann-Whitney U
    statistic): `AUROC = (R_out - n_out (n_out + 1) / 2) / (n_out n_in)`, with `R_out` the sum
    of the outliers' ranks among all scores and ties given their average rank. This equals
    the probability that a random outlier scores higher than a random inlier, counting ties
    as one half. 0.5 is chance, 1.0 perfect separation.
    """
    inliers = _scores(inlier_scores, "inlier scores")
    outliers = _scores(outlier_scores, "outlier scores")
    ranks = _average_ranks(np.concatenate([outliers, inliers]))
    n_out, n_in = len(outliers), len(inliers)
    u = ranks[:n_out].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_out * n_in))


def average_precision(inlier_scores, outlier_scores):
    """Average precision (area under the precision-recall curve), outliers as positives.

    Protocol (as scikit-learn's `average_precision_score`): sort by score, highest first;
    at each distinct score threshold t compute precision P(t) and recall R(t) of "score >= t";
    `AP = sum_t (R(t) - R(t_prev)) * P(t)`. Tied scores enter together. The chance level is
    the fraction of outliers, n_out / (n_out + n_in).
    """
    inliers = _scores(inlier_scores, "inlier scores")
    outliers = _scores(outlier_scores, "outlier scores")
    scores = np.concatenate([outliers, inliers])
    labels = np.concatenate([np.ones(len(outliers)), np.zeros(len(inliers))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    true_pos = np.cumsum(labels)[last_of_threshold]
    predicted_pos = last_of_threshold + 1
    precision = true_pos / predicted_pos
    recall = true_pos / len(outliers)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


auprc = average_precision


def anomaly_scores(model, images, score="elbo", condition=None, k=64, batch_size=128, max_parallel_samples=4096):
    """Anomaly score of every image (higher = more anomalous), float64 `(n,)`.

    Args:
        score: `"elbo"` (negative ELBO), `"iwae"` (negative IWAE_k) or `"reconstruction"`
            (per-image reconstruction MSE on the [0, 1] scale).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {score!r}.")
    if score == "elbo":
        return -elbo_per_example(model, images, condition, batch_size)
    if score == "iwae":
        return -iwae_per_example(model, images, k, condition, batch_size, max_parallel_samples)
    return reconstruction_errors(model, images, condition, batch_size)


# --------------------------------------------------------------------------- conditional samples
def _check_classifier(model, classifier):
    if not (getattr(model, "conditional", False) and getattr(model, "num_classes", None)):
        raise ValueError(
            "conditional_accuracy needs a CVAE conditioned on class labels (num_classes); "
            f"got {type(model).__name__}."
        )
    if classifier is None or not callable(classifier):
        raise ValueError(
            "conditional_accuracy needs a classifier: a Keras model mapping float images in [0, 1] "
            f"of shape (batch, {', '.join(map(str, model.image_shape))}) to (batch, {model.num_classes}) "
            "logits or probabilities (e.g. vaezoo.classifier.load_reference_classifier())."
        )
    probe = np.asarray(classifier(np.zeros((1, *model.image_shape), np.float32)))
    if probe.shape != (1, model.num_classes):
        raise ValueError(
            f"the classifier must map images (batch, {', '.join(map(str, model.image_shape))}) to "
            f"(batch, {model.num_classes}) scores for the CVAE's {model.num_classes} classes; "
            f"it returned shape {probe.shape} for one image."
        )


def conditional_accuracy(model, classifier, samples_per_class=100, seed=0, batch_size=128, temperature=1.0):
    """Accuracy of a reference classifier on class-conditional samples of a CVAE.

    Protocol: for every class c in [0, K), draw `samples_per_class` images with
    `model.sample(n, condition=[c] * n, seed=seed + c)` (float images in [0, 1]), classify
    them with `classifier` (its argmax), and count the samples classified as c. Reports the
    overall accuracy (equal weight per class) and the accuracy of each class. 1/K is chance.

    Args:
        model: a CVAE with `num_classes`.
        classifier: callable (a Keras model) mapping `(batch, *image_shape)` float images in
            [0, 1] to `(batch, K)` logits or probabilities.
        samples_per_class: samples drawn per class, >= 1.
        seed: integer seed of the samples.

    Returns:
        dict with `conditional_accuracy` (float) and `conditional_accuracy_per_class` (list).
    """
    validation.check_int("samples_per_class", samples_per_class, 1)
    validation.check_int("seed", seed, 0)
    _check_classifier(model, classifier)
    per_class = []
    for c in range(model.num_classes):
        correct = 0
        for s in _batches(samples_per_class, batch_size):
            n = s.stop - s.start
            images = model.sample(n, seed=seed + c * 100_003 + s.start, condition=np.full(n, c, np.int64),
                                  temperature=temperature)
            predicted = np.argmax(np.asarray(classifier(images)), axis=-1)
            correct += int(np.sum(predicted == c))
        per_class.append(correct / samples_per_class)
    return {"conditional_accuracy": float(np.mean(per_class)), "conditional_accuracy_per_class": per_class,
            "samples_per_class": int(samples_per_class)}


# --------------------------------------------------------------------------- data handling
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
    conditional = getattr(model, "conditional", False)
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
        model._check_condition(None, len(x))  # raises the model's own message
    conditions = np.asarray(conditions)
    model._check_condition(conditions, len(x))
    return x, conditions


def _check_metric_names(metrics):
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


def _applicable(model, name, outliers, classifier, factors=None):
    """None if metric `name` applies to `model`, else the reason it does not."""
    family = _family(model)
    kind = type(model).__name__
    if name in ("perplexity", "codebook_usage", "prior_bits_per_code") and family != "vq":
        return f"{name} is a VQ-VAE metric (codebook); {kind} has no codebook"
    if name == "prior_bits_per_code" and getattr(model, "prior", None) is None:
        return "prior_bits_per_code needs a VQVAE with a PixelCNN prior; this one has prior=None"
    if name in ("active_units", "kl_per_dim") and family == "vq":
        return f"{name} needs Gaussian vector latents; a VQVAE's posterior is a deterministic code grid"
    if name == "active_units" and not hasattr(model, "latent_dim"):
        return f"active_units needs a model with vector latents (latent_dim); {kind} has none"
    if name == "kl_per_dim" and family == "hierarchical":
        return "kl_per_dim is for single-layer latents; use kl_per_layer for a HierarchicalVAE"
    if name == "kl_per_dim" and not hasattr(model, "_kl_per_dim"):
        return f"kl_per_dim needs a diagonal-Gaussian VAE family (VAE, BetaVAE, CVAE); got {kind}"
    if name == "kl_per_layer" and family != "hierarchical":
        return f"kl_per_layer is a HierarchicalVAE metric; {kind} has one latent layer (use kl_per_dim)"
    if name in ("auroc", "auprc") and outliers is None:
        return f"{name} needs an outlier set: pass outliers=images (uint8 or [0, 1] floats)"
    if name == "conditional_accuracy":
        if not (getattr(model, "conditional", False) and getattr(model, "num_classes", None)):
            return f"conditional_accuracy needs a CVAE with num_classes; got {kind}"
        if classifier is None:
            return "conditional_accuracy needs classifier= (e.g. vaezoo.classifier.load_reference_classifier())"
    if name in DISENTANGLEMENT_METRICS:
        if family in ("vq", "hierarchical") or getattr(model, "conditional", False) or not hasattr(model, "latent_dim"):
            return f"{name} needs an unconditional single-layer Gaussian VAE (VAE, BetaVAE); got {kind}"
        if factors is None:
            return (f"{name} needs ground-truth factors: pass factors= (a vaezoo.disentanglement.FactorSampler, "
                    "e.g. FactorSampler.dsprites()); `vaezoo eval` does this for dsprites data")
    return None


def plan(model, metrics=DEFAULT_METRICS, outliers=None, classifier=None, factors=None):
    """The metric names `evaluate` will compute, after expanding `"all"` and checking each applies.

    Raises:
        ValueError: unknown name (with the closest valid one), or a metric that does not apply
            to this model or misses its input (outliers, classifier).
    """
    names = _check_metric_names(metrics)
    if "all" in names:
        expanded = [m for m in METRICS if _applicable(model, m, outliers, classifier, factors) is None]
        names = list(dict.fromkeys(expanded + [m for m in names if m != "all"]))
    for name in names:
        reason = _applicable(model, name, outliers, classifier, factors)
        if reason:
            raise ValueError(reason + ".")
    return names


# --------------------------------------------------------------------------- evaluate
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
    # ---- validate everything first
    names = plan(model, metrics, outliers, classifier, factors)
    validation.check_int("k", k, 1)
    validation.check_int("batch_size", batch_size, 1)
    validation.check_int("max_parallel_samples", max_parallel_samples, 1)
    validation.check_positive("active_threshold", active_threshold, allow_zero=True)
    if seed is not None:
        validation.check_int("seed", seed, 0)
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}.")
    x, condition = as_arrays(model, data, "data")
    anomaly = any(m in names for m in ("auroc", "auprc"))
    if outliers is not None:
        if not anomaly:
            raise ValueError("outliers were given but no anomaly metric was asked for; add 'auroc' and/or 'auprc' to metrics.")
        if _is_empty(outliers):
            raise ValueError(
                "the outlier set is empty; auroc/auprc need at least one outlier image of shape "
                f"(n, {', '.join(map(str, model.image_shape))})."
            )
        x_out, c_out = as_arrays(model, outliers, "outliers")
    if "nmse" in names:
        if data_variance is None:
            variance = float(np.var(x, dtype=np.float64))
            if not variance > 0:
                raise ValueError("nmse divides by the variance of the data's pixels, which is 0 here (constant images); "
                                 "pass data_variance=.")
        else:
            validation.check_positive("data_variance", data_variance)
            variance = float(data_variance)
    if "conditional_accuracy" in names:
        validation.check_int("samples_per_class", samples_per_class, 1)
        _check_classifier(model, classifier)
    if any(m in names for m in DISENTANGLEMENT_METRICS):
        num_train, num_eval = _check_points(disentanglement_points)
        _check_factors(model, factors)
    model.build_from_images()

    # ---- compute
    results = {"examples": int(len(x))}
    cache = {}
    with seeded(model, seed):
        def elbos():
            if "elbo" not in cache:
                cache["elbo"] = elbo_per_example(model, x, condition, batch_size)
            return cache["elbo"]

        def iwaes():
            if "iwae" not in cache:
                cache["iwae"] = iwae_per_example(model, x, k, condition, batch_size, max_parallel_samples,
                                                 progress=progress)
            return cache["iwae"]

        def recon_errors():
            if "recon" not in cache:
                cache["recon"] = per_image_mse(x, reconstructions(model, x, condition, batch_size))
            return cache["recon"]

        dims_ln2 = model.num_dims * math.log(2.0)
        if "elbo" in names:
            values = elbos()
            results["elbo"] = float(np.mean(values))
            results["elbo_stderr"] = _stderr(values)
            results["elbo_bits_per_dim"] = -results["elbo"] / dims_ln2
        if "iwae" in names:
            values = iwaes()
            results["iwae"] = float(np.mean(values))
            results["iwae_stderr"] = _stderr(values)
            results["iwae_bits_per_dim"] = -results["iwae"] / dims_ln2
            results["iwae_k"] = int(k)
        if "mse" in names:
            results["mse"] = float(np.mean(recon_errors()))
        if "nmse" in names:
            results["nmse"] = float(np.mean(recon_errors())) / variance
            results["data_variance"] = variance
        if "psnr" in names:
            results["psnr"] = float(np.mean(10.0 * np.log10(1.0 / np.maximum(recon_errors(), 1e-10))))
        if any(m in names for m in ("perplexity", "codebook_usage", "prior_bits_per_code")):
            codes = encode_codes(model, x, batch_size)
            stats = codebook_stats(codes, model.num_embeddings)
            if "perplexity" in names:
                results["perplexity"] = stats["perplexity"]
            if "codebook_usage" in names:
                results["codebook_usage"] = stats["codebook_usage"]
                results["codes_used"] = stats["codes_used"]
            if "prior_bits_per_code" in names:
                results["prior_bits_per_code"] = prior_bits_per_code(model, codes, batch_size)
        if "active_units" in names:
            means = posterior_means(model, x, condition, batch_size)
            if isinstance(means, list):  # hierarchical: one array per layer
                per_layer = [active_units(m, active_threshold) for m in means]
                results["active_units"] = int(sum(count for count, _ in per_layer))
                results["active_units_per_layer"] = [count for count, _ in per_layer]
                results["latent_variances"] = [v.tolist() for _, v in per_layer]
            else:
                count, variances = active_units(means, active_threshold)
                results["active_units"] = count
                results["latent_variances"] = variances.tolist()
        if "kl_per_dim" in names:
            results["kl_per_dim"] = kl_per_dim(model, x, condition, batch_size).tolist()
        if "kl_per_layer" in names:
            results["kl_per_layer"] = kl_per_layer(model, x, batch_size).tolist()
        if anomaly:
            if score == "elbo":
                inlier_scores = -elbos()
            elif score == "iwae":
                inlier_scores = -iwaes()
            else:
                inlier_scores = recon_errors()
            outlier_scores = anomaly_scores(model, x_out, score, c_out, k, batch_size, max_parallel_samples)
            results["anomaly_score"] = score
            results["outliers"] = int(len(x_out))
            if "auroc" in names:
                results["auroc"] = auroc(inlier_scores, outlier_scores)
            if "auprc" in names:
                results["auprc"] = average_precision(inlier_scores, outlier_scores)
                results["auprc_chance"] = len(x_out) / (len(x_out) + len(x))
        if "conditional_accuracy" in names:
            results.update(conditional_accuracy(model, classifier, samples_per_class, seed or 0, batch_size))
        if any(m in names for m in DISENTANGLEMENT_METRICS):
            results.update(_disentanglement(model, factors, names, num_train, num_eval, seed or 0, batch_size,
                                            progress))
    return results


def _check_factors(model, factors):
    from vaezoo.disentanglement import FactorSampler

    if not isinstance(factors, FactorSampler):
        raise TypeError(f"factors must be a vaezoo.disentanglement.FactorSampler, got {type(factors).__name__}.")
    _, observation = factors.sample(1, np.random.default_rng(0))
    if tuple(observation.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"factors produce observations of shape {tuple(observation.shape[1:])}; "
                         f"the model takes {tuple(model.image_shape)}.")


def _check_points(points):
    if not (isinstance(points, (tuple, list)) and len(points) == 2):
        raise ValueError(f"disentanglement_points must be (num_train, num_eval), got {points!r}.")
    validation.check_int("disentanglement_points[0] (num_train)", points[0], 1)
    validation.check_int("disentanglement_points[1] (num_eval)", points[1], 1)
    return int(points[0]), int(points[1])


def _disentanglement(model, factors, names, num_train, num_eval, seed, batch_size, progress=False):
    from vaezoo import disentanglement as dis

    representation = dis.mean_representation(model, batch_size=max(batch_size, 256))
    results = {}
    if "mig" in names:
        mig = dis.mig(representation, factors, seed=seed)
        results["mig"] = mig["score"]
        results["mig_per_factor"] = [float(v) for v in mig["per_factor"]]
    if "beta_vae_score" in names:
        results["beta_vae_score"] = dis.beta_vae_score(representation, factors, num_train=num_train,
                                                       num_eval=num_eval, seed=seed, progress=progress)["score"]
    if "factor_vae_score" in names:
        results["factor_vae_score"] = dis.factor_vae_score(representation, factors, num_train=num_train,
                                                           num_eval=num_eval, seed=seed, progress=progress)["score"]
    results["disentanglement_points"] = [num_train, num_eval]
    return results


def _stderr(values):
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def _is_empty(data):
    tf = _tf()
    if isinstance(data, tf.data.Dataset):
        return int(data.cardinality()) == 0
    images, _ = _split_element(data, False)
    shape = np.shape(images)
    return len(shape) == 0 or shape[0] == 0


# --------------------------------------------------------------------------- reporting
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


# --------------------------------------------------------------------------- CLI support
def _split_spec(spec, split):
    """A data spec pointed at `split`: npz keys x_/y_<split>, tfds split, folder/<split>."""
    import os

    spec = dict(spec)
    kind = spec.get("source")
    if split is None:
        return spec
    if kind == "npz":
        key = spec.get("key", "x_train")
        if key.startswith("x_"):
            spec["key"] = f"x_{split}"
        if spec.get("label_key", "").startswith("y_"):
            spec["label_key"] = f"y_{split}"
    elif kind == "tfds":
        spec["split"] = split
    elif kind == "folder" and os.path.isdir(os.path.join(spec.get("path", ""), split)):
        spec["path"] = os.path.join(spec["path"], split)
    return spec


def load_images(spec, split="test", limit=10000, labels=False, seed=1, batch_size=256):
    """Images (float32 [0, 1], after the spec's preprocessing) and labels of a data spec's split.

    Args:
        spec: a data spec (see `vaezoo.data.make_dataset`).
        split: `"test"`, `"train"`, ...: npz keys `x_<split>`/`y_<split>`, tfds split, or the
            `<split>` sub-folder of an image folder if it exists. Generated dSprites has no
            split: a different `seed` draws a different random subset.
        limit: at most this many images (in order); `None` or 0 for all.
        labels: also return labels (required for a CVAE).
        seed: seed of random preprocessing (binarization) and of the dSprites subset.

    Returns:
        `(images, labels or None)`.
    """
    from vaezoo import data as data_module

    spec = _split_spec(spec, split)
    if spec.get("source") == "dsprites" and limit:
        subset = spec.get("subset")
        if subset is None or (isinstance(subset, int) and subset > limit):
            spec["subset"] = int(limit)  # a random subset (by `seed`), not the grid's first images
    if labels:
        spec["labels"] = True
        if spec.get("source") == "npz" and not spec.get("label_key"):
            raise validation.ConfigError("a conditional model needs labels: add 'label_key' (e.g. 'y_test') to the npz data spec.")
    ds = data_module.make_dataset(spec, batch_size, seed=seed, shuffle=False, repeat=False, drop_remainder=False)
    images, label_list, count = [], [], 0
    for batch in ds:
        x, y = batch if labels else (batch, None)
        images.append(np.asarray(x))
        if y is not None:
            label_list.append(np.asarray(y))
        count += len(images[-1])
        if limit and count >= limit:
            break
    if not images:
        raise ValueError(f"the data spec {spec} produced no images.")
    images = np.concatenate(images)[: limit or None]
    y = np.concatenate(label_list)[: limit or None] if label_list else None
    return images, y


def hardware_description():
    """CPU model and core count, GPUs if TensorFlow sees any, and the TensorFlow version."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    tf = _tf()
    gpus = tf.config.list_physical_devices("GPU")
    text = f"{cpu}, {os.cpu_count()} cores"
    if gpus:
        text += f", {len(gpus)} GPU(s)"
    return f"{text}; TensorFlow {tf.__version__}"


def run_eval(model_ref, data=None, split="test", metrics=DEFAULT_METRICS, k=64, batch_size=128, limit=10000,
             outliers=None, score="elbo", classifier=None, samples_per_class=100, seed=0,
             disentanglement_points=(10000, 5000)):
    """What `vaezoo eval` does: load a model and its data split, `evaluate`, return a report.

    Args:
        model_ref: a `.keras` file, a training workdir or a registry name (see `load_model`).
        data: a data spec dict (see `vaezoo.data.make_dataset`); default the model's own
            (workdir config or registry card). A `.keras` file needs one.
        split: which split of the data spec (see `load_images`).
        limit: evaluate at most this many images (0: all).
        outliers: a data spec of the outlier set (same split) for `auroc` / `auprc`.
        classifier: a reference classifier name (`"mnist"`) or `.weights.h5` path for
            `conditional_accuracy`.
        metrics, k, batch_size, score, samples_per_class, seed, disentanglement_points: as in
            `evaluate`. The disentanglement metrics need dSprites data (`source: dsprites`):
            their factors come from `FactorSampler.dsprites()`.

    Returns:
        dict with `model`, `kind`, `family`, `data`, `split`, `metrics` (the results) and
        `date`, `hardware`.
    """
    import datetime

    names = _check_metric_names(metrics)  # fail on a typo before loading anything
    validation.check_int("k", k, 1)
    validation.check_int("batch_size", batch_size, 1)
    if limit is not None:
        validation.check_int("limit", limit, 0)
    from vaezoo.registry import resolve_model  # the resolver every command that takes a MODEL uses

    model, _, own_spec, kind = resolve_model(model_ref)
    spec = data if data is not None else own_spec
    if spec is None:
        raise ValueError(f"{model_ref!r} carries no data spec; pass one with --data (a JSON/YAML spec or file).")
    classifier_ref = classifier
    if classifier is not None:
        from vaezoo.classifier import PRETRAINED, load_reference_classifier

        classifier = (load_reference_classifier(classifier) if classifier in PRETRAINED
                      else load_reference_classifier(weights=classifier))
    factors = None
    if any(m in DISENTANGLEMENT_METRICS or m == "all" for m in names) and (spec or {}).get("source") == "dsprites":
        from vaezoo.disentanglement import FactorSampler

        factors = FactorSampler.dsprites()
    elif any(m in DISENTANGLEMENT_METRICS for m in names):
        raise ValueError(f"{', '.join(m for m in names if m in DISENTANGLEMENT_METRICS)} need data with known "
                         f"generative factors (source: dsprites); {model_ref!r} evaluates on "
                         f"source {(spec or {}).get('source')!r}.")
    plan(model, names, outliers, classifier, factors)  # metric/model mismatches before the data is read
    conditional = getattr(model, "conditional", False)
    images, labels = load_images(spec, split, limit, labels=conditional, seed=seed + 1)
    inputs = (images, labels) if conditional else images
    outlier_inputs = None
    if outliers is not None:
        out_images, out_labels = load_images(outliers, split, limit, labels=conditional, seed=seed + 2)
        outlier_inputs = (out_images, out_labels) if conditional else out_images
    results = evaluate(model, inputs, metrics=names, k=k, batch_size=batch_size, outliers=outlier_inputs,
                       score=score, classifier=classifier, samples_per_class=samples_per_class, seed=seed,
                       factors=factors, disentanglement_points=disentanglement_points, progress=True)
    return {
        "model": model_ref,
        "kind": kind,
        "family": type(model).__name__,
        "data": _split_spec(spec, split),
        "split": split,
        "seed": seed,
        "classifier": classifier_ref,
        "metrics": results,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": hardware_description(),
    }


#: result keys that are bookkeeping, not measurements (left out of zoo cards).
_NOT_MEASURED = {"examples", "outliers", "iwae_k", "anomaly_score", "data_variance", "elbo_stderr",
                 "iwae_stderr", "latent_variances", "auprc_chance", "disentanglement_points", "samples_per_class"}


def card_records(report, command):
    """Zoo-card metric records `{name: {value, split, protocol, hardware, date, command[, stderr]}}` of a report."""
    results = report["metrics"]
    data = report["data"]
    source = data.get("path") or data.get("name") or data.get("source")
    base = (f"{results['examples']} {report['split']} images of {data.get('source')}:{source} "
            f"(preprocess {data.get('preprocess', 'scale')}), seed {report['seed']}")
    records = {}
    for key, value in results.items():
        if key in _NOT_MEASURED:
            continue
        metric = next((m for m in METRICS if key == m or key.startswith(m + "_")), key)
        protocol = f"{METRICS.get(metric, key)}; {base}"
        if metric in DISENTANGLEMENT_METRICS:
            num_train, num_eval = results["disentanglement_points"]
            points = "10,000 points" if metric == "mig" else f"{num_train} training and {num_eval} evaluation points"
            protocol = (f"{METRICS[metric]}; fresh draws of the dSprites factor grid (FactorSampler.dsprites()), "
                        f"{points}, seed {report['seed']}; representation = posterior mean")
        if metric == "iwae":
            protocol += f"; k = {results['iwae_k']}"
        if metric == "conditional_accuracy":
            protocol = (f"{METRICS[metric]}; {results['samples_per_class']} samples per class at temperature 1, "
                        f"seed {report['seed']}, classified by the reference classifier {report.get('classifier')!r}")
        if metric in ("auroc", "auprc"):
            protocol += f"; score {results['anomaly_score']}, {results['outliers']} outliers"
        records[key] = {"value": value, "split": report["split"], "protocol": protocol,
                        "hardware": report["hardware"], "date": report["date"], "command": command}
        if f"{key}_stderr" in results:  # elbo, iwae: standard error of the mean over the examples
            records[key]["stderr"] = results[f"{key}_stderr"]
    return records
