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


@functools.lru_cache(maxsize=2)
def _rq(depth):
    import vaezoo

    return vaezoo.RQVAE(input_shape=(16, 16, 3), depth=depth, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                        residual_channels=4, num_residual_blocks=1)


def _compress_zeros(model, folder=None, **options):
    """`codec.compress` of one black 16 x 16 image with `model` (`write_vqz` into `folder` when given)."""
    from vaezoo import codec

    image = [np.zeros((16, 16, 3), np.uint8)]
    if folder is None:
        return codec.compress(model, image, **options)
    return codec.write_vqz(os.path.join(folder, "out.vqz"), model, image, **options)


def _deep_rq_file(folder):
    """A quality-3 file of a depth-3 RQ-VAE, read with a depth-2 one."""
    from vaezoo import codec

    data = codec.compress_codes(_rq(3), [np.zeros((4, 4, 3), np.int32)], [(16, 16)], mode="fixed", quality=3)
    return _read_vqz(folder, data, _rq(2))


def _rq_bundle_with_codebooks(folder, data, rehash=False):
    """A LiteRT export of an RQ-VAE whose codebooks.npy is replaced by `data`, opened as a codec
    model. With `rehash`, manifest.json records the new file's sha256 (a tool that rewrote it)."""
    import hashlib
    import json

    from vaezoo import codec
    from vaezoo.export.tflite import export_tflite

    model = _rq(2)
    model(np.zeros((1, 16, 16, 3), np.float32))
    export_tflite(model, folder, variants=("float32",))
    _write_bytes(folder, "codebooks.npy", data)
    if rehash:
        path = os.path.join(folder, "manifest.json")
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        manifest["codec"]["codebooks"]["sha256"] = hashlib.sha256(data).hexdigest()
        _write(folder, "manifest.json", json.dumps(manifest))
    return codec.LiteRTCodecModel(folder)


def _npy(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


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


def _v3_claim(body):
    """A 100-byte version-3 file of `_vq()`'s model whose header after the model id is `body`."""
    return (_vqz_bytes()[:8] + body).ljust(96, b"\0") + bytes(4)


def _sparse_vqz(folder):
    path = os.path.join(folder, "sparse.vqz")
    with open(path, "wb") as f:
        f.write(b"VQZ\x02")
        f.truncate(2**31)  # 2 GB on paper, a few KB on disk
    from vaezoo import codec

    return codec.read_vqz(path, _vq())


def _png_bomb(folder):
    from helpers import png_declaring
    from vaezoo import data

    return data.load_image_files([png_declaring(os.path.join(folder, "bomb.png"), 50_000, 50_000)], (28, 28), 3)


def _v1_count_claim(folder):
    from helpers import vqz_v1_with
    from vaezoo import vqz_v1

    valid = vqz_v1.compress_codes(_vq(), np.zeros((1, 4, 4), np.int32), mode="fixed", model_name="m")
    return _read_vqz(folder, vqz_v1_with(valid, num_images=2**32 - 1))


def _export_twice(folder):
    from vaezoo.export.saved_model import export_saved_model

    model = _vae()
    export_saved_model(model, folder, model_name="m", version=1)
    export_saved_model(model, folder, model_name="m", version=1)


def _train_with(folder, text):
    from vaezoo.training import load_config

    return load_config(_write(folder, "c.yaml", text))


def _preset(folder):
    """A tiny VAE preset at FOLDER/p."""
    from vaezoo import presets

    model = __import__("vaezoo").VAE(input_shape=(8, 8, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [4]})
    return presets.save_preset(model, os.path.join(folder, "p"))


def _damaged_preset(folder, name, change, rehash=False):
    """A preset whose file `name` is rewritten by `change(bytes) -> bytes`, then loaded. With
    `rehash`, metadata.json is updated to the new hashes too (a tool that rewrote the file), so
    the parsing checks behind the hash check are reached."""
    import hashlib
    import json

    path = _preset(folder)
    file = os.path.join(path, name)
    with open(file, "rb") as f:
        data = change(f.read())
    if data is None:
        os.remove(file)
    else:
        _write_bytes(path, name, data)
    if rehash:
        meta_path = os.path.join(path, "metadata.json")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        for member in meta["files"]:
            with open(os.path.join(path, member), "rb") as f:
                meta["files"][member] = hashlib.sha256(f.read()).hexdigest()
        meta["weights_sha256"] = meta["files"]["model.weights.h5"]
        _write(path, "metadata.json", json.dumps(meta))
    return __import__("vaezoo").load(path)


def _edit_json(edit):
    import json

    def change(data):
        value = json.loads(data)
        edit(value)
        return json.dumps(value).encode()

    return change


def _not_a_preset(folder):
    _write(folder, "README.md", "# notes\n")
    return __import__("vaezoo").VAE.from_preset(folder)


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
    ("vqz-many-one-truncated", "three .vqz files decoded together, the second cut short",
     lambda d: __import__("vaezoo.codec").codec.decompress_many(_vq(), [_vqz_bytes(), _vqz_bytes()[:-7], _vqz_bytes()]),
     ValueError, r"^file 1: .*(truncated|short|CRC|checksum|length)"),
    ("context-unknown-schedule", "a VQ-VAE whose context model names an unknown group schedule",
     lambda d: __import__("vaezoo").VQVAE(input_shape=(16, 16, 3), num_embeddings=8, prior=None,
                                           context_model={"schedule": "groups7"}),
     ValueError, r"context_model schedule must be one of \['groups5', 'groups6', 'groups8', 'raster'\]"),
    ("vqz-small-image", "a 7x30 image to compress", lambda d: __import__("vaezoo.codec").codec.compress(
        _vq(), [np.zeros((7, 30, 3), np.uint8)]), ValueError, r"at least 8 pixels"),
    ("vqz-grey-for-rgb", "a greyscale image for an RGB model", lambda d: __import__("vaezoo.codec").codec.compress(
        _vq(), [np.zeros((16, 16, 1), np.uint8)]), ValueError, r"1 channel\(s\); the model takes RGB images"),
    ("vqz-size-claim", "a 20-byte .vqz claiming a 100,000 x 100,000 image",
     lambda d: _read_vqz(d, _vqz_bytes()[:9] + b"\xa0\x8d\x06\xa0\x8d\x06" + bytes(4)),
     ValueError, r"claims a 100000x100000 image; this reader accepts"),
    ("vqz-count-claim-v1", "a version-1 .vqz (checksum intact) claiming 2^32 - 1 images", _v1_count_claim,
     ValueError, r"claims 4294967295 images; this reader accepts 1 to 100000 \(Limits.max_images\)"),
    ("vqz-stream-claim", "a 100-byte context-coded .vqz claiming a 10,000 x 10,000 image",
     lambda d: _read_vqz(d, _v3_claim(b"\x27\x90\x4e\x90\x4e")),  # context, one 10,000^2 image, stride 4
     ValueError, r"make 6105 streams, whose lengths alone need 6104 bytes"),
    ("vqz-future-version", "a .vqz of format version 4", lambda d: _read_vqz(d, b"VQZ\x04" + _vqz_bytes()[4:]),
     ValueError, r"unsupported \.vqz format version 4; this vaezoo reads versions 1, 2 and 3"),
    ("vqz-quality-range", "quality 9 for an RQ-VAE of depth 3", lambda d: _compress_zeros(_rq(3), quality=9), ValueError,
     r"quality must be an integer in \[1, 3\] \(the RQ-VAE's code depths to store\), got 9"),
    ("vqz-quality-vq", "quality 2 for a VQ-VAE", lambda d: _compress_zeros(_vq(), quality=2), ValueError,
     r"quality must be 1 for a VQ-VAE \(its one operating point"),
    ("vqz-beam-width-vq", "a code search (beam width 2) asked of a VQ-VAE",
     lambda d: _compress_zeros(_vq(), beam_width=2),
     ValueError, r"beam_width=2 needs an RQ-VAE's code search, and a VQ-VAE has one code per position"),
    ("vqz-max-bytes-too-small", "a 10-byte budget for a 16 x 16 image (the smallest file is larger)",
     lambda d: _compress_zeros(_rq(3), d, max_bytes=10),
     ValueError, r"max_bytes=10 is below the smallest file of these images: \d+ bytes at quality 1"),
    ("vqz-max-bytes-type", "a size budget given as the string '200'",
     lambda d: _compress_zeros(_rq(3), max_bytes="200"),
     TypeError, r"max_bytes must be an integer >= 1"),
    ("vqz-min-psnr-unreachable", "a 90 dB target that the highest quality misses (an untrained depth-3 RQ-VAE)",
     lambda d: _compress_zeros(_rq(3), d, min_psnr=90.0),
     ValueError, r"min_psnr=90\.0 dB is above what these images reach at quality 3: [\d.]+ dB \(its 8-bit decoding\)"),
    ("vqz-min-psnr-type", "a PSNR target given as the string '35'",
     lambda d: _compress_zeros(_rq(3), min_psnr="35"),
     TypeError, r"min_psnr must be a number"),
    ("vqz-budget-and-target", "both a size budget and a PSNR target",
     lambda d: _compress_zeros(_rq(3), max_bytes=200, min_psnr=30.0),
     ValueError, r"give max_bytes or min_psnr, not both"),
    ("reconstruct-quality-vae", "vaezoo reconstruct --quality for a VAE (it writes no .vqz files)",
     lambda d: __import__("vaezoo.cli").cli._vqz_rows(_vae(), np.zeros((1, 28, 28, 1), np.uint8), [1]),
     ValueError, r"vaezoo reconstruct --quality \(\.vqz files\) needs a model whose latent_kind is code_grid"),
    ("bundle-codebooks-damaged", "an RQ-VAE export whose codebooks.npy was cut short",
     lambda d: _rq_bundle_with_codebooks(d, _npy(np.zeros((2, 8, 4), np.float32))[:100]),
     ValueError, r"codebooks\.npy does not match the sha256 its manifest records"),
    ("bundle-codebooks-wrong-shape", "an RQ-VAE export whose codebooks.npy (hash updated) has 3 levels of 5 codes",
     lambda d: _rq_bundle_with_codebooks(d, _npy(np.zeros((3, 5, 4), np.float32)), rehash=True),
     ValueError, r"codebooks\.npy has shape \(3, 5, 4\), expected \(2, 8, C\)"),
    ("vqz-quality-over-depth", "a quality-3 .vqz read with an RQ-VAE of depth 2", _deep_rq_file, ValueError,
     r"\.vqz has quality 3 \(code depths per position\), more than the given model, an RQ-VAE of depth 2, decodes"),
    ("vqz-sparse-file", "a sparse .vqz file of 2 GB", _sparse_vqz,
     ValueError, r"this reader accepts up to 1073741824 bytes \(Limits.max_file_bytes\)"),
    ("image-size-claim", "a 225-byte PNG declaring 50,000 x 50,000 pixels", _png_bomb,
     ValueError, r"bomb\.png: the image declares .*vaezoo reads.*100000000 pixels"),
    ("sample-count", "a million samples in one call", lambda d: _vae().sample(1_000_000),
     ValueError, r"n=1000000 is over the limit of 4096 images per call \(model.max_samples_per_call\)"),
    ("export-rows-below-batching", "an export row limit below the batching max_batch_size",
     lambda d: __import__("vaezoo.export.saved_model").export.saved_model.export_saved_model(
         _vae(), d, model_name="m", max_rows=32), ValueError, r"max_rows=32 is below the server-side batching"),
    ("vqz-other-model", "a .vqz written with other weights", lambda d: _read_vqz(
        d, _vqz_bytes(), __import__("vaezoo").VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4,
                                                   hidden_channels=8, residual_channels=4, num_residual_blocks=1,
                                                   prior=None, seed=99)), ValueError, r"sha256|weights"),
    ("export-existing-version", "exporting into a version that exists", _export_twice,
     FileExistsError, r"overwrite"),
    ("unknown-strategy", "strategy 'gpu'", lambda d: __import__("vaezoo.strategy").strategy.make_strategy("gpu"),
     ValueError, r"Unknown strategy 'gpu'"),
    ("preset-not-a-preset", "a folder that is not a preset", _not_a_preset,
     ValueError, r"is not a vaezoo preset: expected config\.json, model\.weights\.h5, metadata\.json"),
    ("preset-missing-weights", "a preset without its weights file",
     lambda d: _damaged_preset(d, "model.weights.h5", lambda b: None), ValueError, r"incomplete, missing model"),
    ("preset-truncated-weights", "a preset whose weights file was cut in half",
     lambda d: _damaged_preset(d, "model.weights.h5", lambda b: b[: len(b) // 2]),
     ValueError, r"sha256 of model\.weights\.h5 is .* but metadata\.json says"),
    ("preset-truncated-config", "a preset whose config.json was cut short",
     lambda d: _damaged_preset(d, "config.json", lambda b: b[:40]), ValueError, r"sha256 of config\.json"),
    ("preset-garbled-config", "a garbled config.json whose hash was updated to match",
     lambda d: _damaged_preset(d, "config.json", lambda b: b[:40], rehash=True),
     ValueError, r"config\.json is not valid JSON"),
    ("preset-garbled-metadata", "a metadata.json that is not JSON",
     lambda d: _damaged_preset(d, "metadata.json", lambda b: b"{oops"), ValueError, r"metadata\.json is not valid JSON"),
    ("preset-other-format", "a metadata.json of another format",
     lambda d: _damaged_preset(d, "metadata.json", _edit_json(lambda m: m.update(format="keras-hub"))),
     ValueError, r"not a vaezoo preset: metadata\.json has format 'keras-hub'"),
    ("preset-newer-format", "a preset from a newer vaezoo",
     lambda d: _damaged_preset(d, "metadata.json", _edit_json(lambda m: m.update(format_version=99))),
     ValueError, r"format_version 99.*upgrade vaezoo"),
    ("preset-unknown-class", "a config.json naming a class that is not a vaezoo family",
     lambda d: _damaged_preset(d, "config.json", _edit_json(lambda c: c.update(class_name="Lambda")), rehash=True),
     ValueError, r"not a vaezoo preset: config\.json names class 'Lambda'"),
    ("preset-wrong-argument", "a config.json with a misspelt constructor argument",
     lambda d: _damaged_preset(d, "config.json", _edit_json(lambda c: c["config"].update(latent_dims=3)),
                               rehash=True), ValueError, r"config\.json does not fit VAE.*latent_dims"),
    ("preset-unsafe-card", "a card.yaml with a !!python tag",
     lambda d: _damaged_preset(d, "card.yaml", lambda b: b"name: !!python/object/apply:os.system ['true']\n",
                               rehash=True), ValueError, r"card\.yaml is not valid YAML \(safe YAML only\)"),
    ("hub-malformed-uri", "an hf:// URI without an organisation",
     lambda d: __import__("vaezoo").load("hf://just-a-name"), ValueError, r"expected hf://ORG/REPO\[@REVISION\]"),
    ("bad-tf-config", "TF_CONFIG that is not JSON",
     lambda d: __import__("vaezoo.strategy").strategy.parse_tf_config("{oops"), ValueError, r"not valid JSON"),
]
