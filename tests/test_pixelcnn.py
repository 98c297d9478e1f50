"""The gated PixelCNN prior over code grids: causality, normalisation, sampling, training."""

import itertools
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from vaezoo.models.pixelcnn import PixelCNN


def _randomize(model, seed=0, scale=0.4):
    """Large random weights, so that any dependence between positions is plainly visible."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(scale=scale, size=v.shape).astype(np.float32))
    return model


def _influence(model, codes, rng):
    """`changed[p, q]`: do the logits at position p move when only the code at q changes?"""
    height, width = model.grid_shape
    k = model.num_embeddings
    positions = height * width
    base = np.asarray(model.logits(codes.reshape(1, height, width)))[0].reshape(positions, k)
    perturbed = np.repeat(codes[None], positions, axis=0).reshape(positions, positions)
    for q in range(positions):
        perturbed[q, q] = (perturbed[q, q] + rng.integers(1, k)) % k
    logits = np.asarray(model.logits(perturbed.reshape(positions, height, width)))
    logits = logits.reshape(positions, positions, k)  # (perturbed q, position p, k)
    return np.abs(logits - base[None]).max(-1).T > 1e-4


def _leaks(model, rng, trials=3):
    """Positions p whose logits change when codes at positions >= p (raster order) change."""
    height, width = model.grid_shape
    positions = height * width
    leaks = set()
    for _ in range(trials):
        codes = rng.integers(0, model.num_embeddings, size=positions)
        base = np.asarray(model.logits(codes.reshape(1, height, width)))[0].reshape(positions, -1)
        batch = np.repeat(codes[None], positions, axis=0)
        for p in range(positions):  # row p: every code from p on redrawn
            batch[p, p:] = rng.integers(0, model.num_embeddings, size=positions - p)
        logits = np.asarray(model.logits(batch.reshape(positions, height, width))).reshape(positions, positions, -1)
        for p in range(positions):
            if not np.allclose(logits[p, p], base[p], rtol=0, atol=1e-5):
                leaks.add(p)
    return leaks


def test_logits_depend_only_on_earlier_codes_and_on_all_of_them(rng):
    model = _randomize(PixelCNN(num_embeddings=5, grid_shape=(4, 4), filters=8, layers=3, seed=0))
    assert _leaks(model, rng) == set()
    changed = _influence(model, rng.integers(0, 5, size=16), rng)
    # causal: no position depends on itself or a later one ...
    assert not np.any(np.triu(changed)), np.argwhere(np.triu(changed))
    # ... and no blind spot: with 3 layers on a 4x4 grid every earlier position counts
    assert np.all(np.tril(changed, -1) == np.tril(np.ones_like(changed), -1)), np.argwhere(~changed & np.tri(16, k=-1, dtype=bool))


@pytest.mark.parametrize("stack", ["vertical", "horizontal"])
def test_causality_check_catches_a_wrong_mask(stack, rng):
    model = _randomize(PixelCNN(num_embeddings=5, grid_shape=(4, 4), filters=8, layers=3, seed=0))
    conv = getattr(model.gated[0], stack)
    conv.mask = np.ones_like(conv.mask)  # the first layer sees the current row / position
    assert _leaks(model, rng)


def _all_grids(k, shape):
    return np.array(list(itertools.product(range(k), repeat=int(np.prod(shape)))), np.int32).reshape(-1, *shape)


def test_log_prob_is_normalised_over_all_grids():
    model = _randomize(PixelCNN(num_embeddings=3, grid_shape=(2, 2), filters=8, layers=2, seed=0))
    grids = _all_grids(3, (2, 2))  # all 81 grids
    log_p = np.asarray(model.log_prob(grids), np.float64)
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-5)
    assert np.exp(log_p).max() > 3 / 81  # far from uniform, so the sum is a real check
    np.testing.assert_allclose(model.bits_per_code(grids), -log_p / (4 * np.log(2)), rtol=1e-5)

    model.gated[0].horizontal.mask = np.ones_like(model.gated[0].horizontal.mask)  # a wrong mask
    assert abs(np.exp(np.asarray(model.log_prob(grids), np.float64)).sum() - 1.0) > 1e-2


def test_ancestral_samples_follow_log_prob():
    model = _randomize(PixelCNN(num_embeddings=3, grid_shape=(2, 2), filters=8, layers=2, seed=0))
    grids = _all_grids(3, (2, 2))
    probs = np.exp(np.asarray(model.log_prob(grids), np.float64))
    model.max_samples_per_call = 20000  # tiny 2x2 grids: the statistics need more than the default
    samples = np.asarray(model.sample(20000, seed=7))
    assert samples.dtype == np.int32 and samples.shape == (20000, 2, 2)
    index = (samples.reshape(-1, 4) * 3 ** np.arange(3, -1, -1)).sum(1)  # grid -> row of `grids`
    freq = np.bincount(index, minlength=81) / len(samples)
    assert 0.5 * np.abs(freq - probs).sum() < 0.03, 0.5 * np.abs(freq - probs).sum()
    np.testing.assert_array_equal(model.sample(5, seed=7), model.sample(5, seed=7))
    assert not np.array_equal(model.sample(50, seed=1), model.sample(50, seed=2))
    cold = np.asarray(model.sample(2000, seed=3, temperature=0.05)).reshape(-1, 4)
    greedy = np.zeros((1, 2, 2), np.int32)  # argmax at each step, in raster order
    for p in range(4):
        greedy.flat[p] = np.argmax(np.asarray(model.logits(greedy))[0].reshape(4, 3)[p])
    greedy = greedy.ravel()
    assert np.mean(np.all(cold == greedy, axis=1)) > 0.9


def test_fit_on_codes_lowers_loss_and_save_reload(rng, tmp_path):
    # codes with structure: each grid is a constant code, so a causal model can learn it
    codes = np.repeat(rng.integers(0, 4, size=(64, 1, 1)), 9, axis=1).reshape(64, 3, 3).astype(np.int32)
    model = PixelCNN(num_embeddings=4, grid_shape=(3, 3), filters=16, layers=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(tf.data.Dataset.from_tensor_slices(codes).batch(16), epochs=5, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0], history
    assert set(history) == {"loss", "bits_per_code"}

    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    assert PixelCNN.from_config(config).get_config() == config
    expected = np.asarray(model.log_prob(codes[:4]))
    path = os.path.join(str(tmp_path), "prior.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is PixelCNN
    np.testing.assert_array_equal(loaded.log_prob(codes[:4]), expected)


def test_bad_inputs():
    model = PixelCNN(num_embeddings=4, grid_shape=(3, 3), filters=4, layers=1)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.log_prob(np.full((1, 3, 3), 4))
    with pytest.raises(ValueError, match=r"\(batch, 3, 3\)"):
        model.log_prob(np.zeros((1, 3, 2), np.int32))
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(np.zeros((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="num_embeddings"):
        PixelCNN(num_embeddings=0)
    with pytest.raises(ValueError, match="odd"):
        PixelCNN(kernel_size=4)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    assert vaezoo.PixelCNN is PixelCNN


@pytest.mark.parametrize("kernel_size, layers, grid", [(3, 3, (5, 6)), (5, 2, (4, 3))])
def test_row_cached_sampler_draws_the_codes_of_the_full_grid_loop(kernel_size, layers, grid):
    """`sample_from_noise` (vertical stack once per row, horizontal stack once per position) draws
    exactly the codes of the straightforward loop that reruns the network on the whole grid
    at every position, from the same Gumbel noise; and `sample(n, seed)` is that sampler."""
    model = _randomize(PixelCNN(num_embeddings=7, grid_shape=grid, filters=8, layers=layers,
                                kernel_size=kernel_size, seed=0), scale=0.3)
    noise = model.gumbel_noise(16, tf.constant([4, 0]))
    for temperature in (1.0, 0.5):
        fast = np.asarray(model.sample_from_noise(noise, temperature))
        reference = np.asarray(model._sample_from_noise_full_grid(noise, temperature))
        assert fast.shape == (16, *grid) and fast.dtype == np.int32
        np.testing.assert_array_equal(fast, reference)
    # negative control: drawn without the context of earlier codes (what a cache that never
    # filled would give), the codes differ
    logits = np.asarray(model.logits(np.zeros((16, *grid), np.int32)), np.float32).reshape(16, -1, 7)
    no_context = np.argmax(logits + np.asarray(noise), axis=-1).reshape(16, *grid)
    assert np.mean(no_context != fast) > 0.05  # 0.075 and 0.18 here
    np.testing.assert_array_equal(model.sample(16, seed=4), model.sample_from_noise(noise))
    # a grid's draws do not depend on the batch it is drawn in (up to the rounding of log)
    np.testing.assert_allclose(model.gumbel_noise(1, tf.constant([4, 0]))[0], noise[0], rtol=1e-5, atol=1e-6)


def test_vqvae_sample_per_seed_and_the_exported_sample_use_the_row_cached_sampler(monkeypatch):
    """`sample_per_seed` row i is `sample(1, seed=seeds[i])`; the export's `sample` signature
    runs `PixelCNN.sample_from_noise` (traced once, batched), never the full-grid loop."""
    from vaezoo.export.saved_model import signature_functions
    from vaezoo.models.pixelcnn import PixelCNN as Prior

    model = vaezoo.VQVAE(input_shape=(8, 8, 3), num_embeddings=8, embedding_dim=4, hidden_channels=16,
                         residual_channels=8, num_residual_blocks=1, prior={"filters": 8, "layers": 2}, seed=0)
    _randomize(model.prior, scale=0.3)
    seeds = [5, 9, 2]
    rows = np.asarray(model.sample_per_seed(seeds))
    for i, seed in enumerate(seeds):
        np.testing.assert_allclose(rows[i], np.asarray(model.sample(1, seed=seed))[0], rtol=0, atol=1e-6)
    calls = {"fast": 0, "full": 0}
    fast, full = Prior.sample_from_noise, Prior._sample_from_noise_full_grid
    monkeypatch.setattr(Prior, "sample_from_noise", lambda self, *a: calls.__setitem__("fast", calls["fast"] + 1)
                        or fast(self, *a))
    monkeypatch.setattr(Prior, "_sample_from_noise_full_grid", lambda self, *a: calls.__setitem__(
        "full", calls["full"] + 1) or full(self, *a))
    fn, signature = signature_functions(model)["sample"]
    exported = tf.function(fn, input_signature=signature)
    out = exported(tf.constant(seeds, tf.int32))
    assert calls == {"fast": 1, "full": 0}
    np.testing.assert_allclose(out["images"], rows, rtol=0, atol=1e-6)
