"""Training throughput of vaezoo's Trainer per tf.distribute strategy, with and without XLA.

Runs unchanged on a CPU box (mirrored over logical CPU devices with --cpu-replicas 2) or a
GPU machine (mirrored over the visible GPUs). Each configuration trains the same model on
the same synthetic batches; the first steps (tracing, XLA compilation) are not timed.
Prints a table with images/s and the ratio to the fastest row, and appends it to
benchmarks/RESULTS.md with the command, date and hardware.

    python benchmarks/train_throughput.py                 # small default (a few minutes on 2 cores)
    python benchmarks/train_throughput.py --full          # bigger batch and more steps (GPU)
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402

MODELS = {
    # Gaussian conv VAE on 28x28x1
    "vae-conv-28": ({"class": "VAE", "config": {"input_shape": [28, 28, 1], "latent_dim": 16,
                                                  "likelihood": {"type": "gaussian", "scale": 0.1},
                                                  "encoder": {"type": "conv", "filters": [32, 64], "hidden": 256}}},
                    (28, 28, 1)),
    # VQ-VAE with the Sonnet CIFAR-10 example's architecture on 32x32x3
    "vqvae-32": ({"class": "VQVAE", "config": {"input_shape": [32, 32, 3], "num_embeddings": 512,
                                                "embedding_dim": 64, "hidden_channels": 128,
                                                "residual_channels": 32, "num_residual_blocks": 2, "prior": None}},
                 (32, 32, 3)),
}


def measure(model_spec, shape, strategy_name, xla, batch_size, steps, warmup, cpu_replicas):
    import numpy as np
    import tensorflow as tf

    from vaezoo.training import Trainer

    folder = tempfile.mkdtemp(prefix="vaezoo-bench-")
    rng = np.random.default_rng(0)
    np.savez(os.path.join(folder, "x.npz"), x_train=rng.integers(0, 256, (512, *shape), dtype=np.uint8))
    config = {"model": model_spec, "data": {"source": "npz", "path": os.path.join(folder, "x.npz")},
              "train": {"batch_size": batch_size, "steps": steps + warmup, "jit_compile": xla}}
    strategy = None
    if strategy_name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] if len(gpus) > 1 else [f"/cpu:{i}" for i in range(cpu_replicas)]
        strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        strategy = strategy_name
    trainer = Trainer(config, os.path.join(folder, "run"), strategy=strategy, verbose=False)
    trainer._build()
    step = trainer._make_train_step()
    iterator = iter(trainer._dataset(config["data"], shuffle=True, repeat=True))
    for _ in range(warmup):
        float(step(iterator)[0])
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(iterator)[0]
    float(loss)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * batch_size / seconds, "replicas": trainer.replicas}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpu-replicas", type=int, default=2, help="logical CPU devices for mirrored on CPU")
    parser.add_argument("--full", action="store_true", help="batch 128 and 200 steps (for a GPU)")
    args = parser.parse_args()
    if args.full:
        args.steps, args.batch_size = 200, 128
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    if not tf.config.list_physical_devices("GPU") and args.cpu_replicas > 1:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(args.cpu_replicas)])
    rows = []
    for name in args.models:
        spec, shape = MODELS[name]
        for strategy_name in ("one_device", "mirrored"):
            for xla in (False, True):
                if xla and strategy_name == "mirrored" and not tf.config.list_physical_devices("GPU"):
                    rows.append({"model": name, "strategy": strategy_name, "replicas": args.cpu_replicas,
                                 "xla": "on", "images/s": "n/a (XLA cannot span logical CPU devices)"})
                    continue
                result = measure(spec, shape, strategy_name, xla, args.batch_size, args.steps, args.warmup,
                                 args.cpu_replicas)
                rows.append({"model": name, "strategy": strategy_name, "replicas": result["replicas"],
                             "xla": "on" if xla else "off", "images/s": result["images_per_s"]})
                print(f"{name:12s} {strategy_name:10s} xla={'on ' if xla else 'off'} "
                      f"{result['images_per_s']:9.1f} images/s", flush=True)
    for name in args.models:
        best = max(r["images/s"] for r in rows if r["model"] == name and isinstance(r["images/s"], float))
        for r in rows:
            if r["model"] == name and isinstance(r["images/s"], float):
                r["ratio to fastest"] = r["images/s"] / best
    table = markdown_table(rows, ["model", "strategy", "replicas", "xla", "images/s", "ratio to fastest"])
    print(table)
    append_results("Training throughput per strategy (vaezoo Trainer)", table,
                   protocol=f"synthetic uint8 images, global batch {args.batch_size}, {args.steps} timed steps "
                            f"after {args.warmup} warm-up steps; mirrored on CPU uses {args.cpu_replicas} "
                            f"logical devices of the same cores",
                   hardware=hardware_description())


if __name__ == "__main__":
    main()
