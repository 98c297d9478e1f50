"""Input that is small but hostile (a count, a declared size, a claimed length) is refused by a
limit that names itself, before anything is sized by it: exported signatures' rows, `sample`'s
count, image files' declared size, `.vqz` claims."""

import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import vaezoo
from helpers import png_declaring, vqz_v1_with
from vaezoo import cli, codec, data, vqz, vqz_v1
from vaezoo.export.saved_model import DEFAULT_MAX_ROWS, MANIFEST, export_saved_model


def _vae(seed=0):
    return vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [8]}, seed=seed)


def _vq():
    return vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                        residual_channels=4, num_residual_blocks=1, prior={"filters": 4, "layers": 1}, seed=0)


# --------------------------------------------------------------------- sample's count
def test_python_sample_refuses_a_count_over_the_limit_and_the_limit_can_be_raised():
    model = _vae()
    limit = model.max_samples_per_call
    assert limit == 4096
    with pytest.raises(ValueError, match=r"n=1000000 is over the limit of 4096 images per call "
                                         r"\(model\.max_samples_per_call\)"):
        model.sample(1_000_000)
    with pytest.raises(ValueError, match=r"len\(seeds\)=4097 is over the limit of 4096"):
        model.sample_per_seed(np.arange(limit + 1))
    assert model.sample(limit, seed=0).shape == (limit, 28, 28, 1)  # the limit itself is allowed
    model.max_samples_per_call = limit + 1
    assert model.sample(limit + 1, seed=0).shape == (limit + 1, 28, 28, 1)
    assert _vae().max_samples_per_call == limit  # set on one model, not the class
    prior = _vq().prior
    with pytest.raises(ValueError, match=r"n=5000 is over the limit of 4096 .*prior\.max_samples_per_call"):
        prior.sample(5000)


# --------------------------------------------------------------------- exported signatures
def test_export_records_the_row_limit_and_every_signature_enforces_it(tmp_path):
    model = _vae()
    path = export_saved_model(model, tmp_path, model_name="m", max_rows=8, batching_parameters={"max_batch_size": 8})
    manifest = json.load(open(os.path.join(path, MANIFEST)))
    assert manifest["limits"]["max_rows"] == 8
    assert set(manifest["limits"]["applies_to"]) == set(manifest["signatures"])
    import tensorflow as tf

    signatures = tf.saved_model.load(path).signatures

    def rows(spec, n):  # n rows of valid input for each named input of a signature
        shapes = {"images": (n, 28, 28, 1), "z": (n, 2)}
        return {key: tf.zeros(shapes[key], s.dtype) if key in shapes else tf.range(n) for key, s in spec.items()}

    for name in manifest["signatures"]:
        fn = signatures[name]
        spec = fn.structured_input_signature[1]
        assert all(v.shape[0] == 8 for v in fn(**rows(spec, 8)).values()), name
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 8 rows per call \(max_rows"):
            fn(**rows(spec, 9))


def test_export_refuses_a_row_limit_below_the_batching_max_batch_size(tmp_path):
    with pytest.raises(ValueError, match=r"max_rows=32 is below the server-side batching max_batch_size of 64"):
        export_saved_model(_vae(), tmp_path, model_name="m", max_rows=32)
    assert not os.path.exists(tmp_path / "m")
    assert DEFAULT_MAX_ROWS >= 64


_MILLION_SEEDS = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    def peak_mb():  # the process's high-water mark of resident memory
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    sample = tf.saved_model.load(sys.argv[1]).signatures["sample"]
    sample(seed=tf.range(4))  # warm up: the graph's own buffers
    seeds = tf.constant(np.arange(int(sys.argv[2]), dtype=np.int32))  # the request as it arrives
    before, start, error = peak_mb(), time.time(), None
    try:
        rows = sample(seed=seeds)["images"].shape[0]
    except tf.errors.InvalidArgumentError as e:
        rows, error = None, e.message
    print(json.dumps({"growth_mb": peak_mb() - before, "seconds": time.time() - start, "rows": rows,
                      "error": error}))
""")


def _sample_in_fresh_process(path, seeds):
    result = subprocess.run([sys.executable, "-c", _MILLION_SEEDS, str(path), str(seeds)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_million_seeds_fail_fast_with_the_limit_and_without_growing_the_process(tmp_path):
    # what a default export does with the request the issue measured (11.4 GB, 553 s, with no limit)
    bounded = export_saved_model(_vae(), tmp_path, model_name="bounded")
    refused = _sample_in_fresh_process(bounded, 1_000_000)
    assert refused["rows"] is None
    assert f"at most {DEFAULT_MAX_ROWS} rows per call (max_rows" in refused["error"]
    assert refused["growth_mb"] < 300, refused
    # control: the same measurement sees the work when nothing stops it (an export without a
    # limit, 100,000 seeds: 0.3 GB of float32 images alone), so the bound above is not vacuous
    unbounded = export_saved_model(_vae(), tmp_path, model_name="unbounded", max_rows=None)
    allowed = _sample_in_fresh_process(unbounded, 100_000)
    assert allowed["rows"] == 100_000 and allowed["growth_mb"] > 300, allowed


# --------------------------------------------------------------------- image files
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    vae, vq = str(folder / "vae.keras"), str(folder / "vq.keras")
    _vae().save(vae)
    model = _vq()
    model.build_from_images()
    model.save(vq)
    return {"vae": vae, "vq": vq}


def _image_commands(models, bomb, folder, out):
    spec = json.dumps({"source": "folder", "path": folder, "image_size": [28, 28], "channels": 1})
    return {
        "compress": ["compress", bomb, "--model", models["vq"], "-o", str(out / "x.vqz")],
        "reconstruct": ["reconstruct", models["vae"], bomb, "-o", str(out / "r.png")],
        "interpolate": ["interpolate", models["vae"], bomb, bomb, "-o", str(out / "i.png")],
        "traverse": ["traverse", models["vae"], "--image", bomb, "-o", str(out / "t.png")],
        "export --calibration": ["export", models["vae"], "--format", "tflite", "--calibration", folder,
                                 "--out", str(out / "exports")],
        "eval --data": ["eval", models["vae"], "--data", spec, "--metrics", "mse"],
    }


@pytest.mark.parametrize("pillow_limit", [None, 1000], ids=["pillow-check-off", "pillow-check-first"])
def test_every_cli_command_that_reads_images_refuses_a_png_declaring_50000x50000(
        saved_models, tmp_path, capsys, monkeypatch, pillow_limit):
    from PIL import Image

    # vaezoo's limit holds whatever another library did to Pillow's global one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    folder = tmp_path / "images"
    folder.mkdir()
    bomb = png_declaring(folder / "bomb.png", 50_000, 50_000, channels=1)
    assert os.path.getsize(bomb) < 4096
    out = tmp_path / "out"
    out.mkdir()
    for command, argv in _image_commands(saved_models, bomb, str(folder), out).items():
        assert cli.main(argv) == 2, command
        err = capsys.readouterr().err
        assert "bomb.png" in err and f"{data.MAX_IMAGE_PIXELS} pixels" in err, (command, err)
        if pillow_limit is None:
            assert "50000x50000" in err, (command, err)
        assert "Traceback" not in err, (command, err)
    assert os.listdir(out) == []  # nothing written


def test_the_image_limit_is_vaezoos_and_can_be_raised_per_call(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow would decode anything
    big = png_declaring(tmp_path / "big.png", 12_000, 10_000, channels=1)  # 120 MP: Pillow's default only warns
    with pytest.raises(data.ImageTooLargeError, match=r"big\.png: the image declares 12000x10000 = 120000000 "
                                                      r"pixels; vaezoo reads images up to 100000000 pixels"):
        data.load_image_files([big], None, 1, resize=False)
    with data.open_image(big, max_pixels=120_000_000) as image:  # raised: opened (not decoded)
        assert image.size == (12_000, 10_000)
    small = png_declaring(tmp_path / "small.png", 40, 30, channels=1)
    with pytest.raises(data.ImageTooLargeError, match=r"40x30 = 1200 pixels; vaezoo reads images up to 1000"):
        data.load_image_files([small], (28, 28), 1, max_pixels=1000)
    assert data.MAX_IMAGE_PIXELS == vqz.Limits().max_pixels  # what compress accepts, decompress reads


# --------------------------------------------------------------------- .vqz claims
def _varint(value):
    return vqz._varint(value)


def _peak_bytes(call):
    """`(exception, peak bytes traced)` of `call()` (Python and numpy allocations)."""
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as e:  # noqa: BLE001 - returned for the caller to check
        error = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak


def test_a_100_byte_vqz_claiming_a_huge_image_fails_fast_without_allocating():
    model = codec.KerasCodecModel(_vq())  # built before memory is traced
    valid = codec.compress_codes(model, [np.zeros((4, 4), np.int32)], [(16, 16)], mode="fixed")
    head = valid[:8]  # magic + model id
    claims = {
        # over Limits: 100,000 x 100,000 pixels, 10^6 images
        b"\x02" + _varint(1) + _varint(100_000) + _varint(100_000): r"claims a 100000x100000 image",
        b"\x02" + _varint(1_000_000) + _varint(16) + _varint(16): r"claims 1000000 images",
        # within Limits (10,000 x 10,000 context-coded, stride 4) but not within the file's length
        bytes([1 | 2 | (2 << 4)]) + _varint(1) + _varint(10_000) + _varint(10_000):  # version 3: stride in bits 4-6
            r"make 6105 streams, whose lengths alone need 6104 bytes",
        # 9 bits x 6.25 M codes of fixed-length payload claimed by a file of 100 bytes
        bytes([2 | (2 << 4)]) + _varint(1) + _varint(10_000) + _varint(10_000): r"fixed-length payload",
        # a one-image RQ file (flags: one image, a quality byte) of quality 255: codes scale with the quality
        bytes([2 | 4 | 8 | (2 << 4)]) + bytes([255]) + _varint(10_000) + _varint(10_000):
            r"claims 100000000 pixels in all at quality 255 \(25500000000 pixels x depths\)",
        # ... and quality 8, within the limits: refused as deeper than this VQ-VAE before any decoding
        bytes([2 | 4 | 8 | (2 << 4)]) + bytes([8]) + _varint(10_000) + _varint(10_000): r"has quality 8 .*a VQ-VAE",
    }
    for body, message in claims.items():
        file = (head + body).ljust(96, b"\0") + bytes(4)
        assert len(file) == 100
        error, peak = _peak_bytes(lambda: codec.decompress_codes(model, file))
        assert isinstance(error, codec.VQZFormatError) and re.search(message, str(error)), error
        assert peak < 1_000_000, (message, peak)  # nothing was sized by the claim
    # the limits are the caller's: a reader with smaller ones refuses what the default takes
    assert codec.decompress_codes(model, valid)[0] == [(16, 16)]
    with pytest.raises(codec.VQZFormatError, match=r"claims a 16x16 image; this reader accepts sides up to 8"):
        codec.decompress_codes(model, valid, limits=vqz.Limits(max_side=8))


def test_version_1_files_are_checked_against_the_same_limits():
    model = codec.KerasCodecModel(_vq())
    valid = vqz_v1.compress_codes(model.model, np.zeros((2, 4, 4), np.int32), mode="fixed", model_name="m")
    assert len(codec.decompress_codes(model, valid)[1]) == 2
    forged = vqz_v1_with(valid, num_images=2**32 - 1)  # and the file's CRC, so only the claim is wrong
    assert vqz_v1.read_header(vqz_v1_with(valid, num_images=3)).num_images == 3  # the field rewritten
    error, peak = _peak_bytes(lambda: codec.decompress_codes(model, forged))
    assert isinstance(error, codec.VQZFormatError), error
    assert "claims 4294967295 images; this reader accepts 1 to 100000 (Limits.max_images)" in str(error)
    assert peak < 1_000_000
    with pytest.raises(codec.VQZFormatError, match=r"claims 2 images; this reader accepts 1 to 1"):
        codec.decompress_codes(model, valid, limits=vqz.Limits(max_images=1))


def test_a_sparse_vqz_of_two_gigabytes_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "sparse.vqz"
    with open(path, "wb") as f:
        f.write(vqz.MAGIC)
        f.truncate(2**31)  # 2 GB on paper, a few KB on disk
    model = codec.KerasCodecModel(_vq())
    error, peak = _peak_bytes(lambda: codec.read_vqz(path, model))
    assert isinstance(error, codec.VQZFormatError), error
    assert f"this reader accepts up to {2**30} bytes (Limits.max_file_bytes)" in str(error)
    assert peak < 1_000_000
