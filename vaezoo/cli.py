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
