"""Evaluation metrics against closed forms: an analytic log-likelihood (probabilistic PCA),
brute-force AUROC, hand-computed average precision, perplexity and active units, PSNR/NMSE
formulas; `evaluate` on small models of every family, its input checks, and the CLI."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import vaezoo
from vaezoo import data, evaluation, reports
from vaezoo.distributions import GaussianLikelihood
from vaezoo.models.base import LatentVariableModel
from helpers import check_traversal_png

tfd = tfp.distributions


# --------------------------------------------------------------------------- probabilistic PCA
class PPCA(LatentVariableModel):
    """x = W z + mu + eps, z ~ N(0, I), eps ~ N(0, sigma^2 I): log p(x) is Gaussian, in closed form.

    The posterior is amortized by the closed form p(z | x) = N(A (x - mu), sigma^2 M^-1) with
    M = W^T W + sigma^2 I and A = M^-1 W^T, its covariance multiplied by `inflate^2` (1: exact).
    """

    def __init__(self, W, mu, sigma, image_shape, inflate=1.0, **kwargs):
        super().__init__(input_shape=image_shape, **kwargs)
        W, mu = np.asarray(W, np.float64), np.asarray(mu, np.float64)
        self.num_pixels, self.latent_dim = W.shape
        self.W64, self.mu64, self.sigma = W, mu, float(sigma)
        M = W.T @ W + sigma**2 * np.eye(self.latent_dim)
        M_inv = np.linalg.inv(M)
        self.A = tf.constant(M_inv @ W.T, tf.float32)
        self.L = tf.constant(inflate * np.linalg.cholesky(sigma**2 * M_inv), tf.float32)
        self.Wt = tf.constant(W.T, tf.float32)
        self.mu = tf.constant(mu, tf.float32)
        self.likelihood = GaussianLikelihood(scale=sigma)

    def log_marginal(self, x):
        """Exact log p(x) in float64 numpy: N(x; mu, W W^T + sigma^2 I)."""
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        C = self.W64 @ self.W64.T + self.sigma**2 * np.eye(self.num_pixels)
        r = x - self.mu64
        _, logdet = np.linalg.slogdet(C)
        quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(C), r)
        return -0.5 * (self.num_pixels * math.log(2 * math.pi) + logdet + quad)

    def _prior(self):
        return tfd.MultivariateNormalDiag(tf.zeros(self.latent_dim))

    def _encode(self, x, condition=None):
        flat = tf.reshape(x, (-1, self.num_pixels))
        return tfd.MultivariateNormalTriL(loc=(flat - self.mu) @ tf.transpose(self.A), scale_tril=self.L)

    def _decode(self, z, condition=None):
        loc = tf.reshape(z @ self.Wt + self.mu, (-1, *self.image_shape))
        return self.likelihood(loc)

    def _loss_terms(self, x, condition=None, training=False, step=None):
        q = self._encode(x)
        z = q.sample(seed=self._next_seed())
        nll = -self._decode(z).log_prob(x)
        kl = tfd.kl_divergence(q, self._prior())
        return {"loss": nll + kl, "nll": nll, "kl": kl}

    def _log_importance_weights(self, x, condition, num_samples):
        q = self._encode(x)
        z = q.sample(num_samples, seed=self._next_seed())  # (k, batch, d)
        log_px = self._decode(tf.reshape(z, (-1, self.latent_dim))).log_prob(tf.tile(x, [num_samples, 1, 1, 1]))
        return tf.reshape(log_px, (num_samples, -1)) + self._prior().log_prob(z) - q.log_prob(z)

    def _sample(self, n, condition=None, seed=None, temperature=1.0):
        z = temperature * tf.random.stateless_normal((n, self.latent_dim), seed=[seed or 0, 0])
        return self.likelihood.image(self._decode(z))


def make_ppca(inflate=1.0, seed=0):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 1)
    W = rng.normal(0.0, 0.1, size=(6, 2))
    mu = np.full(6, 0.5)
    model = PPCA(W, mu, 0.1, shape, inflate=inflate, seed=seed)
    # data from the model itself, kept inside [0, 1] (the image contract)
    z = rng.normal(size=(400, 2))
    x = z @ W.T + mu + 0.1 * rng.normal(size=(400, 6))
    x = x[np.all((x >= 0) & (x <= 1), axis=1)][:64]
    return model, x.reshape(-1, *shape).astype(np.float32)


def test_iwae_with_exact_posterior_is_log_likelihood_for_every_k():
    model, x = make_ppca(inflate=1.0)
    exact = model.log_marginal(x)
    for k in (1, 2, 10, 100):  # 100: several chunks of 16 samples, combined by log-sum-exp
        estimate = evaluation.iwae_per_example(model, x, k=k, batch_size=16, max_parallel_samples=256)
        np.testing.assert_allclose(estimate, exact, atol=1e-4, rtol=0)
    results = evaluation.evaluate(model, x, metrics=("iwae",), k=1, seed=0)
    assert abs(results["iwae"] - exact.mean()) < 1e-4
    assert results["iwae_bits_per_dim"] == pytest.approx(-exact.mean() / (6 * math.log(2)), abs=1e-4)


def test_iwae_converges_to_log_likelihood_as_k_grows():
    model, x = make_ppca(inflate=1.6)  # a too-wide posterior: the ELBO is loose
    exact = model.log_marginal(x)
    errors = {}
    with evaluation.seeded(model, 0):
        for k in (1, 10, 100, 1000):
            estimate = evaluation.iwae_per_example(model, x, k=k, batch_size=32, max_parallel_samples=2048)
            assert np.mean(estimate) <= np.mean(exact) + 0.01  # a lower bound (in expectation)
            errors[k] = float(np.mean(np.abs(estimate - exact)))
    assert errors[1] > errors[10] > errors[100] > errors[1000], errors
    # Thresholds from the closed form: in whitened coordinates the posterior is N(0, I) and q is
    # N(0, c^2 I) with c = 1.6 in d = 2 dims, so the log importance weight log p(z|x)/q(z) is
    # d log c - (c^2 - 1)/2 * chi2_d: mean -KL = -0.62 nats, and E|IWAE_k - log p(x)| =
    # E|log mean of k weights|, which a numpy Monte Carlo of that chi2 expression puts at
    # 1.08 (k=1; standard error over 64 images 0.16) and 0.0194 (k=1000; 0.0018). This run
    # measured 0.99 and 0.018. 0.3 and 0.03 sit beyond 4 standard errors of those values.
    assert errors[1] > 0.3  # the loose ELBO is far ...
    assert errors[1000] < 0.03  # ... and IWAE_1000 is close


# --------------------------------------------------------------------------- pure metrics
def _brute_auroc(inliers, outliers):
    wins = sum((o > i) + 0.5 * (o == i) for o in outliers for i in inliers)
    return wins / (len(inliers) * len(outliers))


def test_auroc_matches_brute_force_pair_count_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(25):
        inliers = rng.integers(0, 6, size=rng.integers(1, 12)).astype(float)
        outliers = rng.integers(2, 8, size=rng.integers(1, 12)).astype(float)
        assert evaluation.auroc(inliers, outliers) == pytest.approx(_brute_auroc(inliers, outliers), abs=1e-12)
    assert evaluation.auroc([1, 2, 3], [4, 5]) == 1.0
    assert evaluation.auroc([4, 5], [1, 2, 3]) == 0.0
    assert evaluation.auroc([1, 1, 1], [1, 1]) == 0.5
    assert evaluation.auroc([0.0, -np.inf], [np.inf]) == 1.0


def test_average_precision_against_hand_computation():
    # sorted: 0.9 out (P 1, R 1/2), 0.8 in, 0.4 out (P 2/3, R 1), 0.1 in -> 1/2 + 1/2 * 2/3
    assert evaluation.average_precision([0.8, 0.1], [0.9, 0.4]) == pytest.approx(0.5 + 1 / 3)
    # with a tie: 3 out (P 1, R 1/3); {2 out, 2 out, 2 in} together (P 3/4, R 1) -> 1/3 + 2/3 * 3/4
    assert evaluation.average_precision([2, 1], [3, 2, 2]) == pytest.approx(1 / 3 + 0.5)
    assert evaluation.auprc([0, 1], [5]) == 1.0
    # every score tied: precision is the outlier fraction
    assert evaluation.average_precision([1, 1, 1], [1]) == pytest.approx(0.25)


def test_perplexity_and_usage():
    K = 16
    uniform = evaluation.codebook_stats(np.tile(np.arange(K), 7).reshape(-1, 4, 4), K)
    assert uniform["perplexity"] == pytest.approx(K, rel=1e-5)
    assert uniform["codebook_usage"] == 1.0 and uniform["codes_used"] == K
    single = evaluation.codebook_stats(np.full((5, 4, 4), 3), K)
    assert single["perplexity"] == pytest.approx(1.0, abs=1e-6)
    assert single["codebook_usage"] == 1 / K
    half = evaluation.codebook_stats(np.arange(8).repeat(3), K)  # 8 codes equally -> 8
    assert half["perplexity"] == pytest.approx(8.0, rel=1e-5) and half["codebook_usage"] == 0.5


def test_active_units_hand_case():
    means = np.array([[0.0, 1.0, 0.00, 5.0],
                      [0.5, 1.0, 0.10, 5.0],
                      [1.0, 1.0, 0.00, 5.0],
                      [-0.5, 1.0, 0.10, 5.01]])
    # variances (ddof 0): 0.3125, 0, 0.0025, 1.875e-5 -> only the first > 0.01
    count, variances = evaluation.active_units(means)
    assert count == 1
    np.testing.assert_allclose(variances, [0.3125, 0.0, 0.0025, 1.875e-5], rtol=1e-9, atol=1e-12)
    assert evaluation.active_units(means, threshold=0.001)[0] == 2


def test_psnr_and_normalized_mse_formulas():
    rng = np.random.default_rng(2)
    x = rng.random((6, 5, 5, 3))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    per_image = ((x - y) ** 2).reshape(6, -1).mean(1)
    assert evaluation.mse(x, y) == pytest.approx(per_image.mean())
    assert evaluation.psnr(x, y) == pytest.approx(np.mean(10 * np.log10(1.0 / per_image)))
    assert evaluation.psnr(x * 255, y * 255, max_value=255.0) == pytest.approx(evaluation.psnr(x, y))
    assert evaluation.normalized_mse(x, y) == pytest.approx(np.mean((x - y) ** 2) / np.var(x))
    assert evaluation.normalized_mse(x, y, data_variance=0.5) == pytest.approx(np.mean((x - y) ** 2) / 0.5)
    assert evaluation.psnr(x, x) == pytest.approx(100.0)  # MSE floored at 1e-10


# --------------------------------------------------------------------------- evaluate() on models
@pytest.fixture(scope="module")
def trained_vae():
    rng = np.random.default_rng(0)
    x = np.zeros((64, 28, 28, 1), np.float32)
    for i, (r, c) in enumerate(rng.integers(0, 20, size=(64, 2))):
        x[i, r : r + 8, c : c + 8] = 1.0
    keras.utils.set_random_seed(0)  # deterministic initial weights and training order
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=4, encoder={"type": "mlp", "hidden": [64]}, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=15, batch_size=16, verbose=0)
    return model, x


def test_evaluate_tiny_trained_vae_is_consistent(trained_vae):
    model, x = trained_vae
    outliers = 1.0 - x[:16]  # inverted squares
    r = evaluation.evaluate(model, x, metrics="all", k=50, batch_size=24, outliers=outliers,
                            score="reconstruction", seed=1)
    expected = {"elbo", "iwae", "mse", "nmse", "psnr", "active_units", "kl_per_dim", "auroc", "auprc"}
    assert expected <= set(r) and "perplexity" not in r and "kl_per_layer" not in r
    D = 28 * 28
    assert r["examples"] == 64 and r["outliers"] == 16 and r["iwae_k"] == 50
    assert r["elbo"] <= r["iwae"] + 1e-3
    assert r["elbo_bits_per_dim"] == pytest.approx(-r["elbo"] / (D * math.log(2)), rel=1e-12)
    assert r["iwae_bits_per_dim"] == pytest.approx(-r["iwae"] / (D * math.log(2)), rel=1e-12)
    # reconstruction metrics against numpy on the model's own reconstructions
    recon = np.asarray(model.reconstruct(x), np.float64)
    per_image = ((recon - x) ** 2).reshape(64, -1).mean(1)
    assert r["mse"] == pytest.approx(per_image.mean(), rel=1e-5)
    assert r["nmse"] == pytest.approx(per_image.mean() / np.var(x.astype(np.float64)), rel=1e-5)
    assert r["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / per_image)), rel=1e-5)
    # collapse diagnostics against the model's own posterior and KL
    means = np.asarray(model.encode(x).mean(), np.float64)
    assert r["active_units"] == int(np.sum(np.var(means, axis=0) > 0.01))
    assert len(r["kl_per_dim"]) == 4 and min(r["kl_per_dim"]) >= 0
    mean_kl = float(np.mean(model.loss_terms(x)["kl"]))  # analytic KL: no sampling noise
    assert sum(r["kl_per_dim"]) == pytest.approx(mean_kl, rel=1e-4)
    # anomaly metrics against the pure functions on the same (deterministic) scores
    recon_out = np.asarray(model.reconstruct(outliers), np.float64)
    out_scores = ((recon_out - outliers) ** 2).reshape(16, -1).mean(1)
    assert r["auroc"] == pytest.approx(evaluation.auroc(per_image, out_scores), abs=1e-9)
    assert r["auprc"] == pytest.approx(evaluation.average_precision(per_image, out_scores), abs=1e-9)
    assert r["auroc"] > 0.9 and r["auprc_chance"] == pytest.approx(0.2)
    json.dumps(r)  # JSON-safe


def test_evaluate_seed_is_reproducible_and_restores_generator(trained_vae):
    model, x = trained_vae
    state = model.seed_generator.state.numpy().copy()
    a = evaluation.evaluate(model, x[:16], metrics=("elbo", "iwae"), k=5, seed=7)
    b = evaluation.evaluate(model, x[:16], metrics=("elbo", "iwae"), k=5, seed=7)
    assert a == b
    np.testing.assert_array_equal(model.seed_generator.state.numpy(), state)


def test_evaluate_accepts_datasets_tuples_and_uint8(trained_vae):
    model, x = trained_vae
    x8 = (x[:20] * 255).astype(np.uint8)
    a = evaluation.evaluate(model, x8, metrics=("mse",))
    b = evaluation.evaluate(model, tf.data.Dataset.from_tensor_slices(x8).batch(7), metrics=("mse",))
    c = evaluation.evaluate(model, (x8, np.zeros(20, np.int64)), metrics=("mse",))  # labels ignored
    d = evaluation.evaluate(model, tf.data.Dataset.from_tensor_slices({"image": x8, "label": np.zeros(20)}),
                            metrics="mse")
    assert a["mse"] == pytest.approx(b["mse"]) == pytest.approx(c["mse"]) == pytest.approx(d["mse"])
    assert a["examples"] == b["examples"] == d["examples"] == 20


def test_evaluate_vqvae_codebook_and_prior():
    rng = np.random.default_rng(0)
    x = rng.random((24, 8, 8, 1)).astype(np.float32)
    model = vaezoo.VQVAE(input_shape=(8, 8, 1), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=0, num_downsamples=1,
                         prior={"filters": 8, "layers": 1}, seed=0)
    r = evaluation.evaluate(model, x, metrics="all", batch_size=10, k=3)
    assert {"perplexity", "codebook_usage", "codes_used", "prior_bits_per_code"} <= set(r)
    assert "active_units" not in r and "kl_per_dim" not in r
    codes = np.asarray(model.encode_to_codes(x))
    counts = np.bincount(codes.reshape(-1), minlength=8) / codes.size
    nz = counts[counts > 0]
    assert r["perplexity"] == pytest.approx(np.exp(-np.sum(nz * np.log(nz))), rel=1e-5)
    assert r["codes_used"] == int(np.count_nonzero(counts))
    bits = np.asarray(model.prior.bits_per_code(codes), np.float64).mean()
    assert r["prior_bits_per_code"] == pytest.approx(bits, rel=1e-5)
    assert r["iwae"] == pytest.approx(r["elbo"], rel=1e-6)  # point-mass posterior


def test_codec_bits_per_code_is_log2_k_for_a_flat_context_model_and_tracks_its_logits():
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    model = vaezoo.VQVAE(input_shape=(8, 8, 1), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=0, num_downsamples=1, prior=None,
                         context_model={"channels": 4, "layers": 1}, seed=0)
    model.build_from_images()
    model.context_model.head_kernel.assign(np.zeros((4, 8), np.float32))  # every logit 0: uniform masses
    model.context_model.head_bias.assign(np.zeros(8, np.float32))
    r = evaluation.evaluate(model, x, metrics="all", k=2)
    assert r["codec_bits_per_code"] == pytest.approx(3.0, abs=1e-12)  # log2 8, exactly: 2^24 / 8 each
    # a head that favours the codes the model actually uses codes them in fewer bits
    codes = np.asarray(model.encode_to_codes(x))
    favoured = np.bincount(codes.reshape(-1), minlength=8).argmax()
    bias = np.zeros(8, np.float32)
    bias[favoured] = 4.0
    model.context_model.head_bias.assign(bias)
    share = np.mean(codes == favoured)
    p = np.exp(4.0) / (np.exp(4.0) + 7)  # softmax of the biased logits (1/8-nat units are exact here)
    expected = -(share * np.log2(p) + (1 - share) * np.log2((1 - p) / 7))
    assert evaluation.codec_bits_per_code(model, codes) == pytest.approx(expected, abs=2e-3)
    plain = vaezoo.VQVAE(input_shape=(8, 8, 1), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=0, num_downsamples=1, prior=None)
    assert "codec_bits_per_code" not in evaluation.evaluate(plain, x, metrics="all", k=2)
    with pytest.raises(ValueError, match="context_model=None"):
        evaluation.evaluate(plain, x, metrics=["codec_bits_per_code"])


def test_evaluate_hierarchical_vae_per_layer():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 8, 8, 1)) > 0.5).astype(np.float32)
    model = vaezoo.HierarchicalVAE(input_shape=(8, 8, 1), num_latent_layers=3, latent_dim=2, hidden_dim=16,
                                   encoder={"type": "mlp", "hidden": [16]}, seed=0)
    r = evaluation.evaluate(model, x, metrics=("kl_per_layer", "active_units", "elbo"), seed=0)
    assert len(r["kl_per_layer"]) == 3
    assert len(r["active_units_per_layer"]) == 3 and r["active_units"] == sum(r["active_units_per_layer"])
    # the top layer (index 2; 0 = bottom) needs no sample: KL(q(z_top | x) || N(0, I)), closed form in float64
    q = model.encode(x)
    m, s = np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)
    assert r["kl_per_layer"][2] == pytest.approx(np.mean(np.sum(0.5 * (m**2 + s**2 - 1) - np.log(s), 1)), rel=1e-5)
    # every layer against the float64 closed form on the same posterior draws (one per batch of 5)
    r5 = evaluation.evaluate(model, x, metrics=("kl_per_layer",), seed=3, batch_size=5)
    expected = []
    with evaluation.seeded(model, 3):
        for start in range(0, len(x), 5):
            out = model._top_down(model._bottom_up(model._images(x[start : start + 5])), seed=model._next_seed())
            expected.append(np.stack([_gaussian_kl(q, p) for q, p in zip(out["posterior"], out["prior"])], 1))
    expected = np.concatenate(expected).mean(0)
    assert r5["kl_per_layer"] == pytest.approx(expected, rel=1e-5)
    assert len(set(np.round(expected, 3))) == 3  # distinct layers: a swapped order would show
    # the layers add up to the ELBO's KL term on the same draw
    r12 = evaluation.evaluate(model, x, metrics=("kl_per_layer",), seed=4)
    with evaluation.seeded(model, 4):
        kl = float(np.mean(model.loss_terms(x)["kl"]))
    assert sum(r12["kl_per_layer"]) == pytest.approx(kl, rel=1e-5)
    with pytest.raises(ValueError, match="kl_per_layer"):
        evaluation.evaluate(model, x, metrics=("kl_per_dim",))


def _gaussian_kl(q, p):
    """KL(q || p) per example of two diagonal Gaussians, in float64 numpy (closed form)."""
    mq, sq = np.asarray(q.mean(), np.float64), np.asarray(q.stddev(), np.float64)
    mp = np.broadcast_to(np.asarray(p.mean(), np.float64), mq.shape)
    sp = np.broadcast_to(np.asarray(p.stddev(), np.float64), mq.shape)
    return np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5, axis=-1)


def _constant_classifier(image_shape, num_classes, favourite=0):
    bias = np.zeros(num_classes, np.float32)
    bias[favourite] = 5.0
    return keras.Sequential([keras.Input(image_shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes, kernel_initializer="zeros",
                                                bias_initializer=keras.initializers.Constant(bias))])


def test_conditional_accuracy_counts_per_class():
    model = vaezoo.CVAE(input_shape=(8, 8, 1), latent_dim=2, num_classes=3, encoder={"type": "mlp", "hidden": [8]},
                        seed=0)
    classifier = _constant_classifier((8, 8, 1), 3, favourite=1)
    result = evaluation.conditional_accuracy(model, classifier, samples_per_class=5)
    assert result["conditional_accuracy_per_class"] == [0.0, 1.0, 0.0]
    assert result["conditional_accuracy"] == pytest.approx(1 / 3)
    x = np.zeros((6, 8, 8, 1), np.float32)
    r = evaluation.evaluate(model, (x, np.arange(6) % 3), metrics=("elbo", "conditional_accuracy"),
                            classifier=classifier, samples_per_class=4)
    assert r["conditional_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        evaluation.conditional_accuracy(model, _constant_classifier((8, 8, 1), 5), samples_per_class=2)


def test_reference_classifier_architecture_and_loading(tmp_path):
    from vaezoo.classifier import build_classifier, load_reference_classifier

    model = build_classifier()
    assert tuple(model(np.zeros((2, 28, 28, 1), np.float32)).shape) == (2, 10)
    with pytest.raises(FileNotFoundError, match="train_reference_classifier"):
        load_reference_classifier(weights=str(tmp_path / "missing.weights.h5"))
    path = str(tmp_path / "c.weights.h5")
    model.save_weights(path)
    loaded = load_reference_classifier(weights=path)
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def guarded_vae(trained_vae, monkeypatch):
    model, x = trained_vae
    for name in ("elbo", "iwae", "reconstruct", "encode", "_loss_terms", "_log_importance_weights"):
        monkeypatch.setattr(model, name, _fail)
    return model, x


def _fail(*args, **kwargs):
    raise AssertionError("computation started before the input checks finished")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"metrics": ("elbo", "ebo")}, ValueError, "Unknown metric 'ebo'. Did you mean 'elbo'"),
        ({"metrics": ()}, ValueError, "metrics is empty"),
        ({"metrics": ("perplexity",)}, ValueError, "VQ-VAE metric"),
        ({"metrics": ("kl_per_layer",)}, ValueError, "HierarchicalVAE"),
        ({"metrics": ("auroc",)}, ValueError, "needs an outlier set"),
        ({"metrics": ("conditional_accuracy",)}, ValueError, "CVAE"),
        ({"metrics": ("iwae",), "k": 0}, ValueError, "k must be an integer >= 1"),
        ({"metrics": ("iwae",), "k": 2.5}, TypeError, "k must be an integer"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"metrics": ("auroc",), "outliers": np.zeros((0, 28, 28, 1), np.float32)}, ValueError, "outlier set is empty"),
        ({"metrics": ("auroc",), "outliers": np.zeros((3, 32, 32, 1), np.float32)}, ValueError,
         r"outliers must have shape \(batch, 28, 28, 1\)"),
        ({"metrics": ("elbo",), "outliers": np.zeros((3, 28, 28, 1), np.float32)}, ValueError, "no anomaly metric"),
        ({"metrics": ("auroc",), "outliers": np.zeros((3, 28, 28, 1)), "score": "likelihood"}, ValueError,
         "score must be one of"),
    ],
)
def test_bad_input_fails_before_any_work(guarded_vae, kwargs, error, match):
    model, x = guarded_vae
    with pytest.raises(error, match=match):
        evaluation.evaluate(model, x, **kwargs)


def test_bad_data_fails_before_any_work(guarded_vae):
    model, x = guarded_vae
    with pytest.raises(ValueError, match=r"data must have shape \(batch, 28, 28, 1\)"):
        evaluation.evaluate(model, np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="data is empty"):
        evaluation.evaluate(model, np.zeros((0, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluation.evaluate(model, x * 255.0)
    with pytest.raises(ValueError, match="infinite"):
        evaluation.evaluate(model, tf.data.Dataset.from_tensor_slices(x).batch(4).repeat())
    with pytest.raises(ValueError, match="variance"):
        evaluation.evaluate(model, np.zeros((4, 28, 28, 1), np.float32), metrics=("nmse",))


def test_cvae_needs_conditions():
    model = vaezoo.CVAE(input_shape=(8, 8, 1), latent_dim=2, num_classes=3, encoder={"type": "mlp", "hidden": [8]})
    with pytest.raises(TypeError, match="CVAE needs a condition"):
        evaluation.evaluate(model, np.zeros((4, 8, 8, 1), np.float32), metrics=("elbo",))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        evaluation.evaluate(model, (np.zeros((4, 8, 8, 1), np.float32), np.array([0, 1, 2, 3])), metrics=("elbo",))


# --------------------------------------------------------------------------- CLI
def test_cli_eval_and_traverse(trained_vae, tmp_path, capsys):
    from PIL import Image

    from vaezoo import cli

    model, x = trained_vae
    path = str(tmp_path / "model.keras")
    model.save(path)
    npz = str(tmp_path / "data.npz")
    np.savez(npz, x_train=(x * 255).astype(np.uint8)[..., 0], x_test=(x[:20] * 255).astype(np.uint8)[..., 0])
    spec = json.dumps({"source": "npz", "path": npz})
    out = str(tmp_path / "results.json")
    rc = cli.main(["eval", path, "--data", spec, "--metrics", "elbo,iwae", "mse", "--k", "4", "--json", out])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "iwae_bits_per_dim" in printed
    with open(out) as f:
        report = json.load(f)
    assert report["metrics"]["examples"] == 20 and report["split"] == "test" and report["metrics"]["iwae_k"] == 4
    assert report["data"]["key"] == "x_test" and {"elbo", "iwae", "mse"} <= set(report["metrics"])

    assert cli.main(["eval", path, "--data", spec, "--metrics", "elbo,bogus"]) == 2
    assert "Unknown metric 'bogus'" in capsys.readouterr().err
    assert cli.main(["eval", path]) == 2  # a .keras file carries no data spec
    assert "--data" in capsys.readouterr().err
    assert cli.main(["eval", "no-such-model-name", "--data", spec]) == 2
    assert "no-such-model-name" in capsys.readouterr().err

    png = str(tmp_path / "digit.png")
    Image.fromarray((x[0, ..., 0] * 255).astype(np.uint8)).save(png)
    target = str(tmp_path / "traversal.png")
    assert cli.main(["traverse", path, "--image", png, "--dims", "0", "1", "--values", "-2", "0", "2",
                     "-o", target]) == 0
    # (1 input + 2 dims) strips of 28 + 4 px, 110 px of labels + 3 tiles of 28 + 2 px + 2; times --scale 2
    check_traversal_png(target, model, x[0], dims=[0, 1], values=[-2.0, 0.0, 2.0], scale=2)
    assert cli.main(["traverse", path, "--image", png, "--dims", "9", "-o", target]) == 2


def test_split_specs_and_card_records():
    spec = {"source": "npz", "path": "m.npz", "key": "x_train", "label_key": "y_train", "labels": True}
    test = data.split_spec(spec, "test")
    assert test["key"] == "x_test" and test["label_key"] == "y_test" and spec["key"] == "x_train"
    assert data.split_spec({"source": "tfds", "name": "mnist"}, "test")["split"] == "test"
    assert data.split_spec({"source": "image_tar", "path": "c.tar.gz", "split": "test"}, "train")["split"] == "train"
    images, labels = data.load_split({"source": "dsprites"}, "test", limit=5, labels=True)
    assert images.shape == (5, 64, 64, 1) and labels.shape == (5, 5)
    assert len(np.unique(labels[:, 3])) > 1  # a random subset, not the grid's first images
    report = {"metrics": {"examples": 10, "elbo": -90.0, "elbo_stderr": 1.0, "elbo_bits_per_dim": 0.2,
                          "iwae": -88.0, "iwae_k": 5, "kl_per_dim": [1.0, 2.0]},
              "data": spec, "split": "test", "seed": 0, "hardware": "cpu", "date": "today"}
    records = reports.card_records(report, "vaezoo eval x")
    assert set(records) == {"elbo", "elbo_bits_per_dim", "iwae", "kl_per_dim"}
    from vaezoo.registry import METRIC_KEYS

    assert all(set(r) == METRIC_KEYS for name, r in records.items() if name != "elbo")
    assert set(records["elbo"]) == METRIC_KEYS | {"stderr"} and records["elbo"]["stderr"] == 1.0  # elbo_stderr
    assert "k = 5" in records["iwae"]["protocol"] and records["elbo"]["value"] == -90.0


def test_shipped_mnist_classifier_is_accurate(shared_data_dir):
    from vaezoo.classifier import load_reference_classifier

    try:
        classifier = load_reference_classifier("mnist")
    except FileNotFoundError:
        pytest.skip("vaezoo/pretrained/mnist_classifier.weights.h5 is not built")
    with np.load(os.path.join(shared_data_dir, "mnist.npz")) as d:
        x, y = d["x_test"][:1000, ..., None] / 255.0, d["y_test"][:1000]
    accuracy = np.mean(np.argmax(np.asarray(classifier(x.astype(np.float32))), -1) == y)
    assert accuracy > 0.97


def test_resolver_takes_the_data_spec_from_a_registry_card(monkeypatch):
    registry = pytest.importorskip("vaezoo.registry")
    if "cvae-mnist" not in registry.list_models():
        pytest.skip("no cvae-mnist card")
    monkeypatch.setattr(registry, "load", lambda name, **kw: registry.build(name))  # no weights needed
    model, _, spec, kind = registry.resolve_model("cvae-mnist")
    assert kind == "registry" and type(model).__name__ == "CVAE"
    assert spec["source"] == "npz" and spec["key"] == "x_test" and "tfds" not in spec  # eval_data, runnable


# --------------------------------------------------------------------------- disentanglement metrics
def _dot_sampler():
    """Two factors (row, column of a 2x2 dot on an 8x8 image): a tiny ground-truth data set."""
    from vaezoo.disentanglement import FactorSampler

    def render(classes):
        images = np.zeros((len(classes), 8, 8, 1), np.float32)
        for i, (r, c) in enumerate(classes):
            images[i, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = 1.0
        return images

    return FactorSampler((4, 4), render, ("row", "column"))


def test_evaluate_disentanglement_matches_the_metric_functions():
    from vaezoo import disentanglement as dis

    sampler = _dot_sampler()
    _, x = sampler.sample(64, np.random.default_rng(3))
    keras.utils.set_random_seed(0)
    model = vaezoo.BetaVAE(input_shape=(8, 8, 1), latent_dim=3, beta=2.0, encoder={"type": "mlp", "hidden": [32]})
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x, epochs=5, batch_size=16, verbose=0)
    results = evaluation.evaluate(model, x, metrics=["mig", "beta_vae_score", "factor_vae_score"], factors=sampler,
                                  disentanglement_points=(40, 20), seed=5)
    representation = dis.mean_representation(model)
    mig = dis.mig(representation, sampler, seed=5)
    assert results["mig"] == pytest.approx(mig["score"])
    assert results["mig_per_factor"] == pytest.approx(mig["per_factor"])
    assert results["beta_vae_score"] == pytest.approx(
        dis.beta_vae_score(representation, sampler, num_train=40, num_eval=20, seed=5)["score"])
    assert results["factor_vae_score"] == pytest.approx(
        dis.factor_vae_score(representation, sampler, num_train=40, num_eval=20, seed=5)["score"])
    report = {"metrics": results, "data": {"source": "dsprites"}, "split": "test", "seed": 5, "hardware": "cpu",
              "date": "today"}
    records = reports.card_records(report, "vaezoo eval x")
    assert "disentanglement_points" not in records
    assert "40 training and 20 evaluation points" in records["beta_vae_score"]["protocol"]
    assert "10,000 points" in records["mig"]["protocol"]


def test_disentanglement_metrics_check_their_inputs_first(guarded_vae):
    model, x = guarded_vae
    with pytest.raises(ValueError, match="needs ground-truth factors"):
        evaluation.evaluate(model, x, metrics=["mig"])
    with pytest.raises(ValueError, match=r"observations of shape \(8, 8, 1\); the model takes \(28, 28, 1\)"):
        evaluation.evaluate(model, x, metrics=["mig"], factors=_dot_sampler())
    with pytest.raises(TypeError, match="FactorSampler"):
        evaluation.evaluate(model, x, metrics=["mig"], factors=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="num_eval"):
        evaluation.evaluate(model, x, metrics=["beta_vae_score"], factors=_dot_sampler(), disentanglement_points=(5, 0))
    vq = vaezoo.VQVAE(input_shape=(8, 8, 1), num_embeddings=4, embedding_dim=2, hidden_channels=4,
                      residual_channels=2, num_residual_blocks=0, prior=None)
    with pytest.raises(ValueError, match="single-layer Gaussian VAE"):
        evaluation.evaluate(vq, np.zeros((2, 8, 8, 1), np.float32), metrics=["mig"], factors=_dot_sampler())


def test_run_eval_refuses_disentanglement_without_factor_data(monkeypatch, guarded_vae):
    model, _ = guarded_vae
    from vaezoo import registry

    monkeypatch.setattr(registry, "resolve_model",
                        lambda ref: registry.ResolvedModel(model, "m", {"source": "npz", "path": "x.npz"}, "keras"))
    with pytest.raises(ValueError, match=r"mig need data with known generative factors \(source: dsprites\)"):
        reports.run_eval("m.keras", metrics=["elbo", "mig"])


def test_vqz_rate_is_the_size_and_quality_of_one_image_files_at_each_quality():
    from vaezoo import code_search, codec

    rng = np.random.default_rng(1)
    x = rng.random((5, 16, 16, 3)).astype(np.float32)
    model = vaezoo.RQVAE(input_shape=(16, 16, 3), depth=3, num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=1,
                         context_model={"channels": 8, "layers": 1, "condition_depths": 1}, seed=0)
    r = evaluation.evaluate(model, x, metrics=("vqz_rate",))
    assert r["vqz_qualities"] == [1, 2, 3]
    for i, quality in enumerate((1, 2, 3)):  # a second computation: the codec's own files and decoder
        files = [len(codec.compress(model, [image], quality=quality)) for image in x]
        assert r["vqz_bytes_per_image"][i] == pytest.approx(np.mean(files), abs=1e-12)
        assert r["vqz_bits_per_pixel"][i] == pytest.approx(8 * np.mean(files) / 256, abs=1e-12)
        decoded = np.asarray(codec.decompress(model, codec.compress(model, x, quality=quality)))
        assert r["vqz_psnr"][i] == pytest.approx(evaluation.psnr(x, decoded), abs=1e-6)
        assert r["vqz_ssim"][i] == pytest.approx(evaluation.ssim(x, decoded), abs=1e-6)
    assert r["vqz_bytes_per_image"][0] < r["vqz_bytes_per_image"][1] < r["vqz_bytes_per_image"][2]
    assert evaluation.ssim(x, x) == pytest.approx(1.0, abs=1e-6) and evaluation.ssim(x, x[::-1]) < 0.5
    records = reports.card_records({"metrics": {**r, "examples": 5}, "split": "test", "data": {"source": "npz"},
                                    "seed": 0, "hardware": "h", "date": "d"}, "vaezoo eval ...")
    assert records["vqz_psnr"]["value"] == r["vqz_psnr"] and "qualities [1, 2, 3]" in records["vqz_psnr"]["protocol"]
    assert f"beam search of width {code_search.DEFAULT_BEAM_WIDTH}" in records["vqz_psnr"]["protocol"]
    vq = vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                      residual_channels=4, num_residual_blocks=1, prior=None, seed=0)
    one = evaluation.evaluate(vq, x[:2], metrics=("vqz_rate",))
    assert one["vqz_qualities"] == [1]
    assert one["vqz_bytes_per_image"] == [float(len(codec.compress(vq, x[:1])))]  # fixed-length: every file alike
    with pytest.raises(ValueError, match="vqz_rate measures the .vqz codec"):
        evaluation.evaluate(vaezoo.VAE(input_shape=(16, 16, 3), latent_dim=2), x, metrics=("vqz_rate",))
