"""RQ-VAE and its ResidualQuantizer: the shared contract, the residuals against a float64
reference, quantizer dropout, code stacks and their depth argument, and training on a toy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import (check_compiled_cores, check_model_contract, check_mirrored_step_matches_single_device,
                     colour_squares, squares)
from vaezoo.quantizer import ResidualQuantizer

SHAPE = (8, 8, 3)
DEPTH = 3


def _tiny(**overrides):
    args = dict(
        input_shape=SHAPE, depth=DEPTH, num_embeddings=8, embedding_dim=4, hidden_channels=16,
        residual_channels=8, num_residual_blocks=1, seed=0,
    )
    args.update(overrides)
    return vaezoo.RQVAE(**args)


@pytest.fixture
def images(rng):
    return colour_squares(rng, 32, SHAPE)


@pytest.mark.parametrize(
    "overrides", [{}, {"ema": False, "restart_dead_codes": False, "quantizer_dropout": 0.0}],
    ids=["ema-dropout", "loss-full-depth"],
)
def test_contract(overrides, images, tmp_path):
    check_model_contract(lambda: _tiny(**overrides), images, tmp_path)


def _random_quantizer(rng, depth=4, k=16, dim=3, scale=0.5):
    """A built ResidualQuantizer whose level d codebook has scale `scale ** d` (as trained ones do)."""
    rq = ResidualQuantizer(depth=depth, num_embeddings=k, embedding_dim=dim, seed=0)
    rq.build((None, dim))
    codebooks = [rng.normal(size=(k, dim)) * scale**d for d in range(depth)]
    for level, codebook in zip(rq.levels, codebooks):
        level.embeddings.assign(codebook.astype(np.float32))
    return rq, [np.asarray(level.embeddings.numpy(), np.float64) for level in rq.levels]


def test_residuals_match_a_float64_reference(rng):
    """Level d codes the residual z - (e_1 + ... + e_{d-1}) greedily; embed sums the codewords."""
    rq, codebooks = _random_quantizer(rng)
    z = rng.normal(size=(5, 6, 3)).astype(np.float32)
    codes = np.asarray(rq.nearest_codes(z))
    assert codes.shape == (5, 6, 4) and codes.dtype == np.int32

    residual = z.astype(np.float64)
    for d, codebook in enumerate(codebooks):
        distances = ((residual[..., None, :] - codebook) ** 2).sum(-1)
        np.testing.assert_array_equal(codes[..., d], distances.argmin(-1))
        residual = residual - codebook[codes[..., d]]
        # the residual after depth d + 1: z minus the sum of the first d + 1 codewords
        expected = z.astype(np.float64) - sum(codebooks[i][codes[..., i]] for i in range(d + 1))
        np.testing.assert_allclose(residual, expected, atol=1e-12)
        got = z - np.asarray(rq.embed(codes[..., : d + 1]))
        np.testing.assert_allclose(got, expected, atol=1e-5)
        # a tensor depth masks the later levels: the same sum
        np.testing.assert_allclose(np.asarray(rq.embed(codes, tf.constant(d + 1))), z - expected, atol=1e-5)
    # with codebooks shrinking level by level, every level brings the vectors closer
    errors = [np.mean((z - np.asarray(rq.embed(codes[..., : d + 1]))) ** 2) for d in range(4)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_call_uses_each_examples_depth_and_its_levels_loss(rng):
    rq, codebooks = _random_quantizer(rng, depth=3)
    z = rng.normal(size=(4, 5, 3)).astype(np.float32)
    depths = np.array([1, 3, 2, 1], np.int32)
    out = rq(z, training=False, depths=tf.constant(depths))
    codes = np.asarray(out["codes"])
    np.testing.assert_array_equal(codes, rq.nearest_codes(z))
    expected_loss = np.zeros(4)
    for i, n in enumerate(depths):
        np.testing.assert_allclose(out["quantized"][i], rq.embed(codes[i : i + 1, :, :n])[0], atol=1e-5)
        for d in range(n):  # commitment of level d: ||z - sg(e_1 + ... + e_d)||^2, times beta
            approx = sum(codebooks[j][codes[i, :, j]] for j in range(d + 1))
            expected_loss[i] += 0.25 * np.sum((z[i] - approx) ** 2)
    np.testing.assert_allclose(out["loss"], expected_loss, rtol=1e-5)
    # straight-through: the gradient to z is the identity, whatever the depth
    x = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(rq(x, depths=tf.constant(depths))["quantized"] * 3.0)
    np.testing.assert_allclose(tape.gradient(total, x), np.full(z.shape, 3.0))


def test_quantizer_dropout_covers_all_depths():
    model = _tiny(depth=4, quantizer_dropout=1.0)
    depths = np.asarray(model.training_depths(8000, step=tf.constant(7)))
    counts = np.bincount(depths, minlength=5)
    assert counts[0] == 0 and depths.max() == 4
    np.testing.assert_allclose(counts[1:] / 8000, 0.25, atol=0.03)  # uniform over [1, 4]
    # stateless: a step gives the same draw (a resumed run repeats it); another step differs
    np.testing.assert_array_equal(model.training_depths(8000, step=tf.constant(7)), depths)
    assert not np.array_equal(model.training_depths(8000, step=tf.constant(8)), depths)
    half = np.asarray(_tiny(depth=4, quantizer_dropout=0.5).training_depths(8000, step=tf.constant(7)))
    np.testing.assert_allclose(np.mean(half == 4), 0.5 + 0.5 / 4, atol=0.03)
    assert np.all(np.asarray(_tiny(depth=4, quantizer_dropout=0.0).training_depths(100, step=1)) == 4)


def test_kl_elbo_and_iwae(images):
    model = _tiny()
    terms = model.loss_terms(images[:4])
    kl = 2 * 2 * DEPTH * math.log(8)  # 2x2 grid, 3 levels of K = 8 codes
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-6)
    np.testing.assert_allclose(model.elbo(images[:4]), -(terms["nll"] + kl), rtol=1e-6)
    np.testing.assert_allclose(model.iwae(images[:4], k=5, chunk_size=2), model.elbo(images[:4]), rtol=1e-6)
    np.testing.assert_allclose(terms["loss"], terms["nll"] + terms["vq"], rtol=1e-6)


def test_code_stacks_and_the_depth_argument(images, rng):
    model = _tiny()
    codes = np.asarray(model.encode_to_codes(images[:6]))
    assert codes.shape == (6, 2, 2, DEPTH) and codes.dtype == np.int32
    assert np.all((codes >= 0) & (codes < 8))
    np.testing.assert_array_equal(model.encode_to_codes(images[:6], depth=2), codes[..., :2])
    np.testing.assert_array_equal(model.encode_to_codes((images[:6] * 255).astype(np.uint8)).shape, codes.shape)
    # the posterior is a point mass on the full-depth latents, which reconstruct decodes
    np.testing.assert_allclose(model.encode(images[:6]).mean(), model.quantizer.embed(codes), atol=1e-6)
    np.testing.assert_allclose(model.reconstruct(images[:6]), model.decode_codes(codes), atol=1e-6)
    for d in range(1, DEPTH + 1):
        prefix = model.decode_codes(codes[..., :d])
        np.testing.assert_allclose(model.decode_codes(codes, depth=d), prefix, atol=1e-6)
        np.testing.assert_allclose(model.reconstruct(images[:6], depth=d), prefix, atol=1e-6)
        np.testing.assert_allclose(model.decode(model.quantizer.embed(codes[..., :d])).mean(),
                                   model.decoder(model.quantizer.embed(codes[..., :d])), atol=1e-6)
    assert not np.allclose(model.decode_codes(codes, depth=1), model.decode_codes(codes))
    # any grid size: the convolutional path
    big = rng.random((2, 16, 8, 3)).astype(np.float32)
    grid = np.asarray(model.encode_grid(big))
    assert grid.shape == (2, 4, 2, DEPTH)
    np.testing.assert_array_equal(model.encode_grid(big, depth=1), grid[..., :1])
    assert tuple(model.decode_grid(grid, depth=2).shape) == (2, 16, 8, 3)
    np.testing.assert_allclose(model.decode_grid(grid, depth=2), model.decode_grid(grid[..., :2]), atol=1e-6)
    # samples are uniform code stacks, decoded
    noise = model._sample_noise(3, tf.constant([5, 0]))
    np.testing.assert_allclose(model.sample(3, seed=5), model.decode_codes(noise), atol=1e-6)


def test_compiled_cores_match_the_eager_methods(images):
    """Every public method, with the code stacks' depth argument as an integer and one per
    image, gives the eager numbers over several batch sizes and traces each core at most twice."""
    def codes_and_depths(model, x, batch):
        codes = model.encode_to_codes(x)
        per_image = np.arange(batch) % DEPTH + 1
        return {"encode_to_codes": codes, "encode_to_codes depth 2": model.encode_to_codes(x, depth=2),
                "decode_codes": model.decode_codes(codes), "decode_codes depth 1": model.decode_codes(codes, depth=1),
                "decode_codes per image": model.decode_codes(codes, depth=per_image),
                "decode_codes of 2 levels": model.decode_codes(np.asarray(codes)[..., :2]),
                "reconstruct per image": model.reconstruct(x, depth=per_image)}

    counts = check_compiled_cores(_tiny, images, extra=codes_and_depths)
    assert {"encode_to_codes", "decode_codes", "reconstruct_at_depth", "encode", "decode"} <= set(counts), counts


def test_trained_toy_error_falls_with_depth():
    """After training with quantizer dropout, every extra level lowers the reconstruction error."""
    keras.utils.set_random_seed(0)
    x = squares(64, size=8, seed=0)
    model = _tiny(num_embeddings=16, embedding_dim=8, hidden_channels=32, depth=4, num_downsamples=1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=40, batch_size=16, verbose=0)
    codes = model.encode_to_codes(x)
    mse = [float(np.mean((np.asarray(model.decode_codes(codes, depth=d)) - x) ** 2)) for d in range(1, 5)]
    assert all(b < a for a, b in zip(mse, mse[1:])), mse
    assert mse[-1] < 0.7 * mse[0], mse  # (seeds 0-2 gave 0.50-0.54; a model ignoring the depth: 1.0)


def test_bad_inputs_are_named(images):
    model = _tiny()
    codes = np.zeros((1, 2, 2, DEPTH), np.int32)
    with pytest.raises(ValueError, match=r"depth must be an integer in \[1, 3\]"):
        model.decode_codes(codes, depth=4)
    with pytest.raises(ValueError, match=r"depth must be an integer in \[1, 3\]"):
        model.encode_to_codes(images[:1], depth=0)
    with pytest.raises(ValueError, match=r"depth must be an integer in \[1, 3\]"):
        model.reconstruct(images[:1], depth=1.5)
    with pytest.raises(ValueError, match="the codes have 2"):
        model.decode_codes(codes[..., :2], depth=3)
    with pytest.raises(ValueError, match=r"one depth per image \(1,\), got shape \(2,\)"):
        model.decode_codes(codes, depth=np.array([1, 2], np.int32))
    with pytest.raises(ValueError, match=r"one depth per image \(1,\), got shape \(3,\)"):
        model.reconstruct(images[:1], depth=np.array([1, 2, 3], np.int32))
    with pytest.raises(ValueError, match=r"1 <= d <= 3"):
        model.decode_codes(np.zeros((1, 2, 2, 4), np.int32))
    with pytest.raises(ValueError, match=r"\(batch, 2, 2, d\)"):
        model.decode_codes(np.zeros((1, 2, 2), np.int32))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.decode_codes(np.full((1, 2, 2, 2), 8))
    with pytest.raises(TypeError, match="integer"):
        model.decode_codes(codes.astype(np.float32))
    with pytest.raises(vaezoo.ConfigError, match="prior=None"):
        _tiny(prior={"filters": 8})
    with pytest.raises(vaezoo.ConfigError, match=r"condition_depths must be in \[0, 2\]"):
        _tiny(context_model={"channels": 8, "condition_depths": 3})
    with pytest.raises(vaezoo.ConfigError, match="condition_depth"):
        _tiny(context_model={"channels": 8, "condition_depth": 1})  # misspelt key
    with pytest.raises(ValueError, match="quantizer_dropout"):
        _tiny(quantizer_dropout=1.5)
    with pytest.raises(ValueError, match="depth"):
        _tiny(depth=0)
    with pytest.raises(ValueError, match="prior=None"):
        model.fit_prior(images)


def test_registered():
    assert vaezoo.MODEL_CLASSES["RQVAE"] is vaezoo.RQVAE
    spec = {"class": "RQVAE", "config": _tiny().get_config()}
    model = vaezoo.model_from_config(spec)
    assert isinstance(model, vaezoo.RQVAE) and model.depth == DEPTH


def test_mirrored_step_matches_single_device(images, mirrored_strategy):
    """One step on a global batch of 8 split over two replicas = one step on one device (every
    level's EMA statistics are all-reduced)."""
    check_mirrored_step_matches_single_device(lambda: _tiny(quantizer_dropout=0.0), images[:8], mirrored_strategy,
                                              draws_noise=False)


def test_training_checkpoint_restores_every_level(images, tmp_path):
    """The Trainer's `tf.train.Checkpoint` holds every level's codebook and EMA statistics
    (a resumed run must not start from fresh codebooks)."""
    model = _tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(images, epochs=1, batch_size=16, verbose=0)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    fresh = _tiny()
    fresh.build_from_images()
    tf.train.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    assert len(fresh.weights) == len(model.weights)
    for restored, trained in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(restored.numpy(), trained.numpy(), err_msg=trained.path)
    np.testing.assert_array_equal(fresh.encode_to_codes(images), model.encode_to_codes(images))
