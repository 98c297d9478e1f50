"""The latent space: active units, KL per dimension and per layer, posterior means."""

import numpy as np

from vaezoo.evaluation.records import Metric, as_float64, batches, condition_kwargs


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
    means = as_float64(means)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"active_units needs posterior means of shape (n >= 2, d), got {means.shape}.")
    variances = np.var(means, axis=0)
    return int(np.sum(variances > threshold)), variances


def posterior_means(model, images, condition=None, batch_size=128):
    """Posterior means E_q[z | x] per image: `model.posterior_means` in batches.

    For one latent, `(n, *latent)`. For a hierarchy (`latent_kind == "hierarchy"`) a list with
    one `(n, latent_dim)` array per layer (0 = bottom), from the top-down pass in which every
    layer takes its posterior mean, so the mean of layer l is that of q(z_l | x, z_>l = their
    means).
    """
    means = [model.posterior_means(images[s], **condition_kwargs(condition, s)) for s in batches(len(images), batch_size)]
    if model.latent_kind == "hierarchy":
        return [np.concatenate([as_float64(batch[layer]) for batch in means]) for layer in range(len(means[0]))]
    return np.concatenate([as_float64(batch) for batch in means])


def kl_per_dim(model, images, condition=None, batch_size=128):
    """Mean over images of KL(q(z_i | x) || p(z_i)) for every latent dimension i, `(d,)` nats.

    Protocol: the analytic per-dimension KL of the diagonal-Gaussian posterior from the prior
    (for a CVAE, its prior p(z | c), learned or standard), averaged over the images
    (`model.kl_per_dim`). The entries sum to the mean `kl` term of the ELBO. Near-zero
    entries are collapsed units.
    """
    total = sum(as_float64(model.kl_per_dim(images[s], **condition_kwargs(condition, s))).sum(axis=0) for s in batches(len(images), batch_size))
    return total / len(images)


def kl_per_layer(model, images, batch_size=128):
    """Mean over images of the KL of each layer of a HierarchicalVAE, `(L,)` nats (0 = bottom).

    Protocol: `model.kl_per_layer` (analytic KL of layer l given one posterior sample of the
    layers above), averaged over the images; the entries sum to the mean `kl` of the ELBO.
    """
    out = [as_float64(model.kl_per_layer(images[s])) for s in batches(len(images), batch_size)]
    return np.mean(np.concatenate(out), axis=0)


def _active_units(run):
    means = posterior_means(run.model, run.images, run.condition, run.options.batch_size)
    threshold = run.options.active_threshold
    if run.model.latent_kind == "hierarchy":  # one array per layer
        per_layer = [active_units(m, threshold) for m in means]
        return {"active_units": int(sum(count for count, _ in per_layer)),
                "active_units_per_layer": [count for count, _ in per_layer],
                "latent_variances": [v.tolist() for _, v in per_layer]}
    count, variances = active_units(means, threshold)
    return {"active_units": count, "latent_variances": variances.tolist()}


def _gaussian_latents(name):
    def applies(model, inputs):
        if model.latent_kind == "code_grid":
            return f"{name} needs Gaussian vector latents; a VQVAE's posterior is a deterministic code grid"
        if name == "kl_per_dim" and model.latent_kind == "hierarchy":
            return "kl_per_dim is for single-layer latents; use kl_per_layer for a HierarchicalVAE"
        return None

    return applies


def _hierarchy(model, inputs):
    if model.latent_kind != "hierarchy":
        return f"kl_per_layer is a HierarchicalVAE metric; {type(model).__name__} has one latent layer (use kl_per_dim)"
    return None


ACTIVE_UNITS = Metric(
    "active_units", "latent dimensions with Cov_x(E_q[z_i]) > threshold (Burda et al.)", _active_units,
    keys=("active_units", "active_units_per_layer"), bookkeeping=("latent_variances",),
    applies=_gaussian_latents("active_units"),
)
KL_PER_DIM = Metric(
    "kl_per_dim", "mean KL(q(z_i|x) || p(z_i)) of each latent dimension, nats",
    lambda run: {"kl_per_dim": kl_per_dim(run.model, run.images, run.condition, run.options.batch_size).tolist()},
    keys=("kl_per_dim",), applies=_gaussian_latents("kl_per_dim"),
)
KL_PER_LAYER = Metric(
    "kl_per_layer", "HierarchicalVAE: mean KL of each latent layer, nats",
    lambda run: {"kl_per_layer": kl_per_layer(run.model, run.images, run.options.batch_size).tolist()},
    keys=("kl_per_layer",), applies=_hierarchy,
)
RECORDS = (ACTIVE_UNITS, KL_PER_DIM, KL_PER_LAYER)
