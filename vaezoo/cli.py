"""The `vaezoo` command line. Thin: every command calls an importable function.

    vaezoo demo [--workdir demo] [--smoke]         train the embedded beta-VAE on dSprites
    vaezoo train CONFIG --workdir DIR [--steps N] [--smoke] [--strategy NAME] [--init MODEL]
    vaezoo compress IMAGES... --model MODEL -o FILE.vqz
    vaezoo decompress FILE.vqz... --model MODEL -o DIR
    vaezoo eval MODEL [--metrics ...] [--split test] [--data SPEC] [--json OUT] [--k K]
    vaezoo traverse MODEL (--image FILE | --index I) [--dims ...] [--values ...] -o OUT.png
    vaezoo save-preset MODEL DIR [--name NAME] [--overwrite]
    vaezoo upload DIR (hf://ORG/REPO[@BRANCH] | kaggle://OWNER/MODEL/keras/VARIANT)

MODEL is anything `vaezoo.registry.resolve_model` takes: a zoo name, a .keras file, a training
workdir, a preset folder or a hub URI.

TensorFlow's C++ start-up lines (oneDNN notice, CUDA driver messages) are hidden unless
`vaezoo --verbose COMMAND` is used or TF_CPP_MIN_LOG_LEVEL is set in the environment.
"""

import argparse
import os
import shutil
import sys

from vaezoo.code_search import DEFAULT_BEAM_WIDTH  # numpy only (no TensorFlow at import)


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
    from vaezoo.training import load_config, train

    init, init_name = None, args.init or load_config(args.config, smoke=args.smoke).get("init")
    if init_name:
        from vaezoo import registry

        init = registry.resolve_model(init_name).model  # zoo name, preset, hub URI, .keras, workdir
    metrics = train(args.config, args.workdir, smoke=args.smoke, steps=args.steps, strategy=args.strategy,
                    init=init, init_name=init_name)
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
    from vaezoo import zoo_maintenance

    weights = zoo_maintenance.publish(args.workdir, args.name, float16=args.float16, compress=args.compress)
    print(f"{args.name}: {weights['uri']} ({weights['bytes']} bytes, sha256 {weights['sha256']})")
    return 0


def _save_preset(args):
    from vaezoo import presets, registry

    model = registry.resolve_model(args.model).model
    path = presets.save_preset(model, args.directory, name=args.name, overwrite=args.overwrite)
    print(f"preset of {args.model} -> {path}/ ({', '.join(presets.FILES)})")
    return 0


def _upload(args):
    from vaezoo import hub

    where = hub.upload(args.directory, args.uri, message=args.message, private=args.private)
    print(f"{args.directory} -> {args.uri} ({where}); load it with vaezoo.load({args.uri!r})")
    return 0


def _condition_arg(model, text, n):
    if not model.conditional:
        if text is not None:
            raise ValueError(f"{type(model).__name__} is unconditional; --condition is not accepted.")
        return None
    import numpy as np

    if text is None:  # cycle through the classes, one row each
        return np.arange(n) % model.condition_size
    return np.array([int(v) for v in text.split(",")] * n)[:n]


def _sample(args):
    from vaezoo import registry, visualize

    model = registry.resolve_model(args.model).model
    condition = _condition_arg(model, args.condition, args.n)
    kwargs = {"condition": condition} if condition is not None else {}
    images = model.sample(args.n, seed=args.seed, temperature=args.temperature, **kwargs)
    visualize.save_png(visualize.image_grid(images, columns=args.columns), args.output, scale=args.scale)
    print(f"{args.n} samples from {args.model} (seed {args.seed}) -> {args.output}")
    return 0


def _reconstruct(args):
    import numpy as np

    from vaezoo import data, registry, visualize

    model = registry.resolve_model(args.model).model
    height, width, channels = model.image_shape
    images = data.load_image_files(args.images, (height, width), channels)
    condition = None
    if model.conditional:
        if args.condition is None:
            raise ValueError(f"{args.model} is conditional: pass --condition with one label per image.")
        condition = np.array([int(v) for v in args.condition.split(",")])
    if args.quality:
        rows = _vqz_rows(model, images, args.quality)
        visualize.save_rows_png(rows, args.output, scale=args.scale, label_width=max(6 * len(k) + 8 for k in rows))
        for label in list(rows)[1:]:
            print(label)
        print(f"{len(images)} image(s), each its own .vqz file at quality {', '.join(map(str, args.quality))} "
              f"-> {args.output}")
        return 0
    kwargs = {"condition": condition} if condition is not None else {}
    recon = model.reconstruct(images, **kwargs)
    visualize.save_rows_png({"input": images, "reconstruction": recon}, args.output, scale=args.scale)
    print(f"{len(images)} image(s) and their reconstructions -> {args.output}")
    return 0


def _vqz_rows(model, images, qualities):
    """{label: images}: the inputs, then each image through its own one-image `.vqz` file at each
    quality, labelled with the mean file size and the mean PSNR of the 8-bit decodings."""
    import numpy as np

    from vaezoo import codec, visualize
    from vaezoo.evaluation import psnr

    from vaezoo.models.base import check_model

    check_model(model, "vaezoo reconstruct --quality (.vqz files)", latent_kinds=("code_grid", "residual_code_grid"))
    pixels = visualize.as_uint8(images)
    device = codec.codec_model(model)  # one codec model (and context-network conversion) for every file
    for quality in qualities:
        codec.check_quality(device, quality)  # every quality is checked before any work
    rows = {"input": pixels}
    for quality in qualities:
        files = codec.compress_each(device, pixels, quality=quality)
        decoded = visualize.as_uint8(np.concatenate(codec.decompress_many(device, files)))
        size = np.mean([len(data) for data in files])
        rows[f"q{quality}: {size:.0f} B, {psnr(pixels / 255.0, decoded / 255.0):.1f} dB"] = decoded
    return rows


def _calibration_images(source, resolved, count):
    """Up to `count` calibration images for the int8 TFLite variants: from a folder of images,
    an `.npz` (`x_train`, else its first array) or `data` (the model's own data spec, train split)."""
    import numpy as np

    from vaezoo import data

    model = resolved.model
    if source == "data":
        if resolved.data_spec is None:
            raise ValueError(f"--calibration data needs a model with a data spec (a zoo name or a training "
                             f"workdir); {resolved.name!r} has none: pass a folder or an .npz.")
        images, _ = data.load_split(resolved.data_spec, "train", limit=count)
        return images
    if os.path.isdir(source):
        files, _, _ = data.list_image_folder(source)
        return data.load_image_files(files[:count], model.image_shape[:2], model.image_shape[-1])
    if source.endswith(".npz") and os.path.isfile(source):
        with np.load(source) as f:
            key = "x_train" if "x_train" in f.files else f.files[0]
            images = f[key][:count]
        return images[..., None] if images.ndim == 3 else images
    raise ValueError(f"--calibration must be a folder of images, an .npz file or 'data'; got {source!r}.")


def _export(args):
    from vaezoo import registry
    from vaezoo.export import export_model
    from vaezoo.export.saved_model import ExportExistsError

    kwargs = {}
    if args.calibration is not None:
        if args.format == "saved_model":
            raise ValueError("--calibration is for the int8 TFLite variants: add --format tflite (or all).")
        resolved = registry.resolve_model(args.model)
        kwargs["representative_images"] = _calibration_images(args.calibration, resolved, args.calibration_images)
        model, name = resolved.model, args.name or resolved.name
    else:
        model, name = args.model, args.name
    try:
        result = export_model(model, args.out, format=args.format, model_name=name, version=args.version,
                              overwrite=args.overwrite, version_policy=args.version_policy,
                              max_rows=args.max_rows, **kwargs)
    except (ExportExistsError, ImportError) as error:
        print(f"vaezoo export: error: {error}", file=sys.stderr)
        return 2
    if args.format in ("tflite", "all") and args.calibration is None:
        print("TFLite full_int8: skipped (it needs calibration images: --calibration FOLDER, FILE.npz or data)")
    if "saved_model" in result:
        print(f"SavedModel: {result['saved_model']}")
        print(f"TF Serving config: {os.path.join(args.out, 'models.config')} "
              f"(batching: {os.path.join(args.out, 'batching_parameters.txt')}); see exports/README.md")
    for variant, path in sorted(result.get("tflite", {}).items()):
        print(f"TFLite {variant}: {path}")
    return 0


def _add_codec_model_options(parser, required, model_help):
    """--model MODEL or --tflite DIR (with --variant): which codec model a command runs."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--model", help=model_help)
    where.add_argument("--tflite", metavar="DIR", help="a `vaezoo export --format tflite` folder: run on LiteRT "
                                                       "alone (no TensorFlow), as a device does")
    parser.add_argument("--variant", default="float32", help="with --tflite: the encoder/decoder file (float32, "
                                                             "float16, dynamic_int8, full_int8; default float32)")


def _codec_model(args, data=None):
    """The codec model of a compress/decompress command: `--tflite DIR` (LiteRT, no
    TensorFlow), `--model MODEL`, or for decompress the zoo model the file's header names."""
    from vaezoo import codec

    if args.tflite:
        return codec.LiteRTCodecModel(args.tflite, variant=args.variant)
    from vaezoo import registry

    if args.model:
        return registry.resolve_model(args.model).model
    return registry.load_codec_model(codec.read_header(data))


def _compress(args):
    from vaezoo import codec, data

    model = _codec_model(args)
    channels = codec.codec_model(model).channels
    images = data.load_image_files(args.images, None, channels, resize=False)  # every file at its own size
    images = [codec.check_image(image, channels, name=path) for path, image in zip(args.images, images)]
    options = dict(mode=args.mode, quality=args.quality, beam_width=args.beam_width, max_bytes=args.max_bytes,
                   min_psnr=args.min_psnr)
    if args.output_dir:
        return _compress_each(args, model, images, options)
    size = codec.write_vqz(args.output, model, images, **options)
    header = codec.read_header(args.output)
    print(f"{len(images)} image(s) -> {args.output}: {size} bytes ({size / len(images):.1f} bytes/image, "
          f"{header.mode} coding, quality {header.quality})")
    return 0


def _file_stems(paths, clash, output, advice):
    """Each path's file name without its extension, which names the outputs written for it;
    `ValueError` "clash (output of each repeated stem): advice." when two paths share one."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ValueError(f"{clash} ({', '.join(output.format(stem) for stem in repeated)}): {advice}.")
    return stems


def _compress_each(args, model, images, options):
    """`vaezoo compress --output-dir`: one .vqz per image, DIR/NAME.vqz, all encoded before any is written."""
    from vaezoo import codec
    from vaezoo.io import atomic_path

    names = _file_stems(args.images, "several images would write the same file", "{}.vqz",
                        "compress images with the same name into different folders")
    files = codec.compress_each(model, images, names=args.images, **options)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, data in zip(names, files):
        with atomic_path(os.path.join(args.output_dir, name + ".vqz")) as tmp, open(tmp, "wb") as f:
            f.write(data)
    qualities = sorted({codec.read_header(data).quality for data in files})
    print(f"{len(files)} image(s) -> {os.path.join(args.output_dir, '')}NAME.vqz, one file each: "
          f"{sum(map(len, files)) / len(files):.1f} bytes/file, quality "
          f"{qualities[0] if len(qualities) == 1 else f'{qualities[0]}-{qualities[-1]}'}")
    return 0


def _decompress(args):
    from vaezoo import codec

    prefixes = ([args.prefix] if len(args.files) == 1 else
                _file_stems(args.files, "several files would write the same PNG names", "{}_0000.png, ...",
                            "decompress files with the same name into different folders"))
    model = _codec_model(args, args.files[0])
    decoded = codec.decompress_many(model, args.files)  # every file is checked before any PNG is written
    count = sum(len(codec.save_images(images, args.output, prefix=prefix)) for images, prefix in zip(decoded, prefixes))
    what, note = (args.files[0], "") if len(args.files) == 1 else (f"{len(args.files)} files", " (PNGs named after their file)")
    print(f"{what}: {count} image(s) -> {os.path.join(args.output, '')}{note}")
    return 0


def _eval(args):
    import json
    import shlex

    from vaezoo import data as data_module
    from vaezoo import evaluation, reports
    from vaezoo.io import write_json

    data = data_module.read_data_spec(args.data) if args.data else None
    outliers = data_module.read_data_spec(args.outliers) if args.outliers else None
    metrics = [m for text in args.metrics for m in text.replace(",", " ").split()]
    report = reports.run_eval(args.model, data=data, split=args.split, metrics=metrics, k=args.k,
                              batch_size=args.batch_size, limit=args.limit, outliers=outliers,
                              score=args.score, classifier=args.classifier,
                              samples_per_class=args.samples_per_class, seed=args.seed,
                              disentanglement_points=tuple(args.disentanglement_points))
    title = (f"{args.model} ({report['family']}) on {report['metrics']['examples']} {args.split} images "
             f"of {json.dumps(report['data'], sort_keys=True)}")
    print(evaluation.format_table(report["metrics"], title=title))
    if args.json:
        write_json(report, args.json)
        print(f"written to {args.json}")
    if args.write_card:
        if report["kind"] != "registry":
            raise ValueError("--write-card needs MODEL to be a registry name (its card gets the metrics).")
        from vaezoo import zoo_maintenance

        command = "vaezoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        zoo_maintenance.record_metrics(args.model, reports.card_records(report, command))
        print(f"metrics recorded in the card of {args.model}")
    return 0


def _traverse(args):
    import numpy as np

    from vaezoo import data as data_module
    from vaezoo import disentanglement, registry

    model, _, own_spec, _ = registry.resolve_model(args.model)
    if (args.image is None) == (args.index is None):
        raise ValueError("give exactly one of --image FILE or --index I (an image of --data or the model's data).")
    condition = None
    if args.image is not None:
        height, width, channels = model.image_shape
        image = data_module.load_image_files([args.image], (height, width), channels)[0]
    else:
        spec = data_module.read_data_spec(args.data) if args.data else own_spec
        if spec is None:
            raise ValueError(f"{args.model!r} carries no data spec; pass --data with --index.")
        images, labels = data_module.load_split(spec, args.split, args.index + 1, labels=model.conditional)
        if args.index >= len(images):
            raise ValueError(f"--index {args.index} is past the end of the data ({len(images)} images).")
        image = images[args.index]
        condition = None if labels is None else labels[args.index]
    if args.condition is not None:
        condition = np.asarray(int(args.condition))
    values = None if args.values is None else np.asarray(args.values, np.float64)
    disentanglement.save_traversal(model, image, args.output, dims=args.dims, values=values,
                                   condition=condition, scale=args.scale)
    print(f"latent traversals of {args.model} -> {args.output}")
    return 0


def _interpolate(args):
    from vaezoo import data, registry, visualize

    model = registry.resolve_model(args.model).model
    height, width, channels = model.image_shape
    first, second = data.load_image_files([args.first, args.second], (height, width), channels)
    condition = None
    if model.conditional:
        if args.condition is None:
            raise ValueError(f"{args.model} is conditional: pass --condition LABEL.")
        condition = int(args.condition)
    line = visualize.interpolate(model, first, second, steps=args.steps, condition=condition)
    visualize.save_rows_png({"endpoints": [first, second], "interpolation": line}, args.output, scale=args.scale)
    print(f"{args.steps} images between {args.first} and {args.second} -> {args.output}")
    return 0


def build_parser():
    from vaezoo.export.saved_model import DEFAULT_MAX_ROWS
    from vaezoo.strategy import STRATEGIES

    parser = argparse.ArgumentParser(
        prog="vaezoo",
        description="A model zoo of variational autoencoders (TensorFlow / Keras 3 / TFP).",
        epilog="Run `vaezoo COMMAND --help` for a command's options.",
    )
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up and C++ log lines (hidden by default, as they are "
                             "when TF_CPP_MIN_LOG_LEVEL is set)")
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
    train.add_argument("--init", metavar="MODEL",
                       help="fine-tune: start from this model's weights (zoo name, preset folder, hf:// or kaggle:// "
                            "URI, .keras file or workdir; it must have the config's architecture); default: the "
                            "config's `init:` if it has one")
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
    publish.add_argument("--float16", action="store_true",
                         help="store the weights as float16 (half the size; loaded into float32 variables)")
    publish.add_argument("--compress", action="store_true",
                         help="gzip-compress the stored arrays (lossless; about 10%% smaller for trained weights)")
    publish.set_defaults(func=_publish)

    model_help = ("a registry name (see `vaezoo list`), a .keras file, a training workdir, a preset folder or a "
                  "hub URI (hf://ORG/REPO[@REV], kaggle://OWNER/MODEL/keras/VARIANT[/VERSION])")
    save = sub.add_parser("save-preset", help="write a model as a preset folder (KerasHub layout + card)",
                          description="Write MODEL as a preset: config.json, model.weights.h5, metadata.json "
                                      "(versions, parameter count, sha256 of every file), card.yaml and a README.md "
                                      "model card, atomically. `vaezoo upload` publishes it.")
    save.add_argument("model", help=model_help)
    save.add_argument("directory", help="the preset folder to write")
    save.add_argument("--name", help="the card's name (default: the zoo name or the model's name)")
    save.add_argument("--overwrite", action="store_true", help="replace an existing preset folder")
    save.set_defaults(func=_save_preset)

    upload = sub.add_parser("upload", help="publish a preset folder on the Hugging Face Hub or Kaggle",
                            description="Publish a preset folder with the hub's own client (pip install "
                                        "\"vaezoo[hub]\"): hf://ORG/REPO[@BRANCH] (one commit; log in with "
                                        "`hf auth login` or HF_TOKEN) or kaggle://OWNER/MODEL/keras/VARIANT (a new "
                                        "version; KAGGLE_API_TOKEN or KAGGLE_USERNAME/KAGGLE_KEY).")
    upload.add_argument("directory", help="a preset folder (vaezoo save-preset)")
    upload.add_argument("uri", help="hf://ORG/REPO[@BRANCH] or kaggle://OWNER/MODEL/keras/VARIANT")
    upload.add_argument("--message", help="commit message / version notes")
    upload.add_argument("--private", action="store_true", help="create the Hugging Face repository as private")
    upload.set_defaults(func=_upload)
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
    recon.add_argument("--quality", type=int, nargs="+", default=None, metavar="Q",
                       help="VQ-VAE / RQ-VAE: show each image through its own .vqz file at these qualities, one row "
                            "each, labelled with the mean file size and PSNR (the codec's real round trip)")
    recon.set_defaults(func=_reconstruct)

    inter = sub.add_parser("interpolate", help="walk between two images in latent space (PNG)",
                           description="Decode points on the line between the posterior means of two images.")
    inter.add_argument("model", help=model_help)
    inter.add_argument("first")
    inter.add_argument("second")
    inter.add_argument("--steps", type=int, default=8, help="images on the line, ends included (>= 2)")
    inter.add_argument("-o", "--output", default="interpolation.png")
    inter.add_argument("--condition", help="conditional models: the label used along the line")
    inter.add_argument("--scale", type=int, default=2)
    inter.set_defaults(func=_interpolate)

    exp = sub.add_parser("export", help="export a model for TF Serving (SavedModel) and/or TFLite",
                         description="Export MODEL with explicit signatures (encode, decode, reconstruct, "
                                     "sample, score) as OUT/NAME/VERSION/ in TF Serving's layout, and "
                                     "update OUT/models.config and OUT/batching_parameters.txt; "
                                     "--format tflite/all also writes TFLite files under OUT/tflite/NAME/.")
    exp.add_argument("model", help=model_help)
    exp.add_argument("--format", choices=("saved_model", "tflite", "all"), default="saved_model")
    exp.add_argument("--out", default=os.path.join("exports", "out"), help="export folder (default: exports/out)")
    exp.add_argument("--name", help="served model name (default: registry name, file stem or workdir name)")
    exp.add_argument("--version", type=int, default=1, help="SavedModel version number (default 1)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing version directory")
    exp.add_argument("--version-policy", choices=("latest", "specific", "all"), default="latest",
                     help="models.config version policy for this model (default: latest)")
    exp.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                     help=f"the most rows (images, seeds, latents) any SavedModel signature takes per call; more "
                          f"fail with INVALID_ARGUMENT before any work (default {DEFAULT_MAX_ROWS}; at least the "
                          "batching max_batch_size)")
    exp.add_argument("--calibration", metavar="SOURCE",
                     help="calibration images for the full_int8 TFLite variant: a folder of images, an .npz "
                          "(x_train or its first array) or 'data' (the model's own training data); without it "
                          "full_int8 is skipped")
    exp.add_argument("--calibration-images", type=int, default=200, metavar="N",
                     help="how many calibration images to read (default 200)")
    exp.set_defaults(func=_export)

    vq_model_help = "a VQ-VAE or RQ-VAE: registry name, .keras file or training workdir"
    comp = sub.add_parser("compress", help="compress images into a .vqz file with a VQ-VAE or RQ-VAE",
                          description="Encode images of any size (at least 8 pixels a side, the model's "
                                      "channels) to VQ-VAE code grids (RQ-VAE code stacks) and entropy-code them "
                                      "with the model's exact context model into one .vqz file (format version 3, "
                                      "docs/vqz_format.md), or one file per image with --output-dir. Nothing is "
                                      "resized.")
    comp.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    _add_codec_model_options(comp, required=True, model_help=vq_model_help)
    where = comp.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="the .vqz file to write (all the images in one file)")
    where.add_argument("--output-dir", metavar="DIR",
                       help="write one .vqz per image instead, DIR/NAME.vqz for NAME.png (thumbnails); "
                            "--max-bytes and --min-psnr then hold for each file")
    comp.add_argument("--mode", choices=("auto", "context", "fixed"), default="auto",
                      help="context: range coding with the exact context model; fixed: ceil(log2 K) bits per "
                           "code; auto (default): context when the model has a context model")
    comp.add_argument("--quality", type=int, default=None,
                      help="an RQ-VAE's code depths to store, 1..D (fewer bytes, coarser images; default D, the "
                           "model's depth); a VQ-VAE has one quality, 1. The file records it")
    comp.add_argument("--beam-width", type=int, default=None, metavar="B",
                      help="an RQ-VAE's code search: B partial code stacks kept per depth (default "
                           "%d; 1: greedy codes, the fastest encoder). Every width gives a file any decoder "
                           "reads" % DEFAULT_BEAM_WIDTH)
    comp.add_argument("--max-bytes", type=int, default=None, metavar="N",
                      help="a size budget: the highest quality (up to --quality) whose file has at most N bytes "
                           "(an error, and no file, when even quality 1 needs more)")
    comp.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                      help="a distortion target: the lowest quality (up to --quality) at which every image's 8-bit "
                           "decoding reaches DB dB PSNR (an error, and no file, when the highest misses it); "
                           "not with --max-bytes")
    comp.set_defaults(func=_compress)

    decomp = sub.add_parser("decompress", help="decode .vqz files into PNGs",
                            description="Decode .vqz files (version 3, 2 or 1) with the model they were "
                                        "written with (checked by its weights sha256) and write one PNG per "
                                        "image at its original size. Several files (thumbnails, one per file) "
                                        "decode together, far faster than one call each, and every file is "
                                        "checked before any PNG is written; their PNGs are named after the file "
                                        "(NAME_0000.png for NAME.vqz).")
    decomp.add_argument("files", nargs="+", metavar="file", help="the .vqz file(s)")
    _add_codec_model_options(decomp, required=False,
                             model_help=vq_model_help + "; default: the zoo model the (first) file's header names")
    decomp.add_argument("-o", "--output", required=True, help="output folder for the PNGs")
    decomp.add_argument("--prefix", default="image", help="PNG names of one file's images: PREFIX_0000.png, ... "
                                                         "(default: image; several files: each file's name)")
    decomp.set_defaults(func=_decompress)

    eval_model_help = "a .keras file, a training workdir or a registry name (see `vaezoo list`)"
    ev = sub.add_parser("eval", help="evaluate a model: ELBO, IWAE, bits/dim, MSE, PSNR, codebook, AUROC, ...",
                        description="Evaluate MODEL on a split of its data (a workdir's or card's data spec, or "
                                    "--data), print a table and optionally write JSON. Every input is checked "
                                    "before the evaluation starts. Metrics: " + ", ".join(_metric_names()) +
                                    " (or all).")
    ev.add_argument("model", help=eval_model_help)
    ev.add_argument("--metrics", nargs="+", default=["elbo,iwae,mse,nmse,psnr"],
                    help="metric names, space or comma separated (default: elbo iwae mse nmse psnr; 'all' for "
                         "every metric that applies)")
    ev.add_argument("--split", default="test", help="data split: npz x_<split>, tfds split or folder/<split> "
                                                     "(default: test)")
    ev.add_argument("--data", help="data spec as inline JSON/YAML or a file (default: the model's own)")
    ev.add_argument("--json", help="write the full report (metrics, data, split, date, hardware) to this file")
    ev.add_argument("--k", type=int, default=64, help="importance samples for iwae (default 64)")
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--limit", type=int, default=10000, help="evaluate at most this many images (0: all; "
                                                              "default 10000)")
    ev.add_argument("--outliers", help="data spec of the outlier set, for auroc/auprc")
    ev.add_argument("--score", choices=("elbo", "iwae", "reconstruction"), default="elbo",
                    help="anomaly score for auroc/auprc (default: negative ELBO)")
    ev.add_argument("--classifier", help="reference classifier for conditional_accuracy: 'mnist' or a "
                                         ".weights.h5 path")
    ev.add_argument("--samples-per-class", type=int, default=100)
    ev.add_argument("--disentanglement-points", type=int, nargs=2, default=[10000, 5000], metavar=("TRAIN", "EVAL"),
                    help="training and evaluation points of beta_vae_score / factor_vae_score (default 10000 5000, "
                         "disentanglement_lib's; each point encodes 64 images)")
    ev.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    ev.add_argument("--write-card", action="store_true", help="registry models: record the results in the card")
    ev.set_defaults(func=_eval)

    trav = sub.add_parser("traverse", help="draw latent traversals of one image into a PNG",
                          description="Encode one image, then vary one latent dimension per row over --values "
                                      "(posterior mean elsewhere) and decode; writes a labelled PNG grid.")
    trav.add_argument("model", help=eval_model_help)
    trav.add_argument("--image", help="an image file (resized to the model's size)")
    trav.add_argument("--index", type=int, help="or: the index of an image of --data / the model's data split")
    trav.add_argument("--data", help="data spec for --index (default: the model's own)")
    trav.add_argument("--split", default="test")
    trav.add_argument("--condition", help="conditional models: the class label")
    trav.add_argument("--dims", type=int, nargs="+", help="latent dimensions, one row each (default: first 10)")
    trav.add_argument("--values", type=float, nargs="+", help="latent values, one column each "
                                                               "(default: -2.5 .. 2.5 in 9 steps)")
    trav.add_argument("--scale", type=int, default=2)
    trav.add_argument("-o", "--output", required=True, help="PNG file to write")
    trav.set_defaults(func=_traverse)
    return parser


def _metric_names():
    from vaezoo.evaluation import METRICS

    return list(METRICS)


class _SilentStartLoader:
    """Runs a module's import with file descriptor 2 pointed at /dev/null, then hands the module
    its real loader back. TensorFlow prints its start-up lines (oneDNN notice, "Could not find
    cuda drivers", absl's "All log messages before absl::InitializeLog()") from C++ while its
    package is imported, before TF_CPP_MIN_LOG_LEVEL applies, so only a redirect hides them."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self.loader.exec_module(module)  # a failed import still raises, after fd 2 is back
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
            module.__loader__ = module.__spec__.loader = self.loader


class _SilentTensorFlowStart:
    """A `sys.meta_path` finder that imports `tensorflow` through `_SilentStartLoader` whenever a
    command first needs it (commands that never import TensorFlow stay free of it)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentStartLoader(spec.loader)
        return spec


def quiet_tensorflow():
    """Hide TensorFlow's C++ start-up and log lines for the rest of this process (a no-op if
    TensorFlow is already imported). `vaezoo` calls it unless `--verbose` is given or the user
    set TF_CPP_MIN_LOG_LEVEL; Python warnings and errors are unaffected."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # C++ logging after start-up, e.g. the cuInit error
    if "tensorflow" not in sys.modules and not any(isinstance(f, _SilentTensorFlowStart) for f in sys.meta_path):
        sys.meta_path.insert(0, _SilentTensorFlowStart())


def main(argv=None):
    from vaezoo.validation import ConfigError

    from vaezoo.hub import MissingExtraError

    errors = (ConfigError, ValueError, TypeError, FileNotFoundError, FileExistsError, KeyError, MissingExtraError)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        quiet_tensorflow()
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
