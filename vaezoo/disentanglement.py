"""Disentanglement metrics (BetaVAE score, FactorVAE score, MIG) and latent traversals.

The metrics follow the protocols of disentanglement_lib (Locatello et al., 2019) and work
from two things:

- a `representation_fn(images) -> codes`, `(n, d)` floats, e.g. the posterior mean
  (`mean_representation(model)`);
- a `FactorSampler`, which draws ground-truth factors and the observations they produce:
  `FactorSampler.dsprites()` renders the exact dSprites grid (`vaezoo.data.DSprites`),
  `FactorSampler(factor_sizes, render)` any other full factor grid, and
  `ArrayFactorSampler(observations, factors)` a finite data set with factor labels.

MIG also works directly on arrays of codes and factors (`mig_from_codes`).

Example:
    >>> from vaezoo import disentanglement as dis
    >>> sampler = dis.FactorSampler.dsprites()
    >>> rep = dis.mean_representation(model)
    >>> dis.mig(rep, sampler, num_train=10_000)["score"]
    >>> dis.beta_vae_score(rep, sampler)["score"], dis.factor_vae_score(rep, sampler)["score"]
    >>> grid = dis.traversal_grid(model, image, dims=range(10), values=np.linspace(-2, 2, 9))

References:
    Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework", ICLR 2017 (BetaVAE score). Kim & Mnih, "Disentangling by Factorising", ICML
    2018 (FactorVAE score). Chen et al., "Isolating Sources of Disentanglement in VAEs",
    NeurIPS 2018 (MIG). Locatello et al., "Challenging Common Assumptions in the Unsupervised
    Learning of Disentangled Representations", ICML 2019 (disentanglement_lib protocols).
"""

import numpy as np

from vaezoo import validation


# --------------------------------------------------------------------------- factor samplers
class FactorSampler:
    """Independent uniform factors on a full grid, and a function rendering them.

    Args:
        factor_sizes: number of classes of each factor, e.g. `(3, 6, 40, 32, 32)`.
        render: `render(factor_classes) -> observations` for an int array `(n, F)`; `None`
            returns the factor classes themselves as float32 (handy for tests and for codes
            that should be scored against the factors directly).
        factor_names: optional names, one per factor.

    Example:
        >>> sampler = FactorSampler((4, 5))                 # observations = factors
        >>> factors, observations = sampler.sample(8, np.random.default_rng(0))
        >>> a, b = sampler.sample_pairs(np.zeros(8, int), np.random.default_rng(0))
    """

    def __init__(self, factor_sizes, render=None, factor_names=None):
        sizes = tuple(factor_sizes)
        if not sizes:
            raise ValueError("factor_sizes must name at least one factor.")
        for size in sizes:
            validation.check_int("factor_sizes entries", size, 1)
        self.factor_sizes = tuple(int(s) for s in sizes)
        self.render = render
        names = factor_names or [f"factor_{i}" for i in range(len(sizes))]
        if len(names) != len(sizes):
            raise ValueError(f"factor_names must have {len(sizes)} entries, got {len(names)}.")
        self.factor_names = tuple(names)

    @classmethod
    def dsprites(cls):
        """The dSprites grid (shape, scale, orientation, pos_x, pos_y); images float32 in {0, 1}."""
        from vaezoo.data import DSprites

        sprites = DSprites()

        def render(classes):
            return sprites.render(sprites.index_of(classes)).astype(np.float32)

        return cls(DSprites.factor_sizes, render, DSprites.factor_names)

    @property
    def num_factors(self):
        return len(self.factor_sizes)

    def sample_factors(self, n, rng):
        """`(n, F)` int factor classes, each factor uniform and independent."""
        return np.stack([rng.integers(0, size, n) for size in self.factor_sizes], axis=-1)

    def observations(self, factors, rng=None):
        """Render factor classes `(n, F)` to observations."""
        factors = np.asarray(factors)
        if self.render is None:
            return factors.astype(np.float32)
        return self.render(factors)

    def sample(self, n, rng):
        """`(factors (n, F), observations)` of n random points."""
        factors = self.sample_factors(n, rng)
        return factors, self.observations(factors, rng)

    def sample_pairs(self, factor_indices, rng):
        """Pairs that share one factor: pair i agrees on factor `factor_indices[i]`.

        Returns `(observations_1, observations_2)`, each with one row per pair.
        """
        k = np.asarray(factor_indices)
        first, second = self.sample_factors(len(k), rng), self.sample_factors(len(k), rng)
        rows = np.arange(len(k))
        second[rows, k] = first[rows, k]
        return self.observations(first, rng), self.observations(second, rng)

    def sample_fixed(self, factor_indices, batch_size, rng):
        """One batch per entry of `factor_indices`, in which that factor has one value.

        Batch j (rows `j * batch_size` to `(j + 1) * batch_size`) has factor
        `factor_indices[j]` fixed to a random value and the other factors random.
        """
        k = np.asarray(factor_indices)
        factors = self.sample_factors(len(k) * batch_size, rng).reshape(len(k), batch_size, -1)
        values = factors[np.arange(len(k)), 0, k]
        factors[np.arange(len(k)), :, k] = values[:, None]
        return self.observations(factors.reshape(len(k) * batch_size, -1), rng)


class ArrayFactorSampler(FactorSampler):
    """A finite data set with factor labels: samples rows, matching on the fixed factor.

    The whole grid need not be present: a pair sharing factor k is a random row and a random
    row with the same value of k; a batch with factor k fixed is drawn from the rows with that
    value. So the other factors follow the data's own distribution given factor k.

    Args:
        observations: array `(n, ...)` (e.g. images, uint8 or float in [0, 1]).
        factors: `(n, F)` discrete factor labels (any integers; mapped to 0..m-1 per factor).
        factor_names: optional names.
    """

    def __init__(self, observations, factors, factor_names=None):
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.dtype.kind not in "iub":
            raise ValueError(f"factors must be an integer array (n, num_factors), got {factors.dtype} {factors.shape}.")
        if len(observations) != len(factors) or len(factors) == 0:
            raise ValueError(f"observations and factors need the same number of rows >= 1, got "
                             f"{len(observations)} and {len(factors)}.")
        columns = [np.unique(factors[:, j], return_inverse=True) for j in range(factors.shape[1])]
        self.classes = np.stack([inverse.reshape(-1) for _, inverse in columns], axis=-1)
        super().__init__([len(values) for values, _ in columns], None, factor_names)
        self.data = observations
        # per factor: rows sorted by value, and where each value's block starts / how long it is
        self._order, self._start, self._count = [], [], []
        for j in range(self.num_factors):
            order = np.argsort(self.classes[:, j], kind="mergesort")
            counts = np.bincount(self.classes[:, j], minlength=self.factor_sizes[j])
            self._order.append(order)
            self._count.append(counts)
            self._start.append(np.r_[0, np.cumsum(counts)[:-1]])

    def _rows_with(self, factor, values, rng):
        values = np.asarray(values)
        offsets = np.floor(rng.random(values.shape) * self._count[factor][values]).astype(np.int64)
        return self._order[factor][self._start[factor][values] + offsets]

    def _take(self, rows):
        return np.asarray(self.data[rows]) if not isinstance(self.data, np.ndarray) else self.data[rows]

    def sample(self, n, rng):
        rows = rng.integers(0, len(self.classes), n)
        return self.classes[rows], self._take(rows)

    def sample_pairs(self, factor_indices, rng):
        k = np.asarray(factor_indices)
        first = rng.integers(0, len(self.classes), len(k))
        second = np.empty_like(first)
        for factor in np.unique(k):
            mask = k == factor
            second[mask] = self._rows_with(factor, self.classes[first[mask], factor], rng)
        return self._take(first), self._take(second)

    def sample_fixed(self, factor_indices, batch_size, rng):
        k = np.asarray(factor_indices)
        anchors = rng.integers(0, len(self.classes), len(k))
        rows = np.empty((len(k), batch_size), np.int64)
        for j, factor in enumerate(k):
            rows[j] = self._rows_with(factor, np.full(batch_size, self.classes[anchors[j], factor]), rng)
        return self._take(rows.reshape(-1))


# --------------------------------------------------------------------------- representations
def mean_representation(model, batch_size=256):
    """`representation_fn` of a vaezoo model: the posterior mean `model.encode(x).mean()`.

    Images go in as uint8 in [0, 255] or float in [0, 1]; codes come out float64 `(n, d)`.
    """
    from vaezoo.models.base import check_model

    check_model(model, "mean_representation", latent_kinds=("vector", "hierarchy"))

    def representation(images):
        out = [np.asarray(model.encode(images[i : i + batch_size]).mean(), np.float64)
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out)

    return representation


def _represent(representation_fn, observations, batch_size=1024, expected_rows=None):
    chunks = []
    for start in range(0, len(observations), batch_size):
        codes = np.asarray(representation_fn(observations[start : start + batch_size]), np.float64)
        n = min(batch_size, len(observations) - start)
        if codes.ndim != 2 or len(codes) != n:
            raise ValueError(f"representation_fn must return codes of shape (n, d) for n inputs; got shape "
                             f"{codes.shape} for {n} inputs.")
        chunks.append(codes)
    codes = np.concatenate(chunks)
    if not np.all(np.isfinite(codes)):
        raise ValueError("representation_fn returned NaN or Inf codes.")
    return codes


def _check_common(sampler, seed, **counts):
    if not isinstance(sampler, FactorSampler):
        raise TypeError(f"sampler must be a vaezoo.disentanglement.FactorSampler, got {type(sampler).__name__}.")
    validation.check_int("seed", seed, 0)
    for name, value in counts.items():
        validation.check_int(name, value, 1)


# --------------------------------------------------------------------------- information theory
def _discrete(values):
    """Relabel any 1-D discrete values as 0..m-1."""
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)


def mutual_information(a, b):
    """Empirical mutual information (nats) of two discrete 1-D arrays (as sklearn's mutual_info_score)."""
    a, b = _discrete(a), _discrete(b)
    if len(a) != len(b):
        raise ValueError(f"mutual_information needs arrays of equal length, got {len(a)} and {len(b)}.")
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1)).reshape(a.max() + 1, -1)
    joint = joint / len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / (pa @ pb)[nonzero])))


def entropy(values):
    """Empirical entropy (nats) of a discrete 1-D array."""
    counts = np.bincount(_discrete(values))
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def histogram_discretize(codes, num_bins=20):
    """disentanglement_lib's discretization: each code dimension into `num_bins` equal-width bins.

    Bin edges span each dimension's [min, max] (`np.histogram`), values are `np.digitize`d
    against the left edges, so every dimension becomes integers in 1..num_bins.
    """
    codes = np.asarray(codes, np.float64)
    out = np.zeros(codes.shape, np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], num_bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges)
    return out


# --------------------------------------------------------------------------- MIG
def mig_from_codes(codes, factors, num_bins=20):
    """Mutual Information Gap of codes `(n, d)` against discrete factors `(n, F)`.

    Protocol (Chen et al., 2018, as in disentanglement_lib): discretize every code dimension
    into `num_bins` equal-width bins (`histogram_discretize`), compute the mutual information
    I(z_i; v_k) of every code dimension with every factor, and for every factor take the gap
    between the largest and second largest MI over code dimensions divided by the factor's
    entropy H(v_k); MIG is the mean over factors. Factors that are constant in the sample
    (H = 0) are left out (`factors_used` says how many counted). 1 is perfect, 0 is none.

    Returns:
        dict with `score` (MIG), `per_factor` (normalized gaps) and `factors_used`.
    """
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"MIG needs codes (n, d) and factors (n, F) with equal n; got {codes.shape} and {factors.shape}.")
    if codes.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 code dimensions (the gap between the best two), got {codes.shape[1]}.")
    validation.check_int("num_bins", num_bins, 2)
    discrete = histogram_discretize(codes, num_bins)
    mi = np.array([[mutual_information(discrete[:, i], factors[:, k]) for k in range(factors.shape[1])]
                   for i in range(codes.shape[1])])
    entropies = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(mi, axis=0)[::-1]
    gaps = np.full(factors.shape[1], np.nan)
    used = entropies > 0
    gaps[used] = (top[0, used] - top[1, used]) / entropies[used]
    if not used.any():
        raise ValueError("every factor is constant in the sample; MIG is undefined.")
    return {"score": float(np.mean(gaps[used])), "per_factor": gaps.tolist(), "factors_used": int(used.sum()),
            "mutual_information": mi.tolist()}


def mig(representation_fn, sampler, num_train=10000, num_bins=20, seed=0, batch_size=1024):
    """MIG of a representation on `num_train` random points of a factor sampler.

    Protocol (disentanglement_lib): `num_train` (10,000) random factor draws, their
    observations encoded by `representation_fn`, then `mig_from_codes` with 20 bins.

    Args:
        representation_fn: `fn(observations) -> codes (n, d)`, e.g. `mean_representation(model)`.
        sampler: a `FactorSampler` (e.g. `FactorSampler.dsprites()`).
        num_train: points.
        num_bins: histogram bins per code dimension.
        seed: seed of the factor draws.
        batch_size: observations per `representation_fn` call.
    """
    _check_common(sampler, seed, num_train=num_train, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    factors, observations = sampler.sample(num_train, rng)
    codes = _represent(representation_fn, observations, batch_size)
    return mig_from_codes(codes, factors, num_bins)


# --------------------------------------------------------------------------- BetaVAE score
def _fit_logistic(x, y, num_classes, c=1.0, iterations=100):
    """Multinomial logistic regression with an L2 penalty `||W||^2 / (2 c)` (intercepts free).

    The objective of scikit-learn's default `LogisticRegression(C=1)`, solved by Newton's
    method with a backtracking line search. Returns `(W (p, K), b (K,))`.
    """
    n, p = x.shape
    onehot = np.eye(num_classes)[y]
    params = np.zeros((p + 1) * num_classes)
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    penalty = np.ones((p + 1, num_classes)) / c
    penalty[-1] = 1e-8  # intercepts: unpenalized, but keep the Hessian invertible

    def objective(theta):
        w = theta.reshape(p + 1, num_classes)
        logits = xb @ w
        logits -= logits.max(1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(1))
        nll = -np.sum(onehot * logits) + np.sum(log_z)
        return nll + 0.5 * np.sum(penalty * w * w), logits, log_z

    value, logits, log_z = objective(params)
    for _ in range(iterations):
        w = params.reshape(p + 1, num_classes)
        probs = np.exp(logits - log_z[:, None])
        grad = (xb.T @ (probs - onehot) + penalty * w).reshape(-1)
        # Hessian: sum_n (diag(p_n) - p_n p_n^T) kron x_n x_n^T, laid out like `params`
        hessian = np.empty((p + 1, num_classes, p + 1, num_classes))
        for a in range(num_classes):
            for b in range(a, num_classes):
                weight = probs[:, a] * ((a == b) - probs[:, b])
                block = (xb * weight[:, None]).T @ xb
                hessian[:, a, :, b] = block
                hessian[:, b, :, a] = block.T
        hessian = hessian.reshape(params.size, params.size) + np.diag(penalty.reshape(-1))
        try:
            step = np.linalg.solve(hessian, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        size = 1.0
        while size > 1e-8:
            candidate = params - size * step
            new_value, new_logits, new_log_z = objective(candidate)
            if new_value <= value - 1e-4 * size * grad @ step:
                break
            size /= 2
        else:
            break
        converged = value - new_value < 1e-10 * max(1.0, abs(value))
        params, value, logits, log_z = candidate, new_value, new_logits, new_log_z
        if converged:
            break
    w = params.reshape(p + 1, num_classes)
    return w[:-1], w[-1]


def _progress_bar(progress, title, total):
    """A `keras.utils.Progbar` over `total` points when `progress`, else None."""
    if not progress:
        return None
    import keras

    print(title, flush=True)
    return keras.utils.Progbar(total, unit_name="point")


def _beta_vae_points(representation_fn, sampler, num_points, batch_size, rng, chunk, rep_batch, bar=None):
    features, labels = [], []
    for start in range(0, num_points, chunk):
        points = min(chunk, num_points - start)
        k = rng.integers(0, sampler.num_factors, points)
        first, second = sampler.sample_pairs(np.repeat(k, batch_size), rng)
        z1 = _represent(representation_fn, first, rep_batch)
        z2 = _represent(representation_fn, second, rep_batch)
        diffs = np.abs(z1 - z2).reshape(points, batch_size, -1)
        features.append(diffs.mean(axis=1))
        labels.append(k)
        if bar is not None:
            bar.add(points)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(representation_fn, sampler, num_train=10000, num_eval=5000, batch_size=64, seed=0,
                   points_per_chunk=16, representation_batch=1024, progress=False):
    """BetaVAE score (Higgins et al., 2017), disentanglement_lib protocol.

    Protocol: a training point is made by choosing a factor k uniformly at random, drawing
    `batch_size` (64) pairs of observations that share the value of factor k (every other
    factor independent), encoding them, and averaging `|z_1 - z_2|` over the pairs; its label
    is k. A multinomial logistic regression (L2, C = 1: scikit-learn's default) is fit on
    `num_train` (10,000) points; the score is its accuracy on `num_eval` (5,000) fresh points.
    Chance is 1 / (number of factors).

    Args:
        representation_fn: `fn(observations) -> codes (n, d)`.
        sampler: a `FactorSampler`.
        num_train, num_eval: points for the classifier's training and evaluation.
        batch_size: pairs averaged per point.
        seed: seed of every draw.
        points_per_chunk: points whose observations are encoded together (speed only).
        representation_batch: observations per `representation_fn` call.
        progress: show a progress bar (10,000 + 5,000 points encode 1.9 M images: tens of
            minutes on a CPU).

    Returns:
        dict with `score` (= `eval_accuracy`) and `train_accuracy`.
    """
    _check_common(sampler, seed, num_train=num_train, num_eval=num_eval, batch_size=batch_size,
                  points_per_chunk=points_per_chunk, representation_batch=representation_batch)
    rng = np.random.default_rng(seed)
    args = (batch_size, rng, points_per_chunk, representation_batch)
    bar = _progress_bar(progress, f"BetaVAE score: {num_train} training + {num_eval} evaluation points, "
                                  f"{2 * batch_size} images each", num_train + num_eval)
    x_train, y_train = _beta_vae_points(representation_fn, sampler, num_train, *args, bar=bar)
    x_eval, y_eval = _beta_vae_points(representation_fn, sampler, num_eval, *args, bar=bar)
    w, b = _fit_logistic(x_train, y_train, sampler.num_factors)
    train_accuracy = float(np.mean(np.argmax(x_train @ w + b, 1) == y_train))
    eval_accuracy = float(np.mean(np.argmax(x_eval @ w + b, 1) == y_eval))
    return {"score": eval_accuracy, "train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


# --------------------------------------------------------------------------- FactorVAE score
def _factor_vae_votes(representation_fn, sampler, num_points, batch_size, rng, active, scale, chunk, rep_batch,
                      bar=None):
    votes = np.zeros((scale.shape[0], sampler.num_factors), np.int64)
    for start in range(0, num_points, chunk):
        points = min(chunk, num_points - start)
        k = rng.integers(0, sampler.num_factors, points)
        observations = sampler.sample_fixed(k, batch_size, rng)
        codes = _represent(representation_fn, observations, rep_batch).reshape(points, batch_size, -1)
        local = np.var(codes, axis=1, ddof=1)
        normalized = local[:, active] / scale[active]
        chosen = np.flatnonzero(active)[np.argmin(normalized, axis=1)]
        np.add.at(votes, (chosen, k), 1)
        if bar is not None:
            bar.add(points)
    return votes


def factor_vae_score(representation_fn, sampler, num_train=10000, num_eval=5000, batch_size=64,
                     num_variance_estimate=10000, seed=0, points_per_chunk=16, representation_batch=1024,
                     progress=False):
    """FactorVAE score (Kim & Mnih, 2018), disentanglement_lib protocol.

    Protocol: the variance of every code dimension over `num_variance_estimate` (10,000)
    random observations normalizes the codes; dimensions with zero variance are dropped.
    A vote is made by choosing a factor k, drawing `batch_size` (64) observations in which
    factor k has one random value (others random), and picking the code dimension with the
    smallest normalized variance (ddof 1) within the batch: vote (dimension, k). The majority
    vote classifier maps each dimension to the factor it was voted for most often on
    `num_train` (10,000) votes; the score is its accuracy on `num_eval` (5,000) fresh votes.
    With no dimension of nonzero variance the score is 0.

    Args:
        representation_fn: `fn(observations) -> codes (n, d)`.
        sampler: a `FactorSampler`.
        num_train, num_eval: votes for training and evaluating the majority-vote classifier.
        batch_size: observations per vote.
        num_variance_estimate: observations for the global variances.
        seed: seed of every draw.
        progress: show a progress bar over the votes.

    Returns:
        dict with `score` (= `eval_accuracy`), `train_accuracy` and `num_active_dims`.
    """
    _check_common(sampler, seed, num_train=num_train, num_eval=num_eval, batch_size=batch_size,
                  num_variance_estimate=num_variance_estimate, points_per_chunk=points_per_chunk,
                  representation_batch=representation_batch)
    if batch_size < 2:
        raise ValueError(f"factor_vae_score needs batch_size >= 2 (a variance per batch), got {batch_size}.")
    rng = np.random.default_rng(seed)
    _, observations = sampler.sample(num_variance_estimate, rng)
    scale = np.var(_represent(representation_fn, observations, representation_batch), axis=0, ddof=1)
    active = scale > 0
    if not active.any():
        return {"score": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    args = (batch_size, rng, active, scale, points_per_chunk, representation_batch)
    bar = _progress_bar(progress, f"FactorVAE score: {num_train} training + {num_eval} evaluation votes, "
                                  f"{batch_size} images each", num_train + num_eval)
    train_votes = _factor_vae_votes(representation_fn, sampler, num_train, *args, bar=bar)
    eval_votes = _factor_vae_votes(representation_fn, sampler, num_eval, *args, bar=bar)
    classifier = np.argmax(train_votes, axis=1)
    rows = np.arange(len(classifier))
    train_accuracy = float(train_votes[rows, classifier].sum() / train_votes.sum())
    eval_accuracy = float(eval_votes[rows, classifier].sum() / eval_votes.sum())
    return {"score": eval_accuracy, "train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy,
            "num_active_dims": int(active.sum())}


# --------------------------------------------------------------------------- traversals
def _check_traversal(model, image, dims, values, condition):
    from vaezoo.models.base import check_model

    check_model(model, "A latent traversal", latent_kinds=("vector", "hierarchy"))
    image = np.asarray(image)
    if image.ndim == len(model.image_shape):
        image = image[None]
    if image.ndim != len(model.image_shape) + 1 or image.shape[0] != 1:
        raise ValueError(f"image must be one image of shape {tuple(model.image_shape)} (or a batch of 1), "
                         f"got shape {image.shape}.")
    x = validation.check_images(image, model.image_shape, name="image")
    dims = list(range(min(model.latent_dim, 10))) if dims is None else list(dims)
    if not dims:
        raise ValueError("dims is empty; name at least one latent dimension.")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < model.latent_dim:
            raise ValueError(f"dims must be integers in [0, {model.latent_dim}) (latent_dim), got {d!r}.")
    values = np.linspace(-2.5, 2.5, 9) if values is None else np.asarray(values, np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a non-empty list of finite numbers, got {values!r}.")
    if condition is not None:  # one condition: a label, a one-hot row or a vector
        condition = np.asarray(condition)
        if condition.ndim == 0:
            condition = condition[None]
        elif condition.ndim == 1 and (condition.dtype.kind == "f" or len(condition) != 1):
            condition = condition[None]
    if model.conditional or condition is not None:
        model.check_condition(condition, 1)
    return x, dims, values, condition


def traversal_images(model, image, dims=None, values=None, condition=None):
    """Decoded latent traversals: float32 `(len(dims), len(values), *image_shape)` in [0, 1].

    Protocol: encode the image, take the posterior mean z, and for each latent dimension d in
    `dims` and each value v in `values` decode z with z[d] set to v (absolute values in prior
    units: the prior is N(0, I), so the default -2.5 .. 2.5 in 9 steps spans it). For a
    HierarchicalVAE, z is the top layer and the lower layers take their prior means.

    Args:
        model: a model with vector latents (VAE, BetaVAE, CVAE, HierarchicalVAE).
        image: one image `(h, w, c)` or `(1, h, w, c)`, uint8 in [0, 255] or float in [0, 1].
        dims: latent dimensions (rows); default the first min(10, latent_dim).
        values: latent values (columns); default `np.linspace(-2.5, 2.5, 9)`.
        condition: for a CVAE, the image's condition (a label or a vector).
    """
    x, dims, values, condition = _check_traversal(model, image, dims, values, condition)
    kw = {} if condition is None else {"condition": condition}
    z = np.asarray(model.encode(x, **kw).mean(), np.float32)[0]
    rows = []
    for d in dims:
        batch = np.repeat(z[None], len(values), axis=0)
        batch[:, d] = values
        ckw = {} if condition is None else {"condition": np.repeat(condition, len(values), axis=0)}
        likelihood = model.decode(batch, **ckw)
        rows.append(np.asarray(model.likelihood.image(likelihood), np.float32))
    return np.stack(rows)


def traversal_grid(model, image, dims=None, values=None, condition=None, padding=2):
    """Latent traversals as one uint8 image grid: a row per dimension, a column per value.

    See `traversal_images` for the protocol and arguments. Returns a uint8 array
    `(H, W, channels)` made by `vaezoo.visualize.image_grid`.

    Example:
        >>> grid = traversal_grid(model, x_test[0], dims=[0, 1, 2], values=np.linspace(-3, 3, 7))
        >>> vaezoo.visualize.save_png(grid, "traversal.png", scale=2)
    """
    from vaezoo.visualize import image_grid

    images = traversal_images(model, image, dims, values, condition)
    rows, columns = images.shape[:2]
    return image_grid(images.reshape(rows * columns, *images.shape[2:]), columns=columns, padding=padding)


def save_traversal(model, image, path, dims=None, values=None, condition=None, scale=2):
    """Write latent traversals to a PNG with one labelled row per dimension (`z[d]`); returns path."""
    from vaezoo.visualize import save_rows_png

    x, dims, values, _ = _check_traversal(model, image, dims, values, condition)
    images = traversal_images(model, image, dims, values, condition)
    rows = {"input": np.asarray(x)}
    rows.update({f"z[{d}]": row for d, row in zip(dims, images)})
    return save_rows_png(rows, path, scale=scale)
