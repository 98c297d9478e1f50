"""TFLite variants of a model side by side: size, parity with Keras, PSNR and latency.

Exports the model with `vaezoo.export.tflite.export_tflite` in every variant (float32,
float16, dynamic-range int8, full int8 calibrated on 200 training images), runs each with the
LiteRT interpreter on CIFAR-10 test images (the JPEG q75 copy in ../shared/data) and reports
file size, size ratio to float32, code agreement and max abs differences against the Keras
model, reconstruction PSNR, its drop from float32, and encode+decode latency per image at
batch 1. Appends the table to benchmarks/RESULTS.md.

    python benchmarks/tflite_variants.py --model path/to/vq.keras   # .keras, workdir or registry name
    python benchmarks/tflite_variants.py                            # no model: trains a quick VQ-VAE first

Without --model, the quick VQ-VAE of benchmarks/compression.py is trained here on a subset
(not the zoo's vq-vae-cifar), and the table says so (about 8 minutes in all on 2 cores
shared with other jobs). A 32x32x3 VAE-like model works too
(its rows then show encoder/decoder differences instead of code agreement).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402
from compression import DATA_LABEL, DEFAULT_DATA, load_cifar, resolve_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .keras file, training workdir or registry name")
    parser.add_argument("--data", default=DEFAULT_DATA, help="cifar10_jpeg.tar.gz")
    parser.add_argument("--images", type=int, default=500, help="test images evaluated (default 500)")
    parser.add_argument("--calibration", type=int, default=200, help="training images calibrating full int8")
    parser.add_argument("--latency-images", type=int, default=100, help="images timed one by one")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads (default 1)")
    parser.add_argument("--train-images", type=int, default=10000, help="quick model: training subset size")
    parser.add_argument("--steps", type=int, default=2000, help="quick model: training steps")
    parser.add_argument("--prior-epochs", type=int, default=0, help="quick model: prior epochs (not needed here)")
    parser.add_argument("--out", help="keep the .tflite files in this folder (default: a temporary one)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo.export.tflite import export_tflite, parity_report

    model, description = resolve_model(args)
    codes = model.latent_kind == "code_grid"
    train = load_cifar(args.data, "train")
    representative = train[np.sort(np.random.default_rng(2).choice(len(train), args.calibration, replace=False))]
    test = load_cifar(args.data, "test")
    test = test[np.sort(np.random.default_rng(1).choice(len(test), args.images, replace=False))]

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        paths = export_tflite(model, out, representative_images=representative, num_calibration=args.calibration)
        report = parity_report(model, paths, test, latency_images=args.latency_images, num_threads=args.threads)
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            import json

            manifest = json.load(f)

    base = report["float32"]
    rows = []
    for variant, r in report.items():
        row = {
            "variant": variant,
            "size (KB)": r["size_bytes"] / 1024,
            "size / float32": r["size_bytes"] / base["size_bytes"],
            "code agreement" if codes else "encode max abs diff":
                r["code_agreement"] if codes else f"{r['encode_max_abs_diff']:.2e}",
            "decode max abs diff": f"{r['decode_max_abs_diff']:.2e}",
            "reconstruction max abs diff": f"{r['reconstruction_max_abs_diff']:.2e}",
            "PSNR (dB)": r["psnr"],
            "PSNR drop vs float32 (dB)": base["psnr"] - r["psnr"],
            "latency (ms/image)": r["latency_ms_per_image"],
        }
        if variant == "full_int8" and not manifest["variants"]["full_int8"].get("integer_only", True):
            row["variant"] = "full_int8 (float fallback for some ops)"
        rows.append(row)
    columns = ["variant", "size (KB)", "size / float32", "code agreement" if codes else "encode max abs diff",
               "decode max abs diff", "reconstruction max abs diff", "PSNR (dB)", "PSNR drop vs float32 (dB)",
               "latency (ms/image)"]
    table = markdown_table(rows, columns)
    print(table)
    print(f"Keras PSNR on the same images: {base['keras_psnr']:.3f} dB")
    protocol = (
        f"{DATA_LABEL}, test split, a fixed random sample of {len(test)} images (seed 1); model: {description}; "
        f"Keras reconstruction PSNR {base['keras_psnr']:.2f} dB. Full int8 calibrated on {len(representative)} "
        "training images (float32 inputs/outputs, int32 codes). Differences are against the Keras model on the "
        "same images: decode = the same (Keras) codes decoded, reconstruction = the variant's own encode + decode. "
        f"PSNR: mean per-image PSNR on [0, 1] floats. Latency: LiteRT (ai_edge_litert) with {args.threads} "
        f"threads, encode + decode of one image, mean over {args.latency_images} images after a warm-up "
        "(a busy machine inflates latencies; the run line gives the load)."
    )
    if not args.no_append:
        append_results("TFLite variants: size, parity and latency (LiteRT)", table, protocol, hardware_description())


if __name__ == "__main__":
    main()
