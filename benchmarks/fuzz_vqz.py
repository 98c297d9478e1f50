"""Fuzz the `.vqz` parser: mutate valid files (bit flips, byte changes, truncation, extension,
splices, random headers, size and count claims) of both format versions and check every input
is either decoded or refused with a clean `VQZFormatError` (a ValueError) — never another
exception, a crash or a hang — and that the reader's peak memory stays bounded.

Records the number of inputs tried and the failures in benchmarks/RESULTS.md.

    python benchmarks/fuzz_vqz.py --seconds 180
"""

import argparse
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(__file__))
from common import append_results, hardware_description, markdown_table  # noqa: E402


def mutations(seed_files, rng):
    """An endless stream of mutated byte strings."""
    while True:
        data = bytearray(rng.choice(seed_files))
        kind = rng.randrange(7)
        if kind == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif kind == 1 and data:  # overwrite bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 2:  # truncate
            del data[rng.randrange(len(data) + 1):]
        elif kind == 3:  # extend
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif kind == 4 and len(data) > 8:  # splice two files
            other = rng.choice(seed_files)
            cut = rng.randrange(len(data))
            data = data[:cut] + other[rng.randrange(len(other)):]
        elif kind == 5 and data[:4] == b"VQZ\x02":  # claim a large count or size (version 2 varints)
            claim = rng.choice([2**k for k in range(7, 36)]) - rng.randrange(2)
            varint = bytearray()
            while True:
                varint.append((claim & 0x7F) | (0x80 if claim >> 7 else 0))
                claim >>= 7
                if not claim:
                    break
            at = rng.choice([9, 10, 11, 12])
            data = data[:at] + varint + data[at + 1 :]
        else:  # random bytes behind a valid magic
            data = data[:4] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
        yield bytes(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import resource

    import numpy as np

    import vaezoo
    from vaezoo import codec, vqz, vqz_v1

    model = vaezoo.VQVAE(input_shape=(16, 16, 3), num_embeddings=8, embedding_dim=4, hidden_channels=8,
                         residual_channels=4, num_residual_blocks=1, prior={"filters": 8, "layers": 2},
                         context_model={"channels": 8, "layers": 1}, seed=0)
    rng_np = np.random.default_rng(args.seed)
    seed_files = []
    for sizes in ([(16, 16)], [(16, 16), (16, 16)], [(9, 70), (33, 8), (70, 70)]):
        grids = [rng_np.integers(0, 8, vqz.grid_shape(s, 4)).astype(np.int32) for s in sizes]
        seed_files += [codec.compress_codes(model, grids, sizes, mode=m) for m in ("context", "fixed")]
    codes = [rng_np.integers(0, 8, (n, 4, 4)).astype(np.int32) for n in (1, 3)]  # version 1
    seed_files += [vqz_v1.compress_codes(model, c, mode=m, model_name="fuzz") for c in codes for m in ("prior", "fixed")]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = random.Random(args.seed)
    counts = {"inputs": 0, "decoded": 0, "refused cleanly": 0, "other exceptions": 0}
    failures = []
    deadline = time.time() + args.seconds
    for data in mutations(seed_files, rng):
        if time.time() > deadline:
            break
        counts["inputs"] += 1
        try:
            codec.decompress_codes(model, data)
            counts["decoded"] += 1
        except codec.VQZFormatError:
            counts["refused cleanly"] += 1
        except Exception:  # anything else is a parser bug
            counts["other exceptions"] += 1
            if len(failures) < 5:
                failures.append((data[:64].hex(), traceback.format_exc(limit=3)))
    for sample, trace in failures:
        print("FAILURE on input starting", sample, "\n", trace)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [{"inputs tried": counts["inputs"], "decoded": counts["decoded"],
             "refused with VQZFormatError": counts["refused cleanly"], "other exceptions": counts["other exceptions"],
             "peak RSS (MB)": f"{peak:.0f}", "growth while fuzzing (MB)": f"{peak - rss_before:.0f}"}]
    table = markdown_table(rows, list(rows[0]))
    print(table)
    append_results(".vqz parser fuzzing", table,
                   protocol=f"{args.seconds:.0f} s of mutations (bit flips, byte overwrites, truncation, extension, "
                            f"splices, random bodies, count and size claims up to 2^35) of {len(seed_files)} valid "
                            "files (version 2: context and fixed coding, several image sizes; version 1: prior and "
                            f"fixed), seed {args.seed}; peak RSS of the whole process (ru_maxrss), and its growth "
                            "after the model was built",
                   hardware=hardware_description())
    return 1 if counts["other exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
