"""The `vaezoo` command line. Thin: every command calls an importable function.

    vaezoo demo [--workdir demo] [--smoke]         train the embedded beta-VAE on dSprites
    vaezoo train CONFIG --workdir DIR [--steps N] [--smoke] [--strategy NAME]
"""

import argparse
import os
import shutil
import sys


def _demo(args):
    import importlib.resources

    from vaezoo.training import Trainer

    config = str(importlib.resources.files("vaezoo") / "configs" / "demo.yaml")
    trainer = Trainer(config, args.workdir, smoke=args.smoke, steps=args.steps, strategy=args.strategy)
    metrics = trainer.run()
    picture = os.path.join(args.workdir, "demo.png")
    shutil.copyfile(metrics["picture"], picture)
    print(f"ELBO on dSprites: {metrics['elbo']:.2f} nats per image "
          f"({metrics['bits_per_dim']:.4f} bits/dim; nll {metrics['nll']:.2f}, kl {metrics['kl']:.2f})")
    print(f"Reconstructions and samples: {picture}")
    print(f"Model: {os.path.join(args.workdir, 'final', 'model.keras')}")
    return 0


def _train(args):
    from vaezoo.training import train

    metrics = train(args.config, args.workdir, smoke=args.smoke, steps=args.steps, strategy=args.strategy)
    print(f"final ELBO {metrics['elbo']:.3f} nats, {metrics['bits_per_dim']:.4f} bits/dim; "
          f"written to {args.workdir}")
    return 0


def _list(args):
    from vaezoo import registry

    names = registry.list_models(args.pattern, pretrained=True if args.pretrained else None)
    rows = []
    for name in names:
        card = registry.info(name)
        metrics = ", ".join(f"{k} {v['value']:.4g}" if isinstance(v.get("value"), (int, float)) else k
                            for k, v in (card["metrics"] or {}).items())
        rows.append((name, card["family"], "yes" if card["weights"] else "recipe only", metrics or "-"))
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'name':{width}}  {'family':16}  {'weights':11}  metrics")
    for name, family, weights, metrics in rows:
        print(f"{name:{width}}  {family:16}  {weights:11}  {metrics}")
    return 0


def _info(args):
    import yaml

    from vaezoo import registry

    print(yaml.safe_dump(registry.info(args.name), sort_keys=False, width=100), end="")
    return 0


def _publish(args):
    from vaezoo import registry

    weights = registry.publish(args.workdir, args.name)
    print(f"{args.name}: {weights['uri']} ({weights['bytes']} bytes, sha256 {weights['sha256']})")
    return 0


def _condition_arg(model, text, n):
    if not getattr(model, "conditional", False):
        if text is not None:
            raise ValueError(f"{type(model).__name__} is unconditional; --condition is not accepted.")
        return None
    import numpy as np

    if text is None:  # cycle through the classes, one row each
        return np.arange(n) % model.condition_size
    return np.array([int(v) for v in text.split(",")] * n)[:n]


def _sample(args):
    from vaezoo import registry, visualize

    model = registry.load_any(args.model)
    condition = _condition_arg(model, args.condition, args.n)
    kwargs = {"condition": condition} if condition is not None else {}
    images = model.sample(args.n, seed=args.seed, temperature=args.temperature, **kwargs)
    visualize.save_png(visualize.image_grid(images, columns=args.columns), args.output, scale=args.scale)
    print(f"{args.n} samples from {args.model} (seed {args.seed}) -> {args.output}")
    return 0


def _reconstruct(args):
    import numpy as np

    from vaezoo import data, registry, visualize

    model = registry.load_any(args.model)
    height, width, channels = model.image_shape
    images = data.load_image_files(args.images, (height, width), channels)
    condition = None
    if getattr(model, "conditional", False):
        if args.condition is None:
            raise ValueError(f"{args.model} is conditional: pass --condition with one label per image.")
        condition = np.array([int(v) for v in args.condition.split(",")])
    kwargs = {"condition": condition} if condition is not None else {}
    recon = model.reconstruct(images, **kwargs)
    visualize.save_rows_png({"input": images, "reconstruction": recon}, args.output, scale=args.scale)
    print(f"{len(images)} image(s) and their reconstructions -> {args.output}")
    return 0


def build_parser():
    from vaezoo.strategy import STRATEGIES

    parser = argparse.ArgumentParser(
        prog="vaezoo",
        description="A model zoo of variational autoencoders (TensorFlow / Keras 3 / TFP).",
        epilog="Run `vaezoo COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_training_options(p):
        p.add_argument("--steps", type=int, help="number of training steps (overrides the config)")
        p.add_argument("--smoke", action="store_true", help="apply the config's tiny `smoke` settings")
        p.add_argument("--strategy", choices=STRATEGIES, default=None,
                       help="tf.distribute strategy (default: the config's, normally auto)")

    demo = sub.add_parser("demo", help="train a small beta-VAE on generated dSprites and draw pictures",
                          description="Train the embedded default (beta-VAE, beta=4, on 20,000 generated "
                                      "dSprites; offline), print its ELBO and write a PNG of "
                                      "reconstructions and samples.")
    demo.add_argument("--workdir", default="demo", help="output folder (default: ./demo); reruns resume")
    add_training_options(demo)
    demo.set_defaults(func=_demo)

    train = sub.add_parser("train", help="train a model from a YAML/JSON config",
                           description="Train from a config (sections model, data, train, smoke) into a "
                                       "workdir with checkpoints, TensorBoard summaries and pictures; "
                                       "rerunning the same command resumes.")
    train.add_argument("config", help="path to the YAML or JSON training config")
    train.add_argument("--workdir", required=True, help="output folder; reruns resume from its checkpoints")
    add_training_options(train)
    train.set_defaults(func=_train)
    listing = sub.add_parser("list", help="list the zoo's models", description="List the registry's models "
                             "with their family, whether weights ship, and their measured metrics.")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vq*'")
    listing.add_argument("--pretrained", action="store_true", help="only models with weights")
    listing.set_defaults(func=_list)

    card = sub.add_parser("info", help="print a model's card", description="Print the YAML card of a zoo model.")
    card.add_argument("name")
    card.set_defaults(func=_info)

    publish = sub.add_parser("publish", help="ship a training run's weights in the zoo",
                             description="Copy WORKDIR/final/model.weights.h5 into vaezoo/pretrained/ and "
                                         "record its sha256 and size in the card NAME.")
    publish.add_argument("workdir")
    publish.add_argument("--name", required=True, help="registry name (its card must exist)")
    publish.set_defaults(func=_publish)

    model_help = "a registry name (see `vaezoo list`), a .keras file or a training workdir"
    sample = sub.add_parser("sample", help="draw samples into a PNG grid",
                            description="Sample images from a model and write them as a PNG grid.")
    sample.add_argument("model", help=model_help)
    sample.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("-o", "--output", default="samples.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--condition", help="conditional models: comma-separated labels (default: all classes)")
    sample.add_argument("--columns", type=int, default=8)
    sample.add_argument("--scale", type=int, default=2, help="enlarge the PNG by this factor")
    sample.set_defaults(func=_sample)

    recon = sub.add_parser("reconstruct", help="reconstruct images into a PNG",
                           description="Encode and decode image files; writes inputs over reconstructions.")
    recon.add_argument("model", help=model_help)
    recon.add_argument("images", nargs="+", help="image files (resized to the model's input)")
    recon.add_argument("-o", "--output", default="reconstructions.png")
    recon.add_argument("--condition", help="conditional models: comma-separated labels, one per image")
    recon.add_argument("--scale", type=int, default=2)
    recon.set_defaults(func=_reconstruct)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines are noise here
    from vaezoo.validation import ConfigError

    errors = (ConfigError, ValueError, TypeError, FileNotFoundError, KeyError)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except errors as error:
        print(f"vaezoo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # the Trainer's own stops: the message says what to do
        codes = {"NonFiniteLossError": 3, "WorkerLostError": 4, "Preempted": 143}
        if type(error).__name__ not in codes:
            raise
        print(f"vaezoo {args.command}: {error}", file=sys.stderr)
        return codes[type(error).__name__]
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
