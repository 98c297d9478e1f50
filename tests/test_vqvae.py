"""VQ-VAE and its VectorQuantizer: the shared contract, the quantizer against numpy references,
the straight-through gradient, codes, and EMA statistics under MirroredStrategy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import check_model_contract, colour_squares, sgd_fit_step
from vaezoo import quantizer as quantizer_module
from vaezoo.quantizer import VectorQuantizer, perplexity

SHAPE = (8, 8, 3)


def _tiny(**overrides):
    args = dict(
        input_shape=SHAPE, num_embeddings=8, embedding_dim=4, hidden_channels=16, residual_channels=8,
        num_residual_blocks=1, prior={"filters": 8, "layers": 2}, seed=0,
    )
    args.update(overrides)
    return vaezoo.VQVAE(**args)


@pytest.fixture
def images(rng):
    return colour_squares(rng, 32, SHAPE)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"ema": False, "prior": None, "restart_dead_codes": True}],
    ids=["ema-pixelcnn", "loss-uniform-restarts"],
)
def test_contract(overrides, images, tmp_path):
    check_model_contract(lambda: _tiny(**overrides), images, tmp_path)


def test_elbo_is_nll_plus_log_k_per_position_and_iwae_equals_elbo(images):
    model = _tiny()
    terms = model.loss_terms(images[:4])
    kl = 2 * 2 * math.log(8)  # 8x8 image, two stride-2 stages -> 2x2 grid, K = 8
    np.testing.assert_allclose(terms["kl"], kl, rtol=1e-6)
    np.testing.assert_allclose(model.elbo(images[:4]), -(terms["nll"] + kl), rtol=1e-6)
    np.testing.assert_allclose(model.iwae(images[:4], k=7, chunk_size=3), model.elbo(images[:4]), rtol=1e-6)
    np.testing.assert_allclose(terms["loss"], terms["nll"] + terms["vq"], rtol=1e-6)
    # the posterior is a point mass on the quantized latents, which reconstruct decodes
    posterior = model.encode(images[:4])
    codes = model.encode_to_codes(images[:4])
    np.testing.assert_array_equal(posterior.mean(), model.quantizer.embed(codes))
    np.testing.assert_array_equal(model.reconstruct(images[:4]), model.decode_codes(codes))
    assert tuple(model.decode(posterior.mean()).mean().shape) == (4, *SHAPE)


# ----------------------------------------------------------------- quantizer
def _quantizer(codebook, **kwargs):
    vq = VectorQuantizer(num_embeddings=codebook.shape[0], embedding_dim=codebook.shape[1], **kwargs)
    vq.build((None, codebook.shape[1]))
    vq.embeddings.assign(codebook)
    if vq.ema:
        vq.ema_embed_sum.assign(codebook)
    return vq


def test_ema_update_matches_numpy_reference(rng):
    k, d, decay, eps, beta = 5, 3, 0.9, 1e-3, 0.25
    codebook = rng.normal(size=(k, d)).astype(np.float32)
    vq = _quantizer(codebook, ema=True, decay=decay, epsilon=eps, commitment_cost=beta)
    z = rng.normal(size=(2, 3, 3, d)).astype(np.float32)
    out = vq(tf.constant(z), training=True)

    flat = z.reshape(-1, d).astype(np.float64)
    codes = np.argmin(((flat[:, None, :] - codebook[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(np.asarray(out["codes"]).ravel(), codes)
    assert len(np.unique(codes)) < k, "want an unused code, to check it stays put"
    one_hot = np.eye(k)[codes]
    counts, sums = one_hot.sum(0), one_hot.T @ flat
    cluster = decay * 1.0 + (1 - decay) * counts  # N starts at 1
    embed_sum = decay * codebook + (1 - decay) * sums  # m starts at the codebook
    total = cluster.sum()
    smoothed = (cluster + eps) / (total + k * eps) * total
    np.testing.assert_allclose(vq.ema_cluster_size.numpy(), cluster, rtol=1e-5)
    np.testing.assert_allclose(vq.ema_embed_sum.numpy(), embed_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vq.embeddings.numpy(), embed_sum / smoothed[:, None], rtol=1e-4, atol=1e-6)
    # outputs use the codebook before the update; with EMA the loss is the commitment term only
    np.testing.assert_allclose(out["quantized"], codebook[codes].reshape(z.shape), rtol=1e-5, atol=1e-6)
    commitment = ((z - codebook[codes].reshape(z.shape)) ** 2).reshape(2, -1).sum(1)
    np.testing.assert_allclose(out["loss"], beta * commitment, rtol=1e-5)
    # evaluation calls leave every statistic alone
    before = [v.numpy() for v in vq.weights]
    vq(tf.constant(z), training=False)
    for v, b in zip(vq.weights, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_loss_mode_codebook_term_and_trainable_codebook(rng):
    codebook = rng.normal(size=(4, 2)).astype(np.float32)
    vq = _quantizer(codebook, ema=False, commitment_cost=0.5)
    assert [v.path for v in vq.trainable_variables] == [vq.embeddings.path]
    z = rng.normal(size=(3, 2, 2, 2)).astype(np.float32)
    out = vq(tf.constant(z), training=True)
    codes = np.asarray(out["codes"])
    sq = ((z - codebook[codes]) ** 2).reshape(3, -1).sum(1)
    np.testing.assert_allclose(out["loss"], (1 + 0.5) * sq, rtol=1e-5)
    np.testing.assert_array_equal(vq.embeddings.numpy(), codebook)  # only gradients move it
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(vq(tf.constant(z), training=True)["loss"])
    grad = tf.convert_to_tensor(tape.gradient(loss, vq.embeddings))
    used = np.isin(np.arange(4), codes)
    assert np.all(np.abs(np.asarray(grad)[used]).sum(1) > 0) and np.all(np.asarray(grad)[~used] == 0)


def test_perplexity_and_usage():
    k = 4
    codebook = np.eye(k, dtype=np.float32) * 3.0
    vq = _quantizer(codebook)
    uniform = vq(tf.constant(np.tile(codebook, (2, 1))[None]), training=False)
    np.testing.assert_allclose(uniform["perplexity"], k, rtol=1e-6)
    np.testing.assert_allclose(uniform["usage"], 1.0)
    single = vq(tf.constant(np.tile(codebook[2:3], (5, 1))[None]), training=False)
    np.testing.assert_allclose(single["perplexity"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(single["usage"], 1.0 / k)
    np.testing.assert_allclose(perplexity([1.0, 1.0, 2.0, 0.0]), np.exp(-(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5))), rtol=1e-6)


def test_dead_codes_restart_from_encoder_outputs(rng):
    codebook = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], np.float32)
    vq = _quantizer(codebook, ema=True, decay=0.5, restart_dead_codes=True, dead_code_threshold=0.6, seed=3)
    z = (0.01 * rng.normal(size=(1, 6, 2))).astype(np.float32)  # everything maps to code 0
    vq(tf.constant(z), training=True)
    emb = vq.embeddings.numpy()
    # codes 1..3 had N = 0.5 < 0.6 after the step: each now sits on one of the inputs
    for i in (1, 2, 3):
        assert np.min(np.abs(z[0] - emb[i]).sum(1)) < 1e-6, (i, emb[i])
    np.testing.assert_allclose(vq.ema_cluster_size.numpy()[1:], 1.0)
    np.testing.assert_allclose(vq.ema_embed_sum.numpy()[1:], emb[1:], rtol=1e-6)
    np.testing.assert_allclose(vq.ema_cluster_size.numpy()[0], 0.5 + 0.5 * 6)  # the live code is kept


def test_straight_through_gradient(rng, images):
    codebook = rng.normal(size=(6, 3)).astype(np.float32)
    vq = _quantizer(codebook)
    z = tf.Variable(rng.normal(size=(2, 2, 2, 3)).astype(np.float32))
    target = tf.constant(rng.normal(size=(2, 2, 2, 3)).astype(np.float32))

    def f(q):
        return tf.reduce_sum(tf.square(q - target) * tf.range(1.0, 4.0))

    with tf.GradientTape() as tape:
        out = vq(z, training=False)
        value = f(out["quantized"])
    grad_z = tape.gradient(value, z)
    q = tf.Variable(vq.embed(out["codes"]))
    with tf.GradientTape() as tape:
        value_q = f(q)
    # d f(quantized) / dz is d f / dq evaluated at the code vectors: the identity straight through
    np.testing.assert_allclose(grad_z, tape.gradient(value_q, q), rtol=1e-6)
    np.testing.assert_allclose(value, value_q, rtol=1e-6)

    model = _tiny()
    model.build_from_images()
    with tf.GradientTape() as tape:
        nll = tf.reduce_mean(model.loss_terms(images[:4], training=False)["nll"])
    grads = tape.gradient(nll, model.encoder.trainable_variables)
    assert all(g is not None for g in grads)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


# ----------------------------------------------------------------- codes
def test_codes_round_trip(images, rng):
    model = _tiny()
    codes = rng.integers(0, 8, size=(5, 2, 2)).astype(np.int32)
    np.testing.assert_array_equal(model.quantizer.nearest_codes(model.quantizer.embed(codes)), codes)
    decoded = np.asarray(model.decode_codes(codes))
    assert decoded.shape == (5, *SHAPE) and decoded.min() >= 0 and decoded.max() <= 1
    encoded = model.encode_to_codes((images[:6] * 255).astype(np.uint8))
    assert encoded.dtype == tf.int32 and tuple(encoded.shape) == (6, 2, 2)
    assert np.all((np.asarray(encoded) >= 0) & (np.asarray(encoded) < 8))


def test_bad_inputs_are_named(images):
    model = _tiny()
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.decode_codes(np.full((1, 2, 2), 8))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.decode_codes(np.full((1, 2, 2), -1))
    with pytest.raises(ValueError, match=r"\(batch, 2, 2\)"):
        model.decode_codes(np.zeros((1, 3, 3), np.int32))
    with pytest.raises(TypeError, match="integer"):
        model.decode_codes(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.quantizer.embed([[9]])
    with pytest.raises(ValueError, match="quantized latents"):
        model.decode(np.zeros((1, 2, 2, 5), np.float32))
    with pytest.raises(ValueError, match="num_embeddings"):
        VectorQuantizer(num_embeddings=0, embedding_dim=4)
    with pytest.raises(ValueError, match="num_embeddings"):
        _tiny(num_embeddings=0)
    with pytest.raises(ValueError, match="decay"):
        VectorQuantizer(decay=1.0)
    with pytest.raises(ValueError, match="embedding_dim"):
        VectorQuantizer(num_embeddings=4, embedding_dim=3)(tf.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="divisible by 4"):
        _tiny(input_shape=(10, 10, 3))
    with pytest.raises(vaezoo.ConfigError, match="Did you mean 'filters'"):
        _tiny(prior={"filter": 8})
    with pytest.raises(ValueError, match="prior=None"):
        _tiny(prior=None).fit_prior(images)
    with pytest.raises(ValueError, match="shape"):
        model.encode_to_codes(images[:, :4])


# ----------------------------------------------------------------- prior stage
def test_fit_prior_trains_only_the_prior_and_sample_decodes_prior_codes(images):
    model = _tiny()
    model.build_from_images()
    prior_ids = {id(v) for v in model.prior.variables}
    assert not prior_ids & {id(v) for v in model.trainable_variables}
    assert {id(v) for v in model.prior.trainable_variables} <= prior_ids
    prior_before = [v.numpy() for v in model.prior.weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(images, batch_size=16, epochs=1, verbose=0)
    for v, b in zip(model.prior.weights, prior_before):
        np.testing.assert_array_equal(v.numpy(), b)  # stage 1 leaves the prior alone

    autoencoder_before = [v.numpy() for v in model.trainable_variables]
    history = model.fit_prior(images, epochs=6, batch_size=16, learning_rate=1e-2, verbose=0).history
    assert history["loss"][-1] < history["loss"][0], history
    for v, b in zip(model.trainable_variables, autoencoder_before):
        np.testing.assert_array_equal(v.numpy(), b)  # stage 2 leaves the autoencoder alone
    codes = model.encode_to_codes(images)
    history = model.fit_prior(codes, epochs=1, batch_size=16, verbose=0).history  # codes work too
    assert np.isfinite(history["loss"][0])

    expected = model.decode_codes(model.prior.sample(3, seed=5))
    np.testing.assert_array_equal(model.sample(3, seed=5), expected)


def test_registered():
    assert vaezoo.MODEL_CLASSES["VQVAE"] is vaezoo.VQVAE
    spec = {"class": "VQVAE", "config": _tiny(prior=None).get_config()}
    assert isinstance(vaezoo.model_from_config(spec), vaezoo.VQVAE)


# ----------------------------------------------------------------- tf.distribute
@pytest.mark.parametrize("ema", [True, False], ids=["ema", "loss"])
def test_mirrored_step_matches_single_device(ema, images, mirrored_strategy, monkeypatch):
    """One step on a global batch of 8 split over two replicas = one step on one device."""
    make = lambda: _tiny(ema=ema, prior=None)  # noqa: E731
    reference = make()
    reference.build_from_images()
    initial = [v.numpy() for v in reference.weights]
    x = images[:8]
    single, paths = sgd_fit_step(make, x, initial, learning_rate=1e-4)
    strategy = mirrored_strategy
    assert strategy.num_replicas_in_sync == 2
    mirrored, _ = sgd_fit_step(make, x, initial, strategy, learning_rate=1e-4)
    codebook = paths.index("quantizer/embeddings")
    assert not np.allclose(single[codebook], initial[codebook])  # the step did move the codebook
    for path, a, b, start in zip(paths, single, mirrored, initial):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=path)
    if ema:  # the check is sensitive: per-replica statistics give another codebook
        monkeypatch.setattr(quantizer_module, "_replica_sum", lambda *tensors: tensors)
        local, _ = sgd_fit_step(make, x, initial, strategy, learning_rate=1e-4)
        assert not np.allclose(local[codebook], single[codebook], rtol=1e-5, atol=1e-7)


def test_trainer_prior_stage_survives_a_resume(tmp_path):
    """The Trainer's second stage (PixelCNN on codes) is kept when the same run is resumed."""
    from vaezoo.training import Trainer
    from vaezoo.workdir import load as load_trained

    x = np.zeros((256, 16, 16, 3), np.float32)
    x[:, :8] = 0.8
    np.savez(tmp_path / "d.npz", x_train=x)
    config = {"model": {"class": "VQVAE", "config": {
                  "input_shape": [16, 16, 3], "num_embeddings": 8, "embedding_dim": 4, "hidden_channels": 8,
                  "residual_channels": 4, "num_residual_blocks": 1, "prior": {"filters": 16, "layers": 2}, "seed": 0}},
              "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
              "train": {"steps": 4, "batch_size": 16, "eval_batches": 1, "strategy": "one_device"},
              "prior_train": {"epochs": 6, "batch_size": 32}}  # 3 epochs ended near the bound under load
    first = Trainer(config, str(tmp_path / "run"), verbose=False)
    first.run()
    codes = first.model.encode_to_codes(x[:32])
    trained = float(np.mean(first.model.prior.bits_per_code(codes)))
    assert trained < 0.9 * np.log2(8)  # the prior learned something
    Trainer(config, str(tmp_path / "run"), verbose=False).run()  # resume: nothing left to train
    resumed = load_trained(str(tmp_path / "run"))
    assert float(np.mean(resumed.prior.bits_per_code(codes))) == pytest.approx(trained, rel=1e-5)
