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
def test_pytorch_peer_has_the_same_parameter_count_and_shapes(model_name):
    """Parameter counts equal (a missing layer, kernel size or width changes them) and every
    network's output shape equal (a stride or padding that keeps the count changes it)."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed; `pip install torch==2.13.0` (the CPU build) runs this parity test")
    encoder, decoder = peer_throughput._torch_networks(model_name)
    torch_params = sum(p.numel() for p in [*encoder.parameters(), *decoder.parameters()])
    assert torch_params == _vaezoo_trainable_params(model_name)

    def channels_last(t):
        return tuple(t.permute(0, 2, 3, 1).shape if t.dim() == 4 else t.shape)

    keras_encoder, _ = peer_throughput._keras_networks(model_name)
    x = peer_throughput._images(model_name, 2)
    with torch.no_grad():
        z = encoder(torch.from_numpy(x).float().permute(0, 3, 1, 2))
        assert channels_last(z) == tuple(keras_encoder(x.astype("float32")).shape)
        latent = z[:, : peer_throughput.VAE["latent_dim"]] if z.dim() == 2 else z  # VAE: the mean half
        assert channels_last(decoder(latent)) == x.shape


@pytest.mark.parametrize("peer", ["vaezoo", "keras-fit"])
def test_tensorflow_peers_train(peer):
    images_per_s = peer_throughput.run_one("vae-conv-28", peer, False, batch_size=4, steps=2, warmup=1)
    assert math.isfinite(images_per_s) and images_per_s > 0
