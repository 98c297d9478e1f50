"""Keras 3 layers that turn tensors into TensorFlow Probability distributions.

`tfp.layers` subclass Keras 2 (`tf_keras`) and do not work inside Keras 3 models, so vaezoo
has its own layers in the same spirit: each layer says how many raw parameters it needs per
event element (`params_size`) and maps a parameter tensor to a `tfd.Distribution` whose event
covers every non-batch axis (via `tfd.Independent`), so `log_prob` gives one number per example.

Likelihood layers also know how images map to their event space (`targets`) and back
(`image`): vaezoo images are float32 in [0, 1] inside the models, a discretized likelihood
works on the integer pixel values 0..255.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vaezoo.validation import check_int, check_positive

tfd = tfp.distributions
tfb = tfp.bijectors

MAX_LOG_SCALE = 3.0  # ceiling of the discretized logistic's log-scale (see DiscretizedLogisticMixture)


def _independent(distribution, event_rank):
    return tfd.Independent(distribution, reinterpreted_batch_ndims=event_rank)


class DistributionLayer(keras.layers.Layer):
    """Base class: `params_size(channels)` raw parameters per event element -> distribution."""

    def params_size(self, channels):
        raise NotImplementedError

    def compute_output_spec(self, *args, **kwargs):  # outputs are distributions, not tensors
        raise NotImplementedError("distribution layers are used eagerly or inside subclassed models")


class DiagonalGaussian(DistributionLayer):
    """Diagonal Gaussian from `[loc, raw_scale]` split on the last axis.

    The scale is `softplus(raw_scale) + min_scale`: positive and bounded away from zero, so
    log-densities and KL terms stay finite however the encoder behaves.

    Args:
        min_scale: floor added to the softplus scale.

    Example:
        >>> layer = DiagonalGaussian()
        >>> q = layer(tf.zeros([8, 2 * 16]))          # event shape (16,)
        >>> q.log_prob(q.sample()).shape
        TensorShape([8])
    """

    def __init__(self, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        check_positive("min_scale", min_scale)
        self.min_scale = float(min_scale)

    def params_size(self, channels):
        return 2 * channels

    def call(self, params):
        params = tf.cast(params, tf.float32)
        loc, raw_scale = tf.split(params, 2, axis=-1)
        scale = tf.nn.softplus(raw_scale) + self.min_scale
        return _independent(tfd.Normal(loc, scale), len(params.shape) - 1)

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale}


class StandardNormalPrior(DistributionLayer):
    """The N(0, I) prior over a latent of shape `latent_shape`; call it with no input.

    Args:
        latent_shape: event shape of the latent, e.g. `(16,)` or `(8, 8, 4)`.

    Example:
        >>> prior = StandardNormalPrior((16,))
        >>> prior().sample(4).shape
        TensorShape([4, 16])
    """

    def __init__(self, latent_shape, **kwargs):
        super().__init__(**kwargs)
        self.latent_shape = tuple(int(d) for d in latent_shape)

    def params_size(self, channels):
        return 0

    def call(self, inputs=None):
        zeros = tf.zeros(self.latent_shape, tf.float32)
        return _independent(tfd.Normal(zeros, 1.0), len(self.latent_shape))

    def get_config(self):
        return {**super().get_config(), "latent_shape": list(self.latent_shape)}


class BernoulliLikelihood(DistributionLayer):
    """Independent Bernoulli pixels from logits; for binary (or binarized) images.

    Example:
        >>> lik = BernoulliLikelihood()
        >>> p = lik(tf.zeros([2, 28, 28, 1]))
        >>> p.log_prob(tf.ones([2, 28, 28, 1])).shape
        TensorShape([2])
    """

    def params_size(self, channels):
        return channels

    def call(self, logits):
        logits = tf.cast(logits, tf.float32)
        return _independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), len(logits.shape) - 1)

    def targets(self, images):
        return images

    def image(self, distribution):
        return distribution.mean()


class GaussianLikelihood(DistributionLayer):
    """Gaussian pixels on the [0, 1] scale with a fixed, learned or per-pixel scale.

    Args:
        scale: a positive float (fixed), `"learned"` (one trainable scale per channel) or
            `"per_pixel"` (the decoder predicts a scale for every pixel).
        min_scale: floor for learned and per-pixel scales.

    Example:
        >>> lik = GaussianLikelihood(scale=0.1)
        >>> lik(tf.zeros([2, 32, 32, 3])).log_prob(tf.zeros([2, 32, 32, 3])).shape
        TensorShape([2])
    """

    def __init__(self, scale="learned", min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        if scale not in ("learned", "per_pixel"):
            check_positive("scale", scale)
            scale = float(scale)
        check_positive("min_scale", min_scale)
        self.scale = scale
        self.min_scale = float(min_scale)

    def params_size(self, channels):
        return 2 * channels if self.scale == "per_pixel" else channels

    def build(self, input_shape):
        if self.scale == "learned":
            channels = input_shape[-1]
            self.raw_scale = self.add_weight(
                name="raw_scale", shape=(channels,), initializer="zeros", trainable=True
            )

    def call(self, params):
        params = tf.cast(params, tf.float32)
        if self.scale == "per_pixel":
            loc, raw = tf.split(params, 2, axis=-1)
            scale = tf.nn.softplus(raw) + self.min_scale
        elif self.scale == "learned":
            loc = params
            scale = tf.nn.softplus(tf.cast(self.raw_scale, tf.float32)) + self.min_scale
        else:
            loc, scale = params, self.scale
        return _independent(tfd.Normal(loc, scale), len(params.shape) - 1)

    def targets(self, images):
        return images

    def image(self, distribution):
        return tf.clip_by_value(distribution.mean(), 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "min_scale": self.min_scale}


class DiscretizedLogisticMixture(DistributionLayer):
    """Mixture of discretized logistics over integer pixel values 0..2**num_bits - 1.

    Each sub-pixel gets `num_components` logistics; the probability of an integer value v is
    the logistic mass on [v - 0.5, v + 0.5], with the tails folded into 0 and the top value
    (as in PixelCNN++), so `log_prob` is the log-probability of the integer image and bits/dim
    is meaningful. Channels are modelled independently given the decoder output.

    Args:
        num_components: mixture components per sub-pixel.
        num_bits: bit depth of the pixels (8 for ordinary images).
        min_log_scale: floor on the logistic log-scale.

    Example:
        >>> lik = DiscretizedLogisticMixture(num_components=5)
        >>> params = tf.zeros([2, 32, 32, 3 * lik.params_size(1)])
        >>> lik(params).log_prob(lik.targets(tf.zeros([2, 32, 32, 3]))).shape
        TensorShape([2])
    """

    def __init__(self, num_components=5, num_bits=8, min_log_scale=-7.0, **kwargs):
        super().__init__(**kwargs)
        check_int("num_components", num_components, 1)
        check_int("num_bits", num_bits, 1)
        self.num_components = int(num_components)
        self.num_bits = int(num_bits)
        self.min_log_scale = float(min_log_scale)

    @property
    def num_levels(self):
        return 2**self.num_bits

    def params_size(self, channels):
        return 3 * self.num_components * channels

    def call(self, params):
        params = tf.cast(params, tf.float32)
        k = self.num_components
        shape = tf.shape(params)
        channels = params.shape[-1] // (3 * k)
        params = tf.reshape(params, tf.concat([shape[:-1], [channels, 3 * k]], 0))
        logits, loc, log_scale = tf.split(params, 3, axis=-1)
        # The decoder works on a [-1, 1]-ish scale; map locations onto 0..levels-1.
        half = (self.num_levels - 1) / 2.0
        loc = half * (loc + 1.0)
        # The ceiling keeps one pixel bin's mass far above float32 rounding of the CDF
        # (a flatter logistic would give log_prob = -inf); e^3 * 127.5 is ~2,560 levels wide.
        scale = half * tf.exp(tf.clip_by_value(log_scale, self.min_log_scale, MAX_LOG_SCALE))
        logistic = tfd.TransformedDistribution(tfd.Logistic(loc, scale), tfb.Shift(-0.5))
        pixel = tfd.QuantizedDistribution(logistic, low=0.0, high=float(self.num_levels - 1))
        mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), pixel)
        return _independent(mixture, len(params.shape) - 2)

    def targets(self, images):
        return tf.round(images * (self.num_levels - 1))

    def image(self, distribution):
        mixture = distribution.distribution
        probs = mixture.mixture_distribution.probs_parameter()
        loc = mixture.components_distribution.distribution.distribution.loc
        mean = tf.reduce_sum(probs * loc, axis=-1)
        return tf.clip_by_value(mean / (self.num_levels - 1), 0.0, 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "num_components": self.num_components,
            "num_bits": self.num_bits,
            "min_log_scale": self.min_log_scale,
        }


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "discretized_logistic": DiscretizedLogisticMixture,
}


def build_likelihood(spec):
    """Build a likelihood layer from a name or `{"type": name, **kwargs}`."""
    from vaezoo.validation import ConfigError

    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("type", None)
    if kind not in LIKELIHOODS:
        raise ConfigError(f"Unknown likelihood {kind!r}; expected one of {sorted(LIKELIHOODS)}.")
    try:
        return LIKELIHOODS[kind](**spec)
    except TypeError as error:
        raise ConfigError(f"Bad arguments for likelihood {kind!r}: {error}") from None


def kl_divergence(q, p, z=None):
    """KL(q || p) per example: analytic where TFP knows it, else one-sample Monte Carlo at `z`."""
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:
        if z is None:
            raise
        return q.log_prob(z) - p.log_prob(z)


def bits_per_dim(nats, num_dims):
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    return nats / (num_dims * math.log(2.0))
