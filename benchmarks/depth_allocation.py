"""How much an RQ-VAE would gain from coding a different depth at each position (a study for issue 16).

    python benchmarks/depth_allocation.py                          # rq-vae-cifar, 1,000 test images
    python benchmarks/depth_allocation.py --limit 200 --no-append  # a quick look, nothing recorded

Today a `.vqz` quality q codes the first q depths at every position. Positions differ: after a
few depths the residual of a flat patch is small, that of an edge is not. This study measures,
on the model's own codes, what an encoder would gain by stopping each position once its
residual is small, at the price of telling the decoder where it stopped (a depth map):

- **uniform**: depths 1..D everywhere (what files hold today);
- **adaptive, one threshold**: for a threshold t, each position is coded to the first depth k
  (1 <= k <= D) whose latent residual energy `|z - (e_1 + ... + e_k)|^2` is at most t; the
  thresholds sweep a geometric range (this minimises the summed squared error of all images);
- **adaptive, per-image budget**: each image gets a budget of b codes per position, spent by
  the same rule with the image's own threshold (found by bisection): closer to what a mean of
  per-image PSNRs rewards; also with one depth per 2 x 2 positions (a map a quarter the size).

Rates are payload estimates, without the header (the same for both) : a depth-k code costs the
model's exact context network's mean bits per code at depth k on these images, measured over
full stacks (assumed unchanged when some neighbours are absent); the depth map costs the
cross-entropy of each position's depth under the depth histogram of `--train-images`
training images (evenly spaced, like the test images: the CIFAR-10 copy is sorted by class) at the same threshold (positions independent, no spatial
context: a real coder can only do better). PSNR: mean per-image PSNR of the decoded 8-bit
images against the stored pixels (the rate-distortion benchmark's measure); the adaptive
decoding feeds the decoder the latent summed to each position's own depth. Compared: the
uniform rate at the same PSNR (PCHIP of log rate over PSNR, as BD-rate uses) and the BD-rate
of adaptive against uniform. Not a codec: nothing here writes a file.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import append_results, exact_bits_per_depth, hardware_description, load_rq_model, markdown_table  # noqa: E402,E501
from rate_distortion import bd_rate, rate_at_psnr  # noqa: E402

TITLE = "Depth allocation study: one depth per position vs one per image (RQ-VAE, CIFAR-10 (JPEG q75 copy))"


def stopping_depths(residual_energy, threshold):
    """Per position, the first depth k >= 1 whose residual energy (`(..., D + 1)`, entry k after
    k depths) is at most `threshold`; D where none is."""
    depths = residual_energy.shape[-1] - 1
    below = residual_energy[..., 1:] <= threshold
    return np.where(below.any(-1), np.argmax(below, axis=-1) + 1, depths)


def per_image_thresholds(residual_energy, codes_per_position, iterations=40):
    """Each image's threshold (bisection in log space) whose stopping depths average
    `codes_per_position` (as near as the image's energies allow, from above)."""
    n = residual_energy.shape[0]
    low = np.full(n, np.log(max(residual_energy[..., -1].min(), 1e-12)) - 1.0)  # every position at depth D
    high = np.full(n, np.log(residual_energy.max()) + 1.0)  # every position at depth 1
    for _ in range(iterations):
        middle = (low + high) / 2
        mean = stopping_depths(residual_energy, np.exp(middle)[:, None, None, None]).mean(axis=(1, 2))
        low, high = np.where(mean > codes_per_position, middle, low), np.where(mean > codes_per_position, high, middle)
    return np.exp(low)[:, None, None, None]


def allocate(residual_energy, codes_per_position, block=1):
    """Per-image-budget stopping depths `(n, h, w)`; with `block` > 1 one depth per block x block
    positions (decided on the block's summed energies: a map a quarter the size for 2)."""
    n, h, w, levels = residual_energy.shape
    if block == 1:
        return stopping_depths(residual_energy, per_image_thresholds(residual_energy, codes_per_position))
    summed = residual_energy.reshape(n, h // block, block, w // block, block, levels).sum(axis=(2, 4))
    depths = stopping_depths(summed, per_image_thresholds(summed, codes_per_position))
    return np.repeat(np.repeat(depths, block, axis=1), block, axis=2)


def map_bits(train_depths, test_depths, depths):
    """Bits per position of coding `test_depths` with the (add-one-half) histogram of `train_depths`."""
    counts = np.bincount(train_depths.ravel() - 1, minlength=depths) + 0.5
    return float(np.mean(-np.log2(counts / counts.sum())[test_depths.ravel() - 1]))


def latents_and_energies(model, images):
    """`(per-depth cumulative latents (n, h, w, D, C), residual energies (n, h, w, D + 1), codes)`."""
    z = np.asarray(model.encoder(images))
    codes = np.asarray(model.quantizer.nearest_codes(z))
    vectors = np.stack([np.asarray(level.embed(codes[..., k])) for k, level in enumerate(model.quantizer.levels)], -2)
    cumulative = np.cumsum(vectors, axis=-2)
    energies = np.concatenate([np.sum(z**2, -1)[..., None], np.sum((z[..., None, :] - cumulative) ** 2, -1)], -1)
    return cumulative, energies, codes


def psnr_of(model, latents, pixels):
    from compression import to_uint8

    decoded = to_uint8(model.likelihood.image(model.decode(latents)))
    mse = np.mean((decoded.astype(np.float64) - pixels.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rq-vae-cifar")
    parser.add_argument("--limit", type=int, default=1000, help="N test images, evenly spaced over the class-sorted split (default 1,000)")
    parser.add_argument("--train-images", type=int, default=5000, help="training images (evenly spaced) whose depths give the map's histogram")
    parser.add_argument("--thresholds", type=int, default=14, help="thresholds swept (geometric)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[1.5, 2, 3, 4, 5, 6, 7],
                        help="codes per position of the per-image budgets")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    args = parser.parse_args()

    from vaezoo import data

    model, spec = load_rq_model(args.model)
    images, _ = data.load_split(spec, "test", limit=args.limit, spread=True)
    train, _ = data.load_split(spec, "train", limit=args.train_images, spread=True)
    pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    depth = model.depth
    print(f"{args.model}: {len(images)} test images, depths 1..{depth}", flush=True)

    cumulative, energies, codes = [], [], []
    for i in range(0, len(images), 250):
        c, e, k = latents_and_energies(model, images[i : i + 250])
        cumulative.append(c), energies.append(e), codes.append(k)
    cumulative, energies, codes = np.concatenate(cumulative), np.concatenate(energies), np.concatenate(codes)
    train_energies = np.concatenate([latents_and_energies(model, train[i : i + 250])[1]
                                     for i in range(0, len(train), 250)])
    per_depth = exact_bits_per_depth(model, codes)
    print("exact bits per code by depth: " + ", ".join(f"{b:.3f}" for b in per_depth), flush=True)
    positions = int(np.prod(codes.shape[1:3]))

    def decode_at(depths):
        latents = np.take_along_axis(cumulative, (depths - 1)[..., None, None], axis=-2)[..., 0, :]
        return psnr_of(model, latents, pixels)

    uniform = []
    for d in range(1, depth + 1):
        payload = positions * float(np.sum(per_depth[:d])) / 8
        uniform.append({"depth": d, "bytes": payload, "psnr": decode_at(np.full(codes.shape[:3], d))})
        print(f"uniform depth {d}: {payload:.1f} bytes, {uniform[-1]['psnr']:.2f} dB", flush=True)

    high, low = np.quantile(energies[..., 1], 0.9), np.quantile(energies[..., -1], 0.1)
    adaptive, budgeted = [], {}
    for threshold in np.geomspace(high, low, args.thresholds):
        depths = stopping_depths(energies, threshold)
        coded = np.stack([np.mean(depths > k) for k in range(depth)])  # share of positions coded at depth k+1
        code_bytes = positions * float(np.sum(coded * per_depth)) / 8
        side = map_bits(stopping_depths(train_energies, threshold), depths, depth)
        point = {"label": f"adaptive, t = {threshold:.3g}", "codes": float(depths.mean()), "map_bits": side,
                 "bytes": code_bytes + positions * side / 8, "psnr": decode_at(depths)}
        point["uniform_bytes"] = rate_at_psnr([u["bytes"] for u in uniform], [u["psnr"] for u in uniform], point["psnr"])
        adaptive.append(point)
        print(f"threshold {threshold:.4g}: {point['codes']:.2f} codes per position, map {side:.2f} bits per position, "
              f"{point['bytes']:.1f} bytes, {point['psnr']:.2f} dB", flush=True)

    for block, budget in [(b, v) for b in (1, 2) for v in args.budgets]:
        depths = allocate(energies, budget, block)
        coded = np.stack([np.mean(depths > k) for k in range(depth)])
        side = map_bits(allocate(train_energies, budget, block)[:, ::block, ::block],
                        depths[:, ::block, ::block], depth) / block**2
        label = f"adaptive, budget {budget:g}" + (f", {block}x{block} blocks" if block > 1 else "")
        point = {"label": label, "codes": float(depths.mean()), "map_bits": side,
                 "bytes": positions * (float(np.sum(coded * per_depth)) + side) / 8, "psnr": decode_at(depths)}
        point["uniform_bytes"] = rate_at_psnr([u["bytes"] for u in uniform], [u["psnr"] for u in uniform], point["psnr"])
        budgeted.setdefault(block, []).append(point)
        print(f"{label}: {point['codes']:.2f} codes per position, map {side:.2f} bits per position, "
              f"{point['bytes']:.1f} bytes, {point['psnr']:.2f} dB", flush=True)

    rows = [{"points": f"uniform, depth {u['depth']}", "codes per position": u["depth"], "map bits per position": 0,
             "payload bytes per image": round(u["bytes"], 1), "PSNR (dB)": round(u["psnr"], 2),
             "uniform bytes at this PSNR": round(u["bytes"], 1), "change": ""} for u in uniform]
    for p in adaptive + budgeted[1] + budgeted[2]:
        rows.append({"points": p["label"], "codes per position": round(p["codes"], 2),
                     "map bits per position": round(p["map_bits"], 2),
                     "payload bytes per image": round(p["bytes"], 1), "PSNR (dB)": round(p["psnr"], 2),
                     "uniform bytes at this PSNR": "" if p["uniform_bytes"] is None else round(p["uniform_bytes"], 1),
                     "change": "" if p["uniform_bytes"] is None else f"{100 * (p['bytes'] / p['uniform_bytes'] - 1):+.1f}%"})
    table = markdown_table(rows, list(rows[0]))
    for name, points in (("one threshold", adaptive), ("per-image budget", budgeted[1]),
                         ("per-image budget, 2x2 blocks", budgeted[2])):
        value, span = bd_rate([u["bytes"] for u in uniform], [u["psnr"] for u in uniform],
                              [p["bytes"] for p in points], [p["psnr"] for p in points])
        table += (f"\nBD-rate of adaptive ({name}) against uniform: "
                  + (f"{value:+.1f}% over {span[0]:.2f}-{span[1]:.2f} dB" if value is not None else str(span)) + "\n")
    print(table)
    if not args.no_append:
        protocol = (f"`{args.model}`, {len(images)} test images (evenly spaced over the class-sorted split) of "
                    f"{spec.get('source')}:{spec.get('path')} (CIFAR-10 (JPEG q75 copy)); depth-map histogram from "
                    f"{len(train)} training images spread the same way; rates are payload estimates (exact context-network bits per "
                    "code at each depth, measured on full stacks, times the codes coded; map: cross-entropy per "
                    "position, no spatial context; no header), PSNR of 8-bit decodings; see the script's docstring")
        append_results(TITLE, table, protocol, hardware_description())


if __name__ == "__main__":
    main()
