"""Keras 3 layers that turn tensors into TensorFlow Probability distributions.

`tfp.layers` subclass Keras 2 (`tf_keras`) and do not work inside Keras 3 models, so vaezoo
has its own layers in the same spirit: each layer says how many raw parameters it needs per
event element (`params_size`) and maps a parameter tensor to a `tfd.Distribution` whose event
covers every non-batch axis, so `log_prob` gives one number per example.

Gaussian and Bernoulli layers return `IndependentNormal` / `IndependentBernoulli`: the same
distribution as `tfd.Independent(tfd.Normal(loc, scale), event_ndims)` (or of a Bernoulli),
in one object that is cheap to build. A public method returns its distribution from a
compiled core, and TensorFlow rebuilds it in Python from the core's tensors on every call:
a `tfd.Independent` around a `tfd.Normal` is two distributions to build there, and the
outer one infers its batch shape from the inner one's, which together cost as much as a
small network's whole run at batch 1; these read their shapes from the parameters' static
shapes and build one distribution. The elementwise maths stays TFP's (`distribution`, built
on first use); KL divergences are registered with `tfd.kl_divergence` between these classes
and against `tfd.Independent`. `IndependentDeterministic` does the same for the point mass a
VQ-VAE's or RQ-VAE's `encode` returns.

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


class _FactorizedDistribution(tfd.AutoCompositeTensorDistribution):
    """An elementwise TFP distribution whose last `event_ndims` axes are one event.

    What `tfd.Independent(elementwise, event_ndims)` computes, with its shapes read from
    the parameters' static shapes (no inference at construction) and the elementwise
    distribution built only when a method needs it. Subclasses store their parameters as
    tensors and give `_params_shape` (static), `_params_shape_tensor` and `_elementwise`.
    """

    @property
    def event_ndims(self):
        """How many trailing axes of the parameters make up one event (an int)."""
        return self._event_ndims

    @property
    def reinterpreted_batch_ndims(self):
        """`event_ndims`, under `tfd.Independent`'s name."""
        return self._event_ndims

    @property
    def distribution(self):
        """The elementwise TFP distribution (scalar events), as `tfd.Independent.distribution`."""
        elementwise = self.__dict__.get("_elementwise_distribution")
        if elementwise is None:
            elementwise = self._elementwise()
            self._elementwise_distribution = self._no_dependency(elementwise)
        return elementwise

    def _split_axis(self, rank):
        return rank - self._event_ndims

    def _batch_shape(self):
        shape = self._params_shape()
        if shape.rank is None:
            return tf.TensorShape(None)
        return shape[: self._split_axis(shape.rank)]

    def _event_shape(self):
        shape = self._params_shape()
        if shape.rank is None:
            return tf.TensorShape([None] * self._event_ndims)
        return shape[self._split_axis(shape.rank):]

    def _batch_shape_tensor(self):
        shape = self._params_shape_tensor()
        return shape[: self._split_axis(tf.size(shape))]

    def _event_shape_tensor(self):
        shape = self._params_shape_tensor()
        return shape[self._split_axis(tf.size(shape)):]

    def _sum_event(self, values):
        if self._event_ndims == 0:
            return values
        return tf.reduce_sum(values, axis=list(range(-self._event_ndims, 0)))

    def _log_prob(self, x):
        return self._sum_event(self.distribution.log_prob(x))

    def _entropy(self):
        return self._sum_event(self.distribution.entropy())

    def _sample_n(self, n, seed=None):
        # the elementwise distribution's own draws: the same samples as tfd.Independent's
        return self.distribution.sample(n, seed=seed)

    def _mode(self):
        return self.distribution.mode()

    def _variance(self):
        return self.distribution.variance()

    def _stddev(self):
        return self.distribution.stddev()

    def _parameter_control_dependencies(self, is_init):
        # Skipped when TensorFlow rebuilds the distribution from a tf.function's outputs.
        if is_init:
            rank = self._params_shape().rank
            if rank is not None and self._event_ndims > rank:
                raise ValueError(f"event_ndims={self._event_ndims} is more than the parameters' rank ({rank}); "
                                 f"parameter shape {self._params_shape()}.")
            if self.validate_args:
                self.distribution  # the elementwise distribution checks its parameters as it is built
        return []


def _float_dtype(*values):
    """The dtype of the first of `values` that has one (a tensor or numpy array), else float32."""
    for value in values:
        if hasattr(value, "dtype"):
            return tf.as_dtype(value.dtype)
    return tf.float32


def _event_ndims_of(distribution):
    return distribution.event_ndims


class IndependentNormal(_FactorizedDistribution):
    """Normal distributions whose last `event_ndims` axes are one event (a diagonal Gaussian).

    The same distribution as `tfd.Independent(tfd.Normal(loc, scale), event_ndims)`: the
    same log-densities, samples (for the same seed), moments, entropy and KL divergences,
    with `distribution` and `reinterpreted_batch_ndims` as on `tfd.Independent`. It is
    cheaper to build (see the module docstring), which is what the public methods pay for
    each distribution they return. `tfd.kl_divergence` works between two of them (closed
    form) and against a `tfd.Independent`.

    Args:
        loc: float tensor of means; `loc` and `scale` broadcast to the full shape
            `batch_shape + event_shape`.
        scale: positive float tensor of standard deviations.
        event_ndims: how many trailing axes of the full shape are the event (an int >= 0).
        validate_args: check that `scale` is positive (TFP's `validate_args`).
        allow_nan_stats: TFP's `allow_nan_stats`.
        name: name of the distribution.

    Example:
        >>> q = IndependentNormal(tf.zeros([8, 16]), tf.ones([8, 16]), event_ndims=1)
        >>> q.batch_shape, q.event_shape
        (TensorShape([8]), TensorShape([16]))
        >>> tfd.kl_divergence(q, IndependentNormal(tf.zeros([16]), 1.0)).shape
        TensorShape([8])
    """

    def __init__(self, loc, scale, event_ndims=1, validate_args=False, allow_nan_stats=True,
                 name="IndependentNormal"):
        parameters = dict(locals())
        check_int("event_ndims", event_ndims, 0)
        dtype = _float_dtype(loc, scale)
        self._loc = tf.convert_to_tensor(loc, dtype=dtype, name="loc")
        self._scale = tf.convert_to_tensor(scale, dtype=dtype, name="scale")
        self._event_ndims = int(event_ndims)
        super().__init__(dtype=self._loc.dtype, reparameterization_type=tfd.FULLY_REPARAMETERIZED,
                         validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(loc=tfp.util.ParameterProperties(event_ndims=_event_ndims_of),
                    scale=tfp.util.ParameterProperties(event_ndims=_event_ndims_of))

    @property
    def loc(self):
        """The means (as given: broadcast with `scale` to the full shape)."""
        return self._loc

    @property
    def scale(self):
        """The standard deviations (as given: broadcast with `loc` to the full shape)."""
        return self._scale

    def _params_shape(self):
        return tf.broadcast_static_shape(self._loc.shape, self._scale.shape)

    def _params_shape_tensor(self):
        return tf.broadcast_dynamic_shape(tf.shape(self._loc), tf.shape(self._scale))

    def _elementwise(self):
        return tfd.Normal(self._loc, self._scale, validate_args=self.validate_args,
                          allow_nan_stats=self.allow_nan_stats)

    def _mean(self):
        if _has_broadcast_shape(self._loc, self._scale):
            return self._loc
        return self.distribution.mean()

    def _mode(self):
        return self._mean()

    def _stddev(self):
        if _has_broadcast_shape(self._scale, self._loc):
            return self._scale
        return self.distribution.stddev()


def _has_broadcast_shape(values, other):
    """Whether the static shapes show that `values` already has the shape of `values` and
    `other` broadcast (then a mean is `loc` itself). Eagerly every shape is known; in a graph
    an unknown dimension gives False, and the elementwise distribution broadcasts."""
    a, b = values.shape, other.shape
    if a.rank is None or b.rank is None or b.rank > a.rank:
        return False
    return all(db == 1 or (da is not None and da == db) for da, db in zip(a.as_list()[a.rank - b.rank:], b.as_list()))


class IndependentBernoulli(_FactorizedDistribution):
    """Bernoulli variables whose last `event_ndims` axes are one event, from logits.

    The same distribution as `tfd.Independent(tfd.Bernoulli(logits=logits, dtype=dtype),
    event_ndims)` (see `IndependentNormal` for what is the same and why it exists).

    Args:
        logits: float tensor of log-odds of a 1, shape `batch_shape + event_shape`.
        event_ndims: how many trailing axes of `logits` are the event (an int >= 0).
        dtype: dtype of the samples (float32: images).
        validate_args: TFP's `validate_args`.
        allow_nan_stats: TFP's `allow_nan_stats`.
        name: name of the distribution.

    Example:
        >>> p = IndependentBernoulli(tf.zeros([2, 28, 28, 1]), event_ndims=3)
        >>> p.log_prob(tf.ones([2, 28, 28, 1])).shape
        TensorShape([2])
    """

    def __init__(self, logits, event_ndims=1, dtype=tf.float32, validate_args=False, allow_nan_stats=True,
                 name="IndependentBernoulli"):
        parameters = dict(locals())
        check_int("event_ndims", event_ndims, 0)
        self._logits = tf.convert_to_tensor(logits, dtype=_float_dtype(logits), name="logits")
        self._event_ndims = int(event_ndims)
        super().__init__(dtype=dtype, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                         validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(logits=tfp.util.ParameterProperties(event_ndims=_event_ndims_of))

    @property
    def logits(self):
        """The log-odds of a 1."""
        return self._logits

    def _params_shape(self):
        return self._logits.shape

    def _params_shape_tensor(self):
        return tf.shape(self._logits)

    def _elementwise(self):
        return tfd.Bernoulli(logits=self._logits, dtype=self.dtype, validate_args=self.validate_args,
                             allow_nan_stats=self.allow_nan_stats)

    def _mean(self):
        return tf.math.sigmoid(self._logits)  # tfd.Bernoulli's mean from logits


class IndependentDeterministic(_FactorizedDistribution):
    """A point mass at `loc` whose last `event_ndims` axes are one event: a VQ-VAE's posterior.

    The same distribution as `tfd.Independent(tfd.Deterministic(loc), event_ndims)` (see
    `IndependentNormal` for what is the same and why it exists).

    Args:
        loc: float tensor, the point, shape `batch_shape + event_shape`.
        event_ndims: how many trailing axes of `loc` are the event (an int >= 0).
        validate_args: TFP's `validate_args`.
        allow_nan_stats: TFP's `allow_nan_stats`.
        name: name of the distribution.

    Example:
        >>> q = IndependentDeterministic(tf.ones([2, 8, 8, 64]), event_ndims=3)
        >>> q.log_prob(tf.ones([2, 8, 8, 64])).numpy()
        array([0., 0.], dtype=float32)
    """

    def __init__(self, loc, event_ndims=1, validate_args=False, allow_nan_stats=True,
                 name="IndependentDeterministic"):
        parameters = dict(locals())
        check_int("event_ndims", event_ndims, 0)
        self._loc = tf.convert_to_tensor(loc, dtype=_float_dtype(loc), name="loc")
        self._event_ndims = int(event_ndims)
        super().__init__(dtype=self._loc.dtype, reparameterization_type=tfd.NOT_REPARAMETERIZED,
                         validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                         parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(loc=tfp.util.ParameterProperties(event_ndims=_event_ndims_of))

    @property
    def loc(self):
        """The point."""
        return self._loc

    def _params_shape(self):
        return self._loc.shape

    def _params_shape_tensor(self):
        return tf.shape(self._loc)

    def _elementwise(self):
        return tfd.Deterministic(self._loc, validate_args=self.validate_args, allow_nan_stats=self.allow_nan_stats)

    def _mean(self):
        return self._loc

    def _mode(self):
        return self._loc


def _as_independent(distribution):
    """A vaezoo factorized distribution as the `tfd.Independent` it stands for."""
    if isinstance(distribution, _FactorizedDistribution):
        return tfd.Independent(distribution.distribution, reinterpreted_batch_ndims=distribution.event_ndims)
    return distribution


@tfd.RegisterKL(IndependentNormal, IndependentNormal)
@tfd.RegisterKL(IndependentBernoulli, IndependentBernoulli)
def _kl_factorized(a, b, name=None):
    """KL(a || b) per batch member: the elementwise closed form summed over the event."""
    if a.event_ndims != b.event_ndims:
        raise ValueError(f"KL between distributions with event_ndims {a.event_ndims} and {b.event_ndims}.")
    if a.event_shape.is_fully_defined() and b.event_shape.is_fully_defined() and a.event_shape != b.event_shape:
        raise ValueError(f"Event shapes do not match: {a.event_shape} and {b.event_shape}.")
    return a._sum_event(tfd.kl_divergence(a.distribution, b.distribution, name=name))


@tfd.RegisterKL(IndependentNormal, tfd.Independent)
@tfd.RegisterKL(tfd.Independent, IndependentNormal)
@tfd.RegisterKL(IndependentBernoulli, tfd.Independent)
@tfd.RegisterKL(tfd.Independent, IndependentBernoulli)
def _kl_against_independent(a, b, name=None):
    """KL(a || b) with a `tfd.Independent` on one side: TFP's Independent-Independent KL."""
    return tfd.kl_divergence(_as_independent(a), _as_independent(b), name=name)


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
        return IndependentNormal(loc, scale, event_ndims=len(params.shape) - 1)

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
        return IndependentNormal(zeros, 1.0, event_ndims=len(self.latent_shape))

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
        return IndependentBernoulli(logits, event_ndims=len(logits.shape) - 1)

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
        return IndependentNormal(loc, scale, event_ndims=len(params.shape) - 1)

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
