"""Which codes an RQ-VAE's `.vqz` files store: greedy residual coding vs beam search (issue 16).

    python benchmarks/code_search.py                              # rq-vae-cifar, widths 1 2 4 8
    python benchmarks/code_search.py --images 200 --no-append     # a quick look, nothing recorded

For each beam width of `vaezoo.code_search` (1 is greedy coding, the codes training uses) and
each quality q, the test images (evenly spaced over the class-sorted split) are encoded to q-deep
code stacks (`codec.encode_images(..., quality=q, beam_width=w)`, the Keras encoder, batches of
64) and each stack is written as its own one-image `.vqz` file (`codec.compress_codes`, header
included: what `codec.compress` writes for that image). Reported per width and quality: bytes
per file, PSNR of the decoded 8-bit images against the stored pixels (the rate-distortion
benchmark's `point`), and the encoding time per image against greedy coding's in the same run
(network and search, batched; writing the file is not included). Then the BD-rate of each width
against greedy coding over the qualities (PCHIP, as `rate_distortion.py`).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, hardware_description, load_rq_model, markdown_table  # noqa: E402
from compression import to_uint8  # noqa: E402
from rate_distortion import bd_rate, mse_per_image  # noqa: E402

TITLE = "Code search: greedy residual coding vs beam search (RQ-VAE, CIFAR-10 (JPEG q75 copy))"


def measure(model, images, quality, beam_width):
    """`(bytes per one-image file, PSNR of the 8-bit decodings, encode seconds per image)`."""
    from vaezoo import codec
    from vaezoo.evaluation.reconstruction import psnr_of_errors

    coder = codec.codec_model(model)
    start = time.perf_counter()
    sizes, stacks = codec.encode_images(coder, images, quality=quality, beam_width=beam_width)
    seconds = (time.perf_counter() - start) / len(images)
    files = [codec.compress_codes(coder, [stack], [size], quality=quality) for stack, size in zip(stacks, sizes)]
    stacks = np.stack(stacks)[..., :quality]
    decoded = np.concatenate([to_uint8(model.decode_codes(stacks[i : i + 250])) for i in range(0, len(stacks), 250)])
    psnr = psnr_of_errors(mse_per_image(to_uint8(images), decoded), max_value=255.0, min_mse=255.0**2 * 1e-10)
    return float(np.mean([len(f) for f in files])), psnr, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rq-vae-cifar")
    parser.add_argument("--images", type=int, default=1000, help="test images, evenly spaced (default 1,000)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8], help="beam widths (1: greedy)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()
    if 1 not in args.widths:
        raise SystemExit("--widths must include 1 (greedy coding, the reference of every ratio).")

    from vaezoo import codec, data

    model, spec = load_rq_model(args.model)
    images, _ = data.load_split(spec, "test", limit=args.images, spread=True)
    images = np.asarray(images, np.float32)
    codec.encode_images(model, images[:8], quality=1)  # builds the networks outside the timings
    points = {}
    for width in sorted(args.widths):
        for quality in range(1, model.depth + 1):
            points[width, quality] = measure(model, images, quality, width)
            size, psnr, seconds = points[width, quality]
            print(f"width {width}, quality {quality}: {size:.1f} bytes, {psnr:.2f} dB, "
                  f"{1e3 * seconds:.2f} ms/image", flush=True)
    rows, bd_lines = [], []
    for width in sorted(args.widths):
        for quality in range(1, model.depth + 1):
            size, psnr, seconds = points[width, quality]
            greedy = points[1, quality]
            rows.append({"beam width": width, "quality": quality, "bytes per file": round(size, 1),
                         "PSNR (dB)": round(psnr, 2), "bytes vs greedy": f"{100 * (size / greedy[0] - 1):+.1f}%",
                         "PSNR vs greedy (dB)": f"{psnr - greedy[1]:+.2f}",
                         "encode time vs greedy": f"{seconds / greedy[2]:.2f}x"})
        if width > 1:
            curve = [points[width, q] for q in range(1, model.depth + 1)]
            reference = [points[1, q] for q in range(1, model.depth + 1)]
            value, span = bd_rate([p[0] for p in reference], [p[1] for p in reference],
                                  [p[0] for p in curve], [p[1] for p in curve])
            bd_lines.append(f"BD-rate of beam width {width} against greedy coding: "
                            + (f"{value:+.1f}% over {span[0]:.2f}-{span[1]:.2f} dB" if value is not None else str(span)))
    table = markdown_table(rows, list(rows[0])) + "\n" + "\n\n".join(bd_lines) + "\n"
    print(table)
    if not args.no_append:
        protocol = (f"`{args.model}`, {len(images)} test images (evenly spaced over the class-sorted split) of "
                    f"{spec.get('source')}:{spec.get('path')} (CIFAR-10 (JPEG q75 copy)); each image its own one-image "
                    ".vqz file (header included); PSNR of the 8-bit decodings; encode time: the Keras encoder and the "
                    "code search in batches of 64, per image, as a ratio to greedy coding's in this run; see the "
                    "script's docstring")
        append_results(TITLE, table, protocol, hardware_description())


if __name__ == "__main__":
    main()
