"""Exports of vaezoo models: SavedModel / TF Serving and TFLite (LiteRT) variants.

`vaezoo.export_model(model_or_path, out, format="saved_model")` is the one entry point (the
`vaezoo export` command calls it); `vaezoo.export.saved_model` and `vaezoo.export.tflite`
hold the format-specific functions. Calling the package itself, `vaezoo.export(...)`, still
works for one release and warns (a module that is also a function was one name for two things).
"""

import os
import sys
import types
import warnings

FORMATS = ("saved_model", "tflite", "all")


def export_model(
    model,
    out,
    format="saved_model",
    model_name=None,
    version=1,
    overwrite=False,
    version_policy="latest",
    float_signatures=True,
    max_rows="default",
    **tflite_kwargs,
):
    """Export a model for serving: SavedModel in TF Serving's layout, TFLite files, or both.

    Args:
        model: a vaezoo model object, a `.keras` file, a training workdir (written by
            `vaezoo train`; loaded with `vaezoo.workdir.load`) or a registry name
            such as `"vq-vae-cifar"` (loaded with `vaezoo.registry.load`).
        out: the export folder, e.g. `exports/out` (the folder TF Serving mounts).
        format: `"saved_model"`, `"tflite"` or `"all"`.
        model_name: the served name; default: the registry name, the `.keras` file's stem,
            the workdir's folder name, or the model's Keras name.
        version: SavedModel version (integer >= 1).
        overwrite: replace an existing SavedModel version.
        version_policy: `"latest"`, `"specific"` or `"all"` (see
            `vaezoo.export.saved_model.write_model_config`).
        float_signatures: also export the float32-image signatures (`*_float`).
        max_rows: the most rows any SavedModel signature takes per call (`"default"`:
            `vaezoo.export.saved_model.DEFAULT_MAX_ROWS`; see `export_saved_model`).
        **tflite_kwargs: passed to `vaezoo.export.tflite.export_tflite` (e.g. `variants`,
            `representative_images`). Without representative images and without
            `variants`, every variant but `full_int8` (which needs calibration images) is
            written.

    Returns:
        dict with `"saved_model"` (the version directory) and/or `"tflite"` (dict variant ->
        file path, written under `out/tflite/<model_name>/`).

    Example:
        >>> import vaezoo
        >>> vaezoo.export_model("runs/vae-mnist", "exports/out", version=3)
        {'saved_model': 'exports/out/vae-mnist/3'}
        >>> vaezoo.export_model(model, "exports/out", format="all", model_name="vq-vae-cifar",
        ...               representative_images=x_train[:200])
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    from vaezoo.export import saved_model as sm

    if tflite_kwargs and format == "saved_model":
        raise TypeError(f"Unexpected arguments for a SavedModel export: {sorted(tflite_kwargs)}.")
    from vaezoo.registry import resolve_model

    model, default_name, _, _ = resolve_model(model)
    name = sm.check_model_name(model_name or default_name or sm.default_model_name(model))
    out = os.fspath(out)
    result = {}
    if format in ("saved_model", "all"):
        result["saved_model"] = sm.export_saved_model(
            model, out, model_name=name, version=version, overwrite=overwrite,
            version_policy=version_policy, float_signatures=float_signatures,
            max_rows=sm.DEFAULT_MAX_ROWS if max_rows == "default" else max_rows,
        )
    if format in ("tflite", "all"):
        try:
            from vaezoo.export import tflite
        except ImportError as error:
            raise ImportError(
                f"format={format!r} needs vaezoo.export.tflite, which could not be imported "
                f"({error}); export with format='saved_model' instead."
            ) from error
        if "variants" not in tflite_kwargs and tflite_kwargs.get("representative_images") is None:
            tflite_kwargs["variants"] = tuple(v for v in getattr(tflite, "VARIANTS", ()) if v != "full_int8")
        result["tflite"] = tflite.export_tflite(model, os.path.join(out, "tflite", name), **tflite_kwargs)
    return result


def export(*args, **kwargs):
    """Deprecated name of `export_model` (kept for one release)."""
    warnings.warn("vaezoo.export(...) is deprecated and will be removed in the next release; call "
                  "vaezoo.export_model(...) (vaezoo.export is the package of the export formats).",
                  DeprecationWarning, stacklevel=2)
    return export_model(*args, **kwargs)


class _CallableModule(types.ModuleType):
    """Keeps the deprecated `vaezoo.export(...)` call working once `vaezoo.export` is this package."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
