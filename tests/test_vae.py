"""VAE and BetaVAE: the shared contract, plus the objective's schedules against closed forms."""

import numpy as np
import pytest
import tensorflow as tf

import vaezoo
from helpers import check_compiled_cores, check_model_contract


@pytest.mark.parametrize(
    "make",
    [
        lambda: vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=4, encoder={"type": "conv", "filters": [8, 16], "hidden": 32}, seed=1),
        lambda: vaezoo.BetaVAE(input_shape=(28, 28, 1), latent_dim=4, beta=2.0, encoder={"type": "mlp", "hidden": [64]}, seed=2),
    ],
    ids=["vae-conv", "beta-vae-mlp"],
)
def test_contract(make, binary_images, tmp_path):
    check_model_contract(make, binary_images, tmp_path)


def _terms_with_fixed_parts(model, x, step):
    """Recompute the loss from the returned nll/kl with numpy, for a closed-form check."""
    terms = model._loss_terms(tf.constant(x), training=True, step=tf.constant(step))
    return {k: np.asarray(v) for k, v in terms.items()}


def test_beta_objective_weights_kl(binary_images):
    model = vaezoo.BetaVAE(input_shape=(28, 28, 1), latent_dim=3, beta=4.0, kl_warmup_steps=10,
                           encoder={"type": "mlp", "hidden": [16]}, seed=0)
    t = _terms_with_fixed_parts(model, binary_images[:4], step=5)
    np.testing.assert_allclose(t["loss"], t["nll"] + 4.0 * 0.5 * t["kl"], rtol=1e-5)
    t = _terms_with_fixed_parts(model, binary_images[:4], step=50)  # warm-up finished
    np.testing.assert_allclose(t["loss"], t["nll"] + 4.0 * t["kl"], rtol=1e-5)


def test_capacity_annealing_objective(binary_images):
    model = vaezoo.BetaVAE(input_shape=(28, 28, 1), latent_dim=3, gamma=100.0, capacity_max=20.0,
                           capacity_steps=100, encoder={"type": "mlp", "hidden": [16]}, seed=0)
    for step, c in [(0, 0.0), (25, 5.0), (100, 20.0), (1000, 20.0)]:
        t = _terms_with_fixed_parts(model, binary_images[:4], step=step)
        np.testing.assert_allclose(t["capacity"], c, rtol=1e-6)
        np.testing.assert_allclose(t["loss"], t["nll"] + 100.0 * np.abs(t["kl"] - c), rtol=1e-5)


def test_free_bits_floor_per_dimension(binary_images):
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, free_bits=2.0,
                       encoder={"type": "mlp", "hidden": [16]}, seed=0)
    x = tf.constant(binary_images[:4])
    posterior = model._encode(x)
    kl_dims = np.asarray(model._kl_per_dim(posterior, posterior.sample(seed=[0, 0])))
    # untrained encoder: per-dimension KL is tiny, so each dimension counts as 2 nats
    assert np.all(kl_dims < 2.0)
    t = _terms_with_fixed_parts(model, binary_images[:4], step=0)
    np.testing.assert_allclose(t["loss"], t["nll"] + 3 * 2.0, rtol=1e-5)


def test_iwae_is_batched_over_chunks(binary_images):
    """Chunked IWAE with k = 40 equals a hand-made log-mean-exp over the same draws."""
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, encoder={"type": "mlp", "hidden": [16]}, seed=3)
    x = binary_images[:5]
    model.build_from_images()
    state = model.seed_generator.state.numpy()
    chunked = np.asarray(model.iwae(x, k=40, chunk_size=7))
    model.seed_generator.state.assign(state)
    x32 = tf.constant(x)
    weights = [np.asarray(model._log_importance_weights(x32, None, n), np.float64) for n in [7] * 5 + [5]]
    log_w = np.concatenate(weights, axis=0)
    reference = np.log(np.mean(np.exp(log_w - log_w.max(0)), axis=0)) + log_w.max(0)
    np.testing.assert_allclose(chunked, reference, rtol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="beta"):
        vaezoo.BetaVAE(beta=-1.0)
    with pytest.raises(TypeError, match="latent_dim"):
        vaezoo.VAE(latent_dim=2.5)
    with pytest.raises(ValueError, match="divisible by 4"):
        vaezoo.VAE(input_shape=(30, 30, 1))
    with pytest.raises(vaezoo.ConfigError, match="Did you mean 'filters'"):
        vaezoo.VAE(encoder={"type": "conv", "filter": [8]})


def test_elbo_below_iwae_k_below_iwae_bigger_k_on_trained_model(binary_images):
    """mean ELBO <= mean IWAE_5 <= mean IWAE_500 on a trained toy model (Burda et al. Thm 1)."""
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [64]}, seed=4)
    model.compile(optimizer="adam")
    model.fit(tf.data.Dataset.from_tensor_slices(binary_images).batch(16), epochs=30, verbose=0)
    elbo = float(np.mean(model.elbo(binary_images)))
    iwae5 = float(np.mean(model.iwae(binary_images, k=5)))
    iwae500 = float(np.mean(model.iwae(binary_images, k=500)))
    assert elbo < iwae5 < iwae500, (elbo, iwae5, iwae500)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros((2, 28, 28, 3), np.float32), ValueError, r"shape \(batch, 28, 28, 1\).*got shape \(2, 28, 28, 3\)"),
        (np.zeros((28, 28, 1), np.float32), ValueError, r"got shape \(28, 28, 1\)"),
        (np.zeros((2, 28, 28, 1), np.int32) + 3, TypeError, "uint8 in \\[0, 255\\] or float.*int32"),
        (np.full((2, 28, 28, 1), 255.0, np.float32), ValueError, "pass uint8 or divide by 255"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), ValueError, "NaN or Inf"),
        (np.zeros((0, 28, 28, 1), np.float32), ValueError, "empty batch"),
        (np.array([["a"]]), TypeError, "dtype <U1"),
    ],
    ids=["channels", "rank", "dtype", "range", "nan", "empty", "strings"],
)
def test_bad_images_are_refused_before_tensorflow(bad, error, message):
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [8]})
    for call in (model.encode, model.reconstruct, model.elbo, lambda x: model.iwae(x, k=2)):
        with pytest.raises(error, match=message):
            call(bad)


def test_bad_latents_and_arguments(binary_images):
    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=2, encoder={"type": "mlp", "hidden": [8]})
    with pytest.raises(ValueError, match=r"shape \(batch, 2\), got shape \(3, 5\)"):
        model.decode(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        model.iwae(binary_images[:2], k=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.sample(2, temperature=0.0)
    with pytest.raises(TypeError, match="unconditional"):
        model.elbo(binary_images[:2], condition=np.zeros(2))
    uint8 = (binary_images[:2] * 255).astype(np.uint8)  # uint8 in [0, 255] is accepted and scaled
    np.testing.assert_allclose(model.reconstruct(uint8), model.reconstruct(binary_images[:2]), atol=1e-6)


def test_interpolation_ends_at_the_reconstructions(binary_images):
    from vaezoo.visualize import interpolate

    model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, encoder={"type": "mlp", "hidden": [16]}, seed=0)
    line = interpolate(model, binary_images[0], binary_images[1], steps=5)
    assert line.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(line[[0, -1]], model.reconstruct(binary_images[:2]), atol=1e-5)
    assert not np.allclose(line[2], line[0])


def test_xla_compiled_cores_give_the_numbers_of_the_default_cores(binary_images):
    """`jit_compile_cores = True` compiles each core with XLA (its function is marked
    _XlaMustCompile: it runs XLA-compiled or fails, never silently falls back) and gives
    the deterministic numbers of the default cores, which are not marked."""
    def make():
        return vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, encoder={"type": "mlp", "hidden": [16]}, seed=3)

    plain, xla = make(), make()
    xla.set_weights(plain.get_weights())
    xla.jit_compile_cores = True
    x = binary_images[:5]
    for model in (plain, xla):  # batch 5, then 2: the second relaxes the batch dimension
        model.reconstruct(x[:2])
    np.testing.assert_allclose(xla.reconstruct(x), plain.reconstruct(x), rtol=1e-5, atol=1e-6)
    for term in ("nll", "kl"):
        np.testing.assert_allclose(xla.score_terms(x)[term], plain.score_terms(x)[term], rtol=1e-5, atol=1e-4)
    # a seed's draws are reproducible under XLA, but not those of the default cores (XLA
    # generates stateless random numbers with its own algorithm)
    np.testing.assert_array_equal(xla.sample(4, seed=2), xla.sample(4, seed=2))
    got, want = xla.encode(x), plain.encode(x)
    np.testing.assert_allclose(got.stddev(), want.stddev(), rtol=1e-5)

    def marked(model):
        return {key[0]: "_XlaMustCompile" in cf.function_def.attr and cf.function_def.attr["_XlaMustCompile"].b
                for key, cf in model._compiled_state["concrete"].items()}

    assert set(marked(xla).values()) == {True} and set(marked(plain).values()) == {False}
    assert set(marked(xla)) == {"reconstruct", "score_terms", "sample", "encode"}


@pytest.mark.parametrize("memo", [None, 3], ids=["memo", "memo-overflowing"])
def test_compiled_cores_trace_boundedly_and_match_the_eager_methods(binary_images, memo):
    """Each public method runs one compiled core per model: over batch sizes 1, 32, 5, 17,
    several k, n and seeds it traces at most twice (the second trace relaxes the batch), and
    gives the numbers (and for encode / decode the distributions) of the same method run
    eagerly, including draws from the model's seed generator (`seed=None`) and from integer
    seeds; also when the memo of concrete functions holds fewer signatures than are used."""
    def make():
        return vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=3, encoder={"type": "mlp", "hidden": [16]}, seed=3)

    def kl_per_dim(model, x, batch):
        return {"kl_per_dim": model.kl_per_dim(x, seed=batch)}

    counts = check_compiled_cores(make, binary_images, extra=kl_per_dim, max_memoized_signatures=memo)
    assert set(counts) == {"elbo", "iwae", "reconstruct", "score_terms", "posterior_means", "latent_statistics",
                           "kl_per_dim", "sample", "encode", "decode", "sample_per_seed"}, counts
