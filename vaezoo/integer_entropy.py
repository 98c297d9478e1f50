"""The exact entropy model of `.vqz` (versions 2 and 3): integer context networks, coding order, masses.

A range coder needs bit-identical probabilities at both ends. Float32 logits are not
(different CPUs, kernels and thread counts round differently), and neither are int8 TFLite
models (measured: see "Exact entropy models on stock LiteRT" in the design notes). This
module defines a computation that is exact by construction and is therefore the same on every
runtime, and it imports no TensorFlow (numpy only: it runs on a device with LiteRT alone).

**Groups.** The positions of a block of code grid are split into interleaved groups (a
multi-scale checkerboard, He et al. 2021) by the network's group *schedule*: a small tile of
group numbers repeated over the block from its top-left corner (`SCHEDULES`, `group_map`).
The default, `"groups5"` (every network without a schedule of its own), has 5 groups:
group 0 is every 4th row and column, group 1 the centres between them, group 2 the remaining
even-even positions, group 3 the odd-odd positions, group 4 the rest (half the positions).
`"groups6"` splits group 3 and `"groups8"` groups 2, 3 and 4 each into two halves, the second
of which sees the first. Codes are coded group by group; the probabilities of group g come from one pass of the
context network over the block with the codes of groups < g known and the others set to the
"unknown" index K. Decoding takes one network pass per group, whatever the grid size (the
first sees no codes, so the coder runs it once per block shape, not once per block). The
schedule belongs to the trained network (it learnt those contexts): it is stored with its
integers (`IntegerContextNetwork.schedule`).

**The network** (`IntegerContextNetwork`): an embedding table of K + 1 rows (the last is
"unknown"), then 3x3 convolutions (zero padding), then a 1x1 head with K outputs. Every
weight, bias and activation is an integer: embedding entries and activations lie in
[0, 127], weights in [-127, 127], biases in [-2^22, 2^22]. A layer computes

    a_out = min(max(floor((conv(a_in, W) + b) * 2^-shift), 0), 127)

and the head `logit = min(max(floor((a . W + b) * 2^-shift), -LOGIT_LIMIT), LOGIT_LIMIT)`,
integer logits in units of 2^-LOGIT_FRACTION_BITS nats. Every partial sum of every dot product
is an integer of magnitude below 2^24 (fan-in x 127 x 127 + 2^22 < 2^24 for fan-in <= 780),
so float32 arithmetic computes it exactly in any summation order, with or without FMA: a
float32 TFLite file of this network gives the same integers on XNNPACK, the built-in and the
reference kernels, at any thread count; numpy float64 (`forward`) gives them too.

**Code stacks** (an RQ-VAE's `(h, w, D)` codes, depth by depth). Depth k of a block is
coded after depths 0..k-1, group by group as above, with a network of `slots` = 1 + m
input slots: slot 0 is the depth-k code as in a grid (K where not yet known), slot s >= 1 the
code of depth k - s at the same position (K when k - s < 0). Every (depth, slot) pair has
its own K + 1 embedding rows, so the embedding table has `(K + 1) * D * slots` rows and the
network input at each position is the concatenation of its slots' rows (`stack_input`).
The rows are what make the depth known to the network; the convolutions and the head are
shared by all depths. The exactness bound applies to the first convolution's fan-in
`9 * slots * C_slot` as to every other layer's. A network of one depth and one slot is the
code-grid network above (inputs `(n, h, w)`).

**Raster order** (`RasterContextNetwork`, schedule `"raster"`). Every position of a block is
its own group, in raster order, and its network input is a causal window: the codes at fixed
earlier offsets (`causal_window`), K outside the block. Their embedding rows side by side go
through dense layers with the same integer rule and bound (every fan-in at most `MAX_FAN_IN`),
then the head. Decoding takes one step per position, each batched over the blocks of a pass
and costing one position's dense layers; the encoder computes many positions per call, since
no position reads itself or a later one. Of code stacks, depth k is coded after depths < k,
each position also seeing the depth-(k - 1) codes around it (`below_taps`), through the
(depth, slot) pair's embedding rows (`raster_stack_input`).

**Masses.** From the integer logits of one position, `masses` computes integer symbol
masses that sum to exactly 2^PRECISION (24): `m_k = EXP_TABLE[min(max_logit - logit_k,
len(EXP_TABLE) - 1)]` (a table of integers stored with the model), rescaled to 2^24 with
floor division, every mass at least 1, the remainder added to the first most likely symbol.
These masses divided by 2^24 are what the range coder (constriction's `Categorical(perfect=
False)`, 24-bit) receives: dyadic numbers whose sum is exactly 1, on which its quantization
is exact arithmetic, so the coded model is the integer masses themselves.
"""

import dataclasses
import math

import numpy as np

#: group schedules: a tile of group numbers (0 = coded first) repeated over a block from its
#: top-left corner. Every position of the tile has a group, every group at least one position.
SCHEDULES = {
    # 0: every 4th row and column; 1: the centres between them; 2: the other even-even
    # positions; 3: odd-odd (sees only its diagonal neighbours); 4: the rest (half).
    "groups5": ((0, 4, 2, 4),
                (4, 3, 4, 3),
                (2, 4, 1, 4),
                (4, 3, 4, 3)),
    # groups5 with the odd-odd positions (3) split as a checkerboard: the second half sees the
    # first at distance 2 in its row and column (one pass more).
    "groups6": ((0, 5, 2, 5),
                (5, 3, 5, 4),
                (2, 5, 1, 5),
                (5, 4, 5, 3)),
    # groups5 with 2, 3 and 4 split in halves, the second half seeing the first: 2 -> (0, 2)
    # then (2, 0) (diagonal, distance 2); 3 -> a checkerboard of the odd-odd positions, whose
    # second half sees the first at distance 2 in its row and column; 4 -> even row / odd
    # column, then odd row / even column (the first half as direct diagonal neighbours).
    "groups8": ((0, 6, 2, 6),
                (7, 4, 7, 5),
                (3, 6, 1, 6),
                (7, 5, 7, 4)),
}
#: the schedule of a network that names none (every model and file before schedules existed).
DEFAULT_SCHEDULE = "groups5"
#: the schedule of a `RasterContextNetwork`: every position of a block is its own group, in
#: raster order (one network step per position, each seeing only earlier positions).
RASTER = "raster"
#: groups of the default schedule (network passes to decode a block).
NUM_GROUPS = 1 + max(map(max, SCHEDULES[DEFAULT_SCHEDULE]))
#: fixed-point precision of the range coder's probabilities (bits).
PRECISION = 24
#: integer logits are in units of 2^-LOGIT_FRACTION_BITS nats.
LOGIT_FRACTION_BITS = 3
#: integer logits are clipped to [-LOGIT_LIMIT, LOGIT_LIMIT].
LOGIT_LIMIT = 2**14
#: activations and embedding entries lie in [0, ACTIVATION_MAX]; weights in [-WEIGHT_MAX, WEIGHT_MAX].
ACTIVATION_MAX = 127
WEIGHT_MAX = 127
#: biases lie in [-BIAS_MAX, BIAS_MAX].
BIAS_MAX = 2**22
#: the exactness bound: every partial sum stays below 2^24 in magnitude.
EXACT_BOUND = 2**24
#: the masses of the table start at 2^EXP_TABLE_BITS for the most likely symbol.
EXP_TABLE_BITS = 20


class EntropyModelError(ValueError):
    """An integer context network whose numbers break the exactness contract."""


def schedule_tile(schedule=DEFAULT_SCHEDULE):
    """The tile of a named group schedule (int8 `(p, q)`); `ValueError` naming the known ones."""
    if schedule is None:
        schedule = DEFAULT_SCHEDULE
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"unknown group schedule {schedule!r}; expected one of {sorted(SCHEDULES)}.")
    return np.asarray(SCHEDULES[schedule], np.int8)


def num_groups(schedule=DEFAULT_SCHEDULE, shape=None):
    """How many groups (network passes per block) a schedule has; the raster schedule has one
    per position of a block of `shape` `(h, w)`."""
    if schedule == RASTER:
        if shape is None:
            raise ValueError("the raster schedule has one group per position: give the block shape.")
        return int(shape[0]) * int(shape[1])
    return int(schedule_tile(schedule).max()) + 1


def group_map(height, width, schedule=DEFAULT_SCHEDULE):
    """The group (0 .. `num_groups(schedule)` - 1) of every position of a `(height, width)`
    block, int8: the schedule's tile repeated from the top-left corner.

    Example:
        >>> group_map(4, 4)
        array([[0, 4, 2, 4],
               [4, 3, 4, 3],
               [2, 4, 1, 4],
               [4, 3, 4, 3]], dtype=int8)
        >>> group_map(2, 3, "raster")
        array([[0, 1, 2],
               [3, 4, 5]], dtype=int32)
    """
    if schedule == RASTER:
        return np.arange(height * width, dtype=np.int32).reshape(height, width)
    tile = schedule_tile(schedule)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]))
    return np.ascontiguousarray(np.tile(tile, reps)[:height, :width])


def context_input(codes, groups, group, num_embeddings):
    """The network input for coding `group`: codes of earlier groups, K (unknown) elsewhere."""
    return np.where(groups[None] < group, codes, num_embeddings).astype(np.int32)


def stack_input(codes, groups, group, depth, num_embeddings, slots):
    """The network input `(n, h, w, slots)` for coding `group` of `depth` of code stacks.

    Args:
        codes: int code stacks `(n, h, w, d)`, d > `depth` (depths < `depth` known, and at
            `depth` the groups < `group`; the other entries are not read).
        groups: the block's `group_map`.
        group, depth: what is being coded.
        num_embeddings: K.
        slots: 1 + the number of earlier depths the network sees.

    Returns:
        int32 rows of the embedding table: slot s of depth k reads rows
        `(k * slots + s) * (K + 1) + value`, value the code or K (unknown / no such depth).
    """
    k1 = num_embeddings + 1
    values = [np.where(groups[None] < group, codes[..., depth], num_embeddings)]
    for s in range(1, slots):
        values.append(codes[..., depth - s] if depth - s >= 0 else np.full(codes.shape[:3], num_embeddings))
    offsets = (depth * slots + np.arange(slots)) * k1
    return (np.stack(values, axis=-1) + offsets).astype(np.int32)


def network_input(network, codes, groups, group, depth=None):
    """The input of `network` for coding `group` (of `depth` when `codes` are stacks `(n, h, w, d)`):
    `context_input` for a code-grid network, `stack_input` for a code-stack one."""
    if not network.stacked:
        return context_input(codes if depth is None else codes[..., depth], groups, group, network.num_embeddings)
    return stack_input(codes, groups, group, depth, network.num_embeddings, network.slots)


def exp_table(fraction_bits=LOGIT_FRACTION_BITS, top_bits=EXP_TABLE_BITS):
    """`round(2^top_bits * exp(-d / 2^fraction_bits))` for d = 0, 1, ... while it is >= 1.

    Computed once when a model is frozen and stored with it: the coder reads the stored
    integers, never this function, so a platform's `exp` cannot change a file.
    """
    step = 2.0**-fraction_bits
    length = int(math.floor(top_bits * math.log(2.0) / step)) + 1
    table = np.round(2.0**top_bits * np.exp(-step * np.arange(length))).astype(np.int64)
    return table[table >= 1]


def masses(logits, table):
    """Integer symbol masses `(n, K)` summing to exactly 2^PRECISION per row, each >= 1.

    The definition is integer arithmetic: `raw_k = table[min(max_logit - logit_k, len - 1)]`,
    `m_k = floor(raw_k * (2^24 - K) / sum(raw)) + 1`, the remainder to the first largest logit.
    The floor division is computed in float64, which is exact here (see `_floor_ratio`).

    Args:
        logits: integer logits `(n, K)` (any integer or integer-valued float dtype).
        table: the model's `EXP_TABLE` (int64, decreasing, `table[0]` the largest).
    """
    return masses_float64(logits, table).astype(np.int64)


#: values per chunk of `masses_float64` (a few hundred KB of float64: cache-resident).
MASS_CHUNK_VALUES = 2**15


def masses_float64(logits, table):
    """`masses` held in float64 (every value an exact integer below 2^24): what the coder
    divides by 2^24 without another integer pass over `(n, K)` values."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, K >= 2), got {logits.shape}.")
    logits = logits.astype(np.int32, copy=False)  # |logit| <= LOGIT_LIMIT
    table = np.asarray(table, np.float64)  # integers <= 2^EXP_TABLE_BITS: exact
    n, k = logits.shape
    free = 2**PRECISION - k  # every symbol gets 1 more
    top = np.argmax(logits, axis=1)
    scaled = np.empty((n, k), np.float64)
    # Rows in cache-sized chunks, every step in place: the same float64 operations as on the
    # whole array (the same bits), without a fresh (n, K) array per step (page faults cost
    # more than the arithmetic at n * K in the millions, as a file of 1,000 images has).
    rows = max(1, MASS_CHUNK_VALUES // k)
    for start in range(0, n, rows):
        gap = logits[start : start + rows]
        gap = gap.max(axis=1, keepdims=True) - gap
        np.minimum(gap, len(table) - 1, out=gap)
        raw = scaled[start : start + rows]
        np.take(table, gap, out=raw, mode="clip")  # gap is in range: "clip" only skips a buffered copy
        _floor_ratio(raw, free, raw.sum(axis=1, keepdims=True), out=raw)
        raw += 1
        raw[np.arange(len(raw)), top[start : start + rows]] += 2**PRECISION - raw.sum(axis=1)  # exact integer sums
    return scaled


def _floor_ratio(raw, free, total, out=None):
    """`floor(raw * free / total)` of non-negative integers held in float64, exactly (into
    `out` when given, which may be `raw`).

    `raw * free < 2^53` is exact; the quotient q < free < 2^24 is correctly rounded with an
    error of at most half an ulp (<= 2^-30), while a non-integer q lies at least 1 / total from
    the next integer: floor(fl(q)) == floor(q) whenever total <= 2^29. Larger totals (K above
    512 with a flat row) take numpy's int64 floor division, which is the definition itself.
    """
    if raw.size and (total.max() > 2**29 or raw.max() * free >= 2**53):
        exact = (raw.astype(np.int64) * free) // total.astype(np.int64)
        if out is None:
            return exact.astype(np.float64)
        out[...] = exact
        return out
    out = np.multiply(raw, free, out=out)
    np.divide(out, total, out=out)
    return np.floor(out, out=out)


def code_bits(network, grids, block=16, per_depth=False):
    """Ideal coded size in bits of each code grid or stack: the sum of -log2(mass / 2^24) of
    its codes, block by block (`block` x `block` codes), depth by depth, group by group: what
    a `.vqz` payload costs before the range coder's few bytes of flushing per stream.

    Args:
        network: an `IntegerContextNetwork`, `RasterContextNetwork` or `LiteRTContextNetwork`.
        grids: int code grids `(h, w)` or code stacks `(h, w, d)` (a list, or an array).
        per_depth: return the bits of each depth separately.

    Returns:
        float64 `(n,)`, or `(n, d)` with `per_depth` (d = 1 for grids).
    """
    stacks = [np.asarray(grid) for grid in grids]
    stacks = [grid if grid.ndim == 3 else grid[..., None] for grid in stacks]
    out = np.zeros((len(stacks), stacks[0].shape[-1] if stacks else 1))
    by_shape = {}
    for i, stack in enumerate(stacks):
        by_shape.setdefault(stack.shape, []).append(i)
    for shape, indices in by_shape.items():  # grids of one shape run as batches of blocks
        for start in range(0, len(indices), 256):
            chunk = indices[start : start + 256]
            batch = np.stack([stacks[i] for i in chunk])
            for r in range(0, shape[0], block):
                for c in range(0, shape[1], block):
                    codes = batch[:, r : r + block, c : c + block]
                    groups = group_map(*codes.shape[1:3], network.schedule)
                    for depth in range(shape[-1]):
                        # a raster network reads only earlier positions: every step at once
                        steps = ([(None, groups >= 0)] if network.schedule == RASTER
                                 else [(g, groups == g) for g in range(int(groups.max()) + 1)])
                        for g, where in steps:
                            if where.any():
                                inputs = (raster_input(network, codes, depth) if g is None
                                          else network_input(network, codes, groups, g, depth))
                                logits = network.logits_at(inputs, np.flatnonzero(where))
                                m = masses(logits.reshape(-1, logits.shape[-1]), network.table)
                                symbols = codes[..., depth][:, where].reshape(-1)
                                bits = PRECISION - np.log2(m[np.arange(len(m)), symbols])
                                out[chunk, depth] += bits.reshape(len(chunk), -1).sum(axis=1)
    return out if per_depth else out.sum(axis=1)


@dataclasses.dataclass(frozen=True)
class IntegerContextNetwork:
    """A frozen context network: integer weights and shifts (see the module docstring).

    Args:
        embedding: int `(K + 1, C)` in [0, 127]; row K is "unknown". For code stacks of D
            depths: `((K + 1) * D * slots, C)`, the rows of every (depth, slot) pair.
        kernels: list of int `(3, 3, C_in, C_out)` in [-127, 127].
        biases: list of int `(C_out,)` in [-2^22, 2^22].
        shifts: list of ints, one per conv.
        head_kernel: int `(C, K)`; head_bias int `(K,)`; head_shift int.
        table: int64 exp table (see `exp_table`).
        slots: input slots per position (1 for code grids; see "Code stacks" in the module
            docstring); the first convolution takes `slots * C` channels.
        schedule: the name of its group schedule (`SCHEDULES`; the network was trained on it).

    Example:
        >>> network = model.freeze()          # a trained GroupedContextModel
        >>> probs = masses(network.logits(codes_in)[:, 0, 0], network.table)
    """

    embedding: np.ndarray
    kernels: tuple
    biases: tuple
    shifts: tuple
    head_kernel: np.ndarray
    head_bias: np.ndarray
    head_shift: int
    table: np.ndarray
    slots: int = 1
    schedule: str = DEFAULT_SCHEDULE

    def __post_init__(self):
        self.check()

    @property
    def num_groups(self):
        """Groups of its schedule: network passes per block."""
        return num_groups(self.schedule)

    @property
    def num_embeddings(self):
        return int(self.head_kernel.shape[1])

    @property
    def depths(self):
        """How many code depths the network codes (1 for code grids)."""
        return int(self.embedding.shape[0]) // ((self.num_embeddings + 1) * int(self.slots))

    @property
    def stacked(self):
        """Whether the network codes code stacks (inputs `(n, h, w, slots)`), not grids."""
        return self.depths > 1 or self.slots > 1

    def check(self):
        """Raise `EntropyModelError` unless every number keeps the exactness contract."""
        try:
            schedule_tile(self.schedule)
        except ValueError as error:
            raise EntropyModelError(str(error)) from None
        _bounded("embedding", self.embedding, 0, ACTIVATION_MAX)
        if (int(self.slots) < 1 or self.head_kernel.ndim != 2 or self.embedding.ndim != 2
                or self.embedding.shape[0] != (self.num_embeddings + 1) * self.depths * int(self.slots)
                or self.depths < 1):
            raise EntropyModelError(f"the embedding has {self.embedding.shape[0]} rows; with K = "
                                    f"{self.head_kernel.shape[-1]} and {self.slots} slot(s) it must have (K + 1) x "
                                    "depths x slots.")
        layers = list(zip(self.kernels, self.biases, self.shifts)) + [(self.head_kernel[None, None], self.head_bias,
                                                                      self.head_shift)]
        channels = self.embedding.shape[1] * int(self.slots)
        for index, (kernel, bias, shift) in enumerate(layers):
            _bounded(f"kernel {index}", kernel, -WEIGHT_MAX, WEIGHT_MAX)
            _bounded(f"bias {index}", bias, -BIAS_MAX, BIAS_MAX)
            if kernel.ndim != 4 or kernel.shape[2] != channels or bias.shape != (kernel.shape[3],):
                raise EntropyModelError(f"layer {index}: kernel {kernel.shape} and bias {bias.shape} do not chain "
                                        f"from {channels} channels.")
            fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
            if fan_in * WEIGHT_MAX * ACTIVATION_MAX + BIAS_MAX >= EXACT_BOUND:
                raise EntropyModelError(f"layer {index}: fan-in {fan_in} can reach 2^24 (inexact in float32).")
            if not 0 <= int(shift) <= 30:
                raise EntropyModelError(f"layer {index}: shift must be in [0, 30], got {shift}.")
            channels = kernel.shape[3]
        _check_table(self.table, self.num_embeddings)

    def features(self, inputs):
        """Last hidden activations `(n, h, w, C)` for input indices `(n, h, w)` in [0, K]
        (code stacks: embedding rows `(n, h, w, slots)`, see `stack_input`): the reference
        computation in float64 (exact: every value is an integer < 2^24)."""
        inputs = np.asarray(inputs)
        a = self.embedding[inputs].astype(np.float64)
        if inputs.ndim == 4:
            a = a.reshape(*inputs.shape[:3], -1)
        for kernel, bias, shift in zip(self.kernels, self.biases, self.shifts):
            a = _conv3x3(a, kernel.astype(np.float64)) + bias
            a = np.clip(np.floor(a * 2.0**-int(shift)), 0, ACTIVATION_MAX)
        return a

    def logits(self, inputs):
        """Integer logits `(n, h, w, K)` (int64) for input indices `(n, h, w)` in [0, K]."""
        return self.head(self.features(inputs))

    def logits_at(self, inputs, positions):
        """Integer logits `(n, p, K)` at flat `positions` (indices into h * w) only: what the
        coder needs for one group."""
        features = self.features(inputs)
        return self.head(features.reshape(len(features), -1, features.shape[-1])[:, np.asarray(positions)])

    def head(self, features):
        """Integer logits from last hidden activations (any leading shape), int64.

        Computed in float32, which is exact under the contract (every partial sum is an
        integer below 2^24)."""
        return _head(features, self.head_kernel, self.head_bias, self.head_shift)

    def to_arrays(self):
        """A flat dict of arrays (for `np.savez`): the whole network. The schedule is a string
        array `schedule`, left out for the default (so older readers and files are unchanged)."""
        out = {**_layer_arrays(self), "slots": np.asarray(self.slots)}
        if self.schedule != DEFAULT_SCHEDULE:
            out["schedule"] = np.asarray(self.schedule)
        return out

    @classmethod
    def from_arrays(cls, arrays):
        """The inverse of `to_arrays` (checks the contract; `EntropyModelError` when broken)."""
        return cls(**_layer_fields(arrays),
                   slots=int(np.asarray(arrays["slots"])) if "slots" in arrays else 1,
                   schedule=str(np.asarray(arrays["schedule"])) if "schedule" in arrays else DEFAULT_SCHEDULE)


#: the largest fan-in of a raster network's dense layers that keeps float32 exact
#: (fan-in x 127 x 127 + 2^22 < 2^24).
MAX_FAN_IN = (EXACT_BOUND - BIAS_MAX - 1) // (WEIGHT_MAX * ACTIVATION_MAX)


def causal_window(rows_above=3, radius=3):
    """The taps `(dr, dc)` of a causal window, int `(T, 2)`: the `rows_above` rows above a
    position, `radius` columns either side, then the `radius` positions to its left; every
    tap is earlier in raster order.

    Example:
        >>> causal_window(1, 1).tolist()
        [[-1, -1], [-1, 0], [-1, 1], [0, -1]]
    """
    taps = [(dr, dc) for dr in range(-int(rows_above), 0) for dc in range(-int(radius), int(radius) + 1)]
    taps += [(0, dc) for dc in range(-int(radius), 0)]
    return np.asarray(taps, np.int64).reshape(-1, 2)


@dataclasses.dataclass(frozen=True)
class RasterContextNetwork:
    """A frozen raster-order context network: each code given a causal window of earlier codes.

    Positions of a block are coded one at a time in raster order (the `"raster"` schedule:
    a block of h x w codes takes h * w steps, each batched over every block of a pass). The
    input of a position is the codes at its `taps` (K, "unknown", where a tap falls outside
    the block); their embedding rows, side by side, go through dense layers and the head:

        a_0 = concat(E[code at p + tap] for tap in taps)
        a_l = min(max(floor((a_(l-1) . W_l + b_l) * 2^-shift_l), 0), 127)
        logit = min(max(floor((a_L . W + b) * 2^-head_shift), -LOGIT_LIMIT), LOGIT_LIMIT)

    The same contract as `IntegerContextNetwork` (integers in the same ranges, every fan-in
    at most `MAX_FAN_IN`), so float32 computes every value exactly on any runtime. A position
    never reads itself or a later one, so the logits of every position computed at once from
    the whole grid equal the decoder's step-by-step logits (what the encoder uses).

    **Code stacks** (`depths` D > 1, an RQ-VAE's): depth k is coded after depths < k, its
    positions in raster order as above. The input is `raster_stack_input`'s embedding rows
    `(n, h, w, 2)`: slot 0 the depth-k codes (read at the causal `taps`), slot 1 the codes of
    depth k - 1 (read at `below_taps`, any offsets, since that depth is known; the "unknown"
    row at depth 0). Each (depth, slot) pair has its own K + 1 rows, as in `stack_input`, and
    a tap outside the block reads its pair's row K. The dense layers and the head are shared
    by every depth.

    Args:
        embedding: int `(K + 1, E)` in [0, 127]; row K is "unknown" (outside the block); code
            stacks: `((K + 1) * D * 2, E)`, the rows of (depth, slot) pairs in turn.
        taps: int `(T, 2)` offsets `(dr, dc)`, each earlier in raster order (`causal_window`).
        kernels: list of int `(fan_in, C)` in [-127, 127]; the first takes `(T + T') * E` inputs.
        biases, shifts: as `IntegerContextNetwork`'s, one per dense layer.
        head_kernel, head_bias, head_shift, table: as `IntegerContextNetwork`'s.
        below_taps: int `(T', 2)` offsets into the depth before (code stacks only; default none).
        depths: D, the depths of the code stacks (1: code grids).

    Example:
        >>> network = model.freeze()                  # a trained RasterContextModel
        >>> logits = network.logits_at(codes, [5])    # (n, 1, K): position 5 of every block
        >>> rows = raster_stack_input(stacks, 2, network.num_embeddings)   # depth index 2 of stacks
        >>> logits = stacked_network.logits_at(rows, [5])
    """

    embedding: np.ndarray
    taps: np.ndarray
    kernels: tuple
    biases: tuple
    shifts: tuple
    head_kernel: np.ndarray
    head_bias: np.ndarray
    head_shift: int
    table: np.ndarray
    below_taps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int64))
    depths: int = 1

    schedule = RASTER

    def __post_init__(self):
        self.check()

    @property
    def num_embeddings(self):
        return int(self.head_kernel.shape[1])

    @property
    def stacked(self):
        """Whether the network codes code stacks (inputs: `raster_stack_input` rows `(n, h, w, 2)`)."""
        return self.depths > 1

    @property
    def slots(self):
        """Input slots per position: 2 for code stacks (the depth coded, the depth before), else 1."""
        return 2 if self.stacked else 1

    def check(self):
        """Raise `EntropyModelError` unless every number keeps the exactness contract."""
        taps = np.asarray(self.taps)
        if (taps.ndim != 2 or taps.shape[1] != 2 or len(taps) == 0 or taps.dtype.kind not in "iu"
                or np.any((taps[:, 0] > 0) | ((taps[:, 0] == 0) & (taps[:, 1] >= 0)))):
            raise EntropyModelError("taps must be integer offsets (dr, dc) of earlier positions in raster order "
                                    f"(dr < 0, or dr == 0 and dc < 0), shape (T, 2); got {taps.tolist()}.")
        below = np.asarray(self.below_taps)
        if isinstance(self.depths, bool) or not isinstance(self.depths, (int, np.integer)) or self.depths < 1:
            raise EntropyModelError(f"depths must be a positive integer, got {self.depths!r}.")
        if below.ndim != 2 or below.shape[1] != 2 or below.dtype.kind not in "iu" or \
                (self.depths == 1) != (len(below) == 0):
            raise EntropyModelError("below_taps must be integer offsets (dr, dc) of shape (T', 2), given exactly "
                                    f"when the network codes code stacks (depths > 1); got {below.tolist()} with "
                                    f"depths {self.depths}.")
        _bounded("embedding", self.embedding, 0, ACTIVATION_MAX)
        rows = (self.num_embeddings + 1) * self.depths * self.slots
        if self.embedding.ndim != 2 or self.head_kernel.ndim != 2 or self.embedding.shape[0] != rows:
            raise EntropyModelError(f"the embedding has shape {self.embedding.shape}; with K = "
                                    f"{self.head_kernel.shape[-1]}, {self.depths} depth(s) and {self.slots} slot(s) "
                                    f"it must have {rows} rows.")
        if not len(self.kernels) == len(self.biases) == len(self.shifts):
            raise EntropyModelError("kernels, biases and shifts must have one entry per layer.")
        fan_in = (len(taps) + len(below)) * self.embedding.shape[1]
        layers = list(zip(self.kernels, self.biases, self.shifts)) + [(self.head_kernel, self.head_bias,
                                                                      self.head_shift)]
        for index, (kernel, bias, shift) in enumerate(layers):
            _bounded(f"kernel {index}", kernel, -WEIGHT_MAX, WEIGHT_MAX)
            _bounded(f"bias {index}", bias, -BIAS_MAX, BIAS_MAX)
            if kernel.ndim != 2 or kernel.shape[0] != fan_in or bias.shape != (kernel.shape[1],):
                raise EntropyModelError(f"layer {index}: kernel {kernel.shape} and bias {bias.shape} do not chain "
                                        f"from {fan_in} inputs.")
            if fan_in > MAX_FAN_IN:
                raise EntropyModelError(f"layer {index}: fan-in {fan_in} can reach 2^24 (inexact in float32); "
                                        f"at most {MAX_FAN_IN}.")
            if not 0 <= int(shift) <= 30:
                raise EntropyModelError(f"layer {index}: shift must be in [0, 30], got {shift}.")
            fan_in = kernel.shape[1]
        _check_table(self.table, self.num_embeddings)

    @property
    def padding(self):
        """`(rows above, rows below, columns either side)` a block needs for every tap to fall in it."""
        taps = np.concatenate([np.asarray(self.taps), np.asarray(self.below_taps)]).reshape(-1, 2)
        return int(max(0, -taps[:, 0].min())), int(max(0, taps[:, 0].max())), int(np.abs(taps[:, 1]).max())

    def slot_taps(self):
        """`(slot, taps)` of each input slot: the causal taps, then (code stacks) the depth before's."""
        return [(0, np.asarray(self.taps))] + ([(1, np.asarray(self.below_taps))] if self.stacked else [])

    def window(self, inputs, positions):
        """The embedding rows `(n, p, T + T')` at flat `positions` of code grids `(n, h, w)` (K
        outside the grid), or of `raster_stack_input` rows `(n, h, w, 2)` (each slot's row K
        outside the grid)."""
        inputs = np.asarray(inputs, np.int64)
        if inputs.ndim == 3:
            inputs = inputs[..., None]
        n, h, w, _ = inputs.shape
        k1 = self.num_embeddings + 1
        unknown = inputs[:, :1, :1, :] // k1 * k1 + self.num_embeddings  # each slot's row K
        top, bottom, side = self.padding
        padded = np.pad(inputs - unknown, [(0, 0), (top, bottom), (side, side), (0, 0)]) + unknown
        rows, cols = np.divmod(np.asarray(positions, np.int64), w)
        windows = []
        for slot, taps in self.slot_taps():
            flat = (rows[:, None] + top + taps[None, :, 0]) * (w + 2 * side) + cols[:, None] + side + taps[None, :, 1]
            windows.append(padded[..., slot].reshape(n, -1)[:, flat])
        return np.concatenate(windows, axis=-1)

    def logits_at(self, inputs, positions):
        """Integer logits `(n, p, K)` at flat `positions` of code grids `(n, h, w)` or stack rows
        `(n, h, w, 2)` (codes at and after each position, at the depth coded, are not read)."""
        windows = self.window(inputs, positions)
        a = self.embedding.astype(np.float32)[windows.reshape(-1)].reshape(windows.shape[0] * windows.shape[1], -1)
        for kernel, bias, shift in zip(self.kernels, self.biases, self.shifts):
            z = a @ kernel.astype(np.float32) + bias.astype(np.float32)  # exact: integers below 2^24
            a = np.clip(np.floor(z * np.float32(2.0**-int(shift))), 0, ACTIVATION_MAX)
        return _head(a, self.head_kernel, self.head_bias, self.head_shift).reshape(*windows.shape[:2], -1)

    def logits(self, inputs):
        """Integer logits `(n, h, w, K)` of every position of code grids `(n, h, w)` (or stack rows)."""
        n, h, w = np.asarray(inputs).shape[:3]
        return self.logits_at(inputs, np.arange(h * w)).reshape(n, h, w, -1)

    def to_arrays(self):
        """A flat dict of arrays (for `np.savez`); `schedule` is `"raster"`; code stacks add
        `below_taps` and `depths`."""
        out = {**_layer_arrays(self), "taps": np.asarray(self.taps), "schedule": np.asarray(RASTER)}
        if self.stacked:
            out.update(below_taps=np.asarray(self.below_taps), depths=np.asarray(self.depths))
        return out

    @classmethod
    def from_arrays(cls, arrays):
        """The inverse of `to_arrays` (checks the contract; `EntropyModelError` when broken)."""
        if "taps" not in arrays:
            raise EntropyModelError("the entropy model misses the array 'taps'.")
        stacked = {}
        if "depths" in arrays or "below_taps" in arrays:
            if not ("depths" in arrays and "below_taps" in arrays):
                raise EntropyModelError("a code-stack raster network needs both 'depths' and 'below_taps'.")
            stacked = {"depths": int(np.asarray(arrays["depths"])),
                       "below_taps": np.asarray(arrays["below_taps"]).reshape(-1, 2)}
        return cls(**_layer_fields(arrays), taps=np.asarray(arrays["taps"]), **stacked)


def raster_input(network, codes, depth=None):
    """The input of a `RasterContextNetwork` for coding code grids `(n, h, w)` (`depth` None),
    or depth index `depth` of grids or stacks `(n, h, w, d)`: the grids of that depth for a
    code-grid network, `raster_stack_input` for a code-stack one."""
    codes = np.asarray(codes)
    if network.stacked:
        return raster_stack_input(codes, depth, network.num_embeddings)
    return codes if depth is None else codes[..., depth]


def raster_stack_input(codes, depth, num_embeddings):
    """The input `(n, h, w, 2)` of a code-stack `RasterContextNetwork` for coding depth index
    `depth` of code stacks `(n, h, w, d)`: `stack_input` with every depth-`depth` code in slot
    0 (the causal taps never read a position not yet coded) and depth - 1's in slot 1."""
    codes = np.asarray(codes)
    everywhere = np.zeros(codes.shape[1:3], np.int32)
    return stack_input(codes, everywhere, 1, depth, num_embeddings, slots=2)


def network_from_arrays(arrays):
    """The frozen context network of a `to_arrays` dict (a `context.npz`): a
    `RasterContextNetwork` when its schedule is `"raster"`, else an `IntegerContextNetwork`."""
    schedule = str(np.asarray(arrays["schedule"])) if "schedule" in arrays else DEFAULT_SCHEDULE
    cls = RasterContextNetwork if schedule == RASTER else IntegerContextNetwork
    return cls.from_arrays(arrays)


#: LiteRT kernel sets a `LiteRTContextNetwork` can run on (all give the same integers).
RESOLVERS = ("default", "builtin", "reference")


class LiteRTContextNetwork:
    """`IntegerContextNetwork.logits_at` computed by LiteRT from a float32 `.tflite` file.

    The file is what `vaezoo.export.tflite.convert_context_network` writes (the network and
    its head); the masses and the table come from the frozen network's arrays (`network`).

    Args:
        model_content: bytes of the `.tflite` file.
        network: the `IntegerContextNetwork` (for K and its table).
        resolver: `"default"` (XNNPACK), `"builtin"` (optimized built-in kernels without
            delegates) or `"reference"` (LiteRT's portable reference kernels).
        num_threads: interpreter threads (`None`: LiteRT's default).

    Example:
        >>> runtime = LiteRTContextNetwork(open("context.tflite", "rb").read(), network)
        >>> np.array_equal(runtime.logits_at(inputs, positions), network.logits_at(inputs, positions))
        True
    """

    def __init__(self, model_content, network, resolver="default", num_threads=None):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if resolver not in RESOLVERS:
            raise ValueError(f"resolver must be one of {RESOLVERS}, got {resolver!r}.")
        kind = {"default": OpResolverType.AUTO, "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                "reference": OpResolverType.BUILTIN_REF}[resolver]
        self.network = network
        self.num_embeddings = network.num_embeddings
        self.table = network.table
        self.stacked, self.slots = network.stacked, network.slots
        self.schedule = network.schedule
        self.interpreter = Interpreter(model_content=bytes(model_content), num_threads=num_threads,
                                       experimental_op_resolver_type=kind)
        self._runner = self.interpreter.get_signature_runner("context")
        if "positions" not in self._runner.get_input_details():
            raise EntropyModelError("this context.tflite predates the head in LiteRT (no `positions` input); "
                                    "export the model again (vaezoo export MODEL --format tflite).")

    def logits_at(self, inputs, positions):
        logits = self._runner(codes=np.ascontiguousarray(inputs, np.int32),
                              positions=np.ascontiguousarray(positions, np.int32))["logits"]
        return logits.astype(np.int32)  # integer-valued, |logit| <= LOGIT_LIMIT

    def logits(self, inputs):
        inputs = np.asarray(inputs)
        n, h, w = inputs.shape[:3]
        return self.logits_at(inputs, np.arange(h * w)).reshape(n, h, w, -1)


def _layer_arrays(network):
    """The arrays both kinds of network store alike: embedding, layers, head, exp table."""
    out = {"embedding": network.embedding, "head_kernel": network.head_kernel, "head_bias": network.head_bias,
           "head_shift": network.head_shift, "table": network.table, "shifts": np.asarray(network.shifts, np.int64)}
    for index, (kernel, bias) in enumerate(zip(network.kernels, network.biases)):
        out[f"kernel_{index}"], out[f"bias_{index}"] = kernel, bias
    return {name: np.asarray(value) for name, value in out.items()}


def _layer_fields(arrays):
    """The inverse of `_layer_arrays`: constructor fields (`EntropyModelError` for a missing array)."""
    try:
        shifts = [int(s) for s in np.asarray(arrays["shifts"]).reshape(-1)]
        return {"embedding": np.asarray(arrays["embedding"]),
                "kernels": tuple(np.asarray(arrays[f"kernel_{i}"]) for i in range(len(shifts))),
                "biases": tuple(np.asarray(arrays[f"bias_{i}"]) for i in range(len(shifts))),
                "shifts": tuple(shifts),
                "head_kernel": np.asarray(arrays["head_kernel"]),
                "head_bias": np.asarray(arrays["head_bias"]),
                "head_shift": int(np.asarray(arrays["head_shift"])),
                "table": np.asarray(arrays["table"])}
    except KeyError as error:
        raise EntropyModelError(f"the entropy model misses the array {error.args[0]!r}.") from None


def _bounded(name, values, lo, hi):
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise EntropyModelError(f"{name} must be integers, got dtype {values.dtype}.")
    if values.size and (values.min() < lo or values.max() > hi):
        raise EntropyModelError(f"{name} must lie in [{lo}, {hi}], got [{values.min()}, {values.max()}].")


def _check_table(table, num_embeddings):
    table = np.asarray(table)
    if table.dtype.kind not in "iu" or len(table) < 2 or table.min() < 1 or np.any(np.diff(table) > 0):
        raise EntropyModelError("the exp table must be positive, non-increasing integers.")
    if int(table[0]) * num_embeddings >= 2**62:
        raise EntropyModelError("the exp table is too large for 64-bit mass sums.")


def _head(features, kernel, bias, shift):
    """Integer logits `floor((a . W + b) * 2^-shift)`, clipped, in float32 (exact under the contract)."""
    z = np.asarray(features, np.float32) @ kernel.astype(np.float32) + bias.astype(np.float32)
    z *= np.float32(2.0**-int(shift))
    return np.clip(np.floor(z), -LOGIT_LIMIT, LOGIT_LIMIT).astype(np.int64)


def _conv3x3(a, kernel):
    """'same' 3x3 convolution (zero padding) of `(n, h, w, c)` by `(3, 3, c, d)`, float64."""
    n, h, w, c = a.shape
    padded = np.zeros((n, h + 2, w + 2, c), a.dtype)
    padded[:, 1:-1, 1:-1] = a
    out = np.zeros((n, h, w, kernel.shape[3]), a.dtype)
    for di in range(3):
        for dj in range(3):
            out += padded[:, di : di + h, dj : dj + w] @ kernel[di, dj]
    return out


__all__ = ["NUM_GROUPS", "SCHEDULES", "DEFAULT_SCHEDULE", "RASTER", "MAX_FAN_IN", "causal_window",
           "RasterContextNetwork", "raster_input", "raster_stack_input", "network_from_arrays", "schedule_tile", "num_groups", "PRECISION",
           "LOGIT_FRACTION_BITS", "RESOLVERS", "EntropyModelError", "IntegerContextNetwork", "LiteRTContextNetwork",
           "group_map", "context_input", "stack_input", "network_input", "exp_table", "masses", "masses_float64",
           "code_bits"]
