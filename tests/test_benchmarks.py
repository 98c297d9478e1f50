"""The side-by-side throughput benchmark compares like with like.

Its peers claim the same architecture as vaezoo's models: the parameter counts must agree
exactly (a missing layer, a different kernel size or width changes them), and every
TensorFlow peer must run a real training step.
"""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import peer_throughput  # noqa: E402


def _vaezoo_trainable_params(model_name):
    from vaezoo.models import model_from_config

    model = model_from_config(peer_throughput._vaezoo_spec(model_name))
    return sum(int(math.prod(w.shape)) for w in model.encoder.trainable_weights + model.decoder.trainable_weights)


@pytest.mark.parametrize("model_name", peer_throughput.MODELS)
def test_keras_peers_use_vaezoos_layers(model_name):
    encoder, decoder = peer_throughput._keras_networks(model_name)
    keras_params = encoder.count_params() + decoder.count_params()
    assert keras_params == _vaezoo_trainable_params(model_name)


@pytest.mark.parametrize("model_name", peer_throughput.MODELS)
def test_pytorch_peer_has_the_same_parameter_count(model_name):
    pytest.importorskip("torch")
    encoder, decoder = peer_throughput._torch_networks(model_name)
    torch_params = sum(p.numel() for p in [*encoder.parameters(), *decoder.parameters()])
    assert torch_params == _vaezoo_trainable_params(model_name)


@pytest.mark.parametrize("peer", ["vaezoo", "keras-fit"])
def test_tensorflow_peers_train(peer):
    images_per_s = peer_throughput.run_one("vae-conv-28", peer, False, batch_size=4, steps=2, warmup=1)
    assert math.isfinite(images_per_s) and images_per_s > 0
