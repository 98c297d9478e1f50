"""The Trainer's loop under MirroredStrategy (two logical CPUs) against one device, and `fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import check_mirrored_step_matches_single_device
from vaezoo.data import make_dataset
from vaezoo.models import model_from_config
from vaezoo.training import Trainer


def _config(tmp_path, model):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=(rng.random((32, 16, 16, 1)) > 0.6).astype(np.float32))
    return {"model": model, "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
            "train": {"batch_size": 8, "learning_rate": 1e-2, "steps": 1, "optimizer": "sgd"}}


def test_trainer_step_on_two_replicas_equals_one_device(tmp_path, mirrored_strategy):
    """One Trainer step on a global batch of 8 over 2 replicas = the same step on one device.

    Each replica draws its posterior noise from the same seed (the model's SeedGenerator is
    mirrored), so the one-device reference evaluates each half-batch with that seed and
    averages the per-example losses over the GLOBAL batch, then takes one SGD step (plain SGD,
    so a loss averaged per replica instead, off by the replica count, would show).
    """
    model_spec = {"class": "VAE", "config": {"input_shape": [16, 16, 1], "latent_dim": 3, "seed": 0,
                                             "encoder": {"type": "conv", "filters": [4, 8], "hidden": 16}}}
    config = _config(tmp_path, model_spec)
    trainer = Trainer(config, str(tmp_path / "run"), strategy=mirrored_strategy, verbose=False)
    trainer._build()
    initial = [w.numpy() for w in trainer.model.weights]
    seed_state = trainer.model.seed_generator.state.numpy()
    step = trainer._make_train_step()
    step(iter(trainer._dataset(config["data"], shuffle=True, repeat=True)))
    after = [w.numpy() for w in trainer.model.trainable_weights]

    batch = next(iter(make_dataset(config["data"], 8, seed=0, shuffle=True)))
    reference = model_from_config(model_spec)
    reference.build_from_images()
    for w, value in zip(reference.weights, initial):
        w.assign(value)
    optimizer = keras.optimizers.SGD(1e-2)
    optimizer.build(reference.trainable_variables)
    with tf.GradientTape() as tape:
        total = 0.0
        for half in (batch[:4], batch[4:]):
            reference.seed_generator.state.assign(seed_state)
            total += tf.reduce_sum(reference._loss_terms(half, training=True, step=0)["loss"]) / 8.0
    optimizer.apply(tape.gradient(total, reference.trainable_variables), reference.trainable_variables)
    assert len(after) == len(reference.trainable_weights)
    for mirrored, w in zip(after, reference.trainable_weights):
        np.testing.assert_allclose(mirrored, w.numpy(), rtol=1e-5, atol=1e-6, err_msg=w.path)
    # the step really moved the weights (so the comparison is not between two untouched copies)
    assert any(not np.allclose(a, b) for a, b in zip(initial, [w.numpy() for w in reference.weights]))


FAMILIES = {
    "VAE": {"latent_dim": 2, "encoder": {"type": "mlp", "hidden": [16]}},
    "BetaVAE": {"latent_dim": 2, "beta": 2.0, "encoder": {"type": "mlp", "hidden": [16]}},
    "CVAE": {"latent_dim": 2, "num_classes": 3, "encoder": {"type": "mlp", "hidden": [16]}},
    "VQVAE": {"num_embeddings": 8, "embedding_dim": 4, "hidden_channels": 8, "residual_channels": 4,
              "num_residual_blocks": 1, "prior": None},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fit_under_mirrored_strategy_for_every_family(family, mirrored_strategy):
    """One `fit` step on two replicas equals the same step on one device (VQVAE: no noise)."""
    rng = np.random.default_rng(1)
    x = (rng.random((16, 16, 16, 1)) > 0.6).astype(np.float32)
    y = rng.integers(0, 3, 16)
    make = lambda: model_from_config(  # noqa: E731
        {"class": family, "config": {"input_shape": [16, 16, 1], "seed": 0, **FAMILIES[family]}})
    check_mirrored_step_matches_single_device(make, (x, y), mirrored_strategy, draws_noise=family != "VQVAE")
