"""Rewrite zoo models' shipped weights gzip-compressed (lossless) to keep the package small.

    python scripts/compress_shipped_weights.py vae-mnist hvae-mnist

Each file is rewritten by `vaezoo.zoo_maintenance.compress_shipped`: every array is checked
bit-identical to the old file's before the new file replaces it, so the card keeps its metrics
and only its `weights.sha256` and `weights.bytes` change. Models keep loading the same values.
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="zoo names whose weights ship in the package")
    args = parser.parse_args()

    from vaezoo import registry, zoo_maintenance

    for name in args.names:
        before = registry.info(name)["weights"]["bytes"]
        weights = zoo_maintenance.compress_shipped(name)
        print(f"{name}: {before:,} -> {weights['bytes']:,} bytes (sha256 {weights['sha256']})")


if __name__ == "__main__":
    main()
