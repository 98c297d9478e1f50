"""Vector quantization: the discrete bottleneck of the VQ-VAE (van den Oord et al., 2017).

`VectorQuantizer` maps every vector of its input's last axis to the nearest of `K` learned
code vectors, passes gradients straight through to the encoder, and learns the codebook
either by its loss or by exponential moving averages of the vectors assigned to each code.

Under `tf.distribute` the moving-average statistics of a step are summed over all replicas
before they are applied, and every replica writes the same values (`ONLY_FIRST_REPLICA`), so
one step on a global batch spread over replicas gives the codebook one device would compute
on that global batch.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo import validation


def check_codes(codes, num_embeddings, grid_shape=None, name="codes"):
    """Validate a batch of code grids and return it as an int32 tensor.

    Args:
        codes: integer array of code indices, shape `(batch, *grid_shape)`.
        num_embeddings: codebook size K; every code must lie in `[0, K)`.
        grid_shape: expected non-batch shape, e.g. `(8, 8)`; `None` accepts any shape with
            a batch axis.
        name: how the argument is called in error messages.

    Raises:
        TypeError: non-integer dtype.
        ValueError: wrong rank or shape, empty batch, or codes outside `[0, K)`.
    """
    grid = None if grid_shape is None else tuple(int(d) for d in grid_shape)
    expected = "(batch, ...)" if grid is None else f"(batch, {', '.join(str(d) for d in grid)})"
    if not isinstance(codes, (tf.Tensor, tf.Variable)):
        codes = np.asarray(codes)
    dtype = tf.as_dtype(codes.dtype)
    if not dtype.is_integer:
        raise TypeError(
            f"{name} must be integer code indices in [0, {num_embeddings}) with shape "
            f"{expected}, got dtype {dtype.name}."
        )
    shape = tuple(codes.shape)
    if len(shape) < 1 or (grid is not None and (len(shape) != len(grid) + 1 or any(
        got is not None and got != want for got, want in zip(shape[1:], grid)
    ))):
        raise ValueError(f"{name} must have shape {expected}, got shape {shape}.")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; expected shape {expected} with batch >= 1.")
    if validation.is_symbolic(codes):
        return tf.cast(codes, tf.int32)
    values = np.asarray(codes)
    if values.size and (values.min() < 0 or values.max() >= num_embeddings):
        raise ValueError(
            f"{name} must lie in [0, {num_embeddings}) (the codebook size); got values in "
            f"[{values.min()}, {values.max()}]."
        )
    return tf.convert_to_tensor(values.astype(np.int32))


def perplexity(counts):
    """exp(entropy) of the code distribution given by `counts` (K for uniform use, 1 for one code)."""
    counts = tf.cast(counts, tf.float32)
    probs = counts / tf.maximum(tf.reduce_sum(counts), 1e-12)
    return tf.exp(-tf.reduce_sum(tf.math.xlogy(probs, probs)))


def _replica_sum(*tensors):
    """Sum tensors over the replicas of the current `tf.distribute` replica context, if any."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return tuple(context.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors)))


@keras.saving.register_keras_serializable(package="vaezoo")
class VectorQuantizer(keras.layers.Layer):
    """Nearest-code lookup with a straight-through gradient and a learned codebook.

    Called on a float tensor `(batch, ..., embedding_dim)`, it returns a dict:

    - `quantized`: the nearest code vector of every input vector, with the straight-through
      gradient `z + stop_gradient(e - z)` (its value is the code vector, its gradient the
      identity to the encoder);
    - `codes`: int32 code indices, shape `(batch, ...)`;
    - `loss`: per-example VQ loss, summed over all latent positions and dimensions:
      `||sg(z) - e||^2 + commitment_cost * ||z - sg(e)||^2` when the codebook is learned by
      the loss, only the commitment term when it is learned by moving averages;
    - `perplexity`: exp(entropy) of the code use in the batch (K: uniform, 1: one code);
    - `usage`: fraction of the K codes used at least once in the batch.

    Under `tf.distribute` (inside `strategy.run`) the perplexity and usage are of the global
    batch.

    With `ema=True` the codebook is not trained by gradients: each training call updates,
    with the global (all-replica) counts `n_i` and sums `s_i` of the vectors assigned to
    code i (van den Oord et al., 2017, appendix A.1, with Laplace smoothing as in Sonnet):

        N_i <- decay * N_i + (1 - decay) * n_i
        m_i <- decay * m_i + (1 - decay) * s_i
        e_i <- m_i / ((N_i + epsilon) / (sum_j N_j + K * epsilon) * sum_j N_j)

    `N` starts at 1 and `m` at the initial codebook, so an unused code stays where it is
    (instead of jumping to 0 or infinity on the first step). The moving average `N` is kept
    in loss mode too, for monitoring and dead-code restarts.

    With `restart_dead_codes=True`, after each training update every code whose moving
    average of assignments per step `N_i` is below `dead_code_threshold` is moved onto a
    randomly chosen encoder output of the current batch (and its `N_i` reset to 1), as in
    Dhariwal et al. (2020). Under `tf.distribute` the first replica's choice is kept.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: size D of each code vector (the input's last axis).
        commitment_cost: weight beta of the commitment loss.
        ema: learn the codebook by exponential moving averages (`True`) or by the loss.
        decay: decay of the moving averages, in [0, 1).
        epsilon: Laplace smoothing of the moving-average counts.
        restart_dead_codes: re-initialise unused codes from encoder outputs.
        dead_code_threshold: moving-average assignments per step below which a code is dead.
        seed: integer seed of the restart draws.

    Example:
        >>> vq = VectorQuantizer(num_embeddings=512, embedding_dim=64)
        >>> out = vq(tf.random.normal([8, 8, 8, 64]), training=True)
        >>> out["codes"].shape, out["quantized"].shape, out["loss"].shape
        (TensorShape([8, 8, 8]), TensorShape([8, 8, 8, 64]), TensorShape([8]))
        >>> vq.nearest_codes(vq.embed(out["codes"])) == out["codes"]   # exact round trip

    References:
        van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning",
        NeurIPS 2017. Razavi, van den Oord & Vinyals, "Generating Diverse High-Fidelity
        Images with VQ-VAE-2", NeurIPS 2019. Dhariwal et al., "Jukebox: A Generative Model
        for Music", 2020 (random restarts of dead codes).
    """

    def __init__(
        self,
        num_embeddings=512,
        embedding_dim=64,
        commitment_cost=0.25,
        ema=True,
        decay=0.99,
        epsilon=1e-5,
        restart_dead_codes=False,
        dead_code_threshold=1e-2,
        seed=None,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # distances in float32 even under mixed precision
        super().__init__(**kwargs)
        validation.check_int("num_embeddings", num_embeddings, 1)
        validation.check_int("embedding_dim", embedding_dim, 1)
        validation.check_positive("commitment_cost", commitment_cost, allow_zero=True)
        validation.check_positive("decay", decay, allow_zero=True)
        if decay >= 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}.")
        validation.check_positive("epsilon", epsilon)
        validation.check_positive("dead_code_threshold", dead_code_threshold, allow_zero=True)
        if seed is not None:
            validation.check_int("seed", seed, 0)
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.commitment_cost = float(commitment_cost)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.restart_dead_codes = bool(restart_dead_codes)
        self.dead_code_threshold = float(dead_code_threshold)
        self.seed = seed

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] is not None and input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"VectorQuantizer expects inputs (..., {self.embedding_dim}) (embedding_dim), "
                f"got shape {tuple(input_shape)}."
            )
        k, d = self.num_embeddings, self.embedding_dim
        limit = math.sqrt(3.0 / d)  # code vectors of expected squared norm 1
        # Every variable a training call assigns is written identically by all replicas
        # (statistics are all-reduced first), so the first replica's value is kept.
        sync = {"aggregation": "only_first_replica"}
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(k, d),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            trainable=not self.ema,
            **sync,
        )
        self.ema_cluster_size = self.add_weight(
            name="ema_cluster_size", shape=(k,), initializer="ones", trainable=False, **sync
        )
        if self.ema:
            initial = self.embeddings

            def copy_of_codebook(shape, dtype=None):
                return tf.identity(tf.convert_to_tensor(initial))

            self.ema_embed_sum = self.add_weight(
                name="ema_embed_sum", shape=(k, d), initializer=copy_of_codebook, trainable=False, **sync
            )
        if self.restart_dead_codes:
            self.restart_step = self.add_weight(
                name="restart_step", shape=(), dtype="int64", initializer="zeros", trainable=False, **sync
            )

    # ----------------------------------------------------------------- lookups
    def _codebook(self):
        return tf.cast(tf.convert_to_tensor(self.embeddings), tf.float32)

    def _nearest(self, flat):
        """Index of the nearest code (squared Euclidean distance) of each row of `flat` (N, D)."""
        codebook = self._codebook()
        distances = (
            tf.reduce_sum(tf.square(flat), axis=1, keepdims=True)
            - 2.0 * tf.matmul(flat, codebook, transpose_b=True)
            + tf.reduce_sum(tf.square(codebook), axis=1)[None, :]
        )
        return tf.argmin(distances, axis=1, output_type=tf.int32)

    def _check_vectors(self, z):
        z = tf.cast(z, tf.float32)
        if len(z.shape) < 1 or (z.shape[-1] is not None and z.shape[-1] != self.embedding_dim):
            raise ValueError(
                f"VectorQuantizer expects vectors (..., {self.embedding_dim}), got shape {tuple(z.shape)}."
            )
        return z

    def nearest_codes(self, z):
        """Code index of the nearest code vector for each vector of `z` `(..., D)`: int32 `(...)`."""
        if not self.built:
            self.build(tuple(z.shape))
        z = self._check_vectors(z)
        codes = self._nearest(tf.reshape(z, (-1, self.embedding_dim)))
        return tf.reshape(codes, tf.shape(z)[:-1])

    def embed(self, codes):
        """Code vectors `(..., D)` of integer `codes` in [0, K); out-of-range codes raise ValueError."""
        if not self.built:
            self.build()
        codes = check_codes(codes, self.num_embeddings)
        return tf.gather(self._codebook(), codes)

    # ----------------------------------------------------------------- forward
    def call(self, inputs, training=False):
        z = self._check_vectors(inputs)
        flat = tf.reshape(z, (-1, self.embedding_dim))
        codes_flat = self._nearest(flat)
        one_hot = tf.one_hot(codes_flat, self.num_embeddings, dtype=tf.float32)
        if self.ema:  # the codebook is not trained by gradients: a plain lookup
            quantized = tf.reshape(tf.gather(self._codebook(), codes_flat), tf.shape(z))
        else:
            # one_hot @ codebook (exactly the code vectors) rather than a gather: the codebook's
            # gradient is then dense, which all-reduces like every other gradient (a gather's
            # IndexedSlices need an all-gather across replicas).
            quantized = tf.reshape(tf.matmul(one_hot, self._codebook()), tf.shape(z))

        batch = tf.shape(z)[0]
        commitment = tf.reduce_sum(
            tf.reshape(tf.square(z - tf.stop_gradient(quantized)), (batch, -1)), axis=1
        )
        loss = self.commitment_cost * commitment
        if not self.ema:
            codebook_loss = tf.reduce_sum(
                tf.reshape(tf.square(tf.stop_gradient(z) - quantized), (batch, -1)), axis=1
            )
            loss = loss + codebook_loss

        counts = tf.reduce_sum(one_hot, axis=0)
        if training:
            sums = tf.matmul(one_hot, tf.stop_gradient(flat), transpose_a=True)
            counts, sums = _replica_sum(counts, sums)
            self._update_codebook(counts, sums, tf.stop_gradient(flat))
        else:
            (counts,) = _replica_sum(counts)

        return {
            "quantized": z + tf.stop_gradient(quantized - z),
            "codes": tf.reshape(codes_flat, tf.shape(z)[:-1]),
            "loss": loss,
            "perplexity": perplexity(counts),
            "usage": tf.reduce_mean(tf.cast(counts > 0, tf.float32)),
        }

    def _update_codebook(self, counts, sums, flat):
        """Moving-average update from the global `counts` (K,) and `sums` (K, D) of one step."""
        decay = self.decay
        cluster_size = decay * tf.convert_to_tensor(self.ema_cluster_size) + (1.0 - decay) * counts
        if self.ema:
            embed_sum = decay * tf.convert_to_tensor(self.ema_embed_sum) + (1.0 - decay) * sums
            total = tf.reduce_sum(cluster_size)
            smoothed = (cluster_size + self.epsilon) / (total + self.num_embeddings * self.epsilon) * total
            codebook = embed_sum / smoothed[:, None]
        if self.restart_dead_codes:
            if not self.ema:
                codebook = self._codebook()
            dead = cluster_size < self.dead_code_threshold
            step = tf.convert_to_tensor(self.restart_step)
            seed = tf.stack([tf.constant(self.seed or 0, tf.int64), step])
            picks = tf.random.stateless_uniform(
                (self.num_embeddings,), seed=seed, minval=0, maxval=tf.shape(flat)[0], dtype=tf.int32
            )
            candidates = tf.gather(flat, picks)
            codebook = tf.where(dead[:, None], candidates, codebook)
            cluster_size = tf.where(dead, tf.ones_like(cluster_size), cluster_size)
            if self.ema:
                embed_sum = tf.where(dead[:, None], candidates, embed_sum)
            self.restart_step.assign_add(tf.constant(1, tf.int64))
        self.ema_cluster_size.assign(cluster_size)
        if self.ema:
            self.ema_embed_sum.assign(embed_sum)
        if self.ema or self.restart_dead_codes:
            self.embeddings.assign(codebook)

    def compute_output_spec(self, inputs, training=False):
        shape = tuple(inputs.shape)
        return {
            "quantized": keras.KerasTensor(shape, "float32"),
            "codes": keras.KerasTensor(shape[:-1], "int32"),
            "loss": keras.KerasTensor(shape[:1], "float32"),
            "perplexity": keras.KerasTensor((), "float32"),
            "usage": keras.KerasTensor((), "float32"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "commitment_cost": self.commitment_cost,
            "ema": self.ema,
            "decay": self.decay,
            "epsilon": self.epsilon,
            "restart_dead_codes": self.restart_dead_codes,
            "dead_code_threshold": self.dead_code_threshold,
            "seed": self.seed,
        }


def check_depth(depth, max_depth, name="depth", per_example=False):
    """Validate a quantizer depth: an integer in [1, max_depth]; returns an int32 tensor.

    Args:
        depth: a Python integer, or an integer tensor: a scalar, or with `per_example` one
            depth per example `(batch,)`. A traced (symbolic) tensor's values are not known:
            only its dtype and rank are checked (exports add graph assertions).
        max_depth: the largest depth (the quantizer's number of levels).
        name: how the argument is called in error messages.
        per_example: accept a `(batch,)` tensor of depths.

    Raises:
        TypeError: not an integer, or a tensor of the wrong rank.
        ValueError: a value outside [1, max_depth].
    """
    expected = f"an integer in [1, {max_depth}] (the model's quantizer depth)"
    if isinstance(depth, (tf.Tensor, tf.Variable, np.ndarray)):
        ranks = (0, 1) if per_example else (0,)
        if not tf.as_dtype(depth.dtype).is_integer or len(depth.shape) not in ranks:
            what = "an integer scalar" + (" or one integer per example (batch,)" if per_example else "")
            raise TypeError(f"{name} must be {what} in [1, {max_depth}], got dtype {tf.as_dtype(depth.dtype).name} "
                            f"and shape {tuple(depth.shape)}.")
        if validation.is_symbolic(depth):
            return tf.cast(depth, tf.int32)
        values = np.asarray(depth)
        if values.size and (values.min() < 1 or values.max() > max_depth):
            raise ValueError(f"{name} must be {expected}, got values in [{values.min()}, {values.max()}].")
        return tf.constant(values.astype(np.int32))
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= int(depth) <= max_depth:
        raise ValueError(f"{name} must be {expected}, got {depth!r}.")
    return tf.constant(int(depth), tf.int32)


@keras.saving.register_keras_serializable(package="vaezoo")
class ResidualQuantizer(keras.layers.Layer):
    """Residual vector quantization: `depth` `VectorQuantizer`s, each coding what the previous left.

    Level 1 quantizes the input `z`; level d quantizes the residual
    `r_d = z - (e_1 + ... + e_{d-1})` left by the levels before it (Lee et al. 2022; the
    residual VQ of SoundStream). The first d levels' codes decode to `e_1 + ... + e_d`, so a
    prefix of the code stack is a coarser description of the same vector. Each level is a
    `VectorQuantizer` with its own codebook (EMA updates and dead-code restarts as there).

    Called on a float tensor `(batch, ..., embedding_dim)` with an optional per-example
    `depths` int32 `(batch,)` (how many levels each example uses, in [1, depth]; default all),
    it returns a dict:

    - `quantized`: `e_1 + ... + e_n` of each example's n levels, with the straight-through
      gradient `z + stop_gradient(sum - z)`;
    - `codes`: int32 `(batch, ..., depth)`, every level's code (a level beyond an example's
      depth is still computed, its code is just not used by `quantized`);
    - `loss`: per-example VQ loss of the used levels: level d's `VectorQuantizer` loss on
      `r_d` (with the earlier codes held fixed, the commitment term is
      `commitment_cost * ||z - sg(e_1 + ... + e_d)||^2`, the RQ-VAE paper's loss);
    - `perplexity`, `usage`: of each level's code use in the batch, averaged over the levels.

    In training every level's codebook is updated on its residuals of the whole batch,
    whatever the example's depth: the codebooks keep learning the residuals the encoder gives.

    Args:
        depth: number of levels D.
        num_embeddings: codebook size K of every level.
        embedding_dim: size of each code vector (the input's last axis).
        **quantizer_kwargs: the other `VectorQuantizer` arguments (`commitment_cost`, `ema`,
            `decay`, `epsilon`, `restart_dead_codes`, `dead_code_threshold`, `seed`), shared by
            all levels (level d's restart draws use seed `seed + d`).

    Example:
        >>> rq = ResidualQuantizer(depth=4, num_embeddings=256, embedding_dim=64)
        >>> out = rq(tf.random.normal([8, 8, 8, 64]), training=True)
        >>> out["codes"].shape, out["quantized"].shape
        (TensorShape([8, 8, 8, 4]), TensorShape([8, 8, 8, 64]))
        >>> rq.embed(out["codes"][..., :2])     # the 2-level approximation of the input

    References:
        Lee et al., "Autoregressive Image Generation using Residual Quantization", CVPR 2022.
        Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", 2021.
    """

    def __init__(self, depth=8, num_embeddings=256, embedding_dim=64, **quantizer_kwargs):
        kwargs = {key: quantizer_kwargs.pop(key) for key in list(quantizer_kwargs)
                  if key in ("name", "dtype", "trainable")}
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        validation.check_int("depth", depth, 1)
        self.depth = int(depth)
        seed = quantizer_kwargs.pop("seed", None)
        # One attribute per level (not a list): TensorFlow checkpoints (the Trainer's) track
        # a layer's attributes, but not the lists Keras wraps.
        for level in range(self.depth):
            setattr(self, f"level_{level}", VectorQuantizer(
                num_embeddings=num_embeddings, embedding_dim=embedding_dim,
                seed=None if seed is None else seed + level, name=f"level_{level}", **quantizer_kwargs))
        self.seed = seed

    @property
    def levels(self):
        """The `VectorQuantizer` of each level, first to last."""
        return [getattr(self, f"level_{level}") for level in range(self.depth)]

    @property
    def num_embeddings(self):
        return self.levels[0].num_embeddings

    @property
    def codebooks(self):
        """Every level's code vectors as one float32 numpy array `(depth, K, C)`, level d in row d
        (what `vaezoo.code_search` searches, and an export's `codebooks.npy`)."""
        if not self.built:
            self.build()
        return np.stack([np.asarray(level.embeddings, np.float32) for level in self.levels])

    @property
    def embedding_dim(self):
        return self.levels[0].embedding_dim

    def build(self, input_shape=None):
        for level in self.levels:
            if not level.built:
                level.build(input_shape)

    def nearest_codes(self, z):
        """Greedy residual codes of `z` `(..., D)`: int32 `(..., depth)` (level d codes `r_d`)."""
        if not self.built:
            self.build(tuple(z.shape))
        residual = self.levels[0]._check_vectors(z)
        codes = []
        for level in self.levels:
            level_codes = level.nearest_codes(residual)
            residual = residual - level.embed(level_codes)
            codes.append(level_codes)
        return tf.stack(codes, axis=-1)

    def embed(self, codes, depth=None):
        """Sum of the code vectors of the first `depth` levels of code stacks `(batch, ..., d)`.

        `d` is at most this quantizer's depth; `depth` defaults to d, and may be an integer
        tensor: a scalar, or one depth per example `(batch,)` (values in [1, d]).
        """
        if not self.built:
            self.build()
        codes = check_codes(codes, self.num_embeddings)
        levels = codes.shape[-1]
        if len(codes.shape) < 2 or levels is None or not 1 <= levels <= self.depth:
            raise ValueError(f"codes must have shape (batch, ..., d) with 1 <= d <= {self.depth} levels, got "
                             f"shape {tuple(codes.shape)}.")
        if depth is not None:
            depth = tf.convert_to_tensor(depth)
            if depth.shape.rank == 1:  # one depth per example: broadcast over the grid and vector
                depth = tf.reshape(depth, [-1] + [1] * (len(codes.shape) - 1))
        total = 0.0
        for level in range(levels):
            vectors = self.levels[level].embed(codes[..., level])
            if depth is not None:
                vectors = vectors * tf.cast(level < depth, vectors.dtype)
            total = total + vectors
        return total

    def call(self, inputs, training=False, depths=None):
        z = self.levels[0]._check_vectors(inputs)
        batch = tf.shape(z)[0]
        per_example = (batch,) + (1,) * (len(z.shape) - 1)
        residual, total = z, tf.zeros_like(z)
        loss = tf.zeros((batch,), tf.float32)
        codes, perplexities, usages = [], [], []
        for d, level in enumerate(self.levels):
            out = level(residual, training=training)
            vectors = tf.stop_gradient(out["quantized"])  # the code vectors' values
            used = tf.ones((batch,), tf.float32) if depths is None else tf.cast(d < depths, tf.float32)
            total = total + vectors * tf.reshape(used, per_example)
            loss = loss + used * out["loss"]
            residual = residual - vectors
            codes.append(out["codes"])
            perplexities.append(out["perplexity"])
            usages.append(out["usage"])
        return {
            "quantized": z + tf.stop_gradient(total - z),
            "codes": tf.stack(codes, axis=-1),
            "loss": loss,
            "perplexity": tf.reduce_mean(tf.stack(perplexities)),
            "usage": tf.reduce_mean(tf.stack(usages)),
        }

    def compute_output_spec(self, inputs, training=False, depths=None):
        shape = tuple(inputs.shape)
        return {
            "quantized": keras.KerasTensor(shape, "float32"),
            "codes": keras.KerasTensor((*shape[:-1], self.depth), "int32"),
            "loss": keras.KerasTensor(shape[:1], "float32"),
            "perplexity": keras.KerasTensor((), "float32"),
            "usage": keras.KerasTensor((), "float32"),
        }

    def get_config(self):
        first = self.levels[0].get_config()
        shared = ("num_embeddings", "embedding_dim", "commitment_cost", "ema", "decay", "epsilon",
                  "restart_dead_codes", "dead_code_threshold")
        return {**super().get_config(), "depth": self.depth, "seed": self.seed,
                **{key: first[key] for key in shared}}
