"""CVAE: the shared contract in label and vector modes, condition checks, and a measured test
that class-conditional samples look like their class."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import check_compiled_cores, check_model_contract

MLP = {"type": "mlp", "hidden": [64]}
CONV = {"type": "conv", "filters": [8, 16], "hidden": 32}


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda: vaezoo.CVAE(num_classes=4, latent_dim=4, encoder=CONV, seed=1), "labels"),
        (lambda: vaezoo.CVAE(num_classes=4, latent_dim=4, encoder=MLP, prior="learned", seed=2), "labels"),
        (lambda: vaezoo.CVAE(condition_dim=3, latent_dim=4, encoder=MLP, prior="learned", seed=3), "vector"),
    ],
    ids=["labels-conv", "labels-mlp-learned-prior", "vector-mlp-learned-prior"],
)
def test_contract(make, mode, binary_images, rng, tmp_path):
    n = len(binary_images)
    if mode == "labels":  # integer labels: fit one-hot encodes them inside the graph
        condition = rng.integers(0, 4, size=n)
    else:
        condition = rng.normal(size=(n, 3)).astype("float32")
    check_model_contract(make, binary_images, tmp_path, condition=condition)


def test_one_hot_and_integer_labels_agree(binary_images):
    model = vaezoo.CVAE(num_classes=4, latent_dim=3, encoder=MLP, prior="learned", seed=0)
    x, labels = binary_images[:4], np.array([0, 3, 1, 2])
    one_hot = np.eye(4, dtype="float32")[labels]
    np.testing.assert_array_equal(model.reconstruct(x, labels), model.reconstruct(x, one_hot))
    np.testing.assert_array_equal(model.reconstruct(x, labels[:, None]), model.reconstruct(x, one_hot))
    np.testing.assert_array_equal(model.sample(4, seed=5, condition=labels),
                                  model.sample(4, seed=5, condition=one_hot))


@pytest.mark.parametrize("mode", ["labels", "label-column", "one-hot", "vector"])
def test_compiled_cores_match_the_eager_methods(binary_images, rng, mode):
    """Every public method with each accepted form of condition (checked and converted in
    numpy, then passed to the compiled core) gives the eager numbers and distributions over
    several batch sizes, tracing each core at most twice."""
    labels = rng.integers(0, 4, size=len(binary_images))
    condition = {"labels": labels, "label-column": labels[:, None], "one-hot": np.eye(4, dtype="float32")[labels],
                 "vector": rng.normal(size=(len(binary_images), 3)).astype("float32")}[mode]
    size = {"condition_dim": 3} if mode == "vector" else {"num_classes": 4}

    def make():
        return vaezoo.CVAE(**size, latent_dim=3, encoder=MLP, prior="learned", seed=4)

    counts = check_compiled_cores(make, binary_images, condition=condition, batches=(1, 9, 4))
    assert {"elbo", "encode", "decode", "sample", "sample_per_seed"} <= set(counts), counts


def test_learned_prior_enters_kl_and_iwae(binary_images):
    """With p(z | c) moved away from N(0, I), KL and the importance weights use p(z | c)."""
    model = vaezoo.CVAE(num_classes=4, latent_dim=3, encoder=MLP, prior="learned", seed=4)
    model.build_from_images()
    last = model.prior_network.layers[-1]
    last.kernel.assign(np.random.default_rng(0).normal(size=last.kernel.shape).astype("float32"))
    x, c = tf.constant(binary_images[:4]), tf.one_hot([0, 1, 2, 3], 4)
    prior = model.prior_distribution(c)
    assert not np.allclose(prior.mean(), 0.0)  # the prior now depends on the class

    terms = model._loss_terms(x, c)
    posterior = model._encode(x, c)
    np.testing.assert_allclose(terms["kl"], posterior.kl_divergence(prior), rtol=1e-5)

    state = model.seed_generator.state.numpy()
    log_w = np.asarray(model._log_importance_weights(x, c, 5))
    model.seed_generator.state.assign(state)
    z = posterior.sample(5, seed=model._next_seed())
    log_px = -np.stack([np.asarray(model._nll(x, z[i], c)) for i in range(5)])
    reference = log_px + np.asarray(prior.log_prob(z)) - np.asarray(posterior.log_prob(z))
    np.testing.assert_allclose(log_w, reference, rtol=1e-4)


def test_bad_conditions_are_named(binary_images):
    labels_model = vaezoo.CVAE(num_classes=4, latent_dim=2, encoder=MLP, seed=0)
    vector_model = vaezoo.CVAE(condition_dim=3, latent_dim=2, encoder=MLP, seed=0)
    x = binary_images[:4]
    with pytest.raises(TypeError, match="needs a condition"):
        labels_model.elbo(x)
    with pytest.raises(TypeError, match="needs a condition"):
        vector_model.sample(2)
    with pytest.raises(ValueError, match=r"in \[0, 4\), got values in \[0, 4\]"):
        labels_model.elbo(x, condition=[0, 1, 2, 4])
    with pytest.raises(ValueError, match=r"in \[0, 4\), got values in \[-1, 2\]"):
        labels_model.sample(4, condition=[0, 1, 2, -1])
    with pytest.raises(ValueError, match=r"\(4, 4\); got float32 of shape \(4, 3\)"):
        labels_model.reconstruct(x, condition=np.eye(3, dtype="float32")[[0, 1, 2, 0]])
    with pytest.raises(TypeError, match="class labels must be integers"):
        labels_model.elbo(x, condition=np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(4, 3\); got float32 of shape \(4, 2\)"):
        vector_model.elbo(x, condition=np.zeros((4, 2), "float32"))
    with pytest.raises(ValueError, match=r"one row per image/sample \(4\).*got shape \(3,\)"):
        labels_model.iwae(x, k=2, condition=[0, 1, 2])
    with pytest.raises(ValueError, match=r"one row per image/sample \(2\).*got shape \(3, 3\)"):
        vector_model.sample(2, condition=np.zeros((3, 3), "float32"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        vector_model.elbo(x, condition=np.full((4, 3), np.nan, "float32"))
    with pytest.raises(TypeError, match="got dtype <U1"):
        labels_model.elbo(x, condition=np.array(["a", "b", "c", "d"]))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        vaezoo.CVAE()
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        vaezoo.CVAE(num_classes=10, condition_dim=3)
    with pytest.raises(vaezoo.ConfigError, match="prior must be one of"):
        vaezoo.CVAE(num_classes=10, prior="vamp")
    with pytest.raises(TypeError, match="num_classes"):
        vaezoo.CVAE(num_classes=2.5)


def test_model_from_config_builds_cvae():
    model = vaezoo.model_from_config({"class": "CVAE", "config": {"num_classes": 3, "latent_dim": 2, "encoder": MLP}})
    assert isinstance(model, vaezoo.CVAE) and model.condition_size == 3


def _class_templates(num_classes=4, seed=0):
    """Distinct fixed binary 28x28 patterns, one per class (about 30% of pixels on)."""
    rng = np.random.default_rng(seed)
    return (rng.random((num_classes, 28, 28, 1)) < 0.3).astype("float32")


def class_accuracy(prior, seed):
    """Train a CVAE initialised from `seed` for 2000 steps on images fully determined by the
    class; return the fraction of 100 class-conditional samples nearest their class's template."""
    templates = _class_templates()
    labels = np.repeat(np.arange(4), 64)
    images = templates[labels]
    model = vaezoo.CVAE(num_classes=4, latent_dim=2, encoder=MLP, prior=prior, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    data = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(256, seed=0).repeat().batch(32)
    model.fit(data, epochs=4, steps_per_epoch=500, verbose=0)

    wanted = np.repeat(np.arange(4), 25)
    samples = np.asarray(model.sample(len(wanted), seed=0, condition=wanted))
    mse = ((samples[:, None] - templates[None]) ** 2).mean(axis=(2, 3, 4))  # (samples, classes)
    return float(np.mean(mse.argmin(axis=1) == wanted))


@pytest.mark.parametrize("prior", ["standard", "learned"])
def test_samples_match_their_class(prior):
    """Images fully determined by the class: samples for class k look like template k.

    z can carry the class early in training; it takes ~2000 steps of KL pressure for the
    decoder to rely on c alone.
    """
    accuracy = class_accuracy(prior, seed=0)
    # Threshold from initialisation seeds 0-7 (2 CPU cores, this file's code), measured with
    #   cd tests && python -c "import test_cvae as t; print({p: [t.class_accuracy(p, s)
    #       for s in range(8)] for p in ('standard', 'learned')})"
    # standard: 0.99 0.98 1.0 0.99 0.99 0.99 0.98 0.99; learned: 1.0 (all 8). 0.9 is 0.08 below the
    # worst of them; a decoder that ignores c scores about 0.25.
    assert accuracy >= 0.9, accuracy
