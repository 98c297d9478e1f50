"""Tiles for the codec's networks: bounded memory, the same numbers as the whole-image pass.

A VQ-VAE's encoder and decoder are convolutional, so a 12-megapixel photo can be encoded whole,
but its first layers then hold gigabytes of activations (6.3 GB peak for `vq-vae-cifar` at
4000x3000 on this machine; `benchmarks/large_images.py`). The codec therefore cuts a large
image into tiles on the code grid, extends every tile by a halo of at least the network's
receptive field, runs the extended tile and keeps only its interior. Every code (or pixel) of
an interior then depends on exactly the same inputs as in the whole-image pass, and where a
tile touches the image's border it ends where the image ends, so the convolutions' zero
padding falls where it falls for the whole image: the result equals the whole-image
computation up to float rounding (no seams; tested). Tiling is an implementation detail of
the networks: the `.vqz` file does not change.

The receptive field is computed from the model's config (`VQVAE`'s architecture: stride-2 4x4
convs, a 3x3 conv, residual blocks of a 3x3 and a 1x1 conv, a 1x1 pre-quantization conv; the
decoder mirrors it), so the device path (an export's `manifest.json` holds the config) needs
no TensorFlow. numpy only.

Example:
    >>> receptive_field(model.get_config())
    {'encoder': 4, 'decoder': 4}
    >>> list(split(10, interior=4))
    [(0, 3), (3, 6), (6, 10)]
"""

import math

import numpy as np

#: the default bound on the pixels one network pass sees (a tile with its halo, or a batch of
#: whole images): 1024 x 1024. With `vq-vae-cifar` a 12-megapixel photo then compresses and
#: decompresses within about 1 GB peak resident memory (`benchmarks/large_images.py`).
MAX_TILE_PIXELS = 1 << 20


# --------------------------------------------------------------------- receptive field
def _same_pad(kernel, stride):
    """Keras 'same' padding before the input, for inputs whose size is a multiple of the stride."""
    return max(kernel - stride, 0) // 2


def conv_layers(config):
    """The encoder's and decoder's convolutions of a `VQVAE` config, in order, as
    `(kernel, stride, pad_before, transposed)` (mirrors `VQVAE._build_encoder/_build_decoder`)."""
    downsamples = int(config.get("num_downsamples", 2))
    blocks = int(config.get("num_residual_blocks", 2))
    residual = [(3, 1, 1, False), (1, 1, 0, False)] * blocks
    encoder = [(4, 2, _same_pad(4, 2), False)] * downsamples + [(3, 1, 1, False)] + residual + [(1, 1, 0, False)]
    decoder = [(3, 1, 1, False)] + residual + [(4, 2, _same_pad(4, 2), True)] * downsamples
    return encoder, decoder


def _inputs_of(layer, lo, hi):
    """The input positions that outputs `lo..hi` (inclusive) of one layer depend on."""
    kernel, stride, pad, transposed = layer
    if transposed:  # output o = stride * i + t - pad, t in [0, kernel)
        return math.ceil((lo + pad - kernel + 1) / stride), (hi + pad) // stride
    return stride * lo - pad, stride * hi - pad + kernel - 1


def input_interval(layers, lo, hi):
    """The input positions (inclusive interval, may reach outside the image) that outputs
    `lo..hi` of a stack of layers depend on."""
    for layer in reversed(layers):
        lo, hi = _inputs_of(layer, lo, hi)
    return lo, hi


def receptive_field(config):
    """Halo widths in codes, `{"encoder": e, "decoder": d}`, of a `VQVAE` config.

    `e`: the code at grid position j depends only on pixels of codes j - e .. j + e (its
    pixels from `stride * (j - e)` to `stride * (j + e + 1) - 1`); `d`: the pixels of code j
    depend only on codes j - d .. j + d. Along each axis (the networks are separable in
    extent); measured against the networks in tests/test_tiling.py.
    """
    encoder, decoder = conv_layers(config)
    stride = 2 ** int(config.get("num_downsamples", 2))
    lo, hi = input_interval(encoder, 0, 0)  # pixels of code 0, which covers pixels 0 .. stride - 1
    e = max(math.ceil(-lo / stride), math.ceil((hi - (stride - 1)) / stride), 0)
    lo, hi = input_interval(decoder, 0, stride - 1)  # codes of the pixels of code 0
    d = max(-lo, hi, 0)
    return {"encoder": int(e), "decoder": int(d)}


# --------------------------------------------------------------------- tiles
def split(length, interior):
    """`[(start, stop), ...]` covering `0..length` in about equal parts of at most `interior`."""
    n = max(1, -(-length // max(1, interior)))
    bounds = [i * length // n for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def interior_side(halo, stride, max_tile_pixels):
    """Codes along a tile's side such that the tile with its halo has at most `max_tile_pixels`
    pixels (at least 1 code: a budget below one halo'd code is exceeded, not refused)."""
    side = math.isqrt(max(1, int(max_tile_pixels))) // stride
    return max(1, side - 2 * halo)


def tiles(grid_shape, halo, stride, max_tile_pixels):
    """The tiles of a code grid `(h, w)`: `(interior, extended)` pairs of `(rows, cols)` slices in
    codes; the extended slice is the interior grown by `halo` codes, clipped to the grid."""
    h, w = grid_shape
    side = interior_side(halo, stride, max_tile_pixels)
    for r0, r1 in split(h, side):
        for c0, c1 in split(w, side):
            rows = slice(max(0, r0 - halo), min(h, r1 + halo))
            cols = slice(max(0, c0 - halo), min(w, c1 + halo))
            yield (slice(r0, r1), slice(c0, c1)), (rows, cols)


def fits(grid_shape, stride, max_tile_pixels):
    """Whether one network pass over a whole grid stays within `max_tile_pixels` pixels."""
    return grid_shape[0] * grid_shape[1] * stride * stride <= max_tile_pixels


def encode_tiled(encode, image, stride, halo, max_tile_pixels):
    """Code grid `(h, w)` (or code stack `(h, w, d)`, or latents `(h, w, C)`: whatever `encode`
    gives on the code grid, in its dtype) of ONE padded image `(H, W, C)` (sides multiples of
    `stride`), by tiles.

    `encode`: images `(1, H', W', C)` -> grids `(1, H'/stride, W'/stride[, ...])`.
    """
    h, w = image.shape[0] // stride, image.shape[1] // stride
    out = None
    for (rows, cols), (erows, ecols) in tiles((h, w), halo, stride, max_tile_pixels):
        tile = image[erows.start * stride : erows.stop * stride, ecols.start * stride : ecols.stop * stride]
        grid = encode(np.ascontiguousarray(tile)[None])[0]
        if out is None:
            out = np.empty((h, w, *grid.shape[2:]), grid.dtype)
        out[rows, cols] = grid[rows.start - erows.start : rows.stop - erows.start,
                               cols.start - ecols.start : cols.stop - ecols.start]
    return out


def decode_tiled(decode, grid, stride, halo, max_tile_pixels, size=None):
    """Image `(H, W, C)` float32 of ONE code grid `(h, w)` (or code stack `(h, w, d)`) by
    tiles, cropped to `size` `(H, W)` (default: the whole `h * stride` x `w * stride`).

    `decode`: grids `(1, h', w'[, d])` -> images `(1, h' * stride, w' * stride, C)`.
    """
    h, w = grid.shape[:2]
    height, width = size if size is not None else (h * stride, w * stride)
    out = None
    for (rows, cols), (erows, ecols) in tiles((h, w), halo, stride, max_tile_pixels):
        y0, x0 = rows.start * stride, cols.start * stride
        if y0 >= height or x0 >= width:
            continue
        pixels = decode(np.ascontiguousarray(grid[erows, ecols])[None])[0]
        if out is None:
            out = np.empty((height, width, pixels.shape[-1]), np.float32)
        y1, x1 = min(rows.stop * stride, height), min(cols.stop * stride, width)
        dy, dx = y0 - erows.start * stride, x0 - ecols.start * stride
        out[y0:y1, x0:x1] = pixels[dy : dy + y1 - y0, dx : dx + x1 - x0]
    return out


__all__ = ["MAX_TILE_PIXELS", "conv_layers", "input_interval", "receptive_field", "split", "interior_side",
           "tiles", "fits", "encode_tiled", "decode_tiled"]
