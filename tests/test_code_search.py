"""`vaezoo.code_search`: beam search over residual code stacks, against exhaustive search and greedy coding."""

import itertools

import numpy as np
import pytest

from vaezoo import code_search
from vaezoo.quantizer import ResidualQuantizer


def _decoded(codebooks, codes):
    return np.sum(codebooks[np.arange(codes.shape[-1]), codes], axis=-2)


def _exhaustive(latents, codebooks, depth):
    """The stack of `depth` codes nearest to each latent, by trying all K^depth stacks."""
    stacks = np.array(list(itertools.product(range(codebooks.shape[1]), repeat=depth)))
    vectors = _decoded(codebooks, stacks)  # (K^depth, C)
    errors = np.sum((latents[:, None, :].astype(np.float64) - vectors[None]) ** 2, axis=-1)
    return stacks[np.argmin(errors, axis=-1)]


def test_a_beam_as_wide_as_every_prefix_finds_the_nearest_stack():
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(3, 4, 5)).astype(np.float32) * np.array([1.0, 0.6, 0.3], np.float32)[:, None, None]
    latents = rng.normal(size=(300, 5)).astype(np.float32)
    for depth in (1, 2, 3):
        nearest = _exhaustive(latents, codebooks, depth)
        searched = code_search.residual_codes(latents, codebooks, depth, beam_width=4 ** (depth - 1))
        np.testing.assert_array_equal(searched, nearest)
    # a narrower beam misses some, and greedy coding the most
    error = {w: np.mean(np.sum((latents - _decoded(codebooks, code_search.residual_codes(latents, codebooks, 3, w)))
                               ** 2, -1)) for w in (1, 2, 16)}
    assert error[16] < error[2] < error[1]


def test_a_beam_of_one_is_the_quantizers_greedy_coding():
    rng = np.random.default_rng(1)
    quantizer = ResidualQuantizer(depth=4, num_embeddings=16, embedding_dim=6, seed=0)
    quantizer.build((None, 6))
    codebooks = quantizer.codebooks
    latents = rng.normal(size=(2, 7, 5, 6)).astype(np.float32)
    codes = code_search.residual_codes(latents, codebooks, beam_width=1)
    assert codes.shape == (2, 7, 5, 4) and codes.dtype == np.int32
    np.testing.assert_array_equal(codes, np.asarray(quantizer.nearest_codes(latents)))
    np.testing.assert_array_equal(code_search.residual_codes(latents, codebooks, 2, beam_width=1), codes[..., :2])


def test_chunks_do_not_change_the_codes(monkeypatch):
    rng = np.random.default_rng(2)
    codebooks = rng.normal(size=(3, 8, 4)).astype(np.float32)
    latents = rng.normal(size=(50, 4)).astype(np.float32)
    whole = code_search.residual_codes(latents, codebooks, beam_width=3)
    monkeypatch.setattr(code_search, "CHUNK_VECTORS", 7)
    np.testing.assert_array_equal(code_search.residual_codes(latents, codebooks, beam_width=3), whole)


def test_bad_arguments_name_what_was_expected():
    codebooks = np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"latents \(\.\.\., C\) and codebooks \(D, K, C\) of the same C"):
        code_search.residual_codes(np.zeros((5, 4)), codebooks)
    with pytest.raises(ValueError, match="depth must be at most the codebooks' 2 levels, got 3"):
        code_search.residual_codes(np.zeros((5, 3)), codebooks, depth=3)
    with pytest.raises(ValueError, match="beam_width must be an integer >= 1"):
        code_search.residual_codes(np.zeros((5, 3)), codebooks, beam_width=0)
