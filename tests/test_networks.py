"""Backbones build for the documented shapes and refuse sizes they cannot handle."""

import numpy as np
import pytest

from vaezoo import networks


@pytest.mark.parametrize("kind", ["mlp", "conv", "resnet"])
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (64, 64, 1), (48, 16, 3)])
def test_encoder_decoder_shapes(kind, shape):
    spec = {"type": kind}
    if kind != "mlp":
        spec["filters"] = [4, 8]
    enc = networks.build_encoder(spec, shape, output_size=10)
    dec = networks.build_decoder(spec, latent_size=5, output_shape=(*shape[:2], 2 * shape[2]))
    assert enc(np.zeros((2, *shape), np.float32)).shape == (2, 10)
    assert dec(np.zeros((2, 5), np.float32)).shape == (2, *shape[:2], 2 * shape[2])


def test_indivisible_size_is_refused_with_the_factor():
    with pytest.raises(ValueError, match="divisible by 8"):
        networks.build_encoder({"type": "conv", "filters": [4, 4, 4]}, (28, 28, 1), 4)


def test_unknown_spec_keys_are_named():
    with pytest.raises(ValueError, match="Unknown network type 'cnn'"):
        networks.resolve_spec("cnn")
    with pytest.raises(ValueError, match="'hiden'.*Did you mean 'hidden'"):
        networks.resolve_spec({"type": "mlp", "hiden": [3]})


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_activation_is_applied_to_every_conv_and_dense_layer(kind):
    """With the same weights, a leaky-ReLU network equals a float64 NumPy forward pass with
    slope 0.2 below zero, and differs from the ReLU network (whose negative units are 0)."""
    import keras

    spec = {"type": kind, "hidden": [8] if kind == "mlp" else 8, **({"filters": [4]} if kind == "conv" else {})}
    relu = networks.build_encoder(spec, (8, 8, 1), output_size=3)
    leaky = networks.build_encoder({**spec, "activation": "leaky_relu"}, (8, 8, 1), output_size=3)
    leaky.set_weights(relu.get_weights())
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
    h = x.astype(np.float64)
    for layer in leaky.layers:
        if isinstance(layer, keras.layers.Flatten):
            h = h.reshape(len(h), -1)
            continue
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        if isinstance(layer, keras.layers.Conv2D):  # 4x4, stride 2, "same" padding on 8x8: pad 1 before, 2 after
            padded = np.pad(h, ((0, 0), (1, 2), (1, 2), (0, 0)))
            h = np.stack([np.stack([np.tensordot(padded[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4], kernel, 3)
                                    for j in range(4)], 1) for i in range(4)], 1) + bias
        else:
            h = h @ kernel + bias
        if layer is not leaky.layers[-1]:  # the output layer is linear
            h = np.where(h > 0, h, 0.2 * h)
    np.testing.assert_allclose(np.asarray(leaky(x)), h, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(relu(x)) - h).max() > 1e-3


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="Unknown activation 'relux' in conv network spec"):
        networks.resolve_spec({"type": "conv", "activation": "relux"})
