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
