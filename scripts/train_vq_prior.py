"""Second stage for a published VQ-VAE: fit its PixelCNN prior on the codes of the training
split and write a workdir that `vaezoo publish` accepts (WORKDIR/final/model.weights.h5).

    python scripts/train_vq_prior.py vq-vae-cifar runs/vq-vae-cifar-prior --epochs 3
    vaezoo publish runs/vq-vae-cifar-prior --name vq-vae-cifar
"""

import argparse
import os
import sys



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("workdir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    import vaezoo
    from vaezoo import data, evaluation, registry
    from vaezoo.io import atomic_path, write_json

    model = vaezoo.load(args.name)
    spec = {k: v for k, v in model.card["data"].items() if k not in registry.DATA_ONLY_KEYS}
    images, _ = data.load_split(spec, spec.get("split", "train"), 0)
    codes = evaluation.encode_codes(model, images)
    print(f"prior before: {evaluation.prior_bits_per_code(model, codes[:2000]):.3f} bits/code", flush=True)
    history = model.fit_prior(codes, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.learning_rate, verbose=2)
    print(f"prior after: {evaluation.prior_bits_per_code(model, codes[:2000]):.3f} bits/code", flush=True)
    final = os.path.join(args.workdir, "final")
    os.makedirs(final, exist_ok=True)
    with atomic_path(os.path.join(final, "model.weights.h5")) as tmp:
        model.save_weights(tmp)
    write_json({"class": model.card["family"], "config": model.card["config"]}, os.path.join(final, "model_config.json"))
    write_json({"command": "python " + " ".join(sys.argv), "loss": history.history["loss"]},
               os.path.join(args.workdir, "prior_history.json"))


if __name__ == "__main__":
    main()
