"""PSNR at every quantizer depth of an RQ-VAE training run's latest checkpoint (or its final model).

For watching a run (`vaezoo train zoo_configs/rq-vae-cifar.yaml --workdir ...`) while it trains:
the card's metrics come from `vaezoo eval --write-card`, not from this script.

    python scripts/depth_psnr.py /work/runs/rq-vae-cifar --images 1000
    python scripts/depth_psnr.py rq-vae-cifar --images 500 --spread      # any MODEL: zoo name, finished workdir, ...

prints one line: the checkpoint (or model), the mean per-image PSNR (dB, peak 1.0) of the test
images decoded unquantized (the autoencoder's ceiling), then decoded from the first d depths of
their greedy codes, d = 1..D.
"""

import argparse
import json
import os


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="a training workdir (config.json, checkpoints/), or any MODEL "
                        "(vaezoo.registry.resolve_model)")
    parser.add_argument("--spread", action="store_true",
                        help="the N images evenly spaced over the split (data.load_split(spread=True))")
    parser.add_argument("--images", type=int, default=1000, help="first N images of the eval split")
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from vaezoo import data
    from vaezoo.evaluation import psnr
    from vaezoo.models import model_from_config
    from vaezoo.models.base import check_model
    from vaezoo.registry import resolve_model

    checkpoint = tf.train.latest_checkpoint(os.path.join(args.workdir, "checkpoints"))
    if checkpoint is None:  # not a workdir in training: a MODEL
        resolved = resolve_model(args.workdir)
        model, spec, checkpoint = resolved.model, resolved.data_spec, resolved.name
        check_model(model, "depth_psnr.py", latent_kinds=("residual_code_grid",))
    else:
        with open(os.path.join(args.workdir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        model = model_from_config(config["model"])
        check_model(model, "depth_psnr.py", latent_kinds=("residual_code_grid",))
        model.build_from_images()
        tf.train.Checkpoint(model=model).read(checkpoint).expect_partial().assert_existing_objects_matched()
        spec = config.get("eval_data") or config["data"]
    x, _ = data.load_split(spec, "test", limit=args.images, spread=args.spread)
    batches = range(0, len(x), args.batch_size)
    codes = np.concatenate([model.encode_to_codes(x[i : i + args.batch_size]) for i in batches])
    unquantized = np.concatenate([model.likelihood.image(model.decode(model.latent_grid(x[i : i + args.batch_size])))
                                  for i in batches])
    row = []
    for depth in range(1, model.depth + 1):
        decoded = np.concatenate([model.decode_codes(codes[i : i + args.batch_size], depth=depth) for i in batches])
        row.append(f"{psnr(x, decoded):.2f}")
    print(f"{os.path.basename(checkpoint)}: PSNR (dB) unquantized {psnr(x, unquantized):.2f}, at depth 1..{model.depth} "
          f"on {len(x)} {'evenly spaced ' if args.spread else ''}images of {spec.get('path', spec.get('source'))} "
          f"({spec.get('split', 'test')}): {' '.join(row)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
