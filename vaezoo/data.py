"""Data sources and `tf.data` pipelines: tfds names, image folders, numpy arrays / `.npz`, dSprites.

Every source ends as a `tf.data.Dataset` of float32 images in [0, 1] (channels last), or of
`(image, label)` pairs when labels are asked for, after one of the preprocessing modes:

- `"scale"`: uint8 / 255.
- `"binarize_dynamic"`: a fresh Bernoulli draw from the grey level each time an image is used
  (Burda et al. 2016), deterministic given the seed.
- `"binarize_static"`: one Bernoulli draw per image, the same every epoch.
- `"dequantize"`: uniform dequantization `(x * 255 + u) / 256`, u ~ U[0, 1).

Example:
    >>> ds = vaezoo.data.make_dataset({"source": "dsprites", "subset": 1000}, batch_size=64, seed=0)
    >>> images = next(iter(ds))       # (64, 64, 64, 1) float32 in {0, 1}
"""

import contextlib
import math
import os
import warnings

import numpy as np

from vaezoo.validation import ConfigError, check_int, check_keys

PREPROCESS_MODES = ("scale", "binarize_dynamic", "binarize_static", "dequantize")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: the most pixels (width x height) an image file may declare: checked from the file's header
#: before anything is decoded (vaezoo's own limit, whatever Pillow's global
#: `Image.MAX_IMAGE_PIXELS` is set to; the same as `vaezoo.vqz.Limits.max_pixels`).
MAX_IMAGE_PIXELS = 100_000_000


class ImageTooLargeError(ValueError):
    """An image file declares more pixels than the reader's limit (`MAX_IMAGE_PIXELS` or `max_pixels`)."""


# --------------------------------------------------------------------------- dSprites
class DSprites:
    """Procedural dSprites: the exact factor grid of Higgins et al. (2017), rendered on demand.

    Factors (in index order, row-major like the original `latents_classes`): shape 3
    (square, ellipse, heart), scale 6 in [0.5, 1], orientation 40 in [0, 2 pi), posX 32 and
    posY 32 in [0, 1]; 3 * 6 * 40 * 32 * 32 = 737,280 binary 64x64 images. The shapes are
    drawn from implicit equations (pixel centres inside the rotated, scaled shape), so any
    subset renders without the original file.

    Example:
        >>> sprites = DSprites()
        >>> images = sprites.render([0, 1, 737_279])   # uint8 {0, 1}, (3, 64, 64, 1)
        >>> sprites.factor_classes([737_279])
        array([[ 2,  5, 39, 31, 31]])
    """

    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")
    factor_sizes = (3, 6, 40, 32, 32)
    image_shape = (64, 64, 1)

    def __len__(self):
        return math.prod(self.factor_sizes)

    def _check_indices(self, indices):
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"dSprites indices must be integers, got dtype {indices.dtype}.")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ValueError(f"dSprites indices must be in [0, {len(self)}), got [{indices.min()}, {indices.max()}].")
        return indices.astype(np.int64)

    def factor_classes(self, indices):
        """Integer class of each factor, `(n, 5)`."""
        return np.stack(np.unravel_index(self._check_indices(indices), self.factor_sizes), axis=-1)

    def index_of(self, classes):
        """Inverse of `factor_classes`."""
        classes = np.asarray(classes)
        return np.ravel_multi_index(tuple(classes.T), self.factor_sizes)

    def factor_values(self, indices):
        """Real value of each factor, `(n, 5)`: shape id, scale, angle (rad), posX, posY."""
        c = self.factor_classes(indices).astype(np.float64)
        scale = 0.5 + 0.5 * c[:, 1] / (self.factor_sizes[1] - 1)
        angle = 2 * np.pi * c[:, 2] / self.factor_sizes[2]
        pos_x = c[:, 3] / (self.factor_sizes[3] - 1)
        pos_y = c[:, 4] / (self.factor_sizes[4] - 1)
        return np.stack([c[:, 0], scale, angle, pos_x, pos_y], axis=-1)

    def render(self, indices):
        """Images for the given indices: uint8 in {0, 1}, shape `(n, 64, 64, 1)`."""
        values = self.factor_values(indices)
        shape, scale, angle, pos_x, pos_y = (values[:, i, None, None] for i in range(5))
        pixel = np.arange(64) + 0.5
        ys, xs = np.meshgrid(pixel, pixel, indexing="ij")
        # Shape centres range over [12, 52] px; the largest shape has radius ~11 px.
        cx, cy = 12 + 40 * pos_x, 12 + 40 * pos_y
        radius = 11.0 * scale
        dx, dy = (xs - cx) / radius, (ys - cy) / radius
        cos, sin = np.cos(angle), np.sin(angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        square = np.maximum(np.abs(u), np.abs(v)) <= 0.75
        ellipse = u**2 + (v / 0.55) ** 2 <= 1.0
        hx, hy = 1.15 * u, -1.15 * v + 0.15
        heart = (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0
        mask = np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))
        return mask.astype(np.uint8)[..., None]


# --------------------------------------------------------------------------- sources
def load_npz(path, key="x_train", label_key=None):
    """Arrays from an `.npz` file: images (and labels if `label_key`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No .npz file at {path!r}.")
    with np.load(path, allow_pickle=False) as archive:
        for k in [key] + ([label_key] if label_key else []):
            if k not in archive:
                raise KeyError(f"{path!r} has no array {k!r}; it has {sorted(archive.files)}.")
        images = archive[key]
        labels = archive[label_key] if label_key else None
    if images.ndim == 3:  # (n, h, w) greyscale -> channels last
        images = images[..., None]
    return images, labels


def list_image_folder(path):
    """Image files under `path` (recursively) and their class labels (first-level folders).

    Raises a ValueError naming the offending files if the folder is empty or holds files that
    are not images Pillow can open, and `ImageTooLargeError` for a file that declares more than
    `MAX_IMAGE_PIXELS` pixels.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Image folder {path!r} does not exist.")
    files, bad = [], []
    for root, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            full = os.path.join(root, name)
            if name.startswith("."):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                bad.append(full)
                continue
            try:
                with open_image(full) as image:
                    image.verify()
            except ImageTooLargeError:
                raise
            except Exception:
                bad.append(full)
                continue
            files.append(full)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"Image folder {path!r} holds {len(bad)} file(s) that are not readable images "
            f"({', '.join(IMAGE_EXTENSIONS)}): {shown}."
        )
    if not files:
        raise ValueError(f"Image folder {path!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    classes = sorted({os.path.relpath(f, path).split(os.sep)[0] for f in files if os.sep in os.path.relpath(f, path)})
    labels = [classes.index(os.path.relpath(f, path).split(os.sep)[0]) if classes else 0 for f in files]
    return files, np.asarray(labels, np.int64), classes


@contextlib.contextmanager
def open_image(file, name=None, max_pixels=None):
    """Open an image file with Pillow, checking its declared size before anything is decoded.

    The one place vaezoo opens image files. Pillow reads only the header on `Image.open`, so
    the width and height a file declares are known before its pixels are decompressed: a PNG
    of a few kilobytes can declare 50,000 x 50,000 pixels (7.5 GB once decoded).

    Args:
        file: a path or a binary file object.
        name: what the error calls the file (default: the path).
        max_pixels: the most pixels (width x height) accepted; `None`: `MAX_IMAGE_PIXELS`.

    Yields:
        the open `PIL.Image.Image` (closed on exit).

    Raises:
        ImageTooLargeError: the file declares more than `max_pixels` pixels (also when Pillow's
            own decompression-bomb check refuses it first).
        PIL.UnidentifiedImageError, OSError: not an image Pillow reads.

    Example:
        >>> with open_image("photo.png") as image:
        ...     pixels = np.asarray(image.convert("RGB"))
    """
    from PIL import Image

    name = name if name is not None else (os.fspath(file) if isinstance(file, (str, os.PathLike)) else "image")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    with warnings.catch_warnings():  # Pillow's warning band is below vaezoo's limit: the check below decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(file)
        except Image.DecompressionBombError as error:
            raise ImageTooLargeError(f"{name}: the image declares more pixels than vaezoo reads ({limit} pixels, "
                                     f"data.MAX_IMAGE_PIXELS); Pillow: {error}") from None
    with image:
        width, height = image.size
        if width * height > limit:
            raise ImageTooLargeError(f"{name}: the image declares {width}x{height} = {width * height} pixels; "
                                     f"vaezoo reads images up to {limit} pixels (data.MAX_IMAGE_PIXELS); it was "
                                     "not decoded.")
        yield image


#: channels of each Pillow image mode (what `load_image_files(..., resize=False)` accepts).
_MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "YCbCr": 3, "RGBA": 4, "CMYK": 4}


def load_image_files(paths, image_size, channels, resize=True, max_pixels=None):
    """Decode image files to uint8 `(n, height, width, channels)` (a list with `image_size=None`).

    Args:
        paths: image file paths (PNG, JPEG, ... anything Pillow reads).
        image_size: `(height, width)`; `None` (with `resize=False`) keeps every file's own
            size and returns a list of `(height, width, channels)` arrays.
        channels: 1 (grey) or 3 (RGB), or with `resize=False` any count a mode has.
        resize: `True` (data sets, the CLI's reconstructions): convert to grey or RGB and
            resize bilinearly to `image_size`. `False` (the codec): the files must already be
            8-bit images of `image_size` with `channels` channels (palette images are
            expanded); nothing is resized or converted between grey and colour.
        max_pixels: the most pixels a file may declare, checked before it is decoded;
            `None`: `MAX_IMAGE_PIXELS`.

    Raises:
        FileNotFoundError: a path that is not a file.
        ImageTooLargeError: a file that declares more than `max_pixels` pixels.
        ValueError: a file that is not a readable image, or (with `resize=False`) one of
            another size, channel count or bit depth; the message names the file.
    """
    from PIL import UnidentifiedImageError

    if image_size is None and resize:
        raise ValueError("load_image_files needs an image_size to resize to (or resize=False).")
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No image file at {path!r}.")
        try:
            with open_image(path, max_pixels=max_pixels) as image:
                array = _resized(image, image_size, channels) if resize else _exact(image, path, image_size, channels)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path!r} is not a readable image ({error}).") from None
        images.append(array.reshape(*array.shape[:2], channels))
    if not images:
        raise ValueError("No image files given.")
    return images if image_size is None else np.stack(images)


def _resized(image, image_size, channels):
    from PIL import Image

    image = image.convert({1: "L", 3: "RGB"}[channels]).resize((image_size[1], image_size[0]), Image.BILINEAR)
    return np.asarray(image, np.uint8)


def _exact(image, path, image_size, channels):
    height, width = image_size if image_size is not None else (image.height, image.width)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    got = _MODE_CHANNELS.get(image.mode)
    if (image.height, image.width) != (height, width):
        raise ValueError(
            f"{path}: image is {image.width}x{image.height}, the model expects {width}x{height} "
            f"(width x height) with {channels} channel(s)."
        )
    if got != channels:
        raise ValueError(
            f"{path}: image has {got if got is not None else 'unknown'} channel(s) (mode {image.mode}), "
            f"the model expects {channels}."
        )
    if image.mode in ("I", "I;16", "F"):
        raise ValueError(f"{path}: {image.mode} images are not 8-bit; expected 8-bit images.")
    return np.asarray(image.convert("L" if channels == 1 else image.mode), np.uint8)


def load_image_folder(path, image_size, channels):
    """Decode every image of a folder to uint8 `(n, h, w, channels)` (resized) and labels."""
    files, labels, _ = list_image_folder(path)
    return load_image_files(files, image_size, channels), labels


def load_image_tar(path, split, channels=3):
    """Images stored in a (gzipped) tar as `<split>/<class>/<file>` (e.g. the CIFAR-10 JPEG copy).

    Reads the archive in one sequential pass in memory (nothing is extracted to disk, so
    member names such as `../x` or `/etc/x` cannot write anywhere; they are refused anyway).
    Returns uint8 images `(n, h, w, channels)` sorted by member name, and class labels from the
    sorted class folder names.
    """
    import io
    import tarfile

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No tar archive at {path!r}.")
    items = []
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            name = member.name
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"Refusing unsafe member path {name!r} in {path!r}.")
            if member.isfile() and name.startswith(split + "/") and name.lower().endswith(IMAGE_EXTENSIONS):
                items.append((name, tar.extractfile(member).read()))
    if not items:
        raise ValueError(f"{path!r} holds no images under {split + '/'!r}.")
    items.sort()
    classes = sorted({name.split("/")[1] for name, _ in items})
    mode = {1: "L", 3: "RGB"}[channels]
    images = []
    for name, content in items:
        with open_image(io.BytesIO(content), name=f"{path}:{name}") as image:
            images.append(np.asarray(image.convert(mode)))
    images = np.stack(images)
    labels = np.array([classes.index(name.split("/")[1]) for name, _ in items], np.int64)
    return images.reshape(*images.shape[:3], channels), labels


def load_tfds(name, split="train", data_dir=None, download=False):
    """A tfds dataset as a `tf.data.Dataset` of `(image, label)`; offline with a prepared `data_dir`."""
    import tensorflow_datasets as tfds

    return tfds.load(name, split=split, data_dir=data_dir, download=download, as_supervised=True)


#: file names of local copies of public data sets in a `data_dir`, by tfds name
LOCAL_COPIES = {"mnist": "mnist.npz", "fashion_mnist": "fashion_mnist.npz", "cifar10": "cifar10_jpeg.tar.gz"}


def card_dataset(card):
    """The public data set a zoo card's model was trained on, by tfds name (or `"dsprites"`)."""
    spec = card["data"]
    if spec.get("source") == "dsprites":
        return "dsprites"
    if not spec.get("tfds"):
        raise ConfigError(f"{card.get('name', 'the card')}'s data names no public data set (no 'tfds' key).")
    return spec["tfds"]


def named_images(name, split="test", limit=None, data_dir=None, seed=0):
    """uint8 images `(n, h, w, c)` and labels of a public data set, for notebooks and demos.

    A local copy comes first (`data_dir/LOCAL_COPIES[name]`, which needs no network);
    without one, tensorflow_datasets downloads the
    set once (as in Colab). `"dsprites"` is rendered by vaezoo (a random subset by `seed`; its
    labels are the shape factor). `limit` takes that many images spread evenly over the split
    (the CIFAR-10 copy is sorted by class).

    Example:
        >>> images, labels = named_images("fashion_mnist", "test", limit=8, data_dir="data")
    """
    if limit is not None:
        check_int("limit", limit, 1)
    if name == "dsprites":
        sprites = DSprites()
        indices = np.random.default_rng(seed).choice(len(sprites), size=limit or 10000, replace=False)
        return sprites.render(indices) * np.uint8(255), sprites.factor_classes(indices)[:, 0]
    local = os.path.join(data_dir, LOCAL_COPIES[name]) if data_dir and name in LOCAL_COPIES else None
    if local and os.path.isfile(local):
        if local.endswith(".npz"):
            images, labels = load_npz(local, f"x_{split}", f"y_{split}")
        else:
            images, labels = load_image_tar(local, split)
    else:
        try:
            ds = load_tfds(name, split, download=True)
        except ImportError:
            raise ImportError(f"No local copy of {name!r} (looked for {local or 'none: no data_dir'}) and "
                              "tensorflow_datasets is not installed: pip install tensorflow-datasets.") from None
        pairs = [(np.asarray(x), np.asarray(y)) for x, y in ds.as_numpy_iterator()]
        images, labels = np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs])
    if limit:
        chosen = evenly_spaced(len(images), limit)
        images, labels = images[chosen], labels[chosen]
    return images, np.asarray(labels, np.int64)


# --------------------------------------------------------------------------- pipeline
SOURCE_KEYS = {
    "dsprites": {"subset"},
    "npz": {"path", "key", "label_key"},
    "folder": {"path", "image_size", "channels"},
    "tfds": {"name", "split", "data_dir", "download"},
    "image_tar": {"path", "split", "channels"},
}
COMMON_KEYS = {"source", "preprocess", "labels"}
TFDS_SHUFFLE_BUFFER = 10_000


def preprocess_images(images, mode, seeds):
    """Apply a preprocessing mode to a uint8 or [0, 1] batch; `seeds` (batch, 2) int32 (stateless)."""
    import tensorflow as tf

    if mode not in PREPROCESS_MODES:
        raise ConfigError(f"Unknown preprocess mode {mode!r}; expected one of {PREPROCESS_MODES}.")
    raw = tf.cast(images, tf.float32)
    x = raw / 255.0 if images.dtype == tf.uint8 else raw
    if mode == "scale":
        return x
    if mode == "dequantize":
        levels = raw if images.dtype == tf.uint8 else tf.round(raw * 255.0)
        noise = tf.map_fn(lambda s: tf.random.stateless_uniform(tf.shape(x)[1:], s), seeds, fn_output_signature=tf.float32)
        return (levels + noise) / 256.0
    noise = tf.map_fn(lambda s: tf.random.stateless_uniform(tf.shape(x)[1:], s), seeds, fn_output_signature=tf.float32)
    return tf.cast(noise < x, tf.float32)


def read_data_spec(text):
    """A data spec from a JSON/YAML file path or an inline JSON/YAML string (the CLI's `--data`);
    a whole training config or zoo card gives its `eval_data` (else `data`)."""
    import yaml

    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
    else:
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"--data {text!r} is neither a file nor valid JSON/YAML: {error}") from None
    if isinstance(spec, dict) and "data" in spec and "source" not in spec:
        spec = spec.get("eval_data") or spec["data"]  # a whole training config or zoo card
    if not isinstance(spec, dict) or "source" not in spec:
        raise ConfigError(
            f"--data must be a data spec with a 'source', e.g. '{{\"source\": \"npz\", \"path\": "
            f"\"mnist.npz\", \"key\": \"x_test\"}}'; got {spec!r}."
        )
    return spec


_TAR_CACHE = {}


def _cached_tar(path, split, channels):
    """Decode a tar source once per process (evaluation and training read the same archive)."""
    key = (os.path.abspath(path), split, channels)
    if key not in _TAR_CACHE:
        _TAR_CACHE[key] = load_image_tar(path, split, channels)
    return _TAR_CACHE[key]


def _source_arrays(spec, seed):
    """The source's `(images, labels)` numpy arrays, or `(tf.data.Dataset of (image, label), None)` for tfds.

    For dSprites the "images" are sprite indices: whole batches are rendered at once (see
    `make_dataset`).
    """
    kind = spec["source"]
    if kind == "dsprites":
        sprites = DSprites()
        subset = spec.get("subset")
        if subset is None:
            indices = np.arange(len(sprites))
        elif isinstance(subset, int):
            check_int("subset", subset, 1)
            indices = np.random.default_rng(seed).choice(len(sprites), size=min(subset, len(sprites)), replace=False)
        else:
            indices = sprites._check_indices(subset)
        return indices, sprites.factor_classes(indices)
    if kind == "npz":
        if spec.get("labels") and not spec.get("label_key"):
            raise ConfigError("An npz source with labels: true needs 'label_key' (e.g. 'y_train').")
        images, labels = load_npz(spec["path"], spec.get("key", "x_train"), spec.get("label_key"))
    elif kind == "folder":
        if "image_size" not in spec or "channels" not in spec:
            raise ConfigError("A folder source needs 'image_size' [height, width] and 'channels' (1 or 3).")
        images, labels = load_image_folder(spec["path"], spec["image_size"], spec["channels"])
    elif kind == "image_tar":
        images, labels = _cached_tar(spec["path"], spec.get("split", "train"), spec.get("channels", 3))
    elif kind == "tfds":
        if "name" not in spec:
            raise ConfigError("A tfds source needs 'name', e.g. {'source': 'tfds', 'name': 'mnist'}.")
        return load_tfds(spec["name"], spec.get("split", "train"), spec.get("data_dir"), spec.get("download", False)), None
    else:
        raise ConfigError(f"Unknown data source {kind!r}; expected one of {sorted(SOURCE_KEYS)}.")
    if labels is None:
        labels = np.zeros(len(images), np.int64)
    return images, labels


def make_dataset(spec, batch_size, seed=0, shuffle=True, repeat=True, drop_remainder=True, skip_batches=0):
    """A batched `tf.data.Dataset` from a data spec dict (see module docstring).

    Args:
        spec: `{"source": "dsprites"|"npz"|"folder"|"tfds", "preprocess": mode,
            "labels": bool, ...source options}`.
        batch_size: global batch size.
        seed: seeds shuffling and random preprocessing; same seed, same stream.
        shuffle, repeat: as in tf.data.
        drop_remainder: keep static batch shapes (TPU-safe, and needed for equal replicas).
        skip_batches: start this many batches into the stream (a resumed training run); the
            skipped batches are never rendered or preprocessed.
    """
    import tensorflow as tf

    spec = dict(spec)
    kind = spec.get("source")
    if kind not in SOURCE_KEYS:
        raise ConfigError(f"Unknown data source {kind!r}; expected one of {sorted(SOURCE_KEYS)}.")
    check_keys(spec, SOURCE_KEYS[kind] | COMMON_KEYS, f"{kind} data spec")
    check_int("batch_size", batch_size, 1)
    mode = spec.get("preprocess", "scale")
    if mode not in PREPROCESS_MODES:
        raise ConfigError(f"Unknown preprocess mode {mode!r}; expected one of {PREPROCESS_MODES}.")
    images, labels = _source_arrays(spec, seed)
    if isinstance(images, tf.data.Dataset):  # streamed (tfds): element order is the source's
        ds = images.enumerate()
        if shuffle:
            ds = ds.shuffle(TFDS_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda i, item: (i, item[0], item[1]))
    else:
        # In memory: shuffle the example *indices* over the whole set (8 bytes each), then
        # gather. A bounded buffer over the arrays would not be uniform: sorted sources (the
        # CIFAR tar is sorted by class, dSprites by factor) would stream one block at a time.
        images, labels = tf.constant(images), tf.constant(labels)
        ds = tf.data.Dataset.range(len(images))
        if shuffle:
            ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Random preprocessing draws from stateless seeds: (seed, index) for static binarization,
    # (seed, a fresh counter) otherwise, so a given seed always yields the same stream. The
    # counter is per example, computed per batch (per-example tf.data maps cost a few percent
    # of a small model's training time on a 2-core machine).
    ds = tf.data.Dataset.zip((ds.batch(batch_size, drop_remainder=drop_remainder), tf.data.Dataset.counter()))
    if skip_batches:
        check_int("skip_batches", skip_batches, 0)
        ds = ds.skip(skip_batches)
    static = mode == "binarize_static"
    with_labels = spec.get("labels", False)

    def finish(item, batch_index):
        if isinstance(item, tuple):
            index, batch_images, batch_labels = item
        else:
            index, batch_images, batch_labels = item, tf.gather(images, item), tf.gather(labels, item)
        count = batch_index * batch_size + tf.range(tf.shape(index)[0], dtype=tf.int64)
        key = index if static else count
        seeds = tf.stack([tf.fill(tf.shape(key), tf.cast(seed, tf.int64)), key], axis=1)
        if kind == "dsprites":  # images are sprite indices here: render the batch in numpy
            rendered = tf.numpy_function(lambda i: DSprites().render(i) * np.uint8(255), [batch_images], tf.uint8)
            batch_images = tf.ensure_shape(rendered, (batch_size if drop_remainder else None, *DSprites.image_shape))
        x = preprocess_images(batch_images, mode, tf.cast(seeds % (2**31 - 1), tf.int32))
        return (x, batch_labels) if with_labels else x

    return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def image_shape_of(spec):
    """The image shape a data spec produces, without loading all of it."""
    kind = spec.get("source")
    if kind == "dsprites":
        return DSprites.image_shape
    if kind == "folder":
        return (*spec["image_size"], spec["channels"])
    ds = make_dataset(spec, batch_size=1, shuffle=False, repeat=False)
    return tuple(next(iter(ds)).shape[1:]) if not spec.get("labels") else tuple(next(iter(ds))[0].shape[1:])


# --------------------------------------------------------------------------- splits for evaluation
def split_spec(spec, split):
    """A data spec pointed at `split`: npz keys x_/y_<split>, tfds or tar split, folder/<split>."""
    spec = dict(spec)
    kind = spec.get("source")
    if split is None:
        return spec
    if kind == "npz":
        key = spec.get("key", "x_train")
        if key.startswith("x_"):
            spec["key"] = f"x_{split}"
        if spec.get("label_key", "").startswith("y_"):
            spec["label_key"] = f"y_{split}"
    elif kind in ("tfds", "image_tar"):
        spec["split"] = split
    elif kind == "folder" and os.path.isdir(os.path.join(spec.get("path", ""), split)):
        spec["path"] = os.path.join(spec["path"], split)
    return spec


def evenly_spaced(total, count):
    """Indices of `count` of `total` items spread evenly from the first to the last (all of them
    when `count` is 0, None or at least `total`): a sample of every class of a class-sorted file.

    Example:
        >>> evenly_spaced(10, 4)
        array([0, 3, 6, 9])
    """
    if not count or count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).astype(int)


def load_split(spec, split="test", limit=10000, labels=False, seed=1, batch_size=256, spread=False):
    """Images (float32 [0, 1], after the spec's preprocessing) and labels of a data spec's split.

    Args:
        spec: a data spec (see `make_dataset`).
        split: `"test"`, `"train"`, ...: npz keys `x_<split>`/`y_<split>`, tfds split, or the
            `<split>` sub-folder of an image folder if it exists. Generated dSprites has no
            split: a different `seed` draws a different random subset.
        limit: at most this many images (in order); `None` or 0 for all.
        spread: take the `limit` images evenly spaced over the whole split (`evenly_spaced`)
            instead of the first ones (the CIFAR-10 copy is sorted by class); reads the whole split.
        labels: also return labels (required for a CVAE).
        seed: seed of random preprocessing (binarization) and of the dSprites subset.

    Returns:
        `(images, labels or None)`.
    """
    spec = split_spec(spec, split)
    if spec.get("source") == "dsprites" and limit:
        subset = spec.get("subset")
        if subset is None or (isinstance(subset, int) and subset > limit):
            spec["subset"] = int(limit)  # a random subset (by `seed`), not the grid's first images
    if labels:
        spec["labels"] = True
        if spec.get("source") == "npz" and not spec.get("label_key"):
            raise ConfigError("a conditional model needs labels: add 'label_key' (e.g. 'y_test') to the npz data spec.")
    ds = make_dataset(spec, batch_size, seed=seed, shuffle=False, repeat=False, drop_remainder=False)
    wanted, limit = (limit, None) if spread else (None, limit)
    images, label_list, count = [], [], 0
    for batch in ds:
        x, y = batch if labels else (batch, None)
        images.append(np.asarray(x))
        if y is not None:
            label_list.append(np.asarray(y))
        count += len(images[-1])
        if limit and count >= limit:
            break
    if not images:
        raise ValueError(f"the data spec {spec} produced no images.")
    images = np.concatenate(images)[: limit or None]
    y = np.concatenate(label_list)[: limit or None] if label_list else None
    if spread:
        chosen = evenly_spaced(len(images), wanted)
        images, y = images[chosen], None if y is None else y[chosen]
    return images, y
