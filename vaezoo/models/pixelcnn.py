"""A gated PixelCNN prior over grids of discrete codes (the VQ-VAE's second stage)."""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo import validation
from vaezoo.quantizer import check_codes
from vaezoo.models.base import TrackedLossTraining


class _ShiftedConv2D(keras.layers.Layer):
    """A conv whose padded, masked kernel only sees rows above and/or columns to the left.

    The input is zero-padded `pad_top` rows above and `pad_left`/`pad_right` columns beside
    (never below), so output `(i, j)` covers input rows `i - kh + 1 .. i` and columns
    `j - pad_left .. j + pad_right`. `mask` (shape `(kh, kw)`) zeroes kernel taps, e.g. the
    last row (the current row) or the last column (the current position).
    """

    def __init__(self, filters, kernel_size, pad_left, pad_right, mask, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.pad_left, self.pad_right = int(pad_left), int(pad_right)
        self.mask = np.asarray(mask, np.float32)

    def build(self, input_shape):
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(kh, kw, input_shape[-1], self.filters), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):
        kh, _ = self.kernel_size
        x = tf.pad(x, [[0, 0], [kh - 1, 0], [self.pad_left, self.pad_right], [0, 0]])
        kernel = tf.cast(self.kernel, x.dtype) * tf.constant(self.mask[:, :, None, None], x.dtype)
        return tf.nn.conv2d(x, kernel, strides=1, padding="VALID") + tf.cast(self.bias, x.dtype)


class _GatedLayer(keras.layers.Layer):
    """One gated layer with a vertical and a horizontal stack (van den Oord et al., 2016b).

    The vertical stack at row i sees rows < i (all columns within reach), the horizontal
    stack at (i, j) sees columns < j of row i plus the vertical stack, so together they see
    every earlier position in raster order and nothing else (no blind spot). The first layer
    (`first=True`) masks the current row/column; later layers may look at the previous
    layer's features at the current position, which already exclude the current code.
    """

    def __init__(self, filters, kernel_size, first, **kwargs):
        super().__init__(**kwargs)
        k = int(kernel_size)
        half = k // 2
        self.first = bool(first)
        v_mask = np.ones((half + 1, k), np.float32)
        h_mask = np.ones((1, half + 1), np.float32)
        if self.first:
            v_mask[-1, :] = 0.0  # the current row
            h_mask[:, -1] = 0.0  # the current position
        self.vertical = _ShiftedConv2D(2 * filters, (half + 1, k), half, half, v_mask, name="vertical")
        self.horizontal = _ShiftedConv2D(2 * filters, (1, half + 1), half, 0, h_mask, name="horizontal")
        self.vertical_to_horizontal = keras.layers.Conv2D(2 * filters, 1, name="vertical_to_horizontal")
        self.horizontal_out = keras.layers.Conv2D(filters, 1, name="horizontal_out")

    @staticmethod
    def _gate(x):
        a, b = tf.split(x, 2, axis=-1)
        return tf.tanh(a) * tf.sigmoid(b)

    def call(self, x_v, x_h):
        v = self.vertical(x_v)
        h = self.horizontal(x_h) + self.vertical_to_horizontal(v)
        out_h = self.horizontal_out(self._gate(h))
        if not self.first:  # a residual from the first layer's input would leak the current code
            out_h = out_h + x_h
        return self._gate(v), out_h


@keras.saving.register_keras_serializable(package="vaezoo")
class PixelCNN(TrackedLossTraining, keras.Model):
    """Autoregressive prior p(c) = prod_i p(c_i | c_<i) over `(height, width)` grids of codes.

    Codes are embedded, passed through gated masked-convolution layers with vertical and
    horizontal stacks (van den Oord et al., 2016b; no blind spot), and mapped to K logits per
    position; position i's logits depend only on the codes before i in raster order. It is
    the second stage of a VQ-VAE: trained with `fit` on a dataset of code grids (int arrays
    `(batch, height, width)`, or tuples/dicts whose first entry / `"codes"` is that).

    Args:
        num_embeddings: number of codes K.
        grid_shape: `(height, width)` of a code grid.
        filters: channels of the hidden layers.
        layers: number of gated layers (the receptive field grows by `kernel_size // 2` rows
            and columns per layer).
        kernel_size: odd width of the masked kernels.
        seed: integer seed for `sample()` without an explicit seed.

    Example:
        >>> prior = PixelCNN(num_embeddings=512, grid_shape=(8, 8), filters=64, layers=6)
        >>> prior.compile(optimizer="adam")
        >>> prior.fit(codes, epochs=10, batch_size=64)   # int codes (n, 8, 8)
        >>> prior.log_prob(codes[:4]).shape              # nats per grid
        TensorShape([4])
        >>> prior.sample(16, seed=0).shape               # int32 codes
        TensorShape([16, 8, 8])

    References:
        van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML
        2016. van den Oord et al., "Conditional Image Generation with PixelCNN Decoders",
        NeurIPS 2016.
    """

    #: the most grids one `sample` call draws; set it on a prior to raise it, `None` for no limit.
    max_samples_per_call = validation.MAX_SAMPLES_PER_CALL

    def __init__(self, num_embeddings=512, grid_shape=(8, 8), filters=64, layers=6, kernel_size=3, seed=None, **kwargs):
        super().__init__(**kwargs)
        validation.check_int("num_embeddings", num_embeddings, 1)
        grid_shape = tuple(grid_shape)
        if len(grid_shape) != 2:
            raise ValueError(f"grid_shape must be (height, width), got {grid_shape}.")
        for d in grid_shape:
            validation.check_int("grid_shape entries", d, 1)
        validation.check_int("filters", filters, 1)
        validation.check_int("layers", layers, 1)
        validation.check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        if seed is not None:
            validation.check_int("seed", seed, 0)
        self.num_embeddings = int(num_embeddings)
        self.grid_shape = tuple(int(d) for d in grid_shape)
        self.filters = int(filters)
        self.num_layers = int(layers)
        self.kernel_size = int(kernel_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

        self.embedding = keras.layers.Embedding(self.num_embeddings, self.filters, name="embedding")
        self.gated = [
            _GatedLayer(self.filters, self.kernel_size, first=(i == 0), name=f"gated_{i}")
            for i in range(self.num_layers)
        ]
        self.head_hidden = keras.layers.Conv2D(self.filters, 1, name="head_hidden")
        self.head_logits = keras.layers.Conv2D(self.num_embeddings, 1, name="head_logits")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "bits_per_code")}
        self._logits(tf.zeros((1, *self.grid_shape), tf.int32))  # create every weight now
        self.built = True

    # ----------------------------------------------------------------- network
    def _logits(self, codes):
        x = self.embedding(codes)
        x_v, x_h = x, x
        for layer in self.gated:
            x_v, x_h = layer(x_v, x_h)
        h = tf.nn.relu(self.head_hidden(tf.nn.relu(x_h)))
        return tf.cast(self.head_logits(h), tf.float32)

    def _log_prob(self, codes, temperature=1.0):
        logits = self._logits(codes) / temperature
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        picked = tf.gather(log_probs, codes, axis=-1, batch_dims=3)
        return tf.reduce_sum(picked, axis=[1, 2])

    def _codes(self, codes, name="codes"):
        return check_codes(codes, self.num_embeddings, self.grid_shape, name=name)

    @property
    def num_positions(self):
        return int(math.prod(self.grid_shape))

    # ----------------------------------------------------------------- public API
    def call(self, codes, training=False):
        """Logits `(batch, height, width, K)` of p(c_i | c_<i) at every position."""
        return self._logits(check_codes(codes, self.num_embeddings, self.grid_shape))

    def logits(self, codes):
        """Logits `(batch, height, width, K)`; position i depends only on codes before i."""
        return self._logits(self._codes(codes))

    def log_prob(self, codes):
        """log p(codes) per grid in nats, shape `(batch,)`, for int codes `(batch, height, width)`."""
        return self._log_prob(self._codes(codes))

    def bits_per_code(self, codes):
        """-log2 p(codes) divided by the number of positions: bits per code, shape `(batch,)`."""
        return -self.log_prob(codes) / (self.num_positions * math.log(2.0))

    def sample(self, n, seed=None, temperature=1.0):
        """Draw `n` code grids by ancestral sampling in raster order: int32 `(n, height, width)`.

        Each position's code is the argmax of its tempered logits plus Gumbel noise
        (`gumbel_noise`: one `(positions, K)` draw per grid from the seed), an exact draw
        from softmax(logits / temperature). The grid is computed by `sample_from_noise`,
        which caches the vertical stack row by row instead of rerunning the network on the
        whole grid at every position.

        Args:
            n: number of grids, >= 1.
            seed: integer (or a shape-(2,) int tensor) for reproducible samples; `None`
                draws from the model's generator.
            temperature: divides the logits; must be > 0 (1: the model's distribution).

        Raises:
            ValueError: `n` over `max_samples_per_call` (before anything is drawn).
        """
        validation.check_int("n", n, 1)
        validation.check_count_limit("n", n, self.max_samples_per_call, "prior")
        validation.check_positive("temperature", temperature)
        if seed is None:
            seed = tf.cast(self.seed_generator.next(), tf.int32)
        elif isinstance(seed, (int, np.integer)):
            seed = tf.constant([int(seed), 0], tf.int32)
        seed = tf.cast(seed, tf.int32)
        return self._sample_grid(tf.constant(int(n)), seed, tf.constant(float(temperature)))

    @tf.function(reduce_retracing=True)
    def _sample_grid(self, n, seed, temperature):
        return self.sample_from_noise(self.gumbel_noise(n, seed), temperature)

    def gumbel_noise(self, n, seed):
        """Standard Gumbel noise `(n, positions, K)` for `n` grids from a stateless `(2,)` seed.

        A grid's draws are the same whether it is drawn alone or in a batch of grids whose
        first seed is the same (a stateless draw fills its output in order).
        """
        tiny = np.finfo(np.float32).tiny  # log(0) never happens
        u = tf.random.stateless_uniform((n, self.num_positions, self.num_embeddings), seed=seed, minval=tiny, maxval=1.0)
        return -tf.math.log(-tf.math.log(u))

    def sample_from_noise(self, noise, temperature=1.0):
        """Code grids `(n, height, width)` drawn with the Gumbel noise `noise` `(n, positions, K)`.

        Position p (raster order) gets `argmax(logits_p / temperature + noise[:, p])`. The
        network runs only on what a position depends on: the vertical stack of row i sees
        rows < i only, so it runs once per row (on the `kernel_size // 2 + 1` rows its masked
        kernel covers, from a per-layer cache of its inputs); the horizontal stack at (i, j)
        sees columns <= j of row i only, so it runs once per position, on the columns its
        kernel covers, and so does the head. The logits are those of `logits` on the whole
        grid (`_sample_from_noise_full_grid` is the straightforward loop, kept as the
        reference the tests compare with).
        """
        height, width = self.grid_shape
        half = self.kernel_size // 2
        noise = tf.convert_to_tensor(noise, tf.float32)
        temperature = tf.cast(temperature, tf.float32)
        n = tf.shape(noise)[0]
        dtype = tf.as_dtype(self.embedding.compute_dtype)
        noise_rows = tf.reshape(noise, [n, height, width, self.num_embeddings])
        # One position's horizontal stack and head are matrix products on (n, channels) rows:
        # as convolutions on (n, 1, 1, channels) inputs they run several times slower.
        def taps(conv):  # the masked (1, half + 1) kernel, one (channels, filters) matrix per kept tap
            kernel = tf.cast(conv.kernel, dtype)
            return {t: kernel[0, t] for t in range(half + 1) if conv.mask[0, t]}

        def pointwise(conv, x):  # a 1x1 Conv2D on (n, channels) rows
            return tf.matmul(x, tf.cast(conv.kernel[0, 0], dtype)) + tf.cast(conv.bias, dtype)

        horizontal_taps = [taps(layer.horizontal) for layer in self.gated]
        # per layer, the inputs of its vertical conv, rows first, with `half` zero rows on top
        # (the padding the conv would add); row i of layer 0 is masked, of layer l > 0 is the
        # gated vertical output of layer l - 1 at row i, filled in when row i starts.
        inputs = [tf.zeros([height + half, n, width, self.filters], dtype) for _ in self.gated]
        codes = tf.zeros([height, n, width], tf.int32)

        def row_step(i, codes, inputs):
            inputs = list(inputs)
            to_horizontal = []  # per layer and column, row i's vertical stack as the horizontal sees it
            for index, layer in enumerate(self.gated):
                window = tf.transpose(inputs[index][i : i + half + 1], [1, 0, 2, 3])
                vertical = layer.vertical(window)[:, -1:]  # row i: (n, 1, width, 2 * filters)
                to_horizontal.append(tf.unstack(layer.vertical_to_horizontal(vertical)[:, 0], width, axis=1))
                if index + 1 < len(self.gated):
                    row = tf.transpose(layer._gate(vertical), [1, 0, 2, 3])
                    inputs[index + 1] = tf.tensor_scatter_nd_update(inputs[index + 1], [[i + half]], row)
            row_noise = tf.unstack(tf.gather(noise_rows, i, axis=1), width, axis=1)
            # per layer, the horizontal stack's inputs along row i so far, (n, filters) per
            # column: layer 0's are the embedded codes, layer l > 0's layer l - 1's outputs.
            # The grid's width is static, so the columns are a Python loop (no cache updates).
            row_inputs = [[] for _ in self.gated]
            drawn_row = []
            for j in range(width):
                for index, layer in enumerate(self.gated):
                    h = tf.cast(layer.horizontal.bias, dtype) + to_horizontal[index][j]
                    for t, kernel in horizontal_taps[index].items():  # tap t sees column j - half + t
                        if j - half + t >= 0:
                            h = h + tf.matmul(row_inputs[index][j - half + t], kernel)
                    x_h = pointwise(layer.horizontal_out, layer._gate(h))
                    if not layer.first:
                        x_h = x_h + row_inputs[index][j]
                    if index + 1 < len(self.gated):
                        row_inputs[index + 1].append(x_h)
                hidden = tf.nn.relu(pointwise(self.head_hidden, tf.nn.relu(x_h)))
                logits = tf.cast(pointwise(self.head_logits, hidden), tf.float32)
                drawn = tf.argmax(logits / temperature + row_noise[j], axis=-1, output_type=tf.int32)
                drawn_row.append(drawn)
                row_inputs[0].append(tf.cast(self.embedding(drawn), dtype))
            codes = tf.tensor_scatter_nd_update(codes, [[i]], tf.stack(drawn_row, axis=1)[None])
            inputs[0] = tf.tensor_scatter_nd_update(inputs[0], [[i + half]], tf.stack(row_inputs[0], axis=1)[None])
            return i + 1, codes, inputs

        _, codes, _ = tf.while_loop(lambda i, *_: i < height, row_step, (tf.constant(0), codes, inputs))
        return tf.transpose(codes, [1, 0, 2])

    def _sample_from_noise_full_grid(self, noise, temperature=1.0):
        """The straightforward loop `sample_from_noise` must agree with: at every position,
        the logits of the whole grid so far (one full network pass per position)."""
        height, width = self.grid_shape
        noise = tf.convert_to_tensor(noise, tf.float32)
        n = tf.shape(noise)[0]

        def step(position, codes):
            row, col = position // width, position % width
            logits = self._logits(codes)[:, row, col, :] / temperature
            drawn = tf.argmax(logits + noise[:, position], axis=-1, output_type=tf.int32)
            index = tf.stack([tf.range(n), tf.fill([n], row), tf.fill([n], col)], axis=1)
            return position + 1, tf.tensor_scatter_nd_update(codes, index, drawn)

        _, codes = tf.while_loop(lambda p, _: p < height * width, step,
                                 (tf.constant(0), tf.zeros([n, height, width], tf.int32)))
        return codes

    # ----------------------------------------------------------------- Keras training
    def unpack_batch(self, data):
        """The code grids of a dataset element (array, `(codes, ...)` or `{"codes": ...}`)."""
        if isinstance(data, dict):
            data = data["codes"]
        elif isinstance(data, (tuple, list)):
            data = data[0]
        return self._codes(data, name="batch codes")

    def per_replica_loss(self, data, training=False, step=None):
        """Mean negative log-likelihood (nats per grid) over the GLOBAL batch, and the terms."""
        codes = self.unpack_batch(data)
        nll = -self._log_prob(codes)
        terms = {"loss": nll, "bits_per_code": nll / (self.num_positions * math.log(2.0))}
        loss = tf.nn.compute_average_loss(nll)
        if self.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.losses))
        return loss, terms

    def build(self, input_shape=None):  # every weight is created in __init__
        pass

    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        pass

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {
            "num_embeddings": self.num_embeddings,
            "grid_shape": list(self.grid_shape),
            "filters": self.filters,
            "layers": self.num_layers,
            "kernel_size": self.kernel_size,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
