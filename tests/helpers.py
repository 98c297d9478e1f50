"""The shared model test: every family's test file calls `check_model_contract`.

It checks what the model contract promises, with assertions that fail if the model is wrong:
output shapes, the config round trip, identical outputs after save/reload (.keras and
.weights.h5), that `fit` lowers the loss on tiny data, and that mean ELBO <= mean IWAE.
"""

import os

import keras
import numpy as np
import tensorflow as tf


def _kwargs(condition):
    return {} if condition is None else {"condition": condition}


def check_shapes(model, images, condition=None):
    n = len(images)
    kw = _kwargs(condition)
    assert tuple(model.reconstruct(images, **kw).shape) == images.shape
    assert tuple(model.elbo(images, **kw).shape) == (n,)
    assert tuple(model.iwae(images, k=3, **kw).shape) == (n,)
    samples = model.sample(n, seed=1, **kw)
    assert tuple(samples.shape) == images.shape
    samples = np.asarray(samples)
    assert np.all(np.isfinite(samples)) and samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_allclose(model.sample(n, seed=1, **kw), samples, rtol=0, atol=1e-6)
    terms = model.loss_terms(images, **kw)
    for name in model.loss_term_names:
        assert tuple(terms[name].shape) == (n,), name
        assert np.all(np.isfinite(terms[name])), name


def check_config_round_trip(model):
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    # JSON-safe: the config survives a JSON round trip unchanged.
    import json

    assert json.loads(json.dumps(config)) == config


def check_save_reload(model, images, tmp_path, condition=None):
    kw = _kwargs(condition)
    expected = np.asarray(model.reconstruct(images, **kw))
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(images, **kw)), expected)

    weights = os.path.join(str(tmp_path), "model.weights.h5")
    model.save_weights(weights)
    fresh = type(model).from_config(model.get_config())
    fresh.load_weights(weights)
    np.testing.assert_array_equal(np.asarray(fresh.reconstruct(images, **kw)), expected)


def fit_lowers_loss(model, images, condition=None, epochs=8, batch_size=16, learning_rate=3e-3):
    """Train with `fit`; return (first-epoch loss, last-epoch loss) and assert it went down."""
    data = images if condition is None else (images, condition)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    history = model.fit(dataset, epochs=epochs, verbose=0).history["loss"]
    assert history[-1] < history[0], history
    return history[0], history[-1]


def check_elbo_below_iwae(model, images, condition=None, k=50):
    kw = _kwargs(condition)
    elbo = float(np.mean(model.elbo(images, **kw)))
    iwae = float(np.mean(model.iwae(images, k=k, **kw)))
    assert elbo <= iwae + 1e-3, (elbo, iwae)
    return elbo, iwae


def check_model_contract(make_model, images, tmp_path, condition=None, fit_epochs=8):
    """Run every shared check on a freshly made model (`make_model()` -> untrained model)."""
    model = make_model()
    check_shapes(model, images, condition)
    check_config_round_trip(model)
    fit_lowers_loss(model, images, condition, epochs=fit_epochs)
    check_elbo_below_iwae(model, images, condition)
    check_save_reload(model, images[:4], tmp_path, None if condition is None else condition[:4])
    return model


PALETTE = np.array([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9], [0.95, 0.9, 0.2]], np.float32)


def squares(n, size=16, seed=0):
    """Dark RGB images with two squares of palette colours at random places (VQ test data)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, size, size, 3), 0.1, np.float32)
    for i in range(n):
        for _ in range(2):
            r, c = rng.integers(0, size - 5, 2)
            s = rng.integers(3, 6)
            x[i, r : r + s, c : c + s] = PALETTE[rng.integers(0, len(PALETTE))]
    return x
