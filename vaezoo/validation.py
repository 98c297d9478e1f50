"""Input checks shared by the public API: images, config keys and numeric arguments.

Every public call validates its input here, before TensorFlow sees it, so a user gets a
`ValueError`/`TypeError` that names what was expected and what came instead of a traceback
from deep inside a graph.
"""

import difflib

import numpy as np


class ConfigError(ValueError):
    """A config has an unknown key or a value of the wrong kind."""


def check_keys(given, valid, where):
    """Raise `ConfigError` if `given` has keys that are not in `valid`.

    The message names the bad key, suggests the closest valid one and lists them all.
    """
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"Unknown key {key!r} in {where}.{hint} Valid keys: {', '.join(sorted(valid))}."
    )


def check_positive(name, value, allow_zero=False):
    """Raise `ValueError` unless `value` is a finite number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    ok = value >= 0 if allow_zero else value > 0
    if not np.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")


def check_int(name, value, minimum):
    """Raise unless `value` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")


#: the default of `max_samples_per_call`: images one `sample` call draws at most (4096 is about
#: 0.6 GB of working memory for vae-mnist and 1.5 GB for vq-vae-cifar on CPU).
MAX_SAMPLES_PER_CALL = 4096


def check_count_limit(name, value, limit, owner):
    """Raise a ValueError when a count that sizes an output, `value`, is over `limit`; the
    message names the limit and how to raise it (`owner.max_samples_per_call`)."""
    if limit is not None and value > limit:
        raise ValueError(f"{name}={value} is over the limit of {limit} images per call ({owner}.max_samples_per_call): "
                         f"draw in batches of at most {limit}, or raise {owner}.max_samples_per_call.")


def is_symbolic(x):
    """True for graph tensors (inside tf.function), whose values cannot be read."""
    import tensorflow as tf

    return isinstance(x, tf.Tensor) and not hasattr(x, "numpy")


def check_images(x, image_shape, name="x"):
    """Validate a batch of images and return it as float32 in [0, 1].

    Accepts uint8 in [0, 255] or floats in [0, 1], channels last, shape
    `(batch, *image_shape)`. Eager inputs have their values checked (range, NaN/Inf,
    empty batch); graph tensors only their static shape and dtype.

    Raises:
        TypeError: wrong dtype.
        ValueError: wrong rank/shape/channels, empty batch, values out of range or
            not finite.
    """
    import tensorflow as tf

    expected = f"(batch, {', '.join(str(d) for d in image_shape)})"
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        x = np.asarray(x)
        if x.dtype == object or x.dtype.kind not in "uif":
            raise TypeError(
                f"{name} must be uint8 in [0, 255] or float in [0, 1] with shape {expected}, "
                f"got dtype {x.dtype}."
            )
    dtype = tf.as_dtype(x.dtype)
    if not (dtype == tf.uint8 or dtype.is_floating):
        raise TypeError(
            f"{name} must be uint8 in [0, 255] or float in [0, 1] with shape {expected}, "
            f"got dtype {dtype.name}."
        )
    shape = tuple(x.shape)
    if len(shape) != len(image_shape) + 1:
        raise ValueError(
            f"{name} must have shape {expected} (channels last), got shape {shape}."
        )
    for got, want in zip(shape[1:], image_shape):
        if got is not None and got != want:
            raise ValueError(
                f"{name} must have shape {expected} (channels last), got shape {shape}."
            )
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; expected at least one image of shape {expected}.")
    if is_symbolic(x):
        return tf.cast(x, tf.float32) / 255.0 if dtype == tf.uint8 else tf.cast(x, tf.float32)
    return tf.convert_to_tensor(unit_float_images(np.asarray(x), name))


def unit_float_images(values, name="x"):
    """uint8 [0, 255] or float [0, 1] numpy values -> float32 in [0, 1] (numpy only, no shape check).

    Raises:
        TypeError: another dtype. ValueError: NaN/Inf or floats outside [0, 1].
    """
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / 255.0
    if values.dtype.kind != "f":
        raise TypeError(f"{name} must be uint8 in [0, 255] or float in [0, 1], got dtype {values.dtype}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or Inf; expected finite floats in [0, 1].")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        hint = " (uint8-range values in a float array? pass uint8 or divide by 255)" if hi > 1.0 else ""
        raise ValueError(
            f"{name} must be float in [0, 1] or uint8 in [0, 255]; got float values in "
            f"[{lo:g}, {hi:g}]{hint}."
        )
    return values.astype(np.float32)


def check_latents(z, latent_dim, name="z"):
    """Validate a batch of latent vectors `(batch, latent_dim)` and return float32."""
    import tensorflow as tf

    if not isinstance(z, (tf.Tensor, tf.Variable)):
        z = np.asarray(z)
        if z.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a float array of shape (batch, {latent_dim}), got dtype {z.dtype}.")
    shape = tuple(z.shape)
    if len(shape) != 2 or (shape[1] is not None and shape[1] != latent_dim):
        raise ValueError(f"{name} must have shape (batch, {latent_dim}), got shape {shape}.")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; expected shape (batch, {latent_dim}) with batch >= 1.")
    if not is_symbolic(z) and not np.all(np.isfinite(np.asarray(z))):
        raise ValueError(f"{name} contains NaN or Inf.")
    if isinstance(z, np.ndarray):  # one conversion (tf.cast would convert, then cast)
        return tf.convert_to_tensor(z.astype(np.float32, copy=False))
    return tf.cast(z, tf.float32)
