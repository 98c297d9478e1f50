"""The shared model test: every family's test file calls `check_model_contract`.

It checks what the model contract promises, with assertions that fail if the model is wrong:
output shapes, the config round trip, identical outputs after save/reload (.keras and
.weights.h5), that `fit` lowers the loss on tiny data, that mean ELBO <= mean IWAE, and that
the methods the rest of the package asks (`score_terms`, `posterior_means`,
`latent_statistics`, `sample` with a tensor seed) give the same numbers in a graph as eagerly.
"""

import os

import keras
import numpy as np
import tensorflow as tf


def _kwargs(condition):
    return {} if condition is None else {"condition": condition}


def check_shapes(model, images, condition=None):
    n = len(images)
    kw = _kwargs(condition)
    assert tuple(model.reconstruct(images, **kw).shape) == images.shape
    assert tuple(model.elbo(images, **kw).shape) == (n,)
    assert tuple(model.iwae(images, k=3, **kw).shape) == (n,)
    samples = model.sample(n, seed=1, **kw)
    assert tuple(samples.shape) == images.shape
    samples = np.asarray(samples)
    assert np.all(np.isfinite(samples)) and samples.min() >= 0.0 and samples.max() <= 1.0
    np.testing.assert_allclose(model.sample(n, seed=1, **kw), samples, rtol=0, atol=1e-6)
    terms = model.loss_terms(images, **kw)
    for name in model.loss_term_names:
        assert tuple(terms[name].shape) == (n,), name
        assert np.all(np.isfinite(terms[name])), name


def check_config_round_trip(model):
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    # JSON-safe: the config survives a JSON round trip unchanged.
    import json

    assert json.loads(json.dumps(config)) == config


def check_save_reload(model, images, tmp_path, condition=None):
    kw = _kwargs(condition)
    expected = np.asarray(model.reconstruct(images, **kw))
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(images, **kw)), expected)

    weights = os.path.join(str(tmp_path), "model.weights.h5")
    model.save_weights(weights)
    fresh = type(model).from_config(model.get_config())
    fresh.load_weights(weights)
    np.testing.assert_array_equal(np.asarray(fresh.reconstruct(images, **kw)), expected)


def fit_lowers_loss(model, images, condition=None, epochs=8, batch_size=16, learning_rate=3e-3):
    """Train with `fit`; return (first-epoch loss, last-epoch loss) and assert it went down."""
    data = images if condition is None else (images, condition)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    history = model.fit(dataset, epochs=epochs, verbose=0).history["loss"]
    assert history[-1] < history[0], history
    return history[0], history[-1]


def check_elbo_below_iwae(model, images, condition=None, k=50):
    kw = _kwargs(condition)
    elbo = float(np.mean(model.elbo(images, **kw)))
    iwae = float(np.mean(model.iwae(images, k=k, **kw)))
    assert elbo <= iwae + 1e-3, (elbo, iwae)
    return elbo, iwae


#: latent kinds whose posterior is a point mass on codes (a code grid, or a stack of them)
CODE_KINDS = ("code_grid", "residual_code_grid")


def check_graph_safe_methods(model, images, condition=None):
    """The contract methods other modules call, eagerly and inside a `tf.function`."""
    from vaezoo.models.base import LATENT_KINDS

    assert model.latent_kind in LATENT_KINDS
    kw = _kwargs(condition)
    n = len(images)
    x = tf.constant(np.asarray(images))
    c = None if condition is None else tf.constant(np.asarray(condition))

    def graph(method):
        fn = tf.function(lambda x, c: method(x, **({} if c is None else {"condition": c})))
        return fn(x, c)

    # score_terms: deterministic, and against a second computation of the same numbers
    terms = {k: np.asarray(v) for k, v in model.score_terms(images, **kw).items()}
    assert set(terms) == {"nll", "kl"} and all(v.shape == (n,) and v.dtype == np.float32 for v in terms.values())
    for key, value in graph(model.score_terms).items():
        np.testing.assert_allclose(value, terms[key], rtol=1e-5, atol=1e-4)
    loss_terms = model.loss_terms(images, **kw)
    if model.latent_kind == "vector":  # analytic KL: no sample in it; nll at the posterior mean
        np.testing.assert_allclose(terms["kl"], loss_terms["kl"], rtol=1e-5, atol=1e-5)
        mean = model.encode(images, **kw).mean()
        targets = model.likelihood.targets(tf.cast(x, tf.float32) / (255.0 if x.dtype == tf.uint8 else 1.0))
        nll = -np.asarray(model.decode(mean, **kw).log_prob(targets))
        np.testing.assert_allclose(terms["nll"], nll, rtol=1e-5, atol=1e-4)
    elif model.latent_kind in CODE_KINDS:  # a point-mass posterior: the ELBO itself
        # (score_terms runs compiled, loss_terms eagerly: float rounding of a sum of pixel terms)
        np.testing.assert_allclose(terms["nll"], loss_terms["nll"], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(terms["kl"], loss_terms["kl"], rtol=1e-6)

    means = model.posterior_means(images, **kw)
    graph_means = graph(model.posterior_means)
    if model.latent_kind == "hierarchy":
        assert len(means) == len(graph_means) == model.num_latent_layers
        # the top layer's mean is what `encode` gives (it depends on x alone)
        np.testing.assert_allclose(means[-1], model.encode(images).mean(), rtol=1e-5, atol=1e-6)
    else:
        means, graph_means = [means], [graph_means]
        np.testing.assert_allclose(means[0], model.encode(images, **kw).mean(), rtol=1e-5, atol=1e-6)
    for eager, traced in zip(means, graph_means):
        np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-5)

    stats = model.latent_statistics(images, **kw)
    expected_keys = {"codes", "quantization_error"} if model.latent_kind in CODE_KINDS else {"mean", "stddev"}
    assert set(stats) == expected_keys
    for key, value in graph(model.latent_statistics).items():
        np.testing.assert_allclose(value, stats[key], rtol=1e-5, atol=1e-5)
    if model.latent_kind in CODE_KINDS:
        np.testing.assert_array_equal(stats["codes"], model.encode_to_codes(images))

    # a seed given as a tensor (an exported signature's input) draws what the integer draws
    sample_kw = {} if condition is None else {"condition": condition[:2]}
    by_int = np.asarray(model.sample(2, seed=11, **sample_kw))
    np.testing.assert_array_equal(np.asarray(model.sample(2, seed=tf.constant(11), **sample_kw)), by_int)
    traced = tf.function(lambda s: model.sample(2, seed=s, **sample_kw))(tf.constant(11))
    np.testing.assert_allclose(traced, by_int, rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(model.sample(2, seed=12, **sample_kw)), by_int)


def assert_same_distribution(got, want, err_msg="", atol=1e-5):
    """Two `tfd.Distribution`s are the same: type, shapes, parameters (the CompositeTensor
    components), mean, stddev where defined, log_prob at the mean, and a seeded sample."""
    assert type(got) is type(want), (type(got), type(want), err_msg)
    assert got.batch_shape == want.batch_shape and got.event_shape == want.event_shape, err_msg
    mine, theirs = tf.nest.flatten(got, expand_composites=True), tf.nest.flatten(want, expand_composites=True)
    assert len(mine) == len(theirs), err_msg
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=err_msg)
    mean = want.mean()
    np.testing.assert_allclose(got.mean(), mean, rtol=1e-5, atol=atol, err_msg=err_msg)
    np.testing.assert_allclose(got.stddev(), want.stddev(), rtol=1e-5, atol=atol, err_msg=err_msg)
    np.testing.assert_allclose(got.log_prob(mean), want.log_prob(mean), rtol=1e-5, atol=1e-3, err_msg=err_msg)
    np.testing.assert_allclose(got.sample(seed=(1, 2)), want.sample(seed=(1, 2)), rtol=1e-5, atol=atol,
                               err_msg=err_msg)


def check_compiled_cores(make_model, images, condition=None, batches=(1, 32, 5, 17), extra=None,
                         max_memoized_signatures=None):
    """The compiled public methods against the same model run eagerly (`compiled_methods = False`).

    Over `batches` (the first images of `images`), every shared method (`elbo`, `iwae` with
    several k, `reconstruct`, `score_terms`, `posterior_means`, `latent_statistics`, `sample`
    with an integer seed and from the seed generator, `sample_per_seed`) must give the eager
    numbers, `encode` and `decode` the same distributions (`assert_same_distribution`), and
    `extra(model, x, batch)` (a dict of family-specific results) the same values. Each compiled
    core traces at most twice (the second trace relaxes the batch dimension).

    Returns:
        the compiled model's trace counts per core.
    """
    def make():
        model = make_model()
        model.build_from_images()
        return model

    model, eager = make(), make()
    for mine, theirs in zip(eager.weights, model.weights):
        mine.assign(theirs)
    eager.compiled_methods = False
    if max_memoized_signatures is not None:
        model.max_memoized_signatures = max_memoized_signatures
    for batch in batches:
        x = images[:batch]
        kw = {} if condition is None else {"condition": condition[:batch]}

        def compare(got, want, what):
            for a, b in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=f"{what} batch {batch}")

        for method, kwargs in [("elbo", {}), ("iwae", {"k": batch % 4 + 2, "chunk_size": 3}), ("reconstruct", {}),
                               ("score_terms", {}), ("posterior_means", {}), ("latent_statistics", {})]:
            compare(getattr(model, method)(x, **kwargs, **kw), getattr(eager, method)(x, **kwargs, **kw), method)
        for seed in (batch, None):
            compare(model.sample(batch, seed=seed, temperature=0.5 + batch / 10, **kw),
                    eager.sample(batch, seed=seed, temperature=0.5 + batch / 10, **kw), f"sample seed={seed}")
        compare(model.sample_per_seed(np.arange(batch) + 7, **kw)[batch // 2],
                model.sample(1, seed=batch // 2 + 7, **({} if condition is None else {"condition": condition[batch // 2:][:1]}))[0],
                "sample_per_seed")
        posterior = model.encode(x, **kw)
        assert_same_distribution(posterior, eager.encode(x, **kw), f"encode batch {batch}")
        z = np.asarray(posterior.mean())
        assert_same_distribution(model.decode(z, **kw), eager.decode(z, **kw), f"decode batch {batch}", atol=1e-4)
        if extra is not None:
            got, want = extra(model, x, batch), extra(eager, x, batch)
            assert set(got) == set(want)
            for name in got:
                compare(got[name], want[name], name)
    counts = model._trace_counts()
    assert counts and max(counts.values()) <= 2, counts
    assert eager._trace_counts() == {}
    return counts


def check_model_contract(make_model, images, tmp_path, condition=None, fit_epochs=8):
    """Run every shared check on a freshly made model (`make_model()` -> untrained model)."""
    model = make_model()
    check_shapes(model, images, condition)
    check_graph_safe_methods(model, images, condition)
    check_config_round_trip(model)
    fit_lowers_loss(model, images, condition, epochs=fit_epochs)
    check_elbo_below_iwae(model, images, condition)
    check_save_reload(model, images[:4], tmp_path, None if condition is None else condition[:4])
    return model


PALETTE = np.array([[0.9, 0.2, 0.2], [0.2, 0.8, 0.3], [0.2, 0.3, 0.9], [0.95, 0.9, 0.2]], np.float32)


def colour_squares(rng, n, shape):
    """`n` tiny colour images of `shape` (8x8 or more): a random-coloured 4x4 square at a random
    place on a dark background (the VQ-VAE and RQ-VAE tests' data)."""
    x = np.full((n, *shape), 0.1, np.float32)
    for i, (r, c) in enumerate(rng.integers(0, shape[0] - 3, size=(n, 2))):
        x[i, r : r + 4, c : c + 4] = rng.random(shape[-1])
    return x


def squares(n, size=16, seed=0):
    """Dark RGB images with two squares of palette colours at random places (VQ test data)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, size, size, 3), 0.1, np.float32)
    for i in range(n):
        for _ in range(2):
            r, c = rng.integers(0, size - 5, 2)
            s = rng.integers(3, 6)
            x[i, r : r + s, c : c + s] = PALETTE[rng.integers(0, len(PALETTE))]
    return x


def _same_noise_per_replica(model, replicas):
    """Make `model._loss_terms` on one device draw noise as `replicas` MirroredStrategy replicas
    do: each replica's slice of the global batch from the same seed-generator state (the
    generator's state is a mirrored variable, so every replica reads the same value)."""
    loss_terms = model._loss_terms

    def per_replica(x, condition=None, training=False, step=None):
        state = tf.identity(model.seed_generator.state.value)
        conditions = [None] * replicas if condition is None else tf.split(condition, replicas)
        parts = []
        for x_part, condition_part in zip(tf.split(x, replicas), conditions):
            model.seed_generator.state.assign(state)
            parts.append(loss_terms(x_part, condition_part, training=training, step=step))
        return {name: tf.concat([part[name] for part in parts], 0) for name in parts[0]}

    model._loss_terms = per_replica


def sgd_fit_step(make, data, initial, strategy=None, learning_rate=1e-2, noise_replicas=1):
    """One `fit` step of plain SGD on `data` (images, or (images, labels)) as ONE global batch.

    The model comes from `make()` inside `strategy`'s scope (None: one device) and starts from
    the weight values `initial`. Plain SGD, so a loss averaged per replica instead of over the
    global batch (off by the replica count) changes the step. `noise_replicas` > 1 (one device
    only) draws the posterior noise as that many replicas would (`_same_noise_per_replica`).
    Returns (weight values after the step, weight paths).
    """
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = make()
        model.build_from_images()
        for v, value in zip(model.weights, initial):
            v.assign(value)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    if noise_replicas > 1:
        _same_noise_per_replica(model, noise_replicas)
    batch = len(data[0]) if isinstance(data, tuple) else len(data)
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(batch), epochs=1, verbose=0, shuffle=False)
    return [v.numpy() for v in model.weights], [v.path for v in model.weights]


def check_mirrored_step_matches_single_device(make, data, strategy, learning_rate=1e-2, draws_noise=True):
    """One `fit` step under `strategy` equals the same step on one device, weight by weight.

    The one-device reference draws the noise per replica slice as the replicas do (models
    without noise in training pass `draws_noise=False`). Asserts the step moved the trainable
    weights (so two untouched copies cannot agree). Returns (initial, mirrored, single, paths).
    """
    replicas = strategy.num_replicas_in_sync
    assert replicas > 1
    reference = make()
    reference.build_from_images()
    initial = [v.numpy() for v in reference.weights]
    single, paths = sgd_fit_step(make, data, initial, None, learning_rate, replicas if draws_noise else 1)
    mirrored, _ = sgd_fit_step(make, data, initial, strategy, learning_rate)
    # the step moved most trainable weights by more than the comparison's tolerance
    moved = [not np.allclose(single[i], initial[i], rtol=1e-5, atol=1e-6)
             for i, v in enumerate(reference.weights) if v.trainable]
    assert sum(moved) > len(moved) // 2, (sum(moved), len(moved))
    for path, a, b in zip(paths, single, mirrored):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=path)
    return initial, mirrored, single, paths


def grid_tiles(grid, rows, columns, tile_shape, padding=2, top=0, left=0):
    """Cut the `rows x columns` tiles of `tile_shape` (h, w) out of a `vaezoo.visualize.image_grid`
    layout (tiles `padding` apart, starting `padding` from the grid's corner at (top, left)):
    uint8 `(rows, columns, h, w, channels)`."""
    h, w = tile_shape
    return np.stack([np.stack([grid[top + padding + r * (h + padding):][:h, left + padding + c * (w + padding):][:, :w]
                               for c in range(columns)]) for r in range(rows)])


def expected_traversal(model, image, dims, values, condition=None):
    """uint8 tiles `(len(dims), len(values), *image_shape)` of a latent traversal, computed from the
    model's public API one latent at a time: z = encode(image).mean(), z[d] = v, decode(z)."""
    kw = {} if condition is None else {"condition": np.asarray(condition).reshape(1)}
    z = np.asarray(model.encode(np.asarray(image)[None], **kw).mean(), np.float32)[0]
    rows = []
    for d in dims:
        row = []
        for v in values:
            latent = z.copy()
            latent[d] = v
            decoded = np.asarray(model.likelihood.image(model.decode(latent[None], **kw)), np.float64)[0]
            row.append(np.clip(np.round(decoded * 255.0), 0, 255).astype(np.uint8))
        rows.append(np.stack(row))
    return np.stack(rows)


def check_traversal_png(path, model, image, dims, values, scale=2, condition=None, label_width=110):
    """The PNG of `vaezoo.disentanglement.save_traversal` (what `vaezoo traverse` writes): its
    pixel size (one strip per row, the input first, each strip image height + 2 x 2 padding; a
    label column of `label_width`, then len(values) tiles of width + 2 padding, + 2; all times
    `scale`), the input tile, and every traversal tile against `expected_traversal`."""
    from PIL import Image

    png = np.asarray(Image.open(path))
    png = png[..., None] if png.ndim == 2 else png
    h, w, c = model.image_shape
    height, width = (1 + len(dims)) * (h + 4), label_width + len(values) * (w + 2) + 2
    assert png.shape == (height * scale, width * scale, c), (png.shape, (height * scale, width * scale, c))
    small = png[::scale, ::scale]
    np.testing.assert_array_equal(png, small.repeat(scale, axis=0).repeat(scale, axis=1))  # nearest enlargement
    source = np.asarray(image)
    source = source if source.dtype == np.uint8 else np.round(source * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(grid_tiles(small, 1, 1, (h, w), left=label_width)[0, 0], source.reshape(h, w, c))
    expected = expected_traversal(model, image, dims, values, condition)
    for i in range(len(dims)):
        tiles = grid_tiles(small, 1, len(values), (h, w), top=(i + 1) * (h + 4), left=label_width)[0]
        np.testing.assert_allclose(tiles, expected[i], rtol=0, atol=1, err_msg=f"row of dim {dims[i]}")


def png_declaring(path, width, height, channels=3):
    """Write a valid PNG of a few hundred bytes whose header (IHDR) declares `width` x `height`
    8-bit pixels (grey or RGB), with one small compressed row of data: what a decompression
    bomb looks like to a reader that trusts the header. Returns `path`."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    colour_type = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    row = b"\x00" + bytes(width * channels)  # filter byte + the first row; the rest is missing
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row, 9))
                + chunk(b"IEND", b""))
    return str(path)


#: version-1 `.vqz` header fields a test may rewrite: their offset after the model name, and format
_V1_FIELDS = {"height": (32, "<H"), "width": (34, "<H"), "num_images": (46, "<I"), "payload_length": (57, "<Q")}


def vqz_v1_with(data, **fields):
    """Version-1 `.vqz` bytes with header fields rewritten (e.g. `num_images=2**32 - 1`) and the
    trailing CRC32 recomputed, so the rewritten claim, not the checksum, is what a reader meets."""
    import struct
    import zlib

    data = bytearray(data)
    start = struct.calcsize("<8sHH") + struct.unpack_from("<8sHH", data, 0)[2]
    for name, value in fields.items():
        offset, code = _V1_FIELDS[name]
        struct.pack_into(code, data, start + offset, value)
    data[-4:] = (zlib.crc32(bytes(data[:-4])) & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(data)


def check_litert_gives_the_reference_integers(network, seed=2):
    """An exact context network's LiteRT file gives its reference logits to the bit on every
    kernel set at 1 and 2 threads (2,000 8x8 grids; 200 on the slow reference kernels), and at
    any grid size and positions. Returns the reference logits of the 2,000 grids."""
    from vaezoo import integer_entropy as ie
    from vaezoo.export.tflite import convert_context_network

    flatbuffer = convert_context_network(network)
    rng = np.random.default_rng(seed)
    k = network.num_embeddings
    codes = rng.integers(0, k + 1, (2000, 8, 8)).astype(np.int32)
    reference = network.logits(codes)
    for resolver in ie.RESOLVERS:
        for threads in (1, 2):
            batch = codes if resolver != "reference" else codes[:200]  # the reference kernels are slow
            runtime = ie.LiteRTContextNetwork(flatbuffer, network, resolver=resolver, num_threads=threads)
            np.testing.assert_array_equal(runtime.logits(batch), reference[: len(batch)], err_msg=resolver)
    odd = rng.integers(0, k + 1, (3, 13, 21)).astype(np.int32)  # any grid size, any positions
    positions = rng.choice(13 * 21, 50, replace=False)
    runtime = ie.LiteRTContextNetwork(flatbuffer, network)
    np.testing.assert_array_equal(runtime.logits_at(odd, positions), network.logits_at(odd, positions))
    np.testing.assert_array_equal(network.logits_at(odd, positions),
                                  network.logits(odd).reshape(3, 13 * 21, -1)[:, positions])
    return codes, reference


def check_snapping_keeps_the_network_and_float16_storage(model):
    """`model.snap()` (a context model with weights moved off the integer grid) keeps the
    frozen network, and afterwards the embedding, kernels and head survive float16 storage
    (centred kernels: so do the integers that the float16-stored offsets give)."""
    model.kernels[0].assign(model.kernels[0] * 1.37 + 0.0011)  # off the integer grid
    model.embedding.assign(model.embedding * 1.01 + 0.003)
    if model.center_kernels:
        model.head_offset.assign(model.head_offset + 0.37)
    before = model.freeze().to_arrays()
    model.snap()
    after = model.freeze().to_arrays()
    assert set(after) == set(before)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values, err_msg=name)
    for variable in [model.embedding, *model.kernels, model.head_kernel]:
        values = np.asarray(variable)
        np.testing.assert_array_equal(values.astype(np.float16).astype(np.float32), values, err_msg=variable.name)
    if model.center_kernels:  # the offsets (sums of integers) are not float16-exact; the kernels they give are
        for offset in [*model.kernel_offsets, model.head_offset]:
            offset.assign(np.asarray(offset).astype(np.float16).astype(np.float32))
        network = model.freeze()
        for index, kernel in enumerate([*network.kernels, network.head_kernel]):
            name = f"kernel_{index}" if index < len(network.kernels) else "head_kernel"
            np.testing.assert_array_equal(kernel, before[name], err_msg=name)


def load_script(name):
    """The module of `scripts/<name>.py` (the scripts are not a package), for calling its functions."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
