"""Latency of the Python API beside the model's own exports, for every zoo model (issue 20).

For each zoo model and each public method, at batch 1 and batch 64, in one process (a zoo
model without shipped weights, such as `rq-vae-cifar` until it is trained, is built from its
card's architecture with random weights and labelled "(random init)": latency does not depend
on the weights' values):

- `API`: the Python method as a user calls it (`model.reconstruct(x)`, ...): input checks in
  Python, then the model's compiled core (`LatentVariableModel._core`);
- `API eager`: the same method with `model.compiled_methods = False` (how every method ran
  before the compiled cores: the "before" column, measured in the same run);
- `SavedModel`: the matching signature of `export_saved_model`'s SavedModel, loaded with
  plain `tf.saved_model.load` (no vaezoo code runs);
- `TFLite`: the float32 `.tflite` file of `export_tflite` on LiteRT (`TFLiteModel`, 2 threads)
  where it has the signature (`encode` / `decode` of unconditional models).

Inputs are the same numpy arrays for every peer: uint8 images (TFLite: the same images as
float32, which `TFLiteModel` converts), latents `z` (the encoder's means), code grids, seeds
`0 .. batch - 1`; the SavedModel's signatures take tensors, so its calls convert the arrays
(`tf.constant`) as the API does, as a Python service holding numpy arrays would. Each cell is the median wall time of one call over several rounds after
two warm-up calls (tracing, graph optimisation), in ms per call; a round calls the row's API,
SavedModel and TFLite peers in turn (in an order that rotates from round to round), so their
ratio compares calls made under the same load. `elbo` is paired with the `score` signature (the
export's ELBO, deterministic);
`iwae` (k=16) has no exported peer. For `vq-vae-cifar`, `sample (full-grid loop)` is the
PixelCNN sampler the package used before (one network pass on the whole grid per position,
compiled), the other sampler's "before". An RQ-VAE also has rows at half its depth
(`encode_to_codes(x, depth=d)`, `decode_codes(codes, depth=d)`, `reconstruct(x, depth=d)`
beside the signatures given `depth` per image).

    python benchmarks/api_latency.py                      # every zoo model (~10 min on 2 busy cores)
    python benchmarks/api_latency.py --models vae-mnist --repeats 5
    python benchmarks/api_latency.py --xla                # also an "API XLA" column (XLA-compiled cores)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402

BATCHES = (1, 64)
#: batch-1 calls take a few ms: time this many times more rounds of them
BATCH1_ROUNDS = 4
IWAE_K = 16


def timed(fns, repeats, warmup=2, budget=20.0):
    """Median seconds per call of each of `fns` (a dict), over `repeats` rounds after `warmup`
    (fewer rounds if slow); each round calls every function once, in turn, so the peers of a
    row see the same moments of a shared machine's load. The order rotates from round to
    round: a call made right after a TFLite call runs slower while LiteRT's worker threads
    wind down (measured here: vae-fashion-mnist decode at batch 64, 16.5 ms always after
    TFLite, 14.3 ms rotated, SavedModel 13.9 / 13.1 ms), so no peer should always follow it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {key: [] for key in fns}
    start = time.perf_counter()
    for done in range(repeats):
        if done >= 3 and time.perf_counter() - start > budget:
            break
        keys = list(fns)
        for key in keys[done % len(keys):] + keys[: done % len(keys)]:
            t = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - t)
    return {key: statistics.median(values) for key, values in times.items()}


def _np(value):
    import numpy as np
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: np.asarray(t) if isinstance(t, tf.Tensor) else t, value)


def model_cases(model, saved, tflite, batch):
    """[(method, api_fn, saved_model_fn or None, tflite_fn or None)] for one batch size."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *model.image_shape), dtype=np.uint8)
    floats = images.astype(np.float32) / 255.0
    seeds = np.arange(batch, dtype=np.int32)
    kw = {}
    if model.conditional:
        labels = (np.arange(batch) % model.num_classes).astype(np.int32)
        kw = {"condition": labels}
    sig = saved.signatures

    # The signatures take tensors: a SavedModel call converts the same numpy inputs the API
    # is given, in the call, as a Python service holding numpy arrays would.
    def x():
        return tf.constant(images)

    def sig_kw():
        return {"condition": tf.constant(labels)} if model.conditional else {}
    cases = []

    def add(method, api, sm=None, lite=None):
        cases.append((method, api, sm, lite))

    codes_kind = model.latent_kind in ("code_grid", "residual_code_grid")
    residual = model.latent_kind == "residual_code_grid"
    # an RQ-VAE's SavedModel decode and reconstruct take one depth per image (here: every depth)
    depth = np.full(batch, getattr(model, "depth", 1), np.int32)

    def depth_kw():
        return {"depth": tf.constant(depth)} if residual else {}
    add("encode", lambda: model.encode(images, **kw),
        lambda: sig["encode"](images=x(), **sig_kw()),
        None if tflite is None or codes_kind else lambda: tflite.encode(floats))
    if codes_kind:
        codes = np.asarray(model.encode_to_codes(images))
        latents = np.asarray(model.encode(images).mean())
        add("decode", lambda: model.decode(latents))
        add("encode_to_codes", lambda: model.encode_to_codes(images), lambda: sig["encode"](images=x()),
            None if tflite is None else lambda: tflite.encode(floats))
        add("decode_codes", lambda: model.decode_codes(codes),
            lambda: sig["decode"](codes=tf.constant(codes), **depth_kw()),
            None if tflite is None else lambda: tflite.decode(codes))
    else:
        z = np.asarray(model.encode(images, **kw).mean(), np.float32)
        add("decode", lambda: model.decode(z, **kw), lambda: sig["decode"](z=tf.constant(z), **sig_kw()),
            None if tflite is None else lambda: tflite.decode(z))
    add("reconstruct", lambda: model.reconstruct(images, **kw),
        lambda: sig["reconstruct"](images=x(), **sig_kw(), **depth_kw()))
    if residual:  # the first `part` depths (the SavedModel's encode gives every depth, whose first d
        # are the depth-d codes, so it is the peer of both encode_to_codes rows)
        part = max(1, model.depth // 2)
        partial = np.full(batch, part, np.int32)
        add(f"encode_to_codes (depth {part})", lambda: model.encode_to_codes(images, depth=part),
            lambda: sig["encode"](images=x()))
        add(f"decode_codes (depth {part})", lambda: model.decode_codes(codes, depth=part),
            lambda: sig["decode"](codes=tf.constant(codes), depth=tf.constant(partial)),
            None if tflite is None else lambda: tflite.decode(codes, depth=part))
        add(f"reconstruct (depth {part})", lambda: model.reconstruct(images, depth=part),
            lambda: sig["reconstruct"](images=x(), depth=tf.constant(partial)))
    add("elbo", lambda: model.elbo(images, **kw), lambda: sig["score"](images=x(), **sig_kw()))
    add("score_terms", lambda: model.score_terms(images, **kw), lambda: sig["score"](images=x(), **sig_kw()))
    add("iwae", lambda: model.iwae(images, k=IWAE_K, **kw))
    add("sample", lambda: model.sample(batch, seed=0, **kw),
        lambda: sig["sample"](seed=tf.constant(seeds), **sig_kw()))
    add("sample_per_seed", lambda: model.sample_per_seed(seeds, **kw),
        lambda: sig["sample"](seed=tf.constant(seeds), **sig_kw()))
    if model.latent_kind == "code_grid" and model.prior is not None:
        prior = model.prior
        full_grid = tf.function(lambda noise: model.decode_codes(prior._sample_from_noise_full_grid(noise)))
        noise = prior.gumbel_noise(batch, tf.constant([0, 0]))
        add("sample (full-grid loop)", lambda: full_grid(noise))
    return cases


def measure_model(name, repeats, work, xla=False):
    import tensorflow as tf

    import vaezoo
    from vaezoo.export.saved_model import export_saved_model
    from vaezoo.export.tflite import TFLiteModel, export_tflite

    if vaezoo.info(name)["weights"] is None:  # latency does not depend on the weights' values
        model, label = vaezoo.load(name, weights=False), f"{name} (random init)"
        model.build_from_images()
    else:
        model, label = vaezoo.load(name), name
    xla_model = None
    if xla:  # a second copy, the same weights, whose compiled cores are XLA-compiled
        xla_model = vaezoo.load(name, weights=False)
        xla_model.build_from_images()
        xla_model.set_weights(model.get_weights())
        xla_model.jit_compile_cores = True
    path = export_saved_model(model, os.path.join(work, "saved"), model_name=name, version=1)
    saved = tf.saved_model.load(path)
    tflite = None
    if not model.conditional:
        files = export_tflite(model, os.path.join(work, name + "-tflite"), variants=("float32",))
        tflite = TFLiteModel(files["float32"], num_threads=2)
    rows = []
    for batch in BATCHES:
        rounds = repeats * BATCH1_ROUNDS if batch == 1 else repeats
        cases = model_cases(model, saved, tflite, batch)
        xla_apis = [case[1] for case in model_cases(xla_model, saved, None, batch)] if xla else [None] * len(cases)
        for (method, api, sm, lite), xla_api in zip(cases, xla_apis):
            row = {"model": label, "method": method, "batch": batch}
            model.compiled_methods = True
            if method == "sample (full-grid loop)":
                xla_api = None  # a plain tf.function, not a core
            elif xla_api is not None:
                try:
                    xla_api()
                except tf.errors.InvalidArgumentError:  # XLA needs static shapes (iwae's chunk loop has none)
                    row["XLA / API"] = "does not compile"
                    xla_api = None
            peers = {"API": api, "SavedModel": sm, "TFLite f32": lite, "API XLA": xla_api}
            times = timed({key: fn for key, fn in peers.items() if fn is not None}, rounds)
            row["API ms"] = 1e3 * times["API"]
            if xla_api is not None:
                row["API XLA ms"] = 1e3 * times["API XLA"]
                row["XLA / API"] = row["API XLA ms"] / row["API ms"]
            if sm is not None:
                row["SavedModel ms"] = 1e3 * times["SavedModel"]
                row["API / SavedModel"] = row["API ms"] / row["SavedModel ms"]
            if lite is not None:
                row["TFLite f32 ms"] = 1e3 * times["TFLite f32"]
            full_grid = method.startswith("sample") and model.latent_kind == "code_grid"
            if method != "sample (full-grid loop)" and not (full_grid and batch > 1):
                model.compiled_methods = False  # the methods as they ran before the compiled cores
                row["API eager ms"] = 1e3 * timed({"eager": api}, max(3, repeats // 2), warmup=1)["eager"]
                row["eager / API"] = row["API eager ms"] / row["API ms"]
                model.compiled_methods = True
            rows.append(row)
            print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="zoo names (default: every zoo model)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--xla", action="store_true",
                        help="also time the API with XLA-compiled cores (`jit_compile_cores = True`)")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    args = parser.parse_args()
    import vaezoo

    names = args.models or list(vaezoo.list_models())
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaezoo-latency-") as work:
        for name in names:
            rows += measure_model(name, args.repeats, work, xla=args.xla)
    summary = []
    for name in dict.fromkeys(r["model"] for r in rows):  # labels, e.g. "rq-vae-cifar (random init)"
        cell = {(r["method"], r["batch"]): r for r in rows if r["model"] == name}
        if ("reconstruct", 64) in cell and ("sample", 64) in cell:
            ratio = cell[("sample", 64)]["API ms"] / cell[("reconstruct", 64)]["API ms"]
            line = f"- {name}: sample / reconstruct at batch 64 (API, per image): {ratio:.1f}x"
            if ("sample (full-grid loop)", 64) in cell:
                old = cell[("sample (full-grid loop)", 64)]["API ms"] / cell[("reconstruct", 64)]["API ms"]
                line += f" (full-grid loop: {old:.1f}x)"
            summary.append(line)
    columns = ["model", "method", "batch", "API ms", "SavedModel ms", "API / SavedModel", "TFLite f32 ms",
               "API eager ms", "eager / API"] + (["API XLA ms", "XLA / API"] if args.xla else [])
    table = markdown_table(rows, columns) + "\n\n" + "\n".join(summary)
    print(table)
    if not args.no_record:
        append_results(
            "Python API latency beside the SavedModel and TFLite exports (compiled cores)", table,
            protocol=f"shipped zoo weights (a model without them: its card's architecture, random init, "
                     f"labelled so); uint8 images from a fixed generator (batch 1 and 64); median of up to "
                     f"{args.repeats} rounds at batch 64 and {args.repeats * BATCH1_ROUNDS} at batch 1 after 2 "
                     f"warm-up calls, each round calling the API, SavedModel and TFLite peers in turn, in an order that "
                     f"rotates from round to round; ms per "
                     f"call; every peer is given the same numpy arrays (the SavedModel call converts them "
                     f"with tf.constant, as the API converts them); SavedModel loaded with "
                     f"tf.saved_model.load in the same process; TFLite float32 on LiteRT with 2 threads; "
                     f"'API eager' is the same method with compiled_methods=False (the code path before the "
                     f"compiled cores); elbo is paired with the score signature; iwae k={IWAE_K}"
                     + ("; 'API XLA' is the API of a second copy of the model with jit_compile_cores=True "
                        "(XLA-compiled cores), timed in the same rounds" if args.xla else ""),
            hardware=hardware_description())


if __name__ == "__main__":
    main()
