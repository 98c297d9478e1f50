"""Disentanglement metrics on codes whose answer is known: a code that copies the factors
(perfect), pure noise (chance), a code that mixes factors; the samplers' guarantees; the
dSprites pipeline end to end; and latent traversals."""

import numpy as np
import pytest

import vaezoo
from vaezoo import disentanglement as dis
from helpers import check_traversal_png, expected_traversal, grid_tiles

SIZES = (3, 6, 10, 8)  # every factor fits in 20 histogram bins, so a copy loses nothing


def perfect(observations):
    return np.asarray(observations, np.float64) * 1.7 + 0.3  # any affine copy of the factors


def make_noise(dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return lambda observations: rng.normal(size=(len(observations), dim))


# --------------------------------------------------------------------------- information theory
def test_mutual_information_and_entropy_by_hand():
    a = np.array([0, 0, 1, 1])
    assert dis.entropy(a) == pytest.approx(np.log(2))
    assert dis.mutual_information(a, a) == pytest.approx(np.log(2))
    assert dis.mutual_information(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    # joint p(0,0)=1/2, p(1,0)=1/4, p(1,1)=1/4: I = H(b) - H(b|a) = H(3/4,1/4) - 1/2 * log 2
    b = np.array([0, 0, 0, 1])
    expected = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) - 0.5 * np.log(2)
    assert dis.mutual_information(a, b) == pytest.approx(expected)
    assert dis.mutual_information(np.array([5, 5, 9, 9]), np.array([-1, -1, 3, 3])) == pytest.approx(np.log(2))


def test_histogram_discretize_matches_disentanglement_lib():
    codes = np.array([[0.0, 1.0], [0.5, 1.0], [1.0, 1.0], [0.24, 1.0]])
    out = dis.histogram_discretize(codes, num_bins=4)
    np.testing.assert_array_equal(out[:, 0], [1, 3, 4, 1])  # edges 0, .25, .5, .75 (max in the last bin)
    assert len(np.unique(out[:, 1])) == 1  # a constant dimension is one bin


# --------------------------------------------------------------------------- MIG
def test_mig_is_one_for_copied_factors_and_near_zero_for_noise():
    sampler = dis.FactorSampler(SIZES)
    result = dis.mig(perfect, sampler, num_train=10000, seed=0)
    assert result["score"] == pytest.approx(1.0, abs=0.01)
    assert result["factors_used"] == 4 and len(result["per_factor"]) == 4
    assert dis.mig(make_noise(), sampler, num_train=10000, seed=0)["score"] < 0.02


def test_mig_of_codes_with_a_known_gap_is_exact():
    """Factors v0 in {0..3} and v1 in {0, 1, 2} on a balanced grid (every pair 100 times, so the
    empirical distributions are exact); code dims: an affine copy of v0, the high bit of v0, a
    copy of v1, the indicator [v1 == 0], and two noise dims. By hand, I(copy; v) = H(v) and
    I(f(v); v) = H(f(v)):
      v0: (H(v0) - H(high bit)) / H(v0) = (ln 4 - ln 2) / ln 4 = 1/2
      v1: (H(v1) - H(1/3, 2/3)) / H(v1) = (2/3 ln 2) / ln 3
    (the noise dims' empirical MI, < 0.03 nats, is below every runner-up, ln 2 and 0.64)."""
    v0, v1 = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
    factors = np.tile(np.stack([v0.ravel(), v1.ravel()], axis=1), (100, 1))
    noise = np.random.default_rng(0).normal(size=(len(factors), 2))
    codes = np.column_stack([1.7 * factors[:, 0] + 0.3, factors[:, 0] // 2, -0.5 * factors[:, 1],
                             factors[:, 1] == 0, noise])
    result = dis.mig_from_codes(codes, factors)
    expected = [0.5, (2 / 3) * np.log(2) / np.log(3)]
    assert result["per_factor"] == pytest.approx(expected, abs=1e-12)
    assert result["score"] == pytest.approx(np.mean(expected), abs=1e-12)  # 0.4603
    mi = np.asarray(result["mutual_information"])
    h13 = -(np.log(1 / 3) / 3 + np.log(2 / 3) * 2 / 3)
    np.testing.assert_allclose(mi[:4], [[np.log(4), 0], [np.log(2), 0], [0, np.log(3)], [0, h13]], atol=1e-12)


def test_mig_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least 2 code dimensions"):
        dis.mig_from_codes(np.zeros((10, 1)), np.zeros((10, 2), int))
    with pytest.raises(ValueError, match="equal n"):
        dis.mig_from_codes(np.zeros((10, 3)), np.zeros((9, 2), int))
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        dis.mig(lambda x: np.zeros(len(x)), dis.FactorSampler(SIZES), num_train=50)


# --------------------------------------------------------------------------- BetaVAE and FactorVAE
def test_beta_vae_score_perfect_and_chance():
    sampler = dis.FactorSampler(SIZES)
    good = dis.beta_vae_score(perfect, sampler, num_train=1000, num_eval=500, seed=0)
    assert good["score"] > 0.98 and good["train_accuracy"] > 0.98
    chance = dis.beta_vae_score(make_noise(), sampler, num_train=1000, num_eval=1000, seed=1)
    assert abs(chance["score"] - 1 / len(SIZES)) < 0.07


def test_factor_vae_score_perfect_and_chance():
    sampler = dis.FactorSampler(SIZES)
    good = dis.factor_vae_score(perfect, sampler, num_train=1000, num_eval=500, num_variance_estimate=2000, seed=0)
    assert good["score"] == 1.0 and good["num_active_dims"] == 4
    # noise: every dimension wins votes at random; the majority vote is barely above chance
    chance = dis.factor_vae_score(make_noise(dim=4), sampler, num_train=2000, num_eval=2000,
                                  num_variance_estimate=2000, seed=1)
    assert chance["score"] < 1 / len(SIZES) + 0.1
    dead = dis.factor_vae_score(lambda x: np.zeros((len(x), 3)), sampler, num_train=10, num_eval=10,
                                num_variance_estimate=100)
    assert dead["score"] == 0.0 and dead["num_active_dims"] == 0


@pytest.mark.parametrize("metric", [dis.beta_vae_score, dis.factor_vae_score])
def test_progress_bar_counts_every_point_and_changes_nothing(metric, capsys):
    sampler = dis.FactorSampler(SIZES)
    kw = dict(num_train=100, num_eval=60, seed=3, points_per_chunk=16)
    quiet = metric(make_noise(seed=5), sampler, **kw)
    shown = metric(make_noise(seed=5), sampler, progress=True, **kw)
    assert shown == quiet
    out = capsys.readouterr().out
    assert "100 training + 60 evaluation" in out and "160/160" in out


def test_logistic_regression_matches_a_known_solution():
    # separable in one feature: the classifier must find it
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = np.stack([y + rng.normal(0, 0.1, 600), rng.normal(size=600)], axis=1)
    w, b = dis._fit_logistic(x, y, 3)
    assert np.mean(np.argmax(x @ w + b, 1) == y) > 0.99
    # optimum: the penalized gradient vanishes
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad_w = x.T @ (p - np.eye(3)[y]) + w
    assert np.abs(grad_w).max() < 1e-4


# --------------------------------------------------------------------------- samplers
def test_grid_sampler_pairs_and_fixed_batches_share_the_factor():
    sampler = dis.FactorSampler(SIZES)
    rng = np.random.default_rng(0)
    k = rng.integers(0, 4, 200)
    a, b = sampler.sample_pairs(k, rng)
    assert np.all(a[np.arange(200), k] == b[np.arange(200), k])
    assert np.mean(a != b) > 0.5  # the other factors are drawn independently
    batches = sampler.sample_fixed(np.array([2, 0]), 16, rng).reshape(2, 16, -1)
    assert len(np.unique(batches[0, :, 2])) == 1 and len(np.unique(batches[1, :, 0])) == 1
    assert len(np.unique(batches[0, :, 0])) > 1


def test_array_sampler_matches_on_the_fixed_factor():
    rng = np.random.default_rng(0)
    factors = np.stack([rng.integers(0, 4, 500) * 10, rng.integers(0, 3, 500)], axis=1)  # values 0, 10, 20, 30
    observations = np.concatenate([factors, rng.normal(size=(500, 1))], axis=1)
    sampler = dis.ArrayFactorSampler(observations, factors)
    assert sampler.factor_sizes == (4, 3)
    k = rng.integers(0, 2, 300)
    a, b = sampler.sample_pairs(k, rng)
    assert np.all(a[np.arange(300), k] == b[np.arange(300), k])
    batches = sampler.sample_fixed(np.array([0, 1, 1]), 20, rng).reshape(3, 20, -1)
    for j, factor in enumerate([0, 1, 1]):
        assert len(np.unique(batches[j, :, factor])) == 1
    # the perfect code scores on the array sampler too
    code = lambda obs: obs[:, :2]
    assert dis.beta_vae_score(code, sampler, num_train=300, num_eval=200, batch_size=16)["score"] > 0.95
    assert dis.factor_vae_score(code, sampler, num_train=300, num_eval=200, batch_size=16,
                                num_variance_estimate=500)["score"] == 1.0
    assert dis.mig(code, sampler, num_train=2000)["score"] == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="integer array"):
        dis.ArrayFactorSampler(observations, factors.astype(float))


def test_dsprites_pipeline_with_image_moments():
    """On rendered dSprites, a code of image moments finds position (and scale), not orientation."""
    sampler = dis.FactorSampler.dsprites()
    assert sampler.factor_sizes == (3, 6, 40, 32, 32) and sampler.factor_names[3] == "pos_x"
    factors, images = sampler.sample(4, np.random.default_rng(0))
    assert images.shape == (4, 64, 64, 1) and images.dtype == np.float32 and set(np.unique(images)) <= {0.0, 1.0}

    def moments(images):
        x = np.asarray(images, np.float64)[..., 0]
        mass = x.sum((1, 2))
        cols, rows = np.arange(64) + 0.5, np.arange(64) + 0.5
        cx = (x.sum(1) * cols).sum(1) / mass
        cy = (x.sum(2) * rows).sum(1) / mass
        return np.stack([cx, cy, mass], axis=1)

    result = dis.mig(moments, sampler, num_train=2000, seed=0, batch_size=500)
    gaps = dict(zip(sampler.factor_names, result["per_factor"]))
    assert gaps["pos_x"] > 0.5 and gaps["pos_y"] > 0.5
    assert gaps["orientation"] < 0.1
    # 3 code dimensions for 5 factors: at most 3/5 of the votes can be right; chance is 1/5
    score = dis.factor_vae_score(moments, sampler, num_train=120, num_eval=80, num_variance_estimate=300,
                                 batch_size=16, seed=0)
    assert score["score"] > 0.35


# --------------------------------------------------------------------------- traversals
@pytest.fixture(scope="module")
def small_vae():
    return vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, encoder={"type": "mlp", "hidden": [16]}, seed=0)


def test_traversal_grid_shape_and_content(small_vae, binary_images, tmp_path):
    model = small_vae
    image = binary_images[0]
    grid = dis.traversal_grid(model, image, dims=[0, 2], values=[-2.0, 0.0, 2.0], padding=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 30 + 2, 3 * 30 + 2, 1)
    # tile (row i, column j) is decode(z) with z = encode(image).mean() and z[dims[i]] = values[j]
    tiles = grid_tiles(grid, 2, 3, (28, 28), padding=2)
    expected = expected_traversal(model, image, dims=[0, 2], values=[-2.0, 0.0, 2.0])
    np.testing.assert_allclose(tiles, expected, rtol=0, atol=1)  # uint8 rounding of float32 decodes
    assert len(np.unique(expected.reshape(6, -1), axis=0)) == 6  # every tile differs: the test can tell them apart
    background = grid.copy()
    background[2:-2, 2:-2] = 128
    assert np.all(background == 128)  # the padding frame
    images = dis.traversal_images(model, image, dims=[1], values=[-1.0, 1.0])
    assert images.shape == (1, 2, 28, 28, 1)
    # setting a dimension to its own posterior mean reproduces the reconstruction
    z = np.asarray(model.encode(image[None]).mean())[0]
    same = dis.traversal_images(model, image, dims=[1], values=[z[1]])[0, 0]
    np.testing.assert_allclose(same, np.asarray(model.reconstruct(image[None]))[0], atol=1e-5)
    path = dis.save_traversal(model, image, str(tmp_path / "t.png"), dims=[0, 1], values=[-1.0, 1.5])
    check_traversal_png(path, model, image, dims=[0, 1], values=[-1.0, 1.5], scale=2)


def test_traversal_bad_input(small_vae, binary_images):
    with pytest.raises(ValueError, match=r"dims must be integers in \[0, 3\)"):
        dis.traversal_grid(small_vae, binary_images[0], dims=[3])
    with pytest.raises(ValueError, match="one image"):
        dis.traversal_grid(small_vae, binary_images[:2])
    with pytest.raises(ValueError, match="finite"):
        dis.traversal_grid(small_vae, binary_images[0], values=[np.nan])
    vq = vaezoo.VQVAE(input_shape=(8, 8, 1), num_embeddings=4, embedding_dim=2, hidden_channels=4,
                      residual_channels=2, num_residual_blocks=0, num_downsamples=1, prior=None)
    with pytest.raises(ValueError, match="code grids"):
        dis.traversal_grid(vq, np.zeros((8, 8, 1), np.float32))


def test_traversal_of_a_cvae_takes_a_condition():
    model = vaezoo.CVAE(input_shape=(8, 8, 1), latent_dim=2, num_classes=3, encoder={"type": "mlp", "hidden": [8]},
                        seed=0)
    image = np.zeros((8, 8, 1), np.float32)
    grid = dis.traversal_grid(model, image, condition=2, values=[0.0, 1.0])
    assert grid.shape == (2 * 10 + 2, 2 * 10 + 2, 1)  # default dims: both latents
    expected = expected_traversal(model, image, dims=[0, 1], values=[0.0, 1.0], condition=2)
    np.testing.assert_allclose(grid_tiles(grid, 2, 2, (8, 8)), expected, rtol=0, atol=1)
    other_label = expected_traversal(model, image, dims=[0, 1], values=[0.0, 1.0], condition=0)
    assert np.abs(other_label.astype(int) - expected).max() > 1  # so the condition is what the tiles show
    with pytest.raises(TypeError, match="needs a condition"):
        dis.traversal_grid(model, np.zeros((8, 8, 1), np.float32))
