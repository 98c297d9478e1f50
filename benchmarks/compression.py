"""Rate and speed of `.vqz` (version 3; its payload is coded as version 2's) beside the PixelCNN coding of version 1, WebP and AVIF.

    python benchmarks/compression.py --model vq-vae-cifar
    python benchmarks/compression.py --model vq-vae-cifar --context-option "groups5=zoo:vq-vae-cifar-groups5" \
        --context-option "groups8=runs/context-cifar-warm8/context_model.npz"

On CIFAR-10 test images (the JPEG q75 copy in ../shared/data, so every figure is labelled
"CIFAR-10 (JPEG q75 copy)"), a fixed random sample of --images images:

- `.vqz` version 3 on the device path: the model exported to a LiteRT bundle (float32
  encoder/decoder and the exact context model), all images compressed in one call and
  decompressed in one call (wall time per image), on `LiteRTCodecModel`, no TensorFlow in
  the loop; also one image per file (the container's cost), and the desktop path (Keras
  networks, the context model in numpy) on the same images;
- the rate of the exact context model against the PixelCNN prior on the same codes (bits per
  code: ideal -log2 p and the coded bytes); with --context-option, other frozen context models
  (another size or schedule: `scripts/train_context_model.py --schedule`; `zoo:NAME` takes a
  zoo model's) on the same codes, their entropy-coding time and coding steps (a group
  schedule's network passes, a raster network's positions) and where each model's extra bits
  are, group by group (a raster network: row by row); and version-1 PixelCNN coding of --v1-images
  images spread over the sample (bytes and time: the prior re-runs once per grid position);
- Pillow's WebP (method 6) and AVIF (speed 6) at the quality whose mean PSNR over the images
  is closest to the `.vqz`'s (searched on the first 200 images), then timed encoding and
  decoding every image one per file, in the same run.

Appends the table to benchmarks/RESULTS.md.
"""

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "cifar10_jpeg.tar.gz")
DATA_LABEL = "CIFAR-10 (JPEG q75 copy)"


def load_cifar(path, split):
    """uint8 images (n, 32, 32, 3) of one split, sorted by member name (`vaezoo.data.load_image_tar`)."""
    from vaezoo.data import load_image_tar

    images, _ = load_image_tar(path, split, channels=3)
    return images


def psnr_uint8(reference, images):
    """Mean over images of the per-image PSNR (dB) of uint8 images against uint8 references."""
    ref = np.asarray(reference, np.float64)
    mse = np.mean((ref - np.asarray(images, np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def to_uint8(images):
    return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def pillow_round_trip(images, fmt, quality, **options):
    """(bytes per image, decoded uint8 images, encode s, decode s) with one file per image."""
    from PIL import Image

    blobs, start = [], time.perf_counter()
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, quality=quality, **options)
        blobs.append(buffer.getvalue())
    encode = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs]
    decode = time.perf_counter() - start
    return float(np.mean([len(b) for b in blobs])), np.stack(decoded), encode, decode


def matched_quality(images, fmt, target_psnr, qualities, **options):
    """The quality whose mean PSNR on `images` is closest to `target_psnr`."""
    scores = [(abs(psnr_uint8(images, pillow_round_trip(images, fmt, q, **options)[1]) - target_psnr), q)
              for q in qualities]
    return min(scores)[1]


def best_of(call, repeats):
    """`(result, seconds)`: the last result and the fastest of `repeats` timed calls (a shared
    machine only ever adds time)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return result, best


def context_options(model, grids, sizes, pixelcnn, extra, repeats=3):
    """The rate / speed trade-off of context models on the same codes: the model's own and each
    `LABEL=NPZ` of `extra`, each on LiteRT (float32, exact): bits per code, against the PixelCNN,
    and the entropy coding's encode / decode ms per image (network passes, masses and range coder)."""
    from vaezoo import integer_entropy, vqz
    from vaezoo.export.tflite import convert_context_network

    candidates = [(f"shipped ({_describe(model.context_network())})", model.context_network())]
    for option in extra:
        label, _, path = option.partition("=")
        if path.startswith("zoo:"):
            from vaezoo import registry

            network = registry.load(path[len("zoo:"):]).context_network()
        else:
            network = integer_entropy.network_from_arrays(dict(np.load(path)))
        candidates.append((f"{label} ({_describe(network)})", network))
    rows = []
    for label, network in candidates:
        runtime = integer_entropy.LiteRTContextNetwork(convert_context_network(network), network)
        bits = float(np.sum(integer_entropy.code_bits(runtime, grids))) / sum(g.size for g in grids)
        vqz.decode_grids(vqz.encode_grids(grids[:8], runtime), [g.shape for g in grids[:8]], runtime)  # warm-up
        streams, encode = best_of(lambda: vqz.encode_grids(grids, runtime), repeats)
        _, decode = best_of(lambda: vqz.decode_grids(streams, [g.shape for g in grids], runtime), repeats)
        rows.append({"context model": label, "bits/code": f"{bits:.3f}", "/ PixelCNN": f"{bits / pixelcnn:.3f}",
                     "entropy encode ms/image": f"{1e3 * encode / len(grids):.2f}",
                     "entropy decode ms/image": f"{1e3 * decode / len(grids):.2f}",
                     "coding steps per 8x8 block": str(_steps(network, (8, 8)))})
    return markdown_table(rows, list(rows[0])), candidates


def rate_by_group(model, codes, candidates):
    """Where each exact model's extra bits are: per coding group of its schedule, its share of
    the positions, the exact model's bits per code and the PixelCNN's (-log2 p, autoregressive
    in raster order) at the same positions, and the group's share of the difference.
    `candidates` are `(label, IntegerContextNetwork)` (`context_options`')."""
    logits = np.concatenate([np.asarray(model.prior.logits(codes[i : i + 500]), np.float64)
                             for i in range(0, len(codes), 500)])
    logits -= logits.max(axis=-1, keepdims=True)
    log_p = np.take_along_axis(logits, codes[..., None], -1)[..., 0] - np.log(np.exp(logits).sum(axis=-1))
    pixelcnn = -log_p / np.log(2.0)
    rows = []
    for label, network in candidates:
        rows += _group_rows(label, network, codes, pixelcnn)
    return markdown_table(rows, list(rows[0]))


def _steps(network, shape):
    """Coding steps (network passes or positions) per block of `shape`."""
    from vaezoo import integer_entropy

    return int(integer_entropy.group_map(*shape, network.schedule).max()) + 1


def _group_rows(label, network, codes, pixelcnn):
    """Rows per group of a group schedule; per grid row for a raster network (64 groups of one)."""
    from vaezoo import integer_entropy

    groups = integer_entropy.group_map(*codes.shape[1:], network.schedule)
    exact = np.zeros(codes.shape, np.float64)
    for group in range(_steps(network, codes.shape[1:])):
        where = groups == group
        logits = network.logits_at(integer_entropy.context_input(codes, groups, group, network.num_embeddings),
                                   np.flatnonzero(where))
        masses = integer_entropy.masses(logits.reshape(-1, logits.shape[-1]), network.table)
        chosen = masses[np.arange(len(masses)), codes[:, where].reshape(-1)].reshape(len(codes), -1)
        exact[:, where] = integer_entropy.PRECISION - np.log2(chosen)
    gap = float(np.sum(exact - pixelcnn))
    raster = network.schedule == integer_entropy.RASTER
    parts = np.arange(codes.shape[1])[:, None].repeat(codes.shape[2], 1) if raster else groups
    rows = []
    for group in range(int(parts.max()) + 1):
        where = parts == group
        rows.append({"context model": label, "group": f"row {group}" if raster else str(group),
                     "positions": f"{int(where.sum())} of {where.size}",
                     "exact bits/code": f"{exact[:, where].mean():.3f}",
                     "PixelCNN bits/code (same positions)": f"{pixelcnn[:, where].mean():.3f}",
                     "share of the extra bits": f"{np.sum(exact[:, where] - pixelcnn[:, where]) / gap:.0%}"})
    return rows


def _describe(network):
    from vaezoo import integer_entropy

    if network.schedule == integer_entropy.RASTER:
        return (f"raster order, a causal window of {len(network.taps)} codes, {len(network.kernels)} dense layers x "
                f"{network.kernels[-1].shape[1]} channels")
    return (f"{len(network.kernels)} conv layers x {network.embedding.shape[1]} channels, "
            f"{network.num_groups} groups ({network.schedule})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vq-vae-cifar", help="a VQ-VAE with a context model")
    parser.add_argument("--data", default=DEFAULT_DATA, help="cifar10_jpeg.tar.gz")
    parser.add_argument("--images", type=int, default=1000, help="test images (default 1000)")
    parser.add_argument("--single-files", type=int, default=50, help="images also written one per file")
    parser.add_argument("--v1-images", type=int, default=100,
                        help="images (spread over the sample) also coded with the version-1 PixelCNN")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: LiteRT's)")
    parser.add_argument("--context-option", action="append", default=[], metavar="LABEL=NPZ",
                        help="another frozen context model (scripts/train_context_model.py's context_model.npz, or "
                             "zoo:NAME for a zoo model's) to compare on the same codes: rate and entropy-coding "
                             "time (repeatable)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per vaezoo measurement (the fastest counts; default 3)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo import codec, integer_entropy, vqz_v1
    from vaezoo.export.tflite import export_tflite
    from vaezoo.registry import resolve_model
    from vaezoo.workdir import weights_fingerprint

    model, name, _, _ = resolve_model(args.model)
    if model.context_model is None:
        raise SystemExit(f"{name} has no context model (VQVAE(context_model=...)); nothing to benchmark.")
    test = load_cifar(args.data, "test")
    test = test[np.sort(np.random.default_rng(1).choice(len(test), args.images, replace=False))]
    n, pixels = len(test), 32 * 32
    rows = []

    def row(codec_name, setting, nbytes, psnr, encode, decode, note=""):
        rows.append({"codec": codec_name, "setting": setting, "bytes/image": f"{nbytes:.1f}",
                     "bits/pixel": f"{8 * nbytes / pixels:.3f}", "PSNR (dB)": f"{psnr:.2f}",
                     "encode ms/image": f"{1e3 * encode / n:.2f}" if encode is not None else "",
                     "decode ms/image": f"{1e3 * decode / n:.2f}" if decode is not None else "", "note": note})

    with tempfile.TemporaryDirectory() as bundle:
        export_tflite(model, bundle, variants=("float32",))
        device = codec.LiteRTCodecModel(bundle, num_threads=args.threads)
        codec.decompress(device, codec.compress(device, test[:8]))  # warm-up: allocate every tensor once
        data, t_encode = best_of(lambda: codec.compress(device, test), args.repeats)
        decoded, t_decode = best_of(lambda: to_uint8(codec.decompress(device, data)), args.repeats)
        psnr = psnr_uint8(test, decoded)
        header = codec.read_header(data)
        row("vaezoo .vqz v3", f"LiteRT float32 + exact context model, {n} images in one file", len(data) / n,
            psnr, t_encode, t_decode, f"container {len(data) - header.payload_length} B shared")
        sizes, grids = codec.encode_images(device, test)
        _, t_entropy_encode = best_of(lambda: codec.compress_codes(device, grids, sizes), args.repeats)
        _, t_entropy_decode = best_of(lambda: codec.decompress_codes(device, data), args.repeats)
        row("vaezoo .vqz v3", "entropy coding alone (LiteRT context model)", header.payload_length / n, psnr,
            t_entropy_encode, t_entropy_decode, "payload only, same codes")
        single = [len(codec.compress(device, test[i : i + 1])) for i in range(args.single_files)]
        row("vaezoo .vqz v3", f"one image per file (first {args.single_files})", float(np.mean(single)), psnr,
            None, None, "includes the 16-byte container")

        start = time.perf_counter()
        desktop = codec.compress(model, test)
        t_encode_desktop = time.perf_counter() - start
        start = time.perf_counter()
        desktop_images = to_uint8(codec.decompress(model, desktop))
        t_decode_desktop = time.perf_counter() - start
        desktop_grids = codec.encode_images(model, test)[1]
        agree = float(np.mean([np.array_equal(a, b) for a, b in zip(grids, desktop_grids)]))
        same_bytes = codec.compress_codes(model, grids, sizes) == data
        row("vaezoo .vqz v3", "desktop (Keras networks, context model on LiteRT)", len(desktop) / n,
            psnr_uint8(test, desktop_images), t_encode_desktop, t_decode_desktop,
            f"images whose codes equal LiteRT's: {agree:.1%}; same codes -> same bytes: {same_bytes}")

    network = model.context_network()
    codes = np.stack(grids)
    exact = float(np.sum(integer_entropy.code_bits(network, grids))) / codes.size
    pixelcnn = float(np.mean(np.asarray(model.prior.bits_per_code(codes), np.float64)))
    m = args.v1_images
    pick = np.linspace(0, n - 1, m).astype(int)  # spread over the classes (the sample is sorted by class)
    grids_m, sizes_m = [grids[i] for i in pick], [sizes[i] for i in pick]
    start = time.perf_counter()
    v1 = vqz_v1.compress_codes(model, codes[pick], mode="prior", model_name=name)
    t_v1_encode = (time.perf_counter() - start) * n / m
    start = time.perf_counter()
    vqz_v1.decompress_codes(model, v1)
    t_v1_decode = (time.perf_counter() - start) * n / m
    v1_payload = vqz_v1.read_header(v1).payload_length
    v3_payload = codec.read_header(codec.compress_codes(model, grids_m, sizes_m)).payload_length
    row("vaezoo .vqz v1", f"PixelCNN prior (TensorFlow), same codes, {m} images across the sample", v1_payload / m,
        psnr, t_v1_encode, t_v1_decode, f"payload only; v3 on the same {m} images: {v3_payload / m:.1f} B")

    probe = test[:200]
    for fmt, options, label in (("WEBP", {"method": 6}, "method 6"), ("AVIF", {"speed": 6}, "speed 6")):
        quality = matched_quality(probe, fmt, psnr, range(0, 101, 2), **options)
        nbytes, pillow_images, t_enc, t_dec = pillow_round_trip(test, fmt, quality, **options)
        row(f"{fmt.title()} (Pillow)", f"quality {quality}, {label}, one file per image", nbytes,
            psnr_uint8(test, pillow_images), t_enc, t_dec, "PSNR-matched on the first 200 images")

    options, candidates = context_options(model, grids, sizes, pixelcnn, args.context_option, args.repeats)
    by_group = rate_by_group(model, codes, candidates)
    webp = next(r for r in rows if r["codec"].startswith("Webp"))
    table = markdown_table(rows, list(rows[0]))
    rate = markdown_table([{
        "exact context model (bits/code)": f"{exact:.3f}", "PixelCNN prior (bits/code)": f"{pixelcnn:.3f}",
        "exact / PixelCNN": f"{exact / pixelcnn:.3f}",
        "v3 payload / v1 payload (bytes, same images)": f"{v3_payload / v1_payload:.3f}",
        "v3 decode / WebP decode (time)": f"{(1e3 * t_decode / n) / float(webp['decode ms/image']):.1f}x",
    }], ["exact context model (bits/code)", "PixelCNN prior (bits/code)", "exact / PixelCNN",
         "v3 payload / v1 payload (bytes, same images)", "v3 decode / WebP decode (time)"])
    print(table)
    print(rate)
    print(options)
    print(by_group)
    if not args.no_append:
        protocol = (f"{DATA_LABEL}, test split, a fixed random sample of {n} images (seed 1); model `{name}` "
                    f"(weights sha256 {weights_fingerprint(model)[:12]}). PSNR: mean per-image PSNR of the decoded "
                    "8-bit RGB images against the stored pixels. Times: wall clock of one call over all images "
                    f"(vaezoo: the fastest of {args.repeats} calls) or a loop of one file per image (Pillow), divided "
                    "by the image count; vaezoo's include the encoder/decoder networks. Rate: ideal bits per code "
                    "of the exact context model (-log2 of its integer masses) and of the PixelCNN (-log2 p) on the same codes.")
        append_results("Compression: .vqz v3 (exact context model, LiteRT) vs PixelCNN v1, WebP and AVIF",
                       table + "\n" + rate + "\n" + options + "\n" + by_group, protocol, hardware_description())


if __name__ == "__main__":
    main()
