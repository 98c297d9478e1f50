"""The conditional VAE (Sohn et al., 2015): q(z | x, c), p(x | z, c) and a prior p(z | c)."""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo import networks, validation
from vaezoo.distributions import DiagonalGaussian
from vaezoo.models.vae import VAE

PRIORS = ("standard", "learned")


@keras.saving.register_keras_serializable(package="vaezoo")
class CVAE(VAE):
    """Conditional VAE: every distribution is conditioned on a class label or a real vector c.

    The encoder sees `[features(x), c]` (c joins the flattened image features, see
    `networks.build_conditional_encoder`), the decoder sees `[z, c]`, and the prior is either
    N(0, I) or a learned diagonal Gaussian p(z | c) whose mean and scale come from a small
    MLP on c (initialised to N(0, I)). The objective is the VAE's (`nll + w(step) * KL`,
    with `kl_warmup_steps` and `free_bits`), with the KL taken against p(z | c).

    A condition is, with `num_classes=K`: integer labels of shape `(batch,)` or `(batch, 1)`
    in `[0, K)`, or float rows of width K (one-hot, or soft mixtures to interpolate between
    classes); with `condition_dim=D`: float vectors of shape `(batch, D)`. Every public method
    takes one condition per image (`sample(n, condition=...)` one per sample). In `fit`, a
    dataset of `(images, labels)` pairs or `{"image": ..., "label": ...}` dicts provides it;
    integer labels are one-hot encoded inside the graph, where their values are not checked.

    Args:
        num_classes: number of classes, for class-label conditions.
        condition_dim: size of a real-valued condition vector. Give exactly one of
            `num_classes` and `condition_dim`.
        prior: `"standard"` for N(0, I) or `"learned"` for p(z | c).
        prior_hidden: hidden layer sizes of the learned prior's MLP.
        **kwargs: everything `VAE` takes (`input_shape`, `latent_dim`, `encoder`, `decoder`,
            `likelihood`, `posterior_min_scale`, `kl_warmup_steps`, `free_bits`, `seed`).

    Example:
        >>> model = vaezoo.CVAE(input_shape=(28, 28, 1), latent_dim=8, num_classes=10,
        ...                     prior="learned")
        >>> model.compile(optimizer="adam")
        >>> model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(64))
        >>> model.sample(4, condition=[0, 1, 2, 3], seed=0).shape   # one digit per class
        TensorShape([4, 28, 28, 1])
        >>> model.elbo(images[:8], condition=labels[:8]).shape
        TensorShape([8])

    References:
        Sohn, Lee & Yan, "Learning Structured Output Representation using Deep Conditional
        Generative Models", NeurIPS 2015.
    """

    conditional = True

    def __init__(self, num_classes=None, condition_dim=None, prior="standard", prior_hidden=(64,), **kwargs):
        if (num_classes is None) == (condition_dim is None):
            raise ValueError(
                "CVAE needs exactly one of num_classes (class labels) or condition_dim (real "
                f"vectors); got num_classes={num_classes!r}, condition_dim={condition_dim!r}."
            )
        if num_classes is not None:
            validation.check_int("num_classes", num_classes, 1)
        else:
            validation.check_int("condition_dim", condition_dim, 1)
        if prior not in PRIORS:
            raise validation.ConfigError(f"prior must be one of {PRIORS}, got {prior!r}.")
        prior_hidden = list(prior_hidden)
        for units in prior_hidden:
            validation.check_int("prior_hidden entries", units, 1)
        # Plain attributes first: VAE.__init__ calls our _build_networks, which needs them.
        self.num_classes = None if num_classes is None else int(num_classes)
        self.condition_dim = None if condition_dim is None else int(condition_dim)
        self.prior_type = prior
        self.prior_hidden = [int(units) for units in prior_hidden]
        super().__init__(**kwargs)

    def _build_networks(self):
        size = self.condition_size
        self.encoder = networks.build_conditional_encoder(
            self.encoder_spec, self.image_shape, size, self.posterior.params_size(self.latent_dim)
        )
        self.decoder = networks.build_decoder(
            self.decoder_spec,
            self.latent_dim + size,
            (*self.image_shape[:2], self.likelihood.params_size(self.image_shape[-1])),
        )
        if self.prior_type == "learned":
            self.prior_head = DiagonalGaussian(self.posterior.min_scale, name="conditional_prior")
            layers = [keras.Input((size,))]
            layers += [keras.layers.Dense(units, activation="relu") for units in self.prior_hidden]
            # Zero output weights plus this offset start the prior at exactly N(0, I).
            layers.append(keras.layers.Dense(2 * self.latent_dim, kernel_initializer="zeros"))
            self.prior_network = keras.Sequential(layers, name="prior_network")
            unit_scale = math.log(math.expm1(1.0 - self.posterior.min_scale))
            self._prior_offset = tf.constant([0.0] * self.latent_dim + [unit_scale] * self.latent_dim)

    @property
    def condition_size(self):
        """Width C of the float condition the networks see (num_classes or condition_dim)."""
        return self.num_classes if self.num_classes is not None else self.condition_dim

    # ----------------------------------------------------------------- conditions
    def _expected_condition(self, batch):
        if self.num_classes is not None:
            k = self.num_classes
            return (f"integer class labels of shape ({batch},) in [0, {k}) or float one-hot rows "
                    f"of shape ({batch}, {k})")
        return f"float vectors of shape ({batch}, {self.condition_dim})"

    def _condition_tensor(self, condition):
        """Any accepted condition -> float32 `(batch, C)`; graph-safe (shapes only)."""
        if condition is None:
            raise TypeError(f"CVAE needs a condition: {self._expected_condition('batch')}; got None.")
        if not isinstance(condition, (tf.Tensor, tf.Variable)):
            condition = tf.convert_to_tensor(condition)
        shape = condition.shape
        if shape.rank is None:  # a tf.function relaxed the shape after traces of other ranks
            return self._unknown_rank_condition(condition)
        if condition.dtype.is_integer and self.num_classes is not None:
            if shape.rank == 1 or (shape.rank == 2 and shape[-1] == 1):
                labels = tf.cast(tf.reshape(condition, [-1]), tf.int64)
                return tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        if not (condition.dtype.is_integer or condition.dtype.is_floating or condition.dtype == tf.bool):
            raise TypeError(
                f"condition must be {self._expected_condition('batch')}, got dtype {condition.dtype.name}."
            )
        if shape.rank != 2 or shape[-1] not in (None, self.condition_size):
            kind = " float" if condition.dtype.is_floating and self.num_classes is not None else ""
            raise ValueError(
                f"condition must be {self._expected_condition('batch')}, got{kind} shape {tuple(shape)}."
            )
        return tf.cast(condition, tf.float32)

    def _unknown_rank_condition(self, condition):
        """Graph condition of unknown rank: integer labels have one value per row."""
        width = [None, self.condition_size]
        if condition.dtype.is_integer and self.num_classes is not None:
            is_labels = tf.equal(tf.size(condition), tf.shape(condition)[0])
            return tf.cond(
                is_labels,
                lambda: tf.one_hot(tf.cast(tf.reshape(condition, [-1]), tf.int64), self.num_classes),
                lambda: tf.cast(tf.ensure_shape(condition, width), tf.float32),
            )
        return tf.cast(tf.ensure_shape(condition, width), tf.float32)

    def check_condition(self, condition, batch_size):
        """Validate a condition before TensorFlow sees it; returns float32 `(batch, C)`."""
        expected = self._expected_condition(batch_size)
        if condition is None:
            raise TypeError(f"CVAE needs a condition: {expected}; got None.")
        if validation.is_symbolic(condition):
            return self._condition_tensor(condition)
        values = np.asarray(condition)
        if values.dtype == object or values.dtype.kind not in "biuf":
            raise TypeError(f"condition must be {expected}, got dtype {values.dtype}.")
        if values.ndim == 0 or (batch_size is not None and values.shape[0] != batch_size):
            raise ValueError(
                f"condition must have one row per image/sample ({batch_size}): {expected}; "
                f"got shape {values.shape}."
            )
        labels = self.num_classes is not None and values.dtype.kind in "iu"
        if labels and (values.ndim == 1 or values.shape[1:] == (1,)):
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"class labels must be in [0, {self.num_classes}), got values in [{lo}, {hi}]."
                )
        elif self.num_classes is not None and values.ndim == 1:
            raise TypeError(f"condition must be {expected}; got {values.dtype} values of shape "
                            f"{values.shape} (class labels must be integers).")
        elif values.shape[1:] != (self.condition_size,):
            raise ValueError(f"condition must be {expected}; got {values.dtype} of shape {values.shape}.")
        elif not np.all(np.isfinite(values.astype(np.float64))):
            raise ValueError(f"condition contains NaN or Inf; expected {expected}.")
        # the checked values become what `_condition_tensor` makes of them, in numpy (one
        # conversion to a tensor instead of a few eager ops per call)
        if labels and (values.ndim == 1 or values.shape[1:] == (1,)):
            return tf.convert_to_tensor(np.eye(self.num_classes, dtype=np.float32)[values.reshape(-1)])
        return tf.convert_to_tensor(values.astype(np.float32))

    def dummy_condition(self, batch_size):
        return tf.zeros((batch_size, self.condition_size), tf.float32)

    # ----------------------------------------------------------------- hooks
    def _encode(self, x, condition=None):
        return self.posterior(self.encoder([x, self._condition_tensor(condition)]))

    def _decode(self, z, condition=None):
        zc = tf.concat([z, self._condition_tensor(condition)], axis=-1)
        return self.likelihood(self.decoder(zc))

    def prior_distribution(self, condition=None):
        """p(z | c) for a condition (any accepted form, see the class): N(0, I) or the learned Gaussian."""
        if self.prior_type == "standard":
            return self.prior()
        params = self.prior_network(self._condition_tensor(condition)) + self._prior_offset
        return self.prior_head(params)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "condition_dim": self.condition_dim,
            "prior": self.prior_type,
            "prior_hidden": list(self.prior_hidden),
        }
