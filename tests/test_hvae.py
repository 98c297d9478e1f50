"""HierarchicalVAE: the shared contract, per-layer KLs, the ELBO against Monte Carlo, temperature."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import check_mirrored_step_matches_single_device, check_model_contract, sgd_fit_step
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


def _dense(layer, x):
    return x @ np.asarray(layer.kernel, np.float64) + np.asarray(layer.bias, np.float64)


def _residual_cell(cell, x):
    return x + _dense(cell.outer, np.maximum(_dense(cell.inner, np.maximum(x, 0.0)), 0.0))


def _two_layer(net, x):
    hidden, last = net.layers
    return _dense(last, np.maximum(_dense(hidden, x), 0.0))


def _top_down_means_float64(model, features=None, top=None):
    """The documented top-down pass in float64 NumPy from the layers' weights, every z at its
    mean: posterior means (given `features`) or, below the given `top` latent, prior means."""
    L, d = model.num_latent_layers, model.latent_dim
    state, params = None, {}
    for layer in reversed(range(L)):
        prior_loc = 0.0 if layer == L - 1 else _two_layer(model.prior_nets[layer], state)[:, :d]
        if features is None:
            z = top if layer == L - 1 else prior_loc
        elif layer == L - 1:
            params[layer] = _two_layer(model.posterior_nets[layer], features[layer])
            z = params[layer][:, :d]
        else:  # the residual posterior: prior parameters + a correction
            z = prior_loc + _two_layer(model.posterior_nets[layer], np.concatenate([state, features[layer]], -1))[:, :d]
        embedded = _dense(model.latent_embeddings[layer], z)
        state = _residual_cell(model.top_down_cells[layer], embedded if state is None else state + embedded)
    return state, params


def test_encode_decode_reconstruct_follow_the_documented_passes(binary_images):
    """encode = q(z_top | x); reconstruct = posterior means at every layer; decode(z) = prior
    means below z. Checked against a float64 NumPy re-derivation from the layers' weights (the
    convolutional backbones are called as they are), and by changing only standard deviations."""
    model = _tiny(3)
    model.build_from_images()
    d, L = model.latent_dim, model.num_latent_layers
    rng = np.random.default_rng(1)
    for net in model.posterior_nets + model.prior_nets:  # undamped: means and scales away from 0 and 1
        kernel = net.layers[-1].kernel
        kernel.assign(rng.normal(0.0, 4.0 / np.sqrt(kernel.shape[0]), kernel.shape).astype(np.float32))
    x = binary_images[:3]

    h = np.asarray(model.encoder(tf.constant(x)), np.float64)
    features = []
    for cell in model.bottom_up_cells:
        h = _residual_cell(cell, h)
        features.append(h)
    state, params = _top_down_means_float64(model, features)

    posterior = model.encode(x)
    assert posterior.batch_shape == (3,) and posterior.event_shape == (4,)
    top = params[L - 1]
    np.testing.assert_allclose(posterior.mean(), top[:, :d], rtol=1e-4, atol=1e-5)
    scale = np.logaddexp(0.0, top[:, d:] + np.log(np.e - 1.0)) + model.posterior.min_scale
    np.testing.assert_allclose(posterior.stddev(), scale, rtol=1e-4, atol=1e-5)
    assert np.std(top[:, :d]) > 0.1 and np.std(scale) > 0.05, (top, scale)  # not the trivial N(0, 1)

    # The untrained decoder's means are near 0.5 (spread ~2e-3 over pixels); float32 against
    # float64 agrees to ~1e-7, so atol=1e-6 is far below what any wrong z would change.
    def bernoulli_means(state):
        logits = np.asarray(model.decoder(tf.constant(state, tf.float32)), np.float64)
        return 1.0 / (1.0 + np.exp(-logits))

    reconstruction = np.asarray(model.reconstruct(x))
    np.testing.assert_allclose(reconstruction, bernoulli_means(state), rtol=0, atol=1e-6)
    # the lower posteriors matter: prior means below the top posterior mean decode differently
    assert np.abs(reconstruction - np.asarray(model.decode(posterior.mean()).mean())).max() > 1e-3

    z = rng.normal(size=(3, d)).astype(np.float32)
    decoded = np.asarray(model.decode(z).mean())
    np.testing.assert_allclose(decoded, bernoulli_means(_top_down_means_float64(model, top=z)[0]), rtol=0, atol=1e-6)
    assert np.abs(decoded - np.asarray(model.decode(-z).mean())).max() > 1e-3  # decode depends on z

    # Only means enter: changing every posterior and prior standard deviation changes neither
    # reconstruct nor decode, though it changes the posterior that `encode` returns.
    for net in model.posterior_nets + model.prior_nets:
        last = net.layers[-1]
        last.bias.assign(tf.concat([last.bias[:d], last.bias[d:] + 2.0], 0))
    assert np.abs(np.asarray(model.encode(x).stddev()) - scale).min() > 0.1
    np.testing.assert_allclose(model.reconstruct(x), reconstruction, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.decode(z).mean(), decoded, rtol=1e-6, atol=1e-7)


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
    # 40 Adam steps took 8.78 to 7.53 and 7.58 bits/dim in two runs here (threaded float sums
    # differ from run to run); demanding half of that decrease, 0.6 bits/dim, leaves slack and
    # fails if the steps do not train (e.g. skipped optimizer updates: no decrease).
    assert before - after > 0.6, (before, after)
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
    """Every weight is made in the constructor, so a model made in a strategy scope is mirrored;
    one `fit` step on two replicas equals the same step on one device."""
    make = lambda: _tiny(3, likelihood="gaussian", encoder={"type": "mlp", "hidden": [32]})  # noqa: E731
    with mirrored_strategy.scope():
        model = make()
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in model.weights)
    initial, mirrored, _, _ = check_mirrored_step_matches_single_device(make, binary_images[:16], mirrored_strategy)
    # sensitive to the noise: drawn for the whole batch at once, one device takes another step
    whole_batch, _ = sgd_fit_step(make, binary_images[:16], initial)
    assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(whole_batch, mirrored))
