"""Train the exact context model (the `.vqz` entropy model) of a VQ-VAE or RQ-VAE on its data's codes.

    python scripts/train_context_model.py --model vq-vae-cifar --workdir runs/context-cifar
    python scripts/train_context_model.py --model /work/runs/rq-vae-cifar --workdir runs/context-rq-cifar
    python scripts/train_context_model.py --model vq-vae-cifar --workdir runs/context-cifar-groups8 --schedule groups8
    python scripts/train_context_model.py --model vq-vae-cifar --workdir runs/context-raster --schedule raster \
        --channels 256 --layers 3 --epochs 20      # vq-vae-cifar's shipped context model
    python scripts/train_context_model.py --model rq-vae-cifar --workdir runs/context-rq --channels 86 --epochs 20
    python scripts/train_context_model.py --model rq-vae-cifar --workdir runs/context-rq-raster --schedule raster \
        --channels 256 --layers 2 --epochs 30      # code stacks in raster order, each depth given the one before
    python scripts/train_context_model.py --model rq-vae-cifar --workdir runs/context-rq-depth1 --depth 1 \
        --schedule raster --channels 256 --layers 3 --epochs 10   # depth 1's grids alone (a study for now)

`--model` is a zoo name, a finished training workdir, or a workdir still training (its latest
checkpoint is used: for development). Encodes the training and test images of the model's
data once (cached as `codes.npz` in the workdir; `--train-images` / `--test-images` take the
first N), trains a `GroupedContextModel` (or with `--schedule raster` a `RasterContextModel`)
with Adam (for an RQ-VAE over its code stacks, each depth given the `--condition-depths` before it;
`--beam-width B` trains on the code stacks the `.vqz` encoder's search writes instead of greedy codes;
`--activation-scale`, default 32, and centred kernels, `--no-center-kernels` to turn them off,
are the context model's parametrization), checkpointing after every epoch (rerunning
the command resumes), then freezes it and reports the exact rate (bits per code of the
integer model's masses, what a file costs) on the test codes: per depth for an RQ-VAE, beside
the PixelCNN prior's -log2 p(codes) for a VQ-VAE with one. Writes `context_model.npz` (the
frozen network) and `report.json` into the workdir; `scripts/add_context_model.py` attaches it.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))


def encode_codes(model, spec, split, limit=0, batch_size=500, beam_width=1):
    """The codes of a split's images: the model's greedy codes, or with `beam_width` > 1 (an
    RQ-VAE) the full-depth stacks of `vaezoo.code_search`, what `.vqz` files store."""
    from vaezoo import code_search, data

    images, _ = data.load_split(spec, split, limit=limit)
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    if beam_width > 1:
        out = [code_search.residual_codes(np.asarray(model.latent_grid(x)), model.quantizer.codebooks,
                                          beam_width=beam_width) for x in batches]
    else:
        out = [np.asarray(model.encode_to_codes(x)) for x in batches]
    return np.concatenate(out).astype(np.int32)


def load_model(ref):
    """`(model, data spec, what was loaded)` of a zoo name, a finished workdir, or a training
    workdir's latest checkpoint."""
    from vaezoo import workdir
    from vaezoo.registry import resolve_model

    if os.path.isdir(ref) and not workdir.is_finished(ref):
        import tensorflow as tf

        from vaezoo.models import model_from_config

        with open(os.path.join(ref, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        model = model_from_config(config["model"])
        model.build_from_images()
        checkpoint = tf.train.latest_checkpoint(os.path.join(ref, workdir.CHECKPOINTS))
        if checkpoint is None:
            raise SystemExit(f"{ref} is neither a finished run nor one with a checkpoint.")
        tf.train.Checkpoint(model=model).read(checkpoint).expect_partial().assert_existing_objects_matched()
        return model, dict(config.get("data") or config["eval_data"]), checkpoint
    resolved = resolve_model(ref)
    return resolved.model, dict(resolved.data_spec), ref


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vq-vae-cifar")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--condition-depths", type=int, default=1,
                        help="RQ-VAE: earlier depths the model sees beside the one it codes (default 1)")
    parser.add_argument("--schedule", default=None,
                        help="group schedule of the coder (vaezoo.integer_entropy.SCHEDULES; default groups5): "
                             "more groups, more context per code, one network pass per group; 'raster' trains a "
                             "RasterContextModel (code grids in raster order, each code given a causal window)")
    parser.add_argument("--activation-scale", type=float, default=32.0,
                        help="the embedding and hidden biases are stored divided by this power of two (default 32; "
                             "1 is the parametrization of grouped models shipped before, which trains far slower)")
    parser.add_argument("--center-kernels", action=argparse.BooleanOptionalAction, default=True,
                        help="train the kernels centred over their fan-in (default; see GroupedContextModel: without, "
                             "most hidden units die early in training)")
    parser.add_argument("--depth", type=int, default=None,
                        help="RQ-VAE: train on the code grids of this one depth (1-based) instead of the code stacks "
                             "(a per-depth model, e.g. --depth 1 --schedule raster; not yet a coder of stacks)")
    parser.add_argument("--init", default=None, metavar="WEIGHTS_H5",
                        help="start from these weights (another run's context.weights.h5 of the same shape, e.g. "
                             "trained on another schedule) instead of a random initialization")
    parser.add_argument("--train-images", type=int, default=0, help="first N training images (default 0: all)")
    parser.add_argument("--test-images", type=int, default=0, help="first N test images (default 0: all)")
    parser.add_argument("--beam-width", type=int, default=1,
                        help="RQ-VAE: train on the code stacks of the .vqz encoder's beam search of this width "
                             "(vaezoo.code_search; the files' codes) instead of the greedy codes training uses "
                             "(default 1: greedy)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import vaezoo
    from vaezoo.io import atomic_path, write_json
    from vaezoo.models.context_model import build_context_model

    from vaezoo import integer_entropy

    schedule = args.schedule or integer_entropy.DEFAULT_SCHEDULE
    if schedule != integer_entropy.RASTER:
        integer_entropy.schedule_tile(schedule)  # an unknown name fails before any encoding
    os.makedirs(args.workdir, exist_ok=True)
    vq, spec, source = load_model(args.model)
    print(f"model: {source}", flush=True)
    depths = getattr(vq, "depth", 1) if vq.latent_kind == "residual_code_grid" else 1
    condition = args.condition_depths if depths > 1 else 0
    if args.beam_width > 1 and depths == 1:
        raise SystemExit("--beam-width searches an RQ-VAE's code stacks; this model codes grids (use 1).")
    codes_path = os.path.join(args.workdir, "codes.npz")
    if not os.path.isfile(codes_path):
        print(f"encoding the training and test images ({'greedy codes' if args.beam_width == 1 else f'beam width {args.beam_width}'}) ...",
              flush=True)
        train = encode_codes(vq, spec, "train", args.train_images, beam_width=args.beam_width)
        test = encode_codes(vq, spec, "test", args.test_images, beam_width=args.beam_width)
        with atomic_path(codes_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, train=train, test=test, source=np.asarray(str(source)), beam_width=args.beam_width)
    with np.load(codes_path) as f:
        train, test = f["train"], f["test"]
        cached_width = int(f["beam_width"]) if "beam_width" in f.files else 1
        if cached_width != args.beam_width:
            raise SystemExit(f"{codes_path} holds codes of beam width {cached_width}, not --beam-width "
                             f"{args.beam_width}: use another --workdir (or delete the file).")
        source = str(f["source"]) if "source" in f.files else source  # what the cached codes came from
    if args.depth is not None:
        if depths == 1 or not 1 <= args.depth <= depths:
            raise SystemExit(f"--depth takes an RQ-VAE depth in 1..{depths}, got {args.depth} "
                             f"({'the model codes grids' if depths == 1 else 'out of range'}).")
        train, test = train[..., args.depth - 1], test[..., args.depth - 1]
        depths, condition = 1, 0
    print(f"codes: train {train.shape}, test {test.shape}", flush=True)

    model = build_context_model(vq.num_embeddings, channels=args.channels, num_layers=args.layers, seed=args.seed,
                                depths=depths, condition_depths=condition, schedule=schedule,
                                activation_scale=args.activation_scale, center_kernels=args.center_kernels)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    state_path = os.path.join(args.workdir, "state.json")
    weights_path = os.path.join(args.workdir, "context.weights.h5")
    done = 0
    if os.path.isfile(state_path) and os.path.isfile(weights_path):
        with open(state_path, encoding="utf-8") as f:
            done = json.load(f)["epochs"]
        model.optimizer.build(model.trainable_variables)  # else its saved Adam moments are skipped
        model.load_weights(weights_path)
        print(f"resuming after epoch {done}", flush=True)
    elif args.init:
        model.load_weights(args.init)
        print(f"starting from {args.init}", flush=True)
    dataset = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train), seed=args.seed).batch(args.batch_size)
    test_set = tf.data.Dataset.from_tensor_slices(test).batch(500)
    start = time.time()
    for epoch in range(done, args.epochs):
        lr = args.learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / args.epochs))  # cosine decay per epoch
        model.optimizer.learning_rate.assign(lr)
        history = model.fit(dataset, epochs=1, verbose=0).history
        held_out = model.evaluate(test_set, verbose=0, return_dict=True)["bits_per_code"]
        with atomic_path(weights_path) as tmp:
            model.save_weights(tmp)
        write_json({"epochs": epoch + 1}, state_path)
        print(f"epoch {epoch + 1}/{args.epochs}: {history['bits_per_code'][0]:.3f} bits/code (train, lr {lr:.2e}), "
              f"{held_out:.3f} (test, float logits of the integer network; a group schedule scores one group "
              "per grid), "
              f"{time.time() - start:.0f} s", flush=True)

    network = model.freeze()
    with atomic_path(os.path.join(args.workdir, "context_model.npz")) as tmp, open(tmp, "wb") as f:
        np.savez(f, **network.to_arrays())
    from vaezoo.integer_entropy import code_bits

    print(f"measuring the exact rate on {len(test)} test code grids ...", flush=True)
    from vaezoo.export.tflite import convert_context_network
    from vaezoo.integer_entropy import LiteRTContextNetwork

    runtime = LiteRTContextNetwork(convert_context_network(network), network)  # the same integers, faster
    per_depth = code_bits(runtime, test, per_depth=True).sum(axis=0) / (test.size / depths)
    exact = float(np.mean(per_depth))
    report = {"model": args.model, "source": str(source), "beam_width": args.beam_width,
              "train_codes": int(train.shape[0]),
              "test_codes": int(test.shape[0]), "exact_bits_per_code": exact, "epochs": args.epochs,
              "channels": args.channels, "layers": args.layers, "schedule": schedule,
              "activation_scale": model.activation_scale, "center_kernels": model.center_kernels,
              "batch_size": args.batch_size,
              "learning_rate": args.learning_rate, "seed": args.seed,
              "init": args.init, "vaezoo": vaezoo.__version__}
    if args.depth is not None:
        report["depth"] = args.depth  # the code grids of one depth of the model's stacks
    if depths > 1:
        report.update({"depths": depths, "condition_depths": condition,
                       "exact_bits_per_code_per_depth": [float(b) for b in per_depth]})
    if getattr(vq, "prior", None) is not None:
        pixelcnn = float(np.mean(np.concatenate([np.asarray(vq.prior.bits_per_code(test[i : i + 1000]))
                                                  for i in range(0, len(test), 1000)])))
        report.update({"pixelcnn_bits_per_code": pixelcnn, "ratio": exact / pixelcnn})
    write_json(report, os.path.join(args.workdir, "report.json"))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
