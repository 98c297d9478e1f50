"""Large images through the .vqz codec: peak memory of a 12-megapixel photo, whole vs tiled,
on the Keras and LiteRT paths; the 512x512 decode time; rate and PSNR beside WebP.

Every memory case runs in a fresh subprocess (`--case NAME`) that loads the model and either
compresses a 4000x3000 photo (scikit-image's `rocket()`, 427x640, upsampled bicubically by Pillow to
3000x4000: real photo content at 12 MP) into a file or decompresses that file, and reports its peak resident
memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, which includes Python, TensorFlow or
LiteRT and the model). "whole" runs the networks over the whole image in one pass (what the
codec did before tiling); "tiled" uses the codec's default budget
(`vaezoo.tiling.MAX_TILE_PIXELS`). The LiteRT cases import no TensorFlow; their bundle is
exported first (`vaezoo.export.tflite.export_tflite`, float32 variant).

Rate/PSNR: each of scikit-image's photos (astronaut 512x512, chelsea 300x451, coffee 400x600,
rocket 427x640) in its own .vqz file with the zoo's `vq-vae-cifar`, PSNR of the decoded 8-bit
image against the photo; WebP (Pillow, method 6) at every quality, reported at matched bytes
(the best quality whose file is no larger than the .vqz) and at matched PSNR (the smallest
file at least as good).

    python benchmarks/large_images.py                 # everything, appends to RESULTS.md
    python benchmarks/large_images.py --skip-whole    # without the whole-image passes (6+ GB)
"""

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402

MODEL = "vq-vae-cifar"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SIZE = (3000, 4000)  # height, width: 12 megapixels


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def big_photo():
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.rocket()).resize(SIZE[::-1], Image.BICUBIC))


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def to_uint8(image):
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def codec_model(path, bundle, budget):
    from vaezoo import codec

    if path == "litert":
        return codec.LiteRTCodecModel(bundle, num_threads=2, max_tile_pixels=budget)
    import vaezoo

    return codec.KerasCodecModel(vaezoo.load(MODEL), max_tile_pixels=budget)


def run_case(path, mode, step, bundle, vqz_path):
    """One subprocess, one step on the 12 MP photo (compress: writes `vqz_path`; decompress:
    reads it), and its peak RSS; the tiled decompress also times a 512x512 decompress."""
    from vaezoo import codec

    budget = (1 << 40) if mode == "whole" else None
    model = codec_model(path, bundle, budget)
    photo = big_photo()
    loaded = peak_rss_mb()
    t = time.perf_counter()
    if step == "compress":
        size = codec.write_vqz(vqz_path, model, [photo])
        result = {"seconds": time.perf_counter() - t, "peak RSS MB": peak_rss_mb(), "12 MP bytes": size}
    else:
        restored = codec.read_vqz(vqz_path, model)[0]
        result = {"seconds": time.perf_counter() - t, "peak RSS MB": peak_rss_mb()}  # before the PSNR's copies
        assert restored.shape == photo.shape
        result["12 MP PSNR dB"] = psnr(to_uint8(restored), photo)
    result["runtime, model and photo MB"] = loaded
    if mode == "tiled" and step == "decompress":  # the 512x512 decode time (one pass: within the budget)
        import skimage.data

        data = codec.compress(model, [skimage.data.astronaut()])
        times = []
        for _ in range(6):
            t = time.perf_counter()
            codec.decompress(model, data)
            times.append(time.perf_counter() - t)
        result["512x512 decompress s (median of 5)"] = float(np.median(times[1:]))
    print("RESULT " + json.dumps(result), flush=True)


def run_rate():
    """Rate and PSNR of scikit-image's photos, .vqz vs WebP (method 6)."""
    import skimage.data
    from PIL import Image

    import vaezoo
    from vaezoo import codec

    model = vaezoo.load(MODEL)
    rows = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=-1)
        data = codec.compress(model, [photo])
        mode = codec.read_header(data).mode
        quality = psnr(to_uint8(codec.decompress(model, data)[0]), photo)
        pixels = photo.shape[0] * photo.shape[1]
        webp = []
        for q in range(0, 101):
            buffer = io.BytesIO()
            Image.fromarray(photo).save(buffer, format="WEBP", quality=q, method=6)
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
            webp.append((q, len(buffer.getvalue()), psnr(decoded, photo)))
        at_bytes = max((w for w in webp if w[1] <= len(data)), key=lambda w: w[2], default=min(webp, key=lambda w: w[1]))
        at_psnr = min((w for w in webp if w[2] >= quality), key=lambda w: w[1], default=max(webp, key=lambda w: w[2]))
        rows.append({
            "photo": f"{name} {photo.shape[1]}x{photo.shape[0]}", "vqz coding": mode,
            "vqz bytes": len(data), "vqz bpp": 8 * len(data) / pixels, "vqz PSNR dB": quality,
            "WebP same bytes: q / bytes / PSNR": f"{at_bytes[0]} / {at_bytes[1]} / {at_bytes[2]:.2f}",
            "WebP same PSNR: q / bytes / bpp": f"{at_psnr[0]} / {at_psnr[1]} / {8 * at_psnr[1] / pixels:.3f}",
        })
    print("RESULT " + json.dumps({"rate": rows}), flush=True)


def export_bundle(folder):
    import vaezoo
    from vaezoo.export.tflite import export_tflite

    export_tflite(vaezoo.load(MODEL), folder, variants=("float32",))
    print("RESULT " + json.dumps({"bundle": folder}), flush=True)


def subprocess_result(*args):
    """Run this script with `args` in a fresh process; its RESULT line as a dict."""
    command = [sys.executable, os.path.abspath(__file__), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        print(done.stderr[-3000:], file=sys.stderr)
        return {"error": f"exit code {done.returncode} (likely out of memory)" if done.returncode else "no result"}
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--vqz", help=argparse.SUPPRESS)
    parser.add_argument("--skip-whole", action="store_true", help="skip the whole-image passes (6+ GB each)")
    parser.add_argument("--no-append", action="store_true", help="print the tables only")
    args = parser.parse_args()
    if args.case == "export":
        return export_bundle(args.bundle)
    if args.case == "rate":
        return run_rate()
    if args.case:
        path, mode, step = args.case.split("-")
        return run_case(path, mode, step, args.bundle, args.vqz)

    from vaezoo import tiling

    with tempfile.TemporaryDirectory() as folder:
        bundle = os.path.join(folder, "bundle")
        subprocess_result("--case", "export", "--bundle", bundle)
        rows = []
        for path in ("keras", "litert"):
            for mode in ("tiled",) if args.skip_whole else ("tiled", "whole"):
                vqz_path = os.path.join(folder, f"{path}-{mode}.vqz")
                for step in ("compress", "decompress"):
                    print(f"{path} {mode} {step} ...", flush=True)
                    row = subprocess_result("--case", f"{path}-{mode}-{step}", "--bundle", bundle, "--vqz", vqz_path)
                    rows.append({"path": path, "mode": mode, "step": step, **row})
                    print(row, flush=True)
    columns = ["path", "mode", "step", "peak RSS MB", "runtime, model and photo MB", "seconds", "12 MP bytes",
               "12 MP PSNR dB", "512x512 decompress s (median of 5)", "error"]
    columns = [c for c in columns if any(c in r for r in rows)]
    memory = markdown_table(rows, columns)
    print(memory)
    rate = subprocess_result("--case", "rate").get("rate", [])
    rate_columns = ["photo", "vqz coding", "vqz bytes", "vqz bpp", "vqz PSNR dB", "WebP same bytes: q / bytes / PSNR",
                    "WebP same PSNR: q / bytes / bpp"]
    rate_table = markdown_table(rate, rate_columns)
    print(rate_table)
    if not args.no_append:
        hardware = hardware_description()
        append_results(
            "Large images: 12 MP peak memory, whole vs tiled (Keras, LiteRT)", memory,
            f"`{MODEL}`; one 4000x3000 photo (scikit-image rocket() upsampled bicubically by Pillow) compressed "
            f"to a file, then decompressed from it, each step in a fresh process (one row each); peak resident "
            f"memory by getrusage (includes the runtime, model and photo: the column beside it is that baseline, "
            f"measured before the step); tiled = the codec's default budget of {tiling.MAX_TILE_PIXELS} pixels per "
            "network pass, whole = one pass over the whole image; LiteRT: float32 export, 2 threads, no "
            "TensorFlow imported; 512x512 = scikit-image astronaut(), decompress median of 5 after a warm-up.",
            hardware)
        append_results(
            "Large images: rate and PSNR of scikit-image photos, .vqz vs WebP", rate_table,
            f"`{MODEL}` (trained on 32x32 CIFAR-10 thumbnails), one .vqz file per photo, codec.compress defaults "
            "(the codes entropy-coded by the model's exact context model, or fixed-length without one: the 'vqz "
            "coding' column); PSNR of the 8-bit decoded image over all pixels and channels; WebP: Pillow, "
            "method 6, every quality 0-100, matched bytes = the best PSNR among files no larger than the .vqz, "
            "matched PSNR = the smallest file at least as good.",
            hardware)


if __name__ == "__main__":
    main()
