"""The .vqz codec: exact round trips, size near the prior's cross-entropy, the TFLite path,
the CLI, and every bad-input case (clear errors, no partial files).

A small VQ-VAE and its PixelCNN prior are trained here for a few seconds on structured
16x16 images (4x4 code grids, K = 32).
"""

import math
import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaezoo import codec
from vaezoo.codec import VQZFormatError, VQZModelMismatchError
from helpers import squares

CONFIG = dict(
    input_shape=(16, 16, 3), num_embeddings=32, embedding_dim=16, hidden_channels=32, residual_channels=16,
    num_residual_blocks=1, num_downsamples=2, prior={"filters": 32, "layers": 3},
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import vaezoo
    from vaezoo.export.tflite import export_tflite

    keras.utils.set_random_seed(0)
    train = squares(768)
    model = vaezoo.VQVAE(**CONFIG, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train, epochs=5, batch_size=32, verbose=0)
    model.fit_prior(train, epochs=6, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("codec")
    keras_path = str(folder / "tiny-vq.keras")
    model.save(keras_path)
    tflite = export_tflite(model, str(folder / "tflite"), variants=("float32",))["float32"]
    images = np.round(squares(48, seed=1) * 255).astype(np.uint8)
    return {"model": model, "keras_path": keras_path, "tflite": tflite, "images": images}


def test_codes_round_trip_exactly(trained):
    model, images = trained["model"], trained["images"]
    data = codec.compress(model, images, model_name="tiny-vq")
    header = codec.read_header(data)
    assert header.mode == "prior" and header.num_images == len(images)
    assert (header.model_name, header.grid_shape, header.num_embeddings) == ("tiny-vq", (4, 4), 32)
    assert header.weights_sha256 == codec.weights_sha256(model)
    codes = np.asarray(model.encode_to_codes(images))
    np.testing.assert_array_equal(codec.decompress_codes(model, data), codes)
    np.testing.assert_array_equal(codec.decompress(model, data), np.asarray(model.decode_codes(codes)))


def test_size_is_close_to_the_priors_cross_entropy(trained):
    model, images = trained["model"], trained["images"]
    data = codec.compress(model, images)
    header = codec.read_header(data)
    ideal = codec.prior_bits(model, model.encode_to_codes(images))
    overhead = 8 * (header.header_length + 4)  # header and trailing CRC
    assert len(data) * 8 <= 1.03 * ideal + overhead, (len(data) * 8, ideal, overhead)
    assert header.payload_length * 8 >= ideal - 64  # no free lunch: it cannot beat the model
    fixed_bits = images.shape[0] * 16 * 5
    assert header.payload_length * 8 < fixed_bits  # the trained prior beats 5 bits/code


def test_tflite_path_gives_the_same_codes_and_file(trained):
    model, images, tflite = trained["model"], trained["images"], trained["tflite"]
    on_device = codec.compress(model, images, tflite=tflite)
    assert on_device == codec.compress(model, images)
    restored = codec.decompress(model, on_device, tflite=tflite)
    np.testing.assert_allclose(restored, codec.decompress(model, on_device), rtol=0, atol=1e-4)


def test_fixed_mode_and_models_without_prior(trained):
    import vaezoo

    model, images = trained["model"], trained["images"]
    codes = np.asarray(model.encode_to_codes(images))
    data = codec.compress_codes(model, codes, mode="fixed")
    header = codec.read_header(data)
    assert header.mode == "fixed" and header.payload_length == math.ceil(codes.size * 5 / 8)
    np.testing.assert_array_equal(codec.decompress_codes(model, data), codes)

    flat = vaezoo.VQVAE(**{**CONFIG, "num_embeddings": 5, "prior": None}, seed=3)
    data = codec.compress(flat, images[:3])  # auto: no prior, so fixed ceil(log2 5) = 3 bits
    assert codec.read_header(data).mode == "fixed" and codec.read_header(data).payload_length == 18
    np.testing.assert_array_equal(codec.decompress_codes(flat, data), flat.encode_to_codes(images[:3]))
    with pytest.raises(ValueError, match="prior=None"):
        codec.compress(flat, images[:3], mode="prior")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    n=st.integers(1, 5),
    mode=st.sampled_from(["prior", "fixed", "auto"]),
    prior_batch=st.integers(1, 4),
)
def test_random_code_grids_round_trip(trained, data, n, mode, prior_batch):
    model = trained["model"]
    flat = data.draw(st.lists(st.integers(0, 31), min_size=16 * n, max_size=16 * n))
    codes = np.array(flat, np.int32).reshape(n, 4, 4)
    blob = codec.compress_codes(model, codes, mode=mode, prior_batch=prior_batch)
    np.testing.assert_array_equal(codec.decompress_codes(model, blob), codes)


# --------------------------------------------------------------------- bad input
def test_bad_images_raise_before_anything_is_written(trained, tmp_path):
    model, images = trained["model"], trained["images"]
    path = tmp_path / "out.vqz"
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 3\)"):
        codec.write_vqz(path, model, images[..., :1])
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 3\)"):
        codec.write_vqz(path, model, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        codec.write_vqz(path, model, np.full((1, 16, 16, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        codec.compress_codes(model, np.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match="mode"):
        codec.compress(model, images[:1], mode="zip")
    with pytest.raises(TypeError, match="VQVAE"):
        codec.compress(object(), images[:1])
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def good_file(trained):
    return codec.compress(trained["model"], trained["images"][:8])


def _with_crc(body):
    import zlib

    return body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: d[:-10], "truncated"),
        (lambda d: d[:30], "truncated"),
        (lambda d: b"", "not a .vqz"),
        (lambda d: b"PK\x03\x04" + d[4:], "not a .vqz"),
        (lambda d: d[:8] + (2).to_bytes(2, "little") + d[10:], "unsupported .vqz format version 2"),
        (lambda d: d[:-20] + bytes([d[-20] ^ 0x40]) + d[-19:], "corrupted .vqz: the CRC32"),
        (lambda d: d + b"\x00", "unexpected bytes"),
    ],
    ids=["truncated-end", "truncated-header", "empty", "magic", "version", "flipped-bit", "trailing"],
)
def test_damaged_files_raise_vqz_format_error(trained, good_file, tmp_path, mangle, message):
    path = tmp_path / "bad.vqz"
    path.write_bytes(mangle(good_file))
    with pytest.raises(VQZFormatError, match=message):
        codec.read_vqz(path, trained["model"])
    assert issubclass(VQZFormatError, ValueError)


def test_wrong_codes_after_decoding_are_caught(trained, good_file):
    header = codec.read_header(good_file)
    crc_at = header.header_length - 12  # codes CRC32 sits just before the 8-byte payload length
    body = good_file[:-4]
    forged = body[:crc_at] + bytes(4) + body[crc_at + 4 :]
    with pytest.raises(VQZFormatError, match="checksum stored at compression"):
        codec.decompress(trained["model"], _with_crc(forged))


def test_a_different_model_is_refused(trained, good_file):
    import vaezoo

    other = vaezoo.VQVAE(**CONFIG, seed=7)
    with pytest.raises(VQZModelMismatchError, match="weights sha256"):
        codec.decompress(other, good_file)


# --------------------------------------------------------------------- CLI
def _write_pngs(images, folder):
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, f"in_{i}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_cli_compress_decompress(trained, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    model, images = trained["model"], trained["images"][:5]
    pngs = _write_pngs(images, tmp_path)
    vqz = str(tmp_path / "five.vqz")
    assert main(["compress", *pngs, "--model", trained["keras_path"], "-o", vqz]) == 0
    assert codec.read_header(vqz).model_name == "tiny-vq"
    out = tmp_path / "decoded"
    assert main(["decompress", vqz, "--model", trained["keras_path"], "-o", str(out), "--tflite", trained["tflite"]]) == 0
    written = sorted(os.listdir(out))
    assert written == [f"image_{i:04d}.png" for i in range(5)]
    expected = np.round(codec.read_vqz(vqz, model) * 255).astype(np.uint8)  # in-memory model, same weights
    decoded = np.stack([np.asarray(Image.open(out / name)) for name in written])
    assert np.max(np.abs(decoded.astype(int) - expected.astype(int))) <= 1
    assert "bytes/image" in capsys.readouterr().out


def test_cli_bad_input_writes_nothing(trained, good_file, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    good = _write_pngs(trained["images"][:1], tmp_path)
    small = str(tmp_path / "small.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(small)
    grey = str(tmp_path / "grey.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(grey)
    vqz = tmp_path / "never.vqz"
    for bad, message in ((small, "8x8"), (grey, "1 channel")):
        assert main(["compress", *good, bad, "--model", trained["keras_path"], "-o", str(vqz)]) == 2
        err = capsys.readouterr().err
        assert message in err and os.path.basename(bad) in err
    assert not vqz.exists()

    broken = tmp_path / "broken.vqz"
    broken.write_bytes(good_file[:40])
    out = tmp_path / "decoded"
    assert main(["decompress", str(broken), "--model", trained["keras_path"], "-o", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists()

    assert main(["compress", *good, "--model", "no-such-model-xyz", "-o", str(vqz)]) == 2
    assert "no-such-model-xyz" in capsys.readouterr().err
    assert not vqz.exists()


def test_tflite_file_of_another_model_is_refused(trained):
    import vaezoo

    other = vaezoo.VQVAE(**CONFIG, seed=7)
    with pytest.raises(ValueError, match="exported from a model with weights sha256"):
        codec.compress(other, trained["images"][:2], tflite=trained["tflite"])
