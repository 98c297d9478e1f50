"""Rate-distortion curves: vaezoo's `.vqz` codec at every quality beside JPEG, WebP and AVIF.

    python benchmarks/rate_distortion.py                              # vq-vae-cifar, all 10,000 test images
    python benchmarks/rate_distortion.py --limit 500 --no-append      # a quick look, nothing recorded
    python benchmarks/rate_distortion.py --model vq-vae-cifar --model rq-vae-cifar

Data: CIFAR-10 test images (the JPEG q75 copy in ../shared/data, so every figure is labelled
"CIFAR-10 (JPEG q75 copy)"): all 10,000, or a fixed random sample of `--limit` (seed 1); and
scikit-image's sample photos (the ones `benchmarks/large_images.py` uses), each its own file.

Codecs, every image its own file:
- JPEG (Pillow / libjpeg-turbo, optimized Huffman tables, 4:2:0), WebP (Pillow / libwebp,
  method 6) and AVIF (Pillow's AVIF plugin: libavif with the aom encoder and dav1d decoder,
  speed 6, 4:2:0, one thread) at every quality of `--qualities` (default: 0-4 and every 5 up to
  100; JPEG from 1);
- vaezoo, for every `--model` (a zoo name, a `.keras` file or a finished training workdir) at
  every quality the model offers (an RQ-VAE's depths 1..D through `codec.compress(...,
  quality=d)`; a VQ-VAE has one operating point), one image per file and all images in one
  batch file (CIFAR only), on the LiteRT device path by default (the model exported to a float32
  bundle, as `benchmarks/compression.py` measures it) or the Keras desktop path (`--runtime keras`).

Measured per point: bytes per image (mean file size), bits per pixel, mean per-image PSNR of the
8-bit RGB decoding against the stored pixels, mean per-image SSIM (`tf.image.ssim`: Wang et
al.'s 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, averaged over the valid window
positions and the channels), and encode / decode wall time per image (vaezoo's one-image files:
decoded in a loop over 1,000 evenly spaced files for the time, all of them together by
`codec.decompress_many` for the images).

Compared: the Bjontegaard-delta rate (BD-rate) of each vaezoo curve against each classic codec
over their overlapping PSNR range (the `bjontegaard` package's PCHIP interpolation of log rate
over PSNR, as in the JCT-VC common test conditions, on each curve's Pareto front: points that
another point of the same codec beats in both rate and PSNR are dropped, so PSNR rises strictly
with rate); undefined for a model with one operating point. Issue 16's goals are checked on
CIFAR and reported, met or not: at every vaezoo quality fewer bytes per single-image file than
WebP and AVIF at the same PSNR (their curves interpolated the same way at vaezoo's PSNR), and
BD-rate (single-image files) at most -50% against WebP and -60% against AVIF.

Writes the tables to benchmarks/RESULTS.md and the plots to docs/images/rate_distortion_cifar.png
and docs/images/rate_distortion_photos.png (with `--no-append`: neither, unless `--figure-dir`).
"""

import argparse
import inspect
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, git_revision, hardware_description, markdown_table  # noqa: E402
from compression import DATA_LABEL, DEFAULT_DATA, load_cifar, pillow_round_trip, to_uint8  # noqa: E402
from large_images import PHOTOS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(ROOT, "docs", "images")
CIFAR_TITLE = "Rate-distortion on CIFAR-10 (JPEG q75 copy): vaezoo vs JPEG, WebP and AVIF"
CIFAR_POINTS_TITLE = "Rate-distortion on CIFAR-10 (JPEG q75 copy): every point"
PHOTOS_TITLE = "Rate-distortion on scikit-image's sample photos: vaezoo vs JPEG, WebP and AVIF"
PHOTOS_POINTS_TITLE = "Rate-distortion on scikit-image's sample photos: every point"
DEFAULT_QUALITIES = "0-4,5-100:5"
#: vaezoo's one-file-per-image decode time: a loop over this many evenly spaced files.
TIMED_FILES = 1000
#: issue 16's BD-rate goals (percent, vaezoo's single-image files against the codec).
BD_GOALS = {"WebP": -50.0, "AVIF": -60.0}

#: (label, Pillow format, save options, lowest quality) of each classic codec.
CLASSIC = (
    ("JPEG", "JPEG", {"optimize": True}, 1),
    ("WebP", "WEBP", {"method": 6}, 0),
    ("AVIF", "AVIF", {"speed": 6, "max_threads": 1}, 0),
)


def classic_description():
    """The classic codecs with the library versions they ran on (for the protocol line)."""
    import PIL
    from PIL import features

    avif = "AVIF unavailable"
    try:
        from PIL import _avif

        avif = f"libavif {features.version('avif')} ({_avif.codec_versions()})"
    except ImportError:
        pass
    return (f"Pillow {PIL.__version__}: JPEG (libjpeg-turbo {features.version('jpg')}, optimize=True, Pillow's "
            f"default 4:2:0), WebP (libwebp {features.version('webp')}, method 6), AVIF ({avif}, speed 6, Pillow's "
            "default 4:2:0, max_threads 1)")


def parse_qualities(spec):
    """Qualities from `"0-4,5-100:5"`-style text: integers, ranges `a-b` and stepped ranges `a-b:s`."""
    qualities = set()
    for part in spec.split(","):
        part = part.strip()
        span, _, step = part.partition(":")
        low, _, high = span.partition("-")
        try:
            low, high, step = int(low), int(high or low), int(step or 1)
        except ValueError:
            raise ValueError(f"--qualities takes integers and ranges like '0-4,5-100:5', got {part!r}") from None
        if not 0 <= low <= high <= 100 or step < 1:
            raise ValueError(f"--qualities: {part!r} is not a range within 0-100 with a positive step")
        qualities.update(range(low, high + 1, step))
    return sorted(qualities)


# --------------------------------------------------------------------- image quality
def mse_per_image(reference, images):
    """Per-image MSE of 8-bit images against 8-bit references (lists of any sizes), on the 0-255 scale."""
    return np.array([np.mean((np.asarray(ref, np.float64) - np.asarray(image, np.float64)) ** 2)
                     for ref, image in zip(reference, images)])


def ssim_per_image(reference, images, chunk=1000):
    """Per-image SSIM of 8-bit RGB images against 8-bit references, by `tf.image.ssim` (batched
    over equal sizes; Wang et al.'s 11x11 Gaussian window, sigma 1.5)."""
    import tensorflow as tf

    out = []
    reference, images = list(reference), list(images)
    start = 0
    while start < len(reference):
        stop = start + 1
        while (stop < len(reference) and stop - start < chunk and reference[stop].shape == reference[start].shape):
            stop += 1
        a = tf.constant(np.stack(reference[start:stop]))
        b = tf.constant(np.stack([np.asarray(image, np.uint8) for image in images[start:stop]]))
        out.append(tf.image.ssim(a, b, max_val=255).numpy().astype(np.float64))
        start = stop
    return np.concatenate(out)


def point(codec, setting, quality, reference, decoded, sizes, encode_s, decode_s):
    """One rate-distortion point: `sizes` are the file sizes (bytes), the times are totals; PSNR
    is vaezoo's (`evaluation.reconstruction.psnr_of_errors`: the mean of per-image PSNRs)."""
    from vaezoo.evaluation.reconstruction import psnr_of_errors

    pixels = sum(image.shape[0] * image.shape[1] for image in reference)
    errors = mse_per_image(reference, decoded)
    n = len(reference)
    return {
        "codec": codec, "setting": setting, "quality": quality, "bytes/image": float(np.sum(sizes)) / n,
        "bits/pixel": 8.0 * float(np.sum(sizes)) / pixels,
        # vaezoo's PSNR floor on the 0-255 scale: an image decoded without loss counts at 100 dB
        "PSNR (dB)": psnr_of_errors(errors, max_value=255.0, min_mse=255.0**2 * 1e-10),
        "SSIM": float(np.mean(ssim_per_image(reference, decoded))), "decoded exactly": float(np.mean(errors == 0)),
        "encode ms/image": 1e3 * encode_s / n, "decode ms/image": 1e3 * decode_s / n,
    }


# --------------------------------------------------------------------- the codecs
def classic_points(images, qualities, progress=print):
    """Every classic codec at every quality (one file per image): a list of points."""
    points = []
    for label, fmt, options, lowest in CLASSIC:
        for quality in [q for q in qualities if q >= lowest]:
            start = time.perf_counter()
            sizes, decoded, encode_s, decode_s = [], [], 0.0, 0.0
            for group in _equal_size_groups(images):
                mean_bytes, out, enc, dec = pillow_round_trip(group, fmt, quality, **options)
                sizes.append(mean_bytes * len(group))
                decoded.extend(out)
                encode_s, decode_s = encode_s + enc, decode_s + dec
            points.append(point(label, f"quality {quality}", quality, images, decoded, sizes, encode_s, decode_s))
            progress(f"  {label} quality {quality}: {_summary(points[-1])} ({time.perf_counter() - start:.1f} s)")
    return points


def _equal_size_groups(images):
    """`images` (an array or a list) as consecutive runs of equal size, each an array."""
    if isinstance(images, np.ndarray):
        return [images]
    groups = []
    for image in images:
        if groups and groups[-1][-1].shape == image.shape:
            groups[-1].append(image)
        else:
            groups.append([image])
    return [np.stack(group) for group in groups]


def _summary(p):
    return f"{p['bytes/image']:.1f} B/image, {p['bits/pixel']:.3f} bpp, {p['PSNR (dB)']:.2f} dB, SSIM {p['SSIM']:.4f}"


def operating_points(model):
    """The `quality=` values of `vaezoo.codec.compress` to measure for `model`: the depths
    1..D of a residual-quantized model (latent kind `residual_code_grid`, an RQ-VAE), else
    `[None]` (the model's one operating point: `compress` without `quality=`).

    Raises SystemExit when the model has several depths but this vaezoo's `codec.compress`
    takes no `quality=` (issue 16's quality knob): the benchmark has no way to select them."""
    if model.latent_kind != "residual_code_grid":
        return [None]
    from vaezoo import codec

    if "quality" not in inspect.signature(codec.compress).parameters:
        raise SystemExit(f"{model.name} has {model.depth} quantizer depths, but this vaezoo's codec.compress takes "
                         "no quality= argument (issue 16's quality knob): nothing selects a depth to benchmark.")
    return list(range(1, model.depth + 1))


def codec_model(model, runtime, bundle, threads):
    """What `codec.compress` runs on: the model's LiteRT export (written into `bundle`) or the model."""
    from vaezoo import codec

    if runtime == "keras":
        return codec.KerasCodecModel(model)
    from vaezoo.export.tflite import export_tflite

    export_tflite(model, bundle, variants=("float32",))
    return codec.LiteRTCodecModel(bundle, num_threads=threads)


def vaezoo_points(device, label, qualities, images, batch_file=True, progress=print, timed=TIMED_FILES):
    """vaezoo at each quality: one file per image, and (`batch_file`) all images in one file.

    One file per image: every file is written by its own `compress` call (timed); the decode
    time is a loop of `decompress` calls over `timed` evenly spaced files, and the images of
    all files come from `codec.decompress_many` (the same codes; a raster coder's one-image
    files decode one position per step, so a loop over 10,000 files per quality would take
    most of the run). The looped images must match the jointly decoded ones to 1 level."""
    from vaezoo import codec, data

    points = []
    for quality in qualities:
        options = {} if quality is None else {"quality": quality}
        setting = "its one operating point" if quality is None else f"quality {quality}"
        if batch_file:  # warm-up: allocate the batch's tensors once (photos differ in size anyway)
            codec.decompress(device, codec.compress(device, list(images[:2]), **options))
        start = time.perf_counter()
        files = []
        for i, image in enumerate(images):
            files.append(codec.compress(device, [image], **options))
            if (i + 1) % 2000 == 0:
                progress(f"    {label} {setting}: {i + 1}/{len(images)} single files written")
        encode_s = time.perf_counter() - start
        sample = data.evenly_spaced(len(files), timed)
        start = time.perf_counter()
        looped = [to_uint8(codec.decompress(device, files[i])[0]) for i in sample]
        decode_s = (time.perf_counter() - start) * len(files) / len(sample)
        decoded = [to_uint8(many[0]) for many in codec.decompress_many(device, files)]
        worst = max(int(np.abs(decoded[i].astype(int) - image.astype(int)).max()) for i, image in zip(sample, looped))
        assert worst <= 1, f"{label} {setting}: decompress_many differs from decompress by {worst} levels"
        points.append(point(f"{label}, one file per image", setting, quality, images, decoded,
                            [len(f) for f in files], encode_s, decode_s))
        progress(f"  {points[-1]['codec']} {setting}: {_summary(points[-1])}")
        if batch_file:
            start = time.perf_counter()
            batch = codec.compress(device, images, **options)
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = to_uint8(codec.decompress(device, batch))
            decode_s = time.perf_counter() - start
            points.append(point(f"{label}, one batch file", setting, quality, images, decoded, [len(batch)],
                                encode_s, decode_s))
            progress(f"  {points[-1]['codec']} {setting}: {_summary(points[-1])}")
    return points


# --------------------------------------------------------------------- comparing curves
def pareto_front(rates, psnrs):
    """`(rates, psnrs)` of the points no other point beats, by increasing rate: a point is
    dropped when another has at most its rate and at least its PSNR (PSNR then rises
    strictly with rate, which the BD-rate interpolation needs)."""
    rates, psnrs = np.asarray(rates, np.float64), np.asarray(psnrs, np.float64)
    keep, best = [], -np.inf
    for i in np.lexsort((-psnrs, rates)):  # by rate, the best PSNR first among equal rates
        if psnrs[i] > best:
            keep.append(i)
            best = psnrs[i]
    return rates[keep], psnrs[keep]


def bd_rate(anchor_rates, anchor_psnrs, test_rates, test_psnrs):
    """`(percent, (low, high))`: the Bjontegaard-delta rate of `test` against `anchor` over their
    overlapping PSNR range (`bjontegaard.bd_rate`, PCHIP, on each curve's Pareto front): the
    mean relative rate difference at equal PSNR, -50 = half the rate. `(None, reason)` when it
    is undefined (fewer than two test or anchor points, or no overlap)."""
    import bjontegaard

    anchor_rates, anchor_psnrs = pareto_front(anchor_rates, anchor_psnrs)
    test_rates, test_psnrs = pareto_front(test_rates, test_psnrs)
    if len(test_psnrs) < 2 or len(anchor_psnrs) < 2:
        return None, "undefined: one operating point" if len(test_psnrs) < 2 else "undefined: one anchor point"
    low, high = max(anchor_psnrs[0], test_psnrs[0]), min(anchor_psnrs[-1], test_psnrs[-1])
    if low >= high:
        return None, (f"undefined: no overlap (vaezoo {test_psnrs[0]:.2f}-{test_psnrs[-1]:.2f} dB, "
                      f"anchor {anchor_psnrs[0]:.2f}-{anchor_psnrs[-1]:.2f} dB)")
    value = bjontegaard.bd_rate(anchor_rates, anchor_psnrs, test_rates, test_psnrs, method="pchip",
                                require_matching_points=False, min_overlap=0)
    return float(value), (float(low), float(high))


def rate_at_psnr(rates, psnrs, target):
    """The rate of a curve at PSNR `target` (PCHIP of log rate over PSNR on its Pareto front, the
    interpolation BD-rate uses); None when `target` is outside the curve's PSNR range."""
    from scipy.interpolate import PchipInterpolator

    rates, psnrs = pareto_front(rates, psnrs)
    if len(psnrs) < 2 or not psnrs[0] <= target <= psnrs[-1]:
        return None
    return float(10 ** PchipInterpolator(psnrs, np.log10(rates))(target))


def comparison(points, rate_key, goals):
    """`(per_quality_rows, bd_rows, goal_lines)`: each vaezoo point against the classic curves at
    its PSNR, and BD-rates of each vaezoo curve against each classic codec."""
    classic = {label: [p for p in points if p["codec"] == label] for label, *_ in CLASSIC}
    curves = {}
    for p in points:
        if p["codec"] not in classic:
            curves.setdefault(p["codec"], []).append(p)
    unit = "bytes/image" if rate_key == "bytes/image" else "bits/pixel"
    per_quality, bd_rows, goal_lines = [], [], []
    for name, curve in curves.items():
        single = name.endswith("one file per image")
        for p in curve:
            row = {"vaezoo": name, "setting": p["setting"], unit: p[rate_key], "PSNR (dB)": p["PSNR (dB)"]}
            wins = []
            for label, anchor in classic.items():
                rate = rate_at_psnr([a[rate_key] for a in anchor], [a["PSNR (dB)"] for a in anchor], p["PSNR (dB)"])
                psnr_range = (f"{min(a['PSNR (dB)'] for a in anchor):.2f}-"
                              f"{max(a['PSNR (dB)'] for a in anchor):.2f} dB" if anchor else "no points")
                row[f"{label} at this PSNR"] = (f"{rate:.4g} ({p[rate_key] / rate - 1:+.0%})" if rate is not None
                                               else f"outside its range ({psnr_range})")
                if label in BD_GOALS:
                    wins.append(None if rate is None else p[rate_key] < rate)
            if goals and single:
                row["fewer bytes than WebP and AVIF"] = ("undecided (PSNR outside a curve)" if None in wins
                                                         else "yes" if all(wins) else "no")
            per_quality.append(row)
        for label, anchor in classic.items():
            value, span = bd_rate([a[rate_key] for a in anchor], [a["PSNR (dB)"] for a in anchor],
                                  [p[rate_key] for p in curve], [p["PSNR (dB)"] for p in curve])
            row = {"vaezoo": name, "against": label,
                   "BD-rate": f"{value:+.1f}%" if value is not None else span,
                   "over PSNR (dB)": f"{span[0]:.2f}-{span[1]:.2f}" if value is not None else ""}
            if goals and single and label in BD_GOALS:
                row["goal"] = (f"<= {BD_GOALS[label]:.0f}%: " + ("undecided" if value is None else
                                                                  "met" if value <= BD_GOALS[label] else "not met"))
            bd_rows.append(row)
        if goals and single:
            decided = [r["fewer bytes than WebP and AVIF"] for r in per_quality if r["vaezoo"] == name]
            verdict = ("met" if all(d == "yes" for d in decided) else
                       "not met" if "no" in decided else "undecided")
            goal_lines.append(f"- goal, {name}: fewer bytes than WebP and AVIF at the same PSNR at every quality: "
                              f"{verdict} ({decided.count('yes')} of {len(decided)} qualities)")
            for r in bd_rows:
                if r["vaezoo"] == name and "goal" in r:
                    goal_lines.append(f"- goal, {name}: BD-rate against {r['against']} {r['goal']} "
                                      f"(BD-rate {r['BD-rate']})")
    return per_quality, bd_rows, goal_lines


# --------------------------------------------------------------------- plot
def plot(points, rate_key, path, title, footnote, top_db=50.0):
    """Rate (log axis) against PSNR for every curve, saved as a PNG at `path` (written whole or
    not at all). PSNRs above `top_db` (images some classic codec decodes losslessly count at
    vaezoo's PSNR floor, 100 dB) are left off the chart, and the footnote says so."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = {}
    for p in points:
        curves.setdefault(p["codec"], []).append(p)
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for name, curve in curves.items():
        curve = sorted(curve, key=lambda p: p[rate_key])
        vaezoo = name not in {label for label, *_ in CLASSIC}
        ax.plot([p[rate_key] for p in curve], [p["PSNR (dB)"] for p in curve],
                marker="*" if vaezoo else "o", markersize=13 if vaezoo else 3, linewidth=2 if vaezoo else 1.2,
                linestyle="--" if name.endswith("one batch file") else "-", label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    low = min(p["PSNR (dB)"] for p in points)
    off_chart = sorted({p["codec"] for p in points if p["PSNR (dB)"] > top_db})
    ax.set_ylim(np.floor(low) - 1, min(top_db, max(p["PSNR (dB)"] for p in points) + 1))
    ax.set_xlabel("bytes per image (mean file size; 32x32 RGB: 128 bytes = 1 bit per pixel)"
                  if rate_key == "bytes/image" else "bits per pixel (all photos' bytes x 8 / their pixels)")
    ax.set_ylabel("PSNR (dB): mean per-image, 8-bit RGB")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(textwrap.fill(title, 110), fontsize=10)
    if off_chart:
        footnote += (f" Points above {top_db:.0f} dB are off the chart ({', '.join(off_chart)}: images decoded "
                     "without loss count at 100 dB).")
    fig.text(0.01, 0.01, "\n".join(textwrap.wrap(footnote, 190)), fontsize=6.5, va="bottom")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.22)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)  # never a half-written figure
    return path


# --------------------------------------------------------------------- main
POINT_COLUMNS = ["codec", "setting", "bytes/image", "bits/pixel", "PSNR (dB)", "SSIM", "decoded exactly",
                 "encode ms/image", "decode ms/image"]


FORMATS = {"bytes/image": "{:.1f}", "bits/pixel": "{:.3f}", "PSNR (dB)": "{:.2f}", "SSIM": "{:.4f}",
           "decoded exactly": "{:.1%}", "encode ms/image": "{:.2f}", "decode ms/image": "{:.2f}"}


def _rounded(rows):
    return [{k: FORMATS[k].format(v) if k in FORMATS and isinstance(v, float) else v for k, v in r.items()}
            for r in rows]


def report(points, rate_key, goals):
    """The tables (markdown) of one data set: every point, and vaezoo against the classic codecs."""
    per_quality, bd_rows, goal_lines = comparison(points, rate_key, goals)
    every = markdown_table(_rounded(points), POINT_COLUMNS)
    versus = "\n\n".join(markdown_table(_rounded(rows), list(rows[0])) for rows in (per_quality, bd_rows) if rows)
    return every, versus + ("\n\n" + "\n".join(goal_lines) if goal_lines else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None,
                        help="a zoo codec model, .keras file or finished workdir (repeatable; default vq-vae-cifar)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="cifar10_jpeg.tar.gz")
    parser.add_argument("--limit", type=int, default=None,
                        help="a fixed random sample (seed 1) of this many test images (default: all 10,000)")
    parser.add_argument("--qualities", default=DEFAULT_QUALITIES,
                        help=f"classic codec qualities (default {DEFAULT_QUALITIES!r}: 0-4, then every 5; JPEG from 1)")
    parser.add_argument("--photos", default=",".join(PHOTOS),
                        help="scikit-image sample photos, comma-separated ('' for none)")
    parser.add_argument("--runtime", choices=("litert", "keras"), default="litert",
                        help="vaezoo on its LiteRT export (default) or on the Keras model")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: LiteRT's)")
    parser.add_argument("--figure-dir", default=None, help=f"where the PNGs go (default {FIGURES}; with "
                        "--no-append no PNG is written unless this is given)")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args(argv)
    qualities = parse_qualities(args.qualities)
    photo_names = [p for p in args.photos.split(",") if p]
    unknown = sorted(set(photo_names) - set(PHOTOS))
    if unknown:
        parser.error(f"--photos: unknown {unknown}; choose from {', '.join(PHOTOS)}")
    figure_dir = args.figure_dir or (None if args.no_append else FIGURES)

    from vaezoo.registry import resolve_model
    from vaezoo.workdir import weights_fingerprint

    def progress(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    progress("loading CIFAR-10 test images")
    test = load_cifar(args.data, "test")
    sample = f"all {len(test):,}"
    if args.limit is not None and args.limit < len(test):
        test = test[np.sort(np.random.default_rng(1).choice(len(test), args.limit, replace=False))]
        sample = f"a fixed random sample of {len(test):,} (seed 1)"
    photos = []
    if photo_names:
        import skimage.data

        photos = [np.ascontiguousarray(getattr(skimage.data, name)()) for name in photo_names]

    progress(f"classic codecs on {len(test):,} CIFAR images, qualities {args.qualities}")
    cifar = classic_points(test, qualities, progress)
    progress(f"classic codecs on {len(photos)} photos")
    photo_points = classic_points(photos, qualities, progress) if photos else []
    models = []
    for ref in args.model or ["vq-vae-cifar"]:
        model, name, _, _ = resolve_model(ref)
        levels = operating_points(model)
        models.append(f"`{name}` (weights sha256 {weights_fingerprint(model)[:12]}; "
                      + ("one operating point" if levels == [None] else f"qualities {levels[0]}-{levels[-1]}") + ")")
        with tempfile.TemporaryDirectory() as bundle:
            progress(f"vaezoo {name} ({args.runtime}) on {len(test):,} CIFAR images, qualities {levels}")
            device = codec_model(model, args.runtime, bundle, args.threads)
            label = f"vaezoo {name}"
            cifar += vaezoo_points(device, label, levels, test, batch_file=True, progress=progress)
            if photos:
                progress(f"vaezoo {name} on {len(photos)} photos")
                photo_points += vaezoo_points(device, label, levels, photos, batch_file=False, progress=progress)

    hardware = hardware_description()
    runtime = ("LiteRT (the model's float32 export" + (f", {args.threads} threads)" if args.threads else ")")
               if args.runtime == "litert" else "Keras (the desktop path; context model on LiteRT)")
    common = (f"vaezoo {', '.join(models)} on {runtime}, every quality the model offers; "
              f"classic codecs at qualities {args.qualities} ({classic_description()}). PSNR: mean per-image PSNR of "
              "the decoded 8-bit RGB against the stored pixels; SSIM: mean per-image tf.image.ssim (11x11 Gaussian "
              "window, sigma 1.5, K1 0.01, K2 0.03, over the valid positions and channels); times: wall clock per "
              "image (one file per image: a loop of compress calls over all images, and of decompress calls over "
              f"{TIMED_FILES:,} evenly spaced files (every image when fewer), whose images are those of one "
              "decompress_many call over all files to within 1 level (checked); one batch file: one call over all "
              "images). BD-rate: bjontegaard.bd_rate (PCHIP of log rate over PSNR, each curve's Pareto front) over "
              "the PSNR range both curves cover; 'at this PSNR': the classic curve interpolated the same way.")
    cifar_protocol = (f"{DATA_LABEL}, test split, {sample} images, each its own file (vaezoo also all in one "
                      f"batch file); {common} 'decoded exactly': the share of images decoded without loss (each "
                      "counts at 100 dB in the mean PSNR; the data are a quality-75 JPEG copy, which JPEG at quality "
                      "75 largely reproduces).")
    photo_protocol = (f"scikit-image sample photos {', '.join(photo_names)} "
                      f"({', '.join(f'{p.shape[1]}x{p.shape[0]}' for p in photos)}), each its own file; rate = "
                      f"bits per pixel over all photos (total bytes x 8 / total pixels), PSNR and SSIM the mean "
                      f"over photos; {common}")
    cifar_every, cifar_versus = report(cifar, "bytes/image", goals=True)
    print(cifar_every, cifar_versus, sep="\n\n")
    sections = [(CIFAR_POINTS_TITLE, cifar_every, cifar_protocol), (CIFAR_TITLE, cifar_versus, cifar_protocol)]
    if photos:
        photo_every, photo_versus = report(photo_points, "bits/pixel", goals=False)
        print(photo_every, photo_versus, sep="\n\n")
        sections += [(PHOTOS_POINTS_TITLE, photo_every, photo_protocol), (PHOTOS_TITLE, photo_versus, photo_protocol)]
    if figure_dir:
        import PIL

        caption = (f"Pillow {PIL.__version__}: JPEG (libjpeg-turbo, optimize), WebP (method 6), AVIF (libavif + aom, "
                   f"speed 6); vaezoo {', '.join(m.split(' (')[0] for m in models)} on {runtime}. PSNR: mean "
                   "per-image PSNR of the 8-bit RGB decoding against the stored pixels. Protocol in "
                   f"benchmarks/RESULTS.md. {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {git_revision()}; "
                   f"{hardware}. Made by `python "
                   + " ".join([os.path.relpath(sys.argv[0])] + list(argv if argv is not None else sys.argv[1:])) + "`.")
        progress("wrote " + plot(cifar, "bytes/image", os.path.join(figure_dir, "rate_distortion_cifar.png"),
                                 f"{DATA_LABEL}, test split, {sample} images; one file per image "
                                 "(dashed: vaezoo, all in one file)", caption))
        if photos:
            progress("wrote " + plot(photo_points, "bits/pixel", os.path.join(figure_dir, "rate_distortion_photos.png"),
                                     f"scikit-image sample photos ({', '.join(photo_names)}), one file per photo",
                                     caption))
    if not args.no_append:
        for title, table, protocol in sections:
            append_results(title, table, protocol, hardware)
    return cifar, photo_points


if __name__ == "__main__":
    main()
