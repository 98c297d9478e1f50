"""`.vqz` version 1 (read-only legacy): the PixelCNN-coded format vaezoo wrote before version 2.

Version-1 files still decode (`decompress_codes`), with the Keras model they were written with
and its PixelCNN prior in TensorFlow; `compress_codes` still writes them for tests of that
path. New files are version 3 (`vaezoo.vqz`, `vaezoo.codec`). The byte layout is in
`docs/vqz_format.md` ("Version 1").

Probabilities are bit-identical at both ends only on one software and hardware stack (float32
logits of the PixelCNN, a numpy softmax, constriction's `Categorical(perfect=False)`); a CRC32
of the codes in the header turns a mismatch into a clear error instead of wrong images.
"""

import dataclasses
import math
import struct
import weakref
import zlib

import numpy as np

from vaezoo import validation
from vaezoo.vqz import MAGIC_V1 as MAGIC
from vaezoo.vqz import Limits, VQZFormatError, VQZModelMismatchError, decode_fixed, encode_fixed

FORMAT_VERSION = 1

#: coding modes (the header's `coding mode` byte).
MODE_FIXED = 0
MODE_PRIOR = 1
MODE_NAMES = {MODE_FIXED: "fixed", MODE_PRIOR: "prior"}
#: images per PixelCNN pass when coding with the prior (stored in the header).
DEFAULT_PRIOR_BATCH = 64

_PREFIX = struct.Struct("<8sHH")  # magic, version, model-name length
_FIELDS = struct.Struct("<32s3H2HIIBHIQ")  # sha256, image shape, grid, K, N, mode, batch, codes crc, payload length
_TRAILER = struct.Struct("<I")  # crc32 of everything before it


@dataclasses.dataclass(frozen=True)
class VQZHeader:
    """The parsed header of a `.vqz` file (see `docs/vqz_format.md`)."""

    version: int
    model_name: str
    weights_sha256: str
    image_shape: tuple
    grid_shape: tuple
    num_embeddings: int
    num_images: int
    mode: str
    prior_batch: int
    codes_crc32: int
    payload_length: int
    header_length: int

    @property
    def total_length(self):
        return self.header_length + self.payload_length + _TRAILER.size


# --------------------------------------------------------------------- prior probabilities
_LOGITS_FNS = weakref.WeakKeyDictionary()


def _logits_fn(prior):
    """One traced `tf.function` per prior: the same graph at compression and decompression."""
    import tensorflow as tf

    fn = _LOGITS_FNS.get(prior)
    if fn is None:
        spec = tf.TensorSpec((None, None, prior.grid_shape[1]), tf.int32)  # rows cropped per step
        ref = weakref.ref(prior)  # the cache must not keep the prior alive

        def logits(codes):
            return ref().logits(codes)

        fn = tf.function(logits, input_signature=[spec], autograph=False)
        _LOGITS_FNS[prior] = fn
    return fn


def _softmax64(logits):
    logits = np.asarray(logits, np.float64)
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def _categorical_entropy_model():
    """constriction's quantized categorical model family, fed one probability table per symbol."""
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _prior_steps(prior, batch):
    """Yield `(position, row, col, probs (b, K) float64)` for a raster-order walk; the
    caller writes the code of each position into `batch` (int32, zeros after) before the
    next step, exactly as the decoder does.

    The PixelCNN's output at row i depends only on rows <= i (its convs are padded above and
    to the left only), so each step runs on rows 0..i: about half the work of full grids.
    """
    fn = _logits_fn(prior)
    _, width = prior.grid_shape
    for position in range(prior.num_positions):
        row, col = divmod(position, width)
        logits = fn(batch[:, : row + 1])[:, row, col, :]
        yield position, row, col, _softmax64(logits.numpy())


def _encode_prior(prior, codes, prior_batch):
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    family = _categorical_entropy_model()
    for start in range(0, len(codes), prior_batch):
        chunk = codes[start : start + prior_batch]
        work = np.zeros_like(chunk)
        symbols, probs = [], []
        for _, row, col, p in _prior_steps(prior, work):
            symbols.append(chunk[:, row, col])
            probs.append(p)
            work[:, row, col] = chunk[:, row, col]
        encoder.encode(np.concatenate(symbols).astype(np.int32), family, np.concatenate(probs, axis=0))
    return encoder.get_compressed().astype("<u4").tobytes()


def _decode_prior(prior, payload, num_images, prior_batch):
    import constriction

    if len(payload) % 4:
        raise VQZFormatError(f"corrupted .vqz: a prior-coded payload is whole 32-bit words, got {len(payload)} bytes.")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    family = _categorical_entropy_model()
    out = []
    for start in range(0, num_images, prior_batch):
        work = np.zeros((min(prior_batch, num_images - start), *prior.grid_shape), np.int32)
        for _, row, col, p in _prior_steps(prior, work):
            work[:, row, col] = np.asarray(decoder.decode(family, p), np.int32)
        out.append(work)
    return np.concatenate(out, axis=0)


def prior_bits(model, codes):
    """-log2 p(codes) under the model's prior, summed over all grids (the ideal size in bits)."""
    codes = np.asarray(_as_codes(model, codes))
    return float(-np.sum(np.asarray(model.prior.log_prob(codes), np.float64)) / math.log(2.0))


# --------------------------------------------------------------------- container
def _codes_crc(codes):
    return zlib.crc32(np.ascontiguousarray(codes, "<i4").tobytes()) & 0xFFFFFFFF


def _as_codes(model, codes):
    """Codes `(n, h, w)` checked against the model's grid and codebook, as int32 numpy."""
    from vaezoo.quantizer import check_codes

    return np.asarray(check_codes(codes, model.num_embeddings, model.grid_shape), np.int32)


def compress_codes(model, codes, mode="auto", model_name=None, prior_batch=DEFAULT_PRIOR_BATCH):
    """Pack VQ code grids into `.vqz` bytes (no encoder network runs).

    Args:
        model: the `VQVAE` whose codebook (and prior) the codes belong to.
        codes: int codes `(n, h, w)` in [0, K), `(h, w)` the model's grid.
        mode: `"auto"` (the prior's range coding unless fixed-length is no larger or the
            model has no prior), `"prior"` or `"fixed"` (ceil(log2 K) bits per code).
        model_name: name stored in the header (default: the model's Keras name).
        prior_batch: images per PixelCNN pass (stored; decoding uses the same batching).

    Returns:
        bytes of a complete `.vqz` file.

    Example:
        >>> data = compress_codes(model, model.encode_to_codes(images))
        >>> np.array_equal(decompress_codes(model, data), model.encode_to_codes(images))
        True
    """
    model = _check_vq_model(model)
    codes = _as_codes(model, codes)
    if mode not in ("auto", "prior", "fixed"):
        raise ValueError(f"mode must be 'auto', 'prior' or 'fixed', got {mode!r}.")
    validation.check_int("prior_batch", prior_batch, 1)
    if prior_batch > 0xFFFF:
        raise ValueError(f"prior_batch must be <= 65535, got {prior_batch}.")
    if mode == "prior" and model.prior is None:
        raise ValueError("mode='prior' needs a model with a PixelCNN prior; this VQVAE has prior=None.")
    name = model.name if model_name is None else str(model_name)
    name_bytes = name.encode("utf-8")
    if len(name_bytes) > 0xFFFF:
        raise ValueError("model_name is longer than 65535 bytes in UTF-8.")
    if len(codes) > 0xFFFFFFFF:
        raise ValueError("too many images for one .vqz file (at most 2**32 - 1).")
    if max(*model.image_shape, *model.grid_shape) > 0xFFFF:
        raise ValueError(f"image and grid sides must be < 65536 for .vqz, got {model.image_shape}.")

    fixed = encode_fixed(list(codes), model.num_embeddings)
    chosen, payload, batch = MODE_FIXED, fixed, 0
    if mode in ("auto", "prior") and model.prior is not None:
        coded = _encode_prior(model.prior, codes, prior_batch)
        if mode == "prior" or len(coded) < len(fixed):
            chosen, payload, batch = MODE_PRIOR, coded, prior_batch

    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name_bytes)) + name_bytes
    head += _FIELDS.pack(
        bytes.fromhex(weights_sha256(model)),
        *model.image_shape,
        *model.grid_shape,
        model.num_embeddings,
        len(codes),
        chosen,
        batch,
        _codes_crc(codes),
        len(payload),
    )
    body = head + payload
    return body + _TRAILER.pack(zlib.crc32(body) & 0xFFFFFFFF)


def read_header(data, limits=Limits()):
    """Parse and check a `.vqz` container (magic, version, lengths, checksum): `VQZHeader`.

    Args:
        data: the file's bytes.
        limits: the `vaezoo.vqz.Limits` the claimed image count and size must be within
            (checked before anything is sized by them).

    Raises:
        VQZFormatError: not a .vqz file, unsupported version, truncated, trailing bytes, a
            claim over `limits` or a checksum mismatch (corruption).
    """
    data = bytes(data)
    limits.check_file_length(len(data))
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise VQZFormatError(
            f"not a .vqz file: expected the magic bytes {MAGIC!r} at the start, got {data[:len(MAGIC)]!r}."
        )
    if len(data) < _PREFIX.size:
        raise VQZFormatError(f"truncated .vqz: {len(data)} bytes, the header alone needs more.")
    _, version, name_length = _PREFIX.unpack_from(data, 0)
    if version != FORMAT_VERSION:
        raise VQZFormatError(
            f"unsupported .vqz format version {version}; this vaezoo reads version {FORMAT_VERSION}."
        )
    header_length = _PREFIX.size + name_length + _FIELDS.size
    if len(data) < header_length + _TRAILER.size:
        raise VQZFormatError(
            f"truncated .vqz: {len(data)} bytes, but the header alone needs {header_length + _TRAILER.size}."
        )
    try:
        name = data[_PREFIX.size : _PREFIX.size + name_length].decode("utf-8")
    except UnicodeDecodeError as error:
        raise VQZFormatError(f"corrupted .vqz: the model name is not UTF-8 ({error}).") from None
    (sha, h, w, c, gh, gw, k, n, mode, batch, codes_crc, payload_length) = _FIELDS.unpack_from(
        data, _PREFIX.size + name_length
    )
    limits.check_count(n)
    limits.check_size(h, w)
    limits.check_total(n * h * w)
    total = header_length + payload_length + _TRAILER.size
    if len(data) < total:
        raise VQZFormatError(f"truncated .vqz: the header announces {total} bytes, the file has {len(data)}.")
    if len(data) > total:
        raise VQZFormatError(f"corrupted .vqz: {len(data) - total} unexpected bytes after the end ({total} bytes).")
    (stored_crc,) = _TRAILER.unpack_from(data, total - _TRAILER.size)
    if zlib.crc32(data[: total - _TRAILER.size]) & 0xFFFFFFFF != stored_crc:
        raise VQZFormatError("corrupted .vqz: the CRC32 checksum of the file does not match its content.")
    if mode not in MODE_NAMES:
        raise VQZFormatError(f"corrupted .vqz: unknown coding mode {mode}.")
    if mode == MODE_PRIOR and batch < 1:
        raise VQZFormatError("corrupted .vqz: prior coding with a prior batch size of 0.")
    if min(h, w, c, gh, gw, k, n) < 1:
        raise VQZFormatError("corrupted .vqz: a zero image, grid, codebook size or image count in the header.")
    return VQZHeader(
        version=version, model_name=name, weights_sha256=sha.hex(), image_shape=(h, w, c), grid_shape=(gh, gw),
        num_embeddings=k, num_images=n, mode=MODE_NAMES[mode], prior_batch=batch, codes_crc32=codes_crc,
        payload_length=payload_length, header_length=header_length,
    )


def decompress_codes(model, data, limits=Limits()):
    """The code grids int32 `(n, h, w)` stored in `.vqz` bytes (no decoder network runs).

    Raises:
        VQZFormatError: bad container or a claim over `limits` (see `read_header`);
            `VQZModelMismatchError` when the
            model's weights sha256 differs from the file's; a codes checksum mismatch after
            prior decoding (the prior computed different probabilities than at compression).
    """
    model = _check_vq_model(model)
    data = bytes(data)
    header = read_header(data, limits)
    sha = weights_sha256(model)
    if header.weights_sha256 != sha:
        raise VQZModelMismatchError(
            f".vqz was written with model {header.model_name!r} (weights sha256 "
            f"{header.weights_sha256[:16]}...), but the given model's weights sha256 is {sha[:16]}...; "
            "decode it with the model it was written with."
        )
    if (header.image_shape, header.grid_shape, header.num_embeddings) != (
        tuple(model.image_shape), tuple(model.grid_shape), model.num_embeddings
    ):
        raise VQZFormatError(
            f"corrupted .vqz: header says images {header.image_shape}, grid {header.grid_shape}, K "
            f"{header.num_embeddings}, but its model has {tuple(model.image_shape)}, "
            f"{tuple(model.grid_shape)}, {model.num_embeddings}."
        )
    payload = data[header.header_length : header.header_length + header.payload_length]
    if header.mode == "fixed":
        codes = np.stack(decode_fixed(payload, [header.grid_shape] * header.num_images, header.num_embeddings))
    else:
        if model.prior is None:
            raise VQZFormatError(".vqz is coded with the prior, but the given model has prior=None.")
        try:
            codes = _decode_prior(model.prior, payload, header.num_images, header.prior_batch)
        except VQZFormatError:
            raise
        except Exception as error:  # constriction raises on data it cannot decode
            raise VQZFormatError(f"corrupted .vqz: the range decoder failed ({error}).") from None
    if _codes_crc(codes) != header.codes_crc32:
        raise VQZFormatError(
            "decoded codes do not match the checksum stored at compression: the prior computed "
            "different probabilities here (different hardware or TensorFlow version?) or the file is corrupted."
        )
    return codes




def weights_sha256(model):
    from vaezoo.workdir import weights_fingerprint

    return weights_fingerprint(model)


def _check_vq_model(model):
    from vaezoo.models.base import check_model

    check_model(model, "The .vqz codec", latent_kinds=("code_grid",))
    model.build_from_images()
    return model


__all__ = ["FORMAT_VERSION", "VQZHeader", "compress_codes", "decompress_codes", "read_header", "prior_bits"]
