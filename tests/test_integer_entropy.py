"""The exact entropy model: groups, masses, the integer network and its LiteRT runs agreeing to the bit."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vaezoo import integer_entropy as ie
from vaezoo.export.tflite import convert_context_network
from vaezoo.models.context_model import GroupedContextModel
from helpers import check_litert_gives_the_reference_integers, check_snapping_keeps_the_network_and_float16_storage


def extreme_network(seed=0, k=32, channels=64, layers=2, depths=1, slots=1, schedule=ie.DEFAULT_SCHEDULE):
    """Random integers at the contract's limits: every dot product near the 2^24 bound
    (`depths`, `slots`: a code-stack network whose input is `slots` rows of `channels // slots`;
    `schedule`: its group schedule)."""
    rng = np.random.default_rng(seed)
    width = channels // slots
    return ie.IntegerContextNetwork(
        embedding=rng.integers(0, 128, ((k + 1) * depths * slots, width)),
        kernels=tuple(rng.integers(-127, 128, (3, 3, width * slots if i == 0 else channels, channels))
                      for i in range(layers)),
        biases=tuple(rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (channels,)) for _ in range(layers)),
        shifts=(13,) * layers,
        head_kernel=rng.integers(-127, 128, (channels, k)),
        head_bias=rng.integers(-ie.BIAS_MAX, ie.BIAS_MAX + 1, (k,)),
        head_shift=9,
        table=ie.exp_table(),
        slots=slots,
        schedule=schedule,
    )


def test_groups_partition_every_block():
    groups = ie.group_map(8, 8)
    assert np.bincount(groups.reshape(-1)).tolist() == [4, 4, 8, 16, 32]
    assert groups[0, 0] == 0 and groups[2, 2] == 1 and groups[0, 2] == 2 and groups[1, 1] == 3 and groups[0, 1] == 4
    # every position of the last group has its four neighbours coded before it
    for i, j in zip(*np.nonzero(groups == 4)):
        for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            if 0 <= a < 8 and 0 <= b < 8:
                assert groups[a, b] < 4
    odd = ie.group_map(5, 3)
    assert odd.shape == (5, 3) and set(np.unique(odd)) <= set(range(ie.NUM_GROUPS))
    codes = np.arange(64).reshape(1, 8, 8)
    inputs = ie.context_input(codes, groups, 3, 99)
    np.testing.assert_array_equal(inputs[0] == 99, groups >= 3)


def original_group_map(height, width):
    """The 5-group map as `.vqz` version 2 defined it before schedules (a second implementation)."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    groups = np.full((height, width), 4, np.int8)
    groups[(i % 2 == 1) & (j % 2 == 1)] = 3
    groups[(i % 2 == 0) & (j % 2 == 0)] = 2
    groups[(i % 4 == 2) & (j % 4 == 2)] = 1
    groups[(i % 4 == 0) & (j % 4 == 0)] = 0
    return groups


def test_the_default_schedule_is_the_original_five_group_map():
    for height in range(1, 19):
        for width in range(1, 19):
            expected = original_group_map(height, width)
            for got in (ie.group_map(height, width), ie.group_map(height, width, "groups5"),
                        ie.group_map(height, width, None)):
                assert got.dtype == np.int8 and np.array_equal(got, expected), (height, width)
    assert ie.num_groups() == ie.NUM_GROUPS == 5 and ie.DEFAULT_SCHEDULE == "groups5"
    # a default network stores no schedule (its context.npz is what it was) and reads back as the default
    network = extreme_network(layers=1)
    assert "schedule" not in network.to_arrays() and network.num_groups == 5
    assert ie.IntegerContextNetwork.from_arrays(network.to_arrays()).schedule == "groups5"


@pytest.mark.parametrize("schedule", sorted(ie.SCHEDULES))
def test_a_schedule_covers_every_position_once_and_each_group_sees_only_earlier_groups(schedule):
    groups = ie.group_map(13, 10, schedule)
    count = ie.num_groups(schedule)
    assert groups.shape == (13, 10) and sorted(np.unique(groups).tolist()) == list(range(count))
    tile = ie.schedule_tile(schedule)
    assert np.bincount(tile.reshape(-1), minlength=count).min() >= 1  # every group has positions in a tile
    # the tile repeats from the top-left corner: one group per position, the same at every period
    np.testing.assert_array_equal(groups[tile.shape[0]:, tile.shape[1]:], groups[: 13 - tile.shape[0], : 10 - tile.shape[1]])
    network = extreme_network(k=8, channels=16, layers=2, schedule=schedule)
    network = dataclasses.replace(network, biases=tuple(0 * b for b in network.biases),  # not saturated
                                  head_bias=0 * network.head_bias, shifts=(10, 10))
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 8, (4, 13, 10))
    for group in range(count):
        inputs = ie.network_input(network, codes, groups, group)
        np.testing.assert_array_equal(inputs == 8, np.broadcast_to(groups >= group, inputs.shape))
        positions = np.flatnonzero(groups == group)
        later = np.where(groups[None] >= group, rng.integers(0, 8, codes.shape), codes)  # redraw this and later groups
        np.testing.assert_array_equal(network.logits_at(ie.network_input(network, later, groups, group), positions),
                                      network.logits_at(inputs, positions))
        if group:  # while the earlier groups' codes do reach it
            earlier = np.where(groups[None] < group, (codes + 1) % 8, codes)
            assert not np.array_equal(network.logits_at(ie.network_input(network, earlier, groups, group), positions),
                                      network.logits_at(inputs, positions))


def test_the_finer_schedules_refine_the_default_with_more_context():
    groups6 = ie.group_map(8, 8, "groups6")
    assert np.bincount(groups6.reshape(-1)).tolist() == [4, 4, 8, 8, 8, 32]
    np.testing.assert_array_equal(np.array([0, 1, 2, 3, 3, 4])[groups6], ie.group_map(8, 8))
    np.testing.assert_array_equal(groups6 == 4, ie.group_map(8, 8, "groups8") == 5)  # the same second odd-odd half
    groups = ie.group_map(8, 8, "groups8")
    assert np.bincount(groups.reshape(-1)).tolist() == [4, 4, 4, 4, 8, 8, 16, 16]
    merged = np.array([0, 1, 2, 2, 3, 3, 4, 4])[groups]  # each default group split in two, in order
    np.testing.assert_array_equal(merged, ie.group_map(8, 8))

    def neighbours(i, j, offsets):
        return [groups[(i + a) % 8, (j + b) % 8] for a, b in offsets]  # the tile repeats: wrap around

    straight2 = ((-2, 0), (2, 0), (0, -2), (0, 2))
    diagonal1 = ((-1, -1), (-1, 1), (1, -1), (1, 1))
    for i, j in zip(*np.nonzero(groups == 5)):  # the second odd-odd half sees the first 2 away in its row and column
        assert neighbours(i, j, straight2) == [4] * 4
    for i, j in zip(*np.nonzero(groups == 7)):  # the second half of the rest sees the first as diagonal neighbours
        assert neighbours(i, j, diagonal1) == [6] * 4
    for i, j in zip(*np.nonzero(groups == 3)):  # the second even-even half sees the first diagonally, 2 away
        assert neighbours(i, j, ((-2, -2), (-2, 2), (2, -2), (2, 2))) == [2] * 4


def test_an_unknown_schedule_is_refused_with_the_known_names():
    for bad in ("groups7", "", 5):
        with pytest.raises(ValueError, match=r"unknown group schedule .*expected one of \['groups5', 'groups6', 'groups8'\]"):
            ie.group_map(4, 4, bad)
    arrays = {**extreme_network(layers=1).to_arrays(), "schedule": np.asarray("checkerboard")}
    with pytest.raises(ie.EntropyModelError, match="unknown group schedule 'checkerboard'"):
        ie.IntegerContextNetwork.from_arrays(arrays)
    with pytest.raises(ValueError, match="unknown group schedule 'groups7'"):
        GroupedContextModel(16, channels=8, num_layers=1, schedule="groups7")


def test_an_8_group_network_codes_group_by_group_in_its_schedule_and_round_trips_on_litert():
    """`vqz.encode_grids` with a groups8 network writes what a plain loop over the groups8 map
    writes (not the default map's stream), on numpy and on LiteRT, and decodes exactly."""
    import constriction

    from vaezoo import vqz

    # a freshly initialized model: masses that vary with the context (the extreme network's
    # saturate to one symbol everywhere, which would hide a wrong group's logits)
    network = GroupedContextModel(16, channels=16, num_layers=2, seed=0, schedule="groups8").freeze()
    network = ie.IntegerContextNetwork.from_arrays(network.to_arrays())  # the schedule survives context.npz
    assert network.schedule == "groups8" and network.num_groups == 8
    rng = np.random.default_rng(12)
    shapes = [(8, 8)] * 5 + [(5, 7), (16, 16), (3, 3)]
    grids = [rng.integers(0, 16, shape).astype(np.int32) for shape in shapes]
    got = vqz.encode_grids(grids, network)
    family = constriction.stream.model.Categorical(perfect=False)

    def plain(schedule):
        out = []
        for shape, members in vqz.streams_of(shapes):
            encoder = constriction.stream.queue.RangeEncoder()
            blocks = np.stack([grids[g][rows, cols] for g, rows, cols in members])
            groups = ie.group_map(*shape, schedule)
            for group in range(ie.num_groups(schedule)):
                where = groups == group
                logits = network.logits(ie.context_input(blocks, groups, group, 16))
                masses = ie.masses(logits[:, where].reshape(-1, 16), network.table)
                encoder.encode(blocks[:, where].reshape(-1), family, masses / 2.0**ie.PRECISION)
            out.append(encoder.get_compressed().astype("<u4").tobytes())
        return out

    assert got == plain("groups8") and got != plain("groups5")
    runtime = ie.LiteRTContextNetwork(convert_context_network(network), network, num_threads=2)
    assert runtime.schedule == "groups8" and vqz.encode_grids(grids, runtime) == got
    for context in (network, runtime):
        decoded = vqz.decode_grids(got, shapes, context)
        assert all(np.array_equal(a, b) for a, b in zip(decoded, grids))
    bits = ie.code_bits(network, grids)  # the ideal size follows the same schedule
    assert abs(8 * sum(map(len, got)) - bits.sum()) <= 64 * len(got)


def test_masses_sum_to_the_coder_precision_and_follow_the_logits():
    rng = np.random.default_rng(0)
    logits = rng.integers(-400, 400, (500, 64))
    logits[0] = 0  # a flat row
    logits[1, :] = -ie.LOGIT_LIMIT
    logits[1, 5] = ie.LOGIT_LIMIT  # one near-certain symbol: the others keep the table's floor
    table = ie.exp_table()
    m = ie.masses(logits, table)
    assert m.dtype == np.int64 and np.all(m.sum(axis=1) == 2**ie.PRECISION) and m.min() >= 1
    others = np.delete(m[1], 5)
    assert np.all(others == others[0]) and m[1, 5] == 2**ie.PRECISION - 63 * others[0]
    assert others[0] == 2**ie.PRECISION // 2**ie.EXP_TABLE_BITS  # the floor is 2^-20 of the top symbol
    assert np.ptp(m[0]) <= 1  # flat logits: equal masses up to the remainder
    for row_logits, row_masses in zip(logits[2:], m[2:]):  # a larger logit never gets a smaller mass
        order = np.lexsort((row_masses, row_logits))
        assert np.all(np.diff(row_masses[order]) >= 0)
    # against the float64 softmax of logits / 2^3: the coded cost is within 0.01 bits per symbol
    z = logits[2:] / 2.0**ie.LOGIT_FRACTION_BITS
    softmax = np.exp(z - z.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    exact_bits = -np.sum(softmax * np.log2(m[2:] / 2.0**ie.PRECISION), axis=1)
    entropy = -np.sum(softmax * np.log2(softmax), axis=1)
    assert np.all(exact_bits - entropy < 0.01) and np.all(exact_bits >= entropy - 1e-9)
    assert table[0] == 2**ie.EXP_TABLE_BITS and table[8] == round(2**ie.EXP_TABLE_BITS * math.exp(-1))
    with pytest.raises(ValueError, match=r"\(n, K >= 2\)"):
        ie.masses(np.zeros(5), table)


def integer_masses(logits, table):
    """The masses' definition in int64 arithmetic only (a second implementation)."""
    logits = np.asarray(logits, np.int64)
    raw = np.asarray(table, np.int64)[np.minimum(logits.max(1, keepdims=True) - logits, len(table) - 1)]
    scaled = (raw * (2**ie.PRECISION - logits.shape[1])) // raw.sum(1, keepdims=True) + 1
    scaled[np.arange(len(scaled)), np.argmax(logits, 1)] += 2**ie.PRECISION - scaled.sum(1)
    return scaled


@pytest.mark.parametrize("k", [2, 64, 512, 2048])
def test_masses_equal_the_int64_definition(k):
    rng = np.random.default_rng(k)
    table = ie.exp_table()
    spread = rng.choice([4, 40, 400, 4000], size=(3000, 1))
    logits = rng.integers(-1, 2, (3000, k)) * rng.integers(0, spread, (3000, k))
    logits[:10] = 0  # flat rows: the largest totals (K x 2^20)
    logits[10:20, 0] = ie.LOGIT_LIMIT
    np.testing.assert_array_equal(ie.masses(logits, table), integer_masses(logits, table))
    # quotients just below an integer (raw * free = n * total - 1), where a float division
    # rounded up would show: raw = -free^-1 mod total, for totals up to the 2^29 bound
    free = 2**ie.PRECISION - k
    totals = [t for t in rng.integers(2**20, 2**29 + 1, 400).tolist() + [2**29 - 1] if math.gcd(t, free) == 1]
    raws = [(-pow(free, -1, t)) % t for t in totals]
    pairs = [(r, t) for r, t in zip(raws, totals) if r <= t]  # a mass never exceeds the total
    raw, total = (np.array(v, np.float64)[:, None] for v in zip(*pairs))
    expected = (raw.astype(np.int64) * free) // total.astype(np.int64)
    assert np.all((raw.astype(np.int64) * free) % total.astype(np.int64) == total.astype(np.int64) - 1)
    assert len(pairs) > 20
    np.testing.assert_array_equal(ie._floor_ratio(raw, free, total), expected)


def test_reference_forward_matches_a_float64_tensorflow_network():
    network = extreme_network(layers=2)
    codes = np.random.default_rng(1).integers(0, 33, (16, 9, 7))
    a = tf.gather(tf.constant(network.embedding, tf.float64), codes)
    for kernel, bias, shift in zip(network.kernels, network.biases, network.shifts):
        a = tf.nn.conv2d(a, tf.constant(kernel, tf.float64), 1, "SAME") + bias
        a = tf.clip_by_value(tf.floor(a * 2.0**-shift), 0, 127)
    np.testing.assert_array_equal(network.features(codes), a.numpy())
    z = tf.tensordot(a, tf.constant(network.head_kernel, tf.float64), 1) + network.head_bias
    logits = tf.clip_by_value(tf.floor(z * 2.0**-network.head_shift), -ie.LOGIT_LIMIT, ie.LOGIT_LIMIT)
    np.testing.assert_array_equal(network.logits(codes), logits.numpy().astype(np.int64))
    spread = network.features(codes)
    assert 0.05 < np.mean((spread > 0) & (spread < 127))  # not all saturated: the sums really are large


@pytest.mark.slow
def test_litert_kernel_sets_and_thread_counts_give_the_same_integers():
    check_litert_gives_the_reference_integers(extreme_network(layers=3))


def test_a_context_file_without_the_positions_input_is_refused(tmp_path):
    """A bundle exported before the head moved into LiteRT: a clear re-export message."""
    network = extreme_network(layers=1)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None), tf.int32, name="codes")])
    def context(codes):
        return {"features": tf.expand_dims(tf.cast(codes, tf.float32), -1)}

    module = tf.Module()
    module.context = context
    tf.saved_model.save(module, str(tmp_path), signatures={"context": context.get_concrete_function()})
    old = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["context"]).convert()
    with pytest.raises(ie.EntropyModelError, match="export the model again"):
        ie.LiteRTContextNetwork(old, network)


def test_the_2_to_the_24_bound_is_what_makes_float32_exact():
    """Negative control: the same float32 convolution is exact on integers within the bound
    and inexact past it, which is why the contract bounds every dot product."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 128, (4, 8, 8, 64)).astype(np.float64)
    w = rng.integers(-127, 128, (3, 3, 64, 8)).astype(np.float64)
    exact = tf.nn.conv2d(x, w, 1, "SAME").numpy()
    within = tf.nn.conv2d(x.astype(np.float32), w.astype(np.float32), 1, "SAME").numpy()
    np.testing.assert_array_equal(within, exact)  # |sums| <= 576 * 127 * 127 < 2^24
    scale = 2.0**9 + 1  # odd multiplier: sums past 2^24 need more than float32's 24 bits
    past = tf.nn.conv2d((x * scale).astype(np.float32), w.astype(np.float32), 1, "SAME").numpy()
    assert np.any(past.astype(np.float64) != exact * scale)


def test_the_contract_is_checked():
    good = extreme_network(layers=1).to_arrays()
    assert ie.IntegerContextNetwork.from_arrays(good).num_embeddings == 32
    cases = {
        "embedding must lie in": {"embedding": good["embedding"] + 1},
        "kernel 0 must lie in": {"kernel_0": good["kernel_0"] * 2},
        "must be integers": {"head_kernel": good["head_kernel"].astype(np.float32)},
        "fan-in": {"kernel_0": np.zeros((3, 3, 64, 64), np.int64), "embedding": np.zeros((33, 64), np.int64)},
        "exp table": {"table": np.array([1, 2, 3])},
        "misses the array": {"head_bias": None},
    }
    cases["fan-in"] = {"kernel_0": np.zeros((3, 3, 100, 64), np.int64), "embedding": np.zeros((33, 100), np.int64)}
    for message, change in cases.items():
        arrays = {**good, **change}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        with pytest.raises(ie.EntropyModelError, match=message):
            ie.IntegerContextNetwork.from_arrays(arrays)


def test_quantization_aware_training_freezes_to_the_network_it_trained():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (256, 8, 8)).astype(np.int32)
    codes[:, 1::2] = codes[:, ::2]  # every odd row repeats the row above: learnable context
    model = GroupedContextModel(16, channels=16, num_layers=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(codes, epochs=4, batch_size=64, verbose=0).history["bits_per_code"]
    assert history[-1] < history[0] - 0.2, history  # it learns the repeated rows
    network = model.freeze()
    groups = ie.group_map(8, 8)
    for group in range(ie.NUM_GROUPS):
        inputs = ie.context_input(codes[:32], groups, group, 16)
        np.testing.assert_array_equal(np.asarray(model.logits(tf.constant(inputs))).astype(np.int64),
                                      network.logits(inputs))
    with pytest.raises(ValueError, match="at most 86"):
        GroupedContextModel(16, channels=100)


def test_a_model_trains_and_freezes_with_its_schedule():
    keras.utils.set_random_seed(1)  # the embedding's initializer and fit's shuffling draw from it
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, (256, 8, 8)).astype(np.int32)
    codes[:, :, 1::2] = codes[:, :, ::2]  # every odd column repeats its left neighbour
    model = GroupedContextModel(16, channels=16, num_layers=2, seed=0, schedule="groups8")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(codes, epochs=10, batch_size=32, verbose=0)
    again = GroupedContextModel.from_config(model.get_config())
    assert again.schedule == "groups8"
    network = model.freeze()
    assert network.schedule == "groups8"
    groups = ie.group_map(8, 8, "groups8")
    per_group = []
    for group in range(8):
        inputs = ie.context_input(codes[:32], groups, group, 16)
        np.testing.assert_array_equal(np.asarray(model.logits(tf.constant(inputs))).astype(np.int64),
                                      network.logits(inputs))
        nats, count = model.group_nll(tf.constant(codes[:32]), tf.fill([32], group))
        assert np.all(count.numpy() == np.sum(groups == group))  # scored on the schedule's group
        logits = network.logits(inputs)[:, groups == group] / 2.0**ie.LOGIT_FRACTION_BITS
        expected = -np.sum(np.take_along_axis(logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1,
                                                                         keepdims=True)) - logits.max(-1, keepdims=True),
                                              codes[:32][:, groups == group][..., None], -1), axis=(1, 2))
        np.testing.assert_allclose(nats.numpy(), expected, rtol=1e-4)
        per_group.append(float(np.mean(nats.numpy() / count.numpy())))
    assert per_group[6] < per_group[0] - 0.5, per_group  # odd columns after their left neighbours: learnt


def test_stack_inputs_read_each_depth_and_slot_rows():
    rng = np.random.default_rng(4)
    k, depths, slots = 5, 4, 3
    codes = rng.integers(0, k, (2, 4, 4, depths))
    groups = ie.group_map(4, 4)
    rows = ie.stack_input(codes, groups, 2, 1, k, slots)  # depth 1, group 2: slot 2 (depth -1) is absent
    base = (1 * slots + np.arange(slots)) * (k + 1)
    np.testing.assert_array_equal(rows[..., 0], base[0] + np.where(groups < 2, codes[..., 1], k))
    np.testing.assert_array_equal(rows[..., 1], base[1] + codes[..., 0])
    np.testing.assert_array_equal(rows[..., 2], np.full((2, 4, 4), base[2] + k))
    assert rows.max() < (k + 1) * depths * slots
    network = extreme_network(k=k, channels=63, depths=depths, slots=slots)
    assert network.stacked and network.depths == depths and network.num_embeddings == k
    # the input of a position is its slots' rows side by side
    first = network.embedding[rows].reshape(2, 4, 4, -1)
    np.testing.assert_array_equal(network.features(rows), extreme_features(network, first))


def extreme_features(network, a):
    """The hidden layers in float64 TensorFlow from the concatenated embedding rows `a`."""
    a = tf.constant(a, tf.float64)
    for kernel, bias, shift in zip(network.kernels, network.biases, network.shifts):
        a = tf.nn.conv2d(a, tf.constant(kernel, tf.float64), 1, "SAME") + bias
        a = tf.clip_by_value(tf.floor(a * 2.0**-shift), 0, 127)
    return a.numpy()


def test_code_stack_networks_give_the_same_integers_on_every_litert_kernel_set():
    network = extreme_network(k=32, channels=63, layers=2, depths=3, slots=3)  # fan-in 9 x 63: near 2^24
    flatbuffer = convert_context_network(network)
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 32, (64, 8, 8, 3))
    groups = ie.group_map(8, 8)
    for depth in range(3):
        rows = ie.stack_input(codes, groups, 3, depth, 32, 3)
        positions = np.flatnonzero(groups == 3)
        reference = network.logits_at(rows, positions)
        for resolver in ie.RESOLVERS:
            runtime = ie.LiteRTContextNetwork(flatbuffer, network, resolver=resolver, num_threads=2)
            np.testing.assert_array_equal(runtime.logits_at(rows, positions), reference, err_msg=resolver)


def test_a_code_stack_model_learns_from_earlier_depths_and_freezes_to_what_it_trained():
    rng = np.random.default_rng(0)
    k, depths = 16, 3
    codes = rng.integers(0, k, (256, 8, 8, depths)).astype(np.int32)
    codes[..., 1] = (codes[..., 0] * 5 + 3) % k  # depth 1 is a function of depth 0 at the same position
    model = GroupedContextModel(k, channels=16, num_layers=2, depths=depths, condition_depths=1, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(codes, epochs=40, batch_size=32, verbose=0)
    network = model.freeze()
    bits = ie.code_bits(network, codes[:16], per_depth=True).mean(axis=0) / 64
    assert bits[1] < bits[0] - 1.0 and bits[1] < bits[2] - 1.0, bits  # depth 1 is the predictable one
    groups = ie.group_map(8, 8)
    for depth in range(depths):
        for group in range(ie.NUM_GROUPS):
            rows = model.stack_inputs(tf.constant(codes[:16]), tf.constant(groups, tf.int32),
                                      tf.fill([16], group), tf.fill([16], depth))
            np.testing.assert_array_equal(rows.numpy(), ie.stack_input(codes[:16], groups, group, depth, k, 2))
            np.testing.assert_array_equal(np.asarray(model.logits(rows)).astype(np.int64), network.logits(rows.numpy()))
    with pytest.raises(ValueError, match=r"code stacks \(batch, h, w, 3\)"):
        model.unpack_batch(codes[..., 0])


def test_a_scaled_code_stack_model_freezes_to_what_it_computes_and_snaps_for_float16():
    rng = np.random.default_rng(5)
    k, depths = 16, 3
    codes = rng.integers(0, k, (16, 8, 8, depths)).astype(np.int32)
    model = GroupedContextModel(k, channels=16, num_layers=2, depths=depths, condition_depths=1, seed=0,
                                activation_scale=32)
    model.biases[0].assign(rng.uniform(-2, 2, 16))  # activation units 32x the stored values
    assert float(np.max(model.embedding)) <= 2.0  # initialised in [0, 64 / 32)
    network = model.freeze()
    np.testing.assert_array_equal(network.embedding, np.clip(np.round(32 * np.asarray(model.embedding)), 0, 127))
    np.testing.assert_array_equal(network.biases[0], np.round(np.asarray(model.biases[0]) * 32 * 2**9))
    groups = ie.group_map(8, 8)
    for depth in range(depths):
        for group in range(ie.NUM_GROUPS):
            rows = ie.stack_input(codes, groups, group, depth, k, 2)
            np.testing.assert_array_equal(np.asarray(model.logits(tf.constant(rows))).astype(np.int64),
                                          network.logits(rows))
    again = GroupedContextModel.from_config(model.get_config())
    assert again.activation_scale == 32.0
    check_snapping_keeps_the_network_and_float16_storage(model)


def test_the_default_grouped_parametrization_is_the_shipped_one():
    model = GroupedContextModel(16, channels=16, num_layers=2, seed=0)
    assert model.activation_scale == 1.0  # weights shipped before the option was added load unchanged
    model.biases[1].assign(np.linspace(-3, 3, 16))
    network = model.freeze()
    np.testing.assert_array_equal(network.embedding, np.round(np.asarray(model.embedding)))
    np.testing.assert_array_equal(network.biases[1], np.round(np.linspace(-3, 3, 16) * 2**9))
    for bad in (0, 0.5, 3, -32):
        with pytest.raises(ValueError, match="power of two"):
            GroupedContextModel(16, activation_scale=bad)


def test_scaled_embeddings_and_biases_move_as_far_as_the_kernels():
    """The reason for `activation_scale`: Adam moves every variable about `learning_rate` per
    step, so an embedding stored in activation units (0..127) moves a few thousandths of a
    unit per step and its integers barely change; stored divided by 32 it moves 32 times as far."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (320, 8, 8)).astype(np.int32)
    codes[:, 1::2] = codes[:, ::2]  # every odd row repeats the row above
    moved = {}
    for scale in (1, 32):
        keras.utils.set_random_seed(0)
        model = GroupedContextModel(16, channels=16, num_layers=2, seed=0, activation_scale=scale)
        model.compile(optimizer=keras.optimizers.Adam(2e-3))
        before = scale * np.asarray(model.embedding)
        model.fit(codes, epochs=1, batch_size=32, verbose=0, shuffle=False)  # 10 steps
        moved[scale] = np.max(np.abs(scale * np.asarray(model.embedding) - before))  # in activation units
    assert moved[1] < 0.5, moved  # no embedding integer moved by more than one
    assert moved[32] > 10 * moved[1] and moved[32] > 1.0, moved


def test_centred_kernels_freeze_to_what_the_model_computes_and_snap_for_float16():
    """`center_kernels`: every kernel is used as v - mean over its fan-in + offset / fan-in
    (float64 closed form below), the forward pass and `freeze()` agree, and `snap()` keeps them."""
    rng = np.random.default_rng(7)
    k, depths = 16, 3
    codes = rng.integers(0, k, (16, 8, 8, depths)).astype(np.int32)
    model = GroupedContextModel(k, channels=16, num_layers=2, depths=depths, condition_depths=1, seed=0,
                                activation_scale=32, center_kernels=True)
    model.kernel_offsets[0].assign(rng.uniform(-3, 3, 16))
    model.head_offset.assign(rng.uniform(-3, 3, k))
    network = model.freeze()
    for kernel, offset, shift, frozen in ((model.kernels[0], model.kernel_offsets[0], 9, network.kernels[0]),
                                          (model.head_kernel, model.head_offset, 8, network.head_kernel)):
        v = np.asarray(kernel, np.float64)
        fan_in = np.prod(v.shape[:-1])
        centred = v - v.reshape(fan_in, -1).mean(axis=0) + np.asarray(offset, np.float64) / fan_in
        expected = np.clip(np.round(centred * 2**shift), -127, 127)
        assert np.mean(frozen == expected) > 0.999 and np.abs(frozen - expected).max() <= 1  # float32 vs 64 ties
        assert abs(frozen.reshape(fan_in, -1).mean(axis=0) * 2.0**-shift * fan_in
                   - np.asarray(offset)).max() < 0.01 * fan_in  # the offset is each unit's mean weight
    groups = ie.group_map(8, 8)
    for depth in range(depths):
        rows = ie.stack_input(codes, groups, 2, depth, k, 2)
        np.testing.assert_array_equal(np.asarray(model.logits(tf.constant(rows))).astype(np.int64),
                                      network.logits(rows))
    again = GroupedContextModel.from_config(model.get_config())
    assert again.center_kernels and len(again.kernel_offsets) == 2
    check_snapping_keeps_the_network_and_float16_storage(model)
