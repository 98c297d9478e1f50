"""Which code stack an RQ-VAE's `.vqz` encoder writes for a latent: a beam search (numpy).

A residual quantizer decodes the stack `(c_1, ..., c_q)` to `e_1[c_1] + ... + e_q[c_q]`
(`ResidualQuantizer.embed`). Greedy coding (`ResidualQuantizer.nearest_codes`, what training
uses) picks at each depth the code nearest to what the depths before left; a stack nearer to the
latent often starts with another code. `residual_codes` keeps the `beam_width` best partial
stacks at each depth (the nearest among every kept stack extended by every code) and returns the stack
nearest to the latent among the survivors at the file's quality q: the codes are chosen for the
q depths the file stores, so the same image at another quality may start with other codes.
Beam width 1 is greedy coding; a width of at least K^(q-1) is exhaustive. The decoder and the
format do not change: any decoder decodes these stacks, and they cost the context model's bits.

Numpy only, so the desktop (`KerasCodecModel`) and the device (`LiteRTCodecModel`, from the
export's encoder latents and `codebooks.npy`) run the same search.
"""

import numpy as np

from vaezoo.validation import check_int

#: the `.vqz` encoder's default beam width for an RQ-VAE (see `docs/vqz_format.md`, "Which codes").
DEFAULT_BEAM_WIDTH = 4

#: latent vectors searched at once (bounds the memory: vectors x width x K scores).
CHUNK_VECTORS = 4096


def residual_codes(latents, codebooks, depth=None, beam_width=DEFAULT_BEAM_WIDTH):
    """Code stacks int32 `(..., depth)` whose summed code vectors lie nearest to `latents`.

    Args:
        latents: float `(..., C)`, the encoder's output.
        codebooks: float `(D, K, C)`, level d's code vectors in row d.
        depth: code depths per stack, 1..D (default D).
        beam_width: partial stacks kept per depth (1: greedy residual coding).

    Example:
        >>> codes = residual_codes(latents, codebooks, depth=3, beam_width=4)   # (..., 3)
        >>> np.sum(codebooks[np.arange(3), codes], axis=-2)                     # their latents
    """
    codebooks = np.asarray(codebooks, np.float32)
    latents = np.asarray(latents, np.float32)
    if codebooks.ndim != 3 or latents.ndim < 1 or latents.shape[-1] != codebooks.shape[-1]:
        raise ValueError(f"residual_codes needs latents (..., C) and codebooks (D, K, C) of the same C; got "
                         f"latents {latents.shape} and codebooks {codebooks.shape}.")
    depth = codebooks.shape[0] if depth is None else depth
    check_int("depth", depth, 1)
    if depth > codebooks.shape[0]:
        raise ValueError(f"depth must be at most the codebooks' {codebooks.shape[0]} levels, got {depth}.")
    check_int("beam_width", beam_width, 1)
    vectors = latents.reshape(-1, latents.shape[-1])
    out = np.empty((len(vectors), depth), np.int32)
    for start in range(0, len(vectors), CHUNK_VECTORS):
        out[start : start + CHUNK_VECTORS] = _search(vectors[start : start + CHUNK_VECTORS], codebooks[:depth],
                                                     beam_width)
    return out.reshape(*latents.shape[:-1], depth)


def _search(vectors, codebooks, width):
    n, levels = len(vectors), len(codebooks)
    sums = np.zeros((n, 1, vectors.shape[-1]), np.float32)  # each kept stack's decoded vector
    stacks = np.zeros((n, 1, 0), np.int32)
    rows = np.arange(n)[:, None]
    for level, codebook in enumerate(codebooks):
        residual = vectors[:, None, :] - sums  # (n, kept, C)
        # squared distance of every extension: |r|^2 - 2 r.e + |e|^2, the quantizer's form (in place: the
        # (n, kept, K) array is the search's memory and time)
        errors = (residual.reshape(-1, residual.shape[-1]) @ (-2.0 * codebook.T)).reshape(*residual.shape[:2], -1)
        errors += np.sum(codebook * codebook, axis=-1)
        errors += np.sum(residual * residual, axis=-1, keepdims=True)
        kept = errors.shape[1]
        keep = 1 if level == levels - 1 else min(width, kept * codebook.shape[0])
        flat = errors.reshape(n, -1)  # candidate j: stack j // K extended by code j % K
        best = np.empty((n, keep), np.int64)
        for j in range(keep):  # the keep best, nearest first (a few argmin passes beat np.argpartition here)
            best[:, j] = np.argmin(flat, axis=-1)
            flat[rows[:, 0], best[:, j]] = np.inf
        parent, code = best // codebook.shape[0], (best % codebook.shape[0]).astype(np.int32)
        sums = sums[rows, parent] + codebook[code]
        stacks = np.concatenate([stacks[rows, parent], code[..., None]], axis=-1)
    return stacks[:, 0]
