"""Keep a zoo model's shipped weights loadable under another name before new weights replace them.

    python scripts/keep_weights_as.py rq-vae-cifar rq-vae-cifar-2026-12-03 \
        --description "rq-vae-cifar as shipped until 2026-12-04; .vqz files written with it decode with it"

`.vqz` headers name the weights (their sha256 prefix), not the zoo name, so files written with
weights that a retraining replaces decode only if those weights stay in the zoo.
`vaezoo.zoo_maintenance.keep_as` copies the weights file byte for byte and the card (with its
metrics: the same weights), points the models that ship only a part on top of them (such as
rq-vae-cifar-groups5) at the copy, and checks that every one loads with the weights
fingerprint it had. Then publish the new weights under the old name (`vaezoo publish`).
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the zoo model about to get new weights")
    parser.add_argument("new_name", help="the name its current weights keep")
    parser.add_argument("--description", required=True, help="the kept model's card description")
    args = parser.parse_args()

    from vaezoo import zoo_maintenance

    card = zoo_maintenance.keep_as(args.name, args.new_name, args.description)
    print(f"{args.new_name}: {args.name}'s weights (sha256 {card['weights']['sha256'][:12]}, "
          f"{card['weights']['bytes']:,} bytes) under a new name")


if __name__ == "__main__":
    main()
