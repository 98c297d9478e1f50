"""TFLite (LiteRT) exports with named `encode` / `decode` signatures, and a parity report.

Each variant is one `.tflite` file converted with `tf.lite.TFLiteConverter` from a
SavedModel with two signatures, so the file keeps them by name and a LiteRT interpreter
runs them with `get_signature_runner("encode")` / `get_signature_runner("decode")`:

| model | signature | input | output |
|---|---|---|---|
| `VQVAE` | `encode` | `images` float32 `(batch, H, W, C)` in [0, 1] | `codes` int32 `(batch, h, w)` |
| `VQVAE` | `decode` | `codes` int32 `(batch, h, w)` in [0, K) | `images` float32 `(batch, H, W, C)` in [0, 1] |
| `RQVAE` | `encode` | `images` float32 `(batch, H, W, C)` in [0, 1] | `codes` int32 `(batch, h, w, D)` (every depth, greedy), `latents` float32 `(batch, h, w, embedding_dim)` (for `vaezoo.code_search`) |
| `RQVAE` | `decode` | `codes` int32 `(batch, h, w, d)`, any d in [1, D]: the first d depths | `images` float32 `(batch, H, W, C)` in [0, 1] |
| `VAE`-like | `encode` | `images` float32 `(batch, H, W, C)` in [0, 1] | `mean`, `stddev` float32 `(batch, latent_dim)` |
| `VAE`-like | `decode` | `z` float32 `(batch, latent_dim)` | `images` float32 `(batch, H, W, C)` in [0, 1] |

The batch axis is dynamic; VQ and RQ signatures take any height and width that are
multiples of the stride (the codec's tiles), and an RQ `decode` any number of depths d, so
one file serves every quality: a codec decodes a prefix `codes[..., :d]`. Variants (`VARIANTS`):

- `float32`: no quantization; matches Keras to float rounding.
- `float16`: weights stored as float16 (about half the size), computed in float32.
- `dynamic_int8`: weights int8 (about a quarter of the size), activations quantized on the
  fly (dynamic-range quantization).
- `full_int8`: weights and activations int8, with activation ranges calibrated on a
  representative dataset (`num_calibration` images drawn from `representative_images`,
  normally training images). Inputs and outputs stay float32 / int32 (the file quantizes at
  its boundary). Ops with no int8 kernel fall back to float (`manifest.json` records
  whether that happened).

In the VQ `encode` signature the nearest code is computed as
`argmax_k(2 z.e_k - |e_k|^2)` (the same argmin of squared distances as
`VectorQuantizer.nearest_codes`, written as one matmul plus a bias so it quantizes well).
Int8 encoders may pick a different code where two codes are nearly equidistant:
`parity_report` gives the code agreement with the Keras model.

Example:
    >>> from vaezoo.export.tflite import export_tflite, parity_report, TFLiteModel
    >>> paths = export_tflite(model, "exports/vq", representative_images=x_train)
    >>> runner = TFLiteModel(paths["full_int8"])
    >>> codes = runner.encode(x_test[:8])              # int32 (8, 8, 8)
    >>> images = runner.decode(codes)                   # float32 in [0, 1]
    >>> report = parity_report(model, paths, x_test[:64])
    >>> report["full_int8"]["psnr"], report["full_int8"]["size_bytes"]
"""

import hashlib
import os
import shutil
import tempfile
import time
import warnings

import numpy as np

from vaezoo import validation
from vaezoo.io import atomic_path, write_json

#: every variant `export_tflite` can write, in the order it writes them.
VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")
#: the signatures every exported file has.
SIGNATURES = ("encode", "decode")


def _check_exportable(model):
    """The model's `latent_kind`; TypeError for a conditional model (its signatures would
    need the condition too) or an object that is not a vaezoo model."""
    from vaezoo.models.base import check_model

    return check_model(model, "TFLite export", conditional=(False,))


def _as_float_images(model, images, name="images"):
    return np.asarray(validation.check_images(images, model.image_shape, name=name))


# --------------------------------------------------------------------- signatures
def signature_functions(model):
    """The `encode` and `decode` functions the exports run, with their input signatures.

    Args:
        model: a `VQVAE`, an `RQVAE` or an unconditional VAE-like vaezoo model.

    Returns:
        dict signature name -> `(fn, input_signature)`; each `fn` takes the tensor named in
        the module docstring and returns a dict of named output tensors.
    """
    import tensorflow as tf

    latent_kind = _check_exportable(model)
    model.build_from_images()
    image_spec = tf.TensorSpec((None, *model.image_shape), tf.float32, name="images")

    if latent_kind == "code_grid":
        dim = model.embedding_dim

        def encode(images):
            z = tf.cast(model.encoder(images, training=False), tf.float32)
            codebook = tf.convert_to_tensor(model.quantizer.embeddings, tf.float32)
            # argmin_k |z - e_k|^2 == argmax_k (2 z.e_k - |e_k|^2): one matmul plus a bias
            scores = tf.matmul(tf.reshape(z, (-1, dim)), 2.0 * codebook, transpose_b=True)
            scores = scores - tf.reduce_sum(tf.square(codebook), axis=1)[None, :]
            codes = tf.argmax(scores, axis=-1, output_type=tf.int32)
            return {"codes": tf.reshape(codes, tf.shape(z)[:3])}

        def decode(codes):
            codebook = tf.convert_to_tensor(model.quantizer.embeddings, tf.float32)
            latents = tf.gather(codebook, codes)
            images = model.likelihood.image(model.decode(latents))
            return {"images": tf.cast(images, tf.float32)}

        # any size whose sides are multiples of the stride: the codec encodes whole photos
        channels = model.image_shape[-1]
        return {
            "encode": (encode, [tf.TensorSpec((None, None, None, channels), tf.float32, name="images")]),
            "decode": (decode, [tf.TensorSpec((None, None, None), tf.int32, name="codes")]),
        }
    elif latent_kind == "residual_code_grid":
        dim, k = model.embedding_dim, model.num_embeddings

        def codebooks():
            return [tf.convert_to_tensor(level.embeddings, tf.float32) for level in model.quantizer.levels]

        def encode(images):
            z = tf.cast(model.encoder(images, training=False), tf.float32)
            residual, codes = tf.reshape(z, (-1, dim)), []
            for codebook in codebooks():  # each level: the VQ encode's matmul plus a bias
                scores = tf.matmul(residual, 2.0 * codebook, transpose_b=True)
                scores = scores - tf.reduce_sum(tf.square(codebook), axis=1)[None, :]
                level_codes = tf.argmax(scores, axis=-1, output_type=tf.int32)
                residual = residual - tf.gather(codebook, level_codes)
                codes.append(level_codes)
            shape = tf.concat([tf.shape(z)[:3], [model.depth]], 0)
            return {"codes": tf.reshape(tf.stack(codes, axis=-1), shape), "latents": z}

        def decode(codes):
            # level l's code c is row l * K + c of the stacked codebooks; sum the given levels
            stacked = tf.concat(codebooks(), axis=0)
            offsets = tf.range(tf.shape(codes)[-1], dtype=tf.int32) * k
            latents = tf.reduce_sum(tf.gather(stacked, codes + offsets), axis=-2)
            images = model.likelihood.image(model.decode(latents))
            return {"images": tf.cast(images, tf.float32)}

        channels = model.image_shape[-1]
        return {
            "encode": (encode, [tf.TensorSpec((None, None, None, channels), tf.float32, name="images")]),
            "decode": (decode, [tf.TensorSpec((None, None, None, None), tf.int32, name="codes")]),
        }
    else:

        def encode(images):
            return model.latent_statistics(images)

        def decode(z):
            images = model.likelihood.image(model.decode(z))
            return {"images": tf.cast(images, tf.float32)}

        decode_spec = tf.TensorSpec((None, int(model.latent_dim)), tf.float32, name="z")
    return {"encode": (encode, [image_spec]), "decode": (decode, [decode_spec])}


def write_saved_model(model, path):
    """Write a SavedModel with exactly the `signature_functions` endpoints (what
    `export_tflite` converts), through `keras.export.ExportArchive`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, spec) in signature_functions(model).items():
        archive.add_endpoint(name=name, fn=fn, input_signature=spec)
    archive.write_out(path, verbose=False)
    return path


def _calibration_samples(model, images, num_calibration, seed=0):
    """`(signature, inputs)` pairs for the int8 calibration: images for `encode`, the Keras
    model's codes / posterior means of the same images for `decode`."""
    x = _as_float_images(model, images, name="representative_images")
    if len(x) > num_calibration:
        pick = np.sort(np.random.default_rng(seed).choice(len(x), num_calibration, replace=False))
        x = x[pick]
    codes = _check_exportable(model) in ("code_grid", "residual_code_grid")
    latents = []
    for start in range(0, len(x), 64):
        batch = x[start : start + 64]
        if codes:
            latents.append(np.asarray(model.encode_to_codes(batch), np.int32))
        else:
            latents.append(np.asarray(model.encode(batch).mean(), np.float32))
    latents = np.concatenate(latents, axis=0)
    decode_name = "codes" if codes else "z"

    def generator():
        for i in range(len(x)):
            yield "encode", {"images": x[i : i + 1]}
        for i in range(len(x)):
            yield "decode", {decode_name: latents[i : i + 1]}

    return generator, len(x)


def _convert(saved_model_dir, variant, signature_keys, representative=None):
    """Convert the SavedModel to one variant; returns `(flatbuffer bytes, info dict)`."""
    import tensorflow as tf

    def converter():
        c = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=list(signature_keys))
        if variant == "float16":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.target_spec.supported_types = [tf.float16]
        elif variant in ("dynamic_int8", "full_int8"):
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "full_int8":
            c.representative_dataset = representative
        return c

    info = {}
    if variant != "full_int8":
        return converter().convert(), info
    with warnings.catch_warnings():  # the calibrator uses tf.lite's own (deprecated) interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        return _convert_full_int8(converter, info)


def _convert_full_int8(converter, info):
    import tensorflow as tf

    strict = converter()
    strict.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        info["integer_only"] = True
        return strict.convert(), info
    except Exception as error:  # an op without an int8 kernel: allow float fallback for it
        info["integer_only"] = False
        info["float_fallback_reason"] = str(error).strip().splitlines()[-1][:300]
        relaxed = converter()
        relaxed.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        return relaxed.convert(), info


def convert_context_network(network):
    """Flatbuffer bytes of a float32 TFLite file computing `network.logits_at` exactly
    (an `IntegerContextNetwork`, or a `RasterContextNetwork`: see `_convert_raster_network`).

    One signature, `context`: `codes` int32 `(n, h, w)` in [0, K] (K = unknown; a code-stack
    network's embedding rows `(n, h, w, slots)`, `integer_entropy.stack_input`) and
    `positions` int32 `(p,)` (flat indices into `h * w`) -> `logits` float32 `(n, p, K)`,
    integer-valued: the network over the whole grid, then the head only where asked (the
    positions of the group being coded). Weights stay float32 (integer values): no
    quantization option applies, since the arithmetic is exact only in float32 with integer
    operands (see `vaezoo.integer_entropy`). Any `h`, `w`, `p` (dynamic shapes).
    """
    import tensorflow as tf

    from vaezoo import integer_entropy as ie

    if network.schedule == ie.RASTER:
        return _convert_raster_network(network)
    embedding, layers, head = _float32_parts(network)

    codes_shape = (None, None, None, network.slots) if network.stacked else (None, None, None)
    width = network.embedding.shape[1] * network.slots

    @tf.function(input_signature=[tf.TensorSpec(codes_shape, tf.int32, name="codes"),
                                  tf.TensorSpec((None,), tf.int32, name="positions")])
    def context(codes, positions):
        a = tf.gather(embedding, codes)
        if network.stacked:  # the slots' rows side by side
            a = tf.reshape(a, tf.concat([tf.shape(codes)[:3], [width]], 0))
        for kernel, bias, scale in layers:
            a = tf.nn.conv2d(a, kernel, 1, "SAME") + bias
            a = tf.minimum(tf.maximum(tf.floor(a * scale), 0.0), float(ie.ACTIVATION_MAX))
        n, channels = tf.shape(a)[0], a.shape[-1]
        picked = tf.gather(tf.reshape(a, [n, -1, channels]), positions, axis=1)
        logits = head(tf.reshape(picked, [-1, channels]))
        return {"logits": tf.reshape(logits, [n, tf.shape(positions)[0], network.num_embeddings])}

    return _save_and_convert(context)


def _float32_parts(network):
    """A frozen network's integers as float32 constants: the embedding, `(kernel, bias, 2^-shift)`
    per layer, and the head as a function of the last activations `(rows, C)` -> integer logits."""
    import tensorflow as tf

    from vaezoo import integer_entropy as ie

    embedding = tf.constant(network.embedding.astype(np.float32))
    layers = [(tf.constant(k.astype(np.float32)), tf.constant(b.astype(np.float32)), 2.0 ** -int(s))
              for k, b, s in zip(network.kernels, network.biases, network.shifts)]
    head_kernel = tf.constant(network.head_kernel.astype(np.float32))
    head_bias = tf.constant(network.head_bias.astype(np.float32))
    head_scale = 2.0 ** -int(network.head_shift)

    def head(a):
        z = tf.matmul(a, head_kernel) + head_bias
        return tf.clip_by_value(tf.floor(z * head_scale), -float(ie.LOGIT_LIMIT), float(ie.LOGIT_LIMIT))

    return embedding, layers, head


def _save_and_convert(context):
    """TFLite bytes of a `tf.function` exported as the signature `context`."""
    import tensorflow as tf

    module = tf.Module()
    module.context = context
    with tempfile.TemporaryDirectory(prefix="vaezoo-context-") as tmp:
        tf.saved_model.save(module, tmp, signatures={"context": context.get_concrete_function()})
        return tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["context"]).convert()


def _convert_raster_network(network):
    """`convert_context_network` of a `RasterContextNetwork`: the same signature, `codes`
    `(n, h, w)` (code stacks: `integer_entropy.raster_stack_input` rows `(n, h, w, 2)`) and
    `positions` `(p,)` -> `logits` `(n, p, K)`, computed from the window of each position only
    (`RasterContextNetwork.logits_at`)."""
    import tensorflow as tf

    from vaezoo import integer_entropy as ie

    top, bottom, side = network.padding
    k = network.num_embeddings
    embedding, layers, head = _float32_parts(network)
    slot_taps = [(slot, len(taps), tf.constant(taps[:, 0] + top, tf.int32), tf.constant(taps[:, 1] + side, tf.int32))
                 for slot, taps in network.slot_taps()]
    width = sum(len(taps) for _, taps in network.slot_taps()) * network.embedding.shape[1]
    codes_shape = (None, None, None, network.slots) if network.stacked else (None, None, None)

    @tf.function(input_signature=[tf.TensorSpec(codes_shape, tf.int32, name="codes"),
                                  tf.TensorSpec((None,), tf.int32, name="positions")])
    def context(codes, positions):
        inputs = codes if network.stacked else tf.expand_dims(codes, -1)
        shape = tf.shape(inputs)
        n, w = shape[0], shape[2]
        unknown = inputs[:, :1, :1, :] // (k + 1) * (k + 1) + k  # each slot's row K, outside the block
        padded = tf.pad(inputs - unknown, [[0, 0], [top, bottom], [side, side], [0, 0]]) + unknown
        rows, cols = positions // w, positions % w
        windows = []
        for slot, count, tap_rows, tap_cols in slot_taps:
            flat = (rows[:, None] + tap_rows[None]) * (w + 2 * side) + cols[:, None] + tap_cols[None]  # (p, T)
            plane = tf.reshape(padded[..., slot], [n, -1])
            windows.append(tf.reshape(tf.gather(plane, tf.reshape(flat, [-1]), axis=1), [n, -1, count]))
        windows = tf.concat(windows, axis=-1) if len(windows) > 1 else windows[0]  # (n, p, T + T')
        a = tf.reshape(tf.gather(embedding, tf.reshape(windows, [-1])), [-1, width])
        for kernel, bias, scale in layers:
            a = tf.minimum(tf.maximum(tf.floor((tf.matmul(a, kernel) + bias) * scale), 0.0), float(ie.ACTIVATION_MAX))
        return {"logits": tf.reshape(head(a), [n, tf.shape(positions)[0], k])}

    return _save_and_convert(context)


def export_tflite(
    model,
    out_dir,
    variants=VARIANTS,
    representative_images=None,
    num_calibration=200,
    basename="model",
):
    """Convert a model to TFLite variants with named `encode` / `decode` signatures.

    Files are written atomically as `<out_dir>/<basename>_<variant>.tflite`, with a
    `manifest.json` (model class, config, weights sha256, signatures, each file's size and
    sha256, calibration details).

    Args:
        model: a `VQVAE`, an `RQVAE` or an unconditional VAE-like vaezoo model.
        out_dir: output folder (created if missing).
        variants: any of `VARIANTS`: `"float32"`, `"float16"`, `"dynamic_int8"`, `"full_int8"`.
        representative_images: images `(n, H, W, C)` (uint8 in [0, 255] or float in [0, 1]),
            normally drawn from the training data; required for `"full_int8"`.
        num_calibration: how many of them calibrate the int8 ranges (a random subset with a
            fixed seed when there are more; every image's code / posterior mean calibrates
            `decode`).
        basename: file name stem.

    Returns:
        dict variant -> path of the written `.tflite` file.

    Raises:
        ValueError: unknown variant, `"full_int8"` without representative images, or
            representative images of the wrong shape.
        TypeError: a model that cannot be exported (conditional, not a vaezoo model).

    Example:
        >>> paths = export_tflite(model, "exports/vq-vae-cifar", representative_images=x_train[:1000])
        >>> sorted(paths)
        ['dynamic_int8', 'float16', 'float32', 'full_int8']
    """
    from vaezoo.workdir import weights_fingerprint

    # the manifest's `kind` (part of the file layout TFLiteModel reads): codes, code stacks or latent vectors
    kind = {"code_grid": "vq", "residual_code_grid": "rq"}.get(_check_exportable(model), "gaussian")
    variants = tuple(variants)
    if not variants:
        raise ValueError(f"variants is empty; choose from {VARIANTS}.")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown TFLite variant {unknown[0]!r}; choose from {VARIANTS}.")
    validation.check_int("num_calibration", num_calibration, 1)
    representative, num_used = None, 0
    if "full_int8" in variants:
        if representative_images is None:
            raise ValueError(
                "The 'full_int8' variant needs representative_images (a few hundred training "
                f"images of shape (n, {', '.join(map(str, model.image_shape))})) to calibrate "
                "activation ranges; pass them or leave 'full_int8' out of variants."
            )
        representative, num_used = _calibration_samples(model, representative_images, num_calibration)

    os.makedirs(out_dir, exist_ok=True)
    workspace = tempfile.mkdtemp(prefix=".tflite-export-", dir=out_dir)
    paths, files = {}, {}
    try:
        saved = write_saved_model(model, os.path.join(workspace, "saved_model"))
        signature_keys = list(signature_functions(model))
        for variant in variants:
            flatbuffer, info = _convert(saved, variant, signature_keys, representative)
            path = os.path.join(out_dir, f"{basename}_{variant}.tflite")
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(flatbuffer)
            paths[variant] = path
            files[variant] = {
                "file": os.path.basename(path),
                "size_bytes": len(flatbuffer),
                "sha256": hashlib.sha256(flatbuffer).hexdigest(),
                **info,
            }
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    if kind in ("vq", "rq"):
        channels = model.image_shape[-1]
        codes = [None, None, None] if kind == "vq" else [None, None, None, model.depth]
        signatures = {
            # any height and width that are multiples of the stride (the training size among them)
            "encode": {"inputs": {"images": ["float32", [None, None, None, channels]]},
                       "outputs": {"codes": ["int32", codes],
                                   **({"latents": ["float32", [None, None, None, model.embedding_dim]]}
                                      if kind == "rq" else {})}},
            "decode": {"inputs": {"codes": ["int32", codes[:3] + ([None] if kind == "rq" else [])]},
                       "outputs": {"images": ["float32", [None, None, None, channels]]}},
        }
    else:
        signatures = {
            "encode": {"inputs": {"images": ["float32", [None, *model.image_shape]]},
                       "outputs": {"mean": ["float32", [None, model.latent_dim]],
                                   "stddev": ["float32", [None, model.latent_dim]]}},
            "decode": {"inputs": {"z": ["float32", [None, model.latent_dim]]},
                       "outputs": {"images": ["float32", [None, *model.image_shape]]}},
        }
    manifest_path = os.path.join(out_dir, "manifest.json")
    manifest = _read_manifest(manifest_path)  # keeps entries of variants exported earlier ...
    fingerprint = weights_fingerprint(model)
    if manifest.get("weights_sha256") != fingerprint:  # ... from the same weights only
        manifest = {}
    manifest.update(
        {
            "format": "vaezoo-tflite",
            "model_class": type(model).__name__,
            "model_name": model.name,
            "model_config": model.get_config(),
            "kind": kind,
            "weights_sha256": fingerprint,
            "signatures": signatures,
            "calibration": {"num_images": num_used} if representative is not None else manifest.get("calibration"),
        }
    )
    manifest.setdefault("variants", {}).update(files)
    if kind in ("vq", "rq"):  # the .vqz codec: VQ-VAE code grids, RQ-VAE code stacks
        manifest["codec"] = _write_codec_files(model, out_dir)
    write_json(manifest, manifest_path)
    return paths


def _write_codec_files(model, out_dir):
    """The codec's part of an export: the exact context model as `context.tflite` (float32,
    signature `context`) and `context.npz` (its integers: head, table), an RQ-VAE's codebooks
    as `codebooks.npy` (float32 `(D, K, C)`, for `vaezoo.code_search`), and what the codec
    needs to know; no context model for a VQ-VAE without one (fixed-length codes only)."""
    import io

    def write(name, content):
        with atomic_path(os.path.join(out_dir, name)) as tmp, open(tmp, "wb") as f:
            f.write(content)
        return {"file": name, "sha256": hashlib.sha256(content).hexdigest()}

    entry = {"stride": model.stride, "channels": model.image_shape[-1], "num_embeddings": model.num_embeddings,
             "context_model": None}
    if model.latent_kind == "residual_code_grid":
        entry["depth"] = model.depth  # code stacks of 1..depth levels: the qualities
        codebooks = io.BytesIO()
        np.save(codebooks, model.quantizer.codebooks)
        entry["codebooks"] = write("codebooks.npy", codebooks.getvalue())
    network = model.context_network()
    if network is None:
        return entry
    arrays = io.BytesIO()
    np.savez(arrays, **network.to_arrays())
    files = {"tflite": ("context.tflite", convert_context_network(network)), "arrays": ("context.npz", arrays.getvalue())}
    entry["context_model"] = {role: write(name, content) for role, (name, content) in files.items()}
    return entry


# --------------------------------------------------------------------- running
class TFLiteModel:
    """A LiteRT interpreter on an exported `.tflite` file, with validated `encode`/`decode`.

    Args:
        path: a file written by `export_tflite`.
        num_threads: interpreter threads (`None`: LiteRT's default).

    Attributes:
        kind: `"vq"`, `"rq"` (an RQ-VAE: code stacks) or `"gaussian"`.
        image_shape: `(H, W, C)`; `grid_shape` `(h, w)` (VQ, RQ) or `latent_dim` (Gaussian);
        `depth` (RQ: the number of quantizer depths D, else None).

    Example:
        >>> runner = TFLiteModel("exports/vq/model_float32.tflite")
        >>> codes = runner.encode(images)          # uint8 or [0, 1] floats
        >>> runner.decode(codes).shape
        (8, 32, 32, 3)
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.isfile(path):
            raise FileNotFoundError(f"No TFLite file at {path!r}.")
        self.path = path
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        missing = [s for s in SIGNATURES if s not in signatures]
        if missing:
            raise ValueError(
                f"{path} has signatures {sorted(signatures)}; a vaezoo export needs {list(SIGNATURES)}."
            )
        self._encode = self.interpreter.get_signature_runner("encode")
        self._decode = self.interpreter.get_signature_runner("decode")
        enc_in = self._encode.get_input_details()["images"]
        dec_in = self._decode.get_input_details()
        self.manifest = _read_manifest(path)
        self.image_shape = tuple(int(d) for d in enc_in["shape_signature"][1:])
        self.depth = None
        if "codes" in dec_in:
            self.kind = "rq" if self.manifest.get("kind") == "rq" else "vq"
            # VQ signatures take any size; the model's own size comes from the manifest
            config = self.manifest.get("model_config") or {}
            if "input_shape" not in config:
                raise ValueError(f"{path}: a VQ-VAE export needs the manifest.json written beside it "
                                 "(its model_config gives the image size).")
            self.image_shape = tuple(int(d) for d in config["input_shape"])
            stride = 2 ** int(config.get("num_downsamples", 2))
            self.grid_shape = (self.image_shape[0] // stride, self.image_shape[1] // stride)
            self.latent_dim = None
            if self.kind == "rq":
                self.depth = int(config["depth"])
        else:
            self.kind = "gaussian"
            self.grid_shape = None
            self.latent_dim = int(dec_in["z"]["shape_signature"][-1])
        self.num_embeddings = ((self.manifest.get("model_config") or {}).get("num_embeddings")
                               if self.kind in ("vq", "rq") else None)

    @property
    def size_bytes(self):
        return os.path.getsize(self.path)

    def encode(self, images):
        """Codes int32 `(batch, h, w)` (VQ), code stacks `(batch, h, w, D)` (RQ) or
        `{"mean", "stddev"}` (Gaussian) of images (uint8 in [0, 255] or float in [0, 1], shape
        `(batch, H, W, C)`)."""
        x = np.ascontiguousarray(np.asarray(validation.check_images(images, self.image_shape, name="images")))
        out = self._encode(images=x)
        if self.kind in ("vq", "rq"):
            return np.asarray(out["codes"], np.int32)
        return {"mean": np.asarray(out["mean"]), "stddev": np.asarray(out["stddev"])}

    def decode(self, latents, depth=None):
        """Images float32 `(batch, H, W, C)` in [0, 1] from codes `(batch, h, w)` (VQ), code
        stacks `(batch, h, w, d)` with d <= D (RQ: the first `depth` of them, default all d) or
        latent vectors `(batch, latent_dim)` (Gaussian)."""
        if self.kind in ("vq", "rq"):
            codes = np.asarray(latents)
            if codes.dtype.kind not in "iu":
                raise TypeError(f"codes must be integers, got dtype {codes.dtype}.")
            grid = ", ".join(map(str, self.grid_shape))
            if self.kind == "rq":
                if (codes.ndim != 4 or codes.shape[1:3] != self.grid_shape or len(codes) == 0
                        or not 1 <= codes.shape[-1] <= self.depth):
                    raise ValueError(f"codes must have shape (batch, {grid}, d) with 1 <= d <= {self.depth} (the "
                                     f"model's depth), got {codes.shape}.")
                if depth is not None:
                    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not (
                            1 <= depth <= codes.shape[-1]):
                        raise ValueError(f"depth must be an integer in [1, {codes.shape[-1]}] (the code levels "
                                         f"given), got {depth!r}.")
                    codes = codes[..., :depth]
            elif codes.ndim != 3 or codes.shape[1:] != self.grid_shape or len(codes) == 0:
                raise ValueError(f"codes must have shape (batch, {grid}), got {codes.shape}.")
            upper = self.num_embeddings
            if codes.min() < 0 or (upper is not None and codes.max() >= upper):
                raise ValueError(
                    f"codes must lie in [0, {upper if upper is not None else 'K'}) (the codebook size); got values in "
                    f"[{codes.min()}, {codes.max()}]."
                )
            out = self._decode(codes=np.ascontiguousarray(codes.astype(np.int32)))
        else:
            z = np.asarray(validation.check_latents(latents, self.latent_dim))
            out = self._decode(z=np.ascontiguousarray(z))
        return np.asarray(out["images"], np.float32)

    def reconstruct(self, images):
        """decode(encode(images)) (the posterior mean for Gaussian models; every depth of an
        RQ-VAE), float32 in [0, 1]."""
        encoded = self.encode(images)
        return self.decode(encoded["mean"] if self.kind == "gaussian" else encoded)


def _read_manifest(path):
    """The `manifest.json` written beside an exported file, or `{}` when there is none."""
    import json

    manifest = os.path.join(os.path.dirname(os.path.abspath(path)), "manifest.json")
    try:
        with open(manifest, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _variant_of(path):
    stem = os.path.basename(path).rsplit(".", 1)[0]
    for variant in VARIANTS:
        if stem.endswith(variant):
            return variant
    return stem


def _keras_outputs(model, x, kind, batch_size=64):
    """Keras reference: encodings, decodings of those encodings, reconstructions."""
    import tensorflow as tf

    enc, rec = [], []
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start : start + batch_size])
        if kind in ("code_grid", "residual_code_grid"):
            codes = model.encode_to_codes(batch)
            enc.append(np.asarray(codes))
            rec.append(np.asarray(model.decode_codes(codes)))
        else:
            posterior = model.encode(batch)
            mean = posterior.mean()
            enc.append(np.concatenate([np.asarray(mean), np.asarray(posterior.stddev())], axis=-1))
            rec.append(np.asarray(model.likelihood.image(model.decode(mean))))
    return np.concatenate(enc), np.concatenate(rec)


def parity_report(model, tflite_paths, images, latency_images=16, num_threads=None):
    """Compare TFLite variants with the Keras model on `images`.

    Per variant (keys of the returned dict), a dict with:

    - `size_bytes`: file size.
    - `encode_max_abs_diff`: max |TFLite - Keras| of the posterior mean and stddev
      (Gaussian); for VQ and RQ models the max |difference| of the chosen code vectors (RQ:
      their sums over the depths).
    - `code_agreement` (VQ, RQ): fraction of code positions (of every depth) equal to the
      Keras codes.
    - `decode_max_abs_diff`: max |TFLite decode - Keras decode| of the SAME (Keras) codes or
      latents: the decoder alone.
    - `reconstruction_max_abs_diff`: max |TFLite decode(TFLite encode(x)) - Keras
      reconstruction|: the whole path, including code flips.
    - `psnr`: mean per-image PSNR (dB) of the TFLite reconstruction against `images`;
      `keras_psnr`: the same for the Keras model.
    - `latency_ms_per_image`: mean wall time of encode + decode of one image (batch 1) over
      `latency_images` images, after one warm-up call.

    Args:
        model: the Keras model the files were exported from.
        tflite_paths: dict variant -> path (as `export_tflite` returns) or a list of paths.
        images: evaluation images `(n, H, W, C)`, uint8 in [0, 255] or float in [0, 1].
        latency_images: images timed one by one (capped at n).
        num_threads: LiteRT interpreter threads.

    Example:
        >>> report = parity_report(model, export_tflite(model, "out", representative_images=x_train), x_test[:100])
        >>> report["float32"]["reconstruction_max_abs_diff"] < 1e-4
        True
    """
    from vaezoo.evaluation.reconstruction import psnr  # the one PSNR (mean of per-image PSNRs)

    kind = _check_exportable(model)
    x = _as_float_images(model, images)
    if not isinstance(tflite_paths, dict):
        tflite_paths = {_variant_of(p): p for p in tflite_paths}
    validation.check_int("latency_images", latency_images, 1)
    keras_enc, keras_rec = _keras_outputs(model, x, kind)
    keras_psnr = psnr(x, keras_rec)
    report = {}
    for variant, path in tflite_paths.items():
        runner = TFLiteModel(path, num_threads=num_threads)
        if kind in ("code_grid", "residual_code_grid"):
            codes = runner.encode(x)
            vectors = np.asarray(model.quantizer.embed(codes)) - np.asarray(model.quantizer.embed(keras_enc))
            enc_diff = float(np.max(np.abs(vectors)))
            extra = {"code_agreement": float(np.mean(codes == keras_enc))}
            decoded_same = runner.decode(keras_enc)
            rec = runner.decode(codes)
        else:
            out = runner.encode(x)
            enc = np.concatenate([out["mean"], out["stddev"]], axis=-1)
            enc_diff = float(np.max(np.abs(enc - keras_enc)))
            extra = {}
            mean = keras_enc[:, : model.latent_dim]
            decoded_same = runner.decode(mean)
            rec = runner.decode(out["mean"])
        keras_dec_same = keras_rec  # Keras decode of the Keras encodings is its reconstruction
        n_time = min(latency_images, len(x))
        runner.reconstruct(x[:1])  # warm-up at batch 1
        start = time.perf_counter()
        for i in range(n_time):
            runner.reconstruct(x[i : i + 1])
        latency = (time.perf_counter() - start) / n_time * 1e3
        report[variant] = {
            "path": path,
            "size_bytes": runner.size_bytes,
            "encode_max_abs_diff": enc_diff,
            **extra,
            "decode_max_abs_diff": float(np.max(np.abs(decoded_same - keras_dec_same))),
            "reconstruction_max_abs_diff": float(np.max(np.abs(rec - keras_rec))),
            "psnr": psnr(x, rec),
            "keras_psnr": keras_psnr,
            "latency_ms_per_image": latency,
        }
    return report


__all__ = ["VARIANTS", "SIGNATURES", "export_tflite", "convert_context_network", "parity_report", "TFLiteModel", "signature_functions", "write_saved_model"]
