"""HierarchicalVAE: the shared contract, per-layer KLs, the ELBO against Monte Carlo, temperature."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import check_model_contract
from vaezoo.distributions import bits_per_dim, kl_divergence, tfd

TINY = {"type": "resnet", "filters": [8, 16], "blocks": 1, "hidden": 32}


def _tiny(num_latent_layers=2, **kwargs):
    kwargs = {"input_shape": (28, 28, 1), "latent_dim": 4, "hidden_dim": 32, "encoder": TINY, "seed": 0, **kwargs}
    return vaezoo.HierarchicalVAE(num_latent_layers=num_latent_layers, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _tiny(2, seed=1),
        lambda: _tiny(3, encoder={"type": "conv", "filters": [8, 16], "hidden": 32}, seed=2),
    ],
    ids=["L2-resnet", "L3-conv"],
)
def test_contract(make, binary_images, tmp_path):
    model = check_model_contract(make, binary_images, tmp_path)
    assert model.encode(binary_images[:3]).event_shape == (4,)
    assert tuple(model.kl_per_layer(binary_images[:3]).shape) == (3, model.num_latent_layers)


def test_registered():
    assert vaezoo.MODEL_CLASSES["HierarchicalVAE"] is vaezoo.HierarchicalVAE
    spec = {"class": "HierarchicalVAE", "config": _tiny(3).get_config()}
    assert vaezoo.model_from_config(spec).num_latent_layers == 3


def _same_draw(model, first, second):
    """Call `first()` and `second()` from the same seed-generator state (same posterior draw)."""
    model.build_from_images()
    state = model.seed_generator.state.numpy()
    a = first()
    model.seed_generator.state.assign(state)
    return a, second()


def test_kl_per_layer_sums_to_kl(binary_images):
    model = _tiny(3)
    x = binary_images[:6]
    terms, kls = _same_draw(model, lambda: model.loss_terms(x), lambda: model.kl_per_layer(x))
    kls = np.asarray(kls)
    assert kls.shape == (6, 3) and np.all(kls >= 0)
    np.testing.assert_allclose(kls.sum(axis=1), terms["kl"], rtol=1e-5)
    np.testing.assert_array_equal(model.kl_per_layer(x, seed=4), model.kl_per_layer(x, seed=4))


def test_warmup_and_free_bits_per_layer(binary_images):
    model = _tiny(3, kl_warmup_steps=10, free_bits=0.05)
    x = tf.constant(binary_images[:6])
    for step, weight in [(5, 0.5), (50, 1.0)]:
        terms, kls = _same_draw(
            model,
            lambda: model._loss_terms(x, training=True, step=tf.constant(step)),
            lambda: model.kl_per_layer(x),
        )
        kls = np.asarray(kls)
        assert np.any(kls < 0.05) and np.any(kls > 0.05)  # the floor binds for some layers only
        expected = terms["nll"] + weight * np.maximum(kls, 0.05).sum(axis=1)
        np.testing.assert_allclose(terms["loss"], expected, rtol=1e-5)


def test_elbo_matches_independent_recomputation(binary_images):
    """The model's ELBO (one sample, analytic per-layer KLs) and IWAE log-weights, by hand.

    1. For one draw, nll and kl equal a recomputation with TFP from the per-layer
       posteriors, priors and likelihood of the same draw; so do the IWAE log-weights
       log p(x|z) + sum_l log p(z_l|z_>l) - sum_l log q(z_l|x,z_>l).
    2. Per layer, the analytic KL given the layers above equals a Monte Carlo average of
       log q - log p.
    3. Over many draws, the ELBO's mean equals the log-weights' mean; paired on the same
       draws, so the likelihood's noise cancels and the tolerance is below the KL.
    """
    model = _tiny(3)
    model.build_from_images()
    for net in model.posterior_nets:  # posteriors visibly away from the priors
        net.layers[-1].kernel.assign(3.0 * net.layers[-1].kernel)
    x = tf.constant(binary_images[:4])

    def by_hand(k=None):
        features = model._bottom_up(x)
        images = x
        if k is not None:
            features = [tf.tile(f, [k, 1]) for f in features]
            images = tf.tile(x, [k, 1, 1, 1])
        out = model._top_down(features, seed=model._next_seed())
        log_px = model._likelihood(out["state"]).log_prob(images)
        layers = list(zip(out["posterior"], out["prior"], out["z"]))
        kl = tf.add_n([tfd.kl_divergence(q, p) for q, p, _ in layers])
        log_ratio = tf.add_n([p.log_prob(z) - q.log_prob(z) for q, p, z in layers])
        return {"nll": -log_px, "kl": kl, "log_w": log_px + log_ratio, "out": out}

    terms, hand = _same_draw(model, lambda: model.loss_terms(x), by_hand)
    np.testing.assert_allclose(terms["nll"], hand["nll"], rtol=1e-5)
    np.testing.assert_allclose(terms["kl"], hand["kl"], rtol=1e-5)
    log_w, hand_k = _same_draw(model, lambda: model._log_importance_weights(x, None, 3), lambda: by_hand(3))
    np.testing.assert_allclose(log_w, np.reshape(hand_k["log_w"], (3, 4)), rtol=1e-5)

    out = hand["out"]
    for q, p, z in zip(out["posterior"], out["prior"], out["z"]):
        draws = q.sample(4000, seed=[1, 2])
        log_ratio = np.asarray(q.log_prob(draws) - p.log_prob(draws), np.float64)
        analytic = np.asarray(kl_divergence(q, p, z))
        tolerance = 5 * log_ratio.std(axis=0) / np.sqrt(len(log_ratio)) + 1e-4
        assert np.all(np.abs(log_ratio.mean(axis=0) - analytic) < tolerance), (log_ratio.mean(0), analytic)

    k = 1000  # rows of the k-tiled batch are sample-major, as in the IWAE log-weights
    terms, log_w = _same_draw(
        model,
        lambda: model.loss_terms(np.tile(binary_images[:4], (k, 1, 1, 1))),
        lambda: model._log_importance_weights(x, None, k),
    )
    elbo = -np.asarray(terms["nll"] + terms["kl"], np.float64).reshape(k, 4)
    diff = elbo - np.asarray(log_w, np.float64)  # = sum_l (log q - log p) - KL_l: zero mean
    se = diff.std(axis=0) / np.sqrt(k)
    assert np.all(np.abs(diff.mean(axis=0)) < 5 * se + 1e-4), (diff.mean(0), se)
    pooled = diff.std() / np.sqrt(diff.size)
    assert abs(diff.mean()) < 5 * pooled, (diff.mean(), pooled)
    assert float(np.mean(terms["kl"])) > 5 * pooled  # leaving out the KL would fail


def test_temperature_scales_prior_stddev_at_every_layer():
    model = _tiny(3)
    seed = tf.constant([3, 0])
    cold = model._top_down(n=500, seed=seed, temperature=0.5)
    warm = model._top_down(n=500, seed=seed, temperature=1.0)
    for layer in range(3):
        standardized = [
            (o["z"][layer] - o["prior"][layer].mean()) / o["prior"][layer].stddev() for o in (cold, warm)
        ]
        np.testing.assert_allclose(standardized[0], 0.5 * standardized[1], rtol=1e-4, atol=1e-4)
    # sample statistics: at the top the prior is N(0, t^2)
    np.testing.assert_allclose(np.std(cold["z"][-1]), 0.5, rtol=0.1)
    np.testing.assert_allclose(np.std(warm["z"][-1]), 1.0, rtol=0.1)
    # lower temperature -> samples closer to the prior-mean image
    mean_image = np.asarray(model.likelihood.image(model._likelihood(model._top_down(n=1, use_mean=True)["state"])))
    spread = [np.mean((np.asarray(model.sample(64, seed=5, temperature=t)) - mean_image) ** 2) for t in (0.1, 1.0)]
    assert spread[0] < spread[1], spread


def test_encode_decode_reconstruct_are_documented(binary_images):
    model = _tiny(2)
    x = binary_images[:3]
    posterior = model.encode(x)
    assert posterior.batch_shape == (3,) and posterior.event_shape == (4,)
    np.testing.assert_array_equal(model.reconstruct(x), model.reconstruct(x))  # posterior means
    z = posterior.mean()
    np.testing.assert_array_equal(model.decode(z).mean(), model.decode(z).mean())  # prior means below
    # reconstruct = top-down with the posterior mean at every layer
    out = model._top_down(model._bottom_up(tf.constant(x)), use_mean=True)
    np.testing.assert_allclose(out["z"][-1], z, rtol=1e-6)
    np.testing.assert_allclose(model.reconstruct(x), model.likelihood.image(model._likelihood(out["state"])), rtol=1e-6)


def test_discretized_logistic_rgb():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 16)
    base = ramp[None, :, None, None] * rng.uniform(0.2, 1.0, size=(32, 1, 1, 3))
    images = np.clip(base + rng.normal(0, 8, size=(32, 16, 16, 3)), 0, 255).astype(np.uint8)
    model = vaezoo.HierarchicalVAE(
        input_shape=(16, 16, 3), num_latent_layers=2, latent_dim=4, hidden_dim=32,
        encoder={"type": "conv", "filters": [8, 16], "hidden": 32},
        likelihood={"type": "discretized_logistic", "num_components": 2}, seed=0,
    )
    def bpd():
        nll = np.asarray(model.loss_terms(images)["nll"])
        assert np.all(np.isfinite(nll))
        return float(np.mean(bits_per_dim(nll, model.num_dims)))

    before = bpd()
    assert 6.0 < before < 12.0, before  # untrained: about log2(256) = 8 bits per sub-pixel
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(tf.data.Dataset.from_tensor_slices(images).batch(8), epochs=10, verbose=0)
    after = bpd()
    assert 1.0 < after < 8.0, (before, after)  # learned: below a uniform 8 bits per sub-pixel
    assert np.all(np.isfinite(model.iwae(images[:4], k=4)))
    samples = np.asarray(model.sample(4, seed=0, temperature=0.8))
    assert samples.shape == (4, 16, 16, 3) and samples.min() >= 0.0 and samples.max() <= 1.0


def test_bad_arguments_are_named(binary_images):
    with pytest.raises(ValueError, match="num_latent_layers"):
        _tiny(1)
    with pytest.raises(TypeError, match="num_latent_layers"):
        _tiny(2.5)
    with pytest.raises(ValueError, match="free_bits"):
        _tiny(2, free_bits=-1.0)
    model = _tiny(2)
    for temperature in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            model.sample(2, temperature=temperature)
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\)"):
        model.elbo(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\)"):
        model.kl_per_layer(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.reconstruct(binary_images[:2] * 255.0)


def test_fit_under_mirrored_strategy(binary_images, mirrored_strategy):
    """Every weight is made in the constructor, so a model made in a strategy scope just fits."""
    with mirrored_strategy.scope():
        model = _tiny(3, likelihood="gaussian")
        model.compile(optimizer="adam")
    history = model.fit(tf.data.Dataset.from_tensor_slices(binary_images).batch(16), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in model.weights)
