"""Give a zoo VQ-VAE the context model trained by `scripts/train_context_model.py` and ship it.

    python scripts/add_context_model.py --model vq-vae-cifar --workdir runs/context-cifar

Builds the card's model with `context_model` set, copies every weight of the shipped model into
it (encoder, codebook, decoder, PixelCNN prior: checked to give the same codes, images and prior
bits on 256 test images) and the trained context model's weights, records the spec in the
card's config and a note on how the context model was trained, and publishes the weights
(`vaezoo.zoo_maintenance.publish`, float16 when the card's weights are). The card's metrics are
dropped by `publish` (other weights); measure them again with
`vaezoo eval NAME --metrics ... --limit 0 --write-card`.
"""

import argparse
import json
import os
import tempfile

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vq-vae-cifar")
    parser.add_argument("--workdir", required=True, help="the train_context_model.py workdir")
    parser.add_argument("--float16", action="store_true", help="ship float16 weights (as the card's are)")
    args = parser.parse_args()

    from vaezoo import registry, zoo_maintenance
    from vaezoo import workdir as workdirs
    from vaezoo.data import load_split
    from vaezoo.models.context_model import GroupedContextModel

    with open(os.path.join(args.workdir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    old = registry.load(args.model)
    card = registry.info(args.model)
    spec = {"channels": report["channels"], "layers": report["layers"]}
    trained = GroupedContextModel(old.num_embeddings, channels=spec["channels"], num_layers=spec["layers"])
    trained.load_weights(os.path.join(args.workdir, "context.weights.h5"))

    card["config"] = {**card["config"], "context_model": spec}
    new = registry.build(args.model, context_model=spec)
    new.build_from_images()
    for part in ("encoder", "decoder", "quantizer", "prior"):
        getattr(new, part).set_weights(getattr(old, part).get_weights())
    new.context_model.set_weights(trained.get_weights())

    images, _ = load_split(card["eval_data"], "test", limit=256)
    codes = np.asarray(old.encode_to_codes(images))
    assert np.array_equal(np.asarray(new.encode_to_codes(images)), codes), "codes changed"
    assert np.array_equal(np.asarray(new.decode_codes(codes)), np.asarray(old.decode_codes(codes))), "images changed"
    assert np.allclose(new.prior.bits_per_code(codes), old.prior.bits_per_code(codes)), "prior changed"

    card.setdefault("notes", {})["context_model"] = (
        f"The exact context model (.vqz version 2's entropy model, {spec['channels']} channels, {spec['layers']} "
        f"layers) was trained on the codes of the 50,000 training images with `python scripts/train_context_model.py "
        f"--model {args.model} --workdir runs/context-cifar --epochs {report['epochs']}` (Adam 2e-3, per-epoch "
        "cosine decay, batch 128, seed 0) and added to the shipped weights with `python "
        f"scripts/add_context_model.py`; the encoder, codebook, decoder and prior weights are unchanged."
    )
    zoo_maintenance.write_card(card)
    with tempfile.TemporaryDirectory() as run:
        path = os.path.join(run, workdirs.WEIGHTS)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        new.save_weights(path)
        weights = zoo_maintenance.publish(run, args.model, float16=args.float16)
    print(f"{args.model}: context model added; weights {weights}")


if __name__ == "__main__":
    main()
