"""`.vqz` image files from a VQ-VAE or RQ-VAE: compress and decompress images of any size.

An image (any height and width of at least 8 pixels, the model's channel count) is padded
to the model's stride by repeating its edge pixels, encoded by the convolutional encoder into
a grid of codes, and the grid is entropy-coded with the model's exact context model
(`vaezoo.vqz`, format version 3; `docs/vqz_format.md`).

**Quality.** An RQ-VAE of depth D codes each position with a stack of up to D codes, each
refining the ones before it: `quality=q` (1..D, default D) stores the first q, so one model
gives D operating points (fewer bytes at lower quality); `max_bytes=N` picks the highest
quality whose file fits N bytes (`compress_within`), `min_psnr=P` the lowest whose 8-bit
decodings reach P dB (`compress_to_psnr`). The header records q; decoding needs nothing
else. A VQ-VAE has one operating point, quality 1 (its single code per position):
`quality` may be omitted or 1. An RQ-VAE's stacks are chosen by a beam search for the
stored depths (`vaezoo.code_search`; `beam_width=1` is greedy residual coding, the codes training
uses): on `rq-vae-cifar` a file costs 0-2% more bytes than greedy codes and decodes up to 0.8 dB
nearer the original (`docs/vqz_format.md`, "Which codes"). Decoding reverses this and crops to
the original size. An image larger than the codec model's `max_tile_pixels` runs through the
networks in tiles, each extended by the networks' receptive field, which gives the
whole-image codes and pixels (up to float rounding) within bounded memory (`vaezoo.tiling`).
Without a context model, codes are stored with ceil(log2 K) bits each. Version-2 files
decode as before, and version-1 files (the PixelCNN-coded format) too (`vaezoo.vqz_v1`).

`model` is a `VQVAE` or `RQVAE` (the desktop path: Keras networks, the context model converted to a
float32 `.tflite` once and run on LiteRT) or a `LiteRTCodecModel` (the device path: an export
folder's `.tflite` files, no TensorFlow); both compute the same integers (as does numpy's
reference), so both write the same bytes for the same codes, and either reads the other's files.

Example:
    >>> from vaezoo import codec
    >>> data = codec.compress(model, images)          # uint8 (n, H, W, 3), or a list of sizes
    >>> small = codec.compress(rq_model, images, quality=2)   # an RQ-VAE's first 2 depths
    >>> fast = codec.compress(rq_model, images, beam_width=1)  # greedy codes: a faster encoder
    >>> thumb = codec.compress(rq_model, [image], max_bytes=200)  # the best quality within 200 bytes
    >>> good = codec.compress(rq_model, [image], min_psnr=35.0)   # the fewest depths that give 35 dB
    >>> thumbs = codec.compress_each(rq_model, images, max_bytes=200)   # one file per image
    >>> restored = codec.decompress(model, data)      # float32 in [0, 1], the original sizes
    >>> thumbnails = codec.decompress_many(model, files)   # many files at once, one entry each
    >>> codec.write_vqz("photo.vqz", model, [photo])
    >>> codec.read_vqz("photo.vqz", model)[0].shape == photo.shape
    True
"""

import hashlib
import io
import os

import numpy as np

from vaezoo import code_search, tiling, validation, vqz, vqz_v1
from vaezoo.io import atomic_path
from vaezoo.vqz import Limits, VQZFormatError, VQZModelMismatchError

#: the smallest image side the codec takes.
MIN_SIDE = 8
MODES = ("auto", "context", "fixed")


# --------------------------------------------------------------------- the two paths
class CodecModel:
    """What the codec needs of a model: `stride`, `channels`, `num_embeddings`,
    `weights_sha256`, `depth` (an RQ-VAE's code depth D, or None for a VQ-VAE's code grids),
    `context` (an integer context network or None), `encode(images)` (grids, or full-depth
    code stacks) / `decode(grids)` (grids, or stacks of any depth up to D) on batches of
    equal size, for an RQ-VAE's code search `codebooks` (`(D, K, C)`, or None when the model
    cannot search) and `latents(images)` (the encoder's output), and for tiling `halo`
    (`{"encoder": e, "decoder": d}`, the networks' receptive fields in codes) and
    `max_tile_pixels` (the most pixels one network pass may see; larger images run in tiles)."""

    max_tile_pixels = tiling.MAX_TILE_PIXELS
    depth = None
    codebooks = None

    @property
    def qualities(self):
        """The qualities the model takes: 1..D for an RQ-VAE, 1 for a VQ-VAE."""
        return range(1, (self.depth or 1) + 1)


class KerasCodecModel(CodecModel):
    """The desktop path: a `VQVAE`'s (or `RQVAE`'s) Keras encoder and decoder; its context model runs on
    LiteRT from a float32 conversion made once per model (the same integers as numpy's
    reference `IntegerContextNetwork.logits` and as any device).

    Args:
        model: a `VQVAE` or `RQVAE` (with `context_model` for entropy coding).
        max_tile_pixels: the most pixels one pass of the encoder or decoder sees (a tile with
            its halo, or a batch of whole images); `None`: `vaezoo.tiling.MAX_TILE_PIXELS`.
    """

    def __init__(self, model, max_tile_pixels=None):
        from vaezoo.models.base import check_model
        from vaezoo.workdir import weights_fingerprint

        check_model(model, "The .vqz codec", latent_kinds=("code_grid", "residual_code_grid"))
        model.build_from_images()
        self.model = model
        self.depth = model.depth if model.latent_kind == "residual_code_grid" else None
        self.name = model.name
        self.stride = model.stride
        self.channels = model.image_shape[-1]
        self.num_embeddings = model.num_embeddings
        self.weights_sha256 = weights_fingerprint(model)
        self.context = _litert_context(model, self.weights_sha256)
        self.halo = tiling.receptive_field(model.get_config())
        self.max_tile_pixels = int(max_tile_pixels or tiling.MAX_TILE_PIXELS)
        if self.depth is not None:
            self.codebooks = model.quantizer.codebooks

    def encode(self, images):
        """Code grids int32 `(n, h, w)` of float images `(n, H, W, C)`, sides multiples of the stride."""
        return np.asarray(self.model.encode_grid(images), np.int32)

    def latents(self, images):
        """The encoder's output float32 `(n, h, w, C)` of float images `(n, H, W, C)`."""
        return np.asarray(self.model.latent_grid(images), np.float32)

    def decode(self, grids):
        """Float32 images `(n, H, W, C)` in [0, 1] of code grids `(n, h, w)` (or stacks `(n, h, w, d)`)."""
        return np.asarray(self.model.decode_grid(grids), np.float32)


def _litert_context(model, weights_sha256):
    """The model's context network on LiteRT (the device path's computation, so the desktop
    writes what a device writes, at its speed), converted once per model and weights."""
    if model.context_model is None:
        return None
    cached = getattr(model, "_vaezoo_litert_context", None)
    if cached is not None and cached[0] == weights_sha256:
        return cached[1]
    network = model.context_network()
    from vaezoo import integer_entropy
    from vaezoo.export.tflite import convert_context_network

    runtime = integer_entropy.LiteRTContextNetwork(convert_context_network(network), network)
    object.__setattr__(model, "_vaezoo_litert_context", (weights_sha256, runtime))  # not a tracked Keras attribute
    return runtime


class LiteRTCodecModel(CodecModel):
    """The device path: an export folder (`vaezoo export MODEL --format tflite`) on LiteRT alone.

    Reads `manifest.json`, the variant's `.tflite` (its `encode` / `decode` signatures run
    the encoder and decoder at any size whose sides are multiples of the stride) and the exact context model
    (`context.tflite` + `context.npz`); every file is checked against the sha256 the
    manifest records. Imports numpy, `ai_edge_litert` and constriction, never TensorFlow.

    Args:
        directory: the export folder.
        variant: which encoder/decoder file: `"float32"`, `"float16"`, `"dynamic_int8"` or
            `"full_int8"` (the context model is float32 in every case: exact integers).
        resolver: LiteRT kernels of the context model: `"default"` (XNNPACK), `"builtin"`,
            `"reference"` (all give the same integers).
        num_threads: interpreter threads (`None`: LiteRT's default).
        max_tile_pixels: as for `KerasCodecModel`.

    Example:
        >>> device = LiteRTCodecModel("exports/tflite/vq-vae-cifar")
        >>> data = compress(device, [photo])              # no TensorFlow in this process
        >>> decompress(device, data)[0].shape == photo.shape
        True
    """

    def __init__(self, directory, variant="float32", resolver="default", num_threads=None, max_tile_pixels=None):
        import json

        from ai_edge_litert.interpreter import Interpreter

        from vaezoo import integer_entropy

        self.directory = os.fspath(directory)
        manifest_path = os.path.join(self.directory, "manifest.json")
        if not os.path.isfile(manifest_path):
            raise FileNotFoundError(f"No TFLite export at {self.directory!r}: manifest.json is missing "
                                    "(write one with `vaezoo export MODEL --format tflite`).")
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        codec = manifest.get("codec")
        if not codec:
            raise ValueError(f"{self.directory} is not a codec export (its manifest has no 'codec' entry; "
                             "export a VQVAE or RQVAE with this vaezoo version).")
        entry = (manifest.get("variants") or {}).get(variant)
        if entry is None:
            raise ValueError(f"{self.directory} has no {variant!r} variant; it has "
                             f"{sorted(manifest.get('variants') or {})}.")
        self.name = manifest.get("model_name", "model")
        self.variant = variant
        self.weights_sha256 = manifest["weights_sha256"]
        self.stride, self.channels = int(codec["stride"]), int(codec["channels"])
        self.num_embeddings = int(codec["num_embeddings"])
        self.depth = int(codec["depth"]) if codec.get("depth") else None
        self.halo = tiling.receptive_field(manifest.get("model_config") or {})
        self.max_tile_pixels = int(max_tile_pixels or tiling.MAX_TILE_PIXELS)
        interpreter = Interpreter(model_content=self._checked(entry), num_threads=num_threads)
        self._encode = interpreter.get_signature_runner("encode")
        self._decode = interpreter.get_signature_runner("decode")
        self.context = None
        if codec.get("context_model"):
            files = codec["context_model"]
            with np.load(io.BytesIO(self._checked(files["arrays"]))) as arrays:
                network = integer_entropy.network_from_arrays(dict(arrays))
            self.context = integer_entropy.LiteRTContextNetwork(self._checked(files["tflite"]), network,
                                                               resolver=resolver, num_threads=num_threads)
        if codec.get("codebooks"):  # an RQ-VAE's code search (exports before it: greedy codes only)
            self.codebooks = read_codebooks(self._checked(codec["codebooks"]), self.depth, self.num_embeddings,
                                            where=self.directory)

    def _checked(self, entry):
        path = os.path.join(self.directory, entry["file"])
        with open(path, "rb") as f:
            content = f.read()
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path} does not match the sha256 its manifest records (a file of another export, "
                             "or a damaged one): export the model again.")
        return content

    def encode(self, images):
        return self._encode(images=np.ascontiguousarray(images, np.float32))["codes"].astype(np.int32)

    def latents(self, images):
        return self._encode(images=np.ascontiguousarray(images, np.float32))["latents"].astype(np.float32)

    def decode(self, grids):
        return self._decode(codes=np.ascontiguousarray(grids, np.int32))["images"].astype(np.float32)


def read_codebooks(content, depth, num_embeddings, where="the export"):
    """An RQ-VAE export's `codebooks.npy` bytes as float32 `(depth, num_embeddings, C)`; a
    `ValueError` naming `where` for anything else (not an .npy file, pickled objects, another
    shape, a non-float dtype, NaN or Inf)."""
    try:
        codebooks = np.load(io.BytesIO(content), allow_pickle=False)
    except Exception as error:  # numpy's header parser raises many kinds (tokenize.TokenError too: found by fuzzing)
        raise ValueError(f"{where}: codebooks.npy is not a numpy array file ({error}); export the model again.") from None
    if not isinstance(codebooks, np.ndarray) or codebooks.ndim != 3 or codebooks.shape[:2] != (depth, num_embeddings):
        raise ValueError(f"{where}: codebooks.npy has shape {getattr(codebooks, 'shape', None)}, expected "
                         f"({depth}, {num_embeddings}, C) for this model; export it again.")
    if codebooks.dtype.kind != "f" or not np.all(np.isfinite(codebooks)):
        raise ValueError(f"{where}: codebooks.npy must hold finite floats (dtype {codebooks.dtype}); export the "
                         "model again.")
    return codebooks.astype(np.float32)


def codec_model(model):
    """`model` as a codec model: a `KerasCodecModel` for a `VQVAE`, or the model itself."""
    if isinstance(model, CodecModel):
        return model
    return KerasCodecModel(model)


# --------------------------------------------------------------------- images
def check_image(image, channels, name="image"):
    """One image `(H, W, C)` checked for the codec (the model's channels, sides >= 8, uint8 or
    float in [0, 1]) and returned as float32 in [0, 1]; the errors name `name`."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != channels:
        kind = {1: "greyscale", 3: "RGB"}.get(channels, f"{channels}-channel")
        got = f"{image.shape[-1]} channel(s)" if image.ndim == 3 else f"shape {image.shape}"
        raise ValueError(f"{name} has {got}; the model takes {kind} images (height, width, {channels}).")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{name} is {image.shape[1]}x{image.shape[0]} pixels; the codec needs at least "
                         f"{MIN_SIDE} pixels on each side.")
    if image.dtype.kind not in "uif" or (image.dtype.kind in "iu" and image.dtype != np.uint8):
        raise TypeError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {image.dtype}.")
    return validation.unit_float_images(image, name)


def _image_list(images, channels):
    """Images (an `(n, H, W, C)` array or a list of `(H, W, C)` arrays) as float32 [0, 1] arrays."""
    if isinstance(images, np.ndarray) or hasattr(images, "shape"):
        array = np.asarray(images)
        if array.ndim != 4:
            raise ValueError(f"images must be an array (n, height, width, {channels}) or a list of "
                             f"(height, width, {channels}) arrays, got shape {array.shape}.")
        images = list(array)
    images = list(images)
    if not images:
        raise ValueError("no images given.")
    return [check_image(image, channels, name=f"image {i}") for i, image in enumerate(images)]


def _pad(image, stride):
    h, w = image.shape[:2]
    if not (h % stride or w % stride):
        return image
    return np.pad(image, ((0, -h % stride), (0, -w % stride), (0, 0)), mode="edge")


def _by_size(shapes):
    """Indices grouped by their shape (so equal sizes run as one batch)."""
    groups = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return groups


def _batch(grid_shape, stride, batch_size, max_tile_pixels):
    """How many images of one grid shape one pass takes; 0 when one image needs tiles."""
    if not tiling.fits(grid_shape, stride, max_tile_pixels):
        return 0
    return max(1, min(batch_size, max_tile_pixels // (grid_shape[0] * grid_shape[1] * stride * stride)))


def check_beam_width(codec, beam_width):
    """The code search's beam width for `codec` (see `vaezoo.code_search`): `None` gives
    `code_search.DEFAULT_BEAM_WIDTH` for a model that can search (an RQ-VAE, or the export of
    one with its `codebooks.npy`) and 1 (its encoder's greedy codes) otherwise."""
    codec = codec_model(codec)
    if beam_width is None:
        return 1 if codec.codebooks is None else code_search.DEFAULT_BEAM_WIDTH
    validation.check_int("beam_width", beam_width, 1)
    if beam_width > 1 and codec.codebooks is None:
        what = ("a VQ-VAE has one code per position" if codec.depth is None else
                "this export has no codebooks.npy (exported before the code search): export the model again")
        raise ValueError(f"beam_width={beam_width} needs an RQ-VAE's code search, and {what}; use beam_width=1.")
    return int(beam_width)


def encode_images(codec, images, batch_size=64, max_tile_pixels=None, quality=None, beam_width=None):
    """`(sizes, grids)` of images (any sizes): their original `(h, w)` and code grids.

    An RQ-VAE's code stacks are `quality` deep (default D), found by a beam search of
    `beam_width` (see `check_beam_width`; 1: the encoder's greedy codes, all D depths).
    Images whose padded size is over `max_tile_pixels` (default: the codec model's) are
    encoded in tiles with a halo of the encoder's receptive field: the same codes as whole.
    """
    codec = codec_model(codec)
    width = check_beam_width(codec, beam_width)
    encode = codec.encode
    if width > 1:
        depth = check_quality(codec, quality)

        def encode(batch):
            return code_search.residual_codes(codec.latents(batch), codec.codebooks, depth, width)
    return _encoded(codec, images, encode, batch_size, max_tile_pixels)


def _encoded(codec, images, encode, batch_size=64, max_tile_pixels=None):
    """`(sizes, outputs)`: `encode` (padded images `(n, H, W, C)` -> `(n, h, w, ...)` on the code
    grid: codes or latents) of every image, batched by size, tiled over `max_tile_pixels`."""
    budget = int(max_tile_pixels or codec.max_tile_pixels)
    images = _image_list(images, codec.channels)
    sizes = [image.shape[:2] for image in images]
    grids = [None] * len(images)
    for grid_shape, indices in _by_size(vqz.grid_shape(s, codec.stride) for s in sizes).items():
        batch = _batch(grid_shape, codec.stride, batch_size, budget)
        if not batch:
            for i in indices:
                grids[i] = tiling.encode_tiled(encode, _pad(images[i], codec.stride), codec.stride,
                                               codec.halo["encoder"], budget)
            continue
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            for i, grid in zip(chunk, encode(np.stack([_pad(images[i], codec.stride) for i in chunk]))):
                grids[i] = grid
    return sizes, grids


def decode_images(codec, sizes, grids, batch_size=64, max_tile_pixels=None):
    """Images float32 in [0, 1] of the given sizes from their code grids.

    Grids whose image is over `max_tile_pixels` (default: the codec model's) are decoded in
    tiles with a halo of the decoder's receptive field: the same pixels as whole.
    """
    codec = codec_model(codec)
    budget = int(max_tile_pixels or codec.max_tile_pixels)
    out = [None] * len(grids)
    for shape, indices in _by_size(np.shape(g) for g in grids).items():
        batch = _batch(shape, codec.stride, batch_size, budget)
        if not batch:
            for i in indices:
                out[i] = tiling.decode_tiled(codec.decode, np.asarray(grids[i]), codec.stride,
                                             codec.halo["decoder"], budget, size=tuple(sizes[i]))
            continue
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            for i, image in zip(chunk, codec.decode(np.stack([grids[i] for i in chunk]))):
                h, w = sizes[i]
                out[i] = image[:h, :w]
    return out


def _stack_if_same(images):
    shapes = {image.shape for image in images}
    return np.stack(images) if len(shapes) == 1 else images


# --------------------------------------------------------------------- bytes
def check_quality(codec, quality):
    """`quality` (None: the model's highest) checked against the codec model: the number of
    code depths to store, 1..D for an RQ-VAE of depth D, 1 for a VQ-VAE."""
    qualities = codec.qualities
    if quality is None:
        return qualities[-1]
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or int(quality) not in qualities:
        if codec.depth is None:
            raise ValueError(f"quality must be 1 for a VQ-VAE (its one operating point: one code per position), "
                             f"got {quality!r}; an RQ-VAE offers several qualities.")
        raise ValueError(f"quality must be an integer in [1, {codec.depth}] (the RQ-VAE's code depths to store), "
                         f"got {quality!r}.")
    return int(quality)


def compress_codes(model, grids, sizes, mode="auto", quality=None):
    """`.vqz` bytes of code grids (no encoder runs). `sizes`: each image's original `(h, w)`.

    Args:
        model: a `VQVAE`, `RQVAE` or a `LiteRTCodecModel`.
        grids: int code grids `(h, w)` in [0, K), each the grid of its size padded to the
            stride; for an RQ-VAE code stacks `(h, w, d)` with d >= `quality`.
        sizes: the original image sizes.
        mode: `"auto"` (context coding when the model has a context model), `"context"` or
            `"fixed"` (ceil(log2 K) bits per code).
        quality: an RQ-VAE's code depths to store (1..D; default: all the stacks have); a
            VQ-VAE's only quality is 1 (see `check_quality`).
    """
    codec = codec_model(model)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if mode == "context" and codec.context is None:
        raise ValueError("mode='context' needs a model with a context model (VQVAE(context_model=...)); "
                         "this one has none: use mode='fixed' or train one with fit_context_model.")
    sizes = [tuple(int(v) for v in size) for size in sizes]
    grids = [np.asarray(g) for g in grids]
    if len(sizes) != len(grids):
        raise ValueError(f"{len(grids)} grids but {len(sizes)} sizes.")
    if quality is None and codec.depth is not None and grids:
        quality = min(g.shape[-1] if g.ndim == 3 else codec.depth for g in grids)
    quality = check_quality(codec, quality)
    for i, (size, grid) in enumerate(zip(sizes, grids)):
        expected = vqz.grid_shape(size, codec.stride)
        kind = "integer codes"
        if codec.depth is not None:
            kind = f"integer code stacks of depth {quality} or more"
            expected = (*expected, max(quality, grid.shape[-1] if grid.ndim == 3 else quality))
        if grid.shape != expected or grid.dtype.kind not in "iu" or (grid.size and (grid.min() < 0 or
                                                                                  grid.max() >= codec.num_embeddings)):
            raise ValueError(f"grid {i} must be {kind} in [0, {codec.num_embeddings}) of shape {expected} "
                             f"(an image of {size[1]}x{size[0]} pixels), got {grid.dtype} {grid.shape}.")
    if codec.depth is not None:
        grids = [np.ascontiguousarray(grid[..., :quality]) for grid in grids]
    context = None if mode == "fixed" else codec.context
    return vqz.pack(codec.weights_sha256, codec.stride, sizes, grids, codec.num_embeddings, context,
                    quality=None if codec.depth is None else quality)


def _version(data):
    """1, 2 or 3 from the magic bytes; `VQZFormatError` for anything else."""
    if data[: len(vqz.MAGIC_V1)] == vqz.MAGIC_V1:
        return 1
    if data[:3] == vqz.MAGIC[:3] and len(data) > 3 and data[3] not in vqz.VERSIONS:
        raise VQZFormatError(f"unsupported .vqz format version {data[3]}; this vaezoo reads versions 1, 2 and 3.")
    if data[:4] not in (vqz.MAGIC, vqz.MAGIC_V2):
        raise VQZFormatError(f"not a .vqz file: expected the magic bytes {vqz.MAGIC!r} (or version 2's "
                             f"{vqz.MAGIC_V2!r} or version 1's {vqz.MAGIC_V1!r}) at the start, got {bytes(data[:8])!r}.")
    return data[3]


def read_header(data, limits=Limits()):
    """The checked header of `.vqz` bytes or a file: `vqz.Header` (versions 2 and 3) or `vqz_v1.VQZHeader`."""
    data = _read(data, limits)
    return vqz_v1.read_header(data, limits) if _version(data) == 1 else vqz.parse(data, limits)


def decompress_codes(model, data, limits=Limits()):
    """`(sizes, grids)` stored in `.vqz` bytes (no decoder network runs).

    Raises:
        VQZFormatError: not a .vqz, truncated or corrupted, over `limits`;
            `VQZModelMismatchError`: written with another model.
    """
    return decompress_codes_many(model, [data], limits)[0]


def decompress_codes_many(model, files, limits=Limits()):
    """`decompress_codes` of several `.vqz` files (bytes or paths) at once: a list of
    `(sizes, grids)`, one per file, the same as one call each. The files' codes are
    entropy-decoded together (`vqz.unpack_many`): one network pass per coding step serves the
    blocks of every file, so many small files decode far faster than one call each.

    Raises:
        as `decompress_codes`; with several files the message names the file ("file i", its
        index in `files`).
    """
    codec = codec_model(model)
    out, parsed = [None] * len(files), []
    for i, data in enumerate(files):
        try:
            data = _read(data, limits)
            if _version(data) == 1:
                out[i] = _decompress_v1(codec, data, limits)
                continue
            header = vqz.parse(data, limits)
            _check_model(codec, header)
        except (VQZFormatError, VQZModelMismatchError) as error:
            if len(files) == 1:
                raise
            raise type(error)(f"file {i}: {error}") from None
        parsed.append((i, data, header))
    names = [f"file {i}" for i, _, _ in parsed] if len(files) > 1 else None
    grids = vqz.unpack_many([(data, header) for _, data, header in parsed], codec.num_embeddings, codec.context,
                            names=names)
    for (i, _, header), file_grids in zip(parsed, grids):
        out[i] = (list(header.sizes), file_grids)
    return out


def _decompress_v1(codec, data, limits):
    """`(sizes, grids)` of a version-1 file (PixelCNN-coded: the Keras VQVAE only)."""
    if not isinstance(codec, KerasCodecModel):
        raise VQZFormatError("this is a version-1 .vqz file (PixelCNN-coded): it decodes only with the "
                             "Keras VQVAE it was written with, not a LiteRT codec model.")
    codes = vqz_v1.decompress_codes(codec.model, data, limits)
    h, w = codec.model.image_shape[:2]
    return [(h, w)] * len(codes), list(codes)


def _check_model(codec, header):
    """`VQZModelMismatchError` unless the parsed file was written with `codec`'s model."""
    if header.stacked and header.quality > (codec.depth or 1):
        model_kind = f"an RQ-VAE of depth {codec.depth}" if codec.depth else "a VQ-VAE (quality 1)"
        raise VQZModelMismatchError(f".vqz has quality {header.quality} (code depths per position), more than the "
                                    f"given model, {model_kind}, decodes; decode it with the model it was written "
                                    "with.")
    if header.stacked != (codec.depth is not None):
        kind = "an RQ-VAE's code stacks" if header.stacked else "a VQ-VAE's code grids"
        raise VQZModelMismatchError(f".vqz holds {kind}, but the given model is "
                                    f"{'an RQ-VAE' if codec.depth else 'a VQ-VAE'}; decode it with the model it was "
                                    "written with.")
    if header.model_id != vqz.model_id(codec.weights_sha256) or header.stride != codec.stride:
        raise VQZModelMismatchError(
            f".vqz was written with a model whose weights sha256 starts {header.model_id}, but the given model's "
            f"starts {vqz.model_id(codec.weights_sha256)}; decode it with the model it was written with."
        )


def compress(model, images, mode="auto", quality=None, beam_width=None, max_bytes=None, min_psnr=None):
    """Compress images into `.vqz` bytes.

    Args:
        model: a `VQVAE`, `RQVAE` or a `LiteRTCodecModel`.
        images: an array `(n, H, W, C)` or a list of `(H, W, C)` arrays of any sizes (at least
            8 pixels a side), uint8 in [0, 255] or float in [0, 1], the model's channels.
        mode: see `compress_codes`.
        quality: an RQ-VAE's code depths to store, 1..D (default D: the best images, the
            most bytes); a VQ-VAE's only quality is 1. With `max_bytes`: the highest quality tried.
        beam_width: an RQ-VAE's code search (`vaezoo.code_search`; default
            `code_search.DEFAULT_BEAM_WIDTH`, 1: greedy codes, the fastest encoder). Any width
            gives a file every decoder reads; a VQ-VAE takes only 1.
        max_bytes: a size budget for the whole file: the file of the highest quality (up to
            `quality`) that has at most this many bytes (see `compress_within`).
        min_psnr: a distortion target in dB: the file of the lowest quality (up to `quality`)
            at which every image's 8-bit decoding reaches this PSNR (see `compress_to_psnr`).
            Give `max_bytes` or `min_psnr`, not both.

    Raises:
        ValueError / TypeError: an image of the wrong channels, size, dtype or range, or a
            quality or beam width outside the model's (before any work); with `max_bytes`, a
            budget that even quality 1 exceeds (the message gives its size); with `min_psnr`,
            a target that even quality `quality` misses (the message gives the PSNR reached).

    Example:
        >>> data = compress(model, x_test[:100])
        >>> len(data) / 100      # bytes per image
        >>> thumb = compress(rq_model, [image], max_bytes=200)   # the best quality within 200 bytes
        >>> good = compress(rq_model, [image], min_psnr=35.0)   # the fewest depths that give 35 dB
    """
    codec = codec_model(model)
    quality = check_quality(codec, quality)
    _check_one_target(max_bytes, min_psnr)
    if max_bytes is not None:
        return compress_within(codec, images, max_bytes, mode=mode, quality=quality, beam_width=beam_width)
    if min_psnr is not None:
        return compress_to_psnr(codec, images, min_psnr, mode=mode, quality=quality, beam_width=beam_width)
    sizes, grids = encode_images(codec, images, quality=quality, beam_width=beam_width)
    return compress_codes(codec, grids, sizes, mode=mode, quality=quality)


def _check_one_target(max_bytes, min_psnr):
    if max_bytes is not None and min_psnr is not None:
        raise ValueError(f"give max_bytes or min_psnr, not both (got max_bytes={max_bytes!r}, min_psnr={min_psnr!r}).")


def compress_each(model, images, mode="auto", quality=None, beam_width=None, max_bytes=None, min_psnr=None,
                  names=None):
    """One `.vqz` per image (thumbnails: each its own file): a list of bytes, each what
    `compress(model, [image], ...)` writes for that image, with `max_bytes` or `min_psnr` met
    by each file on its own (so each may have its own quality). Without them the networks and
    the code search run batched over images of equal size, as for one file of all the images
    (the same codes as that file); every image is encoded before any bytes are returned.

    Args:
        names: how errors name each image (default "image i").

    Raises:
        as `compress`, the message prefixed with the image's name.

    Example:
        >>> files = compress_each(rq_model, thumbnails, min_psnr=32.0)
        >>> [read_header(f).quality for f in files]
    """
    codec = codec_model(model)
    quality = check_quality(codec, quality)
    _check_one_target(max_bytes, min_psnr)
    images = _image_list(images, codec.channels)
    names = [f"image {i}" for i in range(len(images))] if names is None else list(names)
    if len(names) != len(images):
        raise ValueError(f"{len(images)} images but {len(names)} names.")
    if max_bytes is None and min_psnr is None:
        sizes, grids = encode_images(codec, images, quality=quality, beam_width=beam_width)
        return [compress_codes(codec, [grid], [size], mode=mode, quality=quality) for size, grid in zip(sizes, grids)]
    files = []
    for name, image in zip(names, images):
        try:
            files.append(compress(codec, [image], mode=mode, quality=quality, beam_width=beam_width,
                                  max_bytes=max_bytes, min_psnr=min_psnr))
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return files


def compress_within(model, images, max_bytes, mode="auto", quality=None, beam_width=None):
    """`.vqz` bytes of the highest quality q <= `quality` (default D) whose file has at most
    `max_bytes` bytes: rate control by a size budget instead of a quality.

    A file's bytes grow with its quality (each stores one more code per position), so a
    bisection over 1..`quality` finds q in about log2(D) + 1 entropy codings. The networks run
    once: the encoder's latents are kept (16 bytes per pixel for a stride-4, 64-channel model)
    and searched at each quality tried (greedy codes, `beam_width=1`, are truncated instead).
    The header records q (`read_header(data).quality`); decoding needs nothing else.

    Raises:
        ValueError: `max_bytes` not a positive integer, or smaller than the quality-1 file
            (the message gives that size), or as `compress`.

    Example:
        >>> data = compress_within(rq_model, [thumbnail], 200)
        >>> read_header(data).quality, len(data) <= 200
    """
    codec = codec_model(model)
    validation.check_int("max_bytes", max_bytes, 1)
    top = check_quality(codec, quality)
    sizes, codes_at = _codes_by_quality(codec, images, top, beam_width)
    files = {}

    def fits(q):
        files[q] = compress_codes(codec, codes_at(q), sizes, mode=mode, quality=q)
        return len(files[q]) <= max_bytes

    if not fits(1):
        raise ValueError(f"max_bytes={max_bytes} is below the smallest file of these images: {len(files[1])} bytes "
                         f"at quality 1 ({len(sizes)} image(s)); allow at least that many bytes.")
    low, high = 1, top  # fits(low); the answer is in low..high
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return files[low]


def compress_to_psnr(model, images, min_psnr, mode="auto", quality=None, beam_width=None):
    """`.vqz` bytes of the lowest quality q <= `quality` (default D) at which every image
    decodes to at least `min_psnr` dB: rate control by a distortion target (cwebp's `-psnr`).

    PSNR: each image's decoding rounded to 8 bits (what `save_images` writes) against the image
    as given, peak 255 (`vaezoo.evaluation.reconstruction.per_image_psnr`; an exact decoding
    counts as 100 dB); a file of several images takes the worst. The PSNR grows with the
    quality, so a bisection over 1..`quality` finds q in about log2(D) + 1 decodings; the
    encoder runs once (as in `compress_within`). The file is the very one `quality=q` writes.

    Raises:
        ValueError: `min_psnr` not a finite number > 0, or above what quality `quality`
            reaches (the message gives the worst image's PSNR there), or as `compress`.

    Example:
        >>> data = compress_to_psnr(rq_model, [photo], 35.0)
        >>> read_header(data).quality     # the fewest depths that reach 35 dB
    """
    from vaezoo.evaluation.reconstruction import per_image_mse, per_image_psnr
    from vaezoo.visualize import as_uint8

    codec = codec_model(model)
    validation.check_positive("min_psnr", min_psnr)
    top = check_quality(codec, quality)
    images = _image_list(images, codec.channels)
    sizes, codes_at = _codes_by_quality(codec, images, top, beam_width)
    worst = {}

    def reaches(q):
        decoded = decode_images(codec, sizes, codes_at(q))
        errors = [per_image_mse(image[None], as_uint8(out)[None] / 255.0)[0] for image, out in zip(images, decoded)]
        worst[q] = float(np.min(per_image_psnr(errors)))
        return worst[q] >= min_psnr

    if not reaches(top):
        what = "its 8-bit decoding" if len(images) == 1 else f"the worst of its {len(images)} 8-bit decodings"
        raise ValueError(f"min_psnr={min_psnr} dB is above what these images reach at quality {top}: "
                         f"{worst[top]:.2f} dB ({what}); ask for at most that, or use a model of more depths.")
    low, high = 1, top  # reaches(high); the answer is in low..high
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle + 1, high)
    return compress_codes(codec, codes_at(high), sizes, mode=mode, quality=high)


def _codes_by_quality(codec, images, top, beam_width):
    """`(sizes, codes_at)` of images for the rate-control searches: their original sizes and
    `codes_at(q)`, their codes for quality q <= `top` (computed once per q). The networks run
    once: a beam search keeps the encoder's float latents (tiled for large images) and searches
    them at each q, the latents of equal-size images in one call; greedy codes
    (`beam_width=1`) are encoded at `top` and truncated."""
    width = check_beam_width(codec, beam_width)
    cache = {}
    if width > 1:
        sizes, latents = _encoded(codec, images, codec.latents)

        def search(q):
            out = [None] * len(latents)
            for indices in _by_size(np.shape(latent) for latent in latents).values():
                codes = code_search.residual_codes(np.stack([latents[i] for i in indices]), codec.codebooks, q, width)
                for i, grid in zip(indices, codes):
                    out[i] = grid
            return out
    else:
        sizes, grids = encode_images(codec, images, quality=top, beam_width=1)

        def search(q):
            return grids if codec.depth is None else [grid[..., :q] for grid in grids]

    def codes_at(q):
        if q not in cache:
            cache[q] = search(q)
        return cache[q]
    return sizes, codes_at


def decompress(model, data, limits=Limits()):
    """Images float32 in [0, 1] from `.vqz` bytes: an `(n, H, W, C)` array when every image has
    the same size, else a list of `(H, W, C)` arrays.

    Raises:
        VQZFormatError: see `decompress_codes`.
    """
    codec = codec_model(model)
    data = _read(data, limits)
    sizes, grids = decompress_codes(codec, data, limits)
    return _stack_if_same(decode_images(codec, sizes, grids))


def decompress_many(model, files, limits=Limits()):
    """`decompress` of several `.vqz` files (bytes or paths) at once: a list with one entry per
    file, each what `decompress` returns for it. The codes of all files are entropy-decoded
    together (`decompress_codes_many`) and their images run through the decoder in shared
    batches: a folder of thumbnails decodes far faster than one `decompress` call per file, to
    the same codes (and the same pixels up to the decoder's float rounding across batch sizes).
    Every file is checked against `limits` on its own.

    Raises:
        as `decompress`; with several files the message names the file ("file i").

    Example:
        >>> files = [codec.compress(model, [image]) for image in thumbnails]
        >>> images = codec.decompress_many(model, files)     # images[i]: (1, H, W, C)
    """
    codec = codec_model(model)
    decoded = decompress_codes_many(codec, files, limits)
    images = decode_images(codec, [size for sizes, _ in decoded for size in sizes],
                           [grid for _, grids in decoded for grid in grids])
    out, start = [], 0
    for sizes, _ in decoded:
        out.append(_stack_if_same(images[start : start + len(sizes)]))
        start += len(sizes)
    return out


def write_vqz(path, model, images, mode="auto", quality=None, beam_width=None, max_bytes=None, min_psnr=None):
    """Compress `images` into the file `path` (written atomically); returns its size in bytes.

    `mode`, `quality`, `beam_width`, `max_bytes` and `min_psnr` as in `compress`. Everything is
    validated and encoded before the file is opened, so bad input (or a budget too small, a
    PSNR target too high) leaves no file.
    """
    data = compress(model, images, mode=mode, quality=quality, beam_width=beam_width, max_bytes=max_bytes,
                    min_psnr=min_psnr)
    with atomic_path(os.fspath(path)) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return len(data)


def read_vqz(path, model, limits=Limits()):
    """Images float32 in [0, 1] from the `.vqz` file `path` (see `decompress`)."""
    return decompress(model, _read(path, limits), limits)


def _read(data, limits=Limits()):
    """The bytes of `data` (bytes, or a path read after its size is checked against `limits`)."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            limits.check_file_length(os.fstat(f.fileno()).st_size)
            return f.read(limits.max_file_bytes + 1)
    return bytes(data)


# --------------------------------------------------------------------- images to files
def save_images(images, folder, prefix="image"):
    """Write float images in [0, 1] (an array or a list of any sizes) as 8-bit PNGs
    `<folder>/<prefix>_0000.png`, ... (each atomically); returns the paths."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    images = list(images)
    digits = max(4, len(str(len(images) - 1)))
    paths = []
    for i, image in enumerate(images):
        array = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
        path = os.path.join(folder, f"{prefix}_{i:0{digits}d}.png")
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
        paths.append(path)
    return paths


__all__ = [
    "MIN_SIDE", "MODES", "Limits", "check_image", "VQZFormatError", "VQZModelMismatchError", "CodecModel",
    "KerasCodecModel", "LiteRTCodecModel", "codec_model", "check_quality", "check_beam_width",
    "encode_images", "decode_images", "compress", "compress_each", "compress_within", "compress_to_psnr",
    "decompress", "decompress_many", "compress_codes", "decompress_codes", "decompress_codes_many", "read_header",
    "write_vqz", "read_vqz", "save_images",
]
