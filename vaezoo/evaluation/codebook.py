"""VQ codebook use: perplexity, usage and the PixelCNN prior's bits per code."""

import numpy as np

from vaezoo import validation
from vaezoo.evaluation.records import Metric, as_float64, batches


def encode_codes(model, images, batch_size=128):
    """All code grids of `images` under a VQVAE, int32 `(n, h, w)`."""
    return np.concatenate(
        [np.asarray(model.encode_to_codes(images[s]), np.int64) for s in batches(len(images), batch_size)]
    )


def codebook_stats(codes, num_embeddings):
    """Perplexity and usage of a codebook over a whole set of code indices.

    Protocol: the histogram of every code index of every position of every image in the set
    (not batch by batch); `perplexity = exp(-sum_i p_i log p_i)` of that histogram (K for
    uniform use of K codes, 1 when a single code is used), `usage` the fraction of the K codes
    used at least once.

    Returns:
        dict with `perplexity` (float), `codebook_usage` (fraction in [0, 1]) and `codes_used`.
    """
    from vaezoo.quantizer import perplexity

    validation.check_int("num_embeddings", num_embeddings, 1)
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0:
        raise ValueError("codebook_stats needs at least one code index.")
    if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= num_embeddings:
        raise ValueError(f"codes must be integers in [0, {num_embeddings}).")
    counts = np.bincount(codes, minlength=num_embeddings)
    used = int(np.count_nonzero(counts))
    return {"perplexity": float(perplexity(counts)), "codebook_usage": used / num_embeddings, "codes_used": used}


def prior_bits_per_code(model, codes, batch_size=128):
    """Mean negative log2-likelihood per code position of code grids under the VQVAE's prior.

    Protocol: `-log2 p(codes) / (h * w)` per grid under the autoregressive PixelCNN prior
    (exact, no sampling), averaged over the grids. log2 K is the uniform prior's value.
    """
    reason = PRIOR_BITS_PER_CODE.applies(model, None)
    if reason:
        raise ValueError(reason + ".")
    values = [as_float64(model.prior.bits_per_code(codes[s])) for s in batches(len(codes), batch_size)]
    return float(np.mean(np.concatenate(values)))


def codec_bits_per_code(model, codes):
    """Bits per code of the `.vqz` entropy model (the VQVAE's exact context model) on code grids.

    Protocol: -log2(mass / 2^24) of every code under the frozen integer context network
    (`vaezoo.integer_entropy.code_bits`), coded in 16 x 16 blocks in the network's order (group
    by group, or position by position for a raster network) as `.vqz` does, averaged over every
    code of every grid: a file's payload before the range
    coder's few bytes of flushing per block. log2 K is the uniform model's value.
    """
    from vaezoo import integer_entropy, vqz

    reason = CODEC_BITS_PER_CODE.applies(model, None)
    if reason:
        raise ValueError(reason + ".")
    codes = np.asarray(codes)
    return float(np.sum(integer_entropy.code_bits(model.context_network(), codes, block=vqz.BLOCK)) / codes.size)


def codes(run):
    """Code grids of the run's images (computed once)."""
    return run.cached("codes", lambda: encode_codes(run.model, run.images, run.options.batch_size))


def _stats(run):
    return run.cached("codebook_stats", lambda: codebook_stats(codes(run), run.model.num_embeddings))


def _needs_codebook(name):
    def applies(model, inputs):
        if model.latent_kind != "code_grid":
            return f"{name} is a VQ-VAE metric (codebook); {type(model).__name__} has no codebook"
        if name == "prior_bits_per_code" and model.prior is None:
            return "prior_bits_per_code needs a VQVAE with a PixelCNN prior; this one has prior=None"
        if name == "codec_bits_per_code" and model.context_model is None:
            return "codec_bits_per_code needs a VQVAE with a context model; this one has context_model=None"
        return None

    return applies


PERPLEXITY = Metric(
    "perplexity", "VQ: exp(entropy) of the code histogram over the eval set",
    lambda run: {"perplexity": _stats(run)["perplexity"]}, keys=("perplexity",),
    applies=_needs_codebook("perplexity"),
)
CODEBOOK_USAGE = Metric(
    "codebook_usage", "VQ: fraction of the K codes used at least once over the eval set",
    lambda run: {"codebook_usage": _stats(run)["codebook_usage"], "codes_used": _stats(run)["codes_used"]},
    keys=("codebook_usage", "codes_used"), applies=_needs_codebook("codebook_usage"),
)
PRIOR_BITS_PER_CODE = Metric(
    "prior_bits_per_code", "VQ: -log2 p(codes) / code positions under the PixelCNN prior",
    lambda run: {"prior_bits_per_code": prior_bits_per_code(run.model, codes(run), run.options.batch_size)},
    keys=("prior_bits_per_code",), applies=_needs_codebook("prior_bits_per_code"),
)
CODEC_BITS_PER_CODE = Metric(
    "codec_bits_per_code", "VQ: bits per code of the exact .vqz context model (-log2 of its integer masses)",
    lambda run: {"codec_bits_per_code": codec_bits_per_code(run.model, codes(run))},
    keys=("codec_bits_per_code",), applies=_needs_codebook("codec_bits_per_code"),
)
RECORDS = (PERPLEXITY, CODEBOOK_USAGE, PRIOR_BITS_PER_CODE, CODEC_BITS_PER_CODE)
