"""The catalogue of bad inputs: each case calls the public API or the CLI with nonsense.

`tests/test_bad_inputs.py` checks every case raises the stated error with a message naming
what was expected; `scripts/bad_inputs_table.py` runs them and writes docs/bad_inputs.md.
A case is `(id, what is wrong, call, expected exception, regex the message must match)`;
`call` receives a scratch folder.
"""

import functools
import os

import numpy as np


def _vae():
    import vaezoo

    return vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [8]})


def _cvae():
    import vaezoo

    return vaezoo.CVAE(input_shape=(28, 28, 1), latent_dim=2, num_classes=10, encoder={"type": "mlp", "hidden": [8]})


@functools.lru_cache(maxsize=1)
def _vq():  # one instance: files it writes must be read by the same weights
    import vaezoo

    return vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                        residual_channels=4, num_residual_blocks=1, prior=None)


def _write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _folder_with_non_images(folder):
    os.makedirs(os.path.join(folder, "imgs"), exist_ok=True)
    _write(os.path.join(folder, "imgs"), "notes.txt", "hello")
    from vaezoo import data

    return data.load_image_folder(os.path.join(folder, "imgs"), (28, 28), 1)


def _truncated_weights(folder):
    model = _vae()
    path = os.path.join(folder, "w.weights.h5")
    model.save_weights(path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    _vae().load_weights(path)


def _vqz_bytes():
    from vaezoo import codec

    return codec.compress_codes(_vq(), [np.zeros((4, 4), np.int32)], [(16, 16)], mode="fixed")


def _read_vqz(folder, data, model=None):
    from vaezoo import codec

    path = _write_bytes(folder, "x.vqz", data)
    return codec.read_vqz(path, model or _vq())


def _write_bytes(folder, name, data):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _export_twice(folder):
    from vaezoo.export.saved_model import export_saved_model

    model = _vae()
    export_saved_model(model, folder, model_name="m", version=1)
    export_saved_model(model, folder, model_name="m", version=1)


def _train_with(folder, text):
    from vaezoo.training import load_config

    return load_config(_write(folder, "c.yaml", text))


CASES = [
    ("wrong-channels", "RGB images to a greyscale model", lambda d: _vae().elbo(np.zeros((2, 28, 28, 3), np.float32)),
     ValueError, r"shape \(batch, 28, 28, 1\).*got shape \(2, 28, 28, 3\)"),
    ("wrong-size", "32x32 images to a 28x28 model", lambda d: _vae().reconstruct(np.zeros((2, 32, 32, 1), np.uint8)),
     ValueError, r"shape \(batch, 28, 28, 1\)"),
    ("no-batch-axis", "a single image without the batch axis", lambda d: _vae().encode(np.zeros((28, 28, 1))),
     ValueError, r"got shape \(28, 28, 1\)"),
    ("int32-images", "int32 pixels", lambda d: _vae().elbo(np.zeros((2, 28, 28, 1), np.int32)),
     TypeError, r"uint8 in \[0, 255\] or float in \[0, 1\].*int32"),
    ("float-0-255", "float pixels in [0, 255]", lambda d: _vae().elbo(np.full((2, 28, 28, 1), 200.0, np.float32)),
     ValueError, r"float in \[0, 1\].*divide by 255"),
    ("nan-pixels", "NaN in an image", lambda d: _vae().reconstruct(np.full((1, 28, 28, 1), np.nan, np.float32)),
     ValueError, r"NaN or Inf"),
    ("inf-pixels", "Inf in an image", lambda d: _vae().elbo(np.full((1, 28, 28, 1), np.inf, np.float32)),
     ValueError, r"NaN or Inf"),
    ("empty-batch", "a batch of zero images", lambda d: _vae().elbo(np.zeros((0, 28, 28, 1), np.float32)),
     ValueError, r"empty batch"),
    ("latent-width", "a latent of the wrong width to decode", lambda d: _vae().decode(np.zeros((2, 5), np.float32)),
     ValueError, r"shape \(batch, 2\), got shape \(2, 5\)"),
    ("label-out-of-range", "class label 12 for a 10-class CVAE",
     lambda d: _cvae().sample(2, condition=np.array([1, 12])), ValueError, r"\[0, 10\)"),
    ("missing-condition", "no condition for a conditional model", lambda d: _cvae().sample(2),
     TypeError, r"condition"),
    ("codes-out-of-range", "VQ code 99 with a codebook of 8",
     lambda d: _vq().decode_codes(np.full((1, 4, 4), 99, np.int32)), ValueError, r"\[0, 8\)"),
    ("negative-beta", "beta = -1", lambda d: __import__("vaezoo").BetaVAE(beta=-1.0), ValueError, r"beta must be"),
    ("zero-codebook", "a codebook of size 0", lambda d: __import__("vaezoo").VQVAE(num_embeddings=0),
     ValueError, r"num_embeddings must be an integer >= 1"),
    ("k-zero", "IWAE with k = 0", lambda d: _vae().iwae(np.zeros((1, 28, 28, 1), np.float32), k=0),
     ValueError, r"k must be an integer >= 1"),
    ("mig-without-factors", "MIG asked of images with no ground-truth factors",
     lambda d: __import__("vaezoo.evaluation").evaluation.evaluate(_vae(), np.zeros((2, 28, 28, 1), np.float32),
                                                                  metrics=["mig"]),
     ValueError, r"mig needs ground-truth factors"),
    ("temperature-zero", "sampling at temperature 0", lambda d: _vae().sample(2, temperature=0.0),
     ValueError, r"temperature must be a finite number > 0"),
    ("corrupt-yaml", "a config that is not YAML", lambda d: _train_with(d, "model: [unclosed\n"),
     ValueError, r"not valid YAML"),
    ("unknown-config-key", "a misspelt train option", lambda d: _train_with(
        d, "model: {class: VAE}\ndata: {source: dsprites}\ntrain: {stpes: 3}\n"), ValueError, r"Did you mean 'steps'"),
    ("unknown-model-key", "a misspelt model argument", lambda d: __import__("vaezoo").model_from_config(
        {"class": "VAE", "config": {"latent_dims": 3}}), ValueError, r"Did you mean 'latent_dim'"),
    ("python-tag-card", "a card with a !!python tag", lambda d: __import__("vaezoo.registry").registry.read_card(
        _write(d, "x.yaml", "name: !!python/object/apply:os.system ['true']\n")), ValueError, r"safe YAML only"),
    ("unknown-registry-name", "a misspelt zoo name", lambda d: __import__("vaezoo").info("vae-mnsit"),
     KeyError, r"Closest: vae-mnist"),
    ("path-as-name", "a path as a registry name", lambda d: __import__("vaezoo").load("../../etc"),
     ValueError, r"lowercase-hyphenated"),
    ("folder-non-images", "an image folder holding a text file", _folder_with_non_images,
     ValueError, r"not readable images.*notes.txt"),
    ("empty-folder", "an empty image folder", lambda d: __import__("vaezoo.data").data.list_image_folder(d),
     ValueError, r"holds no images"),
    ("truncated-weights", "a weights file cut in half", _truncated_weights,
     ValueError, r"truncated, corrupt, or saved from another architecture"),
    ("vqz-truncated", "a .vqz file cut short", lambda d: _read_vqz(d, _vqz_bytes()[:-7]),
     ValueError, r"(truncated|short|CRC|checksum|length)"),
    ("vqz-wrong-magic", "a file that is not .vqz", lambda d: _read_vqz(d, b"GIF89a" + _vqz_bytes()[6:]),
     ValueError, r"magic|not a \.vqz"),
    ("vqz-small-image", "a 7x30 image to compress", lambda d: __import__("vaezoo.codec").codec.compress(
        _vq(), [np.zeros((7, 30, 3), np.uint8)]), ValueError, r"at least 8 pixels"),
    ("vqz-grey-for-rgb", "a greyscale image for an RGB model", lambda d: __import__("vaezoo.codec").codec.compress(
        _vq(), [np.zeros((16, 16, 1), np.uint8)]), ValueError, r"1 channel\(s\); the model takes RGB images"),
    ("vqz-size-claim", "a 20-byte .vqz claiming a 100,000 x 100,000 image",
     lambda d: _read_vqz(d, _vqz_bytes()[:9] + b"\x01\xa0\x8d\x06\xa0\x8d\x06" + bytes(4)),
     ValueError, r"claims a 100000x100000 image; this reader accepts"),
    ("vqz-other-model", "a .vqz written with other weights", lambda d: _read_vqz(
        d, _vqz_bytes(), __import__("vaezoo").VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4,
                                                   hidden_channels=8, residual_channels=4, num_residual_blocks=1,
                                                   prior=None, seed=99)), ValueError, r"sha256|weights"),
    ("export-existing-version", "exporting into a version that exists", _export_twice,
     FileExistsError, r"overwrite"),
    ("unknown-strategy", "strategy 'gpu'", lambda d: __import__("vaezoo.strategy").strategy.make_strategy("gpu"),
     ValueError, r"Unknown strategy 'gpu'"),
    ("bad-tf-config", "TF_CONFIG that is not JSON",
     lambda d: __import__("vaezoo.strategy").strategy.parse_tf_config("{oops"), ValueError, r"not valid JSON"),
]
