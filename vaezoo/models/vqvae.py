"""The VQ-VAE (van den Oord et al., 2017) with a gated PixelCNN prior over its code grids."""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo import integer_entropy, validation
from vaezoo.distributions import IndependentDeterministic, build_likelihood
from vaezoo.models.base import LatentVariableModel
from vaezoo.models.context_model import build_context_model
from vaezoo.models.pixelcnn import PixelCNN
from vaezoo.networks import ResidualBlock
from vaezoo.quantizer import VectorQuantizer, check_codes


#: defaults of the `context_model` spec (the exact entropy model of `.vqz` version 2).
#: `schedule` names the coder's group schedule (`integer_entropy.SCHEDULES`); `None` is the
#: default, "groups5", the schedule of every model made before schedules existed.
#: `activation_scale` `None` is the context model class's default (see `build_context_model`);
#: `center_kernels` false is the parametrization of every model shipped before it existed.
CONTEXT_MODEL_DEFAULTS = {"channels": 64, "layers": 4, "schedule": None, "activation_scale": None,
                          "center_kernels": False}
#: defaults of the `prior` spec (the PixelCNN's arguments besides the codebook and grid).
PRIOR_DEFAULTS = {"filters": 64, "layers": 6, "kernel_size": 3}
#: the default likelihood: Gaussian pixels with a fixed scale (a scaled squared error).
DEFAULT_LIKELIHOOD = {"type": "gaussian", "scale": 0.15}


def _resolve_stage_spec(spec, defaults, name, none_means):
    """Fill a second-stage spec with `defaults`; `None` stays `None` (`none_means`)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise validation.ConfigError(
            f"{name} must be None ({none_means}) or a dict with keys {sorted(defaults)}, got {spec!r}."
        )
    validation.check_keys(spec, set(defaults), f"{name} spec")
    return {**defaults, **spec}


def resolve_context_model_spec(spec, defaults=CONTEXT_MODEL_DEFAULTS):
    """Fill a context-model spec with `defaults`; `None` stays `None` (no exact entropy model)."""
    return _resolve_stage_spec(spec, defaults, "context_model", "no context model")


def resolve_prior_spec(spec):
    """Fill a PixelCNN prior spec with defaults; `None` stays `None` (uniform prior)."""
    return _resolve_stage_spec(spec, PRIOR_DEFAULTS, "prior", "uniform")


@keras.saving.register_keras_serializable(package="vaezoo")
class VQVAE(LatentVariableModel):
    """Vector-quantized VAE: conv encoder, nearest-code bottleneck, conv decoder, PixelCNN prior.

    The encoder (`num_downsamples` stride-2 4x4 convs, a 3x3 conv and `num_residual_blocks`
    residual blocks, as in the paper and the Sonnet CIFAR-10 example) and a 1x1 conv map an
    image to a grid of `embedding_dim` vectors, each replaced by its nearest code
    (`vaezoo.quantizer.VectorQuantizer`); the decoder mirrors the encoder and outputs the
    likelihood's parameters. The objective per example is `nll + vq` where `vq` is the
    codebook loss (unless `ema`) plus `commitment_cost` times the commitment loss, summed
    over the latent grid.

    Probabilistic reading, as in the paper: the posterior q(z | x) is deterministic, a
    one-hot categorical over codes at each of the `h * w` positions, and training uses a
    uniform prior, so `KL = h * w * log K` per example (a constant, reported as `kl` and left
    out of `loss`), `elbo = -(nll + kl)`, and `iwae` equals the ELBO for every k.
    `encode(x)` returns that posterior as a point mass (`IndependentDeterministic`) on the
    quantized latents `(batch, h, w, embedding_dim)`; `decode(z)` takes such latents;
    `encode_to_codes` / `decode_codes` work with the int32 code grids `(batch, h, w)`, and
    `latent_statistics(x)` gives the codes with each image's `quantization_error` (mean
    squared distance of the encoder outputs to their codes).

    The PixelCNN `prior` (a `vaezoo.models.pixelcnn.PixelCNN`, built from the `prior` spec)
    is the second stage: `fit` trains the autoencoder only (the prior's weights are left
    out of `trainable_variables`), `fit_prior` then encodes images and trains the prior on
    their codes, and `sample` draws codes from the prior and decodes them (its `temperature`
    divides the PixelCNN's logits). With `prior=None` codes are sampled uniformly.

    Args:
        input_shape: image shape `(height, width, channels)`; height and width divisible
            by `2 ** num_downsamples`.
        num_embeddings: codebook size K.
        embedding_dim: size D of a code vector.
        hidden_channels: channels of the encoder and decoder.
        residual_channels: channels inside a residual block.
        num_residual_blocks: residual blocks in the encoder and in the decoder.
        num_downsamples: stride-2 convs in the encoder (transposed convs in the decoder);
            the code grid is the image size divided by `2 ** num_downsamples`.
        commitment_cost: weight beta of the commitment loss.
        ema: learn the codebook by exponential moving averages instead of the loss.
        decay: decay of the moving averages.
        epsilon: Laplace smoothing of the moving-average counts.
        restart_dead_codes: re-initialise unused codes from encoder outputs in training.
        dead_code_threshold: moving-average assignments per step below which a code is dead.
        likelihood: likelihood spec (see `vaezoo.distributions.build_likelihood`); the
            default Gaussian with fixed scale 0.15 makes `nll` a scaled squared error that
            weighs reconstruction against `vq` about as the Sonnet example's
            `MSE / data variance` does for CIFAR-10.
        prior: PixelCNN spec `{"filters", "layers", "kernel_size"}` (missing keys take
            defaults) or `None` for a uniform prior over codes.
        context_model: spec `{"channels", "layers", "schedule"}` of the exact context model
            that entropy-codes `.vqz` files (`vaezoo.models.context_model`), or `None`.
            `schedule` names its group schedule (`integer_entropy.SCHEDULES`; absent: "groups5"),
            or is `"raster"`: a `RasterContextModel` (codes in raster order, each given a causal
            window: fewer bits, one decoding step per position). `activation_scale` (absent:
            the class's default) is `GroupedContextModel`'s; give 32 for a new grouped model.
            `center_kernels` (absent: false, the shipped models' parametrization) trains the
            kernels centred over their fan-in; give true for a new model (see
            `GroupedContextModel`). Trained by `fit_context_model`, after `fit`; `context_network()` is its frozen
            integer form.
        seed: integer seed for the model's random draws.

    Example:
        >>> model = vaezoo.VQVAE(input_shape=(32, 32, 3), num_embeddings=512, embedding_dim=64)
        >>> model.compile(optimizer=keras.optimizers.Adam(2e-4))
        >>> model.fit(images, epochs=10, batch_size=32)       # uint8 or [0, 1] floats
        >>> codes = model.encode_to_codes(images[:8])        # int32 (8, 8, 8)
        >>> model.decode_codes(codes).shape                   # images in [0, 1]
        TensorShape([8, 32, 32, 3])
        >>> model.fit_prior(images, epochs=10)                # second stage on the codes
        >>> model.sample(16, seed=0).shape
        TensorShape([16, 32, 32, 3])

    References:
        van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning",
        NeurIPS 2017. van den Oord et al., "Conditional Image Generation with PixelCNN
        Decoders", NeurIPS 2016. Sonnet's VQ-VAE example (vqvae_example.ipynb, DeepMind).
    """

    loss_term_names = ("loss", "nll", "kl", "vq", "perplexity", "usage")
    latent_kind = "code_grid"

    def __init__(
        self,
        input_shape=(32, 32, 3),
        num_embeddings=512,
        embedding_dim=64,
        hidden_channels=128,
        residual_channels=32,
        num_residual_blocks=2,
        num_downsamples=2,
        commitment_cost=0.25,
        ema=True,
        decay=0.99,
        epsilon=1e-5,
        restart_dead_codes=False,
        dead_code_threshold=1e-2,
        likelihood=DEFAULT_LIKELIHOOD,
        prior=PRIOR_DEFAULTS,
        context_model=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(input_shape=input_shape, seed=seed, **kwargs)
        validation.check_int("num_embeddings", num_embeddings, 1)
        validation.check_int("embedding_dim", embedding_dim, 1)
        validation.check_int("hidden_channels", hidden_channels, 2)
        validation.check_int("residual_channels", residual_channels, 1)
        validation.check_int("num_residual_blocks", num_residual_blocks, 0)
        validation.check_int("num_downsamples", num_downsamples, 1)
        height, width, channels = self.image_shape
        factor = 2**num_downsamples
        if height % factor or width % factor:
            raise ValueError(
                f"A VQVAE with {num_downsamples} stride-2 stages needs height and width "
                f"divisible by {factor}; got image shape {self.image_shape}."
            )
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.hidden_channels = int(hidden_channels)
        self.residual_channels = int(residual_channels)
        self.num_residual_blocks = int(num_residual_blocks)
        self.num_downsamples = int(num_downsamples)
        self.grid_shape = (height // factor, width // factor)
        self.latent_shape = (*self.grid_shape, self.embedding_dim)
        self.likelihood_spec = dict(likelihood) if isinstance(likelihood, dict) else likelihood
        self.prior_spec = resolve_prior_spec(prior)
        self.context_model_spec = resolve_context_model_spec(context_model, self.context_model_defaults)

        self.likelihood = build_likelihood(self.likelihood_spec)
        self.quantizer = self._build_quantizer(
            num_embeddings=self.num_embeddings,
            embedding_dim=self.embedding_dim,
            commitment_cost=commitment_cost,
            ema=ema,
            decay=decay,
            epsilon=epsilon,
            restart_dead_codes=restart_dead_codes,
            dead_code_threshold=dead_code_threshold,
            seed=seed,
            name="quantizer",
        )
        self.encoder = self._build_encoder()
        self.decoder = self._build_decoder(self.likelihood.params_size(channels))
        self.prior = (
            None
            if self.prior_spec is None
            else PixelCNN(self.num_embeddings, self.grid_shape, seed=seed, name="prior", **self.prior_spec)
        )
        self.context_model = (
            None
            if self.context_model_spec is None
            else build_context_model(self.num_embeddings, seed=seed, name="context_model",
                                     **self._context_model_arguments(self.context_model_spec))
        )

    #: keys and defaults of the `context_model` spec.
    context_model_defaults = CONTEXT_MODEL_DEFAULTS

    def _context_model_arguments(self, spec):
        """`build_context_model` arguments of a resolved context-model spec."""
        schedule = spec["schedule"]
        known = sorted(integer_entropy.SCHEDULES) + [integer_entropy.RASTER]
        if schedule is not None and schedule not in known:
            raise validation.ConfigError(f"context_model schedule must be one of {known} "
                                         f"(or absent: {integer_entropy.DEFAULT_SCHEDULE}), got {schedule!r}.")
        if not isinstance(spec["center_kernels"], bool):
            raise validation.ConfigError(f"context_model center_kernels must be true or false, got "
                                         f"{spec['center_kernels']!r}.")
        return {"channels": spec["channels"], "num_layers": spec["layers"],
                "schedule": schedule or integer_entropy.DEFAULT_SCHEDULE, "activation_scale": spec["activation_scale"],
                "center_kernels": spec["center_kernels"]}

    # ----------------------------------------------------------------- networks
    def _build_quantizer(self, **quantizer_args):
        """The bottleneck layer (a `VectorQuantizer`; `RQVAE` builds a residual quantizer)."""
        return VectorQuantizer(**quantizer_args)

    def _residual_stack(self):
        blocks = [ResidualBlock(self.hidden_channels, self.residual_channels) for _ in range(self.num_residual_blocks)]
        return [*blocks, keras.layers.ReLU()]

    def _build_encoder(self):
        hidden = self.hidden_channels
        layers = [keras.Input(self.image_shape)]
        for i in range(self.num_downsamples):
            filters = hidden if i == self.num_downsamples - 1 else hidden // 2
            layers.append(keras.layers.Conv2D(filters, 4, strides=2, padding="same", activation="relu"))
        layers.append(keras.layers.Conv2D(hidden, 3, padding="same"))
        layers += self._residual_stack()
        layers.append(keras.layers.Conv2D(self.embedding_dim, 1, name="pre_quantization"))
        return keras.Sequential(layers, name="encoder")

    def _build_decoder(self, out_channels):
        hidden = self.hidden_channels
        layers = [keras.Input(self.latent_shape), keras.layers.Conv2D(hidden, 3, padding="same")]
        layers += self._residual_stack()
        for i in range(self.num_downsamples):
            last = i == self.num_downsamples - 1
            layers.append(
                keras.layers.Conv2DTranspose(
                    out_channels if last else hidden // 2, 4, strides=2, padding="same",
                    activation=None if last else "relu",
                )
            )
        return keras.Sequential(layers, name="decoder")

    # ----------------------------------------------------------------- hooks
    @property
    def kl_per_example(self):
        """KL of the one-hot posterior from the uniform prior: `h * w * log K` nats."""
        return float(math.prod(self.grid_shape) * math.log(self.num_embeddings))

    def _encode(self, x, condition=None):
        codes = self.quantizer.nearest_codes(self.encoder(x))
        return IndependentDeterministic(self.quantizer.embed(codes), event_ndims=3)

    def _decode(self, z, condition=None):
        return self.likelihood(self.decoder(z))

    def _quantize(self, z_e, training, step):
        """The bottleneck's output dict in `_loss_terms` (`RQVAE` adds each example's depth)."""
        return self.quantizer(z_e, training=training)

    def _loss_terms(self, x, condition=None, training=False, step=None):
        quantized = self._quantize(self.encoder(x), training, step)
        nll = -self._decode(quantized["quantized"]).log_prob(self.likelihood.targets(x))
        shape = tf.shape(nll)
        return {
            "loss": nll + quantized["loss"],
            "nll": nll,
            "kl": tf.fill(shape, self.kl_per_example),
            "vq": quantized["loss"],
            "perplexity": tf.fill(shape, quantized["perplexity"]),
            "usage": tf.fill(shape, quantized["usage"]),
        }

    def _score_terms(self, x, condition=None):
        likelihood = self._decode(self.quantizer.embed(self.quantizer.nearest_codes(self.encoder(x))))
        nll = -likelihood.log_prob(self.likelihood.targets(x))
        return {"nll": nll, "kl": tf.fill(tf.shape(nll), tf.constant(self.kl_per_example, nll.dtype))}

    def _latent_statistics(self, x, condition=None):
        z_e = tf.cast(self.encoder(x), tf.float32)
        codes = self.quantizer.nearest_codes(z_e)
        error = tf.reduce_mean(tf.square(z_e - self.quantizer.embed(codes)), axis=[1, 2, 3])
        return {"codes": tf.cast(codes, tf.int32), "quantization_error": error}

    def _log_importance_weights(self, x, condition, num_samples):
        # q(z | x) is a point mass: every sample is the same z and log q = 0, so each weight is
        # log p(x | z) + log p(z) = -(nll + kl), and IWAE_k = ELBO for all k.
        terms = self._loss_terms(x, condition, training=False)
        log_w = -(terms["nll"] + terms["kl"])
        return tf.tile(log_w[None, :], [num_samples, 1])

    def _sample_noise(self, n, seed):
        if self.prior is None:  # the codes themselves, uniform
            return tf.random.stateless_uniform(
                (n, *self.grid_shape), seed=seed, minval=0, maxval=self.num_embeddings, dtype=tf.int32
            )
        return self.prior.gumbel_noise(n, seed)

    def _sample_from_noise(self, noise, condition, temperature=1.0):
        codes = noise if self.prior is None else self.prior.sample_from_noise(noise, temperature)
        return self.likelihood.image(self._decode(self.quantizer.embed(codes)))

    def _check_latents(self, z):
        expected = f"(batch, {', '.join(str(d) for d in self.latent_shape)})"
        if not isinstance(z, (tf.Tensor, tf.Variable)):
            z = np.asarray(z)
            if z.dtype.kind not in "iuf":
                raise TypeError(f"z must be quantized latents of shape {expected}, got dtype {z.dtype}.")
        shape = tuple(z.shape)
        if len(shape) != 4 or any(got is not None and got != want for got, want in zip(shape[1:], self.latent_shape)):
            raise ValueError(
                f"z must be quantized latents of shape {expected} (for code grids use "
                f"decode_codes), got shape {shape}."
            )
        if shape[0] == 0:
            raise ValueError(f"z is an empty batch; expected shape {expected} with batch >= 1.")
        if not validation.is_symbolic(z) and not np.all(np.isfinite(np.asarray(z))):
            raise ValueError("z contains NaN or Inf.")
        return tf.cast(z, tf.float32)

    # ----------------------------------------------------------------- codes
    def encode_to_codes(self, x):
        """Code grids of images (uint8 in [0, 255] or float in [0, 1]): int32 `(batch, h, w)`."""
        x = self._images(x)
        return self._core("encode_to_codes", self._encode_to_codes, x)

    def _encode_to_codes(self, x):
        return self.quantizer.nearest_codes(self.encoder(x))

    def decode_codes(self, codes):
        """Images float32 in [0, 1] decoded from int code grids `(batch, h, w)` in [0, K)."""
        codes = check_codes(codes, self.num_embeddings, self.grid_shape)
        return self._core("decode_codes", self._decode_codes, codes)

    def _decode_codes(self, codes):
        return self.likelihood.image(self._decode(self.quantizer.embed(codes)))

    @property
    def stride(self):
        """Pixels per code along each side (`2 ** num_downsamples`)."""
        return 2**self.num_downsamples

    def _check_grid_images(self, x):
        if not isinstance(x, (tf.Tensor, tf.Variable)):
            x = np.asarray(x)
        shape = tuple(x.shape)
        channels, s = self.image_shape[-1], self.stride
        if len(shape) != 4 or shape[-1] != channels or shape[0] == 0:
            raise ValueError(f"images must have shape (batch >= 1, height, width, {channels}), got shape {shape}.")
        if shape[1] % s or shape[2] % s or min(shape[1:3]) < s:
            raise ValueError(f"image height and width must be positive multiples of the stride {s}, got "
                             f"{shape[1]}x{shape[2]} (pad them first, as vaezoo.codec does).")
        return validation.check_images(x, shape[1:], name="images")

    def latent_grid(self, x):
        """The encoder's output before quantization, float32 `(batch, H / stride, W / stride,
        embedding_dim)`, of images of ANY size whose sides are multiples of `stride` (uint8 in
        [0, 255] or float in [0, 1])."""
        return tf.cast(self.encoder(self._check_grid_images(x)), tf.float32)

    def encode_grid(self, x):
        """Code grids of images of ANY size whose sides are multiples of `stride`.

        The encoder is convolutional, so an `(batch, H, W, C)` image gives an int32
        `(batch, H / stride, W / stride)` grid; `encode_to_codes` is the same at the
        training size. Images: uint8 in [0, 255] or float in [0, 1].
        """
        return self.quantizer.nearest_codes(self.latent_grid(x))

    def decode_grid(self, codes):
        """Images float32 in [0, 1] `(batch, h * stride, w * stride, C)` from code grids of ANY size."""
        codes = check_codes(codes, self.num_embeddings)
        if len(codes.shape) != 3:
            raise ValueError(f"codes must have shape (batch, h, w), got shape {tuple(codes.shape)}.")
        return self.likelihood.image(self._decode(self.quantizer.embed(codes)))

    def fit_prior(self, data, epochs=1, batch_size=64, learning_rate=1e-3, verbose="auto", **fit_kwargs):
        """Second stage: train the PixelCNN prior on the codes of `data`; returns the History.

        Args:
            data: images `(n, *input_shape)` (uint8 or [0, 1] floats; encoded in batches of
                `batch_size`), int code grids `(n, h, w)`, or a `tf.data.Dataset` of
                batched code grids (passed to the prior's `fit` as is).
            epochs: passes over the codes.
            batch_size: batch size for encoding and training (array inputs).
            learning_rate: Adam learning rate, used when the prior is not compiled yet.
            verbose, **fit_kwargs: passed on to `PixelCNN.fit`.
        """
        if self.prior is None:
            raise ValueError(f"This {type(self).__name__} has prior=None (uniform prior over codes); there is no prior "
                             "to fit.")
        return self._fit_on_codes(self.prior, data, epochs, batch_size, learning_rate, verbose, **fit_kwargs)

    def fit_context_model(self, data, epochs=1, batch_size=128, learning_rate=2e-3, verbose="auto", **fit_kwargs):
        """Train the exact context model (the `.vqz` entropy model) on the codes of `data`.

        Args: as `fit_prior`. Returns the History (its `bits_per_code` is the coding rate).
        """
        if self.context_model is None:
            raise ValueError(f"This {type(self).__name__} has context_model=None; there is no context model to fit.")
        return self._fit_on_codes(self.context_model, data, epochs, batch_size, learning_rate, verbose,
                                  **fit_kwargs)

    def context_network(self):
        """The frozen `IntegerContextNetwork` (or `RasterContextNetwork`) of the context model (None without one)."""
        return None if self.context_model is None else self.context_model.freeze()

    def _stage_codes(self, codes):
        """Integer codes given to a second stage's fit, checked: code grids `(n, h, w)`."""
        return check_codes(codes, self.num_embeddings, self.grid_shape)

    def _fit_on_codes(self, stage, data, epochs, batch_size, learning_rate, verbose, **fit_kwargs):
        """Fit a second-stage model (`prior` or `context_model`) on the codes of `data`."""
        validation.check_int("epochs", epochs, 1)
        validation.check_int("batch_size", batch_size, 1)
        if isinstance(data, tf.data.Dataset):
            dataset = data
        else:
            values = data if isinstance(data, (tf.Tensor, tf.Variable)) else np.asarray(data)
            if tf.as_dtype(values.dtype).is_integer:
                codes = self._stage_codes(values)
            else:
                self._images(values)  # validate all images once, with a clear error
                codes = tf.concat(
                    [self.encode_to_codes(values[i : i + batch_size]) for i in range(0, len(values), batch_size)],
                    axis=0,
                )
            dataset = tf.data.Dataset.from_tensor_slices(codes).shuffle(
                len(codes), seed=self.seed, reshuffle_each_iteration=True
            ).batch(batch_size)
        if getattr(stage, "optimizer", None) is None:
            stage.compile(optimizer=keras.optimizers.Adam(learning_rate))
        fit_kwargs.setdefault("shuffle", False)  # the dataset is shuffled above
        return stage.fit(dataset, epochs=epochs, verbose=verbose, **fit_kwargs)

    # ----------------------------------------------------------------- training
    def _prior_variable_ids(self):
        stages = [stage for stage in (self.prior, self.context_model) if stage is not None]
        return {id(v) for stage in stages for v in stage.variables}

    # `fit` (stage 1) trains the autoencoder and codebook only; the prior and the context
    # model have their own stages.
    @property
    def trainable_variables(self):
        excluded = self._prior_variable_ids()
        return [v for v in super().trainable_variables if id(v) not in excluded]

    @property
    def trainable_weights(self):
        excluded = self._prior_variable_ids()
        return [v for v in super().trainable_weights if id(v) not in excluded]

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    @property
    def non_trainable_variables(self):
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self.variables if id(v) not in trainable]

    def get_config(self):
        q = self.quantizer.get_config()
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "hidden_channels": self.hidden_channels,
            "residual_channels": self.residual_channels,
            "num_residual_blocks": self.num_residual_blocks,
            "num_downsamples": self.num_downsamples,
            "commitment_cost": q["commitment_cost"],
            "ema": q["ema"],
            "decay": q["decay"],
            "epsilon": q["epsilon"],
            "restart_dead_codes": q["restart_dead_codes"],
            "dead_code_threshold": q["dead_code_threshold"],
            "likelihood": self.likelihood_spec,
            "prior": self.prior_spec,
            "context_model": self.context_model_spec,
        }
