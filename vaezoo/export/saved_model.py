"""SavedModel exports with explicit, named signatures, in the layout TF Serving loads.

`export_saved_model(model, "exports/out", model_name="vae-mnist", version=1)` writes

```
exports/out/
  models.config                 TF Serving model_config_list (every exported model)
  batching_parameters.txt       server-side batching defaults (written once, then yours)
  vae-mnist/
    1/                          saved_model.pb + variables/ + assets.extra/vaezoo_export.json
```

The version directory appears in one `rename` of a finished temporary sibling
(`vae-mnist/.tmp-1-...`, a name TF Serving ignores because it is not a number), so an export
that dies half-way never leaves a version the server would try to load.

Signatures (built with `keras.export.ExportArchive`, one endpoint each; every input and
output has the batch on axis 0, so all of them work with `--enable_batching`):

| signature | inputs | outputs |
|---|---|---|
| `encode` | `images` uint8 `(batch, H, W, C)` | `mean`, `stddev` float32 `(batch, latent_dim)`; VQ-VAE: `codes` int32 `(batch, h, w)`, `quantization_error` float32 `(batch,)`; RQ-VAE: `codes` int32 `(batch, h, w, D)` (the first d levels are the depth-d codes), `quantization_error` |
| `decode` | `z` float32 `(batch, latent_dim)`; VQ-VAE: `codes` int32 `(batch, h, w)`; RQ-VAE: `codes` int32 `(batch, h, w, D)` and `depth` int32 `(batch,)` in [1, D] (levels beyond an image's depth are ignored) | `images` float32 in [0, 1], `images_uint8` uint8 |
| `reconstruct` | `images` uint8; RQ-VAE: and `depth` int32 `(batch,)` in [1, D] | `images`, `images_uint8` |
| `sample` | `seed` int32 `(batch,)` | `images`, `images_uint8`: row i is `model.sample(1, seed=seed[i])` |
| `score` | `images` uint8 | `neg_elbo`, `bits_per_dim`, `nll`, `kl` float32 `(batch,)` |
| `serving_default` | as `reconstruct` (RQ-VAE: `images` only, at the full depth) | as `reconstruct` |
| `encode_float`, `reconstruct_float`, `score_float` | `images` float32 in [0, 1] | as without `_float` |

Conditional models (`CVAE`) take `condition` in every signature: int32 labels `(batch,)` in
[0, num_classes) (or float32 `(batch, condition_dim)` for a CVAE on real vectors). `HierarchicalVAE`: `encode` is the top layer's posterior and
`decode` takes a top latent (lower layers at their prior means), as the Python API does.

Design notes:
- `sample` takes one seed per image rather than `(n, seed)` scalars: TF Serving's batching
  concatenates requests on axis 0 and refuses rank-0 inputs ("Batching Run() input tensors
  must have at least one dimension", tensorflow/serving#494), and one seed per row keeps a
  sample independent of what else the server batched it with. Ask for n images with
  seeds `seed, seed + 1, ..., seed + n - 1` (what `vaezoo.serving`'s `client.sample(n, seed)`
  does). The temperature is 1. Each row's random draws come from its own seed, then the
  network runs once on the whole batch (`model.sample_per_seed`), and a VQ-VAE's
  autoregressive prior uses the same row-cached sampler as the Python API
  (`PixelCNN.sample_from_noise`).
- Every signature refuses more than `max_rows` rows (default `DEFAULT_MAX_ROWS`, recorded in
  `assets.extra/vaezoo_export.json` under `limits`) with INVALID_ARGUMENT naming the limit,
  before any work: the check is the first op of the graph and everything else depends on it
  (`tf.control_dependencies`). Without it one int32 seed on the wire asks for a whole image
  (12 KB for 32x32x3) and a few MB of seeds for tens of GB.
- `score` is the anomaly score: the negative ELBO per example, computed deterministically
  with the posterior MEAN in place of the posterior sample (VAE-likes: `-log p(x | E[z]) +
  KL(q(z | x) || p(z))`, KL analytic; hierarchical: posterior means at every layer and the
  per-layer KLs given them; VQ-VAE: exact, the model's ELBO). No random draw, so the same
  image always gets the same score whatever it is batched with. `bits_per_dim` is
  `neg_elbo / (H * W * C * ln 2)`. `deterministic_score(model, images)` is the same number
  in Python.
"""

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import uuid

#: signatures of every export (`serving_default` is `reconstruct`).
SIGNATURES = ("encode", "decode", "reconstruct", "sample", "score", "serving_default")
#: the float-image variants, added unless `float_signatures=False`.
FLOAT_SIGNATURES = ("encode_float", "reconstruct_float", "score_float")
#: version policies `write_model_config` writes.
VERSION_POLICIES = ("latest", "specific", "all")
#: the server-side batching defaults written to `batching_parameters.txt` (a CPU server).
DEFAULT_BATCHING = {
    "max_batch_size": 64,
    "batch_timeout_micros": 2000,
    "max_enqueued_batches": 100,
    "num_batch_threads": 4,
}
#: the most rows (images, seeds, latents, code grids) a signature takes per call unless
#: `export_saved_model(max_rows=...)` / `vaezoo export --max-rows` says otherwise: well above
#: `DEFAULT_BATCHING["max_batch_size"]` (a batched call sees the merged batch), and about
#: 0.15 GB (vae-mnist) to 0.4 GB (vq-vae-cifar) of working memory for `sample` on CPU.
DEFAULT_MAX_ROWS = 1024
#: provenance file written inside every version (TF Serving ignores `assets.extra`).
MANIFEST = os.path.join("assets.extra", "vaezoo_export.json")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ExportExistsError(FileExistsError):
    """The version directory already holds an export (pass `overwrite=True` to replace it)."""


def check_model_name(name):
    """Raise `ValueError` unless `name` is a usable TF Serving model name (it goes into URLs)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "model_name must start with a letter or digit and contain only letters, digits, "
            f"'.', '_' and '-' (it becomes a URL path and a directory), got {name!r}."
        )
    return name


def default_model_name(model):
    """A TF Serving name for `model`: its Keras name, lowercased, other characters -> '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", str(getattr(model, "name", "") or type(model).__name__).lower())
    return name.strip("-._") or "model"


# --------------------------------------------------------------------- models
def _check_exportable(model):
    """The model's `latent_kind`; TypeError for anything that is not a vaezoo model."""
    from vaezoo.models.base import check_model

    return check_model(model, "export_saved_model")


def _condition_spec(model):
    """The wire type of a CVAE's condition: int32 labels or float32 vectors."""
    import tensorflow as tf

    if model.num_classes is not None:
        return tf.TensorSpec((None,), tf.int32, name="condition")
    return tf.TensorSpec((None, model.condition_dim), tf.float32, name="condition")


def _checked_condition(model, condition):
    """Graph checks of a wire condition's values (shapes and dtypes are the model's to check)."""
    import tensorflow as tf

    if model.num_classes is not None:
        k = model.num_classes
        message = f"condition must be int32 class labels in [0, {k}), one per image"
        checks = [
            tf.debugging.assert_non_negative(condition, message=message),
            tf.debugging.assert_less(condition, tf.constant(k, condition.dtype), message=message),
        ]
    else:
        checks = [tf.debugging.assert_all_finite(condition, "condition contains NaN or Inf")]
    with tf.control_dependencies(checks):
        return tf.identity(condition)


def _checked_images(model, images):
    """Graph checks of wire images (shape; float range); returns float32 in [0, 1]."""
    import tensorflow as tf

    from vaezoo import validation

    height, width, channels = model.image_shape
    kind = "uint8 in [0, 255]" if images.dtype == tf.uint8 else "float32 in [0, 1]"
    expected = f"(batch, {height}, {width}, {channels})"
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], 0)
    ok = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(tf.equal(padded[1:4], [height, width, channels])))
    message = f"images must be {kind} with shape {expected}, channels last; got shape"
    checks = [tf.debugging.Assert(ok, [message, shape], summarize=8)]
    if images.dtype != tf.uint8:
        message = f"images must be float32 in [0, 1] with shape {expected}"
        checks += [
            tf.debugging.assert_all_finite(images, message),
            tf.debugging.assert_greater_equal(images, tf.constant(0.0, images.dtype), message=message),
            tf.debugging.assert_less_equal(images, tf.constant(1.0, images.dtype), message=message),
        ]
    with tf.control_dependencies(checks):
        images = tf.identity(images)
    return validation.check_images(images, model.image_shape, name="images")


def _image_outputs(images):
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    return {"images": images, "images_uint8": tf.cast(tf.round(images * 255.0), tf.uint8)}


# --------------------------------------------------------------------- computations
def _score_outputs(model, x, condition):
    """The `score` signature's outputs from the model's deterministic `score_terms`."""
    terms = model.score_terms(x, condition)
    neg_elbo = terms["nll"] + terms["kl"]
    return {
        "neg_elbo": neg_elbo,
        "bits_per_dim": neg_elbo / (model.num_dims * math.log(2.0)),
        "nll": terms["nll"],
        "kl": terms["kl"],
    }


def deterministic_score(model, images, condition=None):
    """The `score` signature's numbers in Python: deterministic negative ELBO per example.

    The posterior mean replaces the posterior sample (so the score has no randomness and
    does not depend on the rest of the batch); for a VQ-VAE it is the model's exact ELBO.
    See `LatentVariableModel.score_terms`.

    Args:
        model: a vaezoo model (VAE, BetaVAE, CVAE, VQVAE, RQVAE, HierarchicalVAE).
        images: uint8 in [0, 255] or float in [0, 1], shape `(batch, H, W, C)`.
        condition: a CVAE's condition (one per image); `None` for unconditional models.

    Returns:
        dict of float32 `(batch,)` tensors: `neg_elbo` and `nll`, `kl` in nats,
        `bits_per_dim`.

    Example:
        >>> scores = deterministic_score(model, test_images)["bits_per_dim"]
        >>> outliers = np.argsort(scores)[-10:]          # the least likely images
    """
    _check_exportable(model)
    return _score_outputs(model, images, condition)


def _sample_rows(model, seed, condition=None):
    """Images `(batch, H, W, C)`: row i is `model.sample(1, seed=seed[i], condition=...)`,
    drawn as one batch by `model.sample_per_seed`."""
    return model.sample_per_seed(seed, condition=condition)


def _bounded_rows(fn, max_rows):
    """`fn` behind a graph check that every input has at most `max_rows` rows (axis 0): an
    InvalidArgument error naming the limit, raised before any of `fn`'s ops run (they all
    depend on the checked inputs)."""
    import tensorflow as tf

    if max_rows is None:
        return fn

    def bounded(*args):
        checks = [
            tf.debugging.assert_less_equal(
                tf.shape(arg, out_type=tf.int64)[0], tf.constant(max_rows, tf.int64),
                message=f"this export takes at most {max_rows} rows per call (max_rows, set by `vaezoo export "
                        f"--max-rows`); send fewer rows per request, e.g. {max_rows} seeds for sample")
            for arg in args
        ]
        with tf.control_dependencies(checks):
            args = [tf.identity(arg) for arg in args]
        return fn(*args)

    return bounded


# --------------------------------------------------------------------- endpoints
def signature_functions(model, float_signatures=True, max_rows=DEFAULT_MAX_ROWS):
    """The export's endpoints: dict name -> `(fn, input_signature)`.

    Each `fn` takes the named tensors of its signature (positionally, in the order of
    `input_signature`) and returns a dict of named output tensors. Used by
    `export_saved_model`; handy for tracing or testing endpoints without writing files.

    Args:
        model: a vaezoo model (VAE, BetaVAE, CVAE, VQVAE, RQVAE, HierarchicalVAE).
        float_signatures: also add `encode_float`, `reconstruct_float`, `score_float`,
            which take float32 images in [0, 1] instead of uint8.
        max_rows: the most rows (axis 0) every input of every signature takes, checked in
            the graph before any work; `None` for no limit.
    """
    import tensorflow as tf

    _check_max_rows(max_rows)
    latent_kind = _check_exportable(model)
    model.build_from_images()
    image_shape = tuple(model.image_shape)
    uint8_images = tf.TensorSpec((None, *image_shape), tf.uint8, name="images")
    float_images = tf.TensorSpec((None, *image_shape), tf.float32, name="images")
    conditional = model.conditional
    condition_spec = [_condition_spec(model)] if conditional else []

    def split(args):
        images, *rest = args
        return images, (_checked_condition(model, rest[0]) if conditional else None)

    def encode(*args):
        images, condition = split(args)
        return model.latent_statistics(_checked_images(model, images), condition)

    def reconstruct(*args):
        images, condition = split(args)
        return _image_outputs(model.reconstruct(_checked_images(model, images), condition))

    def score(*args):
        images, condition = split(args)
        return _score_outputs(model, _checked_images(model, images), condition)

    serving_default = reconstruct
    if latent_kind == "residual_code_grid":
        k, depth = model.num_embeddings, model.depth
        grid = tuple(model.grid_shape)
        depth_spec = tf.TensorSpec((None,), tf.int32, name="depth")
        decode_signature = [tf.TensorSpec((None, *grid, depth), tf.int32, name="codes"), depth_spec]

        def checked_depth(depth_values):
            message = f"depth must be int32 depths in [1, {depth}], one per image"
            checks = [
                tf.debugging.assert_greater_equal(depth_values, 1, message=message),
                tf.debugging.assert_less_equal(depth_values, depth, message=message),
            ]
            with tf.control_dependencies(checks):
                return tf.identity(depth_values)

        def decode(codes, depth_values):
            message = (f"codes must be int32 code indices in [0, {k}) with shape "
                       f"(batch, {grid[0]}, {grid[1]}, {depth})")
            checks = [
                tf.debugging.assert_non_negative(codes, message=message),
                tf.debugging.assert_less(codes, k, message=message),
            ]
            with tf.control_dependencies(checks):
                codes = tf.identity(codes)
            return _image_outputs(model.decode_codes(codes, depth=checked_depth(depth_values)))

        def serving_default(images):  # the full depth: a plain images-in, images-out call
            return _image_outputs(model.reconstruct(_checked_images(model, images)))

        def reconstruct(images, depth_values):
            images = _checked_images(model, images)
            return _image_outputs(model.reconstruct(images, depth=checked_depth(depth_values)))

    elif latent_kind == "code_grid":
        k = model.num_embeddings
        grid = tuple(model.grid_shape)
        decode_signature = [tf.TensorSpec((None, *grid), tf.int32, name="codes")]

        def decode(codes):
            message = f"codes must be int32 code indices in [0, {k}) with shape (batch, {grid[0]}, {grid[1]})"
            checks = [
                tf.debugging.assert_non_negative(codes, message=message),
                tf.debugging.assert_less(codes, k, message=message),
            ]
            with tf.control_dependencies(checks):
                codes = tf.identity(codes)
            return _image_outputs(model.decode_codes(codes))

    else:
        decode_signature = [tf.TensorSpec((None, model.latent_dim), tf.float32, name="z")] + condition_spec

        def decode(z, *rest):
            with tf.control_dependencies([tf.debugging.assert_all_finite(z, "z contains NaN or Inf")]):
                z = tf.identity(z)
            condition = _checked_condition(model, rest[0]) if conditional else None
            return _image_outputs(model.likelihood.image(model.decode(z, condition)))

    def sample(seed, *rest):
        condition = _checked_condition(model, rest[0]) if conditional else None
        return _image_outputs(_sample_rows(model, seed, condition))

    seed_signature = [tf.TensorSpec((None,), tf.int32, name="seed")] + condition_spec
    # an RQ-VAE's reconstruct takes each image's depth; the others, a condition if any
    reconstruct_extra = [depth_spec] if latent_kind == "residual_code_grid" else condition_spec
    endpoints = {
        "encode": (encode, [uint8_images] + condition_spec),
        "decode": (decode, decode_signature),
        "reconstruct": (reconstruct, [uint8_images] + reconstruct_extra),
        "sample": (sample, seed_signature),
        "score": (score, [uint8_images] + condition_spec),
        "serving_default": (serving_default, [uint8_images] + condition_spec),
    }
    if float_signatures:
        endpoints["encode_float"] = (encode, [float_images] + condition_spec)
        endpoints["reconstruct_float"] = (reconstruct, [float_images] + reconstruct_extra)
        endpoints["score_float"] = (score, [float_images] + condition_spec)
    return {name: (_bounded_rows(fn, max_rows), spec) for name, (fn, spec) in endpoints.items()}


def _check_max_rows(max_rows):
    from vaezoo import validation

    if max_rows is not None:
        validation.check_int("max_rows", max_rows, 1)
    return max_rows


def build_export_archive(model, float_signatures=True, max_rows=DEFAULT_MAX_ROWS):
    """A `keras.export.ExportArchive` with every endpoint of `signature_functions` added."""
    import keras

    archive = keras.export.ExportArchive()
    for name, (fn, input_signature) in signature_functions(model, float_signatures, max_rows).items():
        archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
    return archive


# --------------------------------------------------------------------- writing
def _default_mode(mode=0o777):
    """`mode` less the process umask: what `mkdir` / `open` would give (mkdtemp gives 0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _version_dirs(model_dir):
    """Sorted integer versions present under a model's base path."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit() and os.path.isdir(os.path.join(model_dir, d)))


def _write_manifest(model, path, name, version, signatures, max_rows):
    import keras
    import tensorflow as tf

    import vaezoo

    manifest = {
        "model_name": name,
        "version": version,
        "class": type(model).__name__,
        "config": model.get_config(),
        "signatures": list(signatures),
        "limits": {"max_rows": max_rows, "applies_to": list(signatures)},
        "vaezoo": vaezoo.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def export_saved_model(
    model,
    directory,
    model_name=None,
    version=1,
    overwrite=False,
    version_policy="latest",
    float_signatures=True,
    base_path=None,
    batching_parameters=None,
    max_rows=DEFAULT_MAX_ROWS,
):
    """Export `model` as a SavedModel with explicit signatures, in TF Serving's layout.

    Writes `directory/<model_name>/<version>/` (via a temporary sibling and one rename, so
    a failed export leaves nothing TF Serving would load), then adds or updates the model's
    entry in `directory/models.config` and writes `directory/batching_parameters.txt` if it
    is missing. The signatures are listed in this module's docstring.

    Args:
        model: a vaezoo model (VAE, BetaVAE, CVAE, VQVAE, RQVAE, HierarchicalVAE).
        directory: the model base folder the server mounts (e.g. `exports/out`).
        model_name: TF Serving model name (letters, digits, `.`, `_`, `-`); default: the
            Keras name of the model, lowercased.
        version: integer version >= 1 (TF Serving serves the highest by default).
        overwrite: replace an existing non-empty version directory.
        version_policy: `"latest"` (serve the newest version), `"specific"` (serve every
            version now present under `directory/<model_name>/`) or `"all"`.
        float_signatures: also export `encode_float`, `reconstruct_float` and
            `score_float` (float32 images in [0, 1]).
        base_path: the model's base path as the server sees it in `models.config`;
            default `/models/<model_name>` (the Docker mount in `exports/README.md`).
        batching_parameters: dict of batching parameters to (re)write
            `batching_parameters.txt` with; `None` writes `DEFAULT_BATCHING` only if the
            file does not exist.
        max_rows: the most rows (images, seeds, latents or code grids on axis 0) any
            signature takes per call (with server-side batching: per merged batch, so at
            least the batching `max_batch_size`); more fail with INVALID_ARGUMENT naming the
            limit before any work. Recorded in `assets.extra/vaezoo_export.json`. `None`
            for no limit (not advised on a server).

    Returns:
        the path of the version directory.

    Raises:
        ExportExistsError: the version directory is not empty and `overwrite` is False.
        ValueError / TypeError: a bad name, version, policy, model or `max_rows` (also one
            below the batching `max_batch_size`, whose merged batches it would refuse).

    Example:
        >>> from vaezoo.export.saved_model import export_saved_model
        >>> export_saved_model(model, "exports/out", model_name="vae-mnist", version=2)
        'exports/out/vae-mnist/2'
        >>> # docker run -p 8501:8501 --mount type=bind,source=$PWD/exports/out,target=/models \\
        >>> #     tensorflow/serving --model_config_file=/models/models.config
    """
    from vaezoo import validation

    name = check_model_name(model_name if model_name is not None else default_model_name(model))
    validation.check_int("version", version, 1)
    if version_policy not in VERSION_POLICIES:
        raise ValueError(f"version_policy must be one of {VERSION_POLICIES}, got {version_policy!r}.")
    _check_exportable(model)
    _check_max_rows(max_rows)
    directory = os.fspath(directory)
    batch = _batching_max_batch_size(directory, batching_parameters)
    if max_rows is not None and batch is not None and batch > max_rows:
        raise ValueError(f"max_rows={max_rows} is below the server-side batching max_batch_size of {batch} "
                         f"({os.path.join(directory, 'batching_parameters.txt')}): batched calls of up to {batch} "
                         "rows would be refused. Raise max_rows (--max-rows) or lower max_batch_size.")
    model_dir = os.path.join(directory, name)
    final = os.path.join(model_dir, str(int(version)))
    if os.path.isdir(final) and os.listdir(final) and not overwrite:
        raise ExportExistsError(
            f"{final} already holds an export (version {version} of {name!r}). Export a new "
            "version (a higher --version) or pass overwrite=True (--overwrite) to replace it."
        )
    if os.path.exists(final) and not os.path.isdir(final):
        raise ExportExistsError(f"{final} exists and is not a directory; remove it first.")

    archive = build_export_archive(model, float_signatures, max_rows)
    signatures = SIGNATURES + (FLOAT_SIGNATURES if float_signatures else ())
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{int(version)}-", dir=model_dir)
    old = None
    try:
        os.chmod(tmp, _default_mode())  # readable by a server running as another user
        archive.write_out(tmp, verbose=False)
        _write_manifest(model, os.path.join(tmp, MANIFEST), name, int(version), signatures, max_rows)
        if os.path.isdir(final):
            if os.listdir(final):
                if not overwrite:  # another export finished first
                    raise ExportExistsError(f"{final} was written by another export meanwhile.")
                old = os.path.join(model_dir, f".old-{int(version)}-{uuid.uuid4().hex[:8]}")
                os.rename(final, old)  # move the old version aside, then swap
            else:
                os.rmdir(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(final):
            os.rename(old, final)
            old = None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    with _config_lock(directory):  # concurrent exports into one folder keep every entry
        write_model_config(directory, name, version_policy=version_policy, base_path=base_path)
        write_batching_parameters(directory, batching_parameters)
    return final


# --------------------------------------------------------------------- models.config
@contextlib.contextmanager
def _config_lock(directory):
    """An exclusive lock on `directory/.models.config.lock` (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; exports into one folder should not overlap
        yield
        return
    with open(os.path.join(directory, ".models.config.lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


_TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{}<>:;,\[\]]|[^\s{}<>:;,\[\]"\'#]+')


def _tokens(text):
    pos, out = 0, []
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"models.config: cannot parse text at offset {pos}: {text[pos:pos + 20]!r}")
        token = match.group(0)
        pos = match.end()
        if not token.isspace() and not token.startswith("#"):
            out.append(token)
    return out


def parse_text_proto(text):
    """Parse protobuf text format (as in `models.config`) into `[(field, value), ...]`.

    A value is a string (quoted strings unquoted), a bare token (numbers, enums) or, for
    a nested message, another such list. Repeated fields appear once per value.
    """
    tokens = _tokens(text)
    pos = 0

    def message(end):
        nonlocal pos
        fields = []
        while pos < len(tokens) and tokens[pos] != end:
            field = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos >= len(tokens):
                raise ValueError(f"models.config: field {field!r} has no value.")
            token = tokens[pos]
            if token in ("{", "<"):
                pos += 1
                fields.append((field, message("}" if token == "{" else ">")))
                pos += 1
            elif token == "[":  # a short-form repeated scalar: [1, 2]
                pos += 1
                while tokens[pos] != "]":
                    if tokens[pos] != ",":
                        fields.append((field, _scalar(tokens[pos])))
                    pos += 1
                pos += 1
            else:
                fields.append((field, _scalar(token)))
                pos += 1
            while pos < len(tokens) and tokens[pos] in (";", ","):
                pos += 1
        if end is not None and pos >= len(tokens):
            raise ValueError("models.config: a message is not closed.")
        return fields

    return message(None)


class _Quoted(str):
    """A string value that was quoted in the text (and is written back quoted)."""


def _scalar(token):
    if token[0] in "\"'":
        return _Quoted(re.sub(r"\\(.)", r"\1", token[1:-1]))
    return token


def format_text_proto(fields, indent=0):
    """Write `[(field, value), ...]` (see `parse_text_proto`) as protobuf text format."""
    pad = "  " * indent
    lines = []
    for field, value in fields:
        if isinstance(value, list):
            lines.append(f"{pad}{field} {{")
            lines.append(format_text_proto(value, indent + 1))
            lines.append(f"{pad}}}")
        elif isinstance(value, _Quoted):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{pad}{field}: "{escaped}"')
        else:
            lines.append(f"{pad}{field}: {value}")
    return "\n".join(line for line in lines if line)


def _version_policy(policy, versions):
    if policy == "latest":
        return [("latest", [("num_versions", "1")])]
    if policy == "all":
        return [("all", [])]
    return [("specific", [("versions", str(v)) for v in versions])]


def write_model_config(directory, model_name, version_policy="latest", base_path=None):
    """Add or update `model_name`'s entry in `directory/models.config` (atomically).

    Other models' entries, and other fields of this model's entry (e.g. `version_labels`),
    are kept. The file is TF Serving's `ModelServerConfig` text format.

    Args:
        directory: the folder that holds one subfolder per model.
        model_name: the model's name (its subfolder).
        version_policy: `"latest"`, `"specific"` (every version now under the model's
            folder) or `"all"`.
        base_path: the model's folder as the server sees it; default `/models/<name>`.

    Returns:
        the path of `models.config`.
    """
    from vaezoo.io import atomic_path

    check_model_name(model_name)
    if version_policy not in VERSION_POLICIES:
        raise ValueError(f"version_policy must be one of {VERSION_POLICIES}, got {version_policy!r}.")
    directory = os.fspath(directory)
    path = os.path.join(directory, "models.config")
    fields = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            fields = parse_text_proto(f.read())
    lists = [value for key, value in fields if key == "model_config_list"]
    if not lists:
        fields.append(("model_config_list", []))
        lists = [fields[-1][1]]
    configs = lists[0]
    entry = None
    for key, value in configs:
        if key == "config" and any(k == "name" and v == model_name for k, v in value):
            entry = value
            break
    if entry is None:
        entry = [("name", _Quoted(model_name))]
        configs.append(("config", entry))
    versions = _version_dirs(os.path.join(directory, model_name))
    updates = {
        "base_path": _Quoted(base_path if base_path is not None else f"/models/{model_name}"),
        "model_platform": _Quoted("tensorflow"),
        "model_version_policy": _version_policy(version_policy, versions),
    }
    for key, value in updates.items():
        for i, (k, _) in enumerate(entry):
            if k == key:
                entry[i] = (key, value)
                break
        else:
            entry.append((key, value))
    header = "# TF Serving model config, written by `vaezoo export` (entries of other models are kept).\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(header + format_text_proto(fields) + "\n")
        os.chmod(tmp, _default_mode(0o666))
    return path


def _batching_max_batch_size(directory, parameters):
    """The `max_batch_size` the export folder's batching will use (the given parameters, else
    the existing `batching_parameters.txt`, else `DEFAULT_BATCHING`), or None if it sets none."""
    if parameters is None:
        path = os.path.join(directory, "batching_parameters.txt")
        if not os.path.exists(path):
            return DEFAULT_BATCHING["max_batch_size"]
        with open(path, encoding="utf-8") as f:
            fields = dict((k, v) for k, v in parse_text_proto(f.read()) if k == "max_batch_size")
        value = fields.get("max_batch_size")
        value = dict(value).get("value") if isinstance(value, list) else value
        return None if value is None else int(value)
    value = parameters.get("max_batch_size")
    return None if value is None else int(value)


def write_batching_parameters(directory, parameters=None):
    """Write `directory/batching_parameters.txt` for `--enable_batching`.

    Args:
        directory: the export folder.
        parameters: dict of `BatchingParameters` fields (e.g. `max_batch_size`,
            `batch_timeout_micros`, `allowed_batch_sizes` as a list); `None` writes
            `DEFAULT_BATCHING` if the file does not exist and keeps an existing file.

    Returns:
        the path of the file.
    """
    from vaezoo.io import atomic_path

    path = os.path.join(os.fspath(directory), "batching_parameters.txt")
    if parameters is None and os.path.exists(path):
        return path
    parameters = dict(DEFAULT_BATCHING if parameters is None else parameters)
    lines = ["# TF Serving BatchingParameters (text format), read with --enable_batching."]
    for key, value in parameters.items():
        if isinstance(value, bool):
            lines.append(f"{key}: {str(value).lower()}")
        elif isinstance(value, (list, tuple)):
            lines += [f"{key}: {int(v)}" for v in value]
        else:
            lines.append(f"{key} {{ value: {int(value)} }}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(tmp, _default_mode(0o666))
    return path
