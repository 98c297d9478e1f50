"""The raster-order exact context model: causal window, integers to the bit on every runtime, coding."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vaezoo import integer_entropy as ie
from vaezoo import vqz
from vaezoo.export.tflite import convert_context_network
from vaezoo.models.context_model import RasterContextModel, build_context_model
from helpers import check_litert_gives_the_reference_integers, check_snapping_keeps_the_network_and_float16_storage


#: the depth-before taps of a code-stack network in these tests: its 3x3 neighbourhood
BELOW_TAPS = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])


def extreme_raster_network(seed=0, k=32, rows_above=3, radius=3, width=32, channels=64, layers=2, depths=1):
    """Random integers at the contract's limits: the first layer's fan-in is `MAX_FAN_IN`-sized
    (`depths` > 1: a code-stack network whose taps include the depth before's 3x3)."""
    rng = np.random.default_rng(seed)
    taps = ie.causal_window(rows_above, radius)
    below = BELOW_TAPS if depths > 1 else np.zeros((0, 2), np.int64)
    widths = [(len(taps) + len(below)) * width] + [channels] * layers
    return ie.RasterContextNetwork(
        below_taps=below, depths=depths,
        embedding=rng.integers(0, 128, ((k + 1) * depths * (2 if depths > 1 else 1), width)),
        taps=taps,
        kernels=tuple(rng.integers(-127, 128, (a, b)) for a, b in zip(widths[:-1], widths[1:])),
        biases=tuple(rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (channels,)) for _ in range(layers)),
        shifts=(14,) * layers,
        head_kernel=rng.integers(-127, 128, (channels, k)),
        head_bias=rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (k,)),
        head_shift=9,
        table=ie.exp_table(),
    )


def int64_logits(network, codes, depth=None):
    """A second implementation in int64 arithmetic: explicit loops over the taps, integer
    matrix products and floor division by powers of two. Code grids `(n, h, w)`, or depth index
    `depth` of code stacks `(n, h, w, d)`: the embedding row of a code is spelled out from its
    (depth, slot) pair, K where a tap falls outside the grid or below depth 0."""
    k = network.num_embeddings
    if depth is None:
        codes, depth = codes[..., None], 0
    n, h, w = codes.shape[:3]
    out = np.zeros((n, h, w, k), np.int64)

    def row(slot, at_depth, r, c):
        value = codes[:, r, c, at_depth] if 0 <= r < h and 0 <= c < w and at_depth >= 0 else np.full(n, k)
        return network.embedding[(depth * network.slots + slot) * (k + 1) + value]

    for i in range(h):
        for j in range(w):
            rows = [row(0, depth, i + dr, j + dc) for dr, dc in network.taps.tolist()]
            rows += [row(1, depth - 1, i + dr, j + dc) for dr, dc in np.asarray(network.below_taps).tolist()]
            a = np.concatenate(rows, axis=1).astype(np.int64)
            for kernel, bias, shift in zip(network.kernels, network.biases, network.shifts):
                a = np.clip((a @ kernel.astype(np.int64) + bias) >> int(shift), 0, ie.ACTIVATION_MAX)
            z = (a @ network.head_kernel.astype(np.int64) + network.head_bias) >> int(network.head_shift)
            out[:, i, j] = np.clip(z, -ie.LOGIT_LIMIT, ie.LOGIT_LIMIT)
    return out


def test_the_causal_window_reads_only_earlier_positions():
    taps = ie.causal_window(2, 1)
    assert taps.tolist() == [[-2, -1], [-2, 0], [-2, 1], [-1, -1], [-1, 0], [-1, 1], [0, -1]]
    np.testing.assert_array_equal(ie.group_map(3, 4, ie.RASTER), np.arange(12).reshape(3, 4))
    assert ie.num_groups(ie.RASTER, (3, 4)) == 12
    network = extreme_raster_network(k=16, width=16, channels=16)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (4, 7, 9)).astype(np.int32)
    reference = network.logits(codes).reshape(4, 63, -1)
    for position in (0, 10, 40, 62):
        later = codes.reshape(4, -1).copy()
        later[:, position:] = rng.integers(0, 16, later[:, position:].shape)  # the position itself and after
        np.testing.assert_array_equal(network.logits(later.reshape(codes.shape)).reshape(4, 63, -1)[:, : position + 1],
                                      reference[:, : position + 1])
    earlier = codes.copy()
    earlier[:, 0, 0] = (codes[:, 0, 0] + 1) % 16  # negative control: an earlier code does change later logits
    assert not np.array_equal(network.logits(earlier)[:, 0, 1], network.logits(codes)[:, 0, 1])


@pytest.mark.parametrize("rows_above, radius", [(3, 3), (1, 2)])
def test_the_reference_forward_equals_int64_arithmetic_at_the_contract_limits(rows_above, radius):
    network = extreme_raster_network(rows_above=rows_above, radius=radius, width=ie.MAX_FAN_IN // 24)
    codes = np.random.default_rng(1).integers(0, 33, (64, 6, 7))
    expected = int64_logits(network, codes)
    np.testing.assert_array_equal(network.logits(codes), expected)
    assert 0.05 < np.mean((np.abs(expected) > 0) & (np.abs(expected) < ie.LOGIT_LIMIT))  # not all clipped


@pytest.mark.slow
def test_litert_kernel_sets_and_thread_counts_give_the_same_integers():
    network = extreme_raster_network(layers=3)
    codes, reference = check_litert_gives_the_reference_integers(network)
    np.testing.assert_array_equal(reference[:50], int64_logits(network, codes[:50]))


def test_raster_coding_round_trips_and_writes_the_same_bytes_on_numpy_and_litert():
    """Position by position in raster order, blocks of a stream interleaved at each position:
    what a plain loop over the positions writes, on numpy and LiteRT; both decode it."""
    import constriction

    # a freshly initialized model: masses that differ from position to position (the extreme
    # network's saturate to one symbol everywhere, which would hide a position mix-up)
    network = ie.network_from_arrays(RasterContextModel(16, channels=32, num_layers=2, seed=0).freeze().to_arrays())
    assert isinstance(network, ie.RasterContextNetwork) and network.schedule == ie.RASTER
    rng = np.random.default_rng(12)
    shapes = [(8, 8)] * 20 + [(5, 7), (20, 37), (1, 1), (16, 16)]
    grids = [rng.integers(0, 16, shape).astype(np.int32) for shape in shapes]
    masses = ie.masses(network.logits(np.stack(grids[:20])).reshape(-1, 16), network.table)
    assert len(np.unique(masses, axis=0)) > 0.9 * len(masses)
    got = vqz.encode_grids(grids, network)
    family = constriction.stream.model.Categorical(perfect=False)
    plain = []
    for shape, members in vqz.streams_of(shapes):
        encoder = constriction.stream.queue.RangeEncoder()
        blocks = np.stack([grids[g][rows, cols] for g, rows, cols in members])
        logits = int64_logits(network, blocks).reshape(len(blocks), -1, 16)
        for position in range(shape[0] * shape[1]):
            masses = ie.masses(logits[:, position], network.table)
            encoder.encode(blocks.reshape(len(blocks), -1)[:, position], family, masses / 2.0**ie.PRECISION)
        plain.append(encoder.get_compressed().astype("<u4").tobytes())
    assert got == plain
    runtime = ie.LiteRTContextNetwork(convert_context_network(network), network, num_threads=2)
    assert vqz.encode_grids(grids, runtime) == got
    for context in (network, runtime):
        decoded = vqz.decode_grids(got, shapes, context)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, grids))
    bits = ie.code_bits(network, grids)  # the ideal size follows the same order
    assert abs(8 * sum(map(len, got)) - bits.sum()) <= 64 * len(got)


def test_the_contract_is_checked():
    good = extreme_raster_network(layers=1).to_arrays()
    assert ie.network_from_arrays(good).num_embeddings == 32
    cases = {
        "earlier positions": {"taps": np.array([[-1, 0], [0, 0]])},  # the position itself
        "kernel 0 must lie in": {"kernel_0": good["kernel_0"] * 2},
        "do not chain": {"kernel_0": good["kernel_0"][:-32]},
        "fan-in": {"taps": ie.causal_window(4, 4), "kernel_0": np.zeros((40 * 32, 64), np.int64)},
        "misses the array": {"head_bias": None},
    }
    for message, change in cases.items():
        arrays = {k: v for k, v in {**good, **change}.items() if v is not None}
        with pytest.raises(ie.EntropyModelError, match=message):
            ie.network_from_arrays(arrays)


def test_quantization_aware_training_freezes_to_the_network_it_trained():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (256, 8, 8)).astype(np.int32)
    codes[:, 1::2] = codes[:, ::2]  # every odd row repeats the row above: learnable from the window
    model = RasterContextModel(16, channels=32, num_layers=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(codes, epochs=6, batch_size=32, verbose=0).history["bits_per_code"]
    assert history[-1] < history[0] - 0.5, history  # the repeated rows cost (almost) nothing
    network = model.freeze()
    np.testing.assert_array_equal(np.asarray(model.logits(tf.constant(codes[:32]))).astype(np.int64),
                                  network.logits(codes[:32]))
    exact = ie.code_bits(network, codes).sum() / codes.size  # the file's rate ...
    trained = model.evaluate(codes, batch_size=64, verbose=0, return_dict=True)["bits_per_code"]
    assert abs(exact - trained) < 0.01, (exact, trained)  # ... is the rate the model measures
    with pytest.raises(ValueError, match="exactness bound"):
        RasterContextModel(16, embedding_width=64)
    with pytest.raises(ValueError, match="condition_depths must be 1"):
        build_context_model(16, 8, 1, schedule=ie.RASTER, depths=2, condition_depths=0)


def test_snapping_keeps_the_network_and_makes_float16_storage_exact():
    check_snapping_keeps_the_network_and_float16_storage(RasterContextModel(16, channels=32, num_layers=2, seed=3))


# ----------------------------------------------------------------- code stacks (an RQ-VAE's)
def test_a_code_stack_network_reads_earlier_positions_of_its_depth_and_the_whole_depth_before():
    # freshly initialized: logits that vary (the extreme network's saturate, hiding what it reads)
    network = RasterContextModel(16, channels=32, num_layers=2, seed=2, depths=3).freeze()
    rng = np.random.default_rng(4)
    stacks = rng.integers(0, 16, (4, 6, 7, 3)).astype(np.int32)
    for depth in range(3):
        reference = network.logits(ie.raster_stack_input(stacks, depth, 16)).reshape(4, 42, -1)
        np.testing.assert_array_equal(reference, int64_logits(network, stacks, depth).reshape(4, 42, -1))
        for position in (0, 17, 41):
            later = stacks.copy()
            flat = later[..., depth].reshape(4, -1)
            flat[:, position:] = rng.integers(0, 16, flat[:, position:].shape)  # this depth, from the position on
            later[..., depth] = flat.reshape(4, 6, 7)
            later[..., depth + 1 :] = rng.integers(0, 16, later[..., depth + 1 :].shape)  # deeper depths
            got = network.logits(ie.raster_stack_input(later, depth, 16)).reshape(4, 42, -1)
            np.testing.assert_array_equal(got[:, : position + 1], reference[:, : position + 1])
        if depth:  # negative control: the depth before is read, below and right of the position too
            before = stacks.copy()
            before[:, 3, 4, depth - 1] = (stacks[:, 3, 4, depth - 1] + 1) % 16
            changed = network.logits(ie.raster_stack_input(before, depth, 16))
            assert not np.array_equal(changed[:, 2, 3], network.logits(ie.raster_stack_input(stacks, depth, 16))[:, 2, 3])
    with pytest.raises(ie.EntropyModelError, match="below_taps"):
        ie.network_from_arrays({**network.to_arrays(), "depths": np.asarray(1)})
    with pytest.raises(ie.EntropyModelError, match="rows"):
        ie.network_from_arrays({**network.to_arrays(), "depths": np.asarray(4)})


@pytest.mark.slow
def test_a_code_stack_network_gives_the_same_integers_on_every_litert_kernel_set():
    network = extreme_raster_network(k=32, width=ie.MAX_FAN_IN // 33, channels=64, depths=4)
    assert len(network.taps) + len(network.below_taps) == 33
    flatbuffer = convert_context_network(network)
    rng = np.random.default_rng(5)
    stacks = rng.integers(0, 32, (300, 8, 8, 4)).astype(np.int32)
    for depth in (0, 3):
        rows = ie.raster_stack_input(stacks, depth, 32)
        reference = network.logits(rows)
        np.testing.assert_array_equal(reference[:20], int64_logits(network, stacks[:20], depth))
        assert 0.05 < np.mean((np.abs(reference) > 0) & (np.abs(reference) < ie.LOGIT_LIMIT))  # not all clipped
        for resolver in ie.RESOLVERS:
            for threads in (1, 2):
                runtime = ie.LiteRTContextNetwork(flatbuffer, network, resolver=resolver, num_threads=threads)
                np.testing.assert_array_equal(runtime.logits(rows), reference, err_msg=f"{resolver} {threads}")
    odd = rng.integers(0, 32, (3, 13, 21, 4)).astype(np.int32)  # any grid size, any positions
    positions = rng.choice(13 * 21, 50, replace=False)
    rows = ie.raster_stack_input(odd, 2, 32)
    np.testing.assert_array_equal(ie.LiteRTContextNetwork(flatbuffer, network).logits_at(rows, positions),
                                  network.logits(rows).reshape(3, 13 * 21, -1)[:, positions])


def test_code_stacks_are_coded_depth_by_depth_in_raster_order_on_numpy_and_litert():
    """Depth by depth, position by position, blocks of a stream interleaved at each position:
    what a plain loop writes, on numpy and LiteRT; both decode it, at every depth prefix."""
    import constriction

    network = RasterContextModel(16, channels=32, num_layers=2, seed=1, depths=3).freeze()
    rng = np.random.default_rng(13)
    shapes = [(8, 8, 3)] * 12 + [(5, 7, 3), (20, 37, 3), (1, 1, 3)]
    stacks = [rng.integers(0, 16, shape).astype(np.int32) for shape in shapes]
    rows = ie.raster_stack_input(np.stack(stacks[:12]), 1, 16)
    masses = ie.masses(network.logits(rows).reshape(-1, 16), network.table)
    assert len(np.unique(masses, axis=0)) > 0.9 * len(masses)  # masses vary: a mix-up would show
    got = vqz.encode_grids(stacks, network)
    family = constriction.stream.model.Categorical(perfect=False)
    plain = []
    for shape, members in vqz.streams_of([s[:2] for s in shapes]):
        encoder = constriction.stream.queue.RangeEncoder()
        blocks = np.stack([stacks[g][rows, cols] for g, rows, cols in members])
        for depth in range(3):
            logits = int64_logits(network, blocks, depth).reshape(len(blocks), -1, 16)
            for position in range(shape[0] * shape[1]):
                masses = ie.masses(logits[:, position], network.table)
                encoder.encode(blocks[..., depth].reshape(len(blocks), -1)[:, position], family,
                               masses / 2.0**ie.PRECISION)
        plain.append(encoder.get_compressed().astype("<u4").tobytes())
    assert got == plain
    runtime = ie.LiteRTContextNetwork(convert_context_network(network), network)
    assert vqz.encode_grids(stacks, runtime) == got
    for context in (network, runtime):
        decoded = vqz.decode_grids(got, shapes, context)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, stacks))
    prefix = [stack[..., :2] for stack in stacks]  # a lower quality: the first two depths
    assert vqz.decode_grids(vqz.encode_grids(prefix, runtime), [p.shape for p in prefix], network)[13].shape == (20, 37, 2)
    bits = ie.code_bits(network, stacks)
    assert abs(8 * sum(map(len, got)) - bits.sum()) <= 64 * len(got)


def test_a_code_stack_model_learns_from_the_depth_before_and_freezes_to_what_it_trained():
    """Depths 0 and 1 are noise, depth 2 is depth 1 shifted. With centred kernels (what new
    models train with) the model learns depth 2 within 64 steps; the kernels as they were
    before lose every hidden unit to the noisy depths here and stay at 4 bits everywhere."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    stacks = rng.integers(0, 16, (256, 8, 8, 3)).astype(np.int32)
    stacks[..., 2] = (stacks[..., 1] + 3) % 16
    model = RasterContextModel(16, channels=32, num_layers=2, seed=0, depths=3, center_kernels=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(stacks, epochs=8, batch_size=32, verbose=0)
    network = model.freeze()
    assert network.stacked and network.depths == 3 and network.embedding.shape[0] == 17 * 3 * 2
    exact = ie.code_bits(network, stacks, per_depth=True).sum(axis=0) / (256 * 64)
    assert exact[2] < 0.5 and exact[0] > 3.8 and exact[1] > 3.8, exact  # 4 bits: uniform
    for depth in range(3):
        rows = ie.raster_stack_input(stacks, depth, 16)
        logits = model.logits(tf.constant(rows))
        np.testing.assert_array_equal(np.asarray(logits[:32]).astype(np.int64), network.logits(rows[:32]))
        trained = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=stacks[..., depth], logits=logits / 8.0)
        assert abs(float(tf.reduce_mean(trained)) / np.log(2) - exact[depth]) < 0.01  # the file's rate is the model's
    with pytest.raises(ValueError, match=r"code stacks \(batch, h, w, 3\)"):
        model.evaluate(stacks[..., :2], verbose=0)
    again = RasterContextModel.from_config(model.get_config())
    assert (again.depths, again.center_kernels, len(again.below_taps)) == (3, True, 9)
    check_snapping_keeps_the_network_and_float16_storage(model)
