"""The .vqz codec (format version 3): exact round trips at any image size, the size against
the exact model's cross-entropy, version-1 and version-2 files, the CLI, an RQ-VAE's
qualities, and every bad-input case (clear errors, no partial files).

A small VQ-VAE, its PixelCNN prior (for version-1 files) and its context model are trained
here for a few seconds on structured 16x16 images (4x4 code grids, K = 32), and a small
RQ-VAE (depth 3) with its code-stack context model.
"""

import os
import shutil

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaezoo import code_search, codec, integer_entropy, vqz, vqz_v1
from vaezoo.codec import VQZFormatError, VQZModelMismatchError
from helpers import squares

CONFIG = dict(
    input_shape=(16, 16, 3), num_embeddings=32, embedding_dim=16, hidden_channels=32, residual_channels=16,
    num_residual_blocks=1, num_downsamples=2, prior={"filters": 32, "layers": 3},
    context_model={"channels": 16, "layers": 2},
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import vaezoo

    keras.utils.set_random_seed(0)
    train = squares(768)
    model = vaezoo.VQVAE(**CONFIG, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train, epochs=5, batch_size=32, verbose=0)
    model.fit_prior(train, epochs=2, batch_size=64, verbose=0)
    model.fit_context_model(train, epochs=6, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("codec")
    keras_path = str(folder / "tiny-vq.keras")
    model.save(keras_path)
    images = np.round(squares(48, seed=1) * 255).astype(np.uint8)
    return {"model": model, "keras_path": keras_path, "images": images}


def _photo(height, width, seed=0):
    """A smooth colour image of any size (squares tiled and cropped)."""
    tiles = np.round(squares(64, seed=seed) * 255).astype(np.uint8)
    rows = -(-height // 16)
    cols = -(-width // 16)
    grid = np.concatenate([np.concatenate(list(tiles[r * cols : (r + 1) * cols]), axis=1) for r in range(rows)])
    return grid[:height, :width]


def exact_bits(model, grids):
    """-log2 of every code's mass under the frozen context network, coded block by block."""
    return float(np.sum(integer_entropy.code_bits(model.context_network(), grids, block=vqz.BLOCK)))


def test_images_of_any_size_round_trip_their_codes(trained):
    model = trained["model"]
    photos = [_photo(16, 16), _photo(8, 8, 1), _photo(13, 29, 2), _photo(40, 24, 3), _photo(70, 9, 4)]
    data = codec.compress(model, photos)
    header = codec.read_header(data)
    assert header.version == 3 and header.mode == "context" and header.num_images == 5 and header.quality == 1
    assert header.sizes == tuple(p.shape[:2] for p in photos)
    sizes, grids = codec.encode_images(model, photos)
    assert [g.shape for g in grids] == [(4, 4), (2, 2), (4, 8), (10, 6), (18, 3)]
    got_sizes, got_grids = codec.decompress_codes(model, data)
    assert got_sizes == sizes
    for want, got in zip(grids, got_grids):
        np.testing.assert_array_equal(got, want)
    restored = codec.decompress(model, data)
    assert isinstance(restored, list) and [r.shape for r in restored] == [p.shape for p in photos]
    # each image is the decoder's output for its own codes, cropped to the original size
    padded = np.asarray(model.decode_grid(grids[2][None]))[0]
    np.testing.assert_allclose(restored[2], padded[:13, :29], rtol=0, atol=1e-6)


def test_streams_pack_small_blocks_of_one_shape_and_count_without_listing():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shapes = [tuple(rng.integers(1, 60, 2)) for _ in range(rng.integers(1, 40))]
        streams = vqz.streams_of(shapes)
        assert vqz.stream_count(shapes) == len(streams)
        members = [m for _, ms in streams for m in ms]
        assert len(members) == sum(len(vqz.blocks(s)) for s in shapes)  # every block exactly once
        for shape, ms in streams:
            assert 1 <= len(ms) and (len(ms) == 1 or len(ms) * shape[0] * shape[1] <= vqz.STREAM_CODES)
            assert all((r.stop - r.start, c.stop - c.start) == shape for _, r, c in ms)
    thumbnails = vqz.streams_of([(8, 8)] * 40)  # 16 thumbnails (1,024 codes) per stream
    assert [len(ms) for _, ms in thumbnails] == [16, 16, 8]
    assert [g for g, _, _ in thumbnails[1][1]] == list(range(16, 32))
    photo = vqz.streams_of([(40, 20)])  # blocks 16x16 x2, 16x4 x2, 8x16, 8x4: shapes in first-seen order
    assert [(shape, len(ms)) for shape, ms in photo] == [((16, 16), 2), ((16, 4), 2), ((8, 16), 1), ((8, 4), 1)]


def test_thumbnails_sharing_a_stream_cost_less_than_a_stream_each(trained):
    model, images = trained["model"], trained["images"]
    sizes, grids = codec.encode_images(model, images)
    shared = vqz.encode_grids(grids, model.context_network())
    alone = [vqz.encode_grids([grid], model.context_network())[0] for grid in grids]
    assert len(shared) == -(-len(grids) // (vqz.STREAM_CODES // grids[0].size))
    # a stream's flush and its length varint are paid once per stream, not once per image
    assert sum(map(len, shared)) + len(shared) < sum(map(len, alone)) + len(alone) - len(grids)
    got = vqz.decode_grids(shared, [g.shape for g in grids], model.context_network())
    np.testing.assert_array_equal(np.stack(got), np.stack(grids))


def test_streams_equal_a_plain_sequential_coder(trained, monkeypatch):
    """`encode_grids` (first group computed once per shape, masses and range coding on a worker
    thread beside the next network pass, several passes) writes what a plain loop writes: each
    stream's blocks group by group, masses from the full-grid reference network."""
    import constriction

    network = trained["model"].context_network()
    rng = np.random.default_rng(3)
    shapes = [(4, 4)] * 70 + [(3, 5), (4, 4), (2, 2), (3, 5)]
    grids = [rng.integers(0, network.num_embeddings, shape).astype(np.int32) for shape in shapes]
    monkeypatch.setattr(vqz, "CODES_PER_PASS", 64)  # several passes, a few streams each
    got = vqz.encode_grids(grids, network)
    family = constriction.stream.model.Categorical(perfect=False)
    expected = []
    for shape, members in vqz.streams_of(shapes):
        encoder = constriction.stream.queue.RangeEncoder()
        blocks = np.stack([grids[g][rows, cols] for g, rows, cols in members])
        groups = integer_entropy.group_map(*shape)
        for group in range(integer_entropy.NUM_GROUPS):
            where = groups == group
            logits = network.logits(integer_entropy.context_input(blocks, groups, group, network.num_embeddings))
            masses = integer_entropy.masses(logits[:, where].reshape(-1, network.num_embeddings), network.table)
            encoder.encode(blocks[:, where].reshape(-1), family, masses / 2.0**integer_entropy.PRECISION)
        expected.append(encoder.get_compressed().astype("<u4").tobytes())
    assert len(vqz.streams_of(shapes)) > 3 and got == expected
    np.testing.assert_array_equal(np.concatenate([g.ravel() for g in vqz.decode_grids(got, shapes, network)]),
                                  np.concatenate([g.ravel() for g in grids]))


def test_one_size_gives_an_array_and_the_training_size_matches_encode_to_codes(trained):
    model, images = trained["model"], trained["images"]
    data = codec.compress(model, images)
    restored = codec.decompress(model, data)
    assert restored.shape == images.shape and restored.dtype == np.float32
    codes = np.asarray(model.encode_to_codes(images))
    np.testing.assert_array_equal(np.stack(codec.decompress_codes(model, data)[1]), codes)
    np.testing.assert_allclose(restored, np.asarray(model.decode_codes(codes)), rtol=0, atol=1e-6)


def test_size_is_the_exact_models_cross_entropy(trained):
    model, images = trained["model"], trained["images"]
    data = codec.compress(model, images)
    header = codec.read_header(data)
    ideal = exact_bits(model, codec.encode_images(model, images)[1])
    streams = len(header.stream_lengths)
    # a range coder costs the model's bits plus at most a few words of flushing per stream
    assert ideal <= header.payload_length * 8 <= ideal + 64 * streams, (header.payload_length * 8, ideal)
    assert header.payload_length * 8 < images.shape[0] * 16 * 5  # beats 5 bits per code
    one = codec.compress(model, images[:1])
    assert len(one) - codec.read_header(one).payload_length <= 16  # the container costs at most 16 bytes


def test_fixed_mode_and_models_without_context_model(trained):
    import vaezoo

    model, images = trained["model"], trained["images"]
    sizes, grids = codec.encode_images(model, images)
    data = codec.compress_codes(model, grids, sizes, mode="fixed")
    header = codec.read_header(data)
    assert header.mode == "fixed" and header.payload_length == -(-len(images) * 16 * 5 // 8)
    np.testing.assert_array_equal(np.stack(codec.decompress_codes(model, data)[1]), np.stack(grids))

    plain = vaezoo.VQVAE(**{**CONFIG, "num_embeddings": 5, "context_model": None}, seed=3)
    data = codec.compress(plain, images[:3])  # auto: no context model, so fixed ceil(log2 5) = 3 bits
    assert codec.read_header(data).mode == "fixed" and codec.read_header(data).payload_length == 18
    with pytest.raises(ValueError, match="context_model"):
        codec.compress(plain, images[:3], mode="context")


def test_version_1_files_still_decode(trained):
    model, images = trained["model"], trained["images"][:6]
    codes = np.asarray(model.encode_to_codes(images))
    old = vqz_v1.compress_codes(model, codes, mode="prior", model_name="tiny-vq")
    assert codec.read_header(old).version == 1
    np.testing.assert_array_equal(np.stack(codec.decompress_codes(model, old)[1]), codes)
    np.testing.assert_allclose(codec.decompress(model, old), np.asarray(model.decode_codes(codes)), atol=1e-6)


def test_version_2_files_still_decode():
    """`tests/fixtures/vqz_v2_vq_vae_cifar.npz`: a version-2 file of three CIFAR-10 test images
    and a 27x64 crop, written by commit 5af762d's `vqz.pack` with the then shipped `vq-vae-cifar`
    (today's `vq-vae-cifar-groups5`), and the code grids it was written from. The header finds
    that model (`vaezoo decompress FILE`); today's `vq-vae-cifar` (another context model) is refused."""
    import vaezoo
    from vaezoo.registry import load_codec_model

    fixture = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "vqz_v2_vq_vae_cifar.npz"))
    data = fixture["vqz"].tobytes()
    header = codec.read_header(data)
    assert data[:4] == b"VQZ\x02" and header.version == 2 and header.quality == 1 and header.mode == "context"
    for model in (vaezoo.load("vq-vae-cifar-groups5"), load_codec_model(header)):
        sizes, grids = codec.decompress_codes(model, data)
        assert sizes == [tuple(s) for s in fixture["sizes"]] == [(32, 32)] * 3 + [(27, 64)]
        for i, grid in enumerate(grids):
            np.testing.assert_array_equal(grid, fixture[f"grid_{i}"])
    with pytest.raises(VQZModelMismatchError):
        codec.decompress_codes(vaezoo.load("vq-vae-cifar"), data)


@pytest.mark.parametrize("fixture_name, quality, model_id, kept_as", [
    # commit a1a8f42's rq-vae-cifar: the first weights with their first context model
    ("vqz_v3_rq_vae_cifar.npz", 3, "abc09ac9", "rq-vae-cifar-groups5"),
    # commit 96e3618's rq-vae-cifar: the same weights with the raster context model
    ("vqz_v3_rq_vae_cifar_2026_12_03.npz", 8, "e029936b", "rq-vae-cifar-2026-12-03"),
])
def test_rq_vae_cifar_files_of_earlier_releases_still_decode(fixture_name, quality, model_id, kept_as):
    """A version-3 file of three CIFAR-10 test images and a 27x64 image, written by an earlier
    commit's `codec.compress` with the then shipped `rq-vae-cifar`, and the code stacks it was
    written from: the model that keeps those weights (`kept_as`) and the model the header names
    both give the stacks back bit for bit (a change of those weights or of the coder breaks this);
    today's `rq-vae-cifar` (other weights) is refused."""
    import vaezoo
    from vaezoo.registry import load_codec_model

    fixture = np.load(os.path.join(os.path.dirname(__file__), "fixtures", fixture_name))
    data = fixture["vqz"].tobytes()
    header = codec.read_header(data)
    assert data[:4] == b"VQZ\x03" and header.quality == quality and header.stacked and header.model_id == model_id
    for model in (vaezoo.load(kept_as), load_codec_model(header)):
        sizes, stacks = codec.decompress_codes(model, data)
        assert sizes == [tuple(s) for s in fixture["sizes"]] == [(32, 32)] * 3 + [(27, 64)]
        for i, stack in enumerate(stacks):
            np.testing.assert_array_equal(stack, fixture[f"grid_{i}"])
        assert [np.shape(stack) for stack in stacks] == [(8, 8, quality)] * 3 + [(7, 16, quality)]
    with pytest.raises(VQZModelMismatchError):
        codec.decompress_codes(vaezoo.load("rq-vae-cifar"), data)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["context", "fixed"]))
def test_random_code_grids_round_trip(trained, data, mode):
    model = trained["model"]
    sizes = data.draw(st.lists(st.tuples(st.integers(8, 90), st.integers(8, 90)), min_size=1, max_size=3))
    grids = [np.asarray(data.draw(st.lists(st.integers(0, 31), min_size=g[0] * g[1], max_size=g[0] * g[1])),
                        np.int32).reshape(g) for g in (vqz.grid_shape(s, 4) for s in sizes)]
    blob = codec.compress_codes(model, grids, sizes, mode=mode)
    got_sizes, got = codec.decompress_codes(model, blob)
    assert got_sizes == [tuple(s) for s in sizes]
    for want, have in zip(grids, got):
        np.testing.assert_array_equal(have, want)


# --------------------------------------------------------------------- bad input
def test_bad_images_raise_before_anything_is_written(trained, tmp_path):
    model, images = trained["model"], trained["images"]
    path = tmp_path / "out.vqz"
    with pytest.raises(ValueError, match=r"RGB images \(height, width, 3\)"):
        codec.write_vqz(path, model, images[..., :1])  # a grey image for an RGB model
    with pytest.raises(ValueError, match="at least 8 pixels"):
        codec.write_vqz(path, model, [images[0], np.zeros((7, 30, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        codec.write_vqz(path, model, np.full((1, 16, 16, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        codec.compress_codes(model, [np.full((4, 4), 32)], [(16, 16)])
    with pytest.raises(ValueError, match=r"shape \(4, 4\)"):
        codec.compress_codes(model, [np.zeros((3, 4), np.int32)], [(16, 16)])
    with pytest.raises(ValueError, match="mode"):
        codec.compress(model, images[:1], mode="zip")
    with pytest.raises(TypeError, match="VQVAE"):
        codec.compress(object(), images[:1])
    with pytest.raises(ValueError, match="no images"):
        codec.compress(model, [])
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def good_file(trained):
    return codec.compress(trained["model"], [_photo(16, 16), _photo(40, 72, 1)])


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: d[:-10], "CRC32|corrupted|truncated"),
        (lambda d: d[:12], "truncated"),
        (lambda d: b"", "not a .vqz"),
        (lambda d: b"PK\x03\x04" + d[4:], "not a .vqz"),
        (lambda d: b"VQZ\x04" + d[4:], "unsupported .vqz format version 4"),
        (lambda d: d[:-20] + bytes([d[-20] ^ 0x40]) + d[-19:], "corrupted .vqz"),
        (lambda d: d + b"\x00\x00\x00\x00", "corrupted .vqz"),
        (lambda d: d[:8] + bytes([d[8] | 0x80]) + d[9:], "unknown flags"),
    ],
    ids=["truncated-end", "truncated-header", "empty", "magic", "version", "flipped-bit", "trailing", "flags"],
)
def test_damaged_files_raise_vqz_format_error(trained, good_file, tmp_path, mangle, message):
    path = tmp_path / "bad.vqz"
    path.write_bytes(mangle(good_file))
    with pytest.raises(VQZFormatError, match=message):
        codec.read_vqz(path, trained["model"])
    assert issubclass(VQZFormatError, ValueError)


@pytest.mark.parametrize("claim, message", [
    (b"\x01\xa0\x8d\x06\xa0\x8d\x06", "100000x100000 image"),  # one image of 100,000 x 100,000
    (b"\xff\xff\xff\x7f", "images; this reader accepts"),      # 268 million images
])
def test_size_claims_are_refused_before_anything_is_allocated(trained, good_file, claim, message):
    forged = good_file[:9] + claim + b"\x00" * 8
    with pytest.raises(VQZFormatError, match=message):
        codec.decompress(trained["model"], forged)


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


def test_cli_compress_decompress_any_size(trained, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    model = trained["model"]
    photos = [trained["images"][0], _photo(21, 35, 5)]
    pngs = _write_pngs(photos, tmp_path)
    path = str(tmp_path / "two.vqz")
    assert main(["compress", *pngs, "--model", trained["keras_path"], "-o", path]) == 0
    assert codec.read_header(path).sizes == ((16, 16), (21, 35))
    out = tmp_path / "decoded"
    assert main(["decompress", path, "--model", trained["keras_path"], "-o", str(out)]) == 0
    written = sorted(os.listdir(out))
    assert written == ["image_0000.png", "image_0001.png"]
    expected = codec.read_vqz(path, model)  # in-memory model, same weights
    for name, want in zip(written, expected):
        decoded = np.asarray(Image.open(out / name))
        assert decoded.shape == want.shape
        assert np.max(np.abs(decoded.astype(int) - np.round(want * 255).astype(int))) <= 1
    assert "bytes/image" in capsys.readouterr().out


def test_cli_decompresses_many_files_each_named_after_its_file(trained, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    model = trained["model"]
    paths = []
    for name, image in (("cat", trained["images"][0]), ("dog", _photo(21, 35, 5))):
        paths.append(str(tmp_path / f"{name}.vqz"))
        codec.write_vqz(paths[-1], model, [image])
    out = tmp_path / "decoded"
    assert main(["decompress", *paths, "--model", trained["keras_path"], "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["cat_0000.png", "dog_0000.png"]
    for path, name in zip(paths, ("cat_0000.png", "dog_0000.png")):
        want = codec.read_vqz(path, model)[0]  # decoded alone
        decoded = np.asarray(Image.open(out / name)).astype(int)
        assert decoded.shape == want.shape
        assert np.max(np.abs(decoded - np.round(want * 255).astype(int))) <= 1
    assert "2 files: 2 image(s)" in capsys.readouterr().out

    broken = tmp_path / "broken.vqz"
    broken.write_bytes(open(paths[1], "rb").read()[:12])
    twin = tmp_path / "other"
    twin.mkdir()
    codec.write_vqz(twin / "cat.vqz", model, [trained["images"][1]])
    for files, message in (([paths[0], str(broken)], "file 1"), ([paths[0], str(twin / "cat.vqz")], "cat_0000.png")):
        never = tmp_path / "never"
        assert main(["decompress", *files, "--model", trained["keras_path"], "-o", str(never)]) == 2
        assert message in capsys.readouterr().err
        assert not never.exists()


def test_cli_bad_input_writes_nothing(trained, good_file, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    good = _write_pngs(trained["images"][:1], tmp_path)
    small = str(tmp_path / "small.png")
    Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(small)
    grey = str(tmp_path / "grey.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(grey)
    path = tmp_path / "never.vqz"
    for bad, message in ((small, "at least 8 pixels"), (grey, "1 channel")):
        assert main(["compress", *good, bad, "--model", trained["keras_path"], "-o", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and os.path.basename(bad) in err
    assert not path.exists()

    broken = tmp_path / "broken.vqz"
    broken.write_bytes(good_file[:12])
    out = tmp_path / "decoded"
    assert main(["decompress", str(broken), "--model", trained["keras_path"], "-o", str(out)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert not out.exists()

    assert main(["compress", *good, "--model", "no-such-model-xyz", "-o", str(path)]) == 2
    assert "no-such-model-xyz" in capsys.readouterr().err
    assert not path.exists()


# --------------------------------------------------------------------- the LiteRT path
@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    from vaezoo.export.tflite import export_tflite

    folder = tmp_path_factory.mktemp("bundle")
    export_tflite(trained["model"], str(folder), variants=("float32",))
    return str(folder)


def test_every_path_writes_the_same_bytes_and_reads_every_other(trained, bundle):
    model = trained["model"]
    rng = np.random.default_rng(5)
    sizes = [(16, 16)] * 40 + [(37, 70), (8, 8)]
    grids = [rng.integers(0, 32, vqz.grid_shape(s, 4)).astype(np.int32) for s in sizes[:40]]
    grids += list(codec.encode_images(model, [_photo(37, 70), _photo(8, 8, 2)])[1])
    desktop = codec.compress_codes(model, grids, sizes)
    paths = {"desktop": model}
    for resolver in integer_entropy.RESOLVERS:
        for threads in (1, 2):
            paths[f"{resolver}-{threads}"] = codec.LiteRTCodecModel(bundle, resolver=resolver, num_threads=threads)
    for name, path in paths.items():
        assert codec.compress_codes(path, grids, sizes) == desktop, name
    for name, path in paths.items():
        _, decoded = codec.decompress_codes(path, desktop)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, grids)), name


@pytest.mark.parametrize("schedule", ["groups8", "raster"])
def test_a_model_with_another_schedule_codes_with_it_on_every_path(tmp_path, schedule):
    """The schedule is the model's: its config, its frozen network, its LiteRT bundle's
    context.npz; desktop and LiteRT write the same bytes and read each other's (a tiny random
    network: the context model is left untrained). "raster" is a `RasterContextNetwork`."""
    import vaezoo
    from vaezoo.export.tflite import export_tflite

    config = {**CONFIG, "prior": None, "context_model": {"channels": 8, "layers": 1, "schedule": schedule}}
    model = vaezoo.VQVAE(**config, seed=4)
    assert vaezoo.VQVAE.from_config(model.get_config()).context_network().schedule == schedule
    network = model.context_network()
    expected = integer_entropy.RasterContextNetwork if schedule == "raster" else integer_entropy.IntegerContextNetwork
    assert network.schedule == schedule and isinstance(network, expected)
    rng = np.random.default_rng(6)
    sizes = [(16, 16)] * 6 + [(37, 70)]
    grids = [rng.integers(0, 32, vqz.grid_shape(size, 4)).astype(np.int32) for size in sizes]
    desktop = codec.compress_codes(model, grids, sizes)
    ideal = float(np.sum(integer_entropy.code_bits(network, grids)))  # the schedule's rate, not the default's
    header = codec.read_header(desktop)
    assert ideal <= 8 * header.payload_length <= ideal + 64 * len(header.stream_lengths)
    export_tflite(model, str(tmp_path), variants=("float32",))
    device = codec.LiteRTCodecModel(str(tmp_path))
    assert device.context.schedule == schedule and codec.compress_codes(device, grids, sizes) == desktop
    for path in (model, device):
        _, decoded = codec.decompress_codes(path, desktop)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, grids))
    with pytest.raises(vaezoo.validation.ConfigError, match="schedule must be one of"):
        vaezoo.VQVAE(**{**config, "context_model": {"schedule": "groups7"}})
    with pytest.raises(vaezoo.validation.ConfigError, match="condition_depths must be 1"):
        vaezoo.RQVAE(**{**RQ_CONFIG, "context_model": {"schedule": "raster", "condition_depths": 2}})


def test_litert_images_round_trip_and_decode_on_the_desktop(trained, bundle):
    model = trained["model"]
    device = codec.LiteRTCodecModel(bundle)
    photos = [trained["images"][3], _photo(29, 45, 6)]
    data = codec.compress(device, photos)
    sizes, grids = codec.encode_images(device, photos)
    _, desktop_grids = codec.decompress_codes(model, data)  # the desktop reads the device's file exactly
    assert all(np.array_equal(a, b) for a, b in zip(desktop_grids, grids))
    restored = codec.decompress(device, data)
    assert [r.shape for r in restored] == [p.shape for p in photos]
    keras_images = codec.decompress(model, data)
    for a, b in zip(restored, keras_images):  # float32 LiteRT decoder vs Keras: the same pixels
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    # the float32 encoder picks the Keras codes (a tie could differ; none does on these images)
    assert all(np.array_equal(a, b) for a, b in zip(grids, codec.encode_images(model, photos)[1]))


def test_a_damaged_or_mismatched_bundle_is_refused(trained, bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    with open(copy / "context.npz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="does not match the sha256 its manifest records"):
        codec.LiteRTCodecModel(str(copy))
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        codec.LiteRTCodecModel(str(tmp_path))
    with pytest.raises(ValueError, match="no 'full_int8' variant"):
        codec.LiteRTCodecModel(bundle, variant="full_int8")
    import vaezoo

    other = vaezoo.VQVAE(**CONFIG, seed=7)  # a bundle of other weights cannot read this model's files
    data = codec.compress(other, trained["images"][:2])
    with pytest.raises(VQZModelMismatchError, match="weights sha256"):
        codec.decompress(codec.LiteRTCodecModel(bundle), data)


NO_TENSORFLOW = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tensorflow_probability"):
            raise ImportError(f"{name} is not on this device")
sys.meta_path.insert(0, Block())
from vaezoo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_cli_runs_on_litert_alone(trained, bundle, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    photo = _photo(24, 40, 8)
    png = str(tmp_path / "photo.png")
    Image.fromarray(photo).save(png)
    out = str(tmp_path / "photo.vqz")
    run = [sys.executable, "-c", NO_TENSORFLOW]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(run + ["compress", png, "--tflite", bundle, "-o", out], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(run + ["decompress", out, "--tflite", bundle, "-o", str(tmp_path / "png")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    decoded = np.asarray(Image.open(tmp_path / "png" / "image_0000.png"))
    assert decoded.shape == photo.shape
    expected = codec.decompress(codec.LiteRTCodecModel(bundle), open(out, "rb").read())[0]
    assert np.max(np.abs(decoded.astype(int) - np.round(expected * 255).astype(int))) <= 1
    blocked = subprocess.run(run[:2] + [NO_TENSORFLOW.replace("from vaezoo.cli import main\nsys.exit(main(sys.argv[1:]))",
                                                              "import vaezoo.models")],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert blocked.returncode != 0 and "not on this device" in blocked.stderr  # the blocker works


# --------------------------------------------------------------------- large images: tiles
from vaezoo import tiling  # noqa: E402


def _measured_halo(model):
    """The receptive fields of the model's Keras encoder and decoder, measured: change one
    input position and see which outputs change (in codes, along rows; the nets are square)."""
    s = model.stride
    rng = np.random.default_rng(0)
    size = 24 * s  # 24 codes: wide enough for the fields measured here
    x = rng.random((1, size, size, model.image_shape[-1])).astype(np.float32)
    base = np.asarray(model.encoder(x))
    encoder = 0
    for p in range(10 * s, 11 * s):  # every phase of a pixel within its code
        y = x.copy()
        y[0, p, size // 2] += 1.0
        rows = np.nonzero(np.abs(np.asarray(model.encoder(y)) - base).max(axis=(0, 2, 3)) > 0)[0]
        encoder = max(encoder, int(np.abs(rows - p // s).max()))
    z = rng.normal(size=(1, 24, 24, model.embedding_dim)).astype(np.float32)
    base = np.asarray(model.decoder(z))
    z[0, 12, 12] += 1.0
    rows = np.nonzero(np.abs(np.asarray(model.decoder(z)) - base).max(axis=(0, 2, 3)) > 0)[0]
    decoder = int(np.abs(rows // s - 12).max())
    return {"encoder": encoder, "decoder": decoder}


@pytest.mark.parametrize("shape", [None, (1, 0), (3, 2)])
def test_the_receptive_field_from_the_config_is_the_measured_one(trained, shape):
    import vaezoo

    if shape is None:
        model = trained["model"]
    else:
        model = vaezoo.VQVAE(**{**CONFIG, "num_downsamples": shape[0], "num_residual_blocks": shape[1],
                                "prior": None, "context_model": None}, seed=1)
        model.build_from_images()
    halo = tiling.receptive_field(model.get_config())
    assert halo == _measured_halo(model)
    # the computed field for the zoo's architecture, by hand: 4x4/2 convs, 3x3, 2 x (3x3, 1x1)
    assert tiling.receptive_field({"num_downsamples": 2, "num_residual_blocks": 2}) == {"encoder": 4, "decoder": 4}


def _tiled_and_whole(path, budget):
    """The same codec model twice: tiles of at most `budget` pixels, and whole images."""
    import copy

    tiled, whole = copy.copy(path), copy.copy(path)
    tiled.max_tile_pixels, whole.max_tile_pixels = budget, 1 << 40
    return tiled, whole


@pytest.mark.parametrize("path", ["keras", "litert"])
def test_tiles_give_the_whole_image_codes_and_pixels(trained, bundle, path):
    model = trained["model"]
    base = codec.codec_model(model) if path == "keras" else codec.LiteRTCodecModel(bundle)
    budget = 48 * 48  # 12 codes a side with the halo of 3: interiors of 6 codes
    tiled, whole = _tiled_and_whole(base, budget)
    photos = [_photo(75, 101, 7), _photo(40, 200, 8), _photo(16, 16, 9)]  # several tiles, a ragged edge, one tile
    sizes, want = codec.encode_images(whole, photos)
    _, got = codec.encode_images(tiled, photos)
    assert len(list(tiling.tiles(want[0].shape, base.halo["encoder"], base.stride, budget))) == 4 * 5
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    assert codec.compress(tiled, photos) == codec.compress(whole, photos)
    want_pixels = codec.decode_images(whole, sizes, want)
    got_pixels = codec.decode_images(tiled, sizes, want)
    for w, g, p in zip(want_pixels, got_pixels, photos):
        assert g.shape == p.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-4)
    # negative control: one code less of halo than the receptive field changes codes and pixels
    padded = codec._pad(photos[0] / np.float32(255), base.stride)
    short = tiling.encode_tiled(base.encode, padded, base.stride, base.halo["encoder"] - 1, budget)
    assert (short != want[0]).sum() > 0
    short = tiling.decode_tiled(base.decode, want[0], base.stride, base.halo["decoder"] - 1, budget, sizes[0])
    assert np.abs(short - want_pixels[0]).max() > 1e-3


def test_a_batch_of_whole_images_stays_within_the_budget(trained):
    seen = []
    base = codec.codec_model(trained["model"])
    tiled, _ = _tiled_and_whole(base, 4 * 16 * 16)  # four 16x16 images a pass
    tiled.encode = lambda images: (seen.append(images.shape), base.encode(images))[1]
    sizes, grids = codec.encode_images(tiled, trained["images"][:10])
    assert seen == [(4, 16, 16, 3), (4, 16, 16, 3), (2, 16, 16, 3)]
    np.testing.assert_array_equal(np.stack(grids), np.asarray(trained["model"].encode_to_codes(trained["images"][:10])))


SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee")


@pytest.fixture(scope="module")
def zoo_photos():
    """The zoo's vq-vae-cifar and three real photographs larger than 256x256 (scikit-image's)."""
    import skimage.data

    import vaezoo

    return vaezoo.load("vq-vae-cifar"), [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]


def _psnr(mse):
    return 10 * np.log10(1.0 / mse)


def _near(lines, length, width=2):
    """A mask of the positions within `width` of any of `lines` (pixel boundaries) along one axis."""
    index = np.arange(length)
    return np.any([(index >= b - width) & (index < b + width) for b in lines if 0 < b < length], axis=0)


def test_real_photos_round_trip_through_a_file_in_tiles_without_seams(zoo_photos, tmp_path):
    model, photos = zoo_photos
    assert all(min(p.shape[:2]) > 256 for p in photos)
    budget = 128 * 128  # interiors of 24 codes (96 pixels): a dozen tiles per photo
    tiled, whole = _tiled_and_whole(codec.codec_model(model), budget)
    path = tmp_path / "photos.vqz"
    codec.write_vqz(path, tiled, photos)
    sizes, grids = codec.decompress_codes(tiled, path.read_bytes())
    assert sizes == [p.shape[:2] for p in photos]
    for got, want in zip(grids, codec.encode_images(whole, photos)[1]):
        np.testing.assert_array_equal(got, want)  # exact codes through the file, tiled == whole
    restored = codec.read_vqz(path, tiled)
    assert [r.shape for r in restored] == [p.shape for p in photos]
    for r, w in zip(restored, codec.decode_images(whole, sizes, grids)):
        np.testing.assert_allclose(r, w, rtol=0, atol=1e-4)
    # no seams: pixels next to 16-code block borders and to tile borders are as good as the rest
    # (the criterion; a weak one: tiles with NO halo still pass it, 27.29 dB interior vs
    # 26.91 next to tile borders, so the equality with the whole-image pass above is what
    # catches a short halo)
    s, side = model.stride, tiling.interior_side(tiled.halo["decoder"], model.stride, budget)
    errors = {"block": [], "tile": [], "interior": []}
    for photo, image in zip(photos, restored):
        h, w = photo.shape[:2]
        q = np.clip(np.round(image * 255), 0, 255) / 255.0
        se = ((q - photo / 255.0) ** 2).mean(axis=-1)
        grid = vqz.grid_shape((h, w), s)
        block = _near(range(0, h, 16 * s), h)[:, None] | _near(range(0, w, 16 * s), w)[None, :]
        tile = (_near([a * s for a, _ in tiling.split(grid[0], side)], h)[:, None]
                | _near([a * s for a, _ in tiling.split(grid[1], side)], w)[None, :])
        errors["block"].append(se[block & ~tile])
        errors["tile"].append(se[tile])
        errors["interior"].append(se[~block & ~tile])
    psnr = {k: _psnr(np.concatenate(v).mean()) for k, v in errors.items()}
    assert psnr["interior"] > 25, psnr  # vq-vae-cifar on these photos: 27.3 dB
    assert abs(psnr["block"] - psnr["interior"]) < 0.5, psnr
    assert abs(psnr["tile"] - psnr["interior"]) < 0.5, psnr


@pytest.mark.slow
@pytest.mark.parametrize("name, count, qualities", [("vq-vae-cifar", 2000, (None,)), ("rq-vae-cifar", 200, (1, 8))])
def test_zoo_model_files_are_identical_on_every_runtime_for_cifar_images(shared_data_dir, tmp_path, name, count,
                                                                         qualities):
    """The issue's check at scale: a zoo model's codes of CIFAR-10 (JPEG q75 copy) test images
    (2,000 for vq-vae-cifar; 200 at its lowest and highest quality for rq-vae-cifar) give the same bytes on the
    desktop path and on LiteRT with every kernel set and thread count, and each path decodes the
    desktop file to exactly those codes."""
    import vaezoo
    from vaezoo.data import load_image_tar
    from vaezoo.export.tflite import export_tflite

    model = vaezoo.load(name)
    images, _ = load_image_tar(os.path.join(shared_data_dir, "cifar10_jpeg.tar.gz"), "test")
    images = images[np.sort(np.random.default_rng(0).choice(len(images), count, replace=False))]
    sizes, grids = codec.encode_images(model, images)
    export_tflite(model, str(tmp_path), variants=("float32",))
    for quality in qualities:
        options = {} if quality is None else {"quality": quality}
        kept = grids if quality is None else [g[..., :quality] for g in grids]
        desktop = codec.compress_codes(model, grids, sizes, **options)
        for resolver in integer_entropy.RESOLVERS:
            for threads in (1, 2):
                device = codec.LiteRTCodecModel(str(tmp_path), resolver=resolver, num_threads=threads)
                assert codec.compress_codes(device, grids, sizes, **options) == desktop, (resolver, threads, quality)
                _, decoded = codec.decompress_codes(device, desktop)
                assert all(np.array_equal(a, b) for a, b in zip(decoded, kept)), (resolver, threads, quality)


# --------------------------------------------------------------------- an RQ-VAE's qualities
RQ_CONFIG = dict(
    input_shape=(16, 16, 3), depth=3, num_embeddings=32, embedding_dim=16, hidden_channels=32, residual_channels=16,
    num_residual_blocks=1, num_downsamples=2, context_model={"channels": 16, "layers": 2, "condition_depths": 1},
)


@pytest.fixture(scope="module")
def trained_rq(tmp_path_factory):
    import vaezoo
    from vaezoo.export.tflite import export_tflite

    keras.utils.set_random_seed(0)
    train = squares(512)
    model = vaezoo.RQVAE(**RQ_CONFIG, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(train, epochs=3, batch_size=32, verbose=0)
    model.fit_context_model(train, epochs=6, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("rq")
    model.save(str(folder / "tiny-rq.keras"))
    export_tflite(model, str(folder / "bundle"), variants=("float32",))
    images = np.round(squares(24, seed=1) * 255).astype(np.uint8)
    return {"model": model, "keras_path": str(folder / "tiny-rq.keras"), "bundle": str(folder / "bundle"),
            "images": images}


def test_each_quality_stores_that_many_depths_and_decodes_them(trained_rq):
    model, images = trained_rq["model"], trained_rq["images"]
    greedy = np.asarray(model.encode_to_codes(images))
    latents = np.asarray(model.latent_grid(images))
    codebooks = model.quantizer.codebooks
    sizes = []
    for quality in (1, 2, 3):
        searched = code_search.residual_codes(latents, codebooks, quality, code_search.DEFAULT_BEAM_WIDTH)
        for beam_width, codes in ((None, searched), (1, greedy[..., :quality])):
            data = codec.compress(model, images, quality=quality, beam_width=beam_width)
            header = codec.read_header(data)
            assert header.version == 3 and header.quality == quality and header.mode == "context"
            _, grids = codec.decompress_codes(model, data)  # the header alone says how many depths
            np.testing.assert_array_equal(np.stack(grids), codes)
            np.testing.assert_allclose(codec.decompress(model, data), np.asarray(model.decode_codes(codes)),
                                       rtol=0, atol=1e-6)
            # the payload is the exact model's cross-entropy of the stored depths plus the flushes
            ideal = float(np.sum(integer_entropy.code_bits(model.context_network(), codes)))
            assert ideal <= header.payload_length * 8 <= ideal + 64 * len(header.stream_lengths)
        sizes.append(len(data))
    assert sizes[0] < sizes[1] < sizes[2]
    assert codec.compress(model, images) == codec.compress(model, images, quality=3)  # the default: full depth


def test_the_code_search_stores_stacks_nearer_the_latents_than_greedy_codes(trained, trained_rq):
    model, images = trained_rq["model"], trained_rq["images"]
    latents = np.asarray(model.latent_grid(images))
    for quality in (2, 3):
        errors = {}
        for beam_width in (1, 4):
            _, grids = codec.decompress_codes(model, codec.compress(model, images, quality=quality,
                                                                   beam_width=beam_width))
            errors[beam_width] = np.mean((np.asarray(model.quantizer.embed(np.stack(grids))) - latents) ** 2)
        assert errors[4] < errors[1]  # equal if the search were skipped
    with pytest.raises(ValueError, match="beam_width=2 needs an RQ-VAE's code search, and a VQ-VAE"):
        codec.compress(trained["model"], trained["images"][:1], beam_width=2)
    for bad, error in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="beam_width must be an integer >= 1"):
            codec.compress(model, images[:1], beam_width=bad)


def test_code_stacks_of_any_size_round_trip_in_both_modes(trained_rq):
    model = trained_rq["model"]
    rng = np.random.default_rng(3)
    sizes = [(16, 16), (37, 70), (8, 8)]
    stacks = [rng.integers(0, 32, (*vqz.grid_shape(s, 4), 3)).astype(np.int32) for s in sizes]
    for mode in ("context", "fixed"):
        for quality in (1, 3):
            data = codec.compress_codes(model, stacks, sizes, mode=mode, quality=quality)
            got_sizes, got = codec.decompress_codes(model, data)
            assert got_sizes == sizes and codec.read_header(data).mode == mode
            for want, have in zip(stacks, got):
                np.testing.assert_array_equal(have, want[..., :quality])
    fixed = codec.read_header(codec.compress_codes(model, stacks, sizes, mode="fixed", quality=2))
    assert fixed.payload_length == -(-sum(np.prod(vqz.grid_shape(s, 4)) for s in sizes) * 2 * 5 // 8)


def test_one_image_files_cost_at_most_16_bytes_more_than_their_payload(trained, trained_rq):
    for model, images, qualities in ((trained["model"], trained["images"], (1,)),
                                     (trained_rq["model"], trained_rq["images"], (1, 2, 3))):
        quality_byte = int(model is trained_rq["model"])
        for quality in qualities:
            for image in (images[0], _photo(60, 44, 3), _photo(100, 120, 4)):  # sides below 128: 1 byte each
                data = codec.compress(model, [image], quality=quality)
                header = codec.read_header(data)
                overhead = len(data) - header.payload_length
                # magic 4, model id 4, flags 1, an RQ-VAE's quality byte, 2 size bytes, crc 4 ...
                expected = 4 + 4 + 1 + quality_byte + 2 + 4
                if max(image.shape[:2]) <= 4 * vqz.BLOCK:  # ... one block, one stream: that is all
                    assert overhead == expected <= 16 and header.stream_lengths == (header.payload_length,)
                else:  # ... and the length varint of every stream but the last
                    lengths = header.stream_lengths[:-1]
                    assert len(lengths) == 3  # 25 x 30 codes: 4 blocks of 4 shapes
                    assert overhead == expected + sum(max(1, -(-n.bit_length() // 7)) for n in lengths)
                assert header.num_images == 1


def test_the_desktop_and_every_litert_kernel_set_write_the_same_code_stack_bytes(trained_rq):
    model, bundle = trained_rq["model"], trained_rq["bundle"]
    rng = np.random.default_rng(6)
    sizes = [(16, 16)] * 20 + [(37, 70)]
    stacks = [rng.integers(0, 32, (4, 4, 3)).astype(np.int32) for _ in range(20)]
    stacks += list(codec.encode_images(model, [_photo(37, 70)])[1])
    for quality in (2, 3):
        desktop = codec.compress_codes(model, stacks, sizes, quality=quality)
        paths = {"desktop": model}
        for resolver in integer_entropy.RESOLVERS:
            for threads in (1, 2):
                paths[f"{resolver}-{threads}"] = codec.LiteRTCodecModel(bundle, resolver=resolver,
                                                                        num_threads=threads)
        for name, path in paths.items():
            assert codec.compress_codes(path, stacks, sizes, quality=quality) == desktop, (name, quality)
            _, decoded = codec.decompress_codes(path, desktop)
            assert all(np.array_equal(a, b[..., :quality]) for a, b in zip(decoded, stacks)), (name, quality)
    device = codec.LiteRTCodecModel(bundle)
    np.testing.assert_array_equal(device.codebooks, codec.codec_model(model).codebooks)  # codebooks.npy
    for quality in (1, 3):  # the same code search from the LiteRT encoder's latents
        np.testing.assert_array_equal(np.stack(codec.encode_images(device, trained_rq["images"], quality=quality)[1]),
                                      np.stack(codec.encode_images(model, trained_rq["images"], quality=quality)[1]))
    data = codec.compress(device, trained_rq["images"][:4], quality=2)  # LiteRT encoder, decoder and context model
    np.testing.assert_allclose(codec.decompress(device, data), codec.decompress(model, data), rtol=0, atol=1e-4)


def test_an_rq_vae_with_a_raster_context_model_codes_with_it_on_every_path(tmp_path):
    """`context_model={"schedule": "raster"}` on an RQ-VAE: its code stacks are coded depth by
    depth in raster order (`RasterContextNetwork` of code stacks) on the desktop and from the
    LiteRT bundle alike, at every quality (a tiny random network: the context model is untrained)."""
    import vaezoo
    from vaezoo.export.tflite import export_tflite

    config = {**RQ_CONFIG, "context_model": {"channels": 16, "layers": 1, "schedule": "raster"}}
    model = vaezoo.RQVAE(**config, seed=5)
    model(np.zeros((1, 16, 16, 3), np.float32))  # builds it (export needs a built model)
    network = vaezoo.RQVAE.from_config(model.get_config()).context_network()
    assert isinstance(network, integer_entropy.RasterContextNetwork) and network.stacked and network.depths == 3
    rng = np.random.default_rng(8)
    sizes = [(16, 16)] * 6 + [(37, 70)]
    stacks = [rng.integers(0, 32, (*vqz.grid_shape(size, 4), 3)).astype(np.int32) for size in sizes]
    export_tflite(model, str(tmp_path), variants=("float32",))
    device = codec.LiteRTCodecModel(str(tmp_path))
    assert device.context.schedule == integer_entropy.RASTER and device.context.stacked
    for quality in (1, 3):
        desktop = codec.compress_codes(model, stacks, sizes, quality=quality)
        ideal = float(np.sum(integer_entropy.code_bits(network, [stack[..., :quality] for stack in stacks])))
        header = codec.read_header(desktop)
        assert ideal <= 8 * header.payload_length <= ideal + 64 * len(header.stream_lengths)
        assert codec.compress_codes(device, stacks, sizes, quality=quality) == desktop
        for path in (model, device):
            _, decoded = codec.decompress_codes(path, desktop)
            assert all(np.array_equal(a, b[..., :quality]) for a, b in zip(decoded, stacks))
    # one-image files of mixed qualities and sizes, decoded together, step by step in lockstep
    files = [codec.compress_codes(model, [stack], [size], quality=1 + i % 3)
             for i, (stack, size) in enumerate(zip(stacks, sizes))]
    for path in (model, device):
        together = codec.decompress_codes_many(path, files)
        assert [got_sizes for got_sizes, _ in together] == [[size] for size in sizes]
        assert all(np.array_equal(grids[0], stack[..., : 1 + i % 3])
                   for i, ((_, grids), stack) in enumerate(zip(together, stacks)))


def test_many_files_decode_together_to_what_each_decodes_alone(trained, trained_rq, tmp_path):
    """`decompress_many` / `decompress_codes_many`: files of several sizes, image counts,
    qualities and modes (and a path) decode together to each file's own codes and images; a
    damaged or foreign file is named by its index."""
    import vaezoo

    rq, vq = trained_rq["model"], trained["model"]
    images = list(trained_rq["images"][:4])
    path = tmp_path / "two.vqz"
    codec.write_vqz(path, rq, images[2:4], quality=2)
    files = [codec.compress(rq, [images[0]], quality=1), codec.compress(rq, [images[1]], quality=3),
             codec.compress(rq, [images[0]], mode="fixed", quality=2), str(path),
             codec.compress(rq, [_photo(40, 72, 1)], quality=3)]
    alone = [codec.decompress_codes(rq, f) for f in files]
    for (sizes, grids), (want_sizes, want) in zip(codec.decompress_codes_many(rq, files), alone):
        assert sizes == want_sizes and len(grids) == len(want)
        assert all(np.array_equal(a, b) for a, b in zip(grids, want))
    for got, want in zip(codec.decompress_many(rq, files), (codec.decompress(rq, f) for f in files)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    vq_files = [codec.compress(vq, [_photo(16, 16, seed)]) for seed in range(3)]
    assert all(np.array_equal(got[1][0], want[1][0]) for got, want in
               zip(codec.decompress_codes_many(vq, vq_files), (codec.decompress_codes(vq, f) for f in vq_files)))
    assert codec.decompress_many(rq, []) == []

    damaged = files[1][:-6] + bytes([files[1][-6] ^ 0x40]) + files[1][-5:]  # a payload bit
    with pytest.raises(VQZFormatError, match=r"corrupted \.vqz \(file 2\)"):  # file 0 is fixed-length coded
        codec.decompress_many(rq, [files[2], files[0], damaged])
    with pytest.raises(VQZFormatError, match=r"file 2: not a \.vqz"):
        codec.decompress_many(rq, [files[0], files[1], b"PK\x03\x04"])
    network, grid = vq.context_network(), np.zeros((4, 4), np.int32)
    with pytest.raises(VQZFormatError, match=r"corrupted \.vqz \(second\): 0 streams for 1"):
        vqz.decode_grid_sets([(vqz.encode_grids([grid], network), [grid.shape]), ([], [grid.shape])], network,
                             names=["first", "second"])
    foreign = codec.compress(vaezoo.RQVAE(**RQ_CONFIG, seed=7), [images[0]])
    with pytest.raises(VQZModelMismatchError, match="file 1: .*weights sha256"):
        codec.decompress_many(rq, [files[0], foreign])


def test_qualities_outside_the_model_and_files_deeper_than_it_are_refused(trained, trained_rq, tmp_path):
    import vaezoo

    rq, vq, images = trained_rq["model"], trained["model"], trained_rq["images"][:2]
    path = tmp_path / "out.vqz"
    for quality in (0, 4, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"quality must be an integer in \[1, 3\]"):
            codec.write_vqz(path, rq, images, quality=quality)
    with pytest.raises(ValueError, match="quality must be 1 for a VQ-VAE"):
        codec.write_vqz(path, vq, images, quality=2)
    assert os.listdir(tmp_path) == []
    deep = codec.compress(rq, images, quality=3)
    shallow = vaezoo.RQVAE(**{**RQ_CONFIG, "depth": 2}, seed=0)
    with pytest.raises(VQZModelMismatchError, match="quality 3 .*an RQ-VAE of depth 2"):
        codec.decompress(shallow, deep)
    with pytest.raises(VQZModelMismatchError, match="quality 3 .*a VQ-VAE"):
        codec.decompress(vq, deep)
    with pytest.raises(VQZModelMismatchError, match="a VQ-VAE's code grids, but the given model is an RQ-VAE"):
        codec.decompress(rq, codec.compress(vq, images))


def test_cli_quality(trained_rq, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    pngs = _write_pngs(trained_rq["images"][:2], tmp_path)
    path = str(tmp_path / "q1.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--quality", "1", "-o", path]) == 0
    assert codec.read_header(path).quality == 1 and "quality 1" in capsys.readouterr().out
    assert main(["decompress", path, "--model", trained_rq["keras_path"], "-o", str(tmp_path / "out")]) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["image_0000.png", "image_0001.png"]
    greedy = str(tmp_path / "greedy.vqz")  # --beam-width reaches the code search
    images = [np.asarray(Image.open(png)) for png in pngs]
    written = []
    for width in (1, 3):
        assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--quality", "3",
                     "--beam-width", str(width), "-o", greedy]) == 0
        with open(greedy, "rb") as f:
            written.append(f.read())
        assert written[-1] == codec.compress(trained_rq["model"], images, quality=3, beam_width=width)
    assert written[0] != written[1]  # the two widths chose other codes for these images
    bad = str(tmp_path / "q9.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--quality", "9", "-o", bad]) == 2
    assert "quality must be an integer in [1, 3]" in capsys.readouterr().err and not os.path.exists(bad)


def _assert_budgets_give_the_highest_quality_that_fits(model, images, depth, beam_width):
    files = [codec.compress(model, images, quality=q, beam_width=beam_width) for q in range(1, depth + 1)]
    assert all(len(a) < len(b) for a, b in zip(files, files[1:]))
    for budget in sorted({len(f) + d for f in files for d in (-1, 0)} | {10**6})[1:]:
        want = max(q for q in range(1, depth + 1) if len(files[q - 1]) <= budget)
        got = codec.compress(model, images, max_bytes=budget, beam_width=beam_width)
        assert got == files[want - 1], (beam_width, budget)  # the very file of that quality
    return files


def test_a_size_budget_gives_the_highest_quality_that_fits(trained_rq):
    import vaezoo

    model, images = trained_rq["model"], trained_rq["images"]
    for beam_width in (1, 4):
        files = _assert_budgets_give_the_highest_quality_that_fits(model, images, 3, beam_width)
        # `quality` caps the search
        assert codec.compress(model, images, quality=2, max_bytes=10**6, beam_width=beam_width) == files[1]
    deep = vaezoo.RQVAE(**{**RQ_CONFIG, "depth": 6}, seed=0)  # untrained: a bisection over six qualities
    _assert_budgets_give_the_highest_quality_that_fits(deep, images, 6, 1)
    with pytest.raises(ValueError, match=f"below the smallest file of these images: {len(files[0])} bytes at quality 1"):
        codec.compress(model, images, max_bytes=len(files[0]) - 1)
    for bad, error in ((0, ValueError), (-5, ValueError), (2.5, TypeError), ("100", TypeError)):
        with pytest.raises(error, match="max_bytes must be an integer >= 1"):
            codec.compress(model, images, max_bytes=bad)


def test_a_size_budget_on_tiled_images_searches_the_whole_image_latents(trained_rq):
    # the budget path keeps float latents (tiled for large images) instead of codes
    model, image = trained_rq["model"], _photo(72, 100, 4)
    whole = codec.compress(model, [image], quality=2)
    tiled = codec.KerasCodecModel(model, max_tile_pixels=32 * 32)  # many tiles, each with its halo
    assert codec.compress(tiled, [image], quality=2) == whole
    assert codec.compress(tiled, [image], max_bytes=len(whole)) == whole
    device = codec.LiteRTCodecModel(trained_rq["bundle"], max_tile_pixels=32 * 32)  # the device path too
    assert codec.compress(device, [image], max_bytes=len(whole)) == codec.compress(device, [image], quality=2)


def test_cli_max_bytes(trained_rq, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    pngs = _write_pngs(trained_rq["images"][:2], tmp_path)
    images = [np.asarray(Image.open(png)) for png in pngs]
    budget = len(codec.compress(trained_rq["model"], images, quality=2))
    want = codec.compress(trained_rq["model"], images, max_bytes=budget)  # tested above
    path = str(tmp_path / "budget.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--max-bytes", str(budget), "-o", path]) == 0
    with open(path, "rb") as f:
        assert f.read() == want
    assert f"quality {codec.read_header(want).quality})" in capsys.readouterr().out
    small = str(tmp_path / "small.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--max-bytes", "20", "-o", small]) == 2
    assert "below the smallest file" in capsys.readouterr().err and not os.path.exists(small)


def _worst_psnr(model, data, images):
    """The lowest PSNR (dB, peak 255) of a file's 8-bit decodings against uint8 `images`."""
    decoded = np.clip(np.round(np.asarray(codec.decompress(model, data), np.float64) * 255.0), 0, 255)
    errors = np.mean((decoded - images.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.min(10.0 * np.log10(255.0**2 / errors)))


def test_a_psnr_target_gives_the_lowest_quality_that_reaches_it(trained_rq):
    model, images = trained_rq["model"], trained_rq["images"]
    for beam_width in (1, 4):
        files = [codec.compress(model, images, quality=q, beam_width=beam_width) for q in (1, 2, 3)]
        worst = [_worst_psnr(model, f, images) for f in files]
        assert worst[0] < worst[1] < worst[2], worst  # the bisection's premise holds for this model
        for target in [1.0] + [w + d for w in worst[:2] for d in (-0.01, 0.01)] + [worst[2] - 0.01]:
            want = min(q for q in (1, 2, 3) if worst[q - 1] >= target)
            got = codec.compress(model, images, min_psnr=target, beam_width=beam_width)
            assert got == files[want - 1], (beam_width, target)  # the very file of that quality
        with pytest.raises(ValueError, match=rf"above what these images reach at quality 3: {worst[2]:.2f} dB \(the "
                                             rf"worst of its {len(images)} 8-bit decodings\)"):
            codec.compress(model, images, min_psnr=worst[2] + 0.01, beam_width=beam_width)
        with pytest.raises(ValueError, match=f"reach at quality 2: {worst[1]:.2f} dB"):  # `quality` caps the search
            codec.compress(model, images, quality=2, min_psnr=worst[1] + 0.01, beam_width=beam_width)
    device = codec.LiteRTCodecModel(trained_rq["bundle"])  # the device path (LiteRT networks) decodes to choose too
    target = _worst_psnr(device, codec.compress(device, images, quality=2), images) - 0.01
    assert codec.compress(device, images, min_psnr=target) == codec.compress(device, images, quality=2)
    for bad, error, message in ((0, ValueError, "must be a finite number > 0"),
                                (float("nan"), ValueError, "must be a finite number > 0"),
                                ("30", TypeError, "must be a number")):
        with pytest.raises(error, match=f"min_psnr {message}"):
            codec.compress(model, images, min_psnr=bad)
    with pytest.raises(ValueError, match="give max_bytes or min_psnr, not both"):
        codec.compress(model, images, max_bytes=10**6, min_psnr=20.0)


def test_cli_min_psnr(trained_rq, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    pngs = _write_pngs(trained_rq["images"][:2], tmp_path)
    images = np.stack([np.asarray(Image.open(png)) for png in pngs])
    target = _worst_psnr(trained_rq["model"], codec.compress(trained_rq["model"], images, quality=2), images) - 0.01
    path = str(tmp_path / "target.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--min-psnr", str(target), "-o", path]) == 0
    with open(path, "rb") as f:
        assert f.read() == codec.compress(trained_rq["model"], images, min_psnr=target)  # tested above
    assert "quality 2)" in capsys.readouterr().out
    high = str(tmp_path / "high.vqz")
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--min-psnr", "99", "-o", high]) == 2
    assert "min_psnr=99.0 dB is above what these images reach" in capsys.readouterr().err
    assert not os.path.exists(high)


def test_compress_each_writes_what_compress_writes_for_each_image_alone(trained_rq):
    model, images = trained_rq["model"], trained_rq["images"][:6]
    files = codec.compress_each(model, images, quality=2)
    _, batch = codec.decompress_codes(model, codec.compress(model, images, quality=2))  # the same batched encoder
    for i, data in enumerate(files):
        header = codec.read_header(data)
        assert header.quality == 2 and header.sizes == (tuple(images.shape[1:3]),)
        assert np.array_equal(codec.decompress_codes(model, data)[1][0], batch[i])
    # a target per file, so the qualities differ: a budget for images of two sizes (an untrained depth-6 model's
    # files grow with the quality) and a PSNR that one image reaches only at quality 3
    import vaezoo

    deep, mixed = vaezoo.RQVAE(**{**RQ_CONFIG, "depth": 6}, seed=0), [images[0], _photo(32, 32, 1)]
    top = codec.compress_each(model, images, quality=3)
    target = min(_worst_psnr(model, f, images[i : i + 1]) for i, f in enumerate(top)) - 0.01  # every image reaches it
    budget = len(codec.compress(deep, [mixed[1]], quality=3))
    for model_, images_, options in ((deep, mixed, {"max_bytes": budget}), (model, images, {"min_psnr": target})):
        each = codec.compress_each(model_, images_, **options)
        assert each == [codec.compress(model_, [image], **options) for image in images_]
        assert len({codec.read_header(f).quality for f in each}) > 1, options
    with pytest.raises(ValueError, match="image 0: max_bytes=10 is below the smallest file"):
        codec.compress_each(model, images, max_bytes=10)
    with pytest.raises(ValueError, match="a.png: min_psnr=99 dB is above"):
        codec.compress_each(model, images[:1], min_psnr=99, names=["a.png"])


def test_cli_output_dir_writes_one_file_per_image(trained_rq, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main

    pngs = _write_pngs(trained_rq["images"][:3], tmp_path)
    images = [np.asarray(Image.open(png)) for png in pngs]
    out = tmp_path / "thumbs"
    assert main(["compress", *pngs, "--model", trained_rq["keras_path"], "--max-bytes", "40",
                 "--output-dir", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["in_0.vqz", "in_1.vqz", "in_2.vqz"]
    for i, image in enumerate(images):
        with open(out / f"in_{i}.vqz", "rb") as f:
            assert f.read() == codec.compress(trained_rq["model"], [image], max_bytes=40)
    assert "3 image(s) ->" in capsys.readouterr().out
    assert main(["decompress", *sorted(str(p) for p in out.iterdir()), "--model", trained_rq["keras_path"],
                 "-o", str(tmp_path / "decoded")]) == 0  # the round trip of thumbnails
    assert sorted(os.listdir(tmp_path / "decoded")) == ["in_0_0000.png", "in_1_0000.png", "in_2_0000.png"]
    os.makedirs(tmp_path / "other")
    twin = str(tmp_path / "other" / "in_0.png")
    shutil.copy(pngs[0], twin)
    assert main(["compress", pngs[0], twin, "--model", trained_rq["keras_path"], "--output-dir",
                 str(tmp_path / "twins")]) == 2
    assert "several images would write the same file (in_0.vqz)" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "twins")
    with pytest.raises(SystemExit):  # one file or one per image, not both
        main(["compress", pngs[0], "--model", trained_rq["keras_path"], "-o", "x.vqz", "--output-dir", "d"])


def test_cli_reconstruct_shows_each_quality_through_its_own_files(trained_rq, tmp_path, capsys):
    from PIL import Image

    from vaezoo.cli import main
    from vaezoo.evaluation import psnr

    model, pngs = trained_rq["model"], _write_pngs(trained_rq["images"][:3], tmp_path)
    images = np.stack([np.asarray(Image.open(png)) for png in pngs])
    out = str(tmp_path / "ladder.png")
    assert main(["reconstruct", trained_rq["keras_path"], *pngs, "--quality", "1", "3", "--scale", "1", "-o", out]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line, quality in zip(printed, (1, 3)):
        files = [codec.compress(model, [image], quality=quality) for image in images]
        decoded = np.round(np.concatenate([codec.decompress(model, f) for f in files]) * 255) / 255
        assert line == f"q{quality}: {np.mean([len(f) for f in files]):.0f} B, {psnr(images / 255, decoded):.1f} dB"
    assert Image.open(out).height == 3 * (16 + 4)  # input, q1 and q3 rows of 16-pixel images (2-pixel borders)
    assert main(["reconstruct", trained_rq["keras_path"], *pngs, "--quality", "4", "-o", out]) == 2
    assert "quality must be an integer in [1, 3]" in capsys.readouterr().err
