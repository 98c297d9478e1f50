"""The RQ-VAE: a VQ-VAE whose bottleneck is a residual quantizer, so one model spans several rates."""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo.distributions import IndependentDeterministic
from vaezoo import integer_entropy, validation
from vaezoo.models.vqvae import CONTEXT_MODEL_DEFAULTS, DEFAULT_LIKELIHOOD, VQVAE
from vaezoo.quantizer import ResidualQuantizer, check_codes, check_depth


@keras.saving.register_keras_serializable(package="vaezoo")
class RQVAE(VQVAE):
    """Residual-quantized VAE: the VQ-VAE's networks with `depth` quantizers coding residuals.

    The encoder and decoder are `VQVAE`'s. Each latent vector `z` is coded by
    `vaezoo.quantizer.ResidualQuantizer`: level 1 picks the nearest of its K codes, level d
    the code nearest to what the levels before it left, `z - (e_1 + ... + e_{d-1})`. An image
    is an int32 code stack `(h, w, depth)`; decoding its first d levels (`decode_codes(codes,
    depth=d)`) gives a coarser image from fewer bits, so one model has `depth` operating
    points (d * h * w * log2 K bits before entropy coding).

    Quantizer dropout (as in SoundStream): in training, each example is reconstructed from
    its first n levels, n drawn uniformly from [1, depth] with probability
    `quantizer_dropout` (else n = depth), and only those levels' VQ losses count, so every
    prefix is trained to decode well. The draw is stateless, from the model seed and the
    optimizer step, so a resumed run repeats it.

    Probabilistic reading, as `VQVAE`'s: q(z | x) is a point mass on the full-depth code
    stack, the prior is uniform over the `K ** depth` stacks at each position, so
    `KL = h * w * depth * log K` per example; `encode(x)` returns the point mass on the
    full-depth quantized latents, `decode(z)` takes latents `(batch, h, w, embedding_dim)`.
    `sample` draws code stacks uniformly (there is no learned prior over code stacks yet:
    `prior` must be None). The exact context model (`context_model`) entropy-codes code
    stacks in `.vqz` files, depth by depth, each depth given the ones before it.

    Args:
        depth: number of residual quantizers D (the operating points are depths 1..D).
        quantizer_dropout: probability that a training example uses a random depth in
            [1, D] instead of D; 0 trains the full depth only.
        num_embeddings: codebook size K of every level.
        embedding_dim, hidden_channels, residual_channels, num_residual_blocks,
        num_downsamples, commitment_cost, ema, decay, epsilon, restart_dead_codes,
        dead_code_threshold, likelihood, seed: as in `VQVAE` (the quantizer arguments apply
            to every level).
        prior: must be None (a uniform prior over code stacks).
        context_model: spec `{"channels", "layers", "condition_depths", "schedule", "activation_scale"}` of the exact
            context model of code stacks (`GroupedContextModel` with `depths=depth`; it sees
            the `condition_depths` depths before the one it codes; schedule `"raster"`: a
            `RasterContextModel` of code stacks, each depth in raster order given the 3x3
            codes of the depth before), or None. Trained by `fit_context_model` after `fit`.

    Example:
        >>> model = vaezoo.RQVAE(input_shape=(32, 32, 3), depth=8, num_embeddings=256)
        >>> model.compile(optimizer=keras.optimizers.Adam(3e-4))
        >>> model.fit(images, epochs=10, batch_size=32)
        >>> codes = model.encode_to_codes(images[:8])           # int32 (8, 8, 8, 8)
        >>> coarse = model.decode_codes(codes, depth=2)          # from the first 2 levels
        >>> fine = model.decode_codes(codes)                     # from all 8
        >>> model.reconstruct(images[:8], depth=2)               # the same as `coarse`

    References:
        Lee et al., "Autoregressive Image Generation using Residual Quantization", CVPR 2022.
        Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021 (residual VQ
        and quantizer dropout).
    """

    latent_kind = "residual_code_grid"

    def __init__(
        self,
        input_shape=(32, 32, 3),
        depth=8,
        quantizer_dropout=1.0,
        num_embeddings=256,
        embedding_dim=64,
        hidden_channels=128,
        residual_channels=32,
        num_residual_blocks=2,
        num_downsamples=2,
        commitment_cost=0.25,
        ema=True,
        decay=0.99,
        epsilon=1e-5,
        restart_dead_codes=True,
        dead_code_threshold=1e-2,
        likelihood=DEFAULT_LIKELIHOOD,
        prior=None,
        context_model=None,
        seed=None,
        **kwargs,
    ):
        validation.check_int("depth", depth, 1)
        validation.check_positive("quantizer_dropout", quantizer_dropout, allow_zero=True)
        if quantizer_dropout > 1:
            raise ValueError(f"quantizer_dropout must be a probability in [0, 1], got {quantizer_dropout!r}.")
        if prior is not None:
            raise validation.ConfigError(
                f"RQVAE has no prior over code stacks yet: pass prior=None (sample draws code "
                f"stacks uniformly), got {prior!r}."
            )
        self.depth = int(depth)  # read by _build_quantizer, called from VQVAE.__init__
        self.quantizer_dropout = float(quantizer_dropout)
        super().__init__(
            input_shape=input_shape, num_embeddings=num_embeddings, embedding_dim=embedding_dim,
            hidden_channels=hidden_channels, residual_channels=residual_channels,
            num_residual_blocks=num_residual_blocks, num_downsamples=num_downsamples,
            commitment_cost=commitment_cost, ema=ema, decay=decay, epsilon=epsilon,
            restart_dead_codes=restart_dead_codes, dead_code_threshold=dead_code_threshold,
            likelihood=likelihood, prior=None, context_model=context_model, seed=seed, **kwargs,
        )

    #: the context model sees the code of the depth before the one it codes by default.
    context_model_defaults = {**CONTEXT_MODEL_DEFAULTS, "condition_depths": 1}

    def _context_model_arguments(self, spec):
        condition = spec["condition_depths"]
        if isinstance(condition, bool) or not isinstance(condition, int) or not 0 <= condition < self.depth:
            raise validation.ConfigError(f"context_model condition_depths must be in [0, {self.depth - 1}] (the depths "
                                         f"before the last), got {condition!r}.")
        if spec["schedule"] == integer_entropy.RASTER and condition != 1:
            raise validation.ConfigError("context_model schedule 'raster' codes each depth given the one before it: "
                                         f"condition_depths must be 1, got {condition!r}.")
        return {**super()._context_model_arguments(spec), "depths": self.depth,
                "condition_depths": condition}

    def _stage_codes(self, codes):
        codes = self._check_code_stack(codes, self.grid_shape)
        if codes.shape[-1] != self.depth:
            raise ValueError(f"the context model trains on full code stacks (batch, h, w, {self.depth}), got shape "
                             f"{tuple(codes.shape)}.")
        return codes

    def _build_quantizer(self, **quantizer_args):
        return ResidualQuantizer(depth=self.depth, **quantizer_args)

    # ----------------------------------------------------------------- hooks
    @property
    def kl_per_example(self):
        """KL of the one-hot posterior over code stacks from the uniform prior: `h * w * depth * log K`."""
        return float(math.prod(self.grid_shape) * self.depth * math.log(self.num_embeddings))

    def _encode(self, x, condition=None):
        latents = self.quantizer.embed(self._encode_to_codes(x))
        return IndependentDeterministic(latents, event_ndims=3)

    def training_depths(self, batch_size, step=None):
        """Each example's depth in a training step: int32 `(batch_size,)` in [1, depth].

        Uniform in [1, depth] with probability `quantizer_dropout`, else `depth`; drawn
        statelessly from the model seed and `step` (the model's seed generator when None),
        and under `tf.distribute` from the replica's id too (each replica its own draws).
        """
        if step is None:
            seed = self._next_seed()
        else:
            seed = tf.stack([tf.constant(self.seed or 0, tf.int64), tf.cast(step, tf.int64)])
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:  # each replica its own draws
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        draw_seed, keep_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        drawn = tf.random.stateless_uniform((batch_size,), draw_seed, minval=1, maxval=self.depth + 1,
                                            dtype=tf.int32)
        dropped = tf.random.stateless_uniform((batch_size,), keep_seed) < self.quantizer_dropout
        return tf.where(dropped, drawn, self.depth)

    def _quantize(self, z_e, training, step):
        depths = None
        if training and self.quantizer_dropout > 0:
            depths = self.training_depths(tf.shape(z_e)[0], step)
        return self.quantizer(z_e, training=training, depths=depths)

    def _score_terms(self, x, condition=None):
        likelihood = self._decode(self._encode(x).mean())
        nll = -likelihood.log_prob(self.likelihood.targets(x))
        return {"nll": nll, "kl": tf.fill(tf.shape(nll), tf.constant(self.kl_per_example, nll.dtype))}

    def _latent_statistics(self, x, condition=None):
        z_e = tf.cast(self.encoder(x), tf.float32)
        codes = self.quantizer.nearest_codes(z_e)
        error = tf.reduce_mean(tf.square(z_e - self.quantizer.embed(codes)), axis=[1, 2, 3])
        return {"codes": tf.cast(codes, tf.int32), "quantization_error": error}

    def _sample_noise(self, n, seed):
        return tf.random.stateless_uniform(
            (n, *self.grid_shape, self.depth), seed=seed, minval=0, maxval=self.num_embeddings, dtype=tf.int32
        )

    def _sample_from_noise(self, noise, condition, temperature=1.0):
        return self._decode_codes(noise)

    # ----------------------------------------------------------------- codes
    def _check_code_stack(self, codes, grid_shape=None):
        """int32 code stacks `(batch, h, w, d)` with 1 <= d <= depth (any h, w when `grid_shape` is None)."""
        codes = check_codes(codes, self.num_embeddings)
        shape = tuple(codes.shape)
        grid = "h, w" if grid_shape is None else ", ".join(str(s) for s in grid_shape)
        if (len(shape) != 4 or shape[-1] is None or not 1 <= shape[-1] <= self.depth
                or (grid_shape is not None and any(g is not None and g != w for g, w in zip(shape[1:3], grid_shape)))):
            raise ValueError(f"codes must be code stacks of shape (batch, {grid}, d) with 1 <= d <= {self.depth} "
                             f"(the model's depth), got shape {shape}.")
        return codes

    def _depth_argument(self, depth, available=None, per_example=False):
        """`depth` (None: `available`, else the model's depth) checked against `available`
        levels; an int32 tensor (with `per_example`, possibly one depth per example)."""
        available = self.depth if available is None else available
        if depth is None:
            return tf.constant(available, tf.int32)
        depth = check_depth(depth, self.depth, per_example=per_example)
        if not validation.is_symbolic(depth) and int(tf.reduce_max(depth)) > available:
            raise ValueError(f"depth {int(tf.reduce_max(depth))} needs as many code levels, but the codes have "
                             f"{available}.")
        return depth

    def encode_to_codes(self, x, depth=None):
        """Code stacks of images: int32 `(batch, h, w, depth)` (default: the model's depth).

        The first d levels of the full stack are the depth-d codes (the quantizer is greedy).
        """
        x = self._images(x)
        codes = self._core("encode_to_codes", self._encode_to_codes, x)
        return codes if depth is None else codes[..., : self._depth_argument(depth)]

    def decode_codes(self, codes, depth=None):
        """Images float32 in [0, 1] from code stacks `(batch, h, w, d)` in [0, K), d <= depth.

        Decodes the first `depth` levels (default: all d given); `depth` is an integer or an
        int32 tensor, a scalar or one depth per image `(batch,)`.
        """
        codes = self._check_code_stack(codes, self.grid_shape)
        depth = self._depths_per_image(depth, codes.shape[-1], codes)
        return self._core("decode_codes", self._decode_codes, self._full_stack(codes), depth)

    def _depths_per_image(self, depth, available, batch_of):
        """`depth` as one int32 depth per image `(batch,)` of the batch `batch_of`: a scalar
        is repeated, so the compiled cores always see the same rank (a scalar after a vector
        would relax the trace to an unknown rank, which the decoder cannot take)."""
        if (depth is None or isinstance(depth, (int, np.integer))) and not validation.is_symbolic(batch_of):
            # an eager call with one depth for all: numpy, so that no TensorFlow op runs
            # before the compiled core (each costs about as much as a small core at batch 1)
            if depth is not None:
                check_depth(depth, self.depth)
                if int(depth) > available:
                    raise ValueError(f"depth {int(depth)} needs as many code levels, but the codes have {available}.")
            return np.full((batch_of.shape[0],), available if depth is None else int(depth), np.int32)
        depth = self._depth_argument(depth, available, per_example=True)
        if depth.shape.rank == 0:
            return tf.fill(tf.shape(batch_of)[:1], depth)
        batch = batch_of.shape[0]
        if depth.shape[0] is not None and batch is not None and depth.shape[0] != batch:
            raise ValueError(f"depth must be an integer or one depth per image ({batch},), got shape "
                             f"{tuple(depth.shape)}.")
        return depth

    def _full_stack(self, codes):
        """Code stacks padded with zeros to the model's depth (one compiled shape for every d;
        the levels from the given depth on are masked out)."""
        if codes.shape[-1] == self.depth:
            return codes
        return tf.pad(codes, [[0, 0], [0, 0], [0, 0], [0, self.depth - codes.shape[-1]]])

    def _decode_codes(self, codes, depth=None):
        return self.likelihood.image(self._decode(self.quantizer.embed(codes, depth)))

    def reconstruct(self, x, condition=None, depth=None):
        """Reconstructions float32 in [0, 1] from the first `depth` levels (default: all);
        `depth` as in `decode_codes` (a scalar or one per image)."""
        if depth is None:
            return super().reconstruct(x, condition)
        x = self._images(x)
        self.check_condition(condition, x.shape[0])
        return self._core("reconstruct_at_depth", self._reconstruct_at_depth, x,
                          self._depths_per_image(depth, self.depth, x))

    def _reconstruct_at_depth(self, x, depth):
        return self._decode_codes(self._encode_to_codes(x), depth)

    def encode_grid(self, x, depth=None):
        """Code stacks `(batch, H / stride, W / stride, depth)` of images of ANY size whose sides
        are multiples of `stride` (see `VQVAE.encode_grid`)."""
        codes = self.quantizer.nearest_codes(self.latent_grid(x))
        return codes if depth is None else codes[..., : self._depth_argument(depth)]

    def decode_grid(self, codes, depth=None):
        """Images float32 in [0, 1] `(batch, h * stride, w * stride, C)` from code stacks of ANY
        grid size, from their first `depth` levels (default: all given)."""
        codes = self._check_code_stack(codes)
        depth = self._depth_argument(depth, codes.shape[-1], per_example=True)
        return self._decode_codes(self._full_stack(codes), depth)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "quantizer_dropout": self.quantizer_dropout}
