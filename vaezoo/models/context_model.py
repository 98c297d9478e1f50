"""The exact context models of `.vqz` (grouped and raster order), trained with integer arithmetic in the loop.

`GroupedContextModel` is the Keras model that learns p(codes of group g | codes of groups < g)
(see `vaezoo.integer_entropy` for the groups, the integer network and why it is exact). Its
forward pass already computes the integer network: weights are rounded to integers, biases
too, activations are floored and clipped, logits floored, each with a straight-through
gradient (quantization-aware training), so `freeze()` returns the `IntegerContextNetwork`
the trained model computes, and the rate measured in training is the rate of the file format.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from vaezoo import integer_entropy as ie
from vaezoo import validation
from vaezoo.models.base import TrackedLossTraining
from vaezoo.quantizer import check_codes


def _round_ste(x):
    """round(x) forward, identity backward."""
    return x + tf.stop_gradient(tf.round(x) - x)


def _floor_ste(x):
    """floor(x) forward, identity backward."""
    return x + tf.stop_gradient(tf.floor(x) - x)


class _IntegerContextTraining(TrackedLossTraining, keras.Model):
    """What both context models share: the config is the constructor's arguments (no build
    state), and batches are codes (an array, or a dict / tuple holding them first)."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        pass

    @staticmethod
    def loss_and_terms(per_code):
        """The GLOBAL-batch loss and the tracked terms of per-example nats per code."""
        terms = {"loss": per_code, "bits_per_code": per_code / math.log(2.0)}
        return tf.nn.compute_average_loss(per_code), terms

    #: the embedding and hidden biases are stored divided by this (see `RasterContextModel`).
    activation_scale = 1.0

    def _check_activation_scale(self, activation_scale):
        scale = float(activation_scale)
        if not (scale >= 1.0 and math.log2(scale).is_integer()):
            raise ValueError(f"activation_scale must be a power of two >= 1 (so that float16 weights keep their "
                             f"integers), got {activation_scale!r}.")
        return scale

    #: kernels used centred over their fan-in (see `GroupedContextModel`'s `center_kernels`).
    center_kernels = False

    def _add_kernel_offsets(self):
        """With `center_kernels`, one offset variable per output unit of every kernel and of the
        head (zeros: the centred kernels at initialization)."""
        self.kernel_offsets, self.head_offset = [], None
        if self.center_kernels:
            self.kernel_offsets = [self.add_weight(name=f"kernel_offset_{i}", shape=(kernel.shape[-1],),
                                                   initializer="zeros") for i, kernel in enumerate(self.kernels)]
            self.head_offset = self.add_weight(name="head_offset", shape=(self.head_kernel.shape[-1],),
                                               initializer="zeros")

    def _kernel_pairs(self):
        """`(kernel variable, offset variable or None, shift)` of every layer, then of the head."""
        offsets = self.kernel_offsets or [None] * len(self.kernels)
        return [(k, o, self.weight_shift) for k, o in zip(self.kernels, offsets)] + \
            [(self.head_kernel, self.head_offset, self.head_shift)]

    @staticmethod
    def _effective(kernel, offset):
        """A kernel's real-valued weights: the variable itself, or centred over its fan-in plus
        `offset / fan_in` (float32, the same operations in the forward pass and in `freeze`)."""
        w = tf.convert_to_tensor(kernel)
        if offset is None:
            return w
        fan_in = math.prod(kernel.shape[:-1])
        return w - tf.reduce_mean(w, axis=list(range(len(kernel.shape) - 1)), keepdims=True) + offset / fan_in

    def integer_kernels(self):
        """The integer-valued float32 weights (straight-through rounding) of every layer, then
        of the head: what the forward pass multiplies by."""
        return [_integer_weight(self._effective(k, o), shift) for k, o, shift in self._kernel_pairs()]

    def _frozen_kernels(self):
        """int64 kernels of every layer, then the head, as `integer_kernels` computes them."""
        if not self.center_kernels:  # float64 rounding of the variables: the same integers
            return [_frozen(k, shift, ie.WEIGHT_MAX) for k, _, shift in self._kernel_pairs()]
        return [np.asarray(w).astype(np.int64) for w in self.integer_kernels()]

    def activation_integers(self, values):
        """The 0..127 activation-unit integers of stored embedding or bias values (`values * scale`
        rounded in float32, as the forward pass rounds them), before clipping."""
        return np.round(np.float32(self.activation_scale) * np.asarray(values, np.float32)).astype(np.float64)

    def snap(self):
        """Set every variable to the value of the integer it stands for (the same `freeze()`),
        so that storing the weights as float16 keeps the embedding, kernels and head exactly
        (their integers times a power of two need at most 8 significant bits)."""
        network, q, scale = self.freeze(), self.weight_shift, self.activation_scale
        self.embedding.assign(network.embedding / scale)
        for (variable, offset, shift), values in zip(self._kernel_pairs(), [*network.kernels, network.head_kernel]):
            values = np.reshape(values, variable.shape) * 2.0**-shift
            variable.assign(values)
            if offset is not None:  # centred: the offset gives back each unit's mean weight
                fan_in = math.prod(variable.shape[:-1])
                offset.assign(values.reshape(fan_in, -1).mean(axis=0) * fan_in)
        for variable, values in zip(self.biases, network.biases):
            variable.assign(values * 2.0**-q / scale)
        self.head_bias.assign(network.head_bias * 2.0**-self.head_shift)
        if self.center_kernels and not all(np.array_equal(a, b) for a, b in
                                           zip(self._frozen_kernels(), [*network.kernels, network.head_kernel])):
            raise AssertionError("snapping changed a centred kernel's integers")  # float32 rounding: never seen

    def batch_codes(self, data):
        """The checked int codes of a training batch."""
        if isinstance(data, dict):
            data = data["codes"]
        elif isinstance(data, (tuple, list)):
            data = data[0]
        return check_codes(data, self.num_embeddings, name="batch codes")


@keras.saving.register_keras_serializable(package="vaezoo")
class GroupedContextModel(_IntegerContextTraining):
    """Context model over code grids, coded in the interleaved groups of a group schedule.

    Each training example draws one group g with probability proportional to its number of
    positions, hides the codes of groups >= g (index K, "unknown"), and is scored on the
    codes of group g: the loss is then an unbiased estimate of the bits per code of coding
    the whole grid group by group.

    With `depths` D > 1 it models an RQ-VAE's code stacks `(h, w, D)`: depth k is coded after
    depths < k, each example draws a depth uniformly too, and the network sees the depth-k
    codes of earlier groups beside the codes of the `condition_depths` depths before k at
    every position, each from the (depth, slot) pair's own embedding rows
    (`integer_entropy.stack_input`). The rate is then the bits per code over all depths,
    and a file of quality d < D costs the first d depths' share of it.

    Args:
        num_embeddings: codebook size K.
        channels: width C of every hidden layer and of the network input (<= 86, the
            exactness bound of a 3x3 convolution); with condition slots each slot's embedding
            is `C // (1 + condition_depths)` wide.
        num_layers: 3x3 convolutions (receptive field 2 * num_layers + 1).
        weight_shift: a kernel's integers are `round(w * 2^weight_shift)`; the layer divides
            by the same power of two, so `w` keeps the scale of a float network.
        head_shift: the same for the head (logits come out in 2^-3 nat units).
        seed: integer seed of the group draws.
        depths: code depths D (1: code grids `(h, w)`; D > 1: code stacks `(h, w, D)`).
        condition_depths: how many earlier depths the network sees at each position (0 to
            D - 1).
        schedule: the group schedule (`integer_entropy.SCHEDULES`; default `"groups5"`): more
            groups give each code more known neighbours, at one network pass per group.
        activation_scale: the embedding and hidden biases (activation units, 0..127) are stored
            divided by this power of two. Use 32 for new models: unscaled (1, the default, which
            the weights shipped before it was an option need) they barely move from their
            initialization (see `RasterContextModel`).
        center_kernels: train every kernel (and the head) centred over its fan-in, each unit's
            mean weight given by a separate offset divided by the fan-in. Use True for new
            models (False, the default, is the parametrization of the weights shipped before
            it was an option). The inputs of every layer are non-negative (embedding rows and
            clipped activations), so an Adam step that moves all of a unit's weights the same
            way shifts its pre-activation by about fan-in x mean input x learning rate: tens of
            activation units per step, which leaves most units at 0 for every input, with no
            gradient to revive them (`benchmarks/dead_units_study.py`: 69%, 75% and 53% of the
            shipped rq-vae-cifar grouped model's hidden layers; 77-81% of a raster model's
            first layer after one epoch, none when centred). Centred, a step moves a unit's
            mean weight by the learning rate divided by the fan-in. The frozen network is the
            same kind: `freeze()` rounds the effective weights.

    Example:
        >>> model = GroupedContextModel(num_embeddings=512)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(codes, epochs=10, batch_size=128)       # int codes (n, h, w)
        >>> network = model.freeze()                           # the exact integer network
    """

    def __init__(self, num_embeddings=512, channels=64, num_layers=4, weight_shift=9, head_shift=8, seed=None,
                 depths=1, condition_depths=0, schedule=ie.DEFAULT_SCHEDULE, activation_scale=1.0, center_kernels=False,
                 **kwargs):
        super().__init__(**kwargs)
        validation.check_int("num_embeddings", num_embeddings, 2)
        validation.check_int("channels", channels, 1)
        validation.check_int("num_layers", num_layers, 1)
        validation.check_int("weight_shift", weight_shift, 0)
        validation.check_int("head_shift", head_shift, ie.LOGIT_FRACTION_BITS)
        validation.check_int("depths", depths, 1)
        validation.check_int("condition_depths", condition_depths, 0)
        ie.schedule_tile(schedule)  # a clear error for an unknown name
        if condition_depths >= depths and condition_depths:
            raise ValueError(f"condition_depths must be below depths ({depths}), got {condition_depths}.")
        if channels // (1 + condition_depths) < 1:
            raise ValueError(f"channels={channels} cannot be shared by {1 + condition_depths} input slots.")
        if 9 * channels * ie.WEIGHT_MAX * ie.ACTIVATION_MAX + ie.BIAS_MAX >= ie.EXACT_BOUND:
            raise ValueError(f"channels={channels} lets a 3x3 convolution reach 2^24 (inexact in float32); "
                             "use at most 86.")
        self.num_embeddings = int(num_embeddings)
        self.channels = int(channels)
        self.num_layers = int(num_layers)
        self.weight_shift = int(weight_shift)
        self.head_shift = int(head_shift)
        self.seed = seed
        self.depths = int(depths)
        self.condition_depths = int(condition_depths)
        self.slots = 1 + self.condition_depths
        self.schedule = str(schedule)
        self.activation_scale = self._check_activation_scale(activation_scale)
        self.seed_generator = keras.random.SeedGenerator(seed)
        c, k = self.channels, self.num_embeddings
        slot_width = c // self.slots
        self.embedding = self.add_weight(name="embedding", shape=((k + 1) * self.depths * self.slots, slot_width),
                                         initializer=keras.initializers.RandomUniform(0.0, 64.0 / self.activation_scale))
        he = keras.initializers.HeNormal(seed=seed)
        self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(3, 3, slot_width * self.slots if i == 0 else c, c),
                                        initializer=he)
                        for i in range(self.num_layers)]
        self.biases = [self.add_weight(name=f"bias_{i}", shape=(c,), initializer="zeros")
                       for i in range(self.num_layers)]
        self.head_kernel = self.add_weight(name="head_kernel", shape=(c, k),
                                           initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed))
        self.head_bias = self.add_weight(name="head_bias", shape=(k,), initializer="zeros")
        self.center_kernels = bool(center_kernels)
        self._add_kernel_offsets()
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "bits_per_code")}
        self.built = True

    # ----------------------------------------------------------------- integer parameters
    @property
    def stacked(self):
        """Whether the model codes code stacks (inputs: embedding rows `(n, h, w, slots)`)."""
        return self.depths > 1 or self.slots > 1

    def logits(self, inputs):
        """Integer-valued float32 logits `(n, h, w, K)` (units of 2^-3 nats) for input indices in [0, K]
        (code stacks: embedding rows `(n, h, w, slots)`)."""
        scale = self.activation_scale
        a = tf.clip_by_value(_round_ste(scale * tf.gather(self.embedding, inputs)), 0.0, ie.ACTIVATION_MAX)
        if self.stacked:
            shape = tf.shape(inputs)
            a = tf.reshape(a, [shape[0], shape[1], shape[2], self.embedding.shape[1] * self.slots])
        q = self.weight_shift
        *kernels, head = self.integer_kernels()
        for kernel, bias in zip(kernels, self.biases):
            z = tf.nn.conv2d(a, kernel, 1, "SAME") + _integer_bias(scale * bias, q)
            a = tf.clip_by_value(_floor_ste(z * 2.0**-q), 0.0, ie.ACTIVATION_MAX)
        h = self.head_shift
        z = tf.tensordot(a, head, 1) + _integer_bias(self.head_bias, h)
        shift = h - ie.LOGIT_FRACTION_BITS
        return tf.clip_by_value(_floor_ste(z * 2.0**-shift), -ie.LOGIT_LIMIT, ie.LOGIT_LIMIT)

    def freeze(self):
        """The `IntegerContextNetwork` this model computes (its integers, shifts and exp table)."""
        q, scale = self.weight_shift, np.float32(self.activation_scale)
        *kernels, head = self._frozen_kernels()
        return ie.IntegerContextNetwork(
            embedding=np.clip(self.activation_integers(self.embedding), 0, ie.ACTIVATION_MAX).astype(np.int64),
            kernels=tuple(kernels),
            biases=tuple(_frozen(scale * np.asarray(b, np.float32), q, ie.BIAS_MAX) for b in self.biases),
            shifts=(q,) * self.num_layers,
            head_kernel=head,
            head_bias=_frozen(self.head_bias, self.head_shift, ie.BIAS_MAX),
            head_shift=self.head_shift - ie.LOGIT_FRACTION_BITS,
            table=ie.exp_table(),
            slots=self.slots,
            schedule=self.schedule,
        )

    # ----------------------------------------------------------------- training
    def unpack_batch(self, data):
        codes = self.batch_codes(data)
        rank = 4 if self.depths > 1 else 3
        if len(codes.shape) != rank or (rank == 4 and codes.shape[-1] != self.depths):
            expected = f"code stacks (batch, h, w, {self.depths})" if rank == 4 else "code grids (batch, h, w)"
            raise ValueError(f"this context model takes {expected}, got shape {tuple(codes.shape)}.")
        return codes

    def stack_inputs(self, codes, groups, group, depth):
        """`integer_entropy.stack_input` in TensorFlow, one (group, depth) per example:
        int32 embedding rows `(n, h, w, slots)` of code stacks `(n, h, w, D)`."""
        k = self.num_embeddings
        values = [tf.where(groups[None] >= group[:, None, None], k, tf.gather(codes, depth, axis=3, batch_dims=1))]
        for s in range(1, self.slots):
            earlier = tf.gather(codes, tf.maximum(depth - s, 0), axis=3, batch_dims=1)
            values.append(tf.where((depth - s >= 0)[:, None, None], earlier, k))
        offsets = (depth[:, None] * self.slots + tf.range(self.slots)[None]) * (k + 1)
        return tf.stack(values, axis=-1) + offsets[:, None, None, :]

    def group_nll(self, codes, group, depth=None):
        """Nats of each grid's codes of `group` (int `(n,)`, one group per grid) given earlier groups, and counts
        (code stacks: of `depth`, int `(n,)`, given the earlier depths too)."""
        shape = tf.shape(codes)
        groups = tf.constant(ie.group_map(64, 64, self.schedule), tf.int32)[: shape[1], : shape[2]]  # any block <= 64
        if self.stacked:
            inputs = self.stack_inputs(codes, groups, group, depth)
            codes = tf.gather(codes, depth, axis=3, batch_dims=1)
        else:
            inputs = tf.where(groups[None] >= group[:, None, None], self.num_embeddings, codes)
        logits = self.logits(inputs) / 2.0**ie.LOGIT_FRACTION_BITS
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=codes, logits=logits)
        scored = tf.cast(tf.equal(groups[None], group[:, None, None]), tf.float32)
        return tf.reduce_sum(nll * scored, axis=[1, 2]), tf.reduce_sum(scored, axis=[1, 2])

    def per_replica_loss(self, data, training=False, step=None):
        """Nats per code of one group per grid, averaged over the GLOBAL batch, and the terms."""
        codes = self.unpack_batch(data)
        shape = tf.shape(codes)
        groups = tf.constant(ie.group_map(64, 64, self.schedule), tf.int32)[: shape[1], : shape[2]]
        sizes = tf.cast(tf.math.bincount(tf.reshape(groups, [-1]), minlength=ie.num_groups(self.schedule)), tf.float32)
        seed = tf.cast(self.seed_generator.next(), tf.int32)
        group = tf.random.stateless_categorical(tf.math.log(sizes[None]), shape[0], seed)[0]
        group = tf.cast(group, tf.int32)
        depth = None
        if self.stacked:  # every depth has as many codes: uniform
            depth_seed = tf.cast(self.seed_generator.next(), tf.int32)
            depth = tf.random.stateless_uniform((shape[0],), depth_seed, 0, self.depths, dtype=tf.int32)
        nats, count = self.group_nll(codes, group, depth)
        return self.loss_and_terms(nats / tf.maximum(count, 1.0))

    def get_config(self):
        return {"num_embeddings": self.num_embeddings, "channels": self.channels, "num_layers": self.num_layers,
                "weight_shift": self.weight_shift, "head_shift": self.head_shift, "seed": self.seed,
                "depths": self.depths, "condition_depths": self.condition_depths, "schedule": self.schedule,
                "activation_scale": self.activation_scale, "center_kernels": self.center_kernels, "name": self.name}


@keras.saving.register_keras_serializable(package="vaezoo")
class RasterContextModel(_IntegerContextTraining):
    """Context model over code grids coded in raster order, each code given a causal window.

    Learns p(code at p | the codes at `integer_entropy.causal_window(rows_above, radius)` of
    p), every position of every grid scored at once (the window never reads p or later). Its
    forward pass computes the integer network with straight-through rounding, like
    `GroupedContextModel`, so `freeze()` returns the `RasterContextNetwork` it trained and
    the training rate is the file's rate. Decoding takes one step per position (h * w steps
    per block, each batched over the blocks of a pass) instead of a few grid passes: more
    context per code for fewer operations per code.

    With `depths` D > 1 it models an RQ-VAE's code stacks `(h, w, D)`: depth k is coded after
    depths < k, in raster order, each position seeing its causal window at depth k and the
    `(2 * condition_radius + 1)^2` codes of depth k - 1 around it, through the (depth, slot)
    pair's own embedding rows (`integer_entropy.raster_stack_input`). Each training example
    is scored at one depth drawn uniformly (every depth has as many codes), so the loss
    estimates the bits per code over all depths.

    Args:
        num_embeddings: codebook size K.
        channels: width of the hidden dense layers.
        num_layers: dense layers before the head (the first reads the window).
        rows_above, radius: the causal window (`integer_entropy.causal_window`).
        embedding_width: entries per code in the window (default: the widest the exactness
            bound allows, `MAX_FAN_IN // taps`, at most `channels`).
        weight_shift, head_shift, seed: as `GroupedContextModel`'s.
        depths: code depths D (1: code grids `(h, w)`; D > 1: code stacks `(h, w, D)`).
        condition_radius: code stacks: the depth-(k - 1) codes within this distance (rows and
            columns) of a position are in its window.
        activation_scale, center_kernels: as `GroupedContextModel`'s (`center_kernels` True
            for new models).

    The embedding and the hidden biases are in activation units (0..127); their variables hold
    them divided by `activation_scale` (default 32), so that an optimizer step moves them as far, relative
    to their range, as it moves the weights (trained unscaled, they barely move from their
    initialization: 7.49 bits per code on vq-vae-cifar's test codes after one epoch scaled,
    8.22 unscaled).

    Example:
        >>> model = RasterContextModel(num_embeddings=512)
        >>> model.compile(optimizer=keras.optimizers.Adam(2e-3))
        >>> model.fit(codes, epochs=10, batch_size=128)       # int codes (n, h, w)
        >>> network = model.freeze()                           # the exact integer network
    """

    schedule = ie.RASTER

    def __init__(self, num_embeddings=512, channels=128, num_layers=2, rows_above=3, radius=3, embedding_width=None,
                 weight_shift=9, head_shift=8, seed=None, activation_scale=32.0, depths=1, condition_radius=1,
                 center_kernels=False, **kwargs):
        super().__init__(**kwargs)
        validation.check_int("num_embeddings", num_embeddings, 2)
        validation.check_int("channels", channels, 1)
        validation.check_int("num_layers", num_layers, 1)
        validation.check_int("rows_above", rows_above, 0)
        validation.check_int("radius", radius, 0)
        validation.check_int("weight_shift", weight_shift, 0)
        validation.check_int("head_shift", head_shift, ie.LOGIT_FRACTION_BITS)
        validation.check_int("depths", depths, 1)
        validation.check_int("condition_radius", condition_radius, 0)
        self.depths, self.condition_radius = int(depths), int(condition_radius)
        self.taps = ie.causal_window(rows_above, radius)
        if not len(self.taps):
            raise ValueError("the causal window is empty: give rows_above >= 1 or radius >= 1.")
        span = range(-self.condition_radius, self.condition_radius + 1)
        self.below_taps = np.asarray([(dr, dc) for dr in span for dc in span] if self.stacked else [],
                                     np.int64).reshape(-1, 2)
        num_taps = len(self.taps) + len(self.below_taps)
        widest = ie.MAX_FAN_IN // num_taps
        if embedding_width is None:
            embedding_width = min(int(channels), widest)
        validation.check_int("embedding_width", embedding_width, 1)
        if embedding_width > widest or channels > ie.MAX_FAN_IN:
            raise ValueError(f"a window of {num_taps} taps x {embedding_width} entries, or {channels} channels, "
                             f"exceeds the exactness bound of {ie.MAX_FAN_IN} inputs per layer.")
        self.num_embeddings, self.channels, self.num_layers = int(num_embeddings), int(channels), int(num_layers)
        self.rows_above, self.radius, self.embedding_width = int(rows_above), int(radius), int(embedding_width)
        self.weight_shift, self.head_shift, self.seed = int(weight_shift), int(head_shift), seed
        self.activation_scale = self._check_activation_scale(activation_scale)
        self.seed_generator = keras.random.SeedGenerator(seed)
        k, c = self.num_embeddings, self.channels
        self.embedding = self.add_weight(name="embedding", shape=((k + 1) * self.depths * self.slots,
                                                                  self.embedding_width),
                                         initializer=keras.initializers.RandomUniform(0.0, 64.0 / self.activation_scale,
                                                                                      seed=seed))
        he = keras.initializers.HeNormal(seed=seed)
        widths = [num_taps * self.embedding_width] + [c] * self.num_layers
        self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(a, b), initializer=he)
                        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        self.biases = [self.add_weight(name=f"bias_{i}", shape=(c,), initializer="zeros")
                       for i in range(self.num_layers)]
        self.head_kernel = self.add_weight(name="head_kernel", shape=(c, k),
                                           initializer=keras.initializers.RandomNormal(stddev=0.01, seed=seed))
        self.head_bias = self.add_weight(name="head_bias", shape=(k,), initializer="zeros")
        self.center_kernels = bool(center_kernels)
        self._add_kernel_offsets()
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "bits_per_code")}
        self.built = True

    @property
    def stacked(self):
        """Whether the model codes code stacks (inputs: `raster_stack_input` rows `(n, h, w, 2)`)."""
        return self.depths > 1

    @property
    def slots(self):
        return 2 if self.stacked else 1

    def window(self, inputs):
        """Embedding rows `(n, h, w, T + T')` of each position's taps: of code grids `(n, h, w)`
        (K outside the grid), or of stack rows `(n, h, w, 2)` (each slot's row K outside)."""
        inputs = inputs if self.stacked else inputs[..., None]
        k1 = self.num_embeddings + 1
        unknown = inputs[:, :1, :1, :] // k1 * k1 + self.num_embeddings
        top, side = max(self.rows_above, self.condition_radius), max(self.radius, self.condition_radius)
        bottom = self.condition_radius if self.stacked else 0
        shape = tf.shape(inputs)
        padded = tf.pad(inputs - unknown, [[0, 0], [top, bottom], [side, side], [0, 0]]) + unknown
        slot_taps = [(0, self.taps), (1, self.below_taps)] if self.stacked else [(0, self.taps)]
        return tf.stack([padded[:, top + dr : top + dr + shape[1], side + dc : side + dc + shape[2], slot]
                         for slot, taps in slot_taps for dr, dc in taps.tolist()], axis=-1)

    def stack_inputs(self, codes, depth):
        """`integer_entropy.raster_stack_input` in TensorFlow, one depth per example: int32 rows
        `(n, h, w, 2)` of code stacks `(n, h, w, D)`."""
        k = self.num_embeddings
        current = tf.gather(codes, depth, axis=3, batch_dims=1)
        earlier = tf.gather(codes, tf.maximum(depth - 1, 0), axis=3, batch_dims=1)
        before = tf.where((depth > 0)[:, None, None], earlier, k)
        offsets = (depth[:, None] * 2 + tf.range(2)[None]) * (k + 1)
        return tf.stack([current, before], axis=-1) + offsets[:, None, None, :]

    def logits(self, inputs):
        """Integer-valued float32 logits `(n, h, w, K)` (units of 2^-3 nats) of code grids `(n, h, w)`
        (code stacks: `raster_stack_input` rows `(n, h, w, 2)`)."""
        indices = self.window(inputs)
        scale = self.activation_scale
        a = tf.clip_by_value(_round_ste(scale * tf.gather(self.embedding, indices)), 0.0, ie.ACTIVATION_MAX)
        width = (len(self.taps) + len(self.below_taps)) * self.embedding_width
        a = tf.reshape(a, tf.concat([tf.shape(indices)[:3], [width]], 0))
        q = self.weight_shift
        *kernels, head = self.integer_kernels()
        for kernel, bias in zip(kernels, self.biases):
            z = tf.tensordot(a, kernel, 1) + _integer_bias(scale * bias, q)
            a = tf.clip_by_value(_floor_ste(z * 2.0**-q), 0.0, ie.ACTIVATION_MAX)
        h = self.head_shift
        z = tf.tensordot(a, head, 1) + _integer_bias(self.head_bias, h)
        return tf.clip_by_value(_floor_ste(z * 2.0 ** -(h - ie.LOGIT_FRACTION_BITS)), -ie.LOGIT_LIMIT, ie.LOGIT_LIMIT)

    def freeze(self):
        """The `RasterContextNetwork` this model computes."""
        q, scale = self.weight_shift, self.activation_scale
        *kernels, head = self._frozen_kernels()
        return ie.RasterContextNetwork(
            embedding=np.clip(self.activation_integers(self.embedding), 0, ie.ACTIVATION_MAX).astype(np.int64),
            taps=self.taps.copy(),
            kernels=tuple(kernels),
            biases=tuple(_frozen(np.float32(scale) * np.asarray(b, np.float32), q, ie.BIAS_MAX) for b in self.biases),
            shifts=(q,) * self.num_layers,
            head_kernel=head,
            head_bias=_frozen(self.head_bias, self.head_shift, ie.BIAS_MAX),
            head_shift=self.head_shift - ie.LOGIT_FRACTION_BITS,
            table=ie.exp_table(),
            below_taps=self.below_taps.copy(),
            depths=self.depths,
        )

    def per_replica_loss(self, data, training=False, step=None):
        """Nats per code of every position of the batch's grids (code stacks: of one depth per
        stack, drawn uniformly), averaged over the GLOBAL batch."""
        codes = self.batch_codes(data)
        rank = 4 if self.stacked else 3
        if len(codes.shape) != rank or (self.stacked and codes.shape[-1] != self.depths):
            expected = f"code stacks (batch, h, w, {self.depths})" if self.stacked else "code grids (batch, h, w)"
            raise ValueError(f"this context model takes {expected}, got shape {tuple(codes.shape)}.")
        inputs = targets = codes
        if self.stacked:
            seed = tf.cast(self.seed_generator.next(), tf.int32)
            depth = tf.random.stateless_uniform((tf.shape(codes)[0],), seed, 0, self.depths, dtype=tf.int32)
            inputs, targets = self.stack_inputs(codes, depth), tf.gather(codes, depth, axis=3, batch_dims=1)
        logits = self.logits(inputs) / 2.0**ie.LOGIT_FRACTION_BITS
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        return self.loss_and_terms(tf.reduce_mean(nll, axis=[1, 2]))

    def get_config(self):
        return {"num_embeddings": self.num_embeddings, "channels": self.channels, "num_layers": self.num_layers,
                "rows_above": self.rows_above, "radius": self.radius, "embedding_width": self.embedding_width,
                "weight_shift": self.weight_shift, "head_shift": self.head_shift, "seed": self.seed,
                "activation_scale": self.activation_scale, "depths": self.depths,
                "condition_radius": self.condition_radius, "center_kernels": self.center_kernels, "name": self.name}


def _integer_weight(w, shift):
    return tf.clip_by_value(_round_ste(w * 2.0**shift), -ie.WEIGHT_MAX, ie.WEIGHT_MAX)


def _integer_bias(b, shift):
    return tf.clip_by_value(_round_ste(b * 2.0**shift), -ie.BIAS_MAX, ie.BIAS_MAX)


def _frozen(w, shift, limit):
    """The integers `round(w * 2^shift)`, clipped, that the straight-through forward pass uses."""
    return np.clip(np.round(np.asarray(w, np.float64) * 2.0**shift), -limit, limit).astype(np.int64)


def build_context_model(num_embeddings, channels, num_layers, schedule=None, seed=None, name=None, depths=1,
                        condition_depths=0, activation_scale=None, center_kernels=False):
    """The context model of a schedule: a `RasterContextModel` for `"raster"` (code stacks:
    each depth given the one before, `condition_depths` 1), else a `GroupedContextModel` on
    that group schedule (`None`: the default).
    `activation_scale=None` is the class's default (raster 32; grouped 1, the shipped
    grouped models' parametrization).

    Example:
        >>> build_context_model(512, channels=256, num_layers=3, schedule="raster")
    """
    scale = {"center_kernels": bool(center_kernels)}
    if activation_scale is not None:
        scale["activation_scale"] = activation_scale
    if schedule == ie.RASTER:  # code stacks: each depth sees the one before (condition_depths is 1)
        if depths > 1 and condition_depths != 1:
            raise ValueError("a raster context model of code stacks sees exactly the depth before the one it codes: "
                             f"condition_depths must be 1, got {condition_depths}.")
        return RasterContextModel(num_embeddings, channels=channels, num_layers=num_layers, seed=seed, name=name,
                                  depths=depths, **scale)
    return GroupedContextModel(num_embeddings, channels=channels, num_layers=num_layers, seed=seed, name=name,
                               depths=depths, condition_depths=condition_depths,
                               schedule=schedule or ie.DEFAULT_SCHEDULE, **scale)
