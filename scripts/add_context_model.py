"""Give a zoo VQ-VAE or RQ-VAE the context model trained by `scripts/train_context_model.py` and ship it.

    python scripts/add_context_model.py --model vq-vae-cifar --workdir runs/context-cifar
    python scripts/add_context_model.py --model rq-vae-cifar --workdir runs/context-rq-cifar \\
        --source /work/runs/rq-vae-cifar

Builds the card's model with `context_model` set, copies every weight of the source model into
it (encoder, codebook(s), decoder, PixelCNN prior if any: checked to give the same codes, images
and prior bits on 256 test images) and the trained context model's weights, records the spec in
the card's config and a note on how the context model was trained, and publishes the weights
(`vaezoo.zoo_maintenance.publish`, float16 when the card's weights are). The source is the
shipped zoo model (default) or, with `--source`, a training workdir of the card's recipe (a
finished run, or its latest checkpoint). The card's metrics are dropped by `publish` (other
weights); measure them again with `vaezoo eval NAME --metrics ... --limit 0 --write-card`.
`--dry-run` builds and checks everything but writes nothing.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vq-vae-cifar", help="the zoo card to update")
    parser.add_argument("--workdir", required=True, help="the train_context_model.py workdir")
    parser.add_argument("--source", default=None,
                        help="where the autoencoder weights come from: a training workdir (default: the shipped "
                             "zoo model)")
    parser.add_argument("--float16", action="store_true", help="ship float16 weights (as the card's are)")
    parser.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    args = parser.parse_args()

    from train_context_model import load_model

    from vaezoo import integer_entropy, registry, zoo_maintenance
    from vaezoo import workdir as workdirs
    from vaezoo.data import load_split
    from vaezoo.models.context_model import build_context_model

    with open(os.path.join(args.workdir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    if "depth" in report:
        raise SystemExit(f"{args.workdir} holds a model of one RQ-VAE depth's grids (train_context_model.py --depth "
                         f"{report['depth']}); the .vqz coder codes whole code stacks, so it cannot be attached.")
    if "ckpt-" in os.path.basename(str(report.get("source", ""))):
        print(f"warning: the context model was trained on the codes of a training checkpoint ({report['source']}), "
              "not of final weights: retrain it on the weights you ship.", flush=True)
    old = load_model(args.source)[0] if args.source else registry.load(args.model)
    card = registry.info(args.model)
    spec = {"channels": report["channels"], "layers": report["layers"]}
    if report.get("depths", 1) > 1:
        spec["condition_depths"] = report["condition_depths"]
    if report.get("schedule", integer_entropy.DEFAULT_SCHEDULE) != integer_entropy.DEFAULT_SCHEDULE:
        spec["schedule"] = report["schedule"]  # the coder's group schedule is the model's
    if report.get("activation_scale") is not None:  # reports before the option: the class's default
        spec["activation_scale"] = report["activation_scale"]
    if report.get("center_kernels"):  # reports before the option: not centred
        spec["center_kernels"] = True
    trained = build_context_model(old.num_embeddings, channels=spec["channels"], num_layers=spec["layers"],
                                  depths=report.get("depths", 1), condition_depths=spec.get("condition_depths", 0),
                                  schedule=spec.get("schedule"), activation_scale=spec.get("activation_scale"),
                                  center_kernels=spec.get("center_kernels", False))
    trained.load_weights(os.path.join(args.workdir, "context.weights.h5"))
    trained.snap()  # its integers survive --float16 (biases but the largest)

    card["config"] = {**card["config"], "context_model": spec}
    new = registry.build(args.model, context_model=spec)
    new.build_from_images()
    parts = [part for part in ("encoder", "decoder", "quantizer", "prior") if getattr(old, part, None) is not None]
    for part in parts:
        getattr(new, part).set_weights(getattr(old, part).get_weights())
    new.context_model.set_weights(trained.get_weights())
    with np.load(os.path.join(args.workdir, "context_model.npz")) as f:  # what the report measured
        frozen = integer_entropy.network_from_arrays(dict(f)).to_arrays()  # older files: defaults filled in
    attached = new.context_network().to_arrays()
    assert set(attached) == set(frozen) and all(np.array_equal(frozen[name], value) for name, value in attached.items()), \
        "the attached context model is not the one the report measured"

    images, _ = load_split(card["eval_data"], "test", limit=256)
    codes = np.asarray(old.encode_to_codes(images))
    assert np.array_equal(np.asarray(new.encode_to_codes(images)), codes), "codes changed"
    assert np.array_equal(np.asarray(new.decode_codes(codes)), np.asarray(old.decode_codes(codes))), "images changed"
    if "prior" in parts:
        assert np.allclose(new.prior.bits_per_code(codes), old.prior.bits_per_code(codes)), "prior changed"

    rate = report["exact_bits_per_code"]
    per_depth = report.get("exact_bits_per_code_per_depth")
    measured = (f"{rate:.3f} bits per code on {report['test_codes']} test images" +
                (f" ({', '.join(f'{b:.3f}' for b in per_depth)} at depths 1..{len(per_depth)})" if per_depth else ""))
    train_images = report.get("train_codes", 50000)
    card.setdefault("notes", {})["context_model"] = (
        f"The exact context model (the .vqz entropy model, {spec['channels']} channels, {spec['layers']} layers"
        + (f", each depth given the {spec['condition_depths']} depth(s) before it" if "condition_depths" in spec else "")
        + ((", raster order: each code given a causal window of the 24 codes before it"
            + (" and the 3x3 codes of the depth before" if "condition_depths" in spec else "")
            if spec["schedule"] == integer_entropy.RASTER else f", group schedule {spec['schedule']}")
           if "schedule" in spec else "")
        + f") was trained on the codes of {train_images:,} training images with `python "
        f"scripts/train_context_model.py --model {args.source or args.model} --workdir WORKDIR --epochs "
        f"{report['epochs']}"
        + (f" --channels {spec['channels']}" if spec["channels"] != 64 else "")
        + (f" --layers {spec['layers']}" if spec["layers"] != 4 else "")
        + (f" --schedule {spec['schedule']}" if "schedule" in spec else "")
        + (f" --condition-depths {spec['condition_depths']}" if spec.get("condition_depths", 1) != 1 else "")
        + (f" --activation-scale {trained.activation_scale:g}" if trained.activation_scale != 32 else "")
        + ("" if trained.center_kernels else " --no-center-kernels")
        + (" --init PREVIOUS/context.weights.h5" if report.get("init") else "")
        + (f" --beam-width {report['beam_width']}" if report.get("beam_width", 1) != 1 else "")
        + f"` (Adam {report.get('learning_rate', 2e-3):g}, per-epoch cosine decay, batch "
        f"{report.get('batch_size', 128)}, seed {report.get('seed', 0)}; {measured}) and added to the weights with "
        "`python scripts/add_context_model.py"
        + (f" --source {args.source}`; every other weight is that run's." if args.source
           else "`; the other weights are unchanged.")
    )
    if args.dry_run:
        print(f"{args.model}: checked (dry run; nothing written). Note: {card['notes']['context_model']}")
        return
    zoo_maintenance.write_card(card)
    with tempfile.TemporaryDirectory() as run:
        path = os.path.join(run, workdirs.WEIGHTS)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        new.save_weights(path)
        weights = zoo_maintenance.publish(run, args.model, float16=args.float16)
    print(f"{args.model}: context model added; weights {weights}")


if __name__ == "__main__":
    main()
