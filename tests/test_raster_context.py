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


def extreme_raster_network(seed=0, k=32, rows_above=3, radius=3, width=32, channels=64, layers=2):
    """Random integers at the contract's limits: the first layer's fan-in is `MAX_FAN_IN`-sized."""
    rng = np.random.default_rng(seed)
    taps = ie.causal_window(rows_above, radius)
    widths = [len(taps) * width] + [channels] * layers
    return ie.RasterContextNetwork(
        embedding=rng.integers(0, 128, (k + 1, width)),
        taps=taps,
        kernels=tuple(rng.integers(-127, 128, (a, b)) for a, b in zip(widths[:-1], widths[1:])),
        biases=tuple(rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (channels,)) for _ in range(layers)),
        shifts=(14,) * layers,
        head_kernel=rng.integers(-127, 128, (channels, k)),
        head_bias=rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (k,)),
        head_shift=9,
        table=ie.exp_table(),
    )


def int64_logits(network, codes):
    """A second implementation in int64 arithmetic: explicit loops over the taps, integer
    matrix products and floor division by powers of two."""
    n, h, w = codes.shape
    k = network.num_embeddings
    out = np.zeros((n, h, w, k), np.int64)
    for i in range(h):
        for j in range(w):
            rows = []
            for dr, dc in network.taps.tolist():
                r, c = i + dr, j + dc
                inside = 0 <= r < h and 0 <= c < w
                rows.append(network.embedding[codes[:, r, c] if inside else np.full(n, k)])
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
    with pytest.raises(ValueError, match="code stacks"):
        build_context_model(16, 8, 1, schedule=ie.RASTER, depths=2)


def test_snapping_keeps_the_network_and_makes_float16_storage_exact():
    check_snapping_keeps_the_network_and_float16_storage(RasterContextModel(16, channels=32, num_layers=2, seed=3))
