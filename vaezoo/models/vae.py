"""The VAE (Kingma & Welling, 2014) and the beta-VAE (Higgins et al., 2017; Burgess et al., 2018)."""

import keras
import tensorflow as tf

from vaezoo import networks, validation
from vaezoo.distributions import DiagonalGaussian, StandardNormalPrior, build_likelihood, kl_divergence
from vaezoo.models.base import LatentVariableModel, kl_warmup_weight, kl_with_free_bits


@keras.saving.register_keras_serializable(package="vaezoo")
class VAE(LatentVariableModel):
    """Variational autoencoder with a diagonal-Gaussian posterior and N(0, I) prior.

    The objective per example is `nll + w(step) * KL`, where `w` ramps linearly from 0 to 1
    over `kl_warmup_steps` (Bowman et al., 2016) and, with `free_bits > 0`, each latent
    dimension's KL counts as at least `free_bits` nats (Kingma et al., 2016; applied per
    example). The KL is analytic where TFP has it and a one-sample estimate otherwise.

    Args:
        input_shape: image shape `(height, width, channels)`.
        latent_dim: size of the latent vector z.
        encoder: network spec (see `vaezoo.networks`), e.g. `"conv"` or
            `{"type": "mlp", "hidden": [512, 256]}`.
        decoder: network spec of the decoder; `None` mirrors the encoder.
        likelihood: `"bernoulli"`, `"gaussian"`, `"discretized_logistic"` or a dict with
            `type` and the layer's arguments.
        posterior_min_scale: floor of the posterior standard deviation.
        kl_warmup_steps: steps over which the KL weight grows from 0 to 1 (0: off).
        free_bits: minimum KL per latent dimension in nats (0: off).
        seed: integer seed for the model's random draws.

    Example:
        >>> model = vaezoo.VAE(input_shape=(28, 28, 1), latent_dim=16)
        >>> model.compile(optimizer="adam")
        >>> model.fit(images, epochs=1, batch_size=64)   # uint8 or [0, 1] floats
        >>> model.sample(16, seed=0).shape
        TensorShape([16, 28, 28, 1])

    References:
        Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        latent_dim=16,
        encoder="conv",
        decoder=None,
        likelihood="bernoulli",
        posterior_min_scale=1e-3,
        kl_warmup_steps=0,
        free_bits=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        validation.check_int("latent_dim", latent_dim, 1)
        validation.check_int("kl_warmup_steps", kl_warmup_steps, 0)
        validation.check_positive("free_bits", free_bits, allow_zero=True)
        self.latent_dim = int(latent_dim)
        self.encoder_spec = networks.resolve_spec(encoder)
        self.decoder_spec = networks.resolve_spec(decoder if decoder is not None else encoder)
        self.likelihood_spec = likelihood
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)

        self.posterior = DiagonalGaussian(posterior_min_scale, name="posterior")
        self.prior = StandardNormalPrior((self.latent_dim,), name="prior")
        self.likelihood = build_likelihood(likelihood)
        self._build_networks()

    def _build_networks(self):
        """Create `self.encoder` and `self.decoder` (conditional families override this)."""
        self.encoder = networks.build_encoder(
            self.encoder_spec, self.image_shape, self.posterior.params_size(self.latent_dim)
        )
        self.decoder = networks.build_decoder(
            self.decoder_spec,
            self.latent_dim,
            (*self.image_shape[:2], self.likelihood.params_size(self.image_shape[-1])),
        )

    # ----------------------------------------------------------------- hooks
    def _encode(self, x, condition=None):
        return self.posterior(self.encoder(x))

    def _decode(self, z, condition=None):
        return self.likelihood(self.decoder(z))

    def _nll(self, x, z, condition=None):
        return -self._decode(z, condition).log_prob(self.likelihood.targets(x))

    def prior_distribution(self, condition=None):
        """The prior p(z) (N(0, I)); conditional families return p(z | c)."""
        return self.prior()

    def _kl_per_dim(self, posterior, z, condition=None):
        prior = self.prior_distribution(condition)
        return kl_divergence(posterior.distribution, prior.distribution, z)

    def _objective(self, nll, kl, kl_per_dim, step):
        return nll + kl_warmup_weight(step, self.kl_warmup_steps) * kl_with_free_bits(kl_per_dim, self.free_bits)

    def _loss_terms(self, x, condition=None, training=False, step=None):
        posterior = self._encode(x, condition)
        z = posterior.sample(seed=self._next_seed())
        nll = self._nll(x, z, condition)
        kl_per_dim = self._kl_per_dim(posterior, z, condition)
        kl = tf.reduce_sum(kl_per_dim, axis=-1)
        return {"loss": self._objective(nll, kl, kl_per_dim, step), "nll": nll, "kl": kl}

    def _score_terms(self, x, condition=None):
        posterior = self._encode(x, condition)
        z = posterior.mean()
        kl = tf.reduce_sum(self._kl_per_dim(posterior, z, condition), axis=-1)
        return {"nll": self._nll(x, z, condition), "kl": kl}

    def _log_importance_weights(self, x, condition, num_samples):
        posterior = self._encode(x, condition)
        z = posterior.sample(num_samples, seed=self._next_seed())  # (k, batch, latent)
        flat_z = tf.reshape(z, (-1, self.latent_dim))
        repeated_x = tf.tile(x, [num_samples, 1, 1, 1])
        flat_c = None if condition is None else tf.tile(condition, [num_samples, 1])
        log_px = -self._nll(repeated_x, flat_z, flat_c)
        log_px = tf.reshape(log_px, (num_samples, -1))
        return log_px + self.prior_distribution(condition).log_prob(z) - posterior.log_prob(z)

    def _sample_noise(self, n, seed):
        return tf.random.stateless_normal((n, self.latent_dim), seed=seed)

    def _sample_from_noise(self, eps, condition, temperature=1.0):
        prior = self.prior_distribution(condition)
        return self.likelihood.image(self._decode(prior.mean() + temperature * prior.stddev() * eps, condition))

    # ----------------------------------------------------------------- public API
    def kl_per_dim(self, x, condition=None, seed=None):
        """KL(q(z_i | x) || p(z_i)) of every latent dimension i, nats, shape `(batch, latent_dim)`.

        Analytic where TFP has it (diagonal Gaussians; for a CVAE against its prior p(z | c)),
        otherwise a one-sample estimate at a posterior sample drawn with `seed`. The columns
        sum to the `kl` term of `loss_terms`; near-zero columns are collapsed units.

        Args:
            x: images, uint8 in [0, 255] or float in [0, 1], shape `(batch, *input_shape)`.
            condition: for conditional families, one condition per image.
            seed: integer for a reproducible draw; `None` draws from the model's generator.
        """
        x = self._images(x)
        condition = self.check_condition(condition, x.shape[0])
        return self._core("kl_per_dim", self._kl_per_dim_core, x, condition, self._seed_pair(seed))

    def _kl_per_dim_core(self, x, condition, seed):
        posterior = self._encode(x, condition)
        return self._kl_per_dim(posterior, posterior.sample(seed=seed), condition)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "encoder": self.encoder_spec,
            "decoder": self.decoder_spec,
            "likelihood": self.likelihood_spec,
            "posterior_min_scale": self.posterior.min_scale,
            "kl_warmup_steps": self.kl_warmup_steps,
            "free_bits": self.free_bits,
        }


@keras.saving.register_keras_serializable(package="vaezoo")
class BetaVAE(VAE):
    """beta-VAE: the KL is weighted by `beta`, or pushed towards an annealed capacity C.

    Two objectives per example:
    - Higgins et al. (2017): `nll + beta * w(step) * KL`.
    - Burgess et al. (2018), when `capacity_max` is set: `nll + gamma * |KL - C(step)|` with
      `C(step) = capacity_max * min(1, step / capacity_steps)`.

    Args:
        beta: weight of the KL term (Higgins); must be >= 0.
        gamma: weight of the capacity term (Burgess); must be > 0.
        capacity_max: final capacity C_max in nats; `None` uses the beta objective.
        capacity_steps: steps over which C grows linearly from 0 to `capacity_max`.
        **kwargs: everything `VAE` takes.

    Example:
        >>> model = vaezoo.BetaVAE(input_shape=(64, 64, 1), latent_dim=10, beta=4.0)
        >>> annealed = vaezoo.BetaVAE(input_shape=(64, 64, 1), latent_dim=10, gamma=1000.0,
        ...                           capacity_max=25.0, capacity_steps=100_000)

    References:
        Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained
        Variational Framework", ICLR 2017. Burgess et al., "Understanding disentangling in
        beta-VAE", 2018.
    """

    loss_term_names = ("loss", "nll", "kl", "capacity")

    def __init__(self, beta=4.0, gamma=1000.0, capacity_max=None, capacity_steps=100000, **kwargs):
        super().__init__(**kwargs)
        validation.check_positive("beta", beta, allow_zero=True)
        validation.check_positive("gamma", gamma)
        if capacity_max is not None:
            validation.check_positive("capacity_max", capacity_max, allow_zero=True)
        validation.check_int("capacity_steps", capacity_steps, 1)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.capacity_max = None if capacity_max is None else float(capacity_max)
        self.capacity_steps = int(capacity_steps)

    def capacity(self, step):
        """The annealed capacity C(step) in nats (0 when the beta objective is used)."""
        if self.capacity_max is None:
            return tf.constant(0.0)
        if step is None:
            return tf.constant(self.capacity_max)
        fraction = tf.minimum(1.0, tf.cast(step, tf.float32) / float(self.capacity_steps))
        return self.capacity_max * fraction

    def _objective(self, nll, kl, kl_per_dim, step):
        kl_for_loss = kl_with_free_bits(kl_per_dim, self.free_bits)
        if self.capacity_max is None:
            return nll + self.beta * kl_warmup_weight(step, self.kl_warmup_steps) * kl_for_loss
        return nll + self.gamma * tf.abs(kl_for_loss - self.capacity(step))

    def _loss_terms(self, x, condition=None, training=False, step=None):
        terms = super()._loss_terms(x, condition, training, step)
        terms["capacity"] = tf.fill(tf.shape(terms["kl"]), self.capacity(step))
        return terms

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "gamma": self.gamma,
            "capacity_max": self.capacity_max,
            "capacity_steps": self.capacity_steps,
        }
