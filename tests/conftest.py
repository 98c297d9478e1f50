"""Test setup: quiet TensorFlow, two logical CPU devices (for distribution tests), fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

# Two logical CPUs so MirroredStrategy tests have two replicas; must happen before TF runs.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised by an earlier import
    pass

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def binary_images(rng):
    """32 tiny binary 28x28x1 images: a bright square at a random place."""
    x = np.zeros((32, 28, 28, 1), np.float32)
    for i, (r, c) in enumerate(rng.integers(0, 20, size=(32, 2))):
        x[i, r : r + 8, c : c + 8] = 1.0
    return x


@pytest.fixture
def shared_data_dir():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Several MirroredStrategies with collective all-reduce in one process collide on their
    collective keys (tensorflow/tensorflow#62790), so tests share this one, which reduces
    through one device.
    """
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
