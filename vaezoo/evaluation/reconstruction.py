"""Reconstruction error of the posterior mean: MSE, normalized MSE and PSNR."""

import numpy as np

from vaezoo.evaluation.records import Metric, as_float64, batches, condition_kwargs


def reconstructions(model, images, condition=None, batch_size=128):
    """`model.reconstruct` in batches: float32 images in [0, 1] (decoded posterior means)."""
    out = [np.asarray(model.reconstruct(images[s], **condition_kwargs(condition, s)), np.float32)
           for s in batches(len(images), batch_size)]
    return np.concatenate(out)


def reconstruction_errors(model, images, condition=None, batch_size=128):
    """Per-image MSE between images and their reconstructions, [0, 1] scale, float64 `(n,)`."""
    x = _as_unit_float(images)
    recon = reconstructions(model, x, condition, batch_size)
    return per_image_mse(x, recon)


def _as_unit_float(images):
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)


def per_image_mse(images, reconstructed):
    """Mean over pixels of `(images - reconstructed)^2` for every image, float64 `(n,)`."""
    a, b = as_float64(images), as_float64(reconstructed)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"images and reconstructions must have the same shape (n, ...), got {a.shape} and {b.shape}.")
    return np.mean(np.square(a - b).reshape(len(a), -1), axis=1)


def mse(images, reconstructed):
    """Mean squared error over every pixel of every image (both on the [0, 1] scale)."""
    return float(np.mean(per_image_mse(images, reconstructed)))


def normalized_mse(images, reconstructed, data_variance=None):
    """MSE divided by the variance of the data's pixels (the Sonnet VQ-VAE convention).

    Protocol: `mean((x - x_hat)^2) / var(x)` where `var(x)` is the variance of all pixel
    values of the evaluated images on the [0, 1] scale (population variance over every pixel
    of every image), unless `data_variance` is given (e.g. the training set's). 1.0 is the
    error of predicting the mean grey level everywhere.
    """
    variance = float(np.var(as_float64(images))) if data_variance is None else float(data_variance)
    if not variance > 0:
        raise ValueError(f"normalized MSE needs a data variance > 0, got {variance!r} (constant images?).")
    return mse(images, reconstructed) / variance


def psnr(images, reconstructed, max_value=1.0, min_mse=1e-10):
    """Mean over images of the per-image PSNR in dB: `10 log10(max_value^2 / MSE_i)`.

    Protocol: images on the [0, 1] scale (`max_value=1`); each image's MSE is floored at
    `min_mse` (so a perfect reconstruction scores 100 dB rather than infinity), and the
    per-image PSNRs are averaged (not the PSNR of the mean MSE).
    """
    return psnr_of_errors(per_image_mse(images, reconstructed), max_value, min_mse)


def psnr_of_errors(errors, max_value=1.0, min_mse=1e-10):
    """`psnr` from per-image MSEs: the mean of `per_image_psnr`."""
    return float(np.mean(per_image_psnr(errors, max_value, min_mse)))


def per_image_psnr(errors, max_value=1.0, min_mse=1e-10):
    """Each image's PSNR in dB from its MSE: `10 log10(max_value^2 / max(MSE_i, min_mse))`, float64 `(n,)`."""
    return 10.0 * np.log10(max_value**2 / np.maximum(np.asarray(errors, np.float64), min_mse))


def errors(run):
    """Per-image reconstruction MSE of the run's images (computed once)."""
    return run.cached("reconstruction", lambda: per_image_mse(
        run.images, reconstructions(run.model, run.images, run.condition, run.options.batch_size)))


def _prepare_nmse(run):
    if run.options.data_variance is None:
        variance = float(np.var(run.images, dtype=np.float64))
        if not variance > 0:
            raise ValueError("nmse divides by the variance of the data's pixels, which is 0 here (constant images); "
                             "pass data_variance=.")
    else:
        variance = float(run.options.data_variance)
    run.cached("data_variance", lambda: variance)


MSE = Metric(
    "mse", "reconstruction mean squared error per pixel, images on the [0, 1] scale",
    lambda run: {"mse": float(np.mean(errors(run)))}, keys=("mse",),
)
NMSE = Metric(
    "nmse", "reconstruction MSE / variance of the eval-set pixels (Sonnet VQ-VAE convention)",
    lambda run: {"nmse": float(np.mean(errors(run))) / run.cached("data_variance", None),
                 "data_variance": run.cached("data_variance", None)},
    keys=("nmse",), bookkeeping=("data_variance",), prepare=_prepare_nmse,
)
PSNR = Metric(
    "psnr", "mean per-image PSNR of the reconstructions in dB (peak 1.0)",
    lambda run: {"psnr": psnr_of_errors(errors(run))}, keys=("psnr",),
)
RECORDS = (MSE, NMSE, PSNR)
