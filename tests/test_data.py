"""Data sources and preprocessing: dSprites factors, determinism, npz/folder sources, errors."""

import os

import numpy as np
import pytest
from PIL import Image

from vaezoo import data
from vaezoo.data import DSprites
from vaezoo.validation import ConfigError


def test_dsprites_grid_matches_higgins_et_al():
    sprites = DSprites()
    assert len(sprites) == 737_280 == 3 * 6 * 40 * 32 * 32
    idx = np.array([0, 1, 32, 737_279])
    classes = sprites.factor_classes(idx)
    np.testing.assert_array_equal(classes[0], [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(classes[1], [0, 0, 0, 0, 1])  # posY varies fastest
    np.testing.assert_array_equal(classes[2], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(classes[3], [2, 5, 39, 31, 31])
    np.testing.assert_array_equal(sprites.index_of(classes), idx)
    values = sprites.factor_values(idx)
    np.testing.assert_allclose(values[3, 1:], [1.0, 2 * np.pi * 39 / 40, 1.0, 1.0])
    np.testing.assert_allclose(values[0, 1:], [0.5, 0.0, 0.0, 0.0])


def test_dsprites_images_follow_their_factors():
    sprites = DSprites()
    grid = sprites.factor_classes(np.arange(len(sprites)))
    pick = lambda **f: sprites.index_of([[f.get(n, 0) for n in ("shape", "scale", "orientation", "pos_x", "pos_y")]])[0]
    images = sprites.render([pick(scale=0), pick(scale=5), pick(pos_x=31, scale=5), pick(pos_y=31, scale=5)])
    assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 1}
    area_small, area_big = images[0].sum(), images[1].sum()
    assert area_big > 3 * area_small  # area scales with scale**2 = 4
    centroid = lambda im: np.argwhere(im[..., 0]).mean(axis=0)  # (row, col)
    assert centroid(images[2])[1] > centroid(images[1])[1] + 30  # posX moves right (columns)
    assert centroid(images[3])[0] > centroid(images[1])[0] + 30  # posY moves down (rows)
    assert grid.shape == (737_280, 5)


def test_dsprites_index_errors():
    with pytest.raises(ValueError, match=r"\[0, 737280\)"):
        DSprites().render([737_280])


def test_pipeline_is_deterministic_and_preprocesses():
    spec = {"source": "dsprites", "subset": 64, "preprocess": "scale"}
    a = next(iter(data.make_dataset(spec, 16, seed=3)))
    b = next(iter(data.make_dataset(spec, 16, seed=3)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 64, 64, 1) and set(np.unique(a)) <= {0.0, 1.0}


def _grey_npz(tmp_path, n=64):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    path = tmp_path / "grey.npz"
    np.savez(path, x_train=x, y_train=np.arange(n) % 10)
    return str(path), x


def test_dynamic_binarization_is_a_fresh_bernoulli_draw(tmp_path):
    path, x = _grey_npz(tmp_path, 32)
    spec = {"source": "npz", "path": path, "preprocess": "binarize_dynamic"}
    ds = data.make_dataset(spec, 32, seed=0, shuffle=False)
    it = iter(ds)
    draws = np.stack([next(it).numpy() for _ in range(200)])  # 200 epochs of the same 32 images
    assert set(np.unique(draws)) == {0.0, 1.0}
    assert not np.array_equal(draws[0], draws[1])  # fresh each time
    # the mean over draws estimates the grey level (std of the mean <= 0.5/sqrt(200) = 0.035)
    np.testing.assert_allclose(draws.mean(0)[..., 0], x / 255.0, atol=0.15)
    assert abs(float(draws.mean() - (x / 255.0).mean())) < 0.01


def test_static_binarization_is_one_bernoulli_draw_fixed_per_image(tmp_path):
    path, x = _grey_npz(tmp_path, 32)
    np.savez(path, x_train=x, y_train=np.arange(32))  # labels name the images
    spec = {"source": "npz", "path": path, "preprocess": "binarize_static", "labels": True, "label_key": "y_train"}

    def epochs(seed, n=2):  # one batch is one epoch, reshuffled each time; rows sorted by image
        it = iter(data.make_dataset(spec, 32, seed=seed, shuffle=True))
        batches = [next(it) for _ in range(n)]
        return [b[0].numpy()[np.argsort(b[1].numpy())][..., 0] for b in batches], [b[1].numpy() for b in batches]

    (first, second), (order_1, order_2) = epochs(seed=0)
    assert not np.array_equal(order_1, order_2)  # shuffled differently ...
    np.testing.assert_array_equal(first, second)  # ... yet each image keeps its draw
    assert set(np.unique(first)) == {0.0, 1.0}
    # A Bernoulli(grey level) draw per pixel: in each half of the grey range the fraction of ones
    # matches the mean grey level within 5 binomial standard deviations (rounding, or an
    # inverted draw, gives 0 and 1 here; 5 standard deviations are about 0.06).
    p = x / 255.0
    for part in (p < 0.5, p >= 0.5):
        std = np.sqrt(np.sum(p[part] * (1 - p[part]))) / part.sum()
        assert abs(first[part].mean() - p[part].mean()) < 5 * std, (first[part].mean(), p[part].mean(), std)
    # another seed draws again: each pixel differs with probability 2p(1-p), 1/3 on average
    other = epochs(seed=1, n=1)[0][0]
    assert np.mean(other != first) > 0.25, np.mean(other != first)


def test_dequantization_stays_within_the_pixel_bin(tmp_path):
    path, x = _grey_npz(tmp_path, 32)
    ds = data.make_dataset({"source": "npz", "path": path, "preprocess": "dequantize", "labels": True,
                            "label_key": "y_train"}, 32,
                           seed=0, shuffle=False)
    images, labels = next(iter(ds))
    v = images.numpy()[..., 0] * 256.0
    assert np.all(v >= x) and np.all(v < x + 1.0)
    np.testing.assert_array_equal(labels, np.arange(32) % 10)


def test_image_folder_reads_classes_and_refuses_bad_files(tmp_path):
    for cls in ("cats", "dogs"):
        os.makedirs(tmp_path / cls)
        for i in range(3):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    images, labels = data.load_image_folder(str(tmp_path), (8, 8), 3)
    assert images.shape == (6, 8, 8, 3) and list(labels) == [0, 0, 0, 1, 1, 1]
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="2 file\\(s\\) that are not readable images.*broken.png"):
        data.load_image_folder(str(tmp_path), (8, 8), 3)


def test_empty_folder_and_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        data.list_image_folder(str(tmp_path))
    with pytest.raises(ValueError, match="Unknown data source 'csv'"):
        data.make_dataset({"source": "csv"}, 4)
    with pytest.raises(ValueError, match="Did you mean 'subset'"):
        data.make_dataset({"source": "dsprites", "subsets": 3}, 4)
    with pytest.raises(ValueError, match="preprocess mode 'binarise'"):
        data.make_dataset({"source": "dsprites", "preprocess": "binarise"}, 4)
    with pytest.raises(KeyError, match="has no array 'x'"):
        data.load_npz(_grey_npz(tmp_path)[0], key="x")


def test_real_mnist_loads_from_shared_data(shared_data_dir):
    images, labels = data.load_npz(os.path.join(shared_data_dir, "mnist.npz"), "x_test", "y_test")
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
    assert np.bincount(labels).tolist()[:2] == [980, 1135]  # the canonical MNIST test counts


def test_shuffle_is_uniform_over_a_sorted_source():
    # dSprites is stored sorted by factor (shape slowest): a bounded shuffle buffer would stream
    # squares only for the first ~245k images. The first 512 of a full shuffle cover every shape
    # and scale in roughly equal parts.
    ds = data.make_dataset({"source": "dsprites", "labels": True}, 512, seed=0)
    _, classes = next(iter(ds))
    for factor, size in [(0, 3), (1, 6)]:
        counts = np.bincount(classes.numpy()[:, factor], minlength=size)
        assert counts.min() > 512 / size / 2, (factor, counts)


def test_shuffled_epoch_is_a_permutation(tmp_path):
    path, _ = _grey_npz(tmp_path, 50)
    spec = {"source": "npz", "path": path, "key": "x_train", "label_key": "y_train", "labels": True}
    # y_train is arange % 10; a second copy with unique labels tells the order apart.
    np.savez(path, x_train=np.zeros((50, 8, 8), np.uint8), y_train=np.arange(50))
    epochs = [np.concatenate([y.numpy() for _, y in data.make_dataset(spec, 7, seed=s, repeat=False,
                                                                         drop_remainder=False)])
              for s in (0, 1)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
        assert not np.array_equal(order, np.arange(50))
    assert not np.array_equal(epochs[0], epochs[1])


def test_skip_batches_resumes_the_same_stream(tmp_path):
    # Resuming at batch 5 must give batch 5 of the uninterrupted stream: same shuffle order
    # (epochs of 64 / 16 = 4 batches, so this crosses an epoch) and same binarization draws.
    path, _ = _grey_npz(tmp_path, 64)
    spec = {"source": "npz", "path": path, "preprocess": "binarize_dynamic"}
    full = iter(data.make_dataset(spec, 16, seed=2))
    expected = [next(full).numpy() for _ in range(7)][5:]
    resumed = iter(data.make_dataset(spec, 16, seed=2, skip_batches=5))
    for want in expected:
        np.testing.assert_array_equal(next(resumed).numpy(), want)


def test_streamed_tfds_source_keeps_images_with_their_labels(monkeypatch):
    # tfds itself needs a download here; the stand-in yields what tfds.load(as_supervised=True)
    # yields: (uint8 image, label) pairs. Image i is filled with the value i, so pairs can be checked.
    import tensorflow as tf

    n = 40
    images = np.repeat(np.arange(n, dtype=np.uint8), 4 * 4).reshape(n, 4, 4, 1)
    monkeypatch.setattr(data, "load_tfds", lambda *a: tf.data.Dataset.from_tensor_slices((images, np.arange(n))))
    ds = data.make_dataset({"source": "tfds", "name": "stand_in", "labels": True}, 8, seed=0, repeat=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    np.testing.assert_array_equal(np.sort(ys), np.arange(n))
    np.testing.assert_allclose(xs[:, 0, 0, 0] * 255, ys, atol=1e-4)


def test_card_dataset_names_each_zoo_models_public_data():
    from vaezoo import registry

    names = {name: data.card_dataset(registry.info(name)) for name in registry.list_models()}
    assert names["vae-mnist"] == "mnist" and names["vq-vae-cifar"] == "cifar10"
    assert names["beta-vae-dsprites"] == "dsprites"
    with pytest.raises(ConfigError, match="names no public data set"):
        data.card_dataset({"name": "mine", "data": {"source": "npz", "path": "x.npz"}})


def test_named_images_read_the_local_copy_spread_over_the_split(tmp_path, monkeypatch):
    x_test = np.repeat(np.arange(100, dtype=np.uint8), 4).reshape(100, 2, 2)  # image i holds the value i
    np.savez(tmp_path / "fashion_mnist.npz", x_test=x_test, y_test=np.arange(100) % 10)
    monkeypatch.setattr(data, "load_tfds", lambda *a, **k: pytest.fail("used tfds although a local copy exists"))
    images, labels = data.named_images("fashion_mnist", "test", limit=5, data_dir=str(tmp_path))
    assert images.shape == (5, 2, 2, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0, 0, 0], [0, 24, 49, 74, 99])  # first to last, evenly spaced
    np.testing.assert_array_equal(labels, [0, 4, 9, 4, 9])


def test_load_split_spread_takes_evenly_spaced_images_with_their_labels(tmp_path):
    x_test = np.repeat(np.arange(100, dtype=np.uint8), 4).reshape(100, 2, 2)  # image i holds the value i
    np.savez(tmp_path / "sorted.npz", x_test=x_test, y_test=np.arange(100) // 10)  # sorted by class
    spec = {"source": "npz", "path": str(tmp_path / "sorted.npz"), "label_key": "y_test"}
    images, labels = data.load_split(spec, "test", limit=5, labels=True, batch_size=7, spread=True)
    np.testing.assert_array_equal(np.round(images[:, 0, 0, 0] * 255), [0, 24, 49, 74, 99])
    np.testing.assert_array_equal(labels, [0, 2, 4, 7, 9])
    first, _ = data.load_split(spec, "test", limit=5, batch_size=7)  # the default: the first images, in order
    np.testing.assert_array_equal(np.round(first[:, 0, 0, 0] * 255), [0, 1, 2, 3, 4])
    everything, _ = data.load_split(spec, "test", limit=0, spread=True)
    assert len(everything) == 100


def test_named_images_fall_back_to_tfds_without_a_local_copy(tmp_path, monkeypatch):
    import tensorflow as tf

    calls = []
    images = np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1)

    def stand_in(name, split, data_dir=None, download=False):  # tfds.load would download here
        calls.append((name, split, download))
        return tf.data.Dataset.from_tensor_slices((images, np.array([7, 8, 9])))

    monkeypatch.setattr(data, "load_tfds", stand_in)
    got, labels = data.named_images("mnist", "train", data_dir=str(tmp_path))  # the folder has no mnist.npz
    assert calls == [("mnist", "train", True)]
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(labels, [7, 8, 9])


def test_named_images_render_dsprites():
    images, shapes = data.named_images("dsprites", limit=6, seed=3)
    assert images.shape == (6, 64, 64, 1) and set(np.unique(images)) == {0, 255}
    assert set(shapes) <= {0, 1, 2}
    np.testing.assert_array_equal(images, data.named_images("dsprites", limit=6, seed=3)[0])


def test_named_images_read_the_real_copies(shared_data_dir):
    cifar, labels = data.named_images("cifar10", "test", limit=10, data_dir=shared_data_dir)
    assert cifar.shape == (10, 32, 32, 3) and len(set(labels)) == 10  # spread over the class-sorted archive
    fashion, _ = data.named_images("fashion_mnist", "train", limit=3, data_dir=shared_data_dir)
    assert fashion.shape == (3, 28, 28, 1)
