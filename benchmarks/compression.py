"""Bytes per image and PSNR: vaezoo's .vqz (VQ-VAE codes + PixelCNN prior) vs JPEG and WebP.

On CIFAR-10 test images (the JPEG q75 copy in ../shared/data, so every figure is labelled
"CIFAR-10 (JPEG q75 copy)"): compress --images test images (a fixed random sample) into one .vqz file,
measure bytes per image and the mean per-image PSNR of the decoded 8-bit images against the
stored pixels; then, for JPEG and WebP (Pillow), scan every quality setting and report the
one whose mean PSNR over the same images is closest to the .vqz's (matched PSNR). Also
reports one image per .vqz file (header not shared), fixed-length codes, and the prior's
ideal cross-entropy. Appends the table to benchmarks/RESULTS.md.

    python benchmarks/compression.py --model path/to/vq.keras   # a .keras, workdir or registry name
    python benchmarks/compression.py                            # no model: trains a quick one first

Without --model, a small VQ-VAE (not the zoo's vq-vae-cifar) is trained here on a subset
of the training split, and the table says so: 2000 steps plus 4 prior epochs, 19 minutes in
all on 2 cores shared with other jobs (load average about 10), a few minutes on quiet ones.
"""

import argparse
import io
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "cifar10_jpeg.tar.gz")
DATA_LABEL = "CIFAR-10 (JPEG q75 copy)"

#: the quick model trained when no --model is given (smaller than the vq-vae-cifar card).
QUICK_CONFIG = {
    "input_shape": [32, 32, 3], "num_embeddings": 256, "embedding_dim": 32, "hidden_channels": 64,
    "residual_channels": 32, "num_residual_blocks": 1, "num_downsamples": 2, "restart_dead_codes": True,
    "prior": {"filters": 64, "layers": 5, "kernel_size": 3}, "seed": 0,
}


def load_cifar(path, split):
    """uint8 images (n, 32, 32, 3) of one split, sorted by member name, read in one
    sequential pass over the tar (`vaezoo.data.load_image_tar`, the README's loop)."""
    from vaezoo.data import load_image_tar

    images, _ = load_image_tar(path, split, channels=3)
    return images


def quick_vqvae(train_images, steps, prior_epochs, verbose=True):
    """Train QUICK_CONFIG on `train_images` (uint8) for `steps` steps, then its prior."""
    import keras
    import tensorflow as tf

    import vaezoo

    keras.utils.set_random_seed(0)
    model = vaezoo.VQVAE(**QUICK_CONFIG)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = 32
    data = tf.data.Dataset.from_tensor_slices(train_images).shuffle(len(train_images), seed=0).repeat().batch(batch)
    start = time.time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=2 if verbose else 0)
    if prior_epochs > 0:
        model.fit_prior(train_images, epochs=prior_epochs, batch_size=128, verbose=2 if verbose else 0)
    if verbose:
        print(f"quick model trained in {time.time() - start:.0f}s")
    return model


def resolve_model(args, verbose=True):
    """`(model, description)` from --model, or a quick model trained on a training subset."""
    from vaezoo import codec, registry

    if args.model:
        model, name, _, _ = registry.resolve_model(args.model)
        return model, f"`{name}` ({type(model).__name__}, weights sha256 {codec.weights_sha256(model)[:12]})"
    train = load_cifar(args.data, "train")
    pick = np.random.default_rng(0).choice(len(train), args.train_images, replace=False)
    model = quick_vqvae(train[pick], args.steps, args.prior_epochs, verbose)
    description = (f"quick VQ-VAE trained in this run (NOT the zoo model): K={QUICK_CONFIG['num_embeddings']}, "
                   f"8x8 codes, {model.count_params():,} weights, {args.steps} steps of batch 32 on a random "
                   f"{args.train_images}-image subset of the {DATA_LABEL} training split"
                   + (f", prior {args.prior_epochs} epochs" if args.prior_epochs > 0 else ""))
    return model, description


def psnr_uint8(reference, images):
    """Mean over images of the per-image PSNR (dB) of uint8 images against uint8 references."""
    ref = reference.astype(np.float64)
    mse = np.mean((ref - images.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def pillow_sweep(images, fmt, qualities, **options):
    """For each quality: (quality, mean bytes per image, mean PSNR) of Pillow's codec."""
    from PIL import Image

    rows = []
    for q in qualities:
        sizes, decoded = [], []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format=fmt, quality=q, **options)
            sizes.append(buffer.tell())
            buffer.seek(0)
            decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
        rows.append((q, float(np.mean(sizes)), psnr_uint8(images, np.stack(decoded))))
    return rows


def closest(rows, target):
    return min(rows, key=lambda r: abs(r[2] - target))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a VQ-VAE: .keras file, training workdir or registry name")
    parser.add_argument("--data", default=DEFAULT_DATA, help="cifar10_jpeg.tar.gz")
    parser.add_argument("--images", type=int, default=500, help="test images compressed (default 500)")
    parser.add_argument("--single-files", type=int, default=50,
                        help="images also compressed one per .vqz file (default 50)")
    parser.add_argument("--train-images", type=int, default=10000, help="quick model: training subset size")
    parser.add_argument("--steps", type=int, default=2000, help="quick model: training steps")
    parser.add_argument("--prior-epochs", type=int, default=4, help="quick model: prior epochs")
    parser.add_argument("--save-model", help="also save the model used to this .keras path")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo import codec

    model, description = resolve_model(args)
    if args.save_model:
        model.save(args.save_model)
    test = load_cifar(args.data, "test")
    # a fixed random sample over all classes (the tar is grouped by class)
    test = test[np.sort(np.random.default_rng(1).choice(len(test), args.images, replace=False))]
    n = len(test)
    pixels = int(np.prod(test.shape[1:3]))

    start = time.time()
    data = codec.compress(model, test, model_name="benchmark")
    t_compress = time.time() - start
    start = time.time()
    decoded = codec.decompress(model, data)
    t_decompress = time.time() - start
    decoded8 = np.clip(np.round(decoded * 255), 0, 255).astype(np.uint8)
    target = psnr_uint8(test, decoded8)
    header = codec.read_header(data)
    codes = codec.decompress_codes(model, data)
    ideal_bits = codec.prior_bits(model, codes) if model.prior is not None else float("nan")
    fixed_bytes = math.ceil(codes.size * codec.bits_per_code(model.num_embeddings) / 8)

    single = [len(codec.compress(model, test[i : i + 1], model_name="benchmark")) for i in range(min(args.single_files, n))]

    jpeg = pillow_sweep(test, "JPEG", range(1, 101))
    webp = pillow_sweep(test, "WEBP", range(0, 101), method=6)
    jq, webq = closest(jpeg, target), closest(webp, target)

    def row(codec_name, setting, nbytes, value, note=""):
        return {"codec": codec_name, "setting": setting, "bytes/image": nbytes, "bits/pixel": nbytes * 8 / pixels,
                "PSNR (dB)": value, "note": note}

    rows = [
        row("vaezoo .vqz", f"{header.mode} coding, {n} images in one file", len(data) / n, target,
            f"header {header.header_length + 4} B shared; compress {t_compress / n * 1e3:.1f} ms/image, "
            f"decompress {t_decompress / n * 1e3:.1f} ms/image"),
        row("vaezoo .vqz", f"one image per file (first {len(single)})", float(np.mean(single)), target,
            "includes the whole header per image"),
        row("vaezoo codes", f"fixed-length, {codec.bits_per_code(model.num_embeddings)} bits/code", fixed_bytes / n,
            target, "payload only"),
        row("vaezoo codes", "prior cross-entropy (ideal)", ideal_bits / 8 / n, target, "-log2 p(codes), no header"),
        row("JPEG (Pillow)", f"quality {jq[0]}", jq[1], jq[2], "closest mean PSNR over qualities 1-100"),
        row("WebP (Pillow)", f"quality {webq[0]}, method 6", webq[1], webq[2], "closest mean PSNR over qualities 0-100"),
    ]
    columns = ["codec", "setting", "bytes/image", "bits/pixel", "PSNR (dB)", "note"]
    table = markdown_table(rows, columns)
    print(table)
    protocol = (
        f"{DATA_LABEL}, test split, a fixed random sample of {n} images (seed 1); model: {description}. "
        "PSNR: mean over images of the per-image PSNR of the decoded 8-bit RGB image against the stored "
        "(already JPEG-q75-decoded) pixels; JPEG and WebP at the single quality setting whose mean PSNR is "
        "closest to the .vqz's (matched PSNR), whole files including headers (they dominate at 32x32). "
        "Recompressing a JPEG copy with JPEG favours JPEG near quality 75. Times: wall clock (a busy machine "
        "inflates them; the run line gives the load)."
    )
    if not args.no_append:
        append_results(f"Compression: vaezoo .vqz vs JPEG and WebP ({DATA_LABEL})", table, protocol,
                       hardware_description())


if __name__ == "__main__":
    main()
