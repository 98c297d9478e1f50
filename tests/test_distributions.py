"""Distribution layers against closed forms and float64 references."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vaezoo import distributions as D

tfd = tfp.distributions


def test_diagonal_gaussian_kl_matches_float64_formula(rng):
    params = rng.normal(size=(5, 8)).astype(np.float32)
    q = D.DiagonalGaussian(min_scale=1e-3)(params)
    p = D.StandardNormalPrior((4,))()
    kl = np.asarray(tfp.distributions.kl_divergence(q, p))
    loc = params[:, :4].astype(np.float64)
    scale = np.log1p(np.exp(params[:, 4:].astype(np.float64))) + 1e-3
    expected = 0.5 * np.sum(scale**2 + loc**2 - 1.0 - 2.0 * np.log(scale), axis=-1)
    np.testing.assert_allclose(kl, expected, rtol=1e-5)


def test_posterior_scale_is_floored():
    q = D.DiagonalGaussian(min_scale=0.01)(tf.fill([2, 6], -1e4))
    assert float(tf.reduce_min(q.stddev())) == pytest.approx(0.01, rel=1e-6)
    assert np.all(np.isfinite(q.log_prob(q.sample(seed=[1, 2]))))


def test_bernoulli_log_prob_is_negative_bce(rng):
    logits = rng.normal(size=(3, 4, 4, 1)).astype(np.float32) * 3
    x = (rng.random((3, 4, 4, 1)) > 0.5).astype(np.float32)
    lp = np.asarray(D.BernoulliLikelihood()(logits).log_prob(x))
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    np.testing.assert_allclose(lp, -bce.sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.1, "learned", "per_pixel"])
def test_gaussian_likelihood_matches_formula(rng, scale):
    layer = D.GaussianLikelihood(scale=scale)
    channels = 3
    params = rng.normal(size=(2, 4, 4, layer.params_size(channels))).astype(np.float32)
    x = rng.random((2, 4, 4, channels)).astype(np.float32)
    dist = layer(params)
    loc = params[..., :channels].astype(np.float64)
    if scale == "per_pixel":
        sigma = np.log1p(np.exp(params[..., channels:].astype(np.float64))) + 1e-3
    elif scale == "learned":
        sigma = np.full_like(loc, np.log(2.0) + 1e-3)  # softplus(0) + floor
    else:
        sigma = np.full_like(loc, 0.1)
    expected = -0.5 * np.sum(((x - loc) / sigma) ** 2 + 2 * np.log(sigma) + math.log(2 * math.pi), axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(dist.log_prob(x)), expected, rtol=1e-5)


@pytest.mark.parametrize("components", [1, 3])
def test_discretized_logistic_sums_to_one_over_256_values(rng, components):
    layer = D.DiscretizedLogisticMixture(num_components=components)
    params = rng.normal(size=(1, 1, 1, layer.params_size(1))).astype(np.float32)
    params = np.repeat(params, 256, axis=0)  # the same pixel distribution, 256 candidate values
    values = np.arange(256, dtype=np.float32).reshape(256, 1, 1, 1)
    probs = np.exp(np.asarray(layer(params).log_prob(values), np.float64))
    assert abs(probs.sum() - 1.0) < 1e-4
    assert np.all(probs > 0)


def test_discretized_logistic_matches_cdf_differences():
    layer = D.DiscretizedLogisticMixture(num_components=1)
    # loc 0 on the [-1, 1] scale -> 127.5 on the pixel scale; log_scale -> scale
    params = np.array([0.0, 0.0, math.log(0.05)], np.float32).reshape(1, 1, 1, 3)
    s = 127.5 * 0.05
    cdf = lambda v: 1.0 / (1.0 + math.exp(-(v - 127.5) / s))
    for value, expected in [(0, cdf(0.5)), (100, cdf(100.5) - cdf(99.5)), (255, 1 - cdf(254.5))]:
        got = float(np.exp(layer(params).log_prob(np.full((1, 1, 1, 1), value, np.float32))[0]))
        assert got == pytest.approx(expected, rel=1e-4)


def test_discretized_logistic_bits_per_dim_uniform_and_certain():
    """256 equal-weight, near-point-mass components at 0..255: uniform, 8 bits per sub-pixel;
    one sharp component at the true value: the logistic mass of [v - 0.5, v + 0.5]."""
    levels = np.arange(256, dtype=np.float32)
    uniform = D.DiscretizedLogisticMixture(num_components=256)
    logits, locs, log_scales = np.zeros(256), levels / 127.5 - 1.0, np.full(256, -7.0)
    params = np.concatenate([logits, locs, log_scales]).astype(np.float32)
    params = np.tile(params, (1, 4, 4, 3))  # 3 channels, each with 3 * 256 parameters
    x = np.random.default_rng(0).integers(0, 256, (1, 4, 4, 3)).astype(np.float32)
    nll = -float(uniform(params).log_prob(x)[0])
    assert D.bits_per_dim(nll, 4 * 4 * 3) == pytest.approx(8.0, abs=1e-3)

    sharp = D.DiscretizedLogisticMixture(num_components=1)
    x = np.clip(x, 1, 254)  # interior values: no folded tails
    params = np.stack([np.zeros_like(x), x / 127.5 - 1.0, np.full_like(x, -7.0)], axis=-1).reshape(1, 4, 4, 9)
    nll = -float(sharp(params).log_prob(x)[0])
    s = 127.5 * math.exp(-7.0)
    mass = 2.0 / (1.0 + math.exp(-0.5 / s)) - 1.0
    assert D.bits_per_dim(nll, 4 * 4 * 3) == pytest.approx(-math.log2(mass), rel=1e-4)


def test_bits_per_dim_conversion():
    assert D.bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)


def test_kl_falls_back_to_monte_carlo_when_no_closed_form():
    q = tfp.distributions.Independent(tfp.distributions.Logistic([0.0, 1.0], 1.0), 1)
    p = tfp.distributions.Independent(tfp.distributions.Normal([0.0, 0.0], 1.0), 1)
    z = tf.constant([0.3, -0.2])
    np.testing.assert_allclose(D.kl_divergence(q, p, z), q.log_prob(z) - p.log_prob(z), rtol=1e-6)


def test_likelihood_config_errors():
    with pytest.raises(ValueError, match="Unknown likelihood"):
        D.build_likelihood("poisson")
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        D.GaussianLikelihood(scale=-1.0)


# ----------------------------------------------------------------- IndependentNormal / IndependentBernoulli
# (loc shape, scale shape, event_ndims): scales broadcast as the layers give them (a learned
# per-channel scale, a fixed float, the prior's scalar 1)
NORMAL_CASES = [((5, 8), (5, 8), 1), ((2, 4, 4, 3), (3,), 3), ((4,), (), 1), ((3, 2, 5), (3, 2, 5), 2),
                ((3, 4), (3, 4), 0)]


def _normal_pair(rng, loc_shape, scale_shape, event_ndims, dtype=np.float32):
    loc = rng.normal(size=loc_shape).astype(dtype)
    scale = (0.1 + rng.random(scale_shape)).astype(dtype)
    return D.IndependentNormal(loc, scale, event_ndims), tfd.Independent(tfd.Normal(loc, scale), event_ndims)


def _assert_same_distribution(ours, reference, x, seed=(3, 7)):
    """Every statistic of `ours` equals that of the `tfd.Independent` it stands for."""
    assert ours.batch_shape == reference.batch_shape and ours.event_shape == reference.event_shape
    np.testing.assert_array_equal(ours.batch_shape_tensor(), reference.batch_shape_tensor())
    np.testing.assert_array_equal(ours.event_shape_tensor(), reference.event_shape_tensor())
    np.testing.assert_allclose(ours.log_prob(x), reference.log_prob(x), rtol=1e-6, atol=1e-6)
    # the same draws for the same seed, for one sample and for a sample shape
    np.testing.assert_array_equal(ours.sample(seed=seed), reference.sample(seed=seed))
    np.testing.assert_array_equal(ours.sample([2, 3], seed=seed), reference.sample([2, 3], seed=seed))
    for statistic in ("mean", "mode", "stddev", "variance", "entropy"):
        got, want = getattr(ours, statistic)(), getattr(reference, statistic)()
        assert got.shape == want.shape, statistic
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=statistic)


@pytest.mark.parametrize("loc_shape, scale_shape, event_ndims", NORMAL_CASES)
def test_independent_normal_is_tfp_independent_normal(rng, loc_shape, scale_shape, event_ndims):
    ours, reference = _normal_pair(rng, loc_shape, scale_shape, event_ndims)
    x = rng.normal(size=loc_shape).astype(np.float32)
    _assert_same_distribution(ours, reference, x)
    # what a compiled core returns: rebuilt by TensorFlow from its tensors, still the same
    rebuilt = tf.function(lambda loc, scale: D.IndependentNormal(loc, scale, event_ndims))(ours.loc, ours.scale)
    assert type(rebuilt) is D.IndependentNormal and rebuilt.event_ndims == event_ndims
    _assert_same_distribution(rebuilt, reference, x)
    if reference.batch_shape.rank:  # slicing the batch keeps each member's event
        np.testing.assert_allclose(ours[1:].log_prob(x[1:]), reference[1:].log_prob(x[1:]), rtol=1e-6)


def test_independent_normal_moments_in_a_graph_with_unknown_batch(rng):
    """Where a graph's static shapes cannot show that `loc` has the full shape, the moments
    are still broadcast: a `(1, 4)` loc with a `(3, 4)` scale has a `(3, 4)` mean."""
    spec = tf.TensorSpec([None, 4], tf.float32)
    moments = tf.function(lambda loc, scale: (D.IndependentNormal(loc, scale).mean(),
                                              D.IndependentNormal(loc, scale).stddev()),
                          input_signature=[spec, spec])
    loc, scale = rng.normal(size=(1, 4)).astype(np.float32), (0.1 + rng.random((3, 4))).astype(np.float32)
    for loc_, scale_ in [(loc, scale), (np.repeat(loc, 3, 0), scale[:1])]:
        reference = tfd.Normal(loc_, scale_)
        mean, stddev = moments(loc_, scale_)
        np.testing.assert_array_equal(mean, reference.mean())
        np.testing.assert_array_equal(stddev, reference.stddev())


def test_independent_normal_log_prob_and_entropy_match_float64_formulas(rng):
    loc, scale = rng.normal(size=(4, 6)), 0.2 + rng.random((4, 6))
    x = rng.normal(size=(4, 6))
    q = D.IndependentNormal(loc, scale, event_ndims=1)  # float64 throughout
    assert q.dtype == tf.float64
    log_prob = -0.5 * np.sum(((x - loc) / scale) ** 2 + 2 * np.log(scale) + math.log(2 * math.pi), axis=-1)
    entropy = np.sum(0.5 * np.log(2 * math.pi * math.e * scale**2), axis=-1)
    np.testing.assert_allclose(q.log_prob(x), log_prob, rtol=1e-12)
    np.testing.assert_allclose(q.entropy(), entropy, rtol=1e-12)
    draws = np.asarray(q.sample(20000, seed=(1, 2)))  # moments of the draws, 5 standard errors
    np.testing.assert_allclose(draws.mean(0), loc, atol=5 * scale.max() / math.sqrt(20000))
    np.testing.assert_allclose(draws.std(0), scale, rtol=0.05)


def test_independent_normal_kl_matches_float64_formula(rng):
    loc_q, scale_q = rng.normal(size=(5, 7)), 0.1 + rng.random((5, 7))
    loc_p, scale_p = rng.normal(size=(7,)), 0.5 + rng.random((7,))
    expected = np.sum(np.log(scale_p / scale_q) + (scale_q**2 + (loc_q - loc_p) ** 2) / (2 * scale_p**2) - 0.5, axis=-1)
    q, p = D.IndependentNormal(loc_q, scale_q, 1), D.IndependentNormal(loc_p, scale_p, 1)
    np.testing.assert_allclose(tfd.kl_divergence(q, p), expected, rtol=1e-12)
    # against (and from) a tfd.Independent, the same number
    p_tfp = tfd.Independent(tfd.Normal(loc_p, scale_p), 1)
    q_tfp = tfd.Independent(tfd.Normal(loc_q, scale_q), 1)
    np.testing.assert_allclose(tfd.kl_divergence(q, p_tfp), expected, rtol=1e-12)
    np.testing.assert_allclose(tfd.kl_divergence(q_tfp, p), expected, rtol=1e-12)
    np.testing.assert_allclose(q.kl_divergence(p), expected, rtol=1e-12)
    # no closed form against a logistic: vaezoo's kl_divergence falls back to Monte Carlo
    logistic = tfd.Independent(tfd.Logistic(loc_p, scale_p), 1)
    with pytest.raises(NotImplementedError):
        tfd.kl_divergence(q, logistic)
    z = q.sample(seed=(4, 5))
    np.testing.assert_allclose(D.kl_divergence(q, logistic, z), q.log_prob(z) - logistic.log_prob(z), rtol=1e-12)


def test_independent_bernoulli_is_tfp_independent_bernoulli(rng):
    logits = (3 * rng.normal(size=(3, 4, 4, 2))).astype(np.float32)
    ours = D.IndependentBernoulli(logits, event_ndims=3)
    reference = tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 3)
    x = (rng.random((3, 4, 4, 2)) > 0.5).astype(np.float32)
    _assert_same_distribution(ours, reference, x)
    assert ours.sample(seed=(1, 1)).dtype == tf.float32
    rebuilt = tf.function(lambda logits: D.IndependentBernoulli(logits, 3))(ours.logits)
    _assert_same_distribution(rebuilt, reference, x)
    np.testing.assert_allclose(ours[1:].log_prob(x[1:]), reference[1:].log_prob(x[1:]), rtol=1e-6)


def test_independent_bernoulli_kl_matches_float64_formula(rng):
    logits_a, logits_b = 2 * rng.normal(size=(4, 9)), 2 * rng.normal(size=(4, 9))
    a, b = 1 / (1 + np.exp(-logits_a)), 1 / (1 + np.exp(-logits_b))
    expected = np.sum(a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b)), axis=-1)
    ours_a = D.IndependentBernoulli(logits_a, 1, dtype=tf.float64)
    ours_b = D.IndependentBernoulli(logits_b, 1, dtype=tf.float64)
    np.testing.assert_allclose(tfd.kl_divergence(ours_a, ours_b), expected, rtol=1e-10)
    reference_b = tfd.Independent(tfd.Bernoulli(logits=tf.constant(logits_b), dtype=tf.float64), 1)
    np.testing.assert_allclose(tfd.kl_divergence(ours_a, reference_b), expected, rtol=1e-10)
    np.testing.assert_allclose(tfd.kl_divergence(reference_b, ours_a),
                               tfd.kl_divergence(ours_b, ours_a), rtol=1e-10)


def test_factorized_distributions_refuse_bad_shapes():
    with pytest.raises(ValueError, match="event_ndims=3 is more than the parameters' rank"):
        D.IndependentNormal(tf.zeros([4, 2]), 1.0, event_ndims=3)
    with pytest.raises(ValueError, match="event_ndims must be an integer >= 0"):
        D.IndependentBernoulli(tf.zeros([4, 2]), event_ndims=-1)
    with pytest.raises(ValueError, match="Event shapes do not match"):
        tfd.kl_divergence(D.IndependentNormal(tf.zeros([4, 2]), 1.0, 1), D.IndependentNormal(tf.zeros([3]), 1.0, 1))
    with pytest.raises(ValueError, match="event_ndims 1 and 2"):
        tfd.kl_divergence(D.IndependentNormal(tf.zeros([4, 2]), 1.0, 1), D.IndependentNormal(tf.zeros([4, 2]), 1.0, 2))
    with pytest.raises(tf.errors.InvalidArgumentError):  # TFP's own parameter check, on request
        D.IndependentNormal(tf.zeros([2]), -1.0, validate_args=True)


def test_layers_return_the_factorized_distributions(rng):
    params = rng.normal(size=(2, 8)).astype(np.float32)
    assert isinstance(D.DiagonalGaussian()(params), D.IndependentNormal)
    prior = D.StandardNormalPrior((4,))()
    assert isinstance(prior, D.IndependentNormal) and prior.batch_shape == () and prior.event_shape == (4,)
    image_params = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    assert isinstance(D.BernoulliLikelihood()(image_params), D.IndependentBernoulli)
    likelihood = D.GaussianLikelihood(scale="learned")(image_params)
    assert isinstance(likelihood, D.IndependentNormal)
    assert likelihood.batch_shape == (2,) and likelihood.event_shape == (4, 4, 1)


def test_independent_deterministic_is_tfp_independent_deterministic(rng):
    """The VQ-VAE's posterior: a point mass whose last three axes are one event."""
    loc = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    ours = D.IndependentDeterministic(loc, event_ndims=3)
    reference = tfd.Independent(tfd.Deterministic(loc), 3)
    off = loc.copy()
    off[1, 0, 1, 2] += 1.0  # image 1 misses the point in one element
    for candidate in (ours, tf.function(lambda loc: D.IndependentDeterministic(loc, 3))(loc)):
        assert type(candidate) is D.IndependentDeterministic
        assert candidate.batch_shape == reference.batch_shape and candidate.event_shape == reference.event_shape
        for x in (loc, off):
            np.testing.assert_array_equal(candidate.log_prob(x), reference.log_prob(x))
        np.testing.assert_array_equal(candidate.prob(off), [1.0, 0.0, 1.0])
        np.testing.assert_array_equal(candidate.sample(2, seed=(1, 2)), np.stack([loc, loc]))
        for statistic in ("mean", "mode", "stddev", "variance"):
            np.testing.assert_array_equal(getattr(candidate, statistic)(), getattr(reference, statistic)(),
                                          err_msg=statistic)
