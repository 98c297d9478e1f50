"""The `.vqz` codec at each quality: bytes per image, bits per pixel, PSNR and SSIM."""

import numpy as np

from vaezoo import code_search
from vaezoo.evaluation.records import Metric, batches
from vaezoo.evaluation.reconstruction import per_image_mse, psnr_of_errors


def ssim(images, reconstructed, max_value=1.0):
    """Mean over images of `tf.image.ssim` (Wang et al. 2004; 11 x 11 Gaussian window, sigma
    1.5, k1 = 0.01, k2 = 0.03, averaged over the channels) with `max_value` 1 on [0, 1] images;
    images with a side below 11 pixels use a window of that side."""
    import tensorflow as tf

    window = min(11, *np.shape(images)[1:3])
    values = tf.image.ssim(tf.constant(images, tf.float32), tf.constant(reconstructed, tf.float32), max_val=max_value,
                           filter_size=window)
    return float(np.mean(np.asarray(values, np.float64)))


def quality_curve(model, images, batch_size=128, progress=False):
    """Per quality 1..D of a VQ-VAE (D = 1) or RQ-VAE (D = its depth): the bytes of each image
    compressed alone into a one-image `.vqz` file, and the images decoded from it.

    Protocol: for each quality q, every image is encoded as `codec.compress` encodes it (an
    RQ-VAE's q-deep code stacks by the default code search, `vaezoo.code_search`) and written as
    a one-image file (`codec.compress_codes`, mode "auto": the context model when the model has
    one, version 3, header included); the file decodes to exactly those codes
    (`tests/test_codec.py`), so the decoded image is the model's decoder on them
    (`decode_codes`, float32, not rounded to 8 bits). PSNR is the mean
    of per-image PSNRs (peak 1), SSIM the mean of `ssim`; bits per pixel are 8 x bytes /
    (height x width).

    Returns:
        dict of lists, one value per quality: `vqz_bytes_per_image`, `vqz_bits_per_pixel`,
        `vqz_psnr`, `vqz_ssim`; and `vqz_qualities`.
    """
    from vaezoo import codec

    coder = codec.codec_model(model)
    out = {"vqz_qualities": list(coder.qualities), "vqz_bytes_per_image": [], "vqz_bits_per_pixel": [],
           "vqz_psnr": [], "vqz_ssim": []}
    for quality in coder.qualities:
        sizes, grids = codec.encode_images(coder, images, batch_size=batch_size, quality=quality)
        pixels = float(np.mean([h * w for h, w in sizes]))
        codes = np.stack(grids)  # the model's image size: one shape
        kept, options = (codes[..., :quality], {"quality": quality}) if coder.depth else (codes, {})
        files = [len(codec.compress_codes(coder, [c], [size], **options)) for c, size in zip(kept, sizes)]
        decoded = np.concatenate([np.asarray(model.decode_codes(kept[s]), np.float32)
                                  for s in batches(len(kept), batch_size)])
        out["vqz_bytes_per_image"].append(float(np.mean(files)))
        out["vqz_bits_per_pixel"].append(8.0 * float(np.mean(files)) / pixels)
        out["vqz_psnr"].append(psnr_of_errors(per_image_mse(images, decoded)))
        out["vqz_ssim"].append(ssim(images, decoded))
        if progress:
            print(f"vqz_rate: quality {quality}: {out['vqz_bytes_per_image'][-1]:.1f} bytes/image, "
                  f"{out['vqz_psnr'][-1]:.2f} dB", flush=True)
    return out


def _applies(model, inputs):
    if model.latent_kind not in ("code_grid", "residual_code_grid"):
        return f"vqz_rate measures the .vqz codec of a VQ-VAE or RQ-VAE; {type(model).__name__} has no codes"
    return None


def _protocol(metric, results, report, data):
    search = (f"code stacks by beam search of width {code_search.DEFAULT_BEAM_WIDTH} (vaezoo.code_search); "
              if len(results["vqz_qualities"]) > 1 else "")
    return (f"{metric.description}; qualities {results['vqz_qualities']} (one value per quality, in order); {search}each "
            f"image its own one-image .vqz file (version 3, header included), decoded to float32 (PSNR: mean of "
            f"per-image PSNRs, peak 1; SSIM: tf.image.ssim, max_val 1); {data}")


VQZ_RATE = Metric(
    "vqz_rate", "codec: bytes per one-image .vqz file, bits per pixel, PSNR and SSIM at each quality",
    lambda run: quality_curve(run.model, run.images, run.options.batch_size, run.options.progress),
    keys=("vqz_bytes_per_image", "vqz_bits_per_pixel", "vqz_psnr", "vqz_ssim"), bookkeeping=("vqz_qualities",),
    applies=_applies, card_protocol=_protocol,
)
RECORDS = (VQZ_RATE,)
