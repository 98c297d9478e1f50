"""Ship only one part of a zoo model's weights, the rest shared with another zoo model.

    python scripts/share_base_weights.py vq-vae-cifar-groups5 --base vq-vae-cifar

For a superseded model kept so that old `.vqz` files decode: its autoencoder (and prior) are
the base's, only its context model differs. `vaezoo.zoo_maintenance.share_base_weights` checks
that every other weight equals the base's bit for bit, writes the part alone, points the card
at the base (pinned by its sha256), checks that loading gives the same weights fingerprint as
before, and only then removes the full file. The card keeps its metrics (the same weights).
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the zoo model whose full weights file is replaced")
    parser.add_argument("--base", required=True, help="the zoo model that holds the same other weights")
    parser.add_argument("--part", default="context_model", help="the part that ships (default context_model)")
    args = parser.parse_args()

    from vaezoo import registry, zoo_maintenance

    before = registry.info(args.name)["weights"]["bytes"]
    weights = zoo_maintenance.share_base_weights(args.name, args.base, args.part)
    print(f"{args.name}: {before:,} -> {weights['bytes']:,} bytes ({args.part} only; the rest is {args.base}'s)")


if __name__ == "__main__":
    main()
