"""benchmarks/depth_allocation.py: the stopping rule, the per-image budgets and the map's cost
against hand-worked cases."""

import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
pytest.importorskip("bjontegaard", reason="`pip install bjontegaard` (the benchmarks extra) runs the study")
import depth_allocation as da  # noqa: E402


def geometric_energies(starts, factor=0.25, depths=4):
    """Residual energies (n, h, w, depths + 1) that shrink by `factor` per depth from `starts`."""
    return np.asarray(starts, np.float64)[..., None] * factor ** np.arange(depths + 1)


def test_a_position_stops_at_the_first_depth_whose_residual_is_below_the_threshold():
    energies = geometric_energies([[[1.0, 16.0], [0.01, 4.0]]])  # after k depths: start / 4^k
    np.testing.assert_array_equal(da.stopping_depths(energies, 0.3), [[[1, 3], [1, 2]]])
    np.testing.assert_array_equal(da.stopping_depths(energies, 1e-9), [[[4, 4], [4, 4]]])  # never below: all depths


def test_each_image_spends_its_own_budget():
    rng = np.random.default_rng(0)
    starts = np.exp(rng.normal(0, 2, (3, 8, 8)))
    starts[1] *= 100.0  # a far harder image gets the same codes per position, not most of them
    energies = geometric_energies(starts, factor=0.3, depths=8)
    for budget in (1, 2.5, 6):
        depths = da.allocate(energies, budget)
        np.testing.assert_allclose(depths.mean(axis=(1, 2)), budget, atol=1 / 64 + 1e-9)
        blocks = da.allocate(energies, budget, block=2)
        assert np.all(blocks[:, ::2, ::2] == blocks[:, 1::2, 1::2])  # one depth per 2x2 block
        np.testing.assert_allclose(blocks.mean(axis=(1, 2)), budget, atol=4 / 64 + 1e-9)
    # within an image the positions with more energy get the extra depths
    depths = da.allocate(energies, 3)
    order = np.argsort(starts[0].ravel())
    assert depths[0].ravel()[order[-1]] >= depths[0].ravel()[order[0]] + 2


def test_the_map_costs_the_cross_entropy_under_the_training_histogram():
    train = np.array([1, 1, 1, 2])  # counts 3, 1, 0 for depths 1..3; plus one half each
    assert da.map_bits(train, np.array([1, 2]), 3) == pytest.approx(
        (-math.log2(3.5 / 5.5) - math.log2(1.5 / 5.5)) / 2)
    assert da.map_bits(train, np.array([3]), 3) == pytest.approx(-math.log2(0.5 / 5.5))
