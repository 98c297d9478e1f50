"""`.vqz` version 3: the byte layout and the exact entropy coding of code grids and code stacks.

This module knows bytes, code grids and an integer context network; it imports no TensorFlow
(numpy and constriction only), so a device with LiteRT alone reads and writes these files.
`vaezoo.codec` turns images into code grids and back and calls it. The layout and the
contract are specified in `docs/vqz_format.md`; in short (all integers little-endian,
`varint` = unsigned LEB128):

    magic "VQZ\\x03"                    4 bytes (the last byte is the format version)
    model id                           4 bytes: the first 4 bytes of the model's weights sha256
    flags                              1 byte: bit 0 context-coded, bit 1 one size for all images,
                                       bit 2 one image (no count), bit 3 a quality byte follows,
                                       bits 4-6 log2 of the model's stride (pixels per code), bit 7 0
    quality q                          1 byte (bit 3 set: an RQ-VAE's code depth, 1..255; else 1)
    image count n                      varint (absent when bit 2 is set: n = 1)
    image sizes                        varint height, varint width (once, or n times)
    stream lengths                     varint bytes of every range-coder stream but the last (context mode)
    payload                            the streams (context mode) or fixed-length codes
    crc32                              4 bytes: CRC32 of the header bytes followed by every code (int32 LE)

Each image is encoded at its size padded up to the model's stride; its code grid (or, for an
RQ-VAE at quality q, its code stack `(h, w, q)`) is split into blocks of at most `BLOCK` x
`BLOCK` positions, each coded alone depth by depth and group by group (the context
network's group schedule, `integer_entropy.group_map`) with the probabilities
`integer_entropy.masses` computes from the context network's integer logits. Version-2
files (no quality, an image count always) still parse. Blocks of one shape share a range-coder stream up to
`STREAM_CODES` codes (`streams_of`), so streams decode independently (in parallel) while a
file of thumbnails does not pay a stream's flush bytes per image.
"""

import concurrent.futures
import dataclasses
import math
import zlib

import numpy as np

from vaezoo import integer_entropy as ie

#: the magic bytes of version 3, the version written (version 2's start `MAGIC_V2`, version 1's `MAGIC_V1`).
MAGIC = b"VQZ\x03"
MAGIC_V2 = b"VQZ\x02"
MAGIC_V1 = b"\x89VQZ\r\n\x1a\n"
VERSION = 3
#: the versions `parse` reads.
VERSIONS = (2, 3)
#: block side in codes: blocks are entropy-coded independently of each other.
BLOCK = 16
FLAG_CONTEXT = 1
FLAG_SAME_SIZE = 2
#: version 3: one image (the count is omitted) and a quality byte.
FLAG_ONE_IMAGE = 4
FLAG_QUALITY = 8
#: where each version keeps log2 of the stride in the flags.
_STRIDE_BITS = {2: (2, 0x3C), 3: (4, 0x70)}
_KNOWN_FLAGS = {2: FLAG_CONTEXT | FLAG_SAME_SIZE | 0x3C, 3: FLAG_CONTEXT | FLAG_SAME_SIZE | FLAG_ONE_IMAGE | FLAG_QUALITY | 0x70}
#: the largest log2 stride version 3 stores (3 bits).
MAX_LOG_STRIDE = 7
#: the most code depths a file may claim (one byte).
MAX_QUALITY = 255


class VQZFormatError(ValueError):
    """`.vqz` bytes that cannot be decoded: not a .vqz, an unsupported version, truncated or
    corrupted, over a reader limit, or written with a different model."""


class VQZModelMismatchError(VQZFormatError):
    """The file was written with a model whose weights differ from the given model's."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a reader accepts before it allocates anything (defaults fit real photos).

    Args:
        max_images: images per file.
        max_side: pixels per image side.
        max_pixels: pixels per image (height x width).
        max_total_pixels: pixels over all images of a file (times its quality: an RQ-VAE's
            code depths per position).
        max_file_bytes: bytes of a file (checked before a file is read into memory: a sparse
            file can claim terabytes on a few kilobytes of disk).
    """

    max_images: int = 100_000
    max_side: int = 65_535
    max_pixels: int = 100_000_000
    max_total_pixels: int = 1_000_000_000
    max_file_bytes: int = 1 << 30

    def check_file_length(self, length):
        """`VQZFormatError` unless a file of `length` bytes is within `max_file_bytes`."""
        if length > self.max_file_bytes:
            raise VQZFormatError(f".vqz file of {length} bytes; this reader accepts up to {self.max_file_bytes} "
                                 "bytes (Limits.max_file_bytes).")

    def check_count(self, count):
        if not 1 <= count <= self.max_images:
            raise VQZFormatError(f".vqz claims {count} images; this reader accepts 1 to {self.max_images} "
                                 "(Limits.max_images).")

    def check_size(self, height, width):
        if not (1 <= height <= self.max_side and 1 <= width <= self.max_side) or height * width > self.max_pixels:
            raise VQZFormatError(f".vqz claims a {width}x{height} image; this reader accepts sides up to "
                                 f"{self.max_side} and {self.max_pixels} pixels (Limits).")

    def check_total(self, pixels, quality=1):
        """`max_total_pixels` bounds the pixels of a file times its quality (codes per pixel
        scale with the code depth, and so does a reader's memory)."""
        if pixels * quality > self.max_total_pixels:
            depth = f" at quality {quality} ({pixels * quality} pixels x depths)" if quality > 1 else ""
            raise VQZFormatError(f".vqz claims {pixels} pixels in all{depth}; this reader accepts "
                                 f"{self.max_total_pixels} (Limits.max_total_pixels).")


@dataclasses.dataclass(frozen=True)
class Header:
    """The parsed header of a version-2 or version-3 `.vqz` file.

    `quality` is the number of code depths stored per position: an RQ-VAE's depth (1..D),
    and 1 for a VQ-VAE's code grids (a header without a quality byte).
    """

    version: int
    model_id: str
    stride: int
    context_coded: bool
    sizes: tuple
    stream_lengths: tuple
    header_length: int
    payload_length: int
    quality: int = 1
    stacked: bool = False

    def grid_shapes(self):
        """The shape of each image's codes: `(h, w)`, or `(h, w, quality)` for code stacks."""
        shapes = [grid_shape(size, self.stride) for size in self.sizes]
        return [(*shape, self.quality) for shape in shapes] if self.stacked else shapes

    @property
    def num_images(self):
        return len(self.sizes)

    @property
    def mode(self):
        return "context" if self.context_coded else "fixed"


# --------------------------------------------------------------------- varints
def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data, offset, what):
    value, shift = 0, 0
    for i in range(offset, min(offset + 10, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise VQZFormatError(f"truncated or corrupted .vqz: the {what} runs past the end of the file.")


# --------------------------------------------------------------------- grids and blocks
def grid_shape(size, stride):
    """The code grid `(h, w)` of an image of `size` `(height, width)` padded to `stride`."""
    return -(-size[0] // stride), -(-size[1] // stride)


def blocks(shape, block=BLOCK):
    """`(row slice, column slice)` of every block of a grid, in raster order."""
    return [(slice(r, min(r + block, shape[0])), slice(c, min(c + block, shape[1])))
            for r in range(0, shape[0], block) for c in range(0, shape[1], block)]


def model_id(weights_sha256):
    """The 4-byte id a file stores (hex): the first 4 bytes of the weights sha256."""
    return str(weights_sha256)[:8]


def codes_crc(header_bytes, grids):
    crc = zlib.crc32(header_bytes)
    for grid in grids:
        crc = zlib.crc32(np.ascontiguousarray(grid, "<i4").tobytes(), crc)
    return crc & 0xFFFFFFFF


# --------------------------------------------------------------------- entropy coding
def _categorical():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


#: codes per range-coder stream: blocks of one shape share a stream up to this many codes, so
#: a file of small images does not pay a stream's flush and length for every image.
STREAM_CODES = 1024
#: codes per network pass: bounds the memory of a pass whatever a file claims (16,384 codes
#: x K = 512 symbols is 64 MB per array of masses; a pass holds a few such arrays).
CODES_PER_PASS = 16384


def streams_of(shapes, block=BLOCK):
    """The range-coder streams of code grids of the given `(h, w)` shapes, in file order: a list
    of `(block shape, [(grid index, rows, cols), ...])`.

    Blocks are grouped by shape (shapes in order of first appearance, blocks in image then
    raster order), and each shape's blocks are cut into streams of `STREAM_CODES // (h * w)`
    blocks (at least one)."""
    by_shape = {}
    for g, shape in enumerate(shapes):
        for rows, cols in blocks(shape, block):
            by_shape.setdefault((rows.stop - rows.start, cols.stop - cols.start), []).append((g, rows, cols))
    streams = []
    for shape, members in by_shape.items():
        per_stream = max(1, STREAM_CODES // (shape[0] * shape[1]))
        streams += [(shape, members[i : i + per_stream]) for i in range(0, len(members), per_stream)]
    return streams


def stream_count(shapes, block=BLOCK):
    """How many streams `streams_of(shapes)` has, without listing its blocks."""
    counts = {}
    for shape in shapes:
        full_rows, last_row = divmod(shape[0], block)
        full_cols, last_col = divmod(shape[1], block)
        for rows, n_rows in ((block, full_rows), (last_row, 1 if last_row else 0)):
            for cols, n_cols in ((block, full_cols), (last_col, 1 if last_col else 0)):
                if n_rows and n_cols:
                    counts[(rows, cols)] = counts.get((rows, cols), 0) + n_rows * n_cols
    return sum(-(-n // max(1, STREAM_CODES // (h * w))) for (h, w), n in counts.items())


def _passes(streams, per_block=None):
    """Runs of consecutive streams of one block shape holding at most `CODES_PER_PASS` codes
    (at least one stream): `(shape, [stream index, ...])`, one network pass each. With
    `per_block` = 1 (a raster network, whose steps hold one position of every block) the
    bound is on blocks instead: each step's masses stay as small as a group pass's."""
    out = []
    for index, (shape, members) in enumerate(streams):
        codes = len(members) * (per_block or shape[0] * shape[1])
        if out and out[-1][0] == shape and out[-1][2] + codes <= CODES_PER_PASS:
            out[-1][1].append(index)
            out[-1][2] += codes
        else:
            out.append([shape, [index], codes])
    return [(shape, indices) for shape, indices, _ in out]


def _group_logits(context, codes, complete=False):
    """For each (depth, group) in coding order: `(positions, depth, logits)` of a batch of
    blocks, the integer logits `(blocks, positions of the group, K)` computed from `codes` as
    they are when the turn comes (the decoder fills in each group before the next). `codes` are
    grids `(blocks, h, w)` (depth `None`) or stacks `(blocks, h, w, d)`, coded depth 0 first.

    A step that sees no codes at all (the first group, at the first depth or with a network
    that does not look at earlier depths) has the same logits for every block of a shape:
    computed on one block, returned with a leading axis of 1.

    A raster network has one step per position (of every depth in turn, for code stacks); with
    `complete` codes (the encoder's) one step holds many positions (up to `CODES_PER_PASS`
    rows, coded position after position, each for every block), whose logits equal the
    decoder's one-position steps because a position never reads itself, a later one or a
    deeper depth. The network input of a depth is built once: the decoder's codes of each step
    are copied into it before the next."""
    groups = ie.group_map(*codes.shape[1:3], context.schedule)
    if context.schedule == ie.RASTER:
        size = codes.shape[1] * codes.shape[2]
        chunk = max(1, CODES_PER_PASS // len(codes)) if complete else 1  # positions per step
        for depth in (range(codes.shape[3]) if codes.ndim == 4 else [None]):
            rows = ie.raster_input(context, codes, depth)  # code grids: a view of `codes`
            if context.stacked:  # stack rows are code + an offset per (depth, slot): slot 0's, to copy codes in
                offset = ie.raster_input(context, np.zeros_like(codes[:1, :1, :1]), depth)[0, 0, 0, 0]
            first = 0
            if not depth:  # position 0 of the first depth sees no codes: one block's logits serve all
                yield groups == 0, depth, context.logits_at(rows[:1], [0])
                first = 1
            for start in range(first, size, chunk):
                if start and context.stacked and not complete:  # the caller has decoded the position before
                    r, c = divmod(start - 1, codes.shape[2])
                    rows[:, r, c, 0] = codes[:, r, c, depth] + offset
                end = min(start + chunk, size)
                yield (groups >= start) & (groups < end), depth, context.logits_at(rows, np.arange(start, end))
        return
    for depth in (range(codes.shape[3]) if codes.ndim == 4 else [None]):
        for group in range(int(groups.max()) + 1):
            where = groups == group
            if where.any():
                earlier_depths = context.stacked and context.slots > 1 and depth not in (None, 0)
                sees_codes = bool((groups < group).any()) or earlier_depths
                inputs = ie.network_input(context, codes if sees_codes else codes[:1], groups, group, depth)
                yield where, depth, context.logits_at(inputs, np.flatnonzero(where))


def _codes_per_step(context):
    """Codes of a block one coding step reads the masses of: 1 for a raster network, else
    every code of the block (`_passes`'s bound)."""
    return 1 if context.schedule == ie.RASTER else None


def _probabilities(logits, table, blocks):
    """Masses / 2^24 `(blocks, positions, K)` of integer logits `(1 or blocks, positions, K)`."""
    k = logits.shape[-1]
    probabilities = ie.masses_float64(logits.reshape(-1, k), table)
    probabilities *= 2.0**-ie.PRECISION  # exact: dyadic
    return np.broadcast_to(probabilities.reshape(len(logits), -1, k), (blocks, logits.shape[1], k))


def _at(where, depth):
    """The index of a (group, depth) step's codes in a batch of blocks `(blocks, h, w[, d])`."""
    return (slice(None), where) if depth is None else (slice(None), where, depth)


def _spans(streams, indices):
    """`(stream index, first block, end block)` of each stream within a pass's stacked blocks."""
    out, start = [], 0
    for index in indices:
        out.append((index, start, start + len(streams[index][1])))
        start = out[-1][2]
    return out


def encode_grids(grids, context, block=BLOCK):
    """Entropy-code code grids: one bytes stream per `streams_of` stream. A stream holds its
    blocks depth by depth, group by group, and within a group block by block, positions in
    raster order.

    Args:
        grids: list of int code grids `(h, w)` in [0, K), or code stacks `(h, w, d)` (all of one d).
        context: an `IntegerContextNetwork`, `RasterContextNetwork` or `LiteRTContextNetwork`
            (the same integers as the network it runs).
    """
    import constriction

    family = _categorical()
    streams = streams_of([grid.shape[:2] for grid in grids], block)
    encoders = [constriction.stream.queue.RangeEncoder() for _ in streams]
    position_major = context.schedule == ie.RASTER  # a raster step: position after position, each for every block

    def encode_group(indices, symbols, logits):
        probabilities = _probabilities(logits, context.table, len(symbols))
        for index, first, end in _spans(streams, indices):
            span, masses = symbols[first:end], probabilities[first:end]
            if position_major:
                span, masses = span.swapaxes(0, 1), masses.swapaxes(0, 1)
            encoders[index].encode(np.ascontiguousarray(span).reshape(-1), family,
                                   np.ascontiguousarray(masses).reshape(-1, masses.shape[-1]))

    # The masses and range coder of one group run beside the network pass of the next (LiteRT
    # and numpy release the GIL); one worker keeps every stream's groups in order, so the bytes
    # are the same as a sequential loop's.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as worker:
        pending = []
        for _, indices in _passes(streams, _codes_per_step(context)):
            members = [member for index in indices for member in streams[index][1]]
            codes = np.stack([grids[g][rows, cols] for g, rows, cols in members]).astype(np.int32)
            for where, depth, logits in _group_logits(context, codes, complete=True):
                pending.append(worker.submit(encode_group, indices, codes[_at(where, depth)], logits))
                if len(pending) > 2:  # bound the masses held in memory to a few groups
                    pending.pop(0).result()
        for job in pending:
            job.result()
    return [encoder.get_compressed().astype("<u4").tobytes() for encoder in encoders]


def decode_grids(payloads, shapes, context, block=BLOCK):
    """The inverse of `encode_grids`: code grids of the given `(h, w)` shapes (or code stacks
    of `(h, w, d)` shapes) from the streams."""
    return decode_grid_sets([(payloads, shapes)], context, block)[0]


def decode_grid_sets(sets, context, block=BLOCK, names=None):
    """`decode_grids` of several independent `(payloads, shapes)` sets (the files of
    `unpack_many`) at once: a list of grids per set, the same codes as one call each, because a
    block's logits read only its own codes. The streams of every set of one code depth share
    the network passes, so a coding step runs once for the blocks of all of them (what makes
    many one-image files of a raster network fast to decode together).

    `names`: what errors call each set (default: nothing, as for one file).

    Raises:
        VQZFormatError: a set with the wrong stream count or a stream the range decoder rejects.
    """
    import constriction

    family = _categorical()
    label = lambda s: f" ({names[s]})" if names and names[s] else ""  # noqa: E731
    out = [[np.zeros(shape, np.int32) for shape in shapes] for _, shapes in sets]
    by_depths = {}  # sets of one code depth (one pass holds stacks of one shape)
    for s, (_, shapes) in enumerate(sets):
        if shapes:
            by_depths.setdefault(tuple(shapes[0][2:]), []).append(s)
    for depths, members_of in by_depths.items():
        streams, decoders, owners = [], [], []
        for s in members_of:
            payloads, shapes = sets[s]
            own = streams_of([shape[:2] for shape in shapes], block)
            if len(own) != len(payloads):
                raise VQZFormatError(f"corrupted .vqz{label(s)}: {len(payloads)} streams for {len(own)}.")
            streams += [(shape, [(s, g, rows, cols) for g, rows, cols in members]) for shape, members in own]
            for payload in payloads:
                if len(payload) % 4:
                    raise VQZFormatError(f"corrupted .vqz{label(s)}: a stream is whole 32-bit words, got "
                                         f"{len(payload)} bytes.")
                decoders.append(constriction.stream.queue.RangeDecoder(np.frombuffer(payload, "<u4").astype(np.uint32)))
                owners.append(s)
        for shape, indices in _passes(streams, _codes_per_step(context)):
            members = [member for index in indices for member in streams[index][1]]
            codes = np.zeros((len(members), *shape, *depths), np.int32)
            for where, depth, logits in _group_logits(context, codes):
                probabilities = _probabilities(logits, context.table, len(codes))
                count = int(where.sum())
                for index, first, end in _spans(streams, indices):
                    try:
                        span = np.ascontiguousarray(probabilities[first:end]).reshape(-1, probabilities.shape[-1])
                        decoded = decoders[index].decode(family, span)
                    except Exception as error:  # constriction raises on streams it cannot decode
                        raise VQZFormatError(f"corrupted .vqz{label(owners[index])}: the range decoder failed "
                                             f"({error}).") from None
                    codes[first:end][_at(where, depth)] = np.asarray(decoded).reshape(end - first, count)
            for j, (s, g, rows, cols) in enumerate(members):
                out[s][g][rows, cols] = codes[j]
    return out


def bits_per_code(num_embeddings):
    """ceil(log2 K): bits of one code in fixed-length mode (0 when K == 1)."""
    return int(math.ceil(math.log2(num_embeddings))) if num_embeddings > 1 else 0


def encode_fixed(grids, num_embeddings):
    """Every code of every grid with ceil(log2 K) bits, most significant bit first."""
    bits = bits_per_code(num_embeddings)
    if bits == 0:
        return b""
    flat = np.concatenate([g.reshape(-1) for g in grids]).astype(np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((flat[:, None] >> shifts[None, :]) & 1).astype(np.uint8).reshape(-1)).tobytes()


def decode_fixed(payload, shapes, num_embeddings):
    """The inverse of `encode_fixed`: code grids (or stacks) of the given shapes."""
    bits = bits_per_code(num_embeddings)
    count = sum(math.prod(shape) for shape in shapes)
    expected = (count * bits + 7) // 8
    if len(payload) != expected:
        raise VQZFormatError(f"corrupted .vqz: a fixed-length payload of {count} codes x {bits} bits is "
                             f"{expected} bytes, got {len(payload)}.")
    if bits:
        table = np.unpackbits(np.frombuffer(payload, np.uint8))[: count * bits].reshape(count, bits)
        flat = (table.astype(np.int64) @ (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)).astype(np.int32)
    else:
        flat = np.zeros(count, np.int32)
    if flat.size and flat.max() >= num_embeddings:
        raise VQZFormatError(f"corrupted .vqz: decoded code {flat.max()} is outside [0, {num_embeddings}).")
    out, start = [], 0
    for shape in shapes:
        out.append(flat[start : start + math.prod(shape)].reshape(shape))
        start += math.prod(shape)
    return out


# --------------------------------------------------------------------- the container
def pack(weights_sha256, stride, sizes, grids, num_embeddings, context=None, quality=None):
    """The bytes of a complete version-3 file.

    Args:
        weights_sha256: the model's weights sha256 (hex); its first 4 bytes are stored.
        stride: pixels per code (a power of two up to 2^7).
        sizes: `(height, width)` of every original image.
        grids: the code grid `(h, w)` of every image (its size padded to the stride), or with
            `quality` its code stack `(h, w, quality)`.
        num_embeddings: K.
        context: the context network (context mode) or `None` (fixed-length codes).
        quality: `None` for code grids (a VQ-VAE: no quality byte), else the code depth of the
            stacks, 1 to `MAX_QUALITY` (stored in the quality byte).
    """
    if not sizes:
        raise ValueError("no images to write.")
    log_stride = int(stride).bit_length() - 1
    if stride < 1 or 2**log_stride != stride or log_stride > MAX_LOG_STRIDE:
        raise ValueError(f"stride must be a power of two up to 2^{MAX_LOG_STRIDE}, got {stride}.")
    if quality is not None and not 1 <= int(quality) <= MAX_QUALITY:
        raise ValueError(f"quality must be a code depth in [1, {MAX_QUALITY}], got {quality}.")
    shift = _STRIDE_BITS[VERSION][0]
    flags = (FLAG_CONTEXT if context is not None else 0) | (log_stride << shift)
    same = all(tuple(s) == tuple(sizes[0]) for s in sizes)
    flags |= (FLAG_SAME_SIZE if same else 0) | (FLAG_ONE_IMAGE if len(sizes) == 1 else 0)
    flags |= FLAG_QUALITY if quality is not None else 0
    head = bytearray(MAGIC + bytes.fromhex(model_id(weights_sha256)) + bytes([flags]))
    if quality is not None:
        head.append(int(quality))
    if len(sizes) != 1:
        head += _varint(len(sizes))
    for h, w in (sizes[:1] if same else sizes):
        head += _varint(int(h)) + _varint(int(w))
    if context is not None:
        streams = encode_grids(grids, context)
        for stream in streams[:-1]:
            head += _varint(len(stream))
        payload = b"".join(streams)
    else:
        payload = encode_fixed(grids, num_embeddings)
    head = bytes(head)
    return head + payload + codes_crc(head, grids).to_bytes(4, "little")


def parse(data, limits=Limits()):
    """Parse and bound-check a version-3 (or version-2) header: `Header` (nothing is decoded or allocated).

    Every claim is checked against `limits` and against the file's own length before the
    reader sizes anything by it: the image count and sizes (`Limits`), and the stream count
    (each stream's length takes at least one byte of the header).

    Raises:
        VQZFormatError: not version 2 or 3, truncated, a size or count over `limits`, lengths
            that do not add up to the file's length.
    """
    version = {MAGIC: 3, MAGIC_V2: 2}.get(bytes(data[:4]))
    if version is None:
        raise VQZFormatError(f"not a version-2 or version-3 .vqz file (starts with {bytes(data[:4])!r}).")
    limits.check_file_length(len(data))
    if len(data) < 4 + 4 + 1 + 1 + 4:
        raise VQZFormatError(f"truncated .vqz: {len(data)} bytes is shorter than the smallest header.")
    flags = data[8]
    if flags & ~_KNOWN_FLAGS[version]:
        raise VQZFormatError(f"corrupted .vqz: unknown flags {flags:#04x}.")
    shift, mask = _STRIDE_BITS[version]
    stride = 2 ** ((flags & mask) >> shift)
    if version == 2:  # bits 2-5 are the stride there
        flags &= FLAG_CONTEXT | FLAG_SAME_SIZE
    offset, quality = 9, 1
    if flags & FLAG_QUALITY:
        quality, offset = data[offset], offset + 1
        if quality < 1:
            raise VQZFormatError("corrupted .vqz: quality 0 (a code depth is at least 1).")
    if flags & FLAG_ONE_IMAGE:
        n = 1
    else:
        n, offset = _read_varint(data, offset, "image count")
    limits.check_count(n)
    same = bool(flags & FLAG_SAME_SIZE)
    if not same and len(data) < offset + 2 * n:
        raise VQZFormatError(f"truncated .vqz: {n} image sizes do not fit in {len(data)} bytes.")
    sizes = []
    for _ in range(1 if same else n):
        h, offset = _read_varint(data, offset, "image height")
        w, offset = _read_varint(data, offset, "image width")
        limits.check_size(h, w)
        sizes.append((h, w))
    sizes = sizes * n if same else sizes
    limits.check_total(sum(h * w for h, w in sizes), quality)
    lengths = []
    if flags & FLAG_CONTEXT:
        count = stream_count([grid_shape(s, stride) for s in sizes])
        if count - 1 > len(data) - offset - 4:
            raise VQZFormatError(f"truncated .vqz: its images make {count} streams, whose lengths alone need "
                                 f"{count - 1} bytes; {max(len(data) - offset - 4, 0)} are left.")
        for _ in range(count - 1):
            length, offset = _read_varint(data, offset, "stream lengths")
            lengths.append(length)
    payload = len(data) - offset - 4
    if payload < sum(lengths):
        raise VQZFormatError(f"truncated .vqz: the stream lengths add up to {sum(lengths)} bytes, the payload has "
                             f"{max(payload, 0)}.")
    if flags & FLAG_CONTEXT:
        lengths.append(payload - sum(lengths))
    return Header(version=version, model_id=bytes(data[4:8]).hex(), stride=stride,
                  context_coded=bool(flags & FLAG_CONTEXT),
                  sizes=tuple(sizes), stream_lengths=tuple(lengths), header_length=offset, payload_length=payload,
                  quality=int(quality), stacked=bool(flags & FLAG_QUALITY))


def unpack(data, header, num_embeddings, context=None):
    """The code grids (or code stacks) of a parsed file, checked against the stored CRC32."""
    return unpack_many([(data, header)], num_embeddings, context)[0]


def unpack_many(files, num_embeddings, context=None, names=None):
    """`unpack` of several parsed files `[(data, header), ...]` of one model: a list of code
    grids (or stacks) per file, the same as one `unpack` each; the context-coded files are
    entropy-decoded together (`decode_grid_sets`). Errors name the file by `names` (default:
    "file i", its index in `files`, when there are several)."""
    if names is None:
        names = [f"file {i}" for i in range(len(files))] if len(files) > 1 else [""]
    label = lambda i: f" ({names[i]})" if names[i] else ""  # noqa: E731
    out, coded = [None] * len(files), []
    for i, (data, header) in enumerate(files):
        payload = data[header.header_length : header.header_length + header.payload_length]
        if not header.context_coded:
            out[i] = decode_fixed(payload, header.grid_shapes(), num_embeddings)
            continue
        if context is None:
            raise VQZFormatError(f".vqz{label(i)} is context-coded, but the model has no context model "
                                 "(context_model=None).")
        if header.stacked != bool(getattr(context, "stacked", False)):
            kind = "code stacks (an RQ-VAE's)" if header.stacked else "code grids (a VQ-VAE's)"
            raise VQZModelMismatchError(f".vqz{label(i)} holds {kind}, but the given model's context model codes "
                                        "the other kind; decode it with the model it was written with.")
        streams, start = [], 0
        for length in header.stream_lengths:
            streams.append(payload[start : start + length])
            start += length
        coded.append((i, (streams, header.grid_shapes())))
    decoded = decode_grid_sets([streams for _, streams in coded], context, names=[names[i] for i, _ in coded])
    for (i, _), grids in zip(coded, decoded):
        out[i] = grids
    for i, (data, header) in enumerate(files):
        if codes_crc(data[: header.header_length], out[i]) != int.from_bytes(data[-4:], "little"):
            raise VQZFormatError(f"corrupted .vqz{label(i)}: the decoded codes do not match the CRC32 stored at "
                                 "compression (a damaged file, or a model other than the one it was written with).")
    return out


__all__ = ["MAGIC", "MAGIC_V2", "VERSION", "VERSIONS", "MAX_QUALITY", "BLOCK", "STREAM_CODES", "Limits", "Header", "VQZFormatError", "VQZModelMismatchError",
           "pack",
           "parse", "unpack", "unpack_many", "encode_grids", "decode_grids", "decode_grid_sets", "grid_shape", "blocks", "streams_of",
           "stream_count", "model_id", "bits_per_code"]
