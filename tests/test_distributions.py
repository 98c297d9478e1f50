"""Distribution layers against closed forms and float64 references."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vaezoo import distributions as D


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
